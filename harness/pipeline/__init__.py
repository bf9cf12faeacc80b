"""Each command from its request to its report: resolve the images, boot, run, record.

`mkh run` (run.py), `mkh shell` (shell.py), `mkh bench` (bench.py), the
sessions of `mkh up` (session.py), the kernel's commands (kernel.py) and
`mkh dtb` (dtb.py) each take one request dataclass.  The first stage of
those that boot, options that fit and the images, is prepare.py; the boot
stage, targets booted and ended with the run's verdict, is boot.py (the
test suite's boot fixture uses it too).  Nothing here imports the CLI.
"""

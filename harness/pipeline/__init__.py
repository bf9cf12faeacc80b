"""Each command from its request to its report: resolve the images, boot, run, record.

`mkh run` (run.py), `mkh shell` (shell.py), `mkh bench` (bench.py) and the
sessions of `mkh up` (session.py) each take one request dataclass; the first
stage of all, options that fit and the images, is prepare.py; the boot
stage, targets booted and ended with the run's verdict, is boot.py (the test
suite's boot fixture uses it too).  Nothing here imports the CLI.
"""

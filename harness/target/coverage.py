"""A coverage kernel's gcov counts, read from /sys/kernel/debug/gcov before the kernel goes away.

Each read saves one kernel's counts as it has them then, a gzipped tar of
its .gcda files (their paths as the kernel lists them), in the run
directory's gcov/: the host's and every spawned kernel's at the end of a
run that passed, a kernel's before the harness halts it or replaces it
(kexec, kdump).  What a kernel runs after its last read is not counted.

A kernel's counts only grow, so a later read of the same kernel replaces
an earlier one: each is named by the kernel's boot id, and no kernel is
counted twice.  `mkh coverage` sums them (harness/pipeline/coverage.py).
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import tarfile
from pathlib import Path

from harness.core.errors import InfraError
from harness.core.rundir import RunDir
from harness.target.protocol import CommandProtocol

GCOV_DIR = "/sys/kernel/debug/gcov"
RUN_SUBDIR = "gcov"
SUFFIX = ".tar.gz"
READ_TIMEOUT = 120.0
# debugfs gives every .gcda a size of 0, so tar would store them empty: copy
# each to a tmpfs directory first, then pack and print that.
BOOT_ID = "/proc/sys/kernel/random/boot_id"
READ = (
    f"cat {BOOT_ID} && d=$(mktemp -d) && cd {GCOV_DIR} && "
    'find . -name "*.gcda" | while read -r f; do '
    'mkdir -p "$d/${f%/*}" && cat "$f" > "$d/$f" || exit 1; done && '
    'tar -C "$d" -czf - . | base64; s=$?; cd /; rm -rf "$d"; exit $s'
)


def decode(text: str, kernel: str) -> tuple[str, bytes]:
    """The boot id and the tarball a READ printed; InfraError if they are not that."""
    boot_id, _, packed = text.strip().partition("\n")
    if not re.fullmatch(r"[0-9a-f-]{36}", boot_id.strip()):
        raise InfraError(f"{kernel} gave no boot id before its gcov counts: {boot_id[:80]!r}")
    try:
        data = base64.b64decode("".join(packed.split()), validate=True)
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            names = [m.name for m in tar.getmembers() if m.isfile()]
    except (binascii.Error, tarfile.TarError, EOFError, OSError) as exc:
        raise InfraError(f"{kernel}'s gcov counts came back damaged: {exc}") from None
    if not any(name.endswith(".gcda") for name in names):
        raise InfraError(f"{kernel} has no .gcda files in {GCOV_DIR}: not a coverage kernel?")
    return boot_id.strip(), data


def save(commands: CommandProtocol, run_dir: RunDir, kernel: str) -> Path:
    """Read the counts of the kernel behind `commands` into run_dir/gcov/<boot id>.tar.gz.

    Next to it, <boot id>.kernel says which kernel it was ("host", "instance ttyS1").
    """
    boot_id, data = decode(commands.check(READ, timeout=READ_TIMEOUT), kernel)
    out = run_dir.file(RUN_SUBDIR)
    out.mkdir(exist_ok=True)
    path = out / f"{boot_id}{SUFFIX}"
    path.write_bytes(data)
    path.with_name(f"{boot_id}.kernel").write_text(kernel + "\n")
    return path

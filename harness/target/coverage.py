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
# A read a kernel message broke is read again, up to this many times in all.
READ_ATTEMPTS = 3
_BOOT_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")
# debugfs gives every .gcda a size of 0, so tar would store them empty: copy
# each to a tmpfs directory first, then pack and print that.
BOOT_ID = "/proc/sys/kernel/random/boot_id"
READ = (
    f"cat {BOOT_ID} && d=$(mktemp -d) && cd {GCOV_DIR} && "
    'find . -name "*.gcda" | while read -r f; do '
    'mkdir -p "$d/${f%/*}" && cat "$f" > "$d/$f" || exit 1; done && '
    'tar -C "$d" -czf - . | base64; s=$?; cd /; rm -rf "$d"; exit $s'
)


class Damaged(InfraError):
    """A read whose tarball did not come back whole."""


def decode(text: str, kernel: str) -> tuple[str, bytes]:
    """The boot id and the tarball a READ printed; InfraError if they are not that.

    On a console that also carries the kernel's log (an instance's mkcon),
    its lines may come between the base64 lines: every line that is not
    base64 is left out.  One printed in the middle of a base64 line breaks
    the tarball (Damaged), which gzip's check finds.
    """
    lines = [line.strip() for line in text.splitlines()]
    first = next((i for i, line in enumerate(lines) if _BOOT_ID.fullmatch(line)), None)
    if first is None:
        raise InfraError(f"{kernel} gave no boot id before its gcov counts: {text[:80]!r}")
    boot_id = lines[first]
    packed = [line for line in lines[first + 1 :] if _BASE64.fullmatch(line)]
    try:
        data = base64.b64decode("".join(packed), validate=True)
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            names = [m.name for m in tar.getmembers() if m.isfile()]
    except (binascii.Error, tarfile.TarError, EOFError, OSError) as exc:
        raise Damaged(f"{kernel}'s gcov counts came back damaged: {exc}") from None
    if not any(name.endswith(".gcda") for name in names):
        raise InfraError(f"{kernel} has no .gcda files in {GCOV_DIR}: not a coverage kernel?")
    return boot_id, data


def save(commands: CommandProtocol, run_dir: RunDir, kernel: str) -> Path:
    """Read the counts of the kernel behind `commands` into run_dir/gcov/<boot id>.tar.gz.

    Next to it, <boot id>.kernel says which kernel it was ("host", "instance ttyS1").
    """
    for attempt in range(READ_ATTEMPTS):
        try:
            boot_id, data = decode(commands.check(READ, timeout=READ_TIMEOUT), kernel)
            break
        except Damaged:
            if attempt == READ_ATTEMPTS - 1:
                raise
    out = run_dir.file(RUN_SUBDIR)
    out.mkdir(exist_ok=True)
    path = out / f"{boot_id}{SUFFIX}"
    path.write_bytes(data)
    path.with_name(f"{boot_id}.kernel").write_text(kernel + "\n")
    return path

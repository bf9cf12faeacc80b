"""The suite's QEMU-leak check still fails the run when pytest-xdist runs it."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from tests.unit.fakes import inner_suite

# One test leaves a process behind that carries its worker's QEMU process
# name, as a leaked QEMU would; the other test is clean.
LEAKY = """
import os, subprocess, sys
from pathlib import Path

RENAME = (
    "import ctypes, sys, time; ctypes.CDLL(None).prctl(15, sys.argv[1].encode()); "
    "print('renamed', flush=True); time.sleep(120)"
)

def test_leaves_a_fake_qemu_behind() -> None:
    name = os.environ["MKH_QEMU_NAME"]
    argv = [sys.executable, "-c", RENAME, name]
    child = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    with Path(os.environ["FAKE_QEMU_PIDS"]).open("a") as pids:
        pids.write(f"{child.pid}\\n")
    assert child.stdout is not None and child.stdout.readline() == "renamed\\n"

def test_clean() -> None:
    pass
"""


def test_a_qemu_left_by_an_xdist_worker_fails_the_run(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    try:
        done = inner_suite(tmp_path, {"test_leaky.py": LEAKY}, "-n", "2", FAKE_QEMU_PIDS=str(pids))
    finally:
        for pid in pids.read_text().split() if pids.exists() else []:
            os.kill(int(pid), signal.SIGKILL)
    assert "2 passed" in done.stdout, done.stdout + done.stderr
    assert done.returncode == 1, done.stdout
    # The controller names the worker's leftover: only the worker's name matches it.
    left = done.stdout.split("QEMU processes left after the suite:")[1].splitlines()[1]
    assert left.split()[0] == pids.read_text().strip()

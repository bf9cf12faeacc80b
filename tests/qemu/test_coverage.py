"""mkh coverage on the series: the counts of the host and of every kernel it spawned, summed.

It builds the coverage kernel (images/linux/coverage/, the series'
CONFIG_GCOV_PROFILE_MULTIKERNEL) and runs one test of the suite on it:
an instance started and halted three times, then once more.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from harness.core.paths import REPO
from tests.conftest import MKH

pytestmark = [
    pytest.mark.qemu,
    pytest.mark.own_kernel,
    pytest.mark.qemu_guest("runs the suite on a kernel of its own"),
]

HALTS = "tests/qemu/test_lifecycle.py::test_graceful_halt_and_start_again_three_times"
# What the series profiles and our config builds (kernel/kexec.c needs CONFIG_KEXEC).
PROFILED = {
    "arch/x86/kernel/kexec-bzimage64.c",
    "arch/x86/kernel/multikernel.c",
    "kernel/kexec_core.c",
    "kernel/kexec_file.c",
    "kernel/multikernel/console.c",
    "kernel/multikernel/core.c",
    "kernel/multikernel/debug.c",
    "kernel/multikernel/dts.c",
    "kernel/multikernel/host.c",
    "kernel/multikernel/kernfs.c",
    "kernel/multikernel/kexec.c",
    "kernel/multikernel/kho.c",
    "kernel/multikernel/mem.c",
    "kernel/multikernel/msg.c",
    "kernel/multikernel/overlay.c",
    "kernel/multikernel/resize.c",
}


def test_coverage_sums_the_host_and_each_instance_kernel_it_started(tmp_path: Path) -> None:
    done = subprocess.run(
        [*MKH, "coverage", "--jobs", "1", "--basetemp", str(tmp_path / "runs"), HALTS],
        capture_output=True,
        text=True,
        timeout=3600,
        cwd=REPO,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    where = re.search(r"^mkh: HTML report (\S+); summary (\S+)$", done.stdout, re.M)
    assert where is not None, done.stdout
    html, summary = Path(where[1]), Path(where[2])
    # One host; each start of the instance is a kernel of its own, read before its halt.
    assert "counts of 5 kernels summed (1 host, 4 instance)" in summary.read_text()
    assert html.is_file() and (html.parent / "kernel" / "multikernel").is_dir()
    rows = {row["file"]: row for row in json.loads((summary.parent / "coverage.json").read_text())}
    assert set(rows) == PROFILED
    for path in ("kernel/multikernel/kexec.c", "kernel/multikernel/kho.c", "kernel/kexec_file.c"):
        assert rows[path]["lines_hit"] > 0, rows[path]
    # Only a kernel started in an instance reads a handover: the instances' counts are in.
    assert "mk_kho_check" not in rows["kernel/multikernel/kho.c"]["never_reached"]
    # Nothing in this test writes a fault-injection knob: none of their handlers ran.
    assert "knob_write" in rows["kernel/multikernel/debug.c"]["never_reached"]

"""Pick the QEMU accelerator: KVM where it really runs a guest, else TCG.

Opening /dev/kvm is not enough: on some hosts (nested or emulated
virtualisation) QEMU starts with KVM but the guest never makes progress.  The
probe boots QEMU's firmware under KVM and waits for it to write its banner to
the debug console; no banner within a few seconds means KVM does not work.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from functools import cache
from pathlib import Path

from harness.core.errors import InfraError
from harness.core.progress import note

PROBE_SECONDS = 5.0
BANNER = b"SeaBIOS"


def kvm_works(qemu: str) -> tuple[bool, str]:
    """Boot the firmware under KVM; (works, reason if not)."""
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False, "/dev/kvm is missing or not accessible"
    with tempfile.TemporaryDirectory(prefix="mkh-kvm-") as tmp:
        log = Path(tmp) / "debugcon"
        cmd = [
            qemu,
            "-accel",
            "kvm",
            "-machine",
            "pc",
            "-cpu",
            "host",
            "-m",
            "64",
            "-nodefaults",
            "-display",
            "none",
            "-no-reboot",
            "-chardev",
            f"file,id=dbg,path={log}",
            "-device",
            "isa-debugcon,iobase=0x402,chardev=dbg",
        ]
        child = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + PROBE_SECONDS
        try:
            while time.monotonic() < deadline:
                if log.exists() and BANNER in log.read_bytes():
                    return True, ""
                if child.poll() is not None:
                    assert child.stderr is not None
                    err = child.stderr.read().decode(errors="replace").strip().splitlines()
                    return False, err[-1] if err else f"QEMU exited with {child.returncode}"
                time.sleep(0.05)
            return False, f"a KVM guest made no progress in {PROBE_SECONDS:g}s"
        finally:
            child.kill()
            child.wait()


@cache
def choose(requested: str, qemu: str) -> str:
    """The accelerator to use for `requested` (auto, kvm or tcg)."""
    if requested == "tcg":
        return "tcg"
    works, reason = kvm_works(qemu)
    if works:
        return "kvm"
    if requested == "kvm":
        raise InfraError(f"KVM was requested but does not work here: {reason}")
    note(f"warning: KVM unusable ({reason}); using TCG emulation, which is slower")
    return "tcg"

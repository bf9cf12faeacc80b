import os
from pathlib import Path

import pytest

from harness.core.errors import InfraError
from harness.target import accel


def fake_qemu(tmp_path: Path, body: str) -> str:
    script = tmp_path / "qemu"
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(0o755)
    return str(script)


@pytest.fixture(autouse=True)
def fresh_choice() -> None:
    accel.choose.cache_clear()


@pytest.fixture
def kvm_device(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "access", lambda path, mode: True)


def test_tcg_request_needs_no_probe(tmp_path: Path) -> None:
    assert accel.choose("tcg", fake_qemu(tmp_path, "exit 99\n")) == "tcg"


def test_qemu_failing_under_kvm_falls_back_with_one_warning(
    tmp_path: Path, kvm_device: None, capsys: pytest.CaptureFixture[str]
) -> None:
    qemu = fake_qemu(tmp_path, "echo 'failed to initialize kvm: No such device' >&2\nexit 1\n")
    assert accel.choose("auto", qemu) == "tcg"
    assert accel.choose("auto", qemu) == "tcg"
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "failed to initialize kvm" in err[0] and "TCG" in err[0]


def test_guest_that_never_progresses_is_detected(
    tmp_path: Path, kvm_device: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(accel, "PROBE_SECONDS", 0.5)
    works, reason = accel.kvm_works(fake_qemu(tmp_path, "sleep 30\n"))
    assert not works and "no progress" in reason


def test_working_kvm_is_chosen(tmp_path: Path, kvm_device: None) -> None:
    # Writes the firmware banner where -chardev file,path=... points.
    body = 'for a; do case "$a" in file,id=dbg,path=*) echo SeaBIOS > "${a#*path=}";; esac; done\n'
    assert accel.choose("auto", fake_qemu(tmp_path, body + "sleep 30\n")) == "kvm"


def test_explicit_kvm_that_does_not_work_is_an_error(tmp_path: Path, kvm_device: None) -> None:
    with pytest.raises(InfraError, match="KVM was requested"):
        accel.choose("kvm", fake_qemu(tmp_path, "exit 1\n"))

"""The boot stage (harness/pipeline/boot.py) and `mkh run` on it, with targets that boot nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.build.images import Images, KernelChoice
from harness.core.errors import GuestTimeout, InfraError, KernelCrash
from harness.core.rundir import RunDir
from harness.pipeline import boot, run
from harness.pipeline.boot import Boots
from harness.pipeline.run import RunRequest
from harness.target.options import TargetOptions
from harness.target.protocol import Completed
from tests.unit.fakes import Machines, fake_bzimage


@pytest.fixture
def machines(monkeypatch: pytest.MonkeyPatch) -> Machines:
    made = Machines()
    monkeypatch.setattr(boot, "make_target", made)
    return made


@pytest.fixture
def built(tmp_path: Path) -> Images:
    return Images(fake_bzimage(tmp_path / "bzImage"), tmp_path / "initrd")


def boots(built: Images) -> Boots:
    return Boots(built, KernelChoice(prebuilt=built.kernel), "t")


def outcome(run_dir: Path) -> tuple[str, int]:
    data = json.loads((run_dir / "result.json").read_text())
    return data["verdict"], data["exit_code"]


def start(stage: Boots, tmp_path: Path, count: int) -> list[Path]:
    dirs = [tmp_path / f"run{n}" for n in range(count)]
    for path in dirs:
        stage.boot(TargetOptions(), RunDir(path))
    return dirs


def test_a_passing_run_finishes_every_target_then_records_pass(
    machines: Machines, built: Images, tmp_path: Path
) -> None:
    stage = boots(built)
    dirs = start(stage, tmp_path, 2)
    stage.end(None)
    assert [m.steps for m in machines.made] == [["boot", "finish", "close"]] * 2
    assert [outcome(d) for d in dirs] == [("PASS", 0)] * 2


def test_a_late_crash_fails_the_run_of_every_target(
    machines: Machines, built: Images, tmp_path: Path
) -> None:
    machines.crash = ["finish"]
    stage = boots(built)
    dirs = start(stage, tmp_path, 2)
    with pytest.raises(KernelCrash, match="at finish"):
        stage.end(None)
    assert [m.steps for m in machines.made] == [["boot", "finish", "close"], ["boot", "close"]]
    assert [outcome(d) for d in dirs] == [("CRASH", 123)] * 2


def test_a_failed_run_gets_no_last_look_and_records_its_failure(
    machines: Machines, built: Images, tmp_path: Path
) -> None:
    stage = boots(built)
    dirs = start(stage, tmp_path, 1)
    stage.end(AssertionError("the test failed"))
    assert machines.made[0].steps == ["boot", "close"]
    assert outcome(dirs[0]) == ("FAIL", 1)


def test_a_run_not_recorded_writes_no_result(
    machines: Machines, built: Images, tmp_path: Path
) -> None:
    stage = boots(built)
    dirs = start(stage, tmp_path, 1)
    stage.end(None, record=False)
    assert machines.made[0].steps == ["boot", "finish", "close"]
    assert not (dirs[0] / "result.json").exists()


def test_ended_records_the_blocks_status_or_its_error(
    machines: Machines, built: Images, tmp_path: Path
) -> None:
    stage = boots(built)
    with stage.ended() as status:
        start(stage, tmp_path, 1)
        status.value = 7
    assert outcome(tmp_path / "run0") == ("FAIL", 7)

    stage = boots(built)
    with pytest.raises(GuestTimeout), stage.ended():
        start(stage, tmp_path / "again", 1)
        raise GuestTimeout("ttyS0", "x", 1, "")
    assert machines.made[1].steps == ["boot", "close"]
    assert outcome(tmp_path / "again" / "run0") == ("TIMEOUT", 124)


def test_a_target_whose_boot_fails_is_closed_and_recorded(
    machines: Machines, built: Images, tmp_path: Path
) -> None:
    machines.crash = ["boot"]
    stage = boots(built)
    with pytest.raises(KernelCrash), stage.ended():
        start(stage, tmp_path, 1)
    assert machines.made[0].steps == ["boot", "close"]
    assert outcome(tmp_path / "run0") == ("CRASH", 123)


@pytest.fixture
def images_for(monkeypatch: pytest.MonkeyPatch, built: Images) -> None:
    monkeypatch.setattr(run, "images_for", lambda kernel, options: built)


def request(tmp_path: Path, **options: Any) -> RunRequest:
    return RunRequest(KernelChoice(), TargetOptions(**options), "true", 10.0, tmp_path / "art")


@pytest.mark.usefixtures("images_for")
def test_run_shows_the_output_and_records_the_commands_status(
    machines: Machines, tmp_path: Path
) -> None:
    machines.status = 3
    shown: list[Completed] = []
    ran = run.run(request(tmp_path), shown.append)
    assert ran == Completed("ran true\n", 3)
    assert shown == [ran]
    assert machines.made[0].steps == ["boot", "run", "finish", "close"]
    data = json.loads((tmp_path / "art" / "result.json").read_text())
    assert (data["what"], data["verdict"], data["exit_code"]) == ("mkh run: true", "FAIL", 3)


@pytest.mark.usefixtures("images_for")
def test_a_run_that_fails_names_its_artifacts_once_there_is_a_target(
    machines: Machines, tmp_path: Path
) -> None:
    machines.crash = ["finish"]
    with pytest.raises(KernelCrash) as crashed:
        run.run(request(tmp_path))
    assert crashed.value.__notes__ == [f"artifacts: {tmp_path / 'art'}"]
    assert outcome(tmp_path / "art") == ("CRASH", 123)

    with pytest.raises(InfraError, match="no gdb here") as refused:
        run.run(request(tmp_path / "gdb", gdb_port=1234))
    assert not hasattr(refused.value, "__notes__")
    assert not (tmp_path / "gdb" / "art" / "result.json").exists()

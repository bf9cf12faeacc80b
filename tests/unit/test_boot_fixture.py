"""The suite's boot fixture (tests/conftest.py) on the boot stage, its targets booting nothing."""

from __future__ import annotations

import json
from pathlib import Path

from tests.unit.fakes import inner_suite

# The images and make_target replaced: the fixture under test is the suite's own.
CONFTEST = """
import pytest

from harness.build.images import Images
from harness.pipeline import boot
from tests.unit.fakes import Machines, fake_bzimage


@pytest.fixture(scope="session")
def guest_images(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    return Images(fake_bzimage(root / "bzImage"), root / "initrd")


@pytest.fixture(autouse=True)
def machines(monkeypatch):
    made = Machines()
    monkeypatch.setattr(boot, "make_target", made)
    return made
"""
TESTS = """
import pytest


def test_passes(boot, machines):
    boot(smp=1)
    boot(smp=2)
    assert [o.transport for o in machines.options] == ["console", "console"]


def test_fails(boot):
    boot(smp=1)
    assert False


def test_skips(boot):
    boot(smp=1)
    pytest.skip("not today")


def test_crashes_late(boot, machines):
    machines.crash = ["finish"]
    boot(smp=1)
"""


def verdict(run: Path) -> tuple[str, int, str]:
    data = json.loads((run / "result.json").read_text())
    return data["verdict"], data["exit_code"], data["what"].rpartition("::")[2]


def test_each_guest_records_the_tests_verdict(tmp_path: Path) -> None:
    base = tmp_path / "base"
    files = {"conftest.py": CONFTEST, "test_inner.py": TESTS}
    done = inner_suite(tmp_path, files, f"--basetemp={base}", MKH_CACHE=str(tmp_path / "cache"))
    summary = done.stdout.splitlines()[-1]
    assert "1 failed, 2 passed, 1 skipped, 1 error" in summary, done.stdout + done.stderr
    assert "KernelCrash: kernel crash (panic) on ttyS0: Kernel panic at finish" in done.stdout
    passed = [verdict(base / "test_passes0" / f"run{n}") for n in (0, 1)]
    assert passed == [("PASS", 0, "test_passes")] * 2
    assert verdict(base / "test_fails0" / "run0") == ("FAIL", 1, "test_fails")
    assert verdict(base / "test_crashes_late0" / "run0") == ("CRASH", 123, "test_crashes_late")
    assert not (base / "test_skips0" / "run0" / "result.json").exists()
    assert (base / "test_skips0" / "run0").is_dir()

"""harness/pipeline/dtb.py: `mkh dtb compile|check|show` without the CLI."""

from __future__ import annotations

import shutil
from pathlib import Path

import fdt
import pytest

from harness.core.errors import InfraError
from harness.core.paths import EXAMPLE_DTS
from harness.multikernel import dtb
from harness.pipeline.dtb import DtbReport, DtbRequest, device_tree
from tests.unit.test_dtb import DB, WEB

ROOMY = dtb.Budget(cpus=4, pool_free=2 << 30)  # the example fits


@pytest.fixture
def example(tmp_path: Path) -> Path:
    return Path(shutil.copy(EXAMPLE_DTS, tmp_path / "example.dts"))


def test_compile_writes_a_dtb_that_parses_back(example: Path, tmp_path: Path) -> None:
    report = device_tree(DtbRequest("compile", example, ROOMY))
    assert report == DtbReport([], written=example.with_suffix(".dtb"))
    assert dtb.parse(example.with_suffix(".dtb").read_bytes()) == ([WEB, DB], [])

    out = tmp_path / "out" / "mk.dtb"
    out.parent.mkdir()
    assert device_tree(DtbRequest("compile", example, ROOMY, out)).written == out
    assert dtb.parse(out.read_bytes()) == ([WEB, DB], [])


def test_compile_writes_nothing_the_kernel_would_refuse(example: Path) -> None:
    report = device_tree(DtbRequest("compile", example, dtb.Budget(cpus=3)))
    assert report.problems == [
        "instance database: CPU 3 does not exist (EINVAL); the machine has CPUs 0-2"
    ]
    assert report.written is None
    assert not example.with_suffix(".dtb").exists()


def test_check_of_a_dtb_reports_what_the_kernel_would_say(example: Path, tmp_path: Path) -> None:
    device_tree(DtbRequest("compile", example))
    blob = example.with_suffix(".dtb")
    assert device_tree(DtbRequest("check", blob, ROOMY)) == DtbReport([])
    small = dtb.Budget(pool_free=WEB.memory)
    assert device_tree(DtbRequest("check", blob, small)).problems == [
        "instance database: needs 1073741824 bytes, the pool has 0 free (ENOSPC); "
        "boot with a larger mkkernel_pool= or ask for less memory-bytes"
    ]


def test_show_gives_each_instance_as_the_kernel_shows_it(example: Path) -> None:
    report = device_tree(DtbRequest("show", example, ROOMY))
    assert report == DtbReport(
        [], sources=[("web-server", dtb.instance_dts(WEB)), ("database", dtb.instance_dts(DB))]
    )


def test_a_dts_that_does_not_compile_is_its_one_problem(tmp_path: Path) -> None:
    bad = tmp_path / "bad.dts"
    bad.write_text('/dts-v1/;\n/ {\n\tcompatible = "multikernel-v1"\n\tinstances { };\n};\n')
    for action in ("compile", "check", "show"):
        report = device_tree(DtbRequest(action, bad))
        assert len(report.problems) == 1 and report.problems[0].startswith(f"{bad}:4.")
        assert "syntax error" in report.problems[0]
        assert (report.written, report.sources) == (None, [])
    assert not bad.with_suffix(".dtb").exists()


def test_a_dtb_that_is_not_multikernel_is_einval(tmp_path: Path) -> None:
    tree = fdt.FDT()
    tree.set_property("compatible", "something-else")
    other = tmp_path / "other.dtb"
    other.write_bytes(bytes(tree.to_dtb(version=17)))
    report = device_tree(DtbRequest("show", other))
    assert report == DtbReport([f'{other}: root compatible is not "multikernel-v1" (EINVAL)'])


def test_a_file_that_cannot_be_read_is_an_infra_error(tmp_path: Path) -> None:
    with pytest.raises(InfraError, match=f"cannot read {tmp_path / 'gone.dts'}"):
        device_tree(DtbRequest("check", tmp_path / "gone.dts"))

"""mkh flaky: repetitions tallied per test from recorded JUnit XML and result.json; a real run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.cli import main
from harness.core.errors import InfraError
from harness.pipeline.flaky import FlakyRequest, check, pytest_argv
from harness.report import flaky

FIXTURES = Path(__file__).parent / "fixtures" / "flaky"
SAMPLE = "tests/unit/fixtures/flaky/sample_suite.py"
# junit.xml: `pytest --count 3 -n 2` of sample_suite.py, as recorded.
FLAKY = f"{SAMPLE}::test_fails_on_its_second_run"
BROKEN = f"{SAMPLE}::test_always_broken[2]"


@pytest.mark.parametrize(
    ("node", "split"),
    [
        ("t.py::test_a[2-3]", ("t.py::test_a", 2)),
        ("t.py::test_a[x-y-1-3]", ("t.py::test_a[x-y]", 1)),
        ("t.py::TestC::test_a[3-3]", ("t.py::TestC::test_a", 3)),
        ("t.py::test_a", ("t.py::test_a", 1)),
        ("t.py::test_a[param]", ("t.py::test_a[param]", 1)),
    ],
)
def test_a_repetition_is_the_last_parameter(node: str, split: tuple[str, int]) -> None:
    assert flaky.split_repeat(node) == split


def test_junit_names_become_node_ids() -> None:
    assert flaky.node_id("tests.unit.test_x", "test_y[1-3]") == "tests/unit/test_x.py::test_y[1-3]"
    assert (
        flaky.node_id("tests.unit.test_x.TestC", "test_y") == "tests/unit/test_x.py::TestC::test_y"
    )


def test_each_repetition_has_its_outcome() -> None:
    runs = flaky.outcomes((FIXTURES / "junit.xml").read_text())
    assert len(runs) == 15
    assert {(o.run, o.result) for o in runs if o.test == FLAKY} == {
        (1, "passed"),
        (2, "failed"),
        (3, "passed"),
    }
    assert {o.result for o in runs if o.test == f"{SAMPLE}::test_skipped"} == {"skipped"}


def test_a_teardown_error_after_a_pass_fails_that_repetition() -> None:
    xml = (
        '<testsuites><testsuite><testcase classname="t" name="test_a[1-2]" />'
        '<testcase classname="t" name="test_a[1-2]"><error message="teardown" /></testcase>'
        '<testcase classname="t" name="test_a[2-2]" /></testsuite></testsuites>'
    )
    assert sorted((o.run, o.result) for o in flaky.outcomes(xml)) == [(1, "failed"), (2, "passed")]


def write_result(run_dir: Path, what: str, verdict: str) -> None:
    run_dir.mkdir(parents=True)
    (run_dir / "result.json").write_text(json.dumps({"what": what, "verdict": verdict}))


def test_failures_name_their_run_directories_and_flaky_tests_come_first(tmp_path: Path) -> None:
    write_result(tmp_path / "gw0" / "a" / "run0", f"{FLAKY}[2-3]", "FAIL")
    write_result(tmp_path / "gw1" / "b" / "run0", f"{FLAKY}[1-3]", "PASS")
    write_result(tmp_path / "gw1" / "c" / "run0", f"{BROKEN[:-3]}[2-3-3]", "CRASH")
    runs = flaky.outcomes((FIXTURES / "junit.xml").read_text())
    tallies = flaky.tally(runs, flaky.failed_runs(tmp_path))
    first = tallies[0]
    assert (first.test, first.passed, first.failed, first.flaky) == (FLAKY, 2, 1, True)
    assert first.failures == {2: [tmp_path / "gw0" / "a" / "run0"]}
    assert [t.test for t in tallies[1:2]] == [BROKEN]
    assert tallies[1].failures[3] == [tmp_path / "gw1" / "c" / "run0"]
    text = flaky.table(tallies)
    assert f"  run 2 failed: {tmp_path / 'gw0' / 'a' / 'run0'}" in text
    assert "  run 1 failed: no run directory (no guest booted)" in text
    assert text.endswith("5 tests: 1 flaky (passed and failed), 1 failed every run\n")
    assert json.loads(flaky.to_json(tallies))[0]["failures"] == {"2": [str(first.failures[2][0])]}


def test_bad_requests_are_refused_before_anything_runs() -> None:
    with pytest.raises(InfraError, match="at least 1"):
        check(FlakyRequest((SAMPLE,), 0, 1))
    with pytest.raises(InfraError, match="no such test file"):
        check(FlakyRequest(("tests/nowhere.py::test_x",), 3, 1))
    argv = pytest_argv(FlakyRequest((SAMPLE,), 3, 2, "qemu"), Path("j.xml"), Path("b"))
    assert argv[1:] == [
        "-m", "pytest", "--count", "3", "-n", "2", "--dist", "loadfile", "--junitxml=j.xml",
        "--basetemp=b", "-m", "qemu", SAMPLE,
    ]  # fmt: skip


def test_mkh_flaky_runs_the_repetitions_and_prints_the_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MKH_CACHE", str(tmp_path))
    status = main(["flaky", "--runs", "3", "--jobs", "2", SAMPLE])
    out = capsys.readouterr().out
    assert status == 1, out
    assert f"{FLAKY}     3       2       1        0" in out
    assert "5 tests: 1 flaky (passed and failed), 1 failed every run" in out
    tables = list(tmp_path.glob("results/flaky-*/flaky.txt"))
    assert len(tables) == 1 and f"table in {tables[0]}" in out

"""mkh bisect: verdicts as git bisect takes them, bad requests refused, git bisect run driven."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from harness.core.errors import InfraError
from harness.pipeline import bisect
from harness.pipeline.bisect import ABORT, BAD, GOOD, SKIP, BisectRequest


@pytest.mark.parametrize(
    ("status", "verdicts", "verdict"),
    [
        (0, [], GOOD),
        (1, ["FAIL"], BAD),
        (1, ["CRASH", "INFRA"], BAD),
        (1, ["PASS", "INFRA"], SKIP),  # its other guest ran
        (1, [], BAD),  # it failed before booting anything: the test's own assertion
        (1, ["INFRA"], SKIP),  # only the guest could not be run
        (5, [], ABORT),  # no such test
        (2, [], ABORT),  # interrupted
    ],
)
def test_a_pytest_run_as_git_bisect_takes_it(
    status: int, verdicts: list[str], verdict: int
) -> None:
    assert bisect.pytest_verdict(status, verdicts) == verdict


@pytest.mark.parametrize(
    ("status", "verdict"), [(0, GOOD), (1, BAD), (123, BAD), (124, BAD), (125, SKIP), (130, ABORT)]
)
def test_mkh_run_s_status_as_git_bisect_takes_it(status: int, verdict: int) -> None:
    assert bisect.run_verdict(status) == verdict


def commit(tree: Path, message: str, **files: str) -> str:
    for name, text in files.items():
        (tree / name).write_text(text)
    subprocess.run(["git", "-C", str(tree), "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(tree), "commit", "-qm", message], check=True)
    return bisect.git(tree, "rev-parse", "HEAD")


@pytest.fixture
def history(tmp_path: Path) -> tuple[Path, list[str]]:
    """Six commits; the fourth plants the bug, the second does not build."""
    tree = tmp_path / "tree"
    tree.mkdir()
    subprocess.run(["git", "init", "-q", str(tree)], check=True)
    subprocess.run(["git", "-C", str(tree), "config", "user.email", "t@example.com"], check=True)
    subprocess.run(["git", "-C", str(tree), "config", "user.name", "t"], check=True)
    shas = [commit(tree, "base", code="ok\n")]
    shas.append(commit(tree, "breaks the build", broken="yes\n"))
    shas.append(commit(tree, "fixes the build", broken=""))
    shas.append(commit(tree, "plants the bug", code="bug\n"))
    shas.append(commit(tree, "something else", other="1\n"))
    shas.append(commit(tree, "and more", other="2\n"))
    return tree, shas


# A step as git bisect runs it: logs like _bisect-step, skips what does not build.
STEP = """
out=$1; sha=$(git rev-parse HEAD)
if [ -s broken ]; then v=125; elif grep -q bug code; then v=1; else v=0; fi
printf '{"commit": "%s", "verdict": %s, "run_dir": "%s/step-%s"}\\n' "$sha" $v "$out" "$sha" \\
    >> "$out/steps.jsonl"
exit $v
"""


def test_git_bisect_run_finds_the_commit_that_planted_the_bug(
    history: tuple[Path, list[str]], tmp_path: Path
) -> None:
    tree, shas = history
    out = tmp_path / "out"
    out.mkdir()
    report = bisect.bisect(tree, shas[0], shas[-1], ["sh", "-c", STEP, "step", str(out)], out)
    assert (report.first_bad, report.subject) == (shas[3], "plants the bug")
    assert report.run_dir == out / f"step-{shas[3]}"
    steps = [json.loads(line) for line in (out / "steps.jsonl").read_text().splitlines()]
    assert {s["commit"] for s in steps} <= set(shas[1:])
    # The tree is back where it was.
    assert bisect.git(tree, "rev-parse", "HEAD") == shas[-1]
    assert "bisect" not in bisect.git(tree, "status")


def test_requests_are_checked_before_anything_is_built(
    history: tuple[Path, list[str]], tmp_path: Path
) -> None:
    tree, shas = history
    test = "tests/qemu/test_kho.py"
    with pytest.raises(InfraError, match="give the test"):
        bisect.check(BisectRequest(tree, shas[0], shas[-1]))
    with pytest.raises(InfraError, match="no such test"):
        bisect.check(BisectRequest(tree, shas[0], shas[-1], "tests/qemu/nowhere.py::t"))
    with pytest.raises(InfraError, match="not a git tree"):
        bisect.check(BisectRequest(tmp_path, shas[0], shas[-1], test))
    with pytest.raises(InfraError, match="rev-parse"):
        bisect.check(BisectRequest(tree, "no-such-rev", shas[-1], test))
    (tree / "code").write_text("edited\n")
    with pytest.raises(InfraError, match="uncommitted changes"):
        bisect.check(BisectRequest(tree, shas[0], shas[-1], test))

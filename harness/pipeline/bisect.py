"""`mkh bisect`: the first commit of a kernel tree at which a test fails, by `git bisect run`.

git runs one step at every commit it tries (`mkh _bisect-step`): build the
tree (ccache keeps that short), boot it, run the test, and exit with what
git understands: 0 good, 1 bad, 125 skip (the commit does not build, or the
guest could not be run for reasons of its own).  Each step appends a line
to steps.jsonl in the bisect's directory, so that the end can name the
first bad commit's run directory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from harness.core.errors import EXIT_INFRA, InfraError
from harness.core.paths import REPO, cache_dir

GOOD, BAD, SKIP = 0, 1, 125
# Above 127: git bisect run stops (an interrupted step, a test that does not exist).
ABORT = 128
STEPS = "steps.jsonl"


@dataclass(frozen=True)
class BisectRequest:
    tree: Path  # a kernel tree under git
    good: str
    bad: str
    test: str | None = None  # a pytest node id of the suite
    script: Path | None = None  # or a shell script to run in the guest


@dataclass(frozen=True)
class BisectReport:
    first_bad: str | None  # the commit, when git found it
    subject: str
    run_dir: Path | None  # where the test failed at that commit
    candidates: list[str]  # when skipped commits left it open: each that may be first
    out: Path  # the bisect's directory (steps.jsonl, each step's runs)


def git(tree: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(tree), *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise InfraError(f"git {' '.join(args)} in {tree}: {done.stderr.strip()}")
    return done.stdout.strip()


def check(request: BisectRequest) -> None:
    """Bad input is refused before anything is built."""
    if (request.test is None) == (request.script is None):
        raise InfraError("give the test to bisect with: a pytest node id after --, or --script")
    if request.test is not None and not (REPO / request.test.split("::", 1)[0]).exists():
        raise InfraError(f"{request.test}: no such test in {REPO}")
    if request.script is not None and not request.script.is_file():
        raise InfraError(f"{request.script}: no such script")
    if not (request.tree / ".git").exists():
        raise InfraError(f"{request.tree} is not a git tree (mkh kernel-tree makes one)")
    if git(request.tree, "status", "--porcelain", "--untracked-files=no"):
        raise InfraError(f"{request.tree} has uncommitted changes; bisect checks out commits")
    for rev in (request.good, request.bad):
        git(request.tree, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")


def pytest_verdict(status: int, verdicts: list[str]) -> int:
    """A pytest run of one test as git bisect takes it; `verdicts`: its runs' result.json."""
    if status == 0:
        return GOOD
    if status != 1:
        return ABORT  # usage error, interrupted, or no such test: nothing to learn
    # Runs that failed only because the guest could not be run say nothing.
    failed = {v for v in verdicts if v != "PASS"}
    return SKIP if failed == {"INFRA"} else BAD


def run_verdict(status: int) -> int:
    """`mkh run --script`'s exit status as git bisect takes it."""
    if status == 0:
        return GOOD
    if status == EXIT_INFRA:
        return SKIP
    if status >= 128:
        return ABORT  # interrupted
    return BAD  # the script failed, the kernel crashed (123) or hung (124)


def _mkh(*args: str) -> list[str]:
    return [sys.executable, "-m", "harness.cli", *args]


def step(tree: Path, out: Path, test: str | None, script: Path | None) -> int:
    """One commit: build, boot, test; what git bisect run is told, also logged to steps.jsonl."""
    commit = git(tree, "rev-parse", "HEAD")
    run_dir = out / f"step-{commit[:12]}"
    if script is not None:
        argv = _mkh("run", "--kernel-tree", str(tree), "--script", str(script))
        verdict = run_verdict(subprocess.call([*argv, "--artifacts", str(run_dir)]))
    elif subprocess.call(_mkh("build", "--kernel-tree", str(tree))) != 0:
        verdict = SKIP  # a commit that does not build
    else:
        argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", f"--basetemp={run_dir}"]
        env = {**os.environ, "MKH_KERNEL_TREE": str(tree)}
        status = subprocess.call([*argv, str(test)], cwd=REPO, env=env)
        results = run_dir.rglob("result.json")
        verdict = pytest_verdict(status, [json.loads(r.read_text())["verdict"] for r in results])
    with (out / STEPS).open("a") as log:
        log.write(json.dumps({"commit": commit, "verdict": verdict, "run_dir": str(run_dir)}))
        log.write("\n")
    return verdict


def bisect(tree: Path, good: str, bad: str, step_argv: list[str], out: Path) -> BisectReport:
    """`git bisect run` of `step_argv` between `good` and `bad`; the tree is reset after."""
    git(tree, "bisect", "start", bad, good)
    try:
        subprocess.call(["git", "-C", str(tree), "bisect", "run", *step_argv])
        log = git(tree, "bisect", "log")
    finally:
        git(tree, "bisect", "reset")
    first = None
    candidates = []
    for line in log.splitlines():
        if line.startswith("# first bad commit: ["):
            first = line.split("[", 1)[1].split("]", 1)[0]
        elif line.startswith("# possible first bad commit: ["):
            candidates.append(line.split("[", 1)[1].split("]", 1)[0])
    if first is None and not candidates:
        raise InfraError(f"git bisect stopped without an answer; its log:\n{log}")
    subject = git(tree, "log", "-1", "--format=%s", first) if first else ""
    return BisectReport(first, subject, _step_run_dir(out, first), candidates, out)


def _step_run_dir(out: Path, commit: str | None) -> Path | None:
    steps = out / STEPS
    if commit is None or not steps.is_file():
        return None
    for line in steps.read_text().splitlines():
        entry = json.loads(line)
        if entry["commit"] == commit:
            return Path(entry["run_dir"])
    return None


def run(request: BisectRequest) -> BisectReport:
    check(request)
    out = cache_dir("results", f"bisect-{time.strftime('%Y%m%d-%H%M%S')}")
    what = ["--test", request.test] if request.test else ["--script", str(request.script)]
    argv = _mkh("_bisect-step", "--tree", str(request.tree), "--out", str(out), *what)
    return bisect(request.tree, request.good, request.bad, argv, out)

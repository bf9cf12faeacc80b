"""Flakes: how often each test passed over repeated runs, and where its failures left their logs.

Pure stages, tested on recorded files: pytest's JUnit XML of a run with
pytest-repeat (`--count N` makes each test N items, `test[1-N]` ...
`test[N-N]`) gives each repetition's outcome; the result.json of every run
directory under the run's basetemp says which failed run left which logs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree import ElementTree

# pytest-repeat's id, the last of a test's parameters: `[1-3]` or `[param-1-3]`.
_REPEAT = re.compile(r"^(?P<base>[^[]*)\[(?:(?P<params>.*)-)?(?P<index>\d+)-(?P<count>\d+)\]$")
PASSED, FAILED, SKIPPED = "passed", "failed", "skipped"
# When one repetition reports twice (a teardown error after its call), the worse counts.
_RANK = {PASSED: 0, SKIPPED: 1, FAILED: 2}


@dataclass(frozen=True)
class Outcome:
    """One repetition of one test."""

    test: str  # its node id without the repetition: tests/unit/test_x.py::test_y[param]
    run: int  # which repetition, from 1
    result: str  # PASSED, FAILED or SKIPPED


@dataclass
class Tally:
    """One test over every repetition."""

    test: str
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    # The repetitions that failed, each with the run directories it left.
    failures: dict[int, list[Path]] = field(default_factory=dict)

    @property
    def runs(self) -> int:
        return self.passed + self.failed + self.skipped

    @property
    def flaky(self) -> bool:
        """It passed and failed: the same test, the same tree."""
        return self.passed > 0 and self.failed > 0


def split_repeat(node_id: str) -> tuple[str, int]:
    """A repeated node id: the test's own id and the repetition (1 when not repeated)."""
    path, sep, name = node_id.rpartition("::")
    match = _REPEAT.match(name)
    if match is None:
        return node_id, 1
    params = match.group("params")
    base = match.group("base") + (f"[{params}]" if params else "")
    return f"{path}{sep}{base}", int(match.group("index"))


def node_id(classname: str, name: str) -> str:
    """pytest's node id of a JUnit testcase (`tests.unit.test_x` + `TestC.test_y`)."""
    parts = classname.split(".")
    module = next((i for i, p in enumerate(parts) if p[:1].isupper()), len(parts))
    path = "/".join(parts[:module]) + ".py"
    return "::".join([path, *parts[module:], name])


def outcomes(junit_xml: str) -> list[Outcome]:
    """Each repetition's outcome; a failure in any phase (teardown too) fails it."""
    results: dict[tuple[str, int], str] = {}
    for case in ElementTree.fromstring(junit_xml).iter("testcase"):
        test, run = split_repeat(node_id(case.get("classname", ""), case.get("name", "")))
        if case.find("failure") is not None or case.find("error") is not None:
            result = FAILED
        elif case.find("skipped") is not None:
            result = SKIPPED
        else:
            result = PASSED
        seen = results.get((test, run), PASSED)
        results[(test, run)] = max(seen, result, key=_RANK.__getitem__)
    return [Outcome(test, run, result) for (test, run), result in results.items()]


def failed_runs(basetemp: Path) -> dict[tuple[str, int], list[Path]]:
    """The run directories under `basetemp` whose result.json says the run did not pass."""
    found: dict[tuple[str, int], list[Path]] = {}
    for result in sorted(basetemp.rglob("result.json")):
        try:
            data = json.loads(result.read_text())
        except (OSError, ValueError):
            continue
        what, verdict = data.get("what"), data.get("verdict")
        if isinstance(what, str) and verdict != "PASS":
            found.setdefault(split_repeat(what), []).append(result.parent)
    return found


def tally(runs: Iterable[Outcome], logs: dict[tuple[str, int], list[Path]]) -> list[Tally]:
    """Per test: flaky ones first, then those that always failed, then the rest, by name."""
    tallies: dict[str, Tally] = {}
    for outcome in runs:
        entry = tallies.setdefault(outcome.test, Tally(outcome.test))
        if outcome.result == FAILED:
            entry.failed += 1
            entry.failures[outcome.run] = logs.get((outcome.test, outcome.run), [])
        elif outcome.result == SKIPPED:
            entry.skipped += 1
        else:
            entry.passed += 1
    return sorted(tallies.values(), key=lambda t: (not t.flaky, t.failed == 0, t.test))


def table(tallies: list[Tally]) -> str:
    """The counts per test, each failure with its run directories, and a summary line."""
    width = max((len(t.test) for t in tallies), default=4)
    lines = [f"{'test':<{width}}  runs  passed  failed  skipped"]
    for t in tallies:
        lines.append(
            f"{t.test:<{width}}  {t.runs:>4}  {t.passed:>6}  {t.failed:>6}  {t.skipped:>7}"
        )
        for run, dirs in sorted(t.failures.items()):
            where = ", ".join(str(d) for d in dirs) or "no run directory (no guest booted)"
            lines.append(f"  run {run} failed: {where}")
    flaky = sum(t.flaky for t in tallies)
    broken = sum(t.failed > 0 and not t.flaky for t in tallies)
    lines.append(
        f"{len(tallies)} tests: {flaky} flaky (passed and failed), {broken} failed every run"
    )
    return "\n".join(lines) + "\n"


def to_json(tallies: list[Tally]) -> str:
    return json.dumps(
        [
            {
                "test": t.test,
                "passed": t.passed,
                "failed": t.failed,
                "skipped": t.skipped,
                "failures": {str(run): [str(d) for d in dirs] for run, dirs in t.failures.items()},
            }
            for t in tallies
        ],
        indent=1,
    )

"""The suite's own layout: what pytest's default import mode needs of it."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def test_no_two_test_modules_share_a_name() -> None:
    # tests/unit and tests/qemu are not packages: pytest imports each test
    # module by its file name, and a second module of that name fails the
    # whole run with "import file mismatch".
    names = Counter(path.name for path in TESTS.rglob("test_*.py"))
    assert [name for name, count in names.items() if count > 1] == []

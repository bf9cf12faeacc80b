"""Kernel config fragments: parse, merge and check that a .config honours them."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from harness.core.errors import HarnessError

_SET = re.compile(r"^(CONFIG_[A-Za-z0-9_]+)=(.*)$")
_UNSET = re.compile(r"^# (CONFIG_[A-Za-z0-9_]+) is not set$")


class ConfigError(HarnessError, ValueError):
    """A fragment is malformed, contradicts another, or was not honoured."""


@dataclass(frozen=True)
class Option:
    name: str
    value: str  # "n" for "# CONFIG_X is not set"
    origin: str  # "file:line" where the fragment asked for it

    def line(self) -> str:
        if self.value == "n":
            return f"# {self.name} is not set"
        return f"{self.name}={self.value}"


def parse_text(text: str, origin: str) -> dict[str, Option]:
    """Parse .config syntax; blank lines and other comments are ignored."""
    options: dict[str, Option] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        where = f"{origin}:{number}"
        if not line:
            continue
        unset = _UNSET.match(line)
        if unset:
            options[unset.group(1)] = Option(unset.group(1), "n", where)
            continue
        if line.startswith("#"):
            continue
        match = _SET.match(line)
        if not match:
            raise ConfigError(f"{where}: not a config line: {raw!r}")
        options[match.group(1)] = Option(match.group(1), match.group(2), where)
    return options


def merge_fragments(paths: list[Path]) -> dict[str, Option]:
    """Merge fragments in order; two fragments disagreeing on an option is an error."""
    merged: dict[str, Option] = {}
    for path in paths:
        for name, opt in parse_text(path.read_text(), str(path)).items():
            earlier = merged.get(name)
            if earlier and earlier.value != opt.value:
                raise ConfigError(
                    f"{name} is {earlier.value} in {earlier.origin} but {opt.value} in {opt.origin}"
                )
            merged[name] = opt
    return merged


def render(options: dict[str, Option]) -> str:
    return "".join(opt.line() + "\n" for opt in options.values())


def missing(wanted: dict[str, Option], config_text: str) -> list[str]:
    """Describe every wanted option the final .config does not have as asked."""
    actual = {name: opt.value for name, opt in parse_text(config_text, ".config").items()}
    problems = []
    for name, opt in wanted.items():
        got = actual.get(name, "n")
        if got != opt.value:
            problems.append(f"{name}={opt.value} (from {opt.origin}) ended up {name}={got}")
    return problems

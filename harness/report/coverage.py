"""Coverage from an lcov tracefile: per file, the lines and functions the suite reached.

Pure stages on the tracefile's text (`geninfo`'s format: a record per source
file from `SF:` to `end_of_record`, `DA:line,count` per line and
`FN:line,name` with `FNDA:count,name` per function), tested on recorded
tracefiles: the records of the profiled files, pointed at the sources kept
with the image; the figures per file; the one-screen summary.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class FileCoverage:
    """One source file's counts: per line, and per function (its first line and count)."""

    path: str
    lines: dict[int, int] = field(default_factory=dict)
    functions: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def lines_hit(self) -> int:
        return sum(1 for count in self.lines.values() if count > 0)

    @property
    def functions_hit(self) -> int:
        return sum(1 for _, count in self.functions.values() if count > 0)

    def unreached(self) -> list[tuple[int, str]]:
        """(first line, name) of each function never entered, in line order."""
        return sorted((line, name) for name, (line, count) in self.functions.items() if not count)


def relocate(text: str, place: Callable[[str], str | None]) -> str:
    """The tracefile with each record's SF: path replaced by place(path); None drops the record.

    Inline functions of headers show up as records of their own: the
    caller keeps only the profiled files.
    """
    out: list[str] = []
    record: list[str] = []
    keep = True
    for line in text.splitlines():
        if line.startswith("SF:"):
            where = place(line[3:])
            keep = where is not None
            line = f"SF:{where}"
        record.append(line)
        if line == "end_of_record":
            if keep:
                out += record
            record, keep = [], True
    return "".join(f"{line}\n" for line in out)


def parse(text: str) -> list[FileCoverage]:
    """The files of a tracefile, counts of a file named twice summed, in path order."""
    files: dict[str, FileCoverage] = {}
    current: FileCoverage | None = None
    first_lines: dict[str, int] = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key == "SF":
            current = files.setdefault(value, FileCoverage(value))
            first_lines = {}
        elif current is None:
            continue
        elif key == "DA":
            number, count = value.split(",")[:2]
            current.lines[int(number)] = current.lines.get(int(number), 0) + int(count)
        elif key == "FN":
            number, name = value.split(",", 1)
            first_lines[name] = int(number)
        elif key == "FNDA":
            count, name = value.split(",", 1)
            start = first_lines.get(name, current.functions.get(name, (0, 0))[0])
            before = current.functions.get(name, (start, 0))[1]
            current.functions[name] = (start, before + int(count))
        elif line == "end_of_record":
            current = None
    return [files[path] for path in sorted(files)]


def _percent(hit: int, found: int) -> str:
    return f"{100 * hit / found:5.1f}%" if found else "    -"


def summary(files: list[FileCoverage], kernels: dict[str, int], root: str = "") -> str:
    """The one-screen table (lines and functions hit per file) and the functions never reached.

    `kernels` counts the kernels whose counts were summed, by kind; paths
    are shown relative to `root`.
    """
    names = [f.path.removeprefix(root) for f in files]
    width = max([len(n) for n in names] + [len("total")])
    head = f"{'file':<{width}}  {'lines hit':<18}  {'functions hit':<16}"
    rows = [head, "-" * len(head)]
    totals = [0, 0, 0, 0]
    for name, f in zip(names, files, strict=True):
        figures = (f.lines_hit, len(f.lines), f.functions_hit, len(f.functions))
        totals = [a + b for a, b in zip(totals, figures, strict=True)]
        rows.append(_row(name, width, *figures))
    rows += ["-" * len(head), _row("total", width, *totals)]
    summed = ", ".join(f"{count} {kind}" for kind, count in sorted(kernels.items()))
    rows += ["", f"counts of {sum(kernels.values())} kernels summed ({summed or 'none'})"]
    for name, f in zip(names, files, strict=True):
        missed = f.unreached()
        if missed:
            rows += ["", f"never reached in {name} ({len(missed)}):"]
            rows += [f"  {line:>5}  {function}" for line, function in missed]
    return "\n".join(rows) + "\n"


def _row(name: str, width: int, lh: int, lf: int, fh: int, ff: int) -> str:
    return (
        f"{name:<{width}}  {lh:>5}/{lf:<5} {_percent(lh, lf)}  {fh:>4}/{ff:<4} {_percent(fh, ff)}"
    )


def to_json(files: list[FileCoverage], root: str = "") -> str:
    rows = [
        {
            "file": f.path.removeprefix(root),
            "lines_hit": f.lines_hit,
            "lines": len(f.lines),
            "functions_hit": f.functions_hit,
            "functions": len(f.functions),
            "never_reached": [name for _, name in f.unreached()],
        }
        for f in files
    ]
    return json.dumps(rows, indent=1) + "\n"

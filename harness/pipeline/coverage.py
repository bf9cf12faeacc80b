"""`mkh coverage` from its request: the suite on the coverage kernel, every kernel's counts summed.

The coverage build (images/linux/coverage/) profiles the multikernel code.
pytest runs the tests on it (MKH_COVERAGE_KERNEL=1) as `make test` does;
each kernel's counts land in its run's directory (harness/target/coverage.py).
Then, in the results directory:

1. each kernel's .gcda files, under the paths the build's notes have;
   counts of another build are left out, saying how many;
2. gcov-tool sums them (the kernels are one build, so the sum is exact);
3. lcov turns the sum, with a zero baseline from the notes (so a file no
   kernel reached still shows), into a tracefile pointed at the sources
   kept with the image; genhtml makes the HTML report;
4. the summary: per file the lines and functions hit, then the functions
   never reached (harness/report/coverage.py).
"""

from __future__ import annotations

import os
import shutil
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

from harness.build import gcov, images
from harness.core import hostcmd
from harness.core.errors import InfraError
from harness.core.paths import cache_dir
from harness.core.progress import note, step
from harness.pipeline import suite
from harness.report import coverage
from harness.report.coverage import FileCoverage
from harness.target.coverage import RUN_SUBDIR, SUFFIX

DEFAULT_TESTS = "tests/qemu"
# The tests of the kernel under test: not those booting kernels of their own.
DEFAULT_MARKER = "qemu and not own_kernel"
TOOLS = {"lcov": "lcov", "genhtml": "lcov", "gcov-tool": "gcc", "gcov": "gcc"}
# lcov's own settings: no branch counts (the kernel's are mostly its macros').
LCOV_RC = ["--rc", "lcov_branch_coverage=0"]


@dataclass(frozen=True)
class CoverageRequest:
    """Which tests, on how many workers, on which kernel tree (None: the series)."""

    tests: tuple[str, ...]
    jobs: int
    marker: str | None = None
    tree: Path | None = None
    basetemp: Path | None = None  # where the runs go; None: in the results directory


@dataclass(frozen=True)
class Kernels:
    """The kernels whose counts a report sums, and those of other builds left out."""

    dirs: list[Path]  # one directory of .gcda files per kernel
    kinds: dict[str, int]
    other_builds: int


@dataclass(frozen=True)
class CoverageReport:
    files: list[FileCoverage]
    summary: Path
    html: Path
    out: Path
    pytest_status: int


def check(request: CoverageRequest) -> None:
    """Bad input and missing tools are refused before anything is built."""
    suite.check_tests(request.tests, request.jobs)
    check_tools()


def check_tools() -> None:
    missing = sorted({pkg for tool, pkg in TOOLS.items() if shutil.which(tool) is None})
    if missing:
        raise InfraError(f"mkh coverage needs lcov and gcov: apt-get install {' '.join(missing)}")


def pytest_argv(request: CoverageRequest, junit: Path, basetemp: Path) -> list[str]:
    return suite.pytest_argv(request.tests, request.jobs, request.marker, junit, basetemp)


def run(request: CoverageRequest) -> CoverageReport:
    """Build the coverage kernel, run the tests on it (pytest's progress shown), report."""
    check(request)
    choice = images.kernel_choice(tree=request.tree, coverage=True)
    notes = coverage_build(choice)
    out = results_dir()
    basetemp = request.basetemp or out / "runs"
    # The tests boot the same build: the same tree, variants from the same environment.
    env = {**os.environ, "MKH_COVERAGE_KERNEL": "1"}
    env.pop("MKH_KERNEL_TREE", None)
    if choice.tree is not None:
        env["MKH_KERNEL_TREE"] = str(choice.tree)
    junit = out / "junit.xml"
    status = suite.run_pytest(pytest_argv(request, junit, basetemp), junit, env)
    return report(basetemp, notes, out, status)


def coverage_build(choice: images.KernelChoice) -> Path:
    """The coverage kernel of a choice (kernel_choice(coverage=True)) built or reused; its notes."""
    built = images.resolve(choice)
    notes = gcov.notes(built.kernel)
    if notes is None:
        raise InfraError(f"{built.kernel} has no gcov notes: it is not a coverage build")
    return notes


def results_dir() -> Path:
    return cache_dir("results", f"coverage-{time.strftime('%Y%m%d-%H%M%S')}")


def report_saved(runs: Path, tree: Path | None = None) -> CoverageReport:
    """The report of the counts runs under `runs` saved, on the coverage kernel of `tree`.

    For runs made outside `mkh coverage` (MKH_COVERAGE_KERNEL=1 make
    test-qemu, or mkh run); nothing is run again.
    """
    if not runs.is_dir():
        raise InfraError(f"--from {runs}: no such directory")
    check_tools()
    choice = images.kernel_choice(tree=tree, coverage=True)
    return report(runs, coverage_build(choice), results_dir())


def report(runs: Path, notes: Path, out: Path, status: int = 0) -> CoverageReport:
    """The report of the counts saved under `runs`, made in `out` (lcov's log: out/lcov.log)."""
    log = out / "lcov.log"
    log.unlink(missing_ok=True)
    with step(f"Summing the kernels' gcov counts (log: {log})"):
        kernels = gather(runs, notes, out / "kernels")
        if not kernels.dirs:
            raise InfraError(f"no kernel of this build saved gcov counts under {runs}")
        if kernels.other_builds:
            note(f"left out the counts of {kernels.other_builds} kernels of another build")
        summed = merge(kernels.dirs, out / "summed", log)
        tracefile = capture(summed, notes, out, log)
    html = out / "html"
    with step(f"Writing the HTML report ({html})"):
        hostcmd.run_logged(
            ["genhtml", *LCOV_RC, "--quiet", "--prefix", notes / "source", "-o", html, tracefile],
            log,
            what="genhtml",
        )
    files = coverage.parse(tracefile.read_text())
    root = f"{notes / 'source'}/"
    summary = out / "summary.txt"
    summary.write_text(coverage.summary(files, kernels.kinds, root))
    (out / "coverage.json").write_text(coverage.to_json(files, root))
    return CoverageReport(files, summary, html / "index.html", out, status)


def gather(runs: Path, notes: Path, dest: Path) -> Kernels:
    """Each kernel's .gcda files (its newest read), at the paths of the build's notes, in `dest`."""
    objtree = (notes / gcov.OBJTREE).read_text().strip().lstrip("/")
    profiled = {
        p.relative_to(notes / "notes").with_suffix(""): _stamp(p.read_bytes())
        for p in notes.rglob("*.gcno")
    }
    newest: dict[str, Path] = {}
    for saved in runs.rglob(f"{RUN_SUBDIR}/*{SUFFIX}"):
        boot_id = saved.name.removesuffix(SUFFIX)
        if boot_id not in newest or saved.stat().st_mtime > newest[boot_id].stat().st_mtime:
            newest[boot_id] = saved
    shutil.rmtree(dest, ignore_errors=True)
    dirs: list[Path] = []
    kinds: dict[str, int] = {}
    other = 0
    for boot_id, saved in sorted(newest.items()):
        kernel_dir = dest / boot_id
        if not _unpack(saved, objtree, profiled, kernel_dir):
            other += 1
            continue
        dirs.append(kernel_dir)
        label = saved.with_name(f"{boot_id}.kernel")
        kind = label.read_text().split()[0] if label.is_file() else "unknown"
        kinds[kind] = kinds.get(kind, 0) + 1
    return Kernels(dirs, kinds, other)


def _stamp(data: bytes) -> bytes:
    """gcc's compile stamp in a .gcno or .gcda header (after magic and version)."""
    return data[8:12]


def _unpack(saved: Path, objtree: str, profiled: dict[Path, bytes], dest: Path) -> bool:
    """The .gcda files of a saved read under `dest`; False if they are another build's.

    Another build: its files are under another build directory, or one of
    them was compiled apart from the notes (their stamps differ).
    """
    counts: dict[Path, bytes] = {}
    with tarfile.open(saved, mode="r:gz") as tar:
        for member in tar.getmembers():
            name = member.name.removeprefix("./")
            if not member.isfile() or not name.startswith(f"{objtree}/"):
                continue
            rel = Path(name.removeprefix(f"{objtree}/")).with_suffix("")
            handle = tar.extractfile(member)
            if rel in profiled and handle is not None:
                counts[rel] = handle.read()
    if not counts or any(_stamp(data) != profiled[rel] for rel, data in counts.items()):
        return False
    for rel, data in counts.items():
        target = dest / rel.with_suffix(".gcda")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return True


def merge(dirs: list[Path], dest: Path, log: Path) -> Path:
    """The sum of the kernels' counts (gcov-tool merge, two at a time) in `dest`."""
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(dirs[0], dest)
    for kernel_dir in dirs[1:]:
        hostcmd.run_logged(
            ["gcov-tool", "merge", kernel_dir, dest, "-o", dest], log, what="gcov-tool merge"
        )
    return dest


def capture(summed: Path, notes: Path, out: Path, log: Path) -> Path:
    """lcov's tracefile of the summed counts plus a zero baseline, pointed at the kept sources."""
    for gcno in (notes / "notes").rglob("*.gcno"):
        target = summed / gcno.relative_to(notes / "notes")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(gcno, target)
    base: list[str | os.PathLike[str]] = ["lcov", *LCOV_RC, "--quiet", "--directory", summed]
    baseline, counted, total = out / "baseline.info", out / "counted.info", out / "total.info"
    hostcmd.run_logged([*base, "--capture", "--initial", "-o", baseline], log, what="lcov")
    hostcmd.run_logged([*base, "--capture", "-o", counted], log, what="lcov")
    hostcmd.run_logged(
        ["lcov", *LCOV_RC, "--quiet", "-a", baseline, "-a", counted, "-o", total], log, what="lcov"
    )
    sources = notes / "source"
    known = {p.relative_to(sources).as_posix() for p in sources.rglob("*.c")}

    def place(path: str) -> str | None:
        rel = next((k for k in known if path == k or path.endswith(f"/{k}")), None)
        return str(sources / rel) if rel else None

    tracefile = out / "coverage.info"
    tracefile.write_text(coverage.relocate(total.read_text(), place))
    return tracefile

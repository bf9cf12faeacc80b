"""mkh coverage: saved reads of gcov counts, summed and reported, on real gcc and lcov output.

The kernel's counts are the .gcda files gcc's profiling writes; a program
compiled here with --coverage gives real ones, run as two "kernels" of one
build (a host and an instance) that reach different functions.
"""

from __future__ import annotations

import base64
import io
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from harness.build import gcov, images
from harness.cli import main
from harness.core.errors import InfraError
from harness.core.rundir import RunDir
from harness.pipeline import coverage as pipeline
from harness.pipeline.coverage import CoverageRequest
from harness.report import coverage
from harness.target import coverage as reads

FIXTURES = Path(__file__).parent / "fixtures" / "coverage"
SAMPLE = FIXTURES / "sample.c"
HOST_ID = "0a6e3f7c-54a1-4b5e-9d0f-3c1d2e4f5a6b"
INSTANCE_ID = "7b1c9d2e-1111-4c2d-8e3f-4a5b6c7d8e9f"
needs_lcov = pytest.mark.skipif(
    shutil.which("lcov") is None, reason="lcov is not installed (make setup installs it)"
)


def packed(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def printed(boot_id: str, data: bytes) -> str:
    """What READ prints on a console: the boot id, then base64 in lines of 76."""
    text = base64.encodebytes(data).decode().replace("\n", "\r\n")
    return f"{boot_id}\r\n{text}"


class Kernel:
    """A CommandProtocol that answers READ as a kernel with these .gcda files would."""

    def __init__(self, boot_id: str, files: dict[str, bytes]) -> None:
        self.boot_id, self.files, self.name = boot_id, files, "ttyS1"

    def check(self, command: str, timeout: float = 60.0) -> str:
        assert command == reads.READ and timeout == reads.READ_TIMEOUT
        return printed(self.boot_id, packed(self.files))


def test_a_read_is_named_by_its_kernel_boot_and_a_later_one_replaces_it(tmp_path: Path) -> None:
    with RunDir(tmp_path / "run") as run:
        first = Kernel(HOST_ID, {"./root/build/kernel/multikernel/core.gcda": b"old"})
        path = reads.save(first, run, "host")  # type: ignore[arg-type]
        later = Kernel(HOST_ID, {"./root/build/kernel/multikernel/core.gcda": b"new"})
        assert reads.save(later, run, "host") == path  # type: ignore[arg-type]
        assert path == run.file("gcov") / f"{HOST_ID}.tar.gz"
        with tarfile.open(path) as tar:
            member = tar.extractfile("./root/build/kernel/multikernel/core.gcda")
            assert member is not None and member.read() == b"new"
        assert path.with_name(f"{HOST_ID}.kernel").read_text() == "host\n"
        assert sorted(p.name for p in run.file("gcov").iterdir()) == [
            f"{HOST_ID}.kernel",
            f"{HOST_ID}.tar.gz",
        ]


def test_kernel_messages_between_the_lines_of_a_read_are_left_out() -> None:
    recorded = (FIXTURES / "mkcon-read.txt").read_text()
    assert "clocksource" in recorded  # the instance's kernel logged in the middle
    boot_id, data = reads.decode(recorded, "instance mkcon1")
    assert boot_id == "df8bb968-629e-46f4-8992-714cfef9cd44"
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        names = tar.getnames()
    assert any(name.endswith("/kernel/multikernel/kho.gcda") for name in names), names


def test_a_read_broken_by_a_kernel_message_is_read_again(tmp_path: Path) -> None:
    good = printed(HOST_ID, packed({"./b/kernel/multikernel/core.gcda": b"x" * 4000}))
    lines = good.split("\r\n")
    # A message printed in the middle of a base64 line: the line is left out.
    lines[2] = lines[2][:30] + "[    7.2] clocksource: tsc unstable" + lines[2][30:]
    broken = "\r\n".join(lines)
    with pytest.raises(reads.Damaged):
        reads.decode(broken, "instance mkcon1")

    class Flaky(Kernel):
        def __init__(self, answers: list[str]) -> None:
            super().__init__(HOST_ID, {})
            self.answers = answers

        def check(self, command: str, timeout: float = 60.0) -> str:
            return self.answers.pop(0)

    with RunDir(tmp_path / "run") as run:
        assert reads.save(Flaky([broken, good]), run, "instance mkcon1").is_file()  # type: ignore[arg-type]
        with pytest.raises(reads.Damaged):
            reads.save(Flaky([broken] * reads.READ_ATTEMPTS), run, "instance mkcon1")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("sh: can't open /proc/sys/kernel/random/boot_id\r\n", "gave no boot id"),
        (f"{HOST_ID}\r\n!!not base64!!\r\n", "came back damaged"),
        (f"{HOST_ID}\r\n{base64.b64encode(b'not a tarball').decode()}\r\n", "came back damaged"),
        (printed(HOST_ID, packed({"./x/core.gcno": b"n"})), "has no .gcda files"),
    ],
)
def test_a_damaged_read_is_refused(text: str, why: str) -> None:
    with pytest.raises(InfraError, match=why):
        reads.decode(text, "instance ttyS1")


def build_sample(objtree: Path) -> Path:
    """sample.c compiled as Kbuild would, kernel/sample.o in `objtree`; the program."""
    objtree.mkdir(parents=True)
    source = objtree / "kernel" / "sample.c"
    source.parent.mkdir()
    shutil.copyfile(SAMPLE, source)
    obj, program = source.with_suffix(".o"), objtree / "sample"
    subprocess.run(["gcc", "--coverage", "-O0", "-c", "-o", obj, source], check=True)
    subprocess.run(["gcc", "--coverage", "-o", program, obj], check=True)
    return program


def kernel_run(program: Path, argument: str, objtree: Path) -> bytes:
    """The .gcda one run of the program leaves (removed, as a new kernel starts at zero)."""
    subprocess.run([program, argument], check=False)
    gcda = objtree / "kernel" / "sample.gcda"
    data = gcda.read_bytes()
    gcda.unlink()
    return data


def saved_read(run: Path, boot_id: str, kind: str, objtree: Path, gcda: bytes) -> None:
    out = run / "gcov"
    out.mkdir(parents=True, exist_ok=True)
    name = f".{objtree}/kernel/sample.gcda"
    (out / f"{boot_id}.tar.gz").write_bytes(packed({name: gcda}))
    (out / f"{boot_id}.kernel").write_text(f"{kind} ttyS0\n")


@needs_lcov
def test_the_counts_of_a_host_and_an_instance_are_summed_into_one_report(tmp_path: Path) -> None:
    objtree = tmp_path / "build"
    program = build_sample(objtree)
    host, instance = kernel_run(program, "3", objtree), kernel_run(program, "0", objtree)
    notes = gcov.keep(objtree, objtree)
    runs = tmp_path / "runs"
    saved_read(runs / "test_a" / "run0", HOST_ID, "host", objtree, host)
    saved_read(runs / "test_b" / "run0", INSTANCE_ID, "instance", objtree, instance)
    # A kernel of another build (another objtree) is left out, not summed.
    saved_read(runs / "test_c" / "run0", "1" * 36, "host", tmp_path / "other", host)

    report = pipeline.report(runs, notes, tmp_path / "out")

    [sample] = report.files
    assert sample.path == str(notes / "source" / "kernel" / "sample.c")
    # Each kernel reached one of host_only and instance_only: together, both.
    assert sample.functions["host_only"][1] == 1
    assert sample.functions["instance_only"][1] == 1
    assert sample.functions["main"][1] == 2
    assert sample.unreached() == [(sample.functions["never_called"][0], "never_called")]
    # Unreached lines: never_called's opening and return, and its call in main.
    assert {line for line, count in sample.lines.items() if not count} == {15, 17, 27}
    assert sample.lines[25] == 1 and sample.lines[22] == 2  # host_only's call; main's first
    text = report.summary.read_text()
    assert "kernel/sample.c" in text and "counts of 2 kernels summed (1 host, 1 instance)" in text
    assert "never reached in kernel/sample.c (1):" in text and "never_called" in text
    assert report.html.name == "index.html" and ">kernel</a>" in report.html.read_text()
    page = (report.html.parent / "kernel" / "sample.c.gcov.html").read_text()
    assert "never_called" in page


@needs_lcov
def test_no_counts_of_this_build_is_an_error_naming_where_it_looked(tmp_path: Path) -> None:
    objtree = tmp_path / "build"
    program = build_sample(objtree)
    earlier = kernel_run(program, "1", objtree)
    # The same build directory, built again: its counts no longer fit the notes.
    source = objtree / "kernel" / "sample.c"
    subprocess.run(
        ["gcc", "--coverage", "-O0", "-c", "-o", source.with_suffix(".o"), source], check=True
    )
    notes = gcov.keep(objtree, objtree)
    runs = tmp_path / "runs"
    saved_read(runs / "a", HOST_ID, "host", objtree, earlier)
    saved_read(runs / "b", INSTANCE_ID, "instance", tmp_path / "other", earlier)
    with pytest.raises(InfraError, match=f"no kernel of this build saved gcov counts under {runs}"):
        pipeline.report(runs, notes, tmp_path / "out")
    kernels = pipeline.gather(runs, notes, tmp_path / "kernels")
    assert (kernels.dirs, kernels.other_builds) == ([], 2)


def test_a_build_without_profiled_files_is_refused(tmp_path: Path) -> None:
    (tmp_path / "kernel").mkdir()
    (tmp_path / "kernel" / "core.c").write_text("int x;\n")
    with pytest.raises(InfraError, match="CONFIG_GCOV_PROFILE_MULTIKERNEL"):
        gcov.keep(tmp_path, tmp_path)


def test_the_notes_are_found_next_to_a_cached_image_or_in_a_build(tmp_path: Path) -> None:
    cached = tmp_path / "kernel-abc" / "bzImage"
    (cached.parent / "gcov" / "notes").mkdir(parents=True)
    assert gcov.notes(cached) == cached.parent / "gcov"
    built = tmp_path / "build" / "arch" / "x86" / "boot" / "bzImage"
    built.parent.mkdir(parents=True)
    assert gcov.notes(built) is None
    (tmp_path / "build" / "mkh-gcov" / "notes").mkdir(parents=True)
    assert gcov.notes(built) == tmp_path / "build" / "mkh-gcov"


def test_only_a_gcov_kernel_config_is_profiled(tmp_path: Path) -> None:
    config = tmp_path / ".config"
    config.write_text("CONFIG_MULTIKERNEL=y\n# CONFIG_GCOV_KERNEL is not set\n")
    assert not gcov.profiled(config) and not gcov.profiled(None)
    config.write_text("CONFIG_MULTIKERNEL=y\nCONFIG_GCOV_KERNEL=y\n")
    assert gcov.profiled(config)


def test_the_coverage_build_is_a_variant_refused_for_a_prebuilt_kernel(tmp_path: Path) -> None:
    assert images.kernel_choice(env={"MKH_COVERAGE_KERNEL": "1"}).variants == ("coverage",)
    both = {"MKH_COVERAGE_KERNEL": "1", "MKH_DEBUG_KERNEL": "1"}
    assert images.kernel_choice(env=both).variants == ("debug", "coverage")
    fake = tmp_path / "bzImage"
    fake.write_bytes(b"\0" * 0x202 + b"HdrS" + b"\0" * 64)
    with pytest.raises(InfraError, match="mkh coverage cannot apply to a prebuilt kernel"):
        images.kernel_choice(prebuilt=fake, coverage=True, env={})


def test_the_coverage_fragment_needs_the_series() -> None:
    from harness.build import kernel

    [fragment] = [
        f for f in kernel.fragments(variants=("coverage",)) if f.parent.name == "coverage"
    ]
    assert kernel.requirement(fragment) == "kernel/multikernel/Kconfig"
    text = fragment.read_text()
    assert "CONFIG_GCOV_KERNEL=y" in text and "CONFIG_GCOV_PROFILE_MULTIKERNEL=y" in text


def test_bad_requests_are_refused_before_anything_is_built(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(InfraError, match="no such test file"):
        pipeline.check(CoverageRequest(("tests/qemu/test_nothing.py",), 2))
    with pytest.raises(InfraError, match="--jobs"):
        pipeline.check(CoverageRequest(("tests/qemu",), 0))
    monkeypatch.setattr(shutil, "which", lambda tool: None)
    with pytest.raises(InfraError, match="apt-get install gcc lcov"):
        pipeline.check(CoverageRequest(("tests/qemu",), 2))


def test_mkh_coverage_from_runs_takes_no_tests_to_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["coverage", "--from", str(tmp_path), "tests/qemu"]) != 0
    assert "--from reports runs made already" in capsys.readouterr().err


def test_mkh_coverage_from_a_missing_directory_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["coverage", "--from", str(tmp_path / "nowhere")]) != 0
    assert f"--from {tmp_path / 'nowhere'}: no such directory" in capsys.readouterr().err


def test_a_tracefile_keeps_only_the_profiled_files_pointed_at_the_kept_sources() -> None:
    text = (
        "TN:\nSF:/src/linux/include/linux/list.h\nDA:10,4\nend_of_record\n"
        "TN:\nSF:/src/linux/kernel/multikernel/core.c\nFN:3,mk_a\nFNDA:0,mk_a\n"
        "DA:3,0\nDA:4,2\nend_of_record\n"
    )

    def place(path: str) -> str | None:
        return "/kept/kernel/multikernel/core.c" if path.endswith("/core.c") else None

    kept = coverage.relocate(text, place)
    assert "list.h" not in kept
    [core] = coverage.parse(kept)
    assert core.path == "/kept/kernel/multikernel/core.c"
    assert (core.lines, core.functions) == ({3: 0, 4: 2}, {"mk_a": (3, 0)})
    assert core.unreached() == [(3, "mk_a")]

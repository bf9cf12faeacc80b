import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness import cli
from harness.build import images
from harness.build.images import Images
from harness.cli import args as cli_args
from harness.cli import kernel as cli_kernel
from harness.core import paths
from harness.core.errors import (
    EXIT_CRASH,
    EXIT_INFRA,
    EXIT_TIMEOUT,
    ConnectionLost,
    GuestCommandFailed,
    GuestExited,
    GuestTimeout,
    InfraError,
    KernelCrash,
)
from harness.core.paths import REPO
from harness.target.options import MAX_SMP
from tests.unit.fakes import fake_bzimage

MAKE = shutil.which("make") or "make"
# Programs that building or booting runs: the fakes on PATH leave a trace.
TRACED = ("make", "apt-get", "qemu-system-x86_64")


def fake_tree(path: Path) -> Path:
    path.mkdir()
    (path / "Makefile").write_text("VERSION = 6\nPATCHLEVEL = 12\nSUBLEVEL = 0\n")
    return path


class Sandbox:
    """`mkh` as a subprocess with its own cache and tracing fakes of make, apt-get and QEMU."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.cache = root / "cache"
        self.bin = root / "bin"
        self.trace = root / "trace"
        self.bin.mkdir()
        for name in TRACED:
            tool = self.bin / name
            tool.write_text(f"#!/bin/sh\necho {name} >> {self.trace}\nexit 1\n")
            tool.chmod(0o755)

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MKH_KERNEL")}
        env.update(PATH=f"{self.bin}:{os.environ['PATH']}", MKH_CACHE=str(self.cache))
        env.update(extra)
        return env

    def mkh(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "harness.cli", *args],
            capture_output=True,
            text=True,
            env=self.env(**env),
            cwd=REPO,
            timeout=120,
            check=False,
        )

    def traces(self) -> list[str]:
        return self.trace.read_text().split() if self.trace.exists() else []


@pytest.fixture
def sandbox(tmp_path: Path) -> Sandbox:
    return Sandbox(tmp_path)


@pytest.fixture
def resolved(monkeypatch: pytest.MonkeyPatch) -> list[images.KernelChoice]:
    """In-process runs stop at images.resolve, which records its choice and builds nothing."""
    monkeypatch.delenv("MKH_KERNEL", raising=False)
    monkeypatch.delenv("MKH_KERNEL_TREE", raising=False)
    asked: list[images.KernelChoice] = []

    def resolve(choice: images.KernelChoice) -> Images:
        asked.append(choice)
        raise InfraError("stopped at images.resolve")

    monkeypatch.setattr(images, "resolve", resolve)
    return asked


def test_put_spec_parses_and_rejects(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("x").write_text("x")
    assert cli_args.put_spec("./x:/tmp/x") == (Path("./x"), "/tmp/x")
    for bad in ("x", ":/tmp/x", "x:", "y:/tmp/y", "x:tmp/x", "x:/tmp/../x"):
        with pytest.raises(argparse.ArgumentTypeError):
            cli_args.put_spec(bad)


def parse(*argv: str) -> argparse.Namespace:
    return cli.parser().parse_args(list(argv))


def test_one_word_is_a_shell_line_and_several_are_an_argv() -> None:
    assert cli_args.command_line(parse("run", "--", "echo a | wc -c")) == "echo a | wc -c"
    assert cli_args.command_line(parse("run", "--", "sh", "-c", "exit 7")) == "sh -c 'exit 7'"
    assert cli_args.command_line(parse("run", "nproc")) == "nproc"
    assert (
        cli_args.command_line(parse("exec", "dev", "--", "sh", "-c", "exit 7")) == "sh -c 'exit 7'"
    )
    with pytest.raises(InfraError, match=r"nothing to run: give -- COMMAND"):
        cli_args.command_line(parse("exec", "dev"))


def test_run_options_reach_the_guest_options(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("a").write_text("a")
    args = parse(
        "run",
        "--smp",
        "2",
        "--memory",
        "512M",
        "--append",
        "quiet",
        "--put",
        "a:/b",
        "--accel",
        "tcg",
        "--",
        "true",
    )
    opts = cli_args.target_options(args)
    assert (opts.smp, opts.memory, opts.append, opts.accel) == (2, "512M", "quiet", "tcg")
    assert opts.put == [(Path("a"), "/b")]
    assert opts.threads == 1


def test_smp_takes_qemus_threads_per_core() -> None:
    opts = cli_args.target_options(parse("run", "--smp", "4,threads=2", "--", "true"))
    assert (opts.smp, opts.threads) == (4, 2)


@pytest.mark.parametrize(
    ("error", "code", "text"),
    [
        (
            KernelCrash("ttyS0", "panic", "Kernel panic - not syncing: x", "ctx\nKernel panic"),
            EXIT_CRASH,
            "Kernel panic",
        ),
        (GuestTimeout("ttyS0", "sleep", 3, "tail text"), EXIT_TIMEOUT, "tail text"),
        (InfraError("qemu missing"), EXIT_INFRA, "qemu missing"),
        (GuestExited("ttyS0", "reset"), EXIT_CRASH, "QEMU exited"),
        (ConnectionLost("ssh", "no SSH session"), EXIT_INFRA, "while the guest still runs"),
        # A command the harness needed failing is the harness's failure, not a FAIL.
        (GuestCommandFailed("ttyS0", "mkctl", 2, "EBUSY"), EXIT_INFRA, "EBUSY"),
    ],
)
def test_errors_map_to_documented_exit_codes(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    error: Exception,
    code: int,
    text: str,
) -> None:
    def fail(args: argparse.Namespace) -> int:
        raise error

    monkeypatch.setattr(cli_kernel, "cmd_build", fail)
    assert cli.main(["build"]) == code
    assert text in capsys.readouterr().err


def test_exit_codes_are_distinct_and_documented() -> None:
    assert len({EXIT_CRASH, EXIT_TIMEOUT, EXIT_INFRA}) == 3
    repo = Path(__file__).parents[2]
    readme = (repo / "README.md").read_text()
    results = (repo / "docs" / "runs-and-results.md").read_text()
    for code in (EXIT_CRASH, EXIT_TIMEOUT, EXIT_INFRA, 130, 143, 129):
        assert f"`{code}`" in readme
        assert f"`{code}`" in results
    for verdict in ("PASS", "FAIL", "CRASH", "TIMEOUT", "INFRA", "INTERRUPTED"):
        assert f"`{verdict}`" in results


def test_build_takes_mkh_kernel_and_builds_nothing(sandbox: Sandbox) -> None:
    kernel = fake_bzimage(sandbox.root / "bzImage")
    done = sandbox.mkh("build", MKH_KERNEL=str(kernel))
    assert done.returncode == 0, done.stderr
    assert f"kernel: {kernel}" in done.stdout.splitlines()
    assert sandbox.traces() == []


def test_make_passes_mkh_kernel_from_its_command_line(sandbox: Sandbox) -> None:
    kernel = fake_bzimage(sandbox.root / "bzImage")
    # -o setup: leave the virtualenv alone; the recipe under test is `build`.
    done = subprocess.run(
        [MAKE, "-s", "-o", "setup", "build", f"MKH_KERNEL={kernel}"],
        capture_output=True,
        text=True,
        env=sandbox.env(),
        cwd=REPO,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert f"kernel: {kernel}" in done.stdout.splitlines()
    assert sandbox.traces() == []


@pytest.mark.parametrize("verb", ["build", "run", "shell", "bench"])
def test_every_kernel_command_takes_the_env_and_flags_win(
    resolved: list[images.KernelChoice],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    verb: str,
) -> None:
    kernel = fake_bzimage(tmp_path / "bzImage")
    tree = fake_tree(tmp_path / "linux")
    tail = {"run": ["--", "true"]}.get(verb, [])
    words = {"bench": ["bench", "spawn"]}.get(verb, [verb])

    monkeypatch.setenv("MKH_KERNEL", str(kernel))
    cli.main([*words, *tail])
    assert resolved[-1] == images.KernelChoice(prebuilt=kernel)
    cli.main([*words, "--kernel-tree", str(tree), *tail])
    assert resolved[-1] == images.KernelChoice(tree=tree)

    monkeypatch.delenv("MKH_KERNEL")
    monkeypatch.setenv("MKH_KERNEL_TREE", str(tree))
    cli.main([*words, *tail])
    assert resolved[-1] == images.KernelChoice(tree=tree)
    cli.main([*words, "--kernel", str(kernel), *tail])
    assert resolved[-1] == images.KernelChoice(prebuilt=kernel)
    assert len(resolved) == 4


def test_both_kernel_variables_are_an_error(
    resolved: list[images.KernelChoice],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("MKH_KERNEL", str(fake_bzimage(tmp_path / "bzImage")))
    monkeypatch.setenv("MKH_KERNEL_TREE", str(fake_tree(tmp_path / "linux")))
    assert cli.main(["build"]) == EXIT_INFRA
    assert capsys.readouterr().err == (
        "mkh: error: MKH_KERNEL and MKH_KERNEL_TREE are both set; unset one\n"
    )
    assert resolved == []


def test_mkh_kernel_must_be_a_bzimage(
    resolved: list[images.KernelChoice],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not a kernel\n" * 100)
    monkeypatch.setenv("MKH_KERNEL", str(text))
    assert cli.main(["build"]) == EXIT_INFRA
    err = capsys.readouterr().err
    assert err.startswith(f"mkh: error: MKH_KERNEL: {text} is not a bzImage")
    assert err.count("\n") == 1
    assert resolved == []


BAD_INPUT = [
    (["run", "--put", "{missing}:/tmp/x", "--", "true"], "--put: {missing}: no such file"),
    (["run", "--put", "{text}:tmp/x", "--", "true"], "guest path must be absolute"),
    (["run", "--script", "{missing}"], "--script: {missing}: no such file"),
    (["run", "--memory", "2X", "--", "true"], "--memory: not a size: '2X'"),
    (["run", "--memory", "0", "--", "true"], "--memory: size must be more than 0"),
    (["run", "--smp", "0", "--", "true"], "--smp: must be 1 to 16"),
    (["shell", "--smp", "17"], "--smp: must be 1 to 16"),
    (["run", "--smp", "3,threads=2", "--", "true"], "3 CPUs are not whole cores of 2 threads"),
    (["run", "--smp", "4,sockets=2", "--", "true"], "expected N or N,threads=T"),
    (["run", "--append", "mkkernel_pool=3G", "--", "true"], "does not fit in --memory 2G"),
    (["run", "--memory", "1G", "--append", "mkkernel_pool=1G@4G", "--", "true"], "not fit"),
    (["shell", "--memory", "1G", "--instance", "web-server"], "does not fit in --memory 1G"),
    (["run", "--append", "mkkernel_pool=lots", "--", "true"], "mkkernel_pool=lots: not a size"),
    (["run", "--kernel", "{text}", "--", "true"], "--kernel: {text} is not a bzImage"),
    (["bench", "spawn", "--kernel", "{missing}"], "--kernel: {missing}: no such file"),
    (["shell", "--dtb", "{missing}", "--instance", "web-server"], "--dtb: {missing}: no such"),
    (["build", "--kernel-tree", "{missing}"], "{missing} is not a kernel tree"),
    (["build", "--in-tree"], "--in-tree and --build-dir need a kernel tree"),
    (["run", "--timeout", "0", "--", "true"], "--timeout: must be more than 0"),
    (["shell", "--instance-console", "mkcon"], "--instance-console goes with --instance"),
    (["bench", "ipi", "--cpus", "4"], "unrecognized arguments: --cpus 4"),
    (["bench", "density", "--cpus", "1"], "--cpus 1: 2 to 16"),
    (["bench", "density", "--runs", "2"], "unrecognized arguments: --runs 2"),
    (["bench", "density", "--memory", "100K"], "--memory 102400: below 8M"),
]


@pytest.mark.parametrize(("argv", "message"), BAD_INPUT, ids=[" ".join(a) for a, _ in BAD_INPUT])
def test_bad_input_is_refused_before_anything_is_built(
    sandbox: Sandbox, argv: list[str], message: str
) -> None:
    text = sandbox.root / "notes.txt"
    text.write_text("not a kernel\n" * 100)
    where = {"missing": sandbox.root / "missing", "text": text}
    done = sandbox.mkh(*(arg.format(**where) for arg in argv))
    assert done.returncode == EXIT_INFRA
    assert done.stderr.startswith("mkh: error: ")
    assert done.stderr.count("\n") == 1, done.stderr
    assert message.format(**where) in done.stderr
    # Nothing was built, booted or even cached.
    assert sandbox.traces() == []
    assert not sandbox.cache.exists()


def test_max_smp_is_the_guest_kernel_nr_cpus() -> None:
    config = (REPO / "images" / "linux" / "base.config").read_text()
    assert f"CONFIG_NR_CPUS={MAX_SMP}\n" in config


@pytest.mark.parametrize("cache", ["/proc/mkh-cache", "{file}"])
def test_unusable_cache_is_one_line_naming_it(sandbox: Sandbox, cache: str) -> None:
    file = sandbox.root / "a-file"
    file.write_text("")
    cache = cache.format(file=file)
    kernel = fake_bzimage(sandbox.root / "bzImage")
    done = sandbox.mkh("build", MKH_CACHE=cache, MKH_KERNEL=str(kernel))
    assert done.returncode == EXIT_INFRA
    assert done.stderr.startswith(f"mkh: error: cannot create cache directory {cache}/")
    assert done.stderr.count("\n") == 1, done.stderr


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only directories")
def test_read_only_cache_is_one_line_naming_it(sandbox: Sandbox) -> None:
    sandbox.cache.mkdir(mode=0o555)
    kernel = fake_bzimage(sandbox.root / "bzImage")
    done = sandbox.mkh("build", MKH_KERNEL=str(kernel))
    assert done.returncode == EXIT_INFRA
    assert done.stderr.startswith(f"mkh: error: cannot create cache directory {sandbox.cache}/")
    assert done.stderr.count("\n") == 1, done.stderr


def test_cache_dir_refuses_a_directory_it_cannot_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MKH_CACHE", str(tmp_path))
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    with pytest.raises(InfraError, match=f"cache directory {tmp_path}/runs is not writable"):
        paths.cache_dir("runs")


def test_dts_syntax_error_names_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.dts"
    bad.write_text('/dts-v1/;\n/ {\n\tcompatible = "multikernel-v1"\n\tinstances { };\n};\n')
    assert cli.main(["dtb", "check", str(bad)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"mkh: {bad}:4.")
    assert "syntax error" in err and err.count("\n") == 1


SIGNALLED = """
import os, signal, sys, time
from harness import cli
from harness.cli import kernel

def build(args):
    try:
        os.kill(os.getpid(), signal.{sig})
        time.sleep(30)
    finally:
        # A second signal during the clean-up must not cut it short.
        os.kill(os.getpid(), signal.SIGTERM)
        print("cleaned up")

kernel.cmd_build = build
handlers = [signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)]
code = cli.main(["build"])
assert [signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)] == handlers
sys.exit(code)
"""


@pytest.mark.parametrize(("sig", "code"), [("SIGINT", 130), ("SIGTERM", 143), ("SIGHUP", 129)])
def test_stop_signals_unwind_like_ctrl_c(sig: str, code: int) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SIGNALLED.format(sig=sig)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stdout) == (code, "cleaned up\n"), done.stderr
    assert done.stderr == f"mkh: interrupted by {sig}\n"

import argparse
from pathlib import Path

import pytest

from harness import cli
from harness.errors import (
    EXIT_CRASH,
    EXIT_INFRA,
    EXIT_TIMEOUT,
    GuestTimeout,
    InfraError,
    KernelCrash,
)


def test_put_spec_parses_and_rejects() -> None:
    assert cli._put("./x:/tmp/x") == (Path("./x"), "/tmp/x")
    for bad in ("x", ":/tmp/x", "x:"):
        with pytest.raises(argparse.ArgumentTypeError):
            cli._put(bad)


def parse(*argv: str) -> argparse.Namespace:
    return cli.parser().parse_args(list(argv))


def test_one_word_is_a_shell_line_and_several_are_an_argv() -> None:
    assert cli._command_line(parse("run", "--", "echo a | wc -c")) == "echo a | wc -c"
    assert cli._command_line(parse("run", "--", "sh", "-c", "exit 7")) == "sh -c 'exit 7'"
    assert cli._command_line(parse("run", "nproc")) == "nproc"


def test_run_options_reach_the_guest_options() -> None:
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
    opts = cli._options(args)
    assert (opts.smp, opts.memory, opts.append, opts.accel) == (2, "512M", "quiet", "tcg")
    assert opts.put == [(Path("a"), "/b")]


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

    monkeypatch.setattr(cli, "cmd_build", fail)
    assert cli.main(["build"]) == code
    assert text in capsys.readouterr().err


def test_exit_codes_are_distinct_and_documented() -> None:
    assert len({EXIT_CRASH, EXIT_TIMEOUT, EXIT_INFRA}) == 3
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    for code in (EXIT_CRASH, EXIT_TIMEOUT, EXIT_INFRA):
        assert f"`{code}`" in readme

"""The console/shell layer against a real busybox shell on a pseudo-terminal (no QEMU)."""

from __future__ import annotations

import fcntl
import os
import pty
import signal
import subprocess
import termios
import time
import tty
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from harness.core.errors import GuestTimeout, KernelCrash
from harness.target import logsync
from harness.target import shell as shell_module
from harness.target.console import Console
from harness.target.shell import READY, Shell, ShellUnusable

BUSYBOX = Path("/bin/busybox")
pytestmark = pytest.mark.skipif(not BUSYBOX.exists(), reason="needs /bin/busybox (busybox-static)")


def _like_init() -> None:
    """The guest's init starts the shell on its tty with every signal at its default.

    A suite started in the background (`make test &` from a script) ignores
    SIGINT, and a child would inherit that: Ctrl-C would then stop nothing.
    """
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)
    for sig in (signal.SIGINT, signal.SIGQUIT):
        signal.signal(sig, signal.SIG_DFL)


@pytest.fixture
def pty_shell(tmp_path: Path) -> Iterator[Callable[..., Shell]]:
    """A factory: a Shell on busybox sh, started the way the mkh init starts it."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for applet in ("sh", "sleep", "echo", "cat", "base64", "rm", "wc"):
        (bindir / applet).symlink_to(BUSYBOX)
    made: list[tuple[Console, subprocess.Popen[bytes]]] = []

    def start(
        typed_ahead: str = "",
        log: Console | None = None,
        on_timeout: Callable[[Shell], None] | None = None,
        kmsg: str = logsync.KMSG,
    ) -> Shell:
        master, slave = pty.openpty()
        proc = subprocess.Popen(
            ["sh", "-c", f'echo "{READY}"; exec sh -i'],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            start_new_session=True,
            preexec_fn=_like_init,
            env={"PATH": str(bindir), "PS1": "mkh-guest:$? # ", "HOME": str(tmp_path)},
            cwd=tmp_path,
        )
        os.close(slave)
        os.write(master, typed_ahead.encode())
        console = Console("pty", os.fdopen(master, "rb", buffering=0), tmp_path / "pty.log")
        made.append((console, proc))
        shell = Shell(console, lambda: None, log, on_timeout, kmsg)
        shell.wait_ready(10)
        return shell

    yield start
    for console, proc in made:
        proc.kill()
        proc.wait()
        console.close()


def test_output_that_looks_like_a_prompt_or_a_marker_comes_back_whole(
    pty_shell: Callable[..., Shell],
) -> None:
    shell = pty_shell()
    text = "echo 'mkh-guest:0 # '; echo 'MKH0000E1:0'; printf 'mkh-guest:1 # tail'"
    assert shell.run(text).output == "mkh-guest:0 # \nMKH0000E1:0\nmkh-guest:1 # tail"
    assert shell.check("echo next") == "next\n"


def test_exit_and_set_e_end_the_child_shell_only(pty_shell: Callable[..., Shell]) -> None:
    shell = pty_shell()
    assert shell.run("exit 3").status == 3
    failed = shell.run("set -e; false; echo not-reached")
    assert (failed.status, failed.output) == (1, "")
    assert shell.check("echo still-here") == "still-here\n"


def test_a_syntax_error_is_status_2_and_the_session_survives(
    pty_shell: Callable[..., Shell],
) -> None:
    shell = pty_shell()
    refused = shell.run("echo (unbalanced")
    assert refused.status == 2 and "syntax error" in refused.output
    assert shell.check("echo ok") == "ok\n"


def test_long_and_multiline_commands(pty_shell: Callable[..., Shell]) -> None:
    shell = pty_shell()
    words = " ".join(f"w{n}" for n in range(300))
    assert shell.check(f"echo {words} | wc -w").strip() == "300"
    assert shell.check("for i in 1 2 3\ndo echo $i # counted\ndone").split() == ["1", "2", "3"]


def test_timeout_runs_diagnostics_then_interrupts_and_resyncs(
    pty_shell: Callable[..., Shell],
) -> None:
    seen: list[Shell] = []
    shell = pty_shell(on_timeout=seen.append)
    with pytest.raises(GuestTimeout) as info:
        shell.run("echo started-$((6 * 7)); sleep 60", timeout=1)
    assert "started-42" in info.value.tail
    assert seen == [shell]
    # In step again, with this command's output only.
    assert shell.check("echo back") == "back\n"
    assert shell.run("exit 4").status == 4


def test_a_shell_that_does_not_come_back_refuses_further_use(
    pty_shell: Callable[..., Shell], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shell_module, "RESYNC_TIMEOUT", 1.0)
    shell = pty_shell()
    with pytest.raises(GuestTimeout):
        shell.run("trap '' INT; sleep 30", timeout=1)
    started = time.monotonic()
    with pytest.raises(ShellUnusable, match="the shell on pty cannot be used"):
        shell.run("echo never")
    assert time.monotonic() - started < 5  # refused at once, not after another timeout


def test_a_command_cut_short_by_a_crash_is_interrupted_before_the_next(
    pty_shell: Callable[..., Shell],
) -> None:
    crash_at = [0.0]

    def health() -> None:
        if crash_at[0] and time.monotonic() > crash_at[0]:
            crash_at[0] = 0.0
            raise KernelCrash("kmsg", "warning", "WARNING: CPU: 0 PID: 1 at x.c:1", "")

    shell = pty_shell()
    shell.health = health
    crash_at[0] = time.monotonic() + 0.5
    with pytest.raises(KernelCrash):
        shell.run("sleep 30; echo late")
    started = time.monotonic()
    assert shell.check("echo after-crash") == "after-crash\n"
    assert time.monotonic() - started < 10  # not after the 30 s sleep


def test_ready_recovers_a_shell_left_in_the_middle_of_a_quote(
    pty_shell: Callable[..., Shell],
) -> None:
    # What the shell sees when it drops the start of the first line typed at
    # it: half a quoted word, so it waits for the rest (PS2) and every later
    # line becomes part of that word.
    shell = pty_shell(typed_ahead="echo 'half\n")
    assert shell.check("echo in-step") == "in-step\n"


def test_after_interactive_use_whatever_was_left_running_is_interrupted(
    pty_shell: Callable[..., Shell],
) -> None:
    shell = pty_shell()
    shell.console.send("cat\n")  # what a user typed and left running
    time.sleep(1)  # (a Ctrl-C typed before cat runs would reach the shell instead)
    shell.assume_busy()
    started = time.monotonic()
    assert shell.check("echo back") == "back\n"
    assert time.monotonic() - started < 10


def test_a_command_ends_only_once_its_kernel_log_has_caught_up(
    pty_shell: Callable[..., Shell], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A second pty stands for the kernel's log stream: the shell writes its
    # markers there instead of /dev/kmsg.
    master, slave = pty.openpty()
    tty.setraw(slave)
    os.write(slave, b"[    0.000000] Linux version 6.12\n")
    log = Console("kmsg", os.fdopen(master, "rb", buffering=0), tmp_path / "kmsg.log")
    log.watch()
    try:
        shell = pty_shell(log=log, kmsg=os.ttyname(slave))
        assert shell.log is log
        assert shell.check("echo first") == "first\n"
        assert "-done" in (tmp_path / "kmsg.log").read_text()
        # While nobody reads the log stream, no command can complete.
        monkeypatch.setattr(logsync, "LOG_SYNC_TIMEOUT", 1.0)
        log.drive()
        with pytest.raises(GuestTimeout, match="in the kernel log"):
            shell.run("echo second")
        log.watch()
        assert shell.check("echo third") == "third\n"
    finally:
        log.close()
        os.close(slave)


def test_a_banner_from_before_forget_tail_does_not_count(
    pty_shell: Callable[..., Shell],
) -> None:
    shell = pty_shell()
    # A banner drained earlier counts for a shell that attaches later ...
    Shell(shell.console, lambda: None).wait_ready(5)
    # ... unless a new kernel took the console over since: then only its own does.
    shell.console.forget_tail()
    with pytest.raises(GuestTimeout, match="the guest init"):
        Shell(shell.console, lambda: None).wait_ready(1)

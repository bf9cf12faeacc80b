"""A booted guest with a shell on its console: boot, run commands, tear down."""

from __future__ import annotations

import base64
import itertools
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from . import initramfs
from .artifacts import RunDir
from .console import Console
from .errors import GuestCommandFailed
from .machine import Machine, MachineConfig

READY = "mkh-guest: ready"
PROMPT = re.compile(r"mkh-guest:\d+ # ")
# busybox's line editor truncates long lines; longer commands go through a file.
MAX_LINE = 400
CHUNK = 300


@dataclass(frozen=True)
class Images:
    """What a guest boots: a kernel, an initramfs and (when known) the kernel config."""

    kernel: Path
    initrd: Path
    config: Path | None = None
    description: str = ""


@dataclass(frozen=True)
class Result:
    output: str
    status: int


@dataclass
class GuestOptions:
    smp: int = 4
    memory: str = "2G"
    append: str = ""
    accel: str = "auto"
    boot_timeout: float = 120.0
    put: list[tuple[Path, str]] = field(default_factory=list)


def _fits_one_line(command: str) -> bool:
    """Whether `command` can be followed by `; echo ...` on one typed line."""
    stripped = command.rstrip()
    return (
        len(command) <= MAX_LINE
        and "\n" not in command
        and "#" not in command
        and not stripped.endswith("&")
        and not stripped.endswith(";")
    )


class Shell:
    """The busybox shell of the mkh init on one console of a running machine."""

    def __init__(self, console: Console, health: Callable[[], None]) -> None:
        self.console = console
        self.health = health
        self._ids = itertools.count(1)

    def _wait(self, pattern: str | re.Pattern[str], timeout: float, what: str) -> None:
        self.console.expect([pattern], timeout, what, self.health)

    def wait_ready(self, timeout: float) -> None:
        """Wait for the init's banner, then for a prompt."""
        with self.console.driven():
            self._wait(READY, timeout, "the guest init")
            self.sync(timeout)

    def sync(self, timeout: float = 30.0) -> None:
        """Get to a fresh prompt whatever the console printed before."""
        n = next(self._ids)
        with self.console.driven():
            self.console.send(f"echo MKH''S{n}\n")
            self._wait(rf"MKHS{n}\r?\n", timeout, "the shell to answer")
            self._wait(PROMPT, timeout, "the shell prompt")

    def run(self, command: str, timeout: float = 60.0) -> Result:
        """Run a shell command line; its output (LF line ends) and status."""
        if not _fits_one_line(command):
            script = f"/tmp/.mkh-cmd-{next(self._ids)}"
            self.write_file(script, command.encode() + b"\n")
            command = f". {script}"
        n = next(self._ids)
        with self.console.driven():
            # One line: input typed ahead would be echoed into the command's output.
            self.console.send(f"echo MKH''B{n}; {command}; echo \"MKH\"'E{n}':$?\n")
            started = self.console.expect(
                [rf"MKHB{n}\r?\n", PROMPT], timeout, f"the start of {command!r}", self.health
            )
            if started == 1:
                # The shell refused the line (a syntax error): it prompts again.
                return Result(str(self.console.child.before).replace("\r\n", "\n"), 2)
            ended = self.console.expect(
                [rf"MKHE{n}:(\d+)\r?\n", PROMPT], timeout, f"{command!r} to finish", self.health
            )
            child = self.console.child
            output = str(child.before).replace("\r\n", "\n")
            if ended == 1:
                # A syntax error in a sourced script ends the whole line.
                return Result(output, 2)
            assert child.match is not None and not isinstance(child.match, type)
            status = int(child.match.group(1))
            self._wait(PROMPT, timeout, "the shell prompt")
        return Result(output, status)

    def check(self, command: str, timeout: float = 60.0) -> str:
        """Run a command that must succeed; its output."""
        result = self.run(command, timeout)
        if result.status != 0:
            raise GuestCommandFailed(self.console.name, command, result.status, result.output)
        return result.output

    def write_file(self, path: str, data: bytes) -> None:
        """Create a file with exactly `data`, through the console."""
        encoded = base64.b64encode(data).decode()
        staging = shlex.quote(path + ".b64")
        self.check(f": > {staging}")
        for start in range(0, len(encoded), CHUNK):
            self.check(f"echo {encoded[start : start + CHUNK]} >> {staging}")
        self.check(f"base64 -d {staging} > {shlex.quote(path)} && rm {staging}")


class Guest:
    """A machine whose ttyS0 shell the harness drives.  Use as a context manager."""

    def __init__(
        self, images: Images, options: GuestOptions | None = None, run: RunDir | None = None
    ) -> None:
        self.images = images
        self.options = options or GuestOptions()
        self.run_dir = run or RunDir()
        self.machine: Machine | None = None
        self._shell: Shell | None = None

    @property
    def shell(self) -> Shell:
        assert self._shell is not None, "guest is not booted"
        return self._shell

    @property
    def console(self) -> Console:
        return self.shell.console

    def boot(self) -> Guest:
        opts = self.options
        if self.images.config is not None:
            self.run_dir.keep_config(self.images.config)
        initrd = initramfs.with_files(self.images.initrd, opts.put, self.run_dir.file("initrd.img"))
        config = MachineConfig(
            kernel=self.images.kernel,
            initrd=initrd,
            append=opts.append,
            smp=opts.smp,
            memory=opts.memory,
            accel=opts.accel,
        )
        self.machine = Machine(config, self.run_dir)
        self.machine.launch()
        self._shell = Shell(self.machine.consoles["ttyS0"], self.machine.health)
        self._shell.wait_ready(opts.boot_timeout)
        self.run_dir.mark("shell-ready")
        return self

    def run(self, command: str, timeout: float = 60.0) -> Result:
        return self.shell.run(command, timeout)

    def check(self, command: str, timeout: float = 60.0) -> str:
        return self.shell.check(command, timeout)

    def write_file(self, path: str, data: bytes) -> None:
        self.shell.write_file(path, data)

    def close(self) -> int | None:
        """Tear the guest down and release its run directory; QEMU's exit status."""
        if self.machine is None:
            self.run_dir.close()
            return None
        status = self.machine.shutdown()
        self.machine = None
        self._shell = None
        self.run_dir.close()
        return status

    def __enter__(self) -> Guest:
        try:
            return self.boot()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc: object) -> None:
        self.close()

"""A QEMU x86_64 machine: launch, QMP control, consoles, and a shutdown that always ends it.

Lifecycle follows QEMU's own python `qemu.machine`: the harness listens on
Unix sockets (QMP and one per console), QEMU connects to them at start-up, so
no console output is lost; shutdown escalates from QMP `quit` to SIGTERM to
SIGKILL.  QEMU also gets PR_SET_PDEATHSIG so it cannot outlive the harness.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shlex
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from qemu.qmp import QMPError
from qemu.qmp.legacy import QEMUMonitorProtocol

from harness.core.errors import GuestExited, InfraError
from harness.core.rundir import RunDir
from harness.target import accel, uarts
from harness.target.console import CRASH_GRACE, Console, check_crashes

CONNECT_TIMEOUT = 20.0
QMP_TIMEOUT = 30.0
GUEST_SSH_PORT = 22
_PR_SET_PDEATHSIG = 1


@dataclass
class MachineConfig:
    kernel: Path
    initrd: Path | None = None
    append: str = ""
    smp: int = 4
    threads: int = 1
    memory: str = "2G"
    accel: str = "auto"
    cpu: str | None = None
    qemu: str = "qemu-system-x86_64"
    gdb_port: int | None = None  # QEMU's gdbstub on 127.0.0.1:PORT
    # A virtio NIC on QEMU's user network, the guest's port 22 forwarded to
    # 127.0.0.1:PORT; the guest reaches nothing else (restrict=on).
    ssh_port: int | None = None

    def cmdline(self) -> str:
        # retain_initrd: /sys/firmware/initrd, which a live update boots again.
        params = f"{uarts.kernel_params(uarts.HOST_TTY)} panic=-1 retain_initrd"
        return f"{params} {self.append}".strip()


def process_name() -> str:
    """QEMU's process name: $MKH_QEMU_NAME (so a test run can find its own), else mkh-qemu."""
    return os.environ.get("MKH_QEMU_NAME", "mkh-qemu")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def die_with_parent() -> None:
    """preexec_fn: the child gets SIGKILL when the harness dies, whatever way it dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class Machine:
    """One QEMU process and its consoles; use as a context manager."""

    def __init__(self, config: MachineConfig, run: RunDir) -> None:
        self.config = config
        self.run = run
        self._accel = ""
        self.consoles: dict[str, Console] = {}
        self.process: subprocess.Popen[bytes] | None = None
        self._qmp: QEMUMonitorProtocol | None = None
        self._sockdir = tempfile.TemporaryDirectory(prefix="mkh-")
        self._listeners: dict[str, socket.socket] = {}

    # -- start ------------------------------------------------------------

    @property
    def _qmp_path(self) -> str:
        return str(Path(self._sockdir.name) / "qmp.sock")

    def _socket_path(self, name: str) -> str:
        return str(Path(self._sockdir.name) / f"{name}.sock")

    @staticmethod
    def stream_names() -> list[str]:
        """Every console stream QEMU connects to: the shell UARTs, then the log ports."""
        return [*uarts.SHELL_TTYS, *(uarts.log_stream(tty) for tty in uarts.SHELL_TTYS)]

    def _listen(self) -> None:
        """A listening socket for each console stream, for QEMU to connect to as it starts."""
        for name in self.stream_names():
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.bind(self._socket_path(name))
            sock.listen(1)
            self._listeners[name] = sock

    @property
    def accel(self) -> str:
        """The accelerator QEMU runs with (`kvm` or `tcg`), once launched."""
        return self._accel

    @property
    def gdb_port(self) -> int | None:
        """QEMU's gdbstub on 127.0.0.1:PORT, if it has one."""
        return self.config.gdb_port

    def command(self) -> list[str]:
        """QEMU's command line."""
        cfg = self.config
        cpu = cfg.cpu or ("host" if self.accel == "kvm" else "max")
        args = [
            cfg.qemu,
            "-name",
            f"mkh-guest,process={process_name()}",
            "-machine",
            "pc",
            "-accel",
            self.accel,
            "-cpu",
            cpu,
            "-smp",
            f"{cfg.smp},threads={cfg.threads}" if cfg.threads > 1 else str(cfg.smp),
            "-m",
            cfg.memory,
            "-nodefaults",
            "-display",
            "none",
            "-no-reboot",
            "-no-user-config",
            "-kernel",
            str(cfg.kernel),
            "-append",
            cfg.cmdline(),
        ]
        if cfg.initrd:
            args += ["-initrd", str(cfg.initrd)]
        args += [
            "-chardev",
            f"socket,id=qmp,path={self._qmp_path}",
            "-mon",
            "chardev=qmp,mode=control",
        ]
        for index, tty in enumerate(uarts.SHELL_TTYS):
            path = self._socket_path(tty)
            args += [
                "-chardev",
                f"socket,id=ser{index},path={path}",
                "-serial",
                f"chardev:ser{index}",
            ]
        for tty in uarts.SHELL_TTYS:
            name = uarts.log_stream(tty)
            path = self._socket_path(name)
            port = uarts.log_port(tty)
            args += [
                "-chardev",
                f"socket,id={name},path={path}",
                "-device",
                f"isa-debugcon,iobase={port:#x},chardev={name}",
            ]
        if cfg.gdb_port is not None:
            args += ["-gdb", f"tcp:127.0.0.1:{cfg.gdb_port}"]
        if cfg.ssh_port is not None:
            forward = f"tcp:127.0.0.1:{cfg.ssh_port}-:{GUEST_SSH_PORT}"
            args += [
                "-netdev",
                f"user,id=net0,restrict=on,hostfwd={forward}",
                "-device",
                "virtio-net-pci,netdev=net0",
            ]
        return args

    def launch(self) -> None:
        self._accel = accel.choose(self.config.accel, self.config.qemu)
        self._qmp = QEMUMonitorProtocol(self._qmp_path, server=True, nickname="mkh")
        args = self.command()
        self._listen()
        self.run.file("qemu-cmdline.txt").write_text(shlex.join(args) + "\n")
        stderr = self.run.file("qemu-stderr.log").open("wb")
        try:
            self.process = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        except OSError as exc:
            self.shutdown()
            raise InfraError(f"cannot start {args[0]}: {exc.strerror}") from exc
        finally:
            stderr.close()
        self.run.mark("qemu-started")
        try:
            self._qmp.accept(timeout=CONNECT_TIMEOUT)
            self._qmp.settimeout(QMP_TIMEOUT)  # a wedged QEMU must not hang the harness
            for name, listener in self._listeners.items():
                # Shell UARTs carry command output only (no kernel console):
                # crashes are checked on the kernels' log streams, so that a
                # command printing "WARNING:" (dmesg, say) is not a crash.
                self.consoles[name] = Console(
                    name,
                    self._accept(listener),
                    self.run.console_log(name),
                    crash_checked=name not in uarts.SHELL_TTYS,
                )
        except (QMPError, TimeoutError, OSError, InfraError) as exc:
            self.shutdown()
            raise InfraError(
                f"QEMU did not come up: {self._stderr_tail() or exc}",
                self.run.file("qemu-stderr.log"),
            ) from exc
        for console in self.consoles.values():
            console.watch()

    def _accept(self, listener: socket.socket) -> socket.socket:
        listener.settimeout(0.2)
        deadline = time.monotonic() + CONNECT_TIMEOUT
        while True:
            try:
                conn, _ = listener.accept()
                conn.settimeout(None)
                return conn
            except TimeoutError:
                if not self.running():
                    raise InfraError("QEMU exited during start-up") from None
                if time.monotonic() > deadline:
                    raise

    def _stderr_tail(self) -> str:
        path = self.run.file("qemu-stderr.log")
        lines = path.read_text(errors="replace").strip().splitlines() if path.exists() else []
        return lines[-1] if lines else ""

    # -- state ------------------------------------------------------------

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def qmp(self, command: str, **args: object) -> object:
        if self._qmp is None:
            raise InfraError("QMP is not connected")
        return self._qmp.cmd(command, **args)

    def status(self) -> str:
        """QEMU's run state (`running`, `paused`, ...) from QMP query-status."""
        reply = self.qmp("query-status")
        assert isinstance(reply, dict)
        return str(reply["status"])

    def hmp(self, command: str) -> str:
        """A human monitor command (e.g. `info registers -a`); its text output."""
        return str(self.qmp("human-monitor-command", **{"command-line": command}))

    def send_sysrq(self, key: str) -> None:
        """Alt-SysRq-`key` on the PS/2 keyboard: handled in the host kernel, no user space."""
        keys = [{"type": "qcode", "data": k} for k in ("alt", "sysrq", key)]
        self.qmp("send-key", keys=keys)

    def check_crashes(self) -> None:
        """Raise KernelCrash if any console has shown a crash (with its backtrace)."""
        if not self.running():
            for console in self.consoles.values():
                if console.crash is None:
                    console.drain(CRASH_GRACE)  # QEMU is gone: read up to EOF
        check_crashes(self.consoles.values(), self.run)

    def health(self) -> None:
        """check_crashes(), and GuestExited if QEMU has ended."""
        self.check_crashes()
        if not self.running():
            tail = self.consoles["ttyS0"].tail() if "ttyS0" in self.consoles else ""
            status = self.process.returncode if self.process else None
            raise GuestExited("the machine", tail, status)

    # -- stop -------------------------------------------------------------

    def shutdown(self, grace: float = 3.0) -> int | None:
        """Stop QEMU: QMP quit, then SIGTERM, then SIGKILL.  Returns its exit status."""
        proc = self.process
        if proc is not None and proc.poll() is None and self._qmp is not None:
            try:
                self._qmp.settimeout(grace)
                self._qmp.cmd("quit")
            except (QMPError, OSError, TimeoutError, EOFError):
                pass
        if proc is not None:
            for sig in (None, signal.SIGTERM, signal.SIGKILL):
                if sig is not None and proc.poll() is None:
                    proc.send_signal(sig)
                try:
                    proc.wait(timeout=grace)
                    break
                except subprocess.TimeoutExpired:
                    continue
        for console in self.consoles.values():
            console.drive()
            console.drain(1.0)  # QEMU is gone: read what is left up to EOF
            console.close()
        if self._qmp is not None:
            with contextlib.suppress(QMPError, OSError, EOFError):
                self._qmp.close()
            self._qmp = None
        for listener in self._listeners.values():
            listener.close()
        self._listeners.clear()
        self._sockdir.cleanup()
        self.run.mark("qemu-stopped")
        return proc.returncode if proc is not None else None

    def __enter__(self) -> Machine:
        self.launch()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

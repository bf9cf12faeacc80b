"""Keep-alive guests: `mkh up` boots one and returns; `mkh exec`, `mkh shell` and `mkh down` use it.

A session is a daemon process that holds a booted guest and answers, one
request at a time, on a unix socket in the cache (sessions/NAME.sock).
A request is a JSON line; the answer is a JSON line, except after
`attach`, where the socket carries the guest console's bytes both ways until
the client closes it.  The guest's consoles stay logged and crash-checked as
in any run, in the run directory the session reports.  A daemon that gets no
request for its idle timeout takes its guest down itself, so a session the
user forgets does not keep a QEMU running.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.build.images import Images, KernelChoice
from harness.core.errors import HarnessError, InfraError
from harness.core.paths import cache_dir
from harness.core.progress import note
from harness.core.rundir import RunDir
from harness.pipeline.prepare import images_for
from harness.report import result_json
from harness.target import interactive
from harness.target.base import Target
from harness.target.factory import make_target
from harness.target.options import TargetOptions
from harness.target.protocol import Completed

REQUEST_TIMEOUT = 10.0  # seconds a client has to send its request once connected
DEFAULT_IDLE = 1800.0  # seconds without a request before a session ends itself
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,39}")


@dataclass(frozen=True)
class Paths:
    socket: Path
    info: Path  # JSON: pid, run directory
    log: Path  # the daemon's own output (boot progress, its errors)


def paths(name: str) -> Paths:
    if not _NAME.fullmatch(name):
        raise InfraError(
            f"bad session name {name!r}: letters, digits, '_', '.' and '-', at most 40"
        )
    base = cache_dir("sessions")
    return Paths(base / f"{name}.sock", base / f"{name}.json", base / f"{name}.log")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def info(name: str) -> dict[str, Any] | None:
    """The running session's pid and run directory; a dead one's files are removed."""
    where = paths(name)
    try:
        data: dict[str, Any] = json.loads(where.info.read_text())
    except (OSError, ValueError):
        return None
    if _alive(int(data.get("pid", 0))):
        return data
    for stale in (where.info, where.socket):
        stale.unlink(missing_ok=True)
    return None


# ---- the daemon ----


@dataclass(frozen=True)
class SessionRequest:
    """A guest that stays up, named, until `mkh down` or `idle_timeout` seconds unused."""

    name: str
    kernel: KernelChoice
    options: TargetOptions
    artifacts: Path | None = None
    idle_timeout: float = DEFAULT_IDLE


def start(request: SessionRequest) -> str:
    """Fork the session's daemon, wait until its guest is up; its run directory."""
    name = request.name
    where = paths(name)  # a bad name is refused before anything is built
    images = images_for(request.kernel, request.options)
    running = info(name)
    if running is not None:
        raise InfraError(
            f"session {name} is already up (pid {running['pid']}, logs {running['run']}); "
            f"'mkh down {name}' ends it"
        )
    where.socket.unlink(missing_ok=True)
    note(f"booting the guest of session {name} (its progress: {where.log})")
    ready_r, ready_w = os.pipe()
    # Forked twice, so that the daemon is nobody's child here (no zombie).
    pid = os.fork()
    if pid == 0:
        os.close(ready_r)
        os.setsid()
        if os.fork() != 0:
            os._exit(0)
        status = 1
        try:
            _detach_stdio(where.log)
            _daemon(request, images, ready_w)
            status = 0
        except BaseException as exc:  # reported through the pipe or the log
            with contextlib.suppress(OSError):
                sys.stderr.write(f"mkh session {name}: {exc}\n")
        finally:
            os._exit(status)
    os.close(ready_w)
    os.waitpid(pid, 0)
    with os.fdopen(ready_r, "rb") as pipe:
        answer = pipe.read()
    try:
        report = json.loads(answer)
    except ValueError:
        raise InfraError(f"session {name} did not come up; see {where.log}") from None
    if "error" in report:
        raise InfraError(f"session {name} did not come up: {report['error']} (log {where.log})")
    return str(report["run"])


def _detach_stdio(log: Path) -> None:
    null = os.open(os.devnull, os.O_RDONLY)
    out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(null, 0)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.close(null)
    os.close(out)


def _report(fd: int, message: dict[str, str]) -> None:
    with contextlib.suppress(OSError):
        os.write(fd, json.dumps(message).encode())
        os.close(fd)


def _daemon(request: SessionRequest, images: Images, ready: int) -> None:
    where = paths(request.name)
    with (
        RunDir(request.artifacts) as run,
        result_json.recorded(run, images, request.kernel, f"mkh up {request.name}") as status,
    ):
        guest = make_target(images, request.options, run)
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            guest.boot()
            server.bind(str(where.socket))
            server.listen(4)
            where.info.write_text(json.dumps({"pid": os.getpid(), "run": str(run.path)}) + "\n")
            _report(ready, {"run": str(run.path)})
            _serve(guest, server, request.idle_timeout)
            guest.finish()
        except BaseException as exc:
            _report(ready, {"error": f"{exc} (logs: {run.path})"})
            raise
        finally:
            server.close()
            where.socket.unlink(missing_ok=True)
            where.info.unlink(missing_ok=True)
            guest.close()
        status.value = 0


def _serve(guest: Target, server: socket.socket, idle: float) -> None:
    """Answer requests until `down` or `idle` seconds without one."""
    while True:
        ready, _, _ = select.select([server], [], [], idle)
        if not ready:
            note(f"no request for {idle:.0f} s: taking the guest down")
            return
        conn, _ = server.accept()
        with conn:
            # A client that connects and says nothing must not hold the session.
            conn.settimeout(REQUEST_TIMEOUT)
            try:
                request = json.loads(conn.makefile("rb").readline())
            except (ValueError, OSError):
                continue
            conn.settimeout(None)
            if _handle(guest, conn, request):
                return


def _send(conn: socket.socket, message: dict[str, Any]) -> None:
    with contextlib.suppress(OSError):
        conn.sendall(json.dumps(message).encode() + b"\n")


def _handle(guest: Target, conn: socket.socket, request: dict[str, Any]) -> bool:
    """Carry out one request; True when the session must end."""
    op = request.get("op")
    if op == "down":
        _send(conn, {"run": str(guest.run_dir.path)})
        return True
    if op == "exec":
        try:
            ran = guest.run(str(request["command"]), timeout=float(request["timeout"]))
        except HarnessError as exc:
            _send(conn, {"error": str(exc)})
        else:
            _send(
                conn,
                {
                    "output": ran.output,
                    "status": ran.status,
                    "stdout": ran.stdout,
                    "stderr": ran.stderr,
                },
            )
        return False
    if op == "kexec":
        files = [Path(request[key]) if request.get(key) else None for key in ("kernel", "initrd")]
        append = request.get("append")
        try:
            guest.kexec(files[0], files[1], None if append is None else str(append))
        except HarnessError as exc:
            _send(conn, {"error": str(exc)})
        else:
            _send(conn, {"run": str(guest.run_dir.path)})
        return False
    if op == "attach":
        shell = guest.host_shell
        if shell is None:
            where = guest.run_dir.file("ssh-command.txt")
            _send(
                conn, {"error": f"a lab machine has no console shell to attach to: ssh ({where})"}
            )
            return False
        _send(conn, {"run": str(guest.run_dir.path)})
        with shell.console.driven():
            shell.assume_busy()  # what the user leaves running is interrupted before reuse
            interactive.relay(shell.console, conn.fileno(), conn.fileno())
        return False
    _send(conn, {"error": f"unknown request {op!r}"})
    return False


# ---- the client ----


def _connect(name: str) -> socket.socket:
    where = paths(name)
    if info(name) is None:
        raise InfraError(f"no session {name} is up ('mkh up --name {name}' starts one)")
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(str(where.socket))
    except OSError as exc:
        conn.close()
        raise InfraError(
            f"session {name} does not answer ({exc.strerror}); log {where.log}"
        ) from None
    return conn


def _ask(conn: socket.socket, request: dict[str, Any]) -> dict[str, Any]:
    conn.sendall(json.dumps(request).encode() + b"\n")
    line = conn.makefile("rb").readline()
    if not line:
        raise InfraError("the session ended without answering (its guest stopped?)")
    answer: dict[str, Any] = json.loads(line)
    if "error" in answer:
        raise InfraError(str(answer["error"]))
    return answer


def run(name: str, command: str, timeout: float) -> Completed:
    """Run a shell command line in the session's guest."""
    with _connect(name) as conn:
        answer = _ask(conn, {"op": "exec", "command": command, "timeout": timeout})
    streams = [answer.get(key) for key in ("stdout", "stderr")]
    stdout, stderr = (str(text) if text is not None else None for text in streams)
    return Completed(str(answer["output"]), int(answer["status"]), stdout, stderr)


def kexec(name: str, kernel: Path | None, initrd: Path | None, append: str | None) -> str:
    """Live-update the session's host kernel; its run directory once the new host answers."""
    for given in (kernel, initrd):
        if given is not None and not given.is_file():
            raise InfraError(f"{given}: no such file")
    request: dict[str, Any] = {
        "op": "kexec",
        "kernel": str(kernel.resolve()) if kernel else None,
        "initrd": str(initrd.resolve()) if initrd else None,
        "append": append,
    }
    with _connect(name) as conn:
        answer = _ask(conn, request)
    return str(answer["run"])


DOWN_TIMEOUT = 120.0  # seconds a daemon may take to stop its guest and write result.json


def down(name: str) -> str:
    """End the session and wait until its daemon is gone; its run directory."""
    running = info(name)
    with _connect(name) as conn:
        answer = _ask(conn, {"op": "down"})
    deadline = time.monotonic() + DOWN_TIMEOUT
    while running is not None and _alive(int(running["pid"])):
        if time.monotonic() > deadline:
            raise InfraError(f"session {name} did not stop in {DOWN_TIMEOUT:.0f} s")
        time.sleep(0.1)
    return str(answer["run"])


def attach(name: str) -> str:
    """Relay the terminal and the session's console until Ctrl-]; its run directory."""
    with _connect(name) as conn:
        answer = _ask(conn, {"op": "attach"})
        note(f"attached to session {name}; leave with Ctrl-] (logs: {answer['run']})")
        interactive.relay_stream(conn)
    return str(answer["run"])

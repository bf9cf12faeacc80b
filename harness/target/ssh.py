"""The SSH command channel: run commands and move files with paramiko.

A command runs through `exec_command`, so its stdout and stderr come back
apart and its exit status is the real one.  The kernel's log stays checked
as on the console: after the command the guest writes a marker to
/dev/kmsg, and the command is complete only once that marker has come
through the log stream, so every kernel message it caused was crash-checked.
While a command runs, `health()` is called between slices: a kernel crash or
a dead machine ends the wait with that error rather than with a timeout.
Files go through SFTP.
"""

from __future__ import annotations

import io
import logging
import secrets
import select
import shlex
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

import paramiko

from harness.core.errors import ConnectionLost, GuestTimeout, InfraError
from harness.target.console import SLICE, Console
from harness.target.logsync import LogSync
from harness.target.protocol import (
    DEFAULT_TIMEOUT,
    CommandProtocol,
    Completed,
    FileTransferProtocol,
)
from harness.target.pump import Peer, Stream, pump
from harness.target.sshd import HOST_ALIAS, Keys

# Attempts before the guest's server listens fail, and are retried: paramiko's
# own log of each would reach stderr through logging's last-resort handler.
logging.getLogger("paramiko").addHandler(logging.NullHandler())
CONNECT_ATTEMPT = 10.0  # seconds for one TCP connect + handshake + authentication
KEEPALIVE = 5  # seconds between keepalives on an idle connection
SFTP_TIMEOUT = 120.0  # seconds one SFTP request may take
READ_SIZE = 65536
TAIL_BYTES = 2000
LOST_GRACE = 1.0  # seconds to let a machine that is ending be seen so before blaming the link
RELAY_EXIT_GRACE = 3.0  # seconds a relay's remote command has to exit once its input ends


class SshConnection(CommandProtocol, FileTransferProtocol):
    """Commands and files over SSH to one machine (public key; host key pinned when known)."""

    name = "ssh"

    def __init__(
        self,
        host: str,
        port: int,
        keys: Keys,
        health: Callable[[], None],
        log: Console | None = None,
        on_timeout: Callable[[], None] | None = None,
        username: str = "root",
        transcript: Path | None = None,
    ) -> None:
        self.host = host
        self.username = username
        self.transcript = transcript
        self.port = port
        self.keys = keys
        self.health = health
        self.log = log
        self.on_timeout = on_timeout
        self._client: paramiko.SSHClient | None = None
        self._sftp_client: paramiko.SFTPClient | None = None
        self._nonce = secrets.token_hex(4)
        self._ids = 0

    @property
    def destination(self) -> str:
        """The ssh(1) command line that reaches the same machine."""
        keys = self.keys
        if keys.known_hosts is not None:
            known = f"-o UserKnownHostsFile={shlex.quote(str(keys.known_hosts))} "
            known += f"-o HostKeyAlias={HOST_ALIAS}"
        else:
            known = "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"
        key = shlex.quote(str(keys.client_file))
        return f"ssh -i {key} -p {self.port} {known} {self.username}@{self.host}"

    def _client_for(self) -> paramiko.SSHClient:
        client = paramiko.SSHClient()
        host = self.keys.host
        if host is None:
            # A lab machine's own OS: its host key is not known to the harness.
            client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        else:
            # paramiko looks a host up by its plain name on port 22.
            name = self.host if self.port == 22 else f"[{self.host}]:{self.port}"
            client.get_host_keys().add(name, host.get_name(), host)
            client.set_missing_host_key_policy(paramiko.RejectPolicy())
        return client

    def connect(self, timeout: float) -> None:
        """Log in, retrying until the guest's server answers or `timeout` passes."""
        deadline = time.monotonic() + timeout
        last = "nothing answered"
        while True:
            self.health()
            client = self._client_for()
            try:
                client.connect(
                    self.host,
                    self.port,
                    username=self.username,
                    pkey=self.keys.client,
                    look_for_keys=False,
                    allow_agent=False,
                    timeout=CONNECT_ATTEMPT,
                    banner_timeout=CONNECT_ATTEMPT,
                    auth_timeout=CONNECT_ATTEMPT,
                )
            except paramiko.BadHostKeyException as exc:
                client.close()
                raise InfraError(f"the guest's SSH host key is not this run's: {exc}") from exc
            except paramiko.AuthenticationException as exc:
                client.close()
                last = f"authentication failed: {exc}"  # the server may not have its keys yet
                if time.monotonic() > deadline:
                    raise GuestTimeout(self.name, f"the SSH server ({last})", timeout, "") from exc
                time.sleep(SLICE)
                continue
            except (paramiko.SSHException, OSError, EOFError) as exc:
                client.close()
                last = str(exc) or type(exc).__name__
                if time.monotonic() > deadline:
                    raise GuestTimeout(self.name, f"the SSH server ({last})", timeout, "") from exc
                time.sleep(SLICE)
                continue
            transport = client.get_transport()
            if transport is not None:
                # A machine that vanishes without closing the connection is noticed.
                transport.set_keepalive(KEEPALIVE)
            self._client = client
            return

    @property
    def client(self) -> paramiko.SSHClient:
        if self._client is None:
            raise InfraError("the SSH channel is not connected")
        return self._client

    def _session(self) -> paramiko.Channel:
        transport = self.client.get_transport()
        if transport is None or not transport.is_active():
            raise self._lost("the SSH connection is gone")
        try:
            return transport.open_session(timeout=CONNECT_ATTEMPT)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise self._lost(f"no SSH session: {exc}") from exc

    def _lost(self, detail: str) -> ConnectionLost:
        """The error for a connection that broke, once health() had LOST_GRACE to see more.

        A guest that crashed or reset closes the connection a moment before
        its machine is seen gone: that is the guest's failure, which health()
        raises. Only a guest still running after the grace gives ConnectionLost.
        """
        deadline = time.monotonic() + LOST_GRACE
        self.health()
        while time.monotonic() < deadline:
            time.sleep(SLICE)
            self.health()
        return ConnectionLost(self.name, detail)

    def run(self, command: str, timeout: float = DEFAULT_TIMEOUT) -> Completed:
        """Run a shell command line; its stdout, stderr and exit status."""
        self._ids += 1
        with LogSync(self.log, f"mkh-ssh-{self._nonce}-{self._ids}-done") as synced:
            line = f"sh -c {shlex.quote(command)}"
            if synced.line:
                line += f"; mkh_s=$?; {synced.line}; exit $mkh_s"
            stdout, stderr, status = self._exec(line, command, timeout)
            synced.wait(command, self.health)
        out = stdout.decode(errors="replace")
        err = stderr.decode(errors="replace")
        return Completed(out + err, status, stdout=out, stderr=err)

    def _exec(self, line: str, command: str, timeout: float) -> tuple[bytes, bytes, int]:
        channel = self._session()
        stdout = bytearray()
        stderr = bytearray()
        deadline = time.monotonic() + timeout
        exited_at: float | None = None
        self._note(f"$ {command}\n")
        try:
            try:
                channel.settimeout(CONNECT_ATTEMPT)
                channel.exec_command(line)
                channel.shutdown_write()  # the command reads EOF, never the harness's stdin
            except (paramiko.SSHException, OSError, EOFError) as exc:
                raise self._lost(f"the command did not start: {exc}") from exc
            while True:
                while channel.recv_ready():
                    stdout += self._note_bytes(channel.recv(READ_SIZE))
                while channel.recv_stderr_ready():
                    stderr += self._note_bytes(channel.recv_stderr(READ_SIZE))
                if channel.exit_status_ready():
                    # A background child may hold stdout open past the exit:
                    # what it prints after a short grace is not waited for.
                    exited_at = exited_at or time.monotonic()
                    drained = not channel.recv_ready() and not channel.recv_stderr_ready()
                    if drained and (channel.eof_received or time.monotonic() > exited_at + 1):
                        status = channel.recv_exit_status()
                        self._note(f"[exit {status}]\n")
                        return bytes(stdout), bytes(stderr), status
                elif channel.closed or (channel.eof_received and channel.status_event.wait(SLICE)):
                    if not channel.exit_status_ready():
                        self._note("[ended without an exit status]\n")
                        raise self._lost(f"{command!r} ended without an exit status")
                    continue
                self.health()
                if time.monotonic() > deadline:
                    self._note(f"[timed out after {timeout:g} s]\n")
                    if self.on_timeout is not None:
                        self.on_timeout()
                    raise GuestTimeout(
                        self.name, repr(command), timeout, self._tail(stdout, stderr)
                    )
                if not channel.eof_received:
                    select.select([channel], [], [], SLICE)
        finally:
            channel.close()

    @staticmethod
    def _tail(stdout: bytes | bytearray, stderr: bytes | bytearray) -> str:
        return (bytes(stdout[-TAIL_BYTES:]) + bytes(stderr[-TAIL_BYTES:])).decode(errors="replace")

    def _note(self, text: str) -> None:
        self._note_bytes(text.encode())

    def _note_bytes(self, data: bytes) -> bytes:
        """Append to the transcript (what each command printed, as it arrives); `data`."""
        if self.transcript is not None:
            with self.transcript.open("ab") as log:
                log.write(data)
        return data

    def open_shell(self, term: str, columns: int, lines: int) -> paramiko.Channel:
        """An interactive login shell on a pseudo-terminal of that size (for `mkh shell`)."""
        channel = self._session()
        channel.get_pty(term=term, width=columns, height=lines)
        channel.invoke_shell()
        return channel

    def open_stream(self, command: str) -> paramiko.Channel:
        """`command` running on its own channel, its stdout and stderr one stream (no terminal)."""
        channel = self._session()
        channel.set_combine_stderr(True)
        channel.exec_command(command)
        return channel

    @contextmanager
    def _sftp(self, what: str) -> Iterator[paramiko.SFTPClient]:
        """The SFTP session, its failures reported as the harness's errors."""
        try:
            if self._sftp_client is None:
                self._sftp_client = self.client.open_sftp()
                sftp_channel = self._sftp_client.get_channel()
                assert sftp_channel is not None, "open_sftp() gives a client on a channel"
                sftp_channel.settimeout(SFTP_TIMEOUT)
            yield self._sftp_client
        except OSError as exc:
            if isinstance(exc, (TimeoutError, socket.timeout)):
                self.health()
                raise GuestTimeout(self.name, what, SFTP_TIMEOUT, "") from exc
            raise InfraError(f"{what} over SFTP failed: {exc}") from exc
        except (paramiko.SSHException, EOFError) as exc:
            raise self._lost(f"{what} over SFTP failed: {exc}") from exc

    def write_file(self, path: str, data: bytes) -> None:
        """Create (or replace) file `path` with exactly `data`."""
        with self._sftp(f"writing {path}") as sftp:
            sftp.putfo(io.BytesIO(data), path, confirm=True)

    def read_file(self, path: str) -> bytes:
        buffer = io.BytesIO()
        with self._sftp(f"reading {path}") as sftp:
            sftp.getfo(path, buffer)
        return buffer.getvalue()

    def put(self, local: Path, path: str, mode: int | None = None) -> None:
        """Copy host file `local` to `path`, with its mode (or `mode`)."""
        with self._sftp(f"copying {local} to {path}") as sftp:
            sftp.put(str(local), path, confirm=True)
            sftp.chmod(path, local.stat().st_mode & 0o7777 if mode is None else mode)

    def get(self, path: str, local: Path) -> None:
        with self._sftp(f"copying {path} here") as sftp:
            sftp.get(path, str(local))

    def close(self) -> None:
        if self._sftp_client is not None:
            self._sftp_client.close()
            self._sftp_client = None
        if self._client is not None:
            self._client.close()
            self._client = None


class Channel(Peer, Protocol):
    """What a relay needs of a paramiko channel: a byte stream it ends, waits on and closes."""

    status_event: threading.Event  # set once the remote command's exit status came

    def shutdown_write(self) -> None: ...

    def close(self) -> None: ...


class RelaySocket:
    """A socket whose other end is an SSH channel (paramiko's), for a Console to read and write.

    A thread copies between them until either side ends; the channel's end
    is the socket's end of file.
    """

    def __init__(self, channel: Channel, label: str) -> None:
        self._channel = channel
        self._mine, self._theirs = socket.socketpair()
        self._closing = threading.Event()  # our side ends the relay, not the channel
        self._pump = threading.Thread(target=self._copy, name=f"relay-{label}", daemon=True)
        self._pump.start()

    def fileno(self) -> int:
        return self._theirs.fileno()

    def close(self) -> None:
        self._closing.set()
        self._theirs.close()
        self._pump.join(timeout=RELAY_EXIT_GRACE + 2)

    def _copy(self) -> None:
        channel, mine = self._channel, self._mine
        try:
            # A paramiko channel's fileno() is readable when it has data.
            pump(Stream(mine), Stream(channel))
        except OSError:
            pass
        finally:
            if self._closing.is_set():
                self._end(channel)
            channel.close()
            mine.close()

    @staticmethod
    def _end(channel: Channel) -> None:
        """End the remote command's input and give it time to exit before the channel closes.

        Closing the channel of a command still running races the server:
        Debian 12's dropbear then may close the next channel opened on that
        connection, and the next command fails to start.
        """
        try:
            channel.shutdown_write()
        except (OSError, EOFError, paramiko.SSHException):
            return
        channel.status_event.wait(RELAY_EXIT_GRACE)

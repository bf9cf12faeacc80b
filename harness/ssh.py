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
import time
from collections.abc import Callable
from pathlib import Path

import paramiko

from .console import SLICE, Console
from .errors import GuestCommandFailed, GuestExited, GuestTimeout, InfraError
from .shell import LOG_SYNC_TIMEOUT, Result
from .sshd import HOST_ALIAS, Keys

# Attempts before the guest's server listens fail, and are retried: paramiko's
# own log of each would reach stderr through logging's last-resort handler.
logging.getLogger("paramiko").addHandler(logging.NullHandler())
CONNECT_ATTEMPT = 10.0  # seconds for one TCP connect + handshake + authentication
READ_SIZE = 65536


class SshChannel:
    """Commands and files over SSH to one guest (root, public key, pinned host key)."""

    name = "ssh"

    def __init__(
        self,
        host: str,
        port: int,
        keys: Keys,
        health: Callable[[], None],
        log: Console | None = None,
        on_timeout: Callable[[], None] | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.keys = keys
        self.health = health
        self.log = log
        self.on_timeout = on_timeout
        self._client: paramiko.SSHClient | None = None
        self._sftp: paramiko.SFTPClient | None = None
        self._nonce = secrets.token_hex(4)
        self._ids = 0

    @property
    def destination(self) -> str:
        """The ssh(1) command line that reaches the same guest."""
        return (
            f"ssh -i {shlex.quote(str(self.keys.client_file))} -p {self.port} "
            f"-o UserKnownHostsFile={shlex.quote(str(self.keys.directory / 'known_hosts'))} "
            f"-o HostKeyAlias={HOST_ALIAS} root@{self.host}"
        )

    def _client_for(self) -> paramiko.SSHClient:
        client = paramiko.SSHClient()
        client.get_host_keys().add(
            f"[{self.host}]:{self.port}", self.keys.host.get_name(), self.keys.host
        )
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
                    username="root",
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
            except (paramiko.SSHException, OSError, EOFError) as exc:
                client.close()
                last = str(exc) or type(exc).__name__
                if time.monotonic() > deadline:
                    raise GuestTimeout(self.name, f"the SSH server ({last})", timeout, "") from exc
                time.sleep(SLICE)
                continue
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
            self.health()
            raise GuestExited(self.name, "the SSH connection is gone")
        try:
            return transport.open_session(timeout=CONNECT_ATTEMPT)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            self.health()
            raise GuestExited(self.name, f"no SSH session: {exc}") from exc

    def run(self, command: str, timeout: float = 60.0) -> Result:
        """Run a shell command line; its stdout, stderr and exit status."""
        self._ids += 1
        marker = f"mkh-ssh-{self._nonce}-{self._ids}-done" if self.log is not None else None
        line = f"sh -c {shlex.quote(command)}"
        if marker is not None:
            line += f"; mkh_s=$?; echo {marker} > /dev/kmsg; exit $mkh_s"
        synced = self.log.expect_text(marker) if self.log is not None and marker else None
        try:
            stdout, stderr, status = self._exec(line, command, timeout)
            if synced is not None and self.log is not None:
                self.log.wait_event(
                    synced,
                    LOG_SYNC_TIMEOUT,
                    f"the end of {command!r} in the kernel log",
                    self.health,
                )
        finally:
            if self.log is not None and marker is not None:
                self.log.forget_text(marker)
        out = stdout.decode(errors="replace")
        err = stderr.decode(errors="replace")
        return Result(out + err, status, stdout=out, stderr=err)

    def _exec(self, line: str, command: str, timeout: float) -> tuple[bytes, bytes, int]:
        channel = self._session()
        stdout = bytearray()
        stderr = bytearray()
        deadline = time.monotonic() + timeout
        try:
            channel.exec_command(line)
            channel.shutdown_write()  # the command reads EOF, never the harness's stdin
            while True:
                while channel.recv_ready():
                    stdout += channel.recv(READ_SIZE)
                while channel.recv_stderr_ready():
                    stderr += channel.recv_stderr(READ_SIZE)
                if channel.exit_status_ready() and channel.eof_received:
                    if not channel.recv_ready() and not channel.recv_stderr_ready():
                        return bytes(stdout), bytes(stderr), channel.recv_exit_status()
                elif channel.closed:
                    self.health()
                    raise GuestExited(self.name, stdout[-2000:].decode(errors="replace"))
                self.health()
                if time.monotonic() > deadline:
                    if self.on_timeout is not None:
                        self.on_timeout()
                    raise GuestTimeout(
                        self.name, repr(command), timeout, stdout[-2000:].decode(errors="replace")
                    )
                select.select([channel], [], [], SLICE)
        finally:
            channel.close()

    def open_shell(self, term: str, columns: int, lines: int) -> paramiko.Channel:
        """An interactive login shell on a pseudo-terminal of that size (for `mkh shell`)."""
        channel = self._session()
        channel.get_pty(term=term, width=columns, height=lines)
        channel.invoke_shell()
        return channel

    def check(self, command: str, timeout: float = 60.0) -> str:
        """Run a command that must succeed; its output (stdout, then stderr)."""
        result = self.run(command, timeout)
        if result.status != 0:
            raise GuestCommandFailed(self.name, command, result.status, result.output)
        return result.output

    @property
    def sftp(self) -> paramiko.SFTPClient:
        if self._sftp is None:
            self._sftp = self.client.open_sftp()
        return self._sftp

    def write_file(self, path: str, data: bytes) -> None:
        """Create (or replace) guest file `path` with exactly `data`."""
        self.sftp.putfo(io.BytesIO(data), path, confirm=True)

    def read_file(self, path: str) -> bytes:
        buffer = io.BytesIO()
        self.sftp.getfo(path, buffer)
        return buffer.getvalue()

    def put(self, local: Path, path: str) -> None:
        """Copy host file `local` to guest path `path`, with its mode."""
        self.sftp.put(str(local), path, confirm=True)
        self.sftp.chmod(path, local.stat().st_mode & 0o7777)

    def get(self, path: str, local: Path) -> None:
        self.sftp.get(path, str(local))

    def close(self) -> None:
        if self._sftp is not None:
            self._sftp.close()
            self._sftp = None
        if self._client is not None:
            self._client.close()
            self._client = None

"""Commands complete only once their kernel's log has caught up with them.

After a command the guest writes a marker to /dev/kmsg; the command is
complete only when that marker has come through the kernel's log stream, so
every kernel message the command caused has been read and crash-checked.
The console shell and SSH both use this.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from types import TracebackType

from harness.target.console import Console

LOG_SYNC_TIMEOUT = 30.0
KMSG = "/dev/kmsg"


class LogSync:
    """One command's marker; without a log stream (`log` None) it does nothing.

    Use as a context manager around the command: the marker is watched for
    from entry, and forgotten on exit whatever happened.
    """

    def __init__(self, log: Console | None, marker: str, kmsg: str = KMSG) -> None:
        self.log = log
        self.marker = marker
        self.kmsg = kmsg
        self._seen: threading.Event | None = None

    @property
    def line(self) -> str:
        """The shell words that write the marker (empty without a log stream)."""
        return f"echo {self.marker} > {self.kmsg}" if self.log is not None else ""

    def __enter__(self) -> LogSync:
        if self.log is not None:
            self._seen = self.log.expect_text(self.marker)
        return self

    def wait(self, command: str, health: Callable[[], None]) -> None:
        """Wait until the marker came through the log stream (health checked meanwhile)."""
        if self.log is not None and self._seen is not None:
            what = f"the end of {command!r} in the kernel log"
            self.log.wait_event(self._seen, LOG_SYNC_TIMEOUT, what, health)

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self.log is not None:
            self.log.forget_text(self.marker)

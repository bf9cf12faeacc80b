"""Two byte streams copied into each other until either ends: every relay of the harness.

The terminal to a console or an SSH login (`mkh shell`), a session's socket
to its guest's console, and an SSH channel to the socket a Console reads
are each two ends given to `pump`.
"""

from __future__ import annotations

import select
from collections.abc import Callable
from typing import Protocol

READ_SIZE = 65536
TICK = 0.5  # seconds between looks at `alive` while neither end has anything


class End(Protocol):
    """One side of a relay: readable when its fileno() is, over when read() gives b""."""

    def fileno(self) -> int: ...

    def read(self) -> bytes: ...

    def write(self, data: bytes) -> None: ...


class Peer(Protocol):
    """A byte stream: a socket, or a paramiko channel."""

    def fileno(self) -> int: ...

    def recv(self, size: int) -> bytes: ...

    def sendall(self, data: bytes) -> None: ...


class Stream:
    """A peer as an end: its end of file ends the relay."""

    def __init__(self, peer: Peer) -> None:
        self.peer = peer

    def fileno(self) -> int:
        return self.peer.fileno()

    def read(self) -> bytes:
        return self.peer.recv(READ_SIZE)

    def write(self, data: bytes) -> None:
        self.peer.sendall(data)


def pump(near: End, far: End, alive: Callable[[], bool] | None = None) -> None:
    """Copy each end's bytes into the other until one is over, or `alive()` turns false.

    When both have bytes, `far`'s are copied first.
    """
    tick = None if alive is None else TICK
    while alive is None or alive():
        ready, _, _ = select.select([far, near], [], [], tick)
        for source, sink in ((far, near), (near, far)):
            if source in ready:
                data = source.read()
                if not data:
                    return
                sink.write(data)

"""pump: two ends copied into each other until one is over."""

from __future__ import annotations

import socket
import threading

from harness.target.pump import Stream, pump


def test_pump_copies_both_ways_until_one_end_is_over() -> None:
    near_user, near = socket.socketpair()
    far, far_user = socket.socketpair()
    relay = threading.Thread(target=pump, args=(Stream(near), Stream(far)))
    relay.start()
    near_user.sendall(b"keys")
    assert far_user.recv(16) == b"keys"
    far_user.sendall(b"output")
    assert near_user.recv(16) == b"output"
    far_user.close()  # the far end's end of file ends the relay
    relay.join(timeout=5)
    assert not relay.is_alive()
    for sock in (near_user, near, far):
        sock.close()


def test_pump_stops_when_alive_turns_false() -> None:
    near, near_user = socket.socketpair()
    far, far_user = socket.socketpair()
    stop = threading.Event()
    relay = threading.Thread(
        target=pump, args=(Stream(near), Stream(far)), kwargs={"alive": lambda: not stop.is_set()}
    )
    relay.start()
    stop.set()
    relay.join(timeout=5)
    assert not relay.is_alive()
    for sock in (near, near_user, far, far_user):
        sock.close()

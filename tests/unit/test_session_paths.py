import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from harness.core.errors import InfraError
from harness.pipeline import session


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MKH_CACHE", str(tmp_path))
    return tmp_path


@pytest.mark.parametrize("name", ["", "../x", "a b", "-x", "x" * 41, "a/b"])
def test_bad_names_are_refused(name: str) -> None:
    with pytest.raises(InfraError, match="bad session name"):
        session.paths(name)


def test_a_dead_sessions_files_are_cleaned_up(cache: Path) -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    where = session.paths("old")
    where.info.write_text(json.dumps({"pid": int(dead.stdout), "run": "/nowhere"}))
    where.socket.write_text("")
    assert session.info("old") is None
    assert not where.info.exists() and not where.socket.exists()


def test_a_live_session_is_reported(cache: Path) -> None:
    where = session.paths("live")
    where.info.write_text(json.dumps({"pid": os.getpid(), "run": "/runs/x"}))
    assert session.info("live") == {"pid": os.getpid(), "run": "/runs/x"}


def test_exec_without_a_session_says_how_to_start_one() -> None:
    with pytest.raises(InfraError, match=r"no session nope is up \('mkh up --name nope'"):
        session.run("nope", "true", 10)


def test_a_session_that_does_not_answer_is_named(cache: Path) -> None:
    where = session.paths("mute")
    where.info.write_text(json.dumps({"pid": os.getpid(), "run": "/runs/x"}))
    with pytest.raises(InfraError, match="session mute does not answer"):
        session.down("mute")


def test_a_silent_client_does_not_hold_the_session(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(session, "REQUEST_TIMEOUT", 0.5)
    path = str(tmp_path / "s.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(4)
    guest = SimpleNamespace(run_dir=SimpleNamespace(path=tmp_path))
    silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    silent.connect(path)  # connects and never says anything
    down = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    down.connect(path)
    down.sendall(b'{"op": "down"}\n')
    serving = threading.Thread(target=session._serve, args=(guest, server, 30.0), daemon=True)
    serving.start()
    serving.join(10)
    # The silent client was given up on; the second one was answered and ended the session.
    assert not serving.is_alive()
    assert json.loads(down.makefile("rb").readline()) == {"run": str(tmp_path)}
    for sock in (silent, down, server):
        sock.close()

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness import session
from harness.errors import InfraError


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

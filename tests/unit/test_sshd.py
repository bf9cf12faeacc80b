"""The SSH server layer a guest gets: per-run keys, the server and what it links against."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

import paramiko
import pytest

from harness.core.errors import InfraError
from harness.target import sshd
from harness.target.ssh import SshConnection


def test_each_run_gets_its_own_keys_readable_only_by_the_user(tmp_path: Path) -> None:
    first = sshd.make_keys(tmp_path / "a")
    second = sshd.make_keys(tmp_path / "b")
    assert first.client.get_fingerprint() != second.client.get_fingerprint()
    assert first.host is not None and second.host is not None  # a run's own host key is pinned
    assert first.host.get_fingerprint() != second.host.get_fingerprint()
    for keys in (first, second):
        assert stat.S_IMODE(keys.directory.stat().st_mode) == 0o700
        for name in ("id_ecdsa", "host_key", "authorized_keys"):
            assert stat.S_IMODE((keys.directory / name).stat().st_mode) == 0o600, name


def test_the_authorized_key_is_the_clients_and_the_pinned_host_key_is_the_servers(
    tmp_path: Path,
) -> None:
    keys = sshd.make_keys(tmp_path / "k")
    assert keys.host is not None
    kind, blob, _ = (keys.directory / "authorized_keys").read_text().split()
    assert (kind, blob) == (keys.client.get_name(), keys.client.get_base64())
    # What dropbear will present is what the client pins (and ssh(1) finds).
    printed = subprocess.run(
        [str(sshd.DROPBEARKEY), "-y", "-f", str(keys.directory / "host_key")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert f"{keys.host.get_name()} {keys.host.get_base64()}" in printed
    known = paramiko.HostKeys(str(keys.directory / "known_hosts"))
    pinned = known.lookup(sshd.HOST_ALIAS)
    assert pinned is not None
    assert dict(pinned) == {keys.host.get_name(): keys.host}


def test_the_layer_has_the_server_the_sftp_subsystem_and_every_library(tmp_path: Path) -> None:
    keys = sshd.make_keys(tmp_path / "k")
    files = dict((dest, src) for src, dest in sshd.layer(keys))
    assert files["/usr/sbin/dropbear"] == sshd.DROPBEAR
    assert files[sshd.GUEST_SFTP_SERVER] == sshd.SFTP_SERVER
    assert files[sshd.GUEST_HOST_KEY] == keys.directory / "host_key"
    assert files[sshd.GUEST_AUTHORIZED_KEYS] == keys.directory / "authorized_keys"
    names = {Path(dest).name for dest in files}
    for needed in ("ld-linux-x86-64.so.2", "libc.so.6", "libtomcrypt.so.1", "libz.so.1"):
        assert needed in names
    assert all(src.is_file() for src in files.values())


def test_a_lab_key_can_be_let_in_as_well(tmp_path: Path) -> None:
    lab = paramiko.ECDSAKey.generate()
    keys = sshd.make_keys(tmp_path / "k", authorize=[lab])
    lines = (keys.directory / "authorized_keys").read_text().splitlines()
    assert [line.split()[1] for line in lines] == [keys.client.get_base64(), lab.get_base64()]


@pytest.mark.parametrize("port", [22, 2222])
def test_the_pinned_host_key_is_found_on_any_port(tmp_path: Path, port: int) -> None:
    keys = sshd.make_keys(tmp_path / "k")
    assert keys.host is not None
    channel = SshConnection("192.0.2.7", port, keys, lambda: None)
    client = channel._client_for()
    # paramiko's own lookup for that address and port (plain name on port 22).
    name = "192.0.2.7" if port == 22 else f"[192.0.2.7]:{port}"
    pinned = client.get_host_keys().lookup(name)
    assert pinned is not None
    assert dict(pinned) == {keys.host.get_name(): keys.host}


def test_a_key_file_that_is_no_key_is_refused_with_its_path(tmp_path: Path) -> None:
    bogus = tmp_path / "key"
    bogus.write_text("not a key\n")
    with pytest.raises(InfraError, match=f"cannot use the SSH key {bogus}"):
        sshd.load_key(bogus)

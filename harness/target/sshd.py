"""What a guest needs to serve SSH: Debian's dropbear, its libraries, and per-run keys.

The server and everything it links against are copied from the host's own
packages (dropbear-bin, openssh-sftp-server) into an initramfs layer that is
appended for the runs that ask for SSH, so the base image stays small for
the instances that load it.  Each run gets a fresh client key (authorized
for root in the guest) and a fresh host key that the client pins: nothing
is trusted on first use and nothing outlives the run.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import paramiko

from harness.core import hostcmd
from harness.core.errors import InfraError

DROPBEAR = Path("/usr/sbin/dropbear")
DROPBEARKEY = Path("/usr/bin/dropbearkey")
SFTP_SERVER = Path("/usr/lib/openssh/sftp-server")
# Where Debian's dropbear runs the SFTP subsystem from.
GUEST_SFTP_SERVER = "/usr/lib/sftp-server"
GUEST_HOST_KEY = "/etc/dropbear/mkh_host_key"
GUEST_AUTHORIZED_KEYS = "/root/.ssh/authorized_keys"
# The init starts the server when the kernel command line says so.
KERNEL_PARAM = "mkh.ssh=1"
# The name ssh(1) knows the host key by (HostKeyAlias): ports change per run.
HOST_ALIAS = "mkh-guest"
_LIBRARY = re.compile(r"(/\S+) \(0x[0-9a-f]+\)$")


@dataclass(frozen=True)
class Keys:
    """SSH keys: the client's (private) and the server's host key (public, pinned).

    `host` None trusts whatever key answers: a lab machine's own OS, whose
    host key the harness cannot know (labgrid trusts it the same way).
    """

    client_file: Path
    client: paramiko.PKey
    host: paramiko.PKey | None = None
    known_hosts: Path | None = None

    @property
    def directory(self) -> Path:
        return self.client_file.parent


def load_key(path: Path) -> Keys:
    """A private key file (any type paramiko reads) as unpinned client Keys."""
    try:
        return Keys(path, paramiko.PKey.from_path(path))
    except Exception as exc:  # paramiko reports unusable keys with several types
        raise InfraError(f"cannot use the SSH key {path}: {exc}") from None


def _require(path: Path, package: str) -> None:
    if not path.is_file():
        raise InfraError(f"{path} is missing: install {package} (scripts/bootstrap.sh does)")


def make_keys(directory: Path, authorize: Sequence[paramiko.PKey] = ()) -> Keys:
    """Generate a client key and a dropbear host key in `directory` (created, mode 0700).

    The server will also let in `authorize` (a lab's own key, say).
    """
    _require(DROPBEARKEY, "dropbear-bin")
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    client = paramiko.ECDSAKey.generate()
    client.write_private_key_file(str(directory / "id_ecdsa"))
    authorized = directory / "authorized_keys"
    authorized.write_text(
        "".join(f"{key.get_name()} {key.get_base64()} mkh\n" for key in (client, *authorize))
    )
    authorized.chmod(0o600)
    host_file = directory / "host_key"
    host_file.unlink(missing_ok=True)
    hostcmd.output([DROPBEARKEY, "-t", "ed25519", "-f", host_file])
    host_file.chmod(0o600)
    public = hostcmd.output([DROPBEARKEY, "-y", "-f", host_file])
    line = next((ln for ln in public.splitlines() if ln.startswith("ssh-ed25519 ")), None)
    if line is None:
        raise InfraError(f"dropbearkey printed no public key for {host_file}")
    kind, blob = line.split()[:2]
    host = paramiko.PKey.from_type_string(kind, base64.b64decode(blob))
    known = directory / "known_hosts"
    known.write_text(f"{HOST_ALIAS} {kind} {blob}\n")
    return Keys(directory / "id_ecdsa", client, host, known)


def _libraries(binary: Path) -> list[Path]:
    """The shared objects `binary` loads, the dynamic loader included (from ldd)."""
    found = []
    for line in hostcmd.output(["ldd", binary]).splitlines():
        match = _LIBRARY.search(line.strip())
        if match:
            found.append(Path(match.group(1)))
    return found


def layer(keys: Keys) -> list[tuple[Path, str]]:
    """(host file, guest path) pairs that give a guest a running SSH server for `keys`."""
    _require(DROPBEAR, "dropbear-bin")
    _require(SFTP_SERVER, "openssh-sftp-server")
    files = [
        (DROPBEAR, str(DROPBEAR)),
        (SFTP_SERVER, GUEST_SFTP_SERVER),
        (keys.directory / "host_key", GUEST_HOST_KEY),
        (keys.directory / "authorized_keys", GUEST_AUTHORIZED_KEYS),
    ]
    libraries = {lib for binary in (DROPBEAR, SFTP_SERVER) for lib in _libraries(binary)}
    files += [(lib, str(lib)) for lib in sorted(libraries)]
    return files

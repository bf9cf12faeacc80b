"""A lab machine's labgrid environment is read, and a bad one refused, before anything boots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import paramiko
import pytest
import yaml

from harness.core.errors import InfraError
from harness.target.labgrid import Lab


def environment(tmp_path: Path, **changes: Any) -> Path:
    key = tmp_path / "lab_key"
    paramiko.ECDSAKey.generate().write_private_key_file(str(key))
    main: dict[str, Any] = {
        "resources": {
            "NetworkSerialPort": {"host": "127.0.0.1", "port": 7001, "protocol": "raw"},
            "NetworkService": {"address": "192.0.2.7", "port": 22, "username": "root"},
        },
        "drivers": {
            "ExternalPowerDriver": {"cmd_on": "true", "cmd_off": "true"},
            "SSHDriver": {"keyfile": "lab_key"},
        },
        "options": {"mkh_cmdline": "console=ttyS0,115200 mkh.tty=ttyS0", "mkh_boot_timeout": 90.0},
    }
    for path, value in changes.items():
        *parents, leaf = path.split("__")
        node = main
        for name in parents:
            node = node[name]
        if value is None:
            node.pop(leaf)
        else:
            node[leaf] = value
    env = tmp_path / "lab.yaml"
    env.write_text(yaml.safe_dump({"targets": {"main": main}}))
    return env


def test_the_machine_its_key_and_settings_are_read(tmp_path: Path) -> None:
    lab = Lab(environment(tmp_path))
    try:
        assert (lab.serial.host, lab.serial.port) == ("127.0.0.1", 7001)
        assert (lab.service.address, lab.service.port) == ("192.0.2.7", 22)
        assert lab.key.client_file == tmp_path / "lab_key"
        assert lab.settings.cmdline == "console=ttyS0,115200 mkh.tty=ttyS0"
        assert (lab.settings.boot_timeout, lab.settings.recover_timeout) == (90.0, 600.0)
    finally:
        lab.close()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"options__mkh_cmdline": None}, "target option mkh_cmdline"),
        ({"resources__NetworkSerialPort__protocol": "rfc2217"}, "must be `protocol: raw`"),
        ({"drivers__SSHDriver__keyfile": "missing_key"}, "cannot use the SSH key"),
        ({"drivers__SSHDriver__keyfile": ""}, "SSHDriver needs the keyfile"),
    ],
)
def test_a_bad_environment_is_refused_with_the_reason(
    tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    with pytest.raises(InfraError, match=message):
        Lab(environment(tmp_path, **change))


def test_a_missing_environment_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InfraError, match="does not exist"):
        Lab(tmp_path / "nowhere.yaml")

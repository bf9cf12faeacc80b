"""The lab example in docs/lab/ is what a lab owner copies: it must load as `--lg-env` loads it.

lab.yaml names a RemotePlace, which only a running coordinator resolves.  The
test resolves it the way the coordinator would: the place's resources are
what exporter.yaml exports, read as labgrid-exporter reads it (a Jinja2
template).  The environment with those resources in place of the RemotePlace
then goes through the harness's own reader (harness.target.labgrid.Lab), which refuses
what a lab run would refuse.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import paramiko
import pytest
import yaml

from harness.target.labgrid import TARGET, Lab

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "docs" / "lab"
GUIDE = REPO / "docs" / "lab.md"
# What the harness takes from the place (harness/target/labgrid.py).
NEEDED = {"NetworkSerialPort", "NetworkService"}


def exported() -> dict[str, dict[str, dict[str, Any]]]:
    """exporter.yaml as labgrid-exporter reads it: {group: {resource class: parameters}}."""
    from labgrid.remote.config import ResourceConfig

    template_env = {"env": {}, "isolated": False, "hostname": "exporter.lab", "name": "exporter"}
    config = ResourceConfig(str(EXAMPLE / "exporter.yaml"), template_env)
    assert isinstance(config.data, dict), "exporter.yaml is not a mapping of groups"
    groups: dict[str, dict[str, dict[str, Any]]] = {}
    for group, resources in config.data.items():
        for name, params in resources.items():
            if name == "location" or params is None:
                continue
            params = dict(params)
            groups.setdefault(str(group), {})[str(params.pop("cls", name))] = params
    return groups


def lab_yaml() -> dict[str, Any]:
    data = yaml.safe_load((EXAMPLE / "lab.yaml").read_text())
    assert isinstance(data, dict)
    return data


def the_group() -> tuple[str, dict[str, dict[str, Any]]]:
    groups = exported()
    assert len(groups) == 1, f"exporter.yaml should export one machine, not {sorted(groups)}"
    return next(iter(groups.items()))


def resolved_environment(tmp_path: Path) -> Path:
    """lab.yaml with its place replaced by the exported resources, and a key beside it."""
    env = lab_yaml()
    main = env["targets"][TARGET]
    assert set(main["resources"]) == {"RemotePlace"}, "lab.yaml reaches the machine by a place"
    main["resources"] = the_group()[1]
    env.pop("options", None)  # the coordinator: nothing to reach here
    keyfile = main["drivers"]["SSHDriver"]["keyfile"]
    assert not Path(keyfile).is_absolute(), "the example's key lives beside lab.yaml"
    paramiko.ECDSAKey.generate().write_private_key_file(str(tmp_path / keyfile))
    path = tmp_path / "lab.yaml"
    path.write_text(yaml.safe_dump(env))
    return path


def test_the_exporter_publishes_what_the_harness_takes() -> None:
    group, resources = the_group()
    assert set(resources) >= NEEDED, f"{group} lacks {sorted(NEEDED - set(resources))}"
    assert resources["NetworkSerialPort"].get("protocol") == "raw"


def test_lab_yaml_loads_as_lg_env_loads_it(tmp_path: Path) -> None:
    lab = Lab(resolved_environment(tmp_path))
    try:
        options = lab_yaml()["targets"][TARGET]["options"]
        assert lab.settings.cmdline == options["mkh_cmdline"]
        assert lab.settings.boot_timeout == options["mkh_boot_timeout"]
        assert lab.settings.recover_timeout == options["mkh_recover_timeout"]
        assert lab.key.client_file == tmp_path / "lab_key"
        assert callable(lab.power.cycle)
    finally:
        lab.close()


def test_the_kernel_command_line_matches_the_machine() -> None:
    resources = the_group()[1]
    words = shlex.split(lab_yaml()["targets"][TARGET]["options"]["mkh_cmdline"])
    params = dict(word.partition("=")[::2] for word in words)
    # eth0 of the kernel under test answers where the NetworkService says.
    assert params["mkh.ip"].partition("/")[0] == resources["NetworkService"]["address"]
    # The console runs at the speed the console server reads it.
    tty, _, speed = params["console"].partition(",")
    assert tty == params["mkh.tty"]
    baud = re.match(r"\d+", speed)
    assert baud is not None, f"console={params['console']} gives no speed"
    assert int(baud[0]) == resources["NetworkSerialPort"]["speed"]
    assert "mkkernel_pool" in params


def test_the_console_server_serves_the_exported_port() -> None:
    serial = the_group()[1]["NetworkSerialPort"]
    connection = yaml.safe_load((EXAMPLE / "ser2net.yaml").read_text())["connection"]
    kind, _, port = connection["accepter"].partition(",")
    assert kind == "tcp", "a raw TCP accepter (telnet would be RFC 2217)"
    assert int(port) == serial["port"]
    assert connection["connector"].split(",")[2].startswith(str(serial["speed"]))


def test_the_runner_environment_names_the_lab() -> None:
    values = {}
    for line in (EXAMPLE / "runner.env").read_text().splitlines():
        if line.strip():
            assert re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S+", line), f"not KEY=VALUE: {line!r}"
            key, _, value = line.partition("=")
            values[key] = value
    assert Path(values["LG_ENV"]).is_absolute(), "make test-hw runs in the runner's checkout"
    assert values["LG_COORDINATOR"] == lab_yaml()["options"]["coordinator_address"]
    assert ("MKH_KERNEL" in values) != ("MKH_KERNEL_TREE" in values), "one kernel under test"


@pytest.mark.parametrize("file", ["lab.yaml", "exporter.yaml", "ser2net.yaml", "runner.env"])
def test_the_guide_names_the_example_files_and_the_place(file: str) -> None:
    guide = GUIDE.read_text()
    assert f"lab/{file}" in guide
    group = the_group()[0]
    place = lab_yaml()["targets"][TARGET]["resources"]["RemotePlace"]["name"]
    assert f"add-match '*/{group}/*'" in guide
    assert f"-p {place} " in guide

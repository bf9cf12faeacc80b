"""mkh dtb overlay: overlays compiled with dtc -@ and checked as §9 says the kernel refuses them."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.cli import main
from harness.core.paths import IMAGES_DIR
from harness.multikernel import dtb, overlay
from harness.multikernel.dtb import Budget, DtbError, Instance

EXAMPLE = IMAGES_DIR / "multikernel" / "overlay-example.dts"
# The instances of images/multikernel/example.dts, on a 6-CPU machine with 1 GiB free.
WEB = Instance("web-server", 1, (1,), 512 << 20)
DB = Instance("database", 2, (2, 3), 1 << 30)
BUDGET = Budget(cpus=6, pool_free=1 << 30, existing=[WEB, DB])


def compiled(tmp_path: Path, body: str) -> bytes:
    source = tmp_path / "o.dts"
    source.write_text(f"/dts-v1/;\n/plugin/;\n{body}\n")
    return overlay.compile_file(source)


def problem(tmp_path: Path, body: str, budget: Budget = BUDGET) -> tuple[str, str]:
    """(errno, message) of the one problem the kernel would refuse the overlay for."""
    [found] = overlay.check(compiled(tmp_path, body), budget)
    return found.errno, str(found)


def test_the_example_creates_an_instance_and_grows_another() -> None:
    blob = overlay.compile_file(EXAMPLE)
    assert overlay.check(blob, BUDGET) == []
    frags = overlay.fragments(blob)
    assert [(f.name, f.target, list(f.operations)) for f in frags] == [
        ("fragment@0", "/instances", ["instance-create"]),
        ("fragment@1", "/instances/web-server", ["memory-add", "cpu-add"]),
    ]


def test_a_fragment_may_name_the_instance_an_earlier_one_created(tmp_path: Path) -> None:
    body = (
        '&{/instances} { instance-create { instance-name = "new"; '
        "resources { cpus = <4>; memory-bytes = <0x8000000>; }; }; };\n"
        "&{/instances/new} { cpu-add { cpu@0 { reg = <5>; }; }; };"
    )
    assert overlay.check(compiled(tmp_path, body), BUDGET) == []
    # Without the first fragment the instance does not exist.
    alone = "&{/instances/new} { cpu-add { cpu@0 { reg = <5>; }; }; };"
    assert problem(tmp_path, alone)[0] == "ENOENT"


@pytest.mark.parametrize(
    ("body", "errno", "says"),
    [
        ("&{/resources} { memory-add { memory@0 { size = <0x1000>; }; }; };", "EPERM", "fixed"),
        ("&{/cpus} { cpu-add { cpu@0 { reg = <4>; }; }; };", "EINVAL", "target-path"),
        ("&{/instances/nobody} { cpu-add { cpu@0 { reg = <4>; }; }; };", "ENOENT", "nobody"),
        ('&{/instances} { instance-remove { instance-name = "nobody"; }; };', "ENOENT", "nobody"),
        ("&{/instances/web-server} { cpu-add { cpu@0 { reg = <0>; }; }; };", "EINVAL", "CPU 0"),
        ("&{/instances/web-server} { cpu-add { cpu@0 { reg = <6>; }; }; };", "EINVAL", "exist"),
        ("&{/instances/web-server} { cpu-add { cpu@0 { reg = <2>; }; }; };", "EBUSY", "database"),
        ("&{/instances/database} { cpu-remove { cpu@0 { reg = <2>; }; }; };", "EBUSY", "first"),
        ("&{/instances/database} { cpu-remove { cpu@0 { reg = <1>; }; }; };", "EINVAL", "not"),
        (
            "&{/instances/web-server} { memory-add { memory@0 { size = <0x0 0x80000000>; }; }; };",
            "ENOSPC",
            "pool",
        ),
        (
            "&{/instances/web-server} { memory-add { memory@0 { size = <0x123>; }; }; };",
            "EINVAL",
            "multiple of 4096",
        ),
        ("&{/instances/web-server} { cpu-add { core@0 { reg = <4>; }; }; };", "EINVAL", "core@0"),
        ('&{/instances/web-server} { instance-remove { instance-name = "x"; }; };', "EINVAL", ""),
        (
            '&{/instances} { instance-create { instance-name = "db2"; id = <2>; '
            "resources { cpus = <4>; memory-bytes = <0x8000000>; }; }; };",
            "EEXIST",
            "id 2",
        ),
        (
            '&{/instances} { instance-create { instance-name = "big"; '
            "resources { cpus = <4>; memory-bytes = <0x0 0x80000000>; }; }; };",
            "ENOSPC",
            "pool",
        ),
    ],
)
def test_each_refusal_names_its_fragment_and_errno(
    tmp_path: Path, body: str, errno: str, says: str
) -> None:
    got, text = problem(tmp_path, body)
    assert got == errno, text
    assert text.startswith("overlay fragment@0 (/") and says in text


def test_the_second_fragment_failing_is_the_transaction_failing(tmp_path: Path) -> None:
    body = (
        "&{/instances/web-server} { cpu-add { cpu@0 { reg = <4>; }; }; };\n"
        "&{/instances/database} { cpu-add { cpu@0 { reg = <4>; }; }; };"
    )
    errno, text = problem(tmp_path, body)
    assert (
        errno == "EBUSY"
        and text.startswith("overlay fragment@1 (/instances/database): ")
        and "web-server" in text
    )


def test_removing_an_instance_frees_its_cpus_and_memory_for_later_fragments(
    tmp_path: Path,
) -> None:
    body = (
        '&{/instances} { instance-remove { instance-name = "database"; }; };\n'
        "&{/instances/web-server} { cpu-add { cpu@0 { reg = <2>; }; }; "
        "memory-add { memory@0 { size = <0x0 0x60000000>; }; }; };"
    )
    assert overlay.check(compiled(tmp_path, body), BUDGET) == []


def test_a_plain_dtb_or_an_unknown_operation_is_not_an_overlay(tmp_path: Path) -> None:
    with pytest.raises(DtbError, match=r"not an overlay \(no /plugin/\): use mkh dtb check"):
        overlay.fragments(dtb.to_dtb([WEB]))
    unknown = compiled(
        tmp_path, "&{/instances/web-server} { cpu-grow { cpu@0 { reg = <4>; }; }; };"
    )
    with pytest.raises(DtbError, match="fragment@0: cpu-grow is not an operation"):
        overlay.fragments(unknown)


def test_without_the_instances_there_a_named_one_is_taken_to_exist(tmp_path: Path) -> None:
    body = "&{/instances/web-server} { cpu-remove { cpu@0 { reg = <1>; }; }; };"
    assert overlay.check(compiled(tmp_path, body), Budget(cpus=6)) == []
    assert problem(tmp_path, body)[0] == "EBUSY"  # known: its first CPU


def test_mkh_dtb_overlay_writes_the_dtbo_or_says_why_not(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = tmp_path / "grow.dts"
    source.write_text(EXAMPLE.read_text())
    assert main(["dtb", "overlay", str(source), "--cpus", "6"]) == 0
    written = tmp_path / "grow.dtbo"
    assert capsys.readouterr().out.strip() == str(written)
    assert [f.target for f in overlay.fragments(written.read_bytes())] == [
        "/instances",
        "/instances/web-server",
    ]
    # The .dtbo is checked as it is; on 5 CPUs, CPU 5 does not exist.
    assert main(["dtb", "overlay", str(written), "--cpus", "5", "-o", str(tmp_path / "x")]) == 1
    err = capsys.readouterr().err
    assert (
        "overlay fragment@1 (/instances/web-server): cpu-add: CPU 5 does not exist (EINVAL)" in err
    )
    assert not (tmp_path / "x").exists()
    # Checked against the instances example.dts creates: web-server exists, batch not.
    example = str(IMAGES_DIR / "multikernel" / "example.dts")
    source.write_text(
        "/dts-v1/;\n/plugin/;\n&{/instances/batch} { cpu-add { cpu@0 { reg = <4>; }; }; };\n"
    )
    assert main(["dtb", "overlay", str(source), "--instances", example]) == 1
    assert (
        "overlay fragment@0 (/instances/batch): no instance batch (ENOENT)"
        in capsys.readouterr().err
    )
    # A syntax error is dtc's, with the file and line.
    source.write_text("/dts-v1/;\n/plugin/;\n&{/instances} {\n")
    assert main(["dtb", "overlay", str(source)]) == 1
    assert f"{source}:" in capsys.readouterr().err


def test_overlays_written_as_code_compile_to_what_they_say() -> None:
    text = overlay.source(
        overlay.fragment("/instances", overlay.create("batch", (4,), 256 << 20)),
        overlay.fragment(
            "/instances/web-server",
            overlay.cpu_op("cpu-add", 5),
            overlay.memory_add(128 << 20),
            overlay.memory_remove((0x1_4000_0000, 64 << 20)),
        ),
        overlay.fragment("/instances", overlay.remove("database")),
    )
    frags = overlay.fragments(overlay.compile_dts(text))
    assert [(f.target, list(f.operations)) for f in frags] == [
        ("/instances", ["instance-create"]),
        ("/instances/web-server", ["memory-remove", "memory-add", "cpu-add"]),
        ("/instances", ["instance-remove"]),
    ]
    create = frags[0].operations["instance-create"]
    assert create.get_property("instance-name").value == "batch"
    assert create.get_property("id") is None  # the kernel picks the lowest free id
    ops = frags[1].operations
    [added] = ops["memory-add"].nodes
    assert list(added.get_property("size").data) == [0, 128 << 20]
    [removed] = ops["memory-remove"].nodes
    assert list(removed.get_property("reg").data) == [1, 0x4000_0000, 0, 64 << 20]
    assert (
        overlay.fragments(
            overlay.compile_dts(
                overlay.source(
                    overlay.fragment("/instances", overlay.create("b", (2,), 1 << 20, mk_id=7))
                )
            )
        )[0]
        .operations["instance-create"]
        .get_property("id")
        .value
        == 7
    )

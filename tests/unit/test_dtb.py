import subprocess
from typing import Any

import fdt
import pytest

from harness.core.paths import EXAMPLE_DTS as EXAMPLE
from harness.multikernel import dtb
from harness.multikernel.dtb import Budget, Instance

# The instances of the usage.rst examples (two, then three instances).
WEB = Instance("web-server", 1, (1,), 0x20000000)
DB = Instance("database", 2, (2, 3), 0x40000000)
LB = Instance("load-balancer", 3, (0,), 0x10000000)
MIB = 1 << 20

EXAMPLE_DTS = EXAMPLE.read_text()


def tree(blob: bytes) -> Any:
    """A DTB as nested dicts of node -> (properties, children), for comparison."""

    def walk(node: fdt.Node) -> Any:
        props = {p.name: list(getattr(p, "data", [])) for p in node.props}
        return props, {child.name: walk(child) for child in node.nodes}

    return walk(fdt.parse_dtb(blob).root)


def test_python_description_matches_dtc_for_the_example() -> None:
    assert tree(dtb.to_dtb([WEB, DB])) == tree(dtb.compile_dts(EXAMPLE_DTS))


def test_three_instance_example_matches_dtc() -> None:
    dts = EXAMPLE_DTS.replace(
        "\t};\n};",
        "\t\tload-balancer {\n\t\t\tid = <3>;\n\t\t\tresources {\n\t\t\t\tcpus = <0>;\n"
        "\t\t\t\tmemory-bytes = <0x10000000>;\n\t\t\t};\n\t\t};\n\t};\n};",
    )
    assert tree(dtb.to_dtb([WEB, DB, LB])) == tree(dtb.compile_dts(dts))


def test_dtc_output_agrees_with_dtc_decompiling_ours() -> None:
    ours = dtb.to_dtb([WEB, DB])
    text = subprocess.run(
        ["dtc", "-q", "-I", "dtb", "-O", "dts", "-"], input=ours, capture_output=True, check=True
    ).stdout.decode()
    assert 'compatible = "multikernel-v1";' in text
    assert "cpus = <0x02 0x03>;" in text
    assert dtb.parse(ours) == ([WEB, DB], [])


def test_example_is_valid_for_a_big_enough_machine() -> None:
    blob = dtb.compile_dts(EXAMPLE_DTS)
    assert dtb.check(blob, Budget(cpus=4, pool_free=2 << 30)) == []


def errnos(instances: list[Instance], budget: Budget | None = None) -> list[str]:
    return [p.errno for p in dtb.check(dtb.to_dtb(instances), budget)]


def test_duplicate_id_and_shared_cpu() -> None:
    problems = dtb.check(dtb.to_dtb([WEB, Instance("other", 1, (1,), MIB)]))
    assert [(p.instance, p.errno) for p in problems] == [("other", "EEXIST"), ("other", "EBUSY")]
    assert "web-server" in problems[0].message


def test_name_already_created_in_the_guest() -> None:
    assert errnos([WEB], Budget(existing=[Instance("web-server", 9, (5,), MIB)])) == ["EEXIST"]


def test_cpu_out_of_range_names_the_machine() -> None:
    problems = dtb.check(dtb.to_dtb([Instance("big", 4, (7,), MIB)]), Budget(cpus=4))
    assert [p.errno for p in problems] == ["EINVAL"]
    assert "CPU 7" in problems[0].message and "0-3" in problems[0].hint


def test_the_boot_cpu_is_refused_whatever_the_machine() -> None:
    problems = dtb.check(dtb.to_dtb([Instance("lb", 3, (0, 1), MIB)]))
    assert [(p.instance, p.errno) for p in problems] == [("lb", "EINVAL")]
    assert "CPU 0" in problems[0].message and "from 1 up" in problems[0].hint


def test_memory_over_the_pool_counts_earlier_instances() -> None:
    budget = Budget(pool_free=0x30000000)
    assert errnos([WEB, DB], budget) == ["ENOSPC"]
    assert errnos([WEB], budget) == []


def test_unaligned_memory_and_bad_id() -> None:
    problems = dtb.check(
        dtb.to_dtb([Instance("odd", 5, (1,), 0x20000001), Instance("zero", 0, (2,), MIB)])
    )
    assert [(p.instance, p.errno) for p in problems] == [("odd", "EINVAL"), ("zero", "EINVAL")]
    assert "multiple of 4096" in problems[0].hint


def test_memory_below_the_kernels_minimum_is_refused() -> None:
    problems = dtb.check(dtb.to_dtb([Instance("tiny", 5, (1,), MIB - 4096)]))
    assert [(p.instance, p.errno) for p in problems] == [("tiny", "EINVAL")]
    assert "below the minimum of 0x100000" in problems[0].message
    assert "at least 1 MiB" in problems[0].hint
    assert dtb.check(dtb.to_dtb([Instance("tiny", 5, (1,), MIB)])) == []


def test_64_bit_memory_uses_two_cells() -> None:
    big = Instance("big", 7, (1,), 5 << 30)
    assert dtb.parse(dtb.to_dtb([big])) == ([big], [])
    assert "memory-bytes = <0x1 0x40000000>; // 5 GB" in dtb.instance_dts(big)


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda b: b[: len(b) // 2], "not a valid device tree blob"),
        (lambda b: b"\x00garbage" * 20, "not a valid device tree blob"),
        (
            lambda b: dtb.compile_dts('/dts-v1/; / { compatible = "other"; instances { }; };'),
            "root compatible",
        ),
        (
            lambda b: dtb.compile_dts('/dts-v1/; / { compatible = "multikernel-v1"; };'),
            "no /instances",
        ),
    ],
)
def test_blobs_the_kernel_refuses_outright(mangle: Any, message: str) -> None:
    with pytest.raises(dtb.DtbError, match=message):
        dtb.check(mangle(dtb.to_dtb([WEB])))


def test_instance_dts_is_the_kernel_format() -> None:
    assert dtb.instance_dts(WEB) == (
        "/dts-v1/;\n\n/web-server {\n"
        '    compatible = "multikernel-v1";\n'
        "    id = <1>;\n"
        "    resources {\n"
        "        cpus = <1>;\n"
        "        memory-bytes = <0x20000000>; // 512 MB\n"
        "    };\n};\n"
    )
    assert "cpus = <2 3>;" in dtb.instance_dts(DB)
    assert "// 1 GB" in dtb.instance_dts(DB)


@pytest.mark.parametrize("name", [".", "..", "a\nb", "x" * 32, "sp ace", "slash/"])
def test_names_the_kernel_refuses(name: str) -> None:
    problems = dtb.check(dtb.to_dtb([Instance(name, 4, (2,), 0x10000000)]))
    assert [p.errno for p in problems] == ["EINVAL"]
    assert "is not 1-31 of" in problems[0].message


def test_names_the_kernel_takes() -> None:
    assert dtb.check(dtb.to_dtb([Instance("db_2,v1.0+x@1", 4, (2,), 0x10000000)])) == []

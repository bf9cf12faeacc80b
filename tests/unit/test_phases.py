import pytest

from harness.core.errors import InfraError
from harness.multikernel import phases

HOST_START = "tsc_khz 1000\ninstance web-server\nexec 1000000\nwakeup 1002000\ntrampoline 1003000\n"
INSTANCE_BOOT = (
    "tsc_khz 1000\npurgatory 1003500\npurgatory-done 1203500\nkernel 1253500\n"
    "init 1953500\nshell 1993500\n"
)


def test_parse_reads_the_rate_and_every_stamp_but_the_instance_name() -> None:
    stamps = phases.parse(HOST_START)
    assert stamps.khz == 1000
    assert stamps.tsc == {"exec": 1000000, "wakeup": 1002000, "trampoline": 1003000}


def test_parse_refuses_stamps_without_a_rate() -> None:
    with pytest.raises(InfraError, match="no tsc_khz"):
        phases.parse("kernel 5\n")


def test_spawn_phases_are_differences_and_the_rest_makes_the_total() -> None:
    stamps = phases.merge(phases.parse(HOST_START), phases.parse(INSTANCE_BOOT))
    result = phases.breakdown(stamps, phases.SPAWN_PHASES, total=1.5)
    assert list(result.phases) == [name for name, _, _ in phases.SPAWN_PHASES] + [phases.REST]
    assert result.phases["purgatory"] == pytest.approx(0.2)
    assert result.phases["kernel entry to /init"] == pytest.approx(0.7)
    assert result.phases[phases.REST] == pytest.approx(1.5 - 0.9935)
    assert sum(result.phases.values()) == pytest.approx(1.5)


def test_boot_phases_count_from_the_machine_reset() -> None:
    host = phases.parse("tsc_khz 2000\nkernel 400000\ninit 2400000\nshell 2600000\n")
    result = phases.breakdown(phases.merge(host), phases.BOOT_PHASES, total=2.0)
    assert result.phases["firmware and decompressor"] == pytest.approx(0.2)
    assert result.phases["kernel entry to /init"] == pytest.approx(1.0)


def test_a_missing_stamp_names_what_the_kernel_lacks() -> None:
    stamps = phases.merge(phases.parse(HOST_START))
    with pytest.raises(InfraError, match=r"no purgatory stamp .*CONFIG_MULTIKERNEL_DEBUG"):
        phases.breakdown(stamps, phases.SPAWN_PHASES, total=1.0)


def test_unordered_stamps_are_refused() -> None:
    host = phases.parse("tsc_khz 1000\nkernel 900\ninit 800\nshell 1000\n")
    with pytest.raises(InfraError, match="ends before it starts"):
        phases.breakdown(phases.merge(host), phases.BOOT_PHASES, total=1.0)


def test_kernels_with_different_rates_are_not_merged() -> None:
    with pytest.raises(InfraError, match="different TSC rates"):
        phases.merge(phases.parse("tsc_khz 1000\n"), phases.parse("tsc_khz 2000\n"))


def test_rates_one_refinement_apart_are_one_tsc() -> None:
    merged = phases.merge(phases.parse("tsc_khz 2596128\n"), phases.parse("tsc_khz 2596149\n"))
    assert merged.khz == 2596128

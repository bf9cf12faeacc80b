import pytest

from harness.bench.density import pool_stride
from harness.bench.measure import Cycle, CycleRun, IpiSample, SpawnSample
from harness.bench.overlay import OverlayCycle, OverlayRun
from harness.multikernel import phases
from harness.multikernel.mk import Region
from harness.report.bench import cycles_table, ipi_table, overlay_table, spawn_json, spawn_table


def _sample(boot: float, digest: float, kernel: float, total: float) -> SpawnSample:
    host = phases.Breakdown({"firmware and decompressor": 0.5, phases.REST: boot - 0.5}, boot)
    spawn = phases.Breakdown(
        {
            "purgatory": digest,
            "kernel entry to /init": kernel,
            phases.REST: total - digest - kernel,
        },
        total,
    )
    return SpawnSample(host, spawn, "tcg")


def test_report_gives_each_phase_per_run_its_median_and_the_ratio() -> None:
    samples = [
        _sample(2.0, 0.4, 0.5, 1.0),
        _sample(4.0, 0.2, 0.5, 1.0),
        _sample(3.0, 0.3, 1.5, 3.0),
    ]
    lines = spawn_table(samples).splitlines()
    assert lines[0].split() == ["phase", "(s)", "run", "1", "run", "2", "run", "3", "median"]
    digest = next(line for line in lines if "purgatory" in line)
    assert digest.split()[-4:] == ["0.400", "0.200", "0.300", "0.300"]
    totals = [line.split()[-4:] for line in lines if line.strip().startswith("total")]
    assert totals == [["2.000", "4.000", "3.000", "3.000"], ["1.000", "1.000", "3.000", "1.000"]]
    stamped = [line.split()[-4:] for line in lines if line.strip().startswith("stamped")]
    assert stamped == [["0.500"] * 4, ["0.900", "0.700", "1.800", "0.900"]]
    assert lines[-1] == ("spawn/boot ratio of the medians 0.33 (tcg); of the stamped medians 1.80")


def test_spawn_json_has_every_run_the_medians_and_the_ratio() -> None:
    figures = spawn_json([_sample(2.0, 0.4, 0.5, 1.0), _sample(4.0, 0.2, 0.5, 1.0)], 1 << 29)
    assert figures["accel"] == ["tcg"]
    assert figures["instance_memory"] == 1 << 29
    runs, median = figures["runs"], figures["median"]
    assert isinstance(runs, list) and len(runs) == 2
    assert isinstance(median, dict)
    assert median["spawn"]["purgatory"] == pytest.approx(0.3)
    assert figures["ratio"] == pytest.approx(1 / 3)
    assert figures["stamped_ratio"] == pytest.approx(0.8 / 0.5)


def test_ipi_report_gives_min_median_p99_and_the_ratio() -> None:
    ping = [float(n) for n in range(1, 201)]  # 1..200 us
    ipi = [10.0] * 199 + [500.0]
    text = ipi_table(IpiSample(ping, ipi))
    lines = text.splitlines()
    assert lines[1].split()[-3:] == ["1.0", "100.5", "198.0"]
    assert lines[2].split()[-3:] == ["10.0", "10.0", "10.0"]
    assert lines[3].startswith("ping/IPI median ratio 10.1 over 200 pings and 200 IPIs")


def test_cycles_report_flags_a_pool_leak() -> None:
    cycles = [Cycle(0.1, 1.0, 2.0), Cycle(0.1, 1.5, 3.0), Cycle(0.1, 1.0, 2.5)]
    clean = cycles_table(CycleRun(5.0, cycles, 1000, 1000)).splitlines()
    assert len(clean) == 6
    assert clean[1].split() == ["1", "0.10", "1.00", "2.00", "3.10"]
    assert clean[4] == (
        "median cycle 3.60s (halt 1.00s, start 2.50s); start again / first spawn ratio 0.50"
    )
    assert clean[5] == "pool free: 1000 bytes at the start, 1000 at the end"
    leaky = cycles_table(CycleRun(5.0, cycles, 1000, 0)).splitlines()
    assert leaky[5].endswith("<-- LEAK")


def test_overlay_report_gives_each_step_as_a_ratio_to_the_host_s_own_hotplug() -> None:
    cycles = [
        OverlayCycle(0.010, 0.020, 0.050, 0.060, 0.200, 0.400),
        OverlayCycle(0.012, 0.022, 0.070, 0.080, 0.300, 0.500),
        OverlayCycle(0.010, 0.020, 0.060, 0.070, 0.250, 0.450),
    ]
    lines = overlay_table(OverlayRun(cycles, 85.0, "tcg")).splitlines()
    assert "(median of 3, tcg)" in lines[0]
    rows = {line[:52].strip(): line[52:].split() for line in lines[1:7]}
    assert rows["host: CPU online"] == ["10.0", "1.00"]
    assert rows["host: CPU offline"] == ["20.0", "1.00"]
    assert rows["instance: cpu-add (online there)"] == ["60.0", "6.00"]
    assert rows["instance: cpu-add rolled back (offline, stopped)"] == ["70.0", "3.50"]
    assert rows["instance: memory-add 128 MiB (hot-added, onlined)"] == ["250.0", "25.00"]
    assert rows["instance: memory-add rolled back (offlined, cleared)"] == ["450.0", "22.50"]
    assert "about one ping (85 us median)" in lines[7]


def test_the_pool_stride_is_the_median_step_or_one_instance_s_size() -> None:
    mib = 1 << 20
    regions = [
        Region(s * mib, s * mib + 24 * mib - 1, f"dense{n}") for n, s in enumerate((0, 24, 50))
    ]
    assert pool_stride(regions) == 25 * mib
    # `mkh bench density --cpus 2`: one instance, no step between two.
    assert pool_stride(regions[:1]) == 24 * mib

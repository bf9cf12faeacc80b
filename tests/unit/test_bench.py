import pytest

from harness.bench.measure import Cycle, CycleRun, IpiSample, SpawnSample
from harness.multikernel import phases
from harness.report.bench import cycles_table, ipi_table, spawn_json, spawn_table


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

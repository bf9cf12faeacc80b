from harness.bench import Cycle, CycleRun, IpiSample, SpawnSample, cycles_report, ipi_report, report


def test_report_gives_each_run_and_the_median_ratio() -> None:
    text = report([SpawnSample(2.0, 1.0), SpawnSample(4.0, 1.0), SpawnSample(3.0, 3.0)])
    lines = text.splitlines()
    assert len(lines) == 5
    assert lines[1].split() == ["1", "2.00", "1.00", "0.50"]
    assert lines[-1] == ("median host boot 3.00s, median spawn 1.00s, spawn/boot ratio 0.33")


def test_ipi_report_gives_min_median_p99_and_the_ratio() -> None:
    ping = [float(n) for n in range(1, 201)]  # 1..200 us
    ipi = [10.0] * 199 + [500.0]
    text = ipi_report(IpiSample(ping, ipi))
    lines = text.splitlines()
    assert lines[1].split()[-3:] == ["1.0", "100.5", "198.0"]
    assert lines[2].split()[-3:] == ["10.0", "10.0", "10.0"]
    assert lines[3].startswith("ping/IPI median ratio 10.1 over 200 pings and 200 IPIs")


def test_cycles_report_flags_a_pool_leak() -> None:
    cycles = [Cycle(0.1, 1.0, 2.0), Cycle(0.1, 1.5, 3.0), Cycle(0.1, 1.0, 2.5)]
    clean = cycles_report(CycleRun(5.0, cycles, 1000, 1000)).splitlines()
    assert len(clean) == 6
    assert clean[1].split() == ["1", "0.10", "1.00", "2.00", "3.10"]
    assert clean[4] == (
        "median cycle 3.60s (halt 1.00s, start 2.50s); start again / first spawn ratio 0.50"
    )
    assert clean[5] == "pool free: 1000 bytes at the start, 1000 at the end"
    leaky = cycles_report(CycleRun(5.0, cycles, 1000, 0)).splitlines()
    assert leaky[5].endswith("<-- LEAK")

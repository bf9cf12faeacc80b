from harness.bench import SpawnSample, report


def test_report_gives_each_run_and_the_median_ratio() -> None:
    text = report([SpawnSample(2.0, 1.0), SpawnSample(4.0, 1.0), SpawnSample(3.0, 3.0)])
    lines = text.splitlines()
    assert len(lines) == 5
    assert lines[1].split() == ["1", "2.00", "1.00", "0.50"]
    assert lines[-1] == ("median host boot 3.00s, median spawn 1.00s, spawn/boot ratio 0.33")

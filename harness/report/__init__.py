"""Reports: result.json of every run, the benchmarks' tables and JSON."""

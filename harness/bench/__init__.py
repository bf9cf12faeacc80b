"""Benchmarks: spawn, IPI, start-stop cycles and density, each measured in one run."""

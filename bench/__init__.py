"""Benchmarks and the soak: numbers and long runs, not unit tests."""

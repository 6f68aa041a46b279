"""Benchmarks, run by hand with `bench/run` (never collected by pytest). See bench/README.md."""

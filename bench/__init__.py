"""Benchmarks: one module per figure, run as ``python -m bench.NAME``, JSON out."""

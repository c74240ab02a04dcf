"""Benchmarks: run one with `python -m bench.NAME` (docs/design.md, Benchmarks)."""

"""Benchmarks (DESIGN.md, Benchmarks): each module runs as `python -m bench.NAME`."""

"""Benchmarks run by ``python -m flowkit.bench NAME``; each module exposes ``main(argv=None) -> int``."""

"""Benchmarks, one module each: ``python -m flowkit.bench NAME [args]`` runs ``NAME.main(argv)``.

A benchmark module defines ``main(argv: list[str]) -> int`` and prints its results (JSON).
Speed and quality targets live here, never in timed unit tests.
"""

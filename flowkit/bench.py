"""Run a benchmark by name: ``python -m flowkit.bench NAME [args]``.

Each benchmark is a module ``flowkit/benchmarks/NAME.py`` with a ``main(argv)``; this
dispatcher imports it by name, so adding a benchmark never touches this file.

    python -m flowkit.bench                        # list the benchmarks
    python -m flowkit.bench moons --steps 300      # a quick run of the two-moons benchmark
    python -m flowkit.bench moons --help           # a benchmark's own options
"""

from __future__ import annotations

import importlib
import pkgutil
import sys

from . import benchmarks

__all__ = ["available", "main"]


def available() -> list[str]:
    """The names of the benchmarks in :mod:`flowkit.benchmarks`."""
    return sorted(m.name for m in pkgutil.iter_modules(benchmarks.__path__) if not m.name.startswith("_"))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    names = available()
    usage = f"usage: python -m flowkit.bench NAME [args]; NAME is one of {', '.join(names)}"
    if not argv or argv[0] in ("-h", "--help"):
        print(usage)
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in names:
        print(f"unknown benchmark {name!r}; {usage}", file=sys.stderr)
        return 2
    module = importlib.import_module(f"{benchmarks.__name__}.{name}")
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())

"""The Examples in flowkit's docstrings run, and print what they say they print."""

import doctest
import importlib
import pkgutil

import pytest

import flowkit

# Widgets, exercises and benchmarks are exercised by their own tests; their docstrings
# carry no examples meant to run headless.
SKIP = ("flowkit.widgets", "flowkit.exercises", "flowkit.benchmarks")
MODULES = sorted(
    info.name for info in pkgutil.walk_packages(flowkit.__path__, "flowkit.")
    if not info.name.startswith(SKIP)
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}"


def test_examples_exist():
    """The public classes carry runnable examples (a guard against losing them all)."""
    finder = doctest.DocTestFinder()
    count = sum(len(t.examples) for name in MODULES
                for t in finder.find(importlib.import_module(name)))
    assert count >= 20, f"only {count} docstring examples found"

"""Exercise checkers, one module per lesson."""

from ._base import CheckResult, compare

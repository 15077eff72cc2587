"""Exercise checkers, one module per lesson, all built on :class:`Exercise`."""

from ._base import CheckResult, Exercise, compare, summary
from . import lesson01, lesson02, lesson03, lesson04, lesson05, lesson06
from . import lesson07
from . import lesson09
from . import lesson10

"""Exercise checkers, one module per lesson."""

from ._base import CheckResult, compare
from . import lesson02
from . import lesson03
from . import lesson01
from . import lesson06
from . import lesson05
from . import lesson04

"""Interactive explorers shown by the lessons; one module per lesson.

Each explorer is a function returning an :class:`Explorer` (``widget``, ``figure``,
``controls``, ``update``) so tests move its sliders headlessly.
"""

from ._base import MAX_WIDTH_PX, Explorer, figure_png, float_slider, int_slider, make_figure, show_static
from . import lesson02
from . import lesson03
from . import lesson01
from . import lesson06
from . import lesson05
from . import lesson04
from . import lesson07
from . import lesson09
from . import lesson10
from . import lesson08

"""The one exercise pattern every lesson uses.

A learner writes a function in a template cell and asks one object for help::

    from flowkit.exercises import lesson01 as ex
    ex.affine_density.check(log_prob_affine)   # PASS, what is wrong, or "Not attempted yet"
    ex.affine_density.hint()                   # the first hint; again for the next one
    ex.affine_density.solution()               # the reference solution, shown as code

A checker is a plain function ``checker(*answers) -> list[str]``: the problems it found,
empty when the answer is right. It calls the learner's code through :func:`call`, which
turns the template's ``NotImplementedError`` into :class:`NotAttempted` and any other
exception into a :class:`LearnerError` that names the learner's own line. ``Exercise.check``
catches both, so a learner never sees a traceback from flowkit.
"""

from __future__ import annotations

import inspect
import linecache
import os
import textwrap
import traceback
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import torch

__all__ = [
    "CheckResult",
    "Exercise",
    "NotAttempted",
    "LearnerError",
    "call",
    "compare",
    "matches",
    "diagnose",
    "forbid",
    "summary",
]

_FLOWKIT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class NotAttempted(Exception):
    """The learner's template still raises ``NotImplementedError``."""


class LearnerError(Exception):
    """The learner's code raised; the message names their line."""


@dataclass
class CheckResult:
    """The outcome of one check: ``passed`` and a ``message`` (also its ``str``).

    ``status`` is ``"pass"``, ``"fail"`` or ``"not attempted"``.
    """

    exercise: str
    status: str
    message: str

    @property
    def passed(self) -> bool:
        return self.status == "pass"

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return self.message

    def _repr_pretty_(self, printer, cycle):
        printer.text(self.message)

    def _ipython_display_(self):
        # check() has already printed this result; the cell's own display of the return
        # value would show it twice. Later displays (the learner typing `result`) show it.
        if getattr(self, "_shown", False):
            self._shown = False
            return
        print(self.message)


def _learner_frame(tb) -> traceback.FrameSummary | None:
    """The innermost frame of the traceback that is not flowkit's own code."""
    frames = [f for f in traceback.extract_tb(tb)
              if not os.path.abspath(f.filename).startswith(_FLOWKIT_DIR)]
    return frames[-1] if frames else None


def call(fn: Callable, *args, name: str | None = None, **kwargs):
    """Call a learner's function; raise :class:`NotAttempted` or :class:`LearnerError`.

    A ``NotImplementedError`` raised by the learner's own code (the template) means the
    exercise is not attempted yet. Any other exception is re-raised as a
    :class:`LearnerError` whose message says which of the learner's lines raised what.
    """
    if not callable(fn):
        raise LearnerError(f"expected a function, got {type(fn).__name__}: pass the "
                           "function itself, without calling it (no parentheses)")
    name = name or getattr(fn, "__name__", "your function")
    try:
        return fn(*args, **kwargs)
    except NotImplementedError as err:
        frame = _learner_frame(err.__traceback__)
        if frame is not None or not str(err):
            raise NotAttempted(f"{name} still raises NotImplementedError: replace that line "
                               "with your code") from None
        raise LearnerError(f"{name} called something that is not implemented: {err}") from None
    except (NotAttempted, LearnerError):
        raise
    except Exception as err:  # noqa: BLE001 - every learner error is reported, not raised
        frame = _learner_frame(err.__traceback__)
        where = ""
        if frame is not None:
            line = (frame.line or linecache.getline(frame.filename, frame.lineno)).strip()
            where = f" in {frame.name}, line {frame.lineno}" + (f": {line}" if line else "")
        raise LearnerError(f"{name} raised {type(err).__name__}{where}\n    {err}") from None


def matches(got, target: torch.Tensor, atol: float = 1e-5, rtol: float = 1e-5) -> bool:
    """Whether ``got`` is a tensor of ``target``'s shape equal to it within tolerance."""
    if not isinstance(got, torch.Tensor) or got.shape != target.shape:
        return False
    return bool(torch.isclose(got.detach().double(), target.detach().double(), atol=atol,
                              rtol=rtol, equal_nan=True).all())


def compare(name: str, got, expected: torch.Tensor, atol: float = 1e-5, rtol: float = 1e-5,
            inputs: torch.Tensor | None = None) -> list[str]:
    """Problems found comparing a learner's ``got`` with ``expected`` (empty if none)."""
    if not isinstance(got, torch.Tensor):
        return [f"{name} should be a torch.Tensor, got {type(got).__name__}"]
    if got.shape != expected.shape:
        return [f"{name} has shape {tuple(got.shape)}, expected {tuple(expected.shape)}"]
    if not torch.isfinite(got).all():
        return [f"{name} contains NaN or infinite values"]
    got64, exp64 = got.detach().double(), expected.detach().double()
    bad = ~torch.isclose(got64, exp64, atol=atol, rtol=rtol)
    if bad.any():
        i = int(bad.flatten().nonzero()[0])
        where = ""
        if inputs is not None and inputs.shape[0] == got.shape[0] and got.dim() == 1:
            where = f" at input {inputs[i].tolist()}"
        return [f"{name} is off{where}: got {got64.flatten()[i].item():.6g}, "
                f"expected {exp64.flatten()[i].item():.6g} "
                f"({int(bad.sum())} of {bad.numel()} values wrong)"]
    return []


def diagnose(got, expected: torch.Tensor, slips: Sequence[tuple[torch.Tensor, str]],
             what: str, inputs: torch.Tensor | None = None, hint: str = "",
             atol: float = 1e-5, rtol: float = 1e-5) -> list[str]:
    """Problems with ``got``: none if right, else the recognised slip or the first wrong value.

    ``slips`` pairs the answer a common mistake would give with the message that names it.
    """
    if matches(got, expected, atol, rtol) and torch.isfinite(got).all():
        return []
    for wrong, message in slips:
        if matches(got, wrong, atol, rtol):
            return [message]
    problems = compare(what, got, expected, atol=atol, rtol=rtol, inputs=inputs)
    if problems and hint:
        problems.append(hint)
    return problems


def _code_names(code) -> set[str]:
    names = set(code.co_names) | set(code.co_varnames)
    for const in code.co_consts:
        if inspect.iscode(const):
            names |= _code_names(const)
    return names


def forbid(fn: Callable, names: Iterable[str], why: str) -> list[str]:
    """Problems if the learner's function uses any of ``names`` (attributes or globals).

    Enforces a lesson's "without ..." rule, e.g. ``forbid(fn, ["linalg", "det"], ...)``.
    """
    code = getattr(fn, "__code__", None)
    if code is None:
        return []
    used = sorted(_code_names(code) & set(names))
    if used:
        return [f"your function uses {', '.join(used)}, which this exercise rules out: {why}"]
    return []


class Exercise:
    """One exercise: ``check(answer)``, ``hint()``, ``solution()`` and ``reference``.

    Arguments:
        name: the attribute name in its lesson module, e.g. ``"affine_density"``.
        title: a short title shown in messages and in the summary.
        checker: ``checker(*answers) -> list[str]`` of problems, empty when right.
        reference: the reference answer (a function or a Transform class), used by the
            tests and shown by ``solution()``; a notebook never runs it.
        hints: shown one at a time, in order.
    """

    def __init__(self, name: str, title: str, checker: Callable[..., list[str]],
                 reference, hints: Sequence[str]):
        if not hints:
            raise ValueError(f"exercise {name!r} needs at least one hint")
        self.name = name
        self.title = title
        self._checker = checker
        self.reference = reference
        self.hints = list(hints)
        self._hints_shown = 0
        self.last_result: CheckResult | None = None

    def check(self, *answers, show: bool = True) -> CheckResult:
        """Check the learner's answer; print and return a :class:`CheckResult`."""
        try:
            problems = list(self._checker(*answers))
        except NotAttempted as err:
            result = CheckResult(self.title, "not attempted", f"Not attempted yet: {err}")
        except LearnerError as err:
            result = CheckResult(self.title, "fail", f"Not yet: {self.title}\n  - {err}")
        except Exception as err:  # noqa: BLE001 - a learner never sees a flowkit traceback
            result = CheckResult(
                self.title, "fail",
                f"Not yet: {self.title}\n  - your answer could not be checked: "
                f"{type(err).__name__}: {err}")
        else:
            if problems:
                result = CheckResult(self.title, "fail", f"Not yet: {self.title}\n"
                                     + "\n".join(f"  - {p}" for p in problems))
            else:
                result = CheckResult(self.title, "pass", f"PASS: {self.title}")
        self.last_result = result
        if show:
            print(result.message)
            result._shown = True
        return result

    def hint(self) -> str:
        """Print the next hint (the last one again once all have been shown)."""
        i = min(self._hints_shown, len(self.hints) - 1)
        self._hints_shown += 1
        more = "" if i + 1 < len(self.hints) else " (that is the last hint)"
        text = f"Hint {i + 1} of {len(self.hints)}{more}: {self.hints[i]}"
        print(text)
        return text

    def solution_code(self) -> str:
        """The reference solution's source code."""
        return textwrap.dedent(inspect.getsource(self.reference))

    def solution(self):
        """Show the reference solution as code (it is not run)."""
        code = self.solution_code()
        try:
            from IPython.display import Markdown, display
        except ImportError:  # pragma: no cover - IPython ships with Jupyter
            print(code)
            return None
        display(Markdown(f"Solution to **{self.title}**:\n\n```python\n{code}```"))
        return None

    def __repr__(self) -> str:
        return f"<Exercise {self.name}: {self.title}>"


class _SummaryRows(list):
    """``summary()``'s rows; the table is already printed, so a cell shows nothing more."""

    def _ipython_display_(self):
        pass


def summary(exercises: Sequence[Exercise]) -> list[tuple[str, str]]:
    """Print which exercises passed in this kernel; return ``[(name, status), ...]``."""
    rows = []
    for i, ex in enumerate(exercises, 1):
        status = ex.last_result.status if ex.last_result is not None else "not checked"
        rows.append((ex.name, status))
    width = max(len(ex.title) for ex in exercises)
    passed = sum(status == "pass" for _, status in rows)
    print(f"{passed} of {len(rows)} exercises passed in this session")
    for i, (ex, (_, status)) in enumerate(zip(exercises, rows), 1):
        mark = {"pass": "PASS", "fail": "not yet", "not attempted": "not attempted",
                "not checked": "not checked"}[status]
        print(f"  {i}. {ex.title.ljust(width)}  {mark}")
    return _SummaryRows(rows)

"""Checkers for the lessons' exercises: each says PASS, or exactly what is wrong."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

__all__ = ["CheckResult", "compare"]


@dataclass
class CheckResult:
    """Result of one exercise check. Prints as PASS or FAIL with the reasons."""

    exercise: str
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        if self.passed:
            return f"PASS: {self.exercise}"
        return f"FAIL: {self.exercise}\n" + "\n".join(f"  - {p}" for p in self.problems)

    def __repr__(self) -> str:
        return str(self)

    def _repr_pretty_(self, printer, cycle):
        printer.text(str(self))


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

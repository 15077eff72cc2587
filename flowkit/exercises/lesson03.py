"""Exercises for lesson 03: coupling layers.

Exercises 1 and 2 use Glow's variant of the affine coupling, whose scale is a sigmoid
instead of an exponential (``m`` a 0/1 mask, 1 = kept, :math:`\\sigma` the logistic sigmoid):

.. math:: z = m\\odot x + (1-m)\\odot\\left(x\\odot \\sigma(h(m\\odot x)) + t(m\\odot x)\\right),
          \\qquad \\log|\\det \\partial z/\\partial x| = \\sum_i (1-m_i)\\, \\log\\sigma(h_i(m\\odot x))

``h_net`` and ``t_net`` map a ``(batch, D)`` tensor to ``(batch, D)``. Their outputs are
*not* zero on the kept coordinates: multiplying by ``1 - m`` is the coupling's job.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..jacobian import check_transform, log_abs_det_jacobian
from ..transforms import Transform, alternating_mask, checkerboard_mask
from . import _base
from ._base import Exercise, call, compare, forbid, matches

__all__ = [
    "sigmoid_coupling_forward",
    "custom_coupling_spec",
    "sigmoid_inverse",
    "sigmoid_log_det",
    "checkerboard",
    "custom_coupling",
    "EXERCISES",
    "summary",
]


# ----------------------------------------------------------------------------------
# The sigmoid-scale coupling (what the learner's functions are compared with)
# ----------------------------------------------------------------------------------


def sigmoid_coupling_forward(x: Tensor, mask: Tensor, h_net: Callable, t_net: Callable) -> Tensor:
    """Forward map of the sigmoid-scale coupling: use it to test your inverse."""
    kept = x * mask
    return kept + (1 - mask) * (x * torch.sigmoid(h_net(kept)) + t_net(kept))


def _sigmoid_coupling_inverse(z: Tensor, mask: Tensor, h_net: Callable, t_net: Callable) -> Tensor:
    kept = z * mask
    return kept + (1 - mask) * (z - t_net(kept)) / torch.sigmoid(h_net(kept))


def _sigmoid_coupling_log_det(x: Tensor, mask: Tensor, h_net: Callable) -> Tensor:
    return ((1 - mask) * F.logsigmoid(h_net(x * mask))).sum(dim=1)


# ----------------------------------------------------------------------------------
# Test cases: masks, networks and points the checkers use
# ----------------------------------------------------------------------------------


def _net(dim: int, seed: int, bias: float) -> nn.Module:
    """A small fixed random network whose outputs are non-zero on every coordinate."""
    g = torch.Generator().manual_seed(seed)
    net = nn.Sequential(nn.Linear(dim, 16), nn.Tanh(), nn.Linear(16, dim))
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
        net[-1].bias.add_(bias)
    return net.requires_grad_(False)


def _cases():
    """(description, mask, h_net, t_net, x) for a few dimensions and masks."""
    cases = []
    specs = [
        ("D=2, mask [1, 0]", torch.tensor([1.0, 0.0])),
        ("D=2, mask [0, 1]", torch.tensor([0.0, 1.0])),
        ("D=5, alternating mask", alternating_mask(5)),
        ("D=4, mask [0, 0, 1, 1]", torch.tensor([0.0, 0.0, 1.0, 1.0])),
    ]
    for i, (name, mask) in enumerate(specs):
        dim = mask.numel()
        g = torch.Generator().manual_seed(100 + i)
        x = torch.randn(7, dim, generator=g)
        cases.append((name, mask, _net(dim, 2 * i, bias=0.4), _net(dim, 2 * i + 1, bias=-0.3), x))
    return cases


def _call(fn: Callable, *args, name: str | None = None):
    """The learner's function, run without building a graph (nothing here needs gradients)."""
    with torch.no_grad():
        return call(fn, *args, name=name)


def _diagnose(got, wrong_answers: dict[str, Tensor]) -> str | None:
    """The hint of the first common slip ``got`` matches, if any."""
    for hint, candidate in wrong_answers.items():
        if matches(got, candidate) and bool(torch.isfinite(got).all()):
            return hint
    return None


# ----------------------------------------------------------------------------------
# Reference solutions (shown by solution(); a notebook never runs them)
# ----------------------------------------------------------------------------------


def sigmoid_coupling_inverse(z, mask, h_net, t_net):
    kept = z * mask                                   # same as x * mask
    scale = torch.sigmoid(h_net(kept))
    shift = t_net(kept)
    return kept + (1 - mask) * (z - shift) / scale    # undo the shift, then the scale


def sigmoid_coupling_log_det(x, mask, h_net):
    log_scale = torch.nn.functional.logsigmoid(h_net(x * mask))   # log sigma(h)
    return ((1 - mask) * log_scale).sum(dim=1)                    # transformed coordinates only


def checkerboard(height, width, parity=0):
    rows = torch.arange(height).view(-1, 1)          # a column of row indices
    cols = torch.arange(width).view(1, -1)           # a row of column indices
    return ((rows + cols + parity) % 2 == 0).float() # broadcasting makes the (height, width) board


class KeepSecondCoupling(Transform):
    def forward(self, x):
        x1, x2 = x[:, 0], x[:, 1]
        log_scale = torch.tanh(x2)                   # depends on the kept coordinate only
        z1 = x1 * torch.exp(log_scale) + x2 ** 2
        return torch.stack([z1, x2], dim=1), log_scale

    def inverse(self, z):
        z1, z2 = z[:, 0], z[:, 1]
        log_scale = torch.tanh(z2)                   # z2 == x2, so this is the same log-scale
        x1 = (z1 - z2 ** 2) * torch.exp(-log_scale)
        return torch.stack([x1, z2], dim=1), -log_scale


_checkerboard_reference = checkerboard


# ----------------------------------------------------------------------------------
# Exercise 1: the inverse
# ----------------------------------------------------------------------------------


def _check_sigmoid_inverse(inverse: Callable) -> list[str]:
    """Check ``inverse(z, mask, h_net, t_net) -> x`` against the sigmoid coupling's forward."""
    for name, mask, h_net, t_net, x in _cases():
        z = sigmoid_coupling_forward(x, mask, h_net, t_net)
        got = _call(inverse, z.clone(), mask, h_net, t_net)
        if not isinstance(got, Tensor):
            return [f"{name}: return a torch.Tensor x, got {type(got).__name__}"]
        kept = z * mask
        scale, shift = torch.sigmoid(h_net(kept)), t_net(kept)
        wrong = {
            "you multiplied by the scale again; undoing it means dividing by sigmoid(h)":
                kept + (1 - mask) * (z - shift) * scale,
            "this coupling's scale is sigmoid(h), not exp(h): divide by sigmoid(h) "
            "instead of multiplying by exp(-h)":
                kept + (1 - mask) * (z - shift) * torch.exp(-h_net(kept)),
            "you undid the scale before the shift; forward scales then shifts, so the inverse "
            "must subtract t first: (z - t) / sigmoid(h)":
                kept + (1 - mask) * (z / scale - shift),
            "you fed the networks the whole z; feed them the kept part m * z, exactly what "
            "forward fed them (m * z equals m * x, which is why the inverse works)":
                kept + (1 - mask) * (z - t_net(z)) / torch.sigmoid(h_net(z)),
            "the kept coordinates changed; they must pass through untouched: start from m * z "
            "and only change the (1 - m) part":
                (z - shift) / scale,
            "you returned the kept part only: add (1 - m) * (z - t) / sigmoid(h)": kept,
        }
        problems = compare("x", got, x, atol=1e-5, rtol=1e-5)
        if problems:
            hint = _diagnose(got, wrong)
            message = f"{name}: inverse(forward(x)) does not give back x. {problems[0]}"
            if hint:
                message += f". Hint: {hint}"
            elif got.shape == x.shape and torch.allclose((got * mask).double(), (x * mask).double(), atol=1e-5):
                message += (". The kept coordinates are right; check the transformed ones: "
                            "x_b = (z_b - t(m*z)) / sigmoid(h(m*z))")
            return [message]
    return []


# ----------------------------------------------------------------------------------
# Exercise 2: the log-determinant
# ----------------------------------------------------------------------------------


def _check_sigmoid_log_det(log_det_fn: Callable) -> list[str]:
    """Check ``log_det_fn(x, mask, h_net) -> (batch,)`` against autograd's slogdet."""
    for name, mask, h_net, t_net, x in _cases():
        got = _call(log_det_fn, x.clone(), mask, h_net)
        expected = _sigmoid_coupling_log_det(x, mask, h_net)
        autograd = log_abs_det_jacobian(lambda v: sigmoid_coupling_forward(v, mask, h_net, t_net), x)
        if not torch.allclose(expected, autograd, atol=1e-4):  # pragma: no cover - guards the reference
            raise AssertionError("the reference log-det disagrees with autograd")
        h = h_net(x * mask)
        log_scale = F.logsigmoid(h)
        free = 1 - mask
        if isinstance(got, Tensor) and got.shape == x.shape:
            hint = ("sum over the coordinates (dim=1) so there is one log-det per sample"
                    if matches(got, free * log_scale) else "return one number per sample, shape (batch,)")
            return [f"{name}: got shape {tuple(got.shape)}, expected ({x.shape[0]},): {hint}"]
        wrong = {
            "you summed over every coordinate; the kept ones have scale 1 (log-scale 0), so "
            "multiply by (1 - m) before summing": log_scale.sum(dim=1),
            "you summed the scales sigmoid(h); the log-det is the sum of their logarithms":
                (free * torch.sigmoid(h)).sum(dim=1),
            "you summed h itself; that is the log-scale of an exp(h) coupling, here the scale is "
            "sigmoid(h), so take log(sigmoid(h)) (F.logsigmoid)": (free * h).sum(dim=1),
            "you took the mean; the log of a product of scales is a sum, not a mean":
                (free * log_scale).mean(dim=1),
            "wrong sign: forward multiplies by sigmoid(h), so log|det dz/dx| = +sum log sigmoid(h)":
                -(free * log_scale).sum(dim=1),
            "you fed h_net the whole x; it must see only the kept part m * x":
                (free * F.logsigmoid(h_net(x))).sum(dim=1),
            "you summed the kept coordinates instead of the transformed ones: use (1 - m), not m":
                (mask * log_scale).sum(dim=1),
        }
        problems = compare("log_det", got, expected, atol=1e-5, rtol=1e-5, inputs=x)
        if problems:
            hint = _diagnose(got, wrong)
            message = f"{name}: {problems[0]}"
            if hint:
                message += f". Hint: {hint}"
            return [message]
    return []


# ----------------------------------------------------------------------------------
# Exercise 3: a checkerboard mask
# ----------------------------------------------------------------------------------


def _check_checkerboard(checkerboard: Callable) -> list[str]:
    """Check ``checkerboard(height, width, parity) -> (height, width)`` float 0/1 mask."""
    shortcut = forbid(checkerboard, ["checkerboard_mask"],
                      "build the board yourself; the check compares it with fk.checkerboard_mask")
    if shortcut:
        return shortcut
    for height, width, parity in [(4, 4, 0), (4, 4, 1), (3, 5, 0), (6, 3, 1), (1, 1, 0)]:
        where = f"checkerboard({height}, {width}, parity={parity})"
        got = _call(checkerboard, height, width, parity)
        expected = checkerboard_mask(height, width, parity)[0]
        if not isinstance(got, Tensor):
            return [f"{where}: return a torch.Tensor, got {type(got).__name__}"]
        if got.shape != expected.shape:
            hint = ""
            if got.numel() == expected.numel():
                hint = " (drop any extra dimensions: one (height, width) image)"
            if got.shape == (width, height):
                hint = " (rows first: the shape is (height, width))"
            return [f"{where}: shape {tuple(got.shape)}, expected ({height}, {width}){hint}"]
        if not got.dtype.is_floating_point:
            return [
                f"{where}: dtype {got.dtype}; a mask multiplies float tensors, so return 0.0/1.0 "
                "floats (add .float())"]
        if torch.equal(got, expected):
            continue
        rows = torch.arange(height).view(-1, 1).expand(height, width)
        cols = torch.arange(width).view(1, -1).expand(height, width)
        hints = {
            "the parity is flipped: parity 0 puts a 1 in the top-left pixel": 1.0 - expected,
            "these are horizontal stripes: the colour must change along each row too, "
            "use (row + column + parity) % 2": ((rows + parity) % 2 == 0).float(),
            "these are vertical stripes: the colour must change down each column too, "
            "use (row + column + parity) % 2": ((cols + parity) % 2 == 0).float(),
        }
        if parity == 1 and torch.equal(got, checkerboard_mask(height, width, 0)[0]):
            # Parity 0 passed already, so this board ignores the parity argument.
            hints = {"parity 1 must give the opposite board to parity 0: use the parity argument": got}
        hint = next((h for h, wrong in hints.items() if torch.equal(got.float(), wrong)), None)
        bad = (got != expected).nonzero()[0].tolist()
        message = (f"{where}: pixel (row {bad[0]}, column {bad[1]}) is {got[bad[0], bad[1]].item():g}, "
                   f"expected {expected[bad[0], bad[1]].item():g}")
        if hint:
            message += f". Hint: {hint}"
        return [message]
    return []


# ----------------------------------------------------------------------------------
# Exercise 4: a coupling written as a flowkit Transform
# ----------------------------------------------------------------------------------


def custom_coupling_spec(x: Tensor) -> tuple[Tensor, Tensor]:
    """The map the learner's transform must implement (keep x2, transform x1).

    ``z1 = x1 * exp(tanh(x2)) + x2**2``, ``z2 = x2``; ``log|det| = tanh(x2)``.
    """
    x1, x2 = x[:, 0], x[:, 1]
    z = torch.stack([x1 * torch.exp(torch.tanh(x2)) + x2 ** 2, x2], dim=1)
    return z, torch.tanh(x2)


def _check_custom_coupling(transform) -> list[str]:
    """Check a learner's :class:`~flowkit.Transform` (class or instance) for the spec above.

    Runs :func:`flowkit.check_transform` (inverse and both log-dets against autograd) and
    compares ``forward`` with the specification.
    """
    if isinstance(transform, type):
        if not issubclass(transform, Transform):
            return [f"{transform.__name__} must subclass fk.Transform "
                    f"(class {transform.__name__}(fk.Transform))"]
        try:
            transform = transform()
        except Exception as err:
            return [f"could not build {transform.__name__}(): {type(err).__name__}: {err}"]
    if not isinstance(transform, Transform):
        return [f"expected a subclass of fk.Transform, got {type(transform).__name__}"]
    x = torch.randn(32, 2, generator=torch.Generator().manual_seed(7)) * 1.5
    out = _call(transform.forward, x, name=f"{type(transform).__name__}.forward")
    if not (isinstance(out, tuple) and len(out) == 2):
        return ["forward must return a pair (z, log|det dz/dx|)"]
    z, log_det = out
    z_spec, log_det_spec = custom_coupling_spec(x)
    problems = compare("forward's z", z, z_spec, atol=1e-5, rtol=1e-5)
    if problems:
        hint = ""
        if isinstance(z, Tensor) and z.shape == x.shape:
            if not torch.allclose(z[:, 1], x[:, 1]):
                hint = " Hint: x2 is the kept coordinate, so z2 = x2 exactly."
            else:
                hint = " Hint: z1 = x1 * exp(tanh(x2)) + x2**2."
        return [problems[0] + "." + hint]
    problems = compare("forward's log_abs_det", log_det, log_det_spec, atol=1e-5, rtol=1e-5)
    if problems:
        hint = " Hint: the only scale is exp(tanh(x2)), so log|det| = tanh(x2)."
        return [problems[0] + "." + hint]
    found = call(check_transform, transform, x, name=f"fk.check_transform on your {type(transform).__name__}")
    problems = []
    for p in found.problems:
        hint = ""
        if p.startswith("inverse(forward(x))"):
            hint = " Hint: x2 = z2, then x1 = (z1 - z2**2) * exp(-tanh(z2))."
        elif p.startswith("inverse's log|det|") or p.startswith("forward and inverse"):
            hint = " Hint: the inverse's log-det is -tanh(z2)."
        problems.append(p + hint)
    return problems


sigmoid_inverse = Exercise(
    "sigmoid_inverse", "sigmoid_coupling_inverse undoes the coupling",
    _check_sigmoid_inverse, sigmoid_coupling_inverse,
    hints=["The kept part passes through: m * z equals m * x, so the networks can be run on it "
           "again to recompute the scale sigmoid(h(m * z)) and the shift t(m * z).",
           "Forward scales, then shifts. Undo in reverse order: subtract the shift, then divide "
           "by the scale, on the (1 - m) part only."])

sigmoid_log_det = Exercise(
    "sigmoid_log_det", "sigmoid_coupling_log_det is log|det dz/dx| of the coupling",
    _check_sigmoid_log_det, sigmoid_coupling_log_det,
    hints=["The Jacobian is triangular once the kept coordinates are listed first: its "
           "diagonal holds 1 for a kept coordinate and sigmoid(h_i) for a transformed one.",
           "Sum log sigmoid(h_i) over the transformed coordinates only: multiply by (1 - mask) "
           "and sum over dim=1. F.logsigmoid is the stable log sigmoid."])

checkerboard = Exercise(
    "checkerboard", "checkerboard builds the checkerboard mask", _check_checkerboard,
    _checkerboard_reference,
    hints=["Pixel (r, c) is 1 exactly when r + c + parity is even.",
           "torch.arange(height).view(-1, 1) + torch.arange(width).view(1, -1) broadcasts to "
           "the (height, width) grid of r + c."])

custom_coupling = Exercise(
    "custom_coupling", "the custom coupling is a correct flowkit Transform",
    _check_custom_coupling, KeepSecondCoupling,
    hints=["forward: log_scale = tanh(x2) depends on the kept x2 only; z1 = x1 * exp(log_scale) "
           "+ x2**2, z2 = x2, and the log-det is log_scale itself.",
           "inverse: z2 = x2, so recompute log_scale = tanh(z2), then x1 = (z1 - z2**2) * "
           "exp(-log_scale); its log-det is -log_scale."])

EXERCISES = [sigmoid_inverse, sigmoid_log_det, checkerboard, custom_coupling]


def summary():
    """Print which of this lesson's exercises passed in this kernel."""
    return _base.summary(EXERCISES)

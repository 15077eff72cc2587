"""Checkers for lesson 03: coupling layers.

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
from ._base import LegacyCheckResult as CheckResult, compare

__all__ = [
    "sigmoid_coupling_forward",
    "check_sigmoid_coupling_inverse",
    "check_sigmoid_coupling_log_det",
    "check_checkerboard",
    "check_custom_coupling",
    "custom_coupling_spec",
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


def _call(fn: Callable, *args):
    """Call a learner's function; return (output, problem message or None)."""
    try:
        with torch.no_grad():
            return fn(*args), None
    except NotImplementedError:
        return None, "not implemented yet: replace the `raise NotImplementedError` with your code"
    except Exception as err:  # a learner's bug: report it instead of crashing the cell
        return None, f"raised {type(err).__name__}: {err}"


def _matches(got, candidate: Tensor) -> bool:
    return (isinstance(got, Tensor) and got.shape == candidate.shape
            and bool(torch.isfinite(got).all())
            and torch.allclose(got.detach().double(), candidate.double(), atol=1e-5, rtol=1e-5))


def _diagnose(got, wrong_answers: dict[str, Tensor]) -> str | None:
    for hint, candidate in wrong_answers.items():
        if _matches(got, candidate):
            return hint
    return None


# ----------------------------------------------------------------------------------
# Exercise 1: the inverse
# ----------------------------------------------------------------------------------


def check_sigmoid_coupling_inverse(inverse: Callable) -> CheckResult:
    """Check ``inverse(z, mask, h_net, t_net) -> x`` against the sigmoid coupling's forward."""
    result = CheckResult("sigmoid_coupling_inverse undoes the coupling")
    for name, mask, h_net, t_net, x in _cases():
        z = sigmoid_coupling_forward(x, mask, h_net, t_net)
        got, problem = _call(inverse, z.clone(), mask, h_net, t_net)
        if problem:
            result.problems.append(f"{name}: {problem}")
            return result
        if not isinstance(got, Tensor):
            result.problems.append(f"{name}: return a torch.Tensor x, got {type(got).__name__}")
            return result
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
            result.problems.append(message)
            return result
    return result


# ----------------------------------------------------------------------------------
# Exercise 2: the log-determinant
# ----------------------------------------------------------------------------------


def check_sigmoid_coupling_log_det(log_det_fn: Callable) -> CheckResult:
    """Check ``log_det_fn(x, mask, h_net) -> (batch,)`` against autograd's slogdet."""
    result = CheckResult("sigmoid_coupling_log_det is log|det dz/dx| of the coupling")
    for name, mask, h_net, t_net, x in _cases():
        got, problem = _call(log_det_fn, x.clone(), mask, h_net)
        if problem:
            result.problems.append(f"{name}: {problem}")
            return result
        expected = _sigmoid_coupling_log_det(x, mask, h_net)
        autograd = log_abs_det_jacobian(lambda v: sigmoid_coupling_forward(v, mask, h_net, t_net), x)
        if not torch.allclose(expected, autograd, atol=1e-4):  # pragma: no cover - guards the reference
            raise AssertionError("the reference log-det disagrees with autograd")
        h = h_net(x * mask)
        log_scale = F.logsigmoid(h)
        free = 1 - mask
        if isinstance(got, Tensor) and got.shape == x.shape:
            hint = ("sum over the coordinates (dim=1) so there is one log-det per sample"
                    if _matches(got, free * log_scale) else "return one number per sample, shape (batch,)")
            result.problems.append(f"{name}: got shape {tuple(got.shape)}, expected ({x.shape[0]},): {hint}")
            return result
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
            result.problems.append(message)
            return result
    return result


# ----------------------------------------------------------------------------------
# Exercise 3: a checkerboard mask
# ----------------------------------------------------------------------------------


def check_checkerboard(checkerboard: Callable) -> CheckResult:
    """Check ``checkerboard(height, width, parity) -> (height, width)`` float 0/1 mask."""
    result = CheckResult("checkerboard builds the checkerboard mask")
    for height, width, parity in [(4, 4, 0), (4, 4, 1), (3, 5, 0), (6, 3, 1), (1, 1, 0)]:
        where = f"checkerboard({height}, {width}, parity={parity})"
        got, problem = _call(checkerboard, height, width, parity)
        if problem:
            result.problems.append(f"{where}: {problem}")
            return result
        expected = checkerboard_mask(height, width, parity)[0]
        if not isinstance(got, Tensor):
            result.problems.append(f"{where}: return a torch.Tensor, got {type(got).__name__}")
            return result
        if got.shape != expected.shape:
            hint = ""
            if got.numel() == expected.numel():
                hint = " (drop any extra dimensions: one (height, width) image)"
            if got.shape == (width, height):
                hint = " (rows first: the shape is (height, width))"
            result.problems.append(f"{where}: shape {tuple(got.shape)}, expected ({height}, {width}){hint}")
            return result
        if not got.dtype.is_floating_point:
            result.problems.append(
                f"{where}: dtype {got.dtype}; a mask multiplies float tensors, so return 0.0/1.0 "
                "floats (add .float())")
            return result
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
        result.problems.append(message)
        return result
    return result


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


def check_custom_coupling(transform) -> CheckResult:
    """Check a learner's :class:`~flowkit.Transform` (class or instance) for the spec above.

    Runs :func:`flowkit.check_transform` (inverse and both log-dets against autograd) and
    compares ``forward`` with the specification.
    """
    result = CheckResult("the custom coupling is a correct flowkit Transform")
    if isinstance(transform, type):
        if not issubclass(transform, Transform):
            result.problems.append(
                f"{transform.__name__} must subclass fk.Transform (class {transform.__name__}(fk.Transform))")
            return result
        try:
            transform = transform()
        except Exception as err:
            result.problems.append(f"could not build {transform.__name__}(): "
                                   f"{type(err).__name__}: {err}")
            return result
    if not isinstance(transform, Transform):
        result.problems.append(f"expected a subclass of fk.Transform, got {type(transform).__name__}")
        return result
    x = torch.randn(32, 2, generator=torch.Generator().manual_seed(7)) * 1.5
    out, problem = _call(transform.forward, x)
    if problem:
        result.problems.append(f"forward: {problem}")
        return result
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
        result.problems.append(problems[0] + "." + hint)
        return result
    problems = compare("forward's log_abs_det", log_det, log_det_spec, atol=1e-5, rtol=1e-5)
    if problems:
        hint = " Hint: the only scale is exp(tanh(x2)), so log|det| = tanh(x2)."
        result.problems.append(problems[0] + "." + hint)
        return result
    try:
        found = check_transform(transform, x)
    except Exception as err:
        result.problems.append(f"fk.check_transform could not run it: {type(err).__name__}: {err}")
        return result
    for p in found.problems:
        hint = ""
        if p.startswith("inverse(forward(x))"):
            hint = " Hint: x2 = z2, then x1 = (z1 - z2**2) * exp(-tanh(z2))."
        elif p.startswith("inverse's log|det|") or p.startswith("forward and inverse"):
            hint = " Hint: the inverse's log-det is -tanh(z2)."
        result.problems.append(p + hint)
    return result

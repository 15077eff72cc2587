"""Exercises for lesson 05: an image RealNVP on 8x8 digits.

Each exercise is on one of the lesson's own ideas: the bound that dequantization puts on
the probability of a discrete image, the log-determinant of the logit layer, the squeeze,
and the bookkeeping of the multi-scale split.
"""

from __future__ import annotations

import inspect
import math
import textwrap
from typing import Callable

import torch
from torch import Tensor

from ..images import Chain, LogitPreprocess, Reshape, Split, squeeze
from ..transforms import Affine
from . import _base
from ._base import Exercise, call, compare, diagnose, forbid

__all__ = ["dequantization_bound", "logit_log_det", "squeeze_pair", "split_pair",
           "EXERCISES", "summary"]


# ----------------------------------------------------------------------------------
# Reference solutions (shown by solution(); a notebook never runs them)
# ----------------------------------------------------------------------------------


def discrete_log_prob_and_bound(log_density, k, num_points=1000):
    u = (torch.arange(num_points, dtype=torch.float64) + 0.5) / num_points  # midpoints of [0, 1)
    log_p = log_density(k[:, None] + u)                                      # (len(k), num_points)
    log_prob = torch.logsumexp(log_p, dim=1) - math.log(num_points)          # log of the cell's mass
    bound = log_p.mean(dim=1)                                                # E_u[log p(k + u)]
    return log_prob, bound


def logit_log_abs_det(x, levels, alpha):
    y = alpha + (1 - 2 * alpha) * x / levels
    per_pixel = math.log((1 - 2 * alpha) / levels) - torch.log(y) - torch.log1p(-y)
    return per_pixel.flatten(start_dim=1).sum(dim=1)        # one log-det per image


def my_squeeze(x):
    b, c, h, w_ = x.shape
    x = x.reshape(b, c, h // 2, 2, w_ // 2, 2)      # split rows into (h', i), columns into (w', j)
    x = x.permute(0, 1, 3, 5, 2, 4)                  # (b, c, i, j, h', w')
    return x.reshape(b, 4 * c, h // 2, w_ // 2)


def my_unsqueeze(z):
    b, c4, h, w_ = z.shape
    z = z.reshape(b, c4 // 4, 2, 2, h, w_)           # (b, c, i, j, h, w)
    z = z.permute(0, 1, 4, 2, 5, 3)                  # (b, c, h, i, w, j)
    return z.reshape(b, c4 // 4, 2 * h, 2 * w_)


def split_forward(h, factor_out, rest):
    done, todo = h[:, :factor_out], h[:, factor_out:]   # the first channels are done
    z_rest, log_det = rest(todo)                         # only the rest is transformed
    return torch.cat([done.flatten(start_dim=1), z_rest], dim=1), log_det


def split_inverse(z, shape, factor_out, rest):
    c, height, width = shape
    k = factor_out * height * width                      # latent numbers factored out
    done = z[:, :k].reshape(z.shape[0], factor_out, height, width)
    todo, log_det = rest.inverse(z[:, k:])
    return torch.cat([done, todo], dim=1), log_det


# ----------------------------------------------------------------------------------
# Exercise 1: the dequantization bound
# ----------------------------------------------------------------------------------


def _bumps(centres: list[float], width: float, weights: list[float]) -> Callable[[Tensor], Tensor]:
    """The log-density of a mixture of Gaussian bumps on the line (any shape of input)."""
    c = torch.tensor(centres, dtype=torch.float64)
    log_w = torch.log(torch.tensor(weights, dtype=torch.float64) / sum(weights))

    def log_density(x: Tensor) -> Tensor:
        z = (x.double()[..., None] - c) / width
        return torch.logsumexp(log_w - 0.5 * z * z - math.log(width * math.sqrt(2 * math.pi)), dim=-1)

    return log_density


_BOUND_CASES = [
    # a smooth density over 5 levels, and one that spikes on the integers (tiny width)
    ("smooth bumps", _bumps([0.7, 2.2, 3.9], 0.6, [3.0, 1.0, 2.0]), [0, 1, 2, 3, 4], 400),
    ("spikes on the integers", _bumps([0.0, 1.0, 2.0, 3.0], 0.02, [4.0, 1.0, 1.0, 2.0]),
     [0, 1, 2, 3, 5], 1000),   # level 5: so far from every spike that exp(log p) underflows
]


def _check_bound(fn: Callable) -> list[str]:
    for what, log_density, levels, num_points in _BOUND_CASES:
        k = torch.tensor(levels, dtype=torch.float64)
        got = call(fn, log_density, k.clone(), num_points)
        if not (isinstance(got, tuple) and len(got) == 2):
            return [f"return a pair (log_prob, bound), got {type(got).__name__}"]
        log_prob, bound = got
        exp_log_prob, exp_bound = discrete_log_prob_and_bound(log_density, k, num_points)
        u = (torch.arange(num_points, dtype=torch.float64) + 0.5) / num_points
        log_p = log_density(k[:, None] + u)
        where = f"({what}, {num_points} points)"
        at_integer = log_density(k)
        problems = diagnose(log_prob, exp_log_prob, [
            (exp_bound, f"log_prob {where} is the mean of the log-density: that is the bound. "
                        "The probability of the cell is the mean of the density itself, so take "
                        "the log of the mean (torch.logsumexp(log_p, dim=1) - log(num_points))"),
            (torch.logsumexp(log_p, dim=1),
             f"log_prob {where} sums the density over the points: divide by their number "
             "(subtract log(num_points)); the cell has width 1, so its mass is the mean density"),
            (at_integer, f"log_prob {where} is the log-density at the integer itself: the "
                         "density at a point is not a probability, integrate it over [k, k + 1)"),
        ], f"log_prob {where}", inputs=k, atol=1e-6, rtol=1e-6)
        if isinstance(log_prob, Tensor) and log_prob.shape == exp_log_prob.shape and \
                not torch.isfinite(log_prob).all() and torch.isfinite(exp_log_prob).all():
            return [f"log_prob {where} has infinite or NaN values: the density underflows to 0 "
                    "between the spikes; work with log-densities and torch.logsumexp instead of "
                    "exp, mean, log"]
        if problems:
            return problems
        problems = diagnose(bound, exp_bound, [
            (exp_log_prob, f"bound {where} is the log of the mean density: that is log P(k) "
                           "itself. The bound is the mean of the log-density, E_u[log p(k + u)]"),
            (at_integer, f"bound {where} is the log-density at the integer: average "
                         "log p(k + u) over the points u in [0, 1)"),
            (log_p.sum(dim=1), f"bound {where} sums the log-densities: take their mean"),
        ], f"bound {where}", inputs=k, atol=1e-6, rtol=1e-6)
        if problems:
            return problems
    return []


dequantization_bound = Exercise(
    "dequantization_bound", "the probability of a pixel level and its dequantization bound",
    _check_bound, discrete_log_prob_and_bound,
    hints=["The cell of level k is [k, k + 1), of width 1: P(k) is the mean of p over it. Use "
           "the midpoints u_j = (j + 0.5) / num_points and evaluate log_density(k + u) for all "
           "k at once, shape (len(k), num_points).",
           "log_prob = torch.logsumexp(log_p, dim=1) - math.log(num_points) (never exp a "
           "log-density that may be -200); bound = log_p.mean(dim=1). Jensen says bound <= "
           "log_prob."])


# ----------------------------------------------------------------------------------
# Exercise 2: the logit layer's log-determinant
# ----------------------------------------------------------------------------------


def _check_logit(fn: Callable) -> list[str]:
    shortcut = forbid(fn, ["LogitPreprocess", "jacobian", "log_abs_det_jacobian", "autograd"],
                      "write the log-derivative of the two steps yourself")
    if shortcut:
        return shortcut
    g = torch.Generator().manual_seed(5)
    for levels, alpha, shape in ((17, 0.05, (3, 1, 8, 8)), (256, 0.01, (2, 3, 4, 4))):
        x = torch.randint(0, levels, shape, generator=g).double() + torch.rand(shape, generator=g,
                                                                             dtype=torch.float64)
        got = call(fn, x.clone(), levels, alpha)
        expected = LogitPreprocess(levels, alpha).double()(x)[1]
        where = f"(levels = {levels}, alpha = {alpha})"
        d = x[0].numel()
        if isinstance(got, Tensor) and got.shape == x.shape:
            return [f"you returned one number per pixel, shape {tuple(got.shape)}: sum over "
                    f"the pixels of each image, shape ({x.shape[0]},)"]
        slips = [
            (-expected, f"the sign is flipped {where}: that is the inverse's log-det (sigmoid "
                        "direction); forward goes from pixels to logits"),
            (expected - d * math.log((1 - 2 * alpha) / levels),
             f"the log-slope of the first, affine step is missing {where}: each pixel is scaled by "
             "(1 - 2 alpha) / levels, which adds log((1 - 2 alpha) / levels) per pixel"),
            (expected - (d - 1) * math.log((1 - 2 * alpha) / levels),
             f"the affine step's log-slope is counted once per image {where}; it belongs to every "
             "pixel, so it counts D times"),
            ((-torch.log(x / levels) - torch.log1p(-x / levels)).flatten(1).sum(1)
             + d * math.log(1.0 / levels),
             f"the margin alpha is missing {where}: y = alpha + (1 - 2 alpha) x / levels"),
        ]
        problems = diagnose(got, expected, slips, f"log|det| {where}", atol=1e-6, rtol=1e-7)
        if problems:
            return problems
    return []


logit_log_det = Exercise(
    "logit_log_det", "the log-determinant of the logit layer", _check_logit, logit_log_abs_det,
    hints=["The layer is a map of each pixel on its own, so its Jacobian is diagonal: the "
           "log-det is the sum over pixels of each pixel's log-derivative.",
           "Chain rule: dy/dx = (1 - 2 alpha) / levels, dz/dy = 1 / (y (1 - y)). Sum "
           "log((1 - 2 alpha) / levels) - log y - log(1 - y) over the pixels of each image "
           "(x.flatten(start_dim=1))."])


# ----------------------------------------------------------------------------------
# Exercise 3: the squeeze
# ----------------------------------------------------------------------------------


def _check_squeeze(squeeze_fn: Callable, unsqueeze_fn: Callable) -> list[str]:
    shortcut = forbid(squeeze_fn, ["squeeze", "Squeeze", "pixel_unshuffle"],
                      "build the squeeze from reshape and permute") or \
        forbid(unsqueeze_fn, ["unsqueeze", "Unsqueeze", "pixel_shuffle"],
               "build the unsqueeze from reshape and permute")
    if shortcut:
        return shortcut
    for shape in [(2, 1, 4, 4), (1, 2, 6, 8), (3, 3, 2, 2)]:
        x = torch.arange(math.prod(shape), dtype=torch.float32).reshape(shape)
        expected = squeeze(x)
        y = call(squeeze_fn, x.clone())
        if not isinstance(y, Tensor):
            return [f"squeeze should return a tensor, got {type(y).__name__}"]
        if tuple(y.shape) != tuple(expected.shape):
            return [f"squeeze of shape {shape} gave shape {tuple(y.shape)}, expected "
                    f"{tuple(expected.shape)} (4x the channels, half the height and width)"]
        if not torch.equal(y, expected):
            if torch.equal(y, x.reshape(expected.shape)):
                hint = ("a plain reshape does not keep 2x2 neighbourhoods together: it cuts the "
                        "image into strips of rows. Reshape to (B, C, H/2, 2, W/2, 2), permute, "
                        "then reshape")
            elif torch.equal(torch.sort(y.flatten()).values, torch.sort(x.flatten()).values):
                hint = ("your output holds the right values in another order; the course's "
                        "convention is channel 4c + 2i + j = pixel (2h + i, 2w + j), i.e. permute "
                        "to (B, C, 2, 2, H/2, W/2)")
            else:
                hint = "a squeeze only moves pixels around; some values were changed, lost or duplicated"
            bad = (y != expected).nonzero()[0].tolist()
            return [f"squeeze of shape {shape}: at index {bad} got {y[tuple(bad)].item():g}, "
                    f"expected {expected[tuple(bad)].item():g}; {hint}"]
        back = call(unsqueeze_fn, expected.clone())
        if not isinstance(back, Tensor) or tuple(back.shape) != shape:
            got = tuple(back.shape) if isinstance(back, Tensor) else type(back).__name__
            return [f"unsqueeze should give back shape {shape}, got {got}"]
        if not torch.equal(back, x):
            bad = (back != x).nonzero()[0].tolist()
            return [f"unsqueeze(squeeze(x)) is not x for shape {shape}: at index {bad} got "
                    f"{back[tuple(bad)].item():g}, expected {x[tuple(bad)].item():g}; undo the "
                    "steps in reverse order: reshape to (B, C, 2, 2, H, W), permute to "
                    "(B, C, H, 2, W, 2), reshape"]
    return []


class _PairExercise(Exercise):
    """An exercise whose answer is two functions; ``reference`` is the pair."""

    def solution_code(self) -> str:
        return "\n\n".join(textwrap.dedent(inspect.getsource(f)) for f in self.reference)


squeeze_pair = _PairExercise(
    "squeeze_pair", "squeeze and its inverse", _check_squeeze, (my_squeeze, my_unsqueeze),
    hints=["Reshape (B, C, H, W) to (B, C, H/2, 2, W/2, 2): the two new axes are the row i and "
           "column j inside each 2x2 block.",
           "Permute to (B, C, 2, 2, H/2, W/2) and reshape to (B, 4C, H/2, W/2). The unsqueeze "
           "runs the same three steps backwards."])


# ----------------------------------------------------------------------------------
# Exercise 4: the multi-scale split's bookkeeping
# ----------------------------------------------------------------------------------


def _rest_flow(channels: int, height: int, width: int, seed: int) -> Chain:
    """A small invertible 'rest of the flow' with a non-zero log-det, ending in a flat vector."""
    g = torch.Generator().manual_seed(seed)
    scale = (0.5 + torch.rand(channels, 1, 1, generator=g, dtype=torch.float64))
    shift = torch.randn(channels, 1, 1, generator=g, dtype=torch.float64)
    affine = Affine(scale.expand(channels, height, width).clone(),
                    shift.expand(channels, height, width).clone())
    return Chain([affine, Reshape((channels, height, width), (channels * height * width,))]).double()


def _check_split(forward_fn: Callable, inverse_fn: Callable) -> list[str]:
    shortcut = forbid(forward_fn, ["Split"], "write the split yourself") or \
        forbid(inverse_fn, ["Split"], "write the split yourself")
    if shortcut:
        return shortcut
    g = torch.Generator().manual_seed(9)
    for shape, factor_out in (((4, 4, 4), 2), ((6, 2, 3), 1)):
        c, height, width = shape
        rest = _rest_flow(c - factor_out, height, width, seed=c)
        split = Split(shape, factor_out, rest)
        h = torch.randn(3, *shape, generator=g, dtype=torch.float64)
        expected_z, expected_log_det = split(h)
        where = f"(images {shape}, factor_out = {factor_out})"
        out = call(forward_fn, h.clone(), factor_out, rest)
        if not (isinstance(out, tuple) and len(out) == 2):
            return [f"split_forward should return a pair (z, log_det), got {type(out).__name__}"]
        z, log_det = out
        k = factor_out * height * width
        slips = [
            (torch.cat([expected_z[:, k:], expected_z[:, :k]], dim=1),
             f"z {where} puts the rest's output first: the factored-out channels come first, "
             "then rest's output (the convention Split uses)"),
            (torch.cat([h[:, :factor_out], h[:, factor_out:]], dim=1).flatten(1),
             f"z {where} is h flattened: the channels after the first factor_out must go "
             "through rest"),
        ]
        problems = diagnose(z, expected_z, slips, f"z {where}")
        if problems:
            return problems
        problems = diagnose(log_det, expected_log_det, [
            (expected_log_det + h[:, :factor_out].flatten(1).sum(1),
             f"log_det {where} counts the factored-out channels: they pass through unchanged, "
             "so they add nothing; the log-det is the rest's alone"),
            (-expected_log_det, f"log_det {where} has the wrong sign: return the rest's forward "
                                "log-det as it is"),
        ], f"log_det {where}")
        if problems:
            return problems
        out = call(inverse_fn, expected_z.clone(), shape, factor_out, rest)
        if not (isinstance(out, tuple) and len(out) == 2):
            return [f"split_inverse should return a pair (h, log_det), got {type(out).__name__}"]
        back, back_log_det = out
        problems = compare(f"split_inverse(split_forward(h)) {where}", back, h)
        if problems:
            return problems + ["the first factor_out * H * W latent numbers are the factored-out "
                               "channels: reshape them to (batch, factor_out, H, W); the rest of z "
                               "goes through rest.inverse"]
        problems = diagnose(back_log_det, -expected_log_det, [
            (expected_log_det, f"the inverse's log_det {where} has the forward's sign: "
                               "rest.inverse already returns log|det dx/dz|, pass it on")],
            f"the inverse's log_det {where}")
        if problems:
            return problems
    return []


split_pair = _PairExercise(
    "split_pair", "the multi-scale split and its inverse", _check_split,
    (split_forward, split_inverse),
    hints=["Forward: h[:, :factor_out] is done and goes to the latent flattened; h[:, factor_out:] "
           "goes through rest, which returns (a flat vector, its log-det). Concatenate along dim 1, "
           "factored-out part first.",
           "Inverse: the first factor_out * H * W numbers of z are the factored-out channels "
           "(reshape them back); rest.inverse takes the others. Only rest contributes a log-det."])


EXERCISES = [dequantization_bound, logit_log_det, squeeze_pair, split_pair]


def summary():
    """Print which of this lesson's exercises passed in this kernel."""
    return _base.summary(EXERCISES)

"""Exercises for lesson 06: autoregressive flows.

* :data:`made_mask` -- the MADE connectivity mask from unit degrees;
* :data:`maf_sample` -- the sequential inverse of a masked autoregressive layer.
"""

from __future__ import annotations

import torch

from ..autoregressive import MaskedAutoregressive, autoregressive_mask
from . import _base
from ._base import Exercise, call, compare, diagnose

__all__ = ["made_mask", "maf_sample", "EXERCISES", "summary"]


# ----------------------------------------------------------------------------------
# Exercise 1: MADE masks
# ----------------------------------------------------------------------------------

_MASK_CASES = [
    (torch.tensor([1, 2, 3]), torch.tensor([1, 2, 1, 2]), False),
    (torch.tensor([1, 2, 1, 2]), torch.tensor([1, 2, 3]), True),
    (torch.tensor([3, 1, 2]), torch.tensor([2, 1, 2, 1, 1]), False),
    (torch.tensor([2, 1, 2, 1, 1]), torch.tensor([3, 1, 2, 3, 1, 2]), True),
]


def made_mask(in_degrees, out_degrees, strict):
    if strict:
        return (out_degrees[:, None] > in_degrees[None, :]).float()
    return (out_degrees[:, None] >= in_degrees[None, :]).float()


def _check_made_mask(fn) -> list[str]:
    for ins, outs, strict in _MASK_CASES:
        expected = autoregressive_mask(ins, outs, strict).float()
        label = f"made_mask({ins.tolist()}, {outs.tolist()}, strict={strict})"
        got = call(fn, ins.clone(), outs.clone(), strict, name="made_mask")
        if isinstance(got, torch.Tensor) and got.dtype == torch.bool:
            got = got.float()
        if isinstance(got, torch.Tensor) and got.shape == expected.T.shape != expected.shape:
            return [f"{label} has shape {tuple(got.shape)}, expected {tuple(expected.shape)}: "
                    "the mask multiplies a weight matrix of shape (out_features, in_features), "
                    "one row per output unit; you built its transpose"]
        slips = [
            (autoregressive_mask(ins, outs, not strict).float(),
             f"{label} is wrong: " + (
                 "strict=True (the output layer) needs out_degree > in_degree, so output i "
                 "never sees x_i itself; hidden layers (strict=False) use >=" if strict else
                 "hidden layers (strict=False) use out_degree >= in_degree; only the output "
                 "layer uses the strict >")),
            ((outs[:, None] <= ins[None, :]).float(),
             f"{label} is wrong: the comparison points the wrong way; a unit connects to "
             "units of LOWER (or equal) degree"),
            ((outs[:, None] < ins[None, :]).float(),
             f"{label} is wrong: the comparison points the wrong way; a unit connects to "
             "units of LOWER (or equal) degree"),
        ]
        problems = diagnose(got, expected, slips, f"{label}",
                            hint="a unit of degree d may see units of degree <= d (hidden "
                                 "layers) or < d (the output layer)")
        if problems:
            return problems
    return []


made_mask = Exercise(
    "made_mask", "made_mask: MADE connectivity from degrees", _check_made_mask,
    made_mask,  # the reference solution above
    hints=["Broadcast: out_degrees[:, None] against in_degrees[None, :] gives one comparison "
           "per (output unit, input unit) pair, already in the (out, in) shape.",
           "Hidden layers compare with >=, the output layer (strict=True) with >; turn the "
           "boolean result into floats with .float()."])


# ----------------------------------------------------------------------------------
# Exercise 2: sampling from a MAF layer
# ----------------------------------------------------------------------------------


def maf_sample(conditioner, z):
    x = torch.zeros_like(z)
    for _ in range(z.shape[1]):
        mu, alpha = conditioner(x)
        x = mu + torch.exp(alpha) * z
    return x


def _random_layer(dim: int, seed: int) -> MaskedAutoregressive:
    layer = MaskedAutoregressive(dim, hidden=2 * dim + 2).double()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(0.6 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return layer.eval()


def _run_passes(layer: MaskedAutoregressive, z: torch.Tensor, passes: int, update) -> torch.Tensor:
    """A (possibly wrong) sampling loop, to recognise what a learner's answer computed."""
    x = torch.zeros_like(z)
    for _ in range(passes):
        mu, alpha = layer.mean_log_scale(x)
        x = update(mu, alpha, z)
    return x


def _check_maf_sample(fn) -> list[str]:
    for dim, seed in ((5, 0), (3, 7), (1, 2)):
        layer = _random_layer(dim, seed)
        g = torch.Generator().manual_seed(100 + seed)
        z = torch.randn(6, dim, generator=g, dtype=torch.float64)
        z_given = z.clone()
        calls = []

        def conditioner(x, shape=tuple(z.shape)):
            if not isinstance(x, torch.Tensor) or tuple(x.shape) != shape:
                got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
                raise ValueError(f"conditioner expects a tensor of shape {shape}, got {got}")
            calls.append(1)
            return layer.mean_log_scale(x)

        with torch.no_grad():
            expected, _ = layer.inverse(z)
            got = call(fn, conditioner, z_given, name="maf_sample")
            if not torch.equal(z, z_given):
                return ["maf_sample changed z in place; build x in a new tensor"]
            slips = [
                (_run_passes(layer, z, 1, lambda mu, a, z: mu + torch.exp(a) * z),
                 "this is what ONE pass gives: coordinate i needs the finished x_1..x_{i-1}, "
                 "so repeat the pass D times, feeding x back in"),
                (_run_passes(layer, z, dim, lambda mu, a, z: mu + torch.exp(-a) * z),
                 "the scale is exp(alpha), not exp(-alpha): the forward map divides by "
                 "exp(alpha), so sampling multiplies"),
                (_run_passes(layer, z, dim, lambda mu, a, z: (z - mu) * torch.exp(-a)),
                 "that is the forward (density) formula; solve z = (x - mu) e^(-alpha) for x "
                 "instead"),
                (_run_passes(layer, z, dim, lambda mu, a, z: mu + a * z),
                 "the scale is exp(alpha); alpha is its log"),
            ]
            if dim > 1:  # with one coordinate, one pass is already right
                problems = diagnose(got, expected, slips, f"x (D = {dim})", atol=1e-8, rtol=1e-8)
            else:
                problems = compare(f"x (D = {dim})", got, expected, atol=1e-8, rtol=1e-8)
        if problems:
            return problems
        if len(calls) > dim:
            return [f"the samples are right, but you called the conditioner {len(calls)} times "
                    f"for D = {dim}; D passes are enough (pass k finishes coordinate k)"]
    return []


maf_sample = Exercise(
    "maf_sample", "maf_sample: invert a masked autoregressive layer, one coordinate per pass",
    _check_maf_sample, maf_sample,
    hints=["Start from x = torch.zeros_like(z). One call of the conditioner on the current x "
           "gives mu and alpha; those of the first coordinate are already right, since they depend on nothing.",
           "Solve z = (x - mu) * exp(-alpha) for x, and repeat D = z.shape[1] times, each time "
           "recomputing mu and alpha from the new x: after pass k the first k coordinates are "
           "final."])


EXERCISES = [made_mask, maf_sample]


def summary():
    return _base.summary(EXERCISES)

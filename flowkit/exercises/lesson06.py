"""Checkers for lesson 06: autoregressive flows, anomaly scores and likelihood units.

* :func:`check_autoregressive_mask` -- the MADE connectivity mask from unit degrees;
* :func:`check_maf_sample` -- the sequential inverse of a masked autoregressive layer;
* :func:`check_auc` -- the area under the ROC curve, from two lists of scores;
* :func:`check_bits_per_dim` -- bits per dimension in level units from a log-density
  measured on data rescaled to ``[0, 1]``.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..autoregressive import MaskedAutoregressive, autoregressive_mask
from ._base import LegacyCheckResult as CheckResult, compare

__all__ = ["check_autoregressive_mask", "check_maf_sample", "check_auc", "check_bits_per_dim",
           "reference_auc"]


def _call(result: CheckResult, fn, name: str, *args):
    """Run the learner's function; a raised error becomes a problem, not a crash."""
    try:
        return fn(*args), True
    except NotImplementedError:
        result.problems.append(f"{name} is not written yet (it raises NotImplementedError)")
    except Exception as err:
        result.problems.append(f"{name} raised {type(err).__name__}: {err}")
    return None, False


# ----------------------------------------------------------------------------------
# Exercise 1: MADE masks
# ----------------------------------------------------------------------------------


def check_autoregressive_mask(made_mask) -> CheckResult:
    """Check ``made_mask(in_degrees, out_degrees, strict) -> (out, in) 0/1 tensor``.

    Hidden layers connect unit ``k`` to input ``j`` when ``out_degrees[k] >= in_degrees[j]``;
    the output layer (``strict=True``) needs ``>``.
    """
    result = CheckResult("made_mask: MADE connectivity from degrees")
    cases = [
        (torch.tensor([1, 2, 3]), torch.tensor([1, 2, 1, 2]), False),
        (torch.tensor([1, 2, 1, 2]), torch.tensor([1, 2, 3]), True),
        (torch.tensor([3, 1, 2]), torch.tensor([2, 1, 2, 1, 1]), False),
        (torch.tensor([2, 1, 2, 1, 1]), torch.tensor([3, 1, 2, 3, 1, 2]), True),
    ]
    for ins, outs, strict in cases:
        expected = autoregressive_mask(ins, outs, strict)
        label = f"made_mask({ins.tolist()}, {outs.tolist()}, strict={strict})"
        got, ok = _call(result, made_mask, label, ins, outs, strict)
        if not ok:
            return result
        if not isinstance(got, torch.Tensor):
            result.problems.append(f"{label} should return a torch.Tensor, got {type(got).__name__}")
            return result
        if tuple(got.shape) == tuple(expected.T.shape) and got.shape != expected.shape:
            result.problems.append(
                f"{label} has shape {tuple(got.shape)}, expected {tuple(expected.shape)}: the mask "
                "multiplies a weight matrix of shape (out_features, in_features), one row per "
                "output unit; you built its transpose"
            )
            return result
        if got.shape != expected.shape:
            result.problems.append(f"{label} has shape {tuple(got.shape)}, expected "
                                   f"{tuple(expected.shape)} = (len(out_degrees), len(in_degrees))")
            return result
        got_f = got.detach().double()
        if torch.equal(got_f, expected.double()):
            continue
        hint = "a unit of degree d may see inputs of degree <= d (hidden) or < d (output)"
        if torch.equal(got_f, autoregressive_mask(ins, outs, not strict).double()):
            hint = ("strict=True (the output layer) needs out_degree > in_degree, so output i never "
                    "sees x_i itself; hidden layers (strict=False) use >=" if strict else
                    "hidden layers (strict=False) use out_degree >= in_degree; only the output "
                    "layer uses the strict >")
        elif torch.equal(got_f, (outs[:, None] <= ins[None, :]).double()) or \
                torch.equal(got_f, (outs[:, None] < ins[None, :]).double()):
            hint = "the comparison points the wrong way: a unit connects to inputs of LOWER degree"
        result.problems.append(f"{label} is wrong: got {got_f.long().tolist()}, expected "
                               f"{expected.long().tolist()}; {hint}")
        return result
    return result


# ----------------------------------------------------------------------------------
# Exercise 2: sampling from a MAF layer
# ----------------------------------------------------------------------------------


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


def check_maf_sample(maf_sample) -> CheckResult:
    """Check ``maf_sample(conditioner, z) -> x``, the inverse of ``z = (x - mu) * exp(-alpha)``.

    ``conditioner(x)`` returns ``(mu, alpha)`` with entry ``i`` depending only on
    ``x[:, :i]``. The answer must be exact, and must call the conditioner at most ``D``
    times (``D`` passes suffice; an answer that needs more is correct but wasteful).
    """
    result = CheckResult("maf_sample: invert a masked autoregressive layer, one coordinate per pass")
    for dim, seed in ((5, 0), (3, 7), (1, 2)):
        layer = _random_layer(dim, seed)
        g = torch.Generator().manual_seed(100 + seed)
        z = torch.randn(6, dim, generator=g, dtype=torch.float64)
        z_copy = z.clone()
        calls = []

        def conditioner(x):
            if not isinstance(x, torch.Tensor) or tuple(x.shape) != tuple(z.shape):
                raise ValueError(f"conditioner expects a tensor of shape {tuple(z.shape)}, got "
                                 f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
            calls.append(1)
            return layer.mean_log_scale(x)

        with torch.no_grad():
            expected, _ = layer.inverse(z)
        got, ok = _call(result, maf_sample, f"maf_sample(conditioner, z) with D = {dim}",
                        conditioner, z)
        if not ok:
            return result
        if not torch.equal(z, z_copy):
            result.problems.append("maf_sample changed z in place; build x in a new tensor")
            return result
        problems = compare(f"x (D = {dim})", got, expected, atol=1e-8, rtol=1e-8)
        if problems:
            with torch.no_grad():
                hints = [
                    (_run_passes(layer, z, 1, lambda mu, a, z: mu + torch.exp(a) * z),
                     "this is what ONE pass gives: coordinate i needs the finished "
                     "x_1..x_{i-1}, so repeat the pass D times, feeding x back in"),
                    (_run_passes(layer, z, dim, lambda mu, a, z: mu + torch.exp(-a) * z),
                     "the scale is exp(alpha), not exp(-alpha): the forward map divides by "
                     "exp(alpha), so sampling multiplies"),
                    (_run_passes(layer, z, dim, lambda mu, a, z: (z - mu) * torch.exp(-a)),
                     "that is the forward (density) formula; solve z = (x - mu) e^(-alpha) "
                     "for x instead"),
                    (_run_passes(layer, z, dim, lambda mu, a, z: mu + a * z),
                     "the scale is exp(alpha), alpha is its log"),
                ]
            hint = next((h for value, h in hints if isinstance(got, torch.Tensor)
                         and got.shape == value.shape and torch.allclose(got.double(), value, atol=1e-8)), None)
            result.problems += [p + (f"; {hint}" if hint else "") for p in problems]
            return result
        if len(calls) > dim:
            result.problems.append(
                f"the samples are right, but you called the conditioner {len(calls)} times for "
                f"D = {dim}; D passes are enough (pass k finishes coordinate k)"
            )
            return result
    return result


# ----------------------------------------------------------------------------------
# Exercise 3: AUC
# ----------------------------------------------------------------------------------


def reference_auc(normal_scores, anomaly_scores) -> float:
    """P(anomaly score > normal score) + P(equal) / 2, by comparing every pair."""
    a = np.asarray(anomaly_scores, dtype=float)[:, None]
    n = np.asarray(normal_scores, dtype=float)[None, :]
    return float(((a > n) + 0.5 * (a == n)).mean())


def check_auc(auc) -> CheckResult:
    """Check ``auc(normal_scores, anomaly_scores) -> float``: the area under the ROC curve.

    Higher scores mean more anomalous. Ties between a normal and an anomalous score count
    one half. Scores arrive as 1-D tensors.
    """
    result = CheckResult("auc: the probability that an anomaly outscores a normal sample")
    g = torch.Generator().manual_seed(3)
    cases = [
        ("separated", torch.tensor([1.0, 2.0, 3.0]), torch.tensor([4.0, 5.0])),
        ("overlapping", torch.tensor([1.0, 3.0, 5.0, 7.0]), torch.tensor([2.0, 6.0, 8.0])),
        ("with ties", torch.tensor([1.0, 2.0, 2.0, 3.0]), torch.tensor([2.0, 3.0, 4.0])),
        ("random", torch.randn(50, generator=g), torch.randn(30, generator=g) + 0.7),
        ("all equal", torch.zeros(4), torch.zeros(3)),
    ]
    for name, normal, anomalous in cases:
        expected = reference_auc(normal.numpy(), anomalous.numpy())
        got, ok = _call(result, auc, f"auc on the '{name}' case", normal, anomalous)
        if not ok:
            return result
        if isinstance(got, torch.Tensor) and got.numel() == 1:
            got = got.item()
        if isinstance(got, bool) or not isinstance(got, (int, float, np.floating)):
            result.problems.append(f"auc should return a number, got {type(got).__name__}")
            return result
        got = float(got)
        if abs(got - expected) <= 1e-9:
            continue
        strict_only = float((anomalous.numpy()[:, None] > normal.numpy()[None, :]).mean())
        at_least = float((anomalous.numpy()[:, None] >= normal.numpy()[None, :]).mean())
        if abs(got - (1.0 - expected)) <= 1e-9:
            hint = ("you got 1 - AUC: the score is -log p, so HIGHER means more anomalous; "
                    "count pairs where the anomaly's score is above the normal one")
        elif abs(got - strict_only) <= 1e-9 or abs(got - at_least) <= 1e-9:
            hint = "ties between a normal and an anomalous score should count 1/2"
        else:
            hint = "average over all (anomaly, normal) pairs of [a > n] + 0.5 [a == n]"
        result.problems.append(f"on the '{name}' case (normal {normal.tolist()[:5]}..., anomalies "
                               f"{anomalous.tolist()[:5]}...): got {got:.4f}, expected {expected:.4f}; {hint}")
        return result
    return result


# ----------------------------------------------------------------------------------
# Exercise 4: bits per dimension across units
# ----------------------------------------------------------------------------------


def check_bits_per_dim(bits_per_dim_levels) -> CheckResult:
    """Check ``bits_per_dim_levels(log_prob_unit, num_dims, levels) -> float``.

    ``log_prob_unit`` (shape ``(batch,)``, nats) is the log-density a model gives the
    data after dividing by ``levels`` (values in ``[0, 1]``). The answer is the mean
    bits per dimension in level units: ``-(log_prob_unit - D ln L).mean() / (D ln 2)``.
    """
    result = CheckResult("bits_per_dim_levels: bits/dim in level units from a [0, 1]-scaled model")
    g = torch.Generator().manual_seed(6)
    cases = [(torch.randn(7, generator=g) * 5 + 40.0, 64, 17),
             (torch.randn(5, generator=g) * 100 + 2000.0, 3072, 256),
             (torch.tensor([-3.0, -1.0]), 2, 4)]
    for log_prob, dim, levels in cases:
        mean = log_prob.double().mean().item()
        expected = -(mean - dim * math.log(levels)) / (dim * math.log(2))
        label = f"bits_per_dim_levels(log_prob_unit, num_dims={dim}, levels={levels})"
        got, ok = _call(result, bits_per_dim_levels, label, log_prob.clone(), dim, levels)
        if not ok:
            return result
        if isinstance(got, torch.Tensor) and got.numel() == 1:
            got = got.item()
        if isinstance(got, bool) or not isinstance(got, (int, float, np.floating)):
            result.problems.append(
                f"{label} should return one number (the mean over the batch), got "
                f"{type(got).__name__}" + (f" of shape {tuple(got.shape)}" if isinstance(got, torch.Tensor) else ""))
            return result
        got = float(got)
        if abs(got - expected) <= 1e-6 * max(1.0, abs(expected)):
            continue
        candidates = [
            (-mean / (dim * math.log(2)),
             "you forgot the Jacobian of the rescaling: dividing by L multiplies the density "
             "by L per dimension, so log p_levels = log p_unit - D ln L"),
            (-(mean + dim * math.log(levels)) / (dim * math.log(2)),
             "the Jacobian term has the wrong sign: level-unit data are L times more spread "
             "out, so its density is LOWER: log p_levels = log p_unit - D ln L"),
            (-(mean - dim * math.log(levels)) / dim,
             "that is nats per dimension: divide by ln 2 to get bits"),
            (-(mean - dim * math.log(levels)) / math.log(2),
             "that is bits per image: divide by the number of dimensions D"),
            (-(mean - math.log(levels)) / (dim * math.log(2)),
             "the rescaling acts on every one of the D dimensions: subtract D ln L, not ln L"),
            ((mean - dim * math.log(levels)) / (dim * math.log(2)),
             "bits/dim is the NEGATIVE log-likelihood: it should be positive here"),
        ]
        hint = next((h for value, h in candidates if abs(got - value) <= 1e-6 * max(1.0, abs(value))),
                    "bits/dim = -(log p_unit - D ln L) / (D ln 2), averaged over the batch")
        result.problems.append(f"{label}: got {got:.6g}, expected {expected:.6g}; {hint}")
        return result
    return result

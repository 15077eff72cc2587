"""Exercises for lesson 07: flows in practice.

* :data:`auc` -- the area under the ROC curve, by counting pairs;
* :data:`ratio_score` -- the likelihood-ratio anomaly score: the flow's bits/dim minus a
  pixel-statistics model's;
* :data:`bits_per_dim_levels` -- bits per dimension in level units from a log-density
  measured on data rescaled to ``[0, 1]``.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from . import _base
from ._base import Exercise, call, diagnose

__all__ = ["auc", "ratio_score", "bits_per_dim_levels", "reference_auc", "EXERCISES", "summary"]


def _as_number(got, what: str) -> tuple[float | None, list[str]]:
    """The learner's answer as a float, or the problem with it."""
    if isinstance(got, torch.Tensor) and got.numel() == 1:
        got = got.item()
    if isinstance(got, bool) or not isinstance(got, (int, float, np.floating, np.integer)):
        shape = f" of shape {tuple(got.shape)}" if isinstance(got, torch.Tensor) else ""
        return None, [f"{what} should return one number, got {type(got).__name__}{shape}"]
    got = float(got)
    if not math.isfinite(got):
        return None, [f"{what} returned {got}; expected a finite number"]
    return got, []


def _close(a: float, b: float, tol: float = 1e-6) -> bool:
    return abs(a - b) <= tol * max(1.0, abs(b))


# ----------------------------------------------------------------------------------
# Exercise 1: AUC
# ----------------------------------------------------------------------------------


def reference_auc(normal_scores, anomaly_scores) -> float:
    """P(anomaly score > normal score) + P(equal) / 2, by comparing every pair."""
    a = np.asarray(anomaly_scores, dtype=float)[:, None]
    n = np.asarray(normal_scores, dtype=float)[None, :]
    return float(((a > n) + 0.5 * (a == n)).mean())


def auc(normal_scores, anomaly_scores):
    a = anomaly_scores[:, None]
    n = normal_scores[None, :]
    return ((a > n).double() + 0.5 * (a == n).double()).mean().item()


def _check_auc(fn) -> list[str]:
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
        got, problems = _as_number(call(fn, normal.clone(), anomalous.clone(), name="auc"), "auc")
        if problems:
            return problems
        if _close(got, expected, 1e-9):
            continue
        a, n = anomalous.numpy()[:, None], normal.numpy()[None, :]
        if _close(got, 1.0 - expected, 1e-9):
            hint = ("you got 1 - AUC: the score is -log p, so HIGHER means more anomalous; "
                    "count pairs where the anomaly's score is above the normal one")
        elif _close(got, float((a > n).mean()), 1e-9) or _close(got, float((a >= n).mean()), 1e-9):
            hint = "ties between a normal and an anomalous score should count 1/2"
        else:
            hint = "average over all (anomaly, normal) pairs of [a > n] + 0.5 [a == n]"
        return [f"on the '{name}' case (normal {normal.tolist()[:5]}..., anomalies "
                f"{anomalous.tolist()[:5]}...): got {got:.4f}, expected {expected:.4f}; {hint}"]
    return []


auc = Exercise(
    "auc", "auc: the probability that an anomaly outscores a normal sample", _check_auc,
    auc,  # the reference solution above
    hints=["anomaly_scores[:, None] > normal_scores[None, :] compares every (anomaly, normal) "
           "pair at once, as a (num_anomalies, num_normal) table of booleans.",
           "Add 0.5 * (a == n) for the ties, convert to floats, take the mean of the whole "
           "table and return it with .item()."])


# ----------------------------------------------------------------------------------
# Exercise 2: the likelihood-ratio score
# ----------------------------------------------------------------------------------


def ratio_score(flow_log_prob, images, pixel_log_probs):
    num_pixels = pixel_log_probs.shape[0]
    levels = images.reshape(len(images), num_pixels)
    pixel_log_prob = pixel_log_probs[torch.arange(num_pixels), levels].sum(dim=1)
    # Both scores in bits/dim; the difference keeps what only the flow explains.
    return -(flow_log_prob - pixel_log_prob) / (num_pixels * math.log(2))


def _ratio_case(seed: int, count: int, side: int, levels: int):
    g = torch.Generator().manual_seed(seed)
    pixels = side * side
    table = torch.log_softmax(2.0 * torch.randn(pixels, levels, generator=g, dtype=torch.float64), 1)
    images = torch.randint(0, levels, (count, 1, side, side), generator=g)
    flow_log_prob = -pixels * (1.5 + torch.rand(count, generator=g, dtype=torch.float64))
    return flow_log_prob, images, table


def _check_ratio_score(fn) -> list[str]:
    for seed, count, side, levels in ((0, 6, 8, 17), (1, 4, 3, 5)):
        flow_log_prob, images, table = _ratio_case(seed, count, side, levels)
        pixels = side * side
        pixel_log_prob = table[torch.arange(pixels), images.reshape(count, pixels)].sum(1)
        bits = pixels * math.log(2)
        flow_bits, pixel_bits = -flow_log_prob / bits, -pixel_log_prob / bits
        got = call(fn, flow_log_prob.clone(), images.clone(), table.clone(), name="ratio_score")
        slips = [
            (pixel_bits - flow_bits,
             "the sign is flipped: the score is the flow's bits/dim MINUS the pixel model's, "
             "so higher still means more anomalous"),
            (flow_bits + pixel_bits,
             "you added the pixel model's score; subtract it (or equivalently add its "
             "log-density): log p_pixels - log p_flow, in bits/dim"),
            (-(flow_log_prob - pixel_log_prob),
             "that is the ratio in nats per image; divide by (number of pixels x ln 2) for "
             "bits per dimension"),
            (-(flow_log_prob - pixel_log_prob) / pixels,
             "that is nats per dimension; divide by ln 2 as well for bits"),
            (flow_bits - pixel_bits.mean(),
             "subtract each image's own pixel-model score, not the batch average"),
        ]
        problems = diagnose(got, flow_bits - pixel_bits, slips,
                            f"the ratio score ({count} images of {side}x{side}, {levels} levels)",
                            hint="the pixel model's log p(x) is the sum over pixels i of "
                                 "pixel_log_probs[i, x_i]; use the table passed in")
        if problems:
            return problems
    return []


ratio_score = Exercise(
    "ratio_score", "ratio_score: the likelihood-ratio anomaly score", _check_ratio_score,
    ratio_score,  # the reference solution above
    hints=["Flatten the images to (N, P) levels, with P = pixel_log_probs.shape[0]; "
           "pixel_log_probs[torch.arange(P), levels] picks each pixel's log-probability, one "
           "row per image. Sum over the pixels for the pixel model's log p(x).",
           "Both scores in bits/dim are -log p / (P ln 2); return the flow's minus the pixel "
           "model's, one value per image."])


# ----------------------------------------------------------------------------------
# Exercise 3: bits per dimension across units
# ----------------------------------------------------------------------------------


def bits_per_dim_levels(log_prob_unit, num_dims, levels):
    log_prob_levels = log_prob_unit - num_dims * math.log(levels)   # undo the 1/L rescaling
    return (-log_prob_levels.mean() / (num_dims * math.log(2))).item()


def _check_bits_per_dim_levels(fn) -> list[str]:
    g = torch.Generator().manual_seed(6)
    cases = [(torch.randn(7, generator=g) * 5 + 40.0, 64, 17),
             (torch.randn(5, generator=g) * 100 + 2000.0, 3072, 256),
             (torch.tensor([-3.0, -1.0]), 2, 4)]
    for log_prob, dim, levels in cases:
        mean = log_prob.double().mean().item()
        jac = dim * math.log(levels)
        expected = -(mean - jac) / (dim * math.log(2))
        label = f"bits_per_dim_levels(log_prob_unit, num_dims={dim}, levels={levels})"
        got, problems = _as_number(call(fn, log_prob.clone(), dim, levels,
                                        name="bits_per_dim_levels"), label)
        if problems:
            return [problems[0] + " (the mean over the batch)"]
        if _close(got, expected):
            continue
        slips = [
            (-mean / (dim * math.log(2)),
             "you forgot the Jacobian of the rescaling: dividing by L multiplies the density "
             "by L per dimension, so log p_levels = log p_unit - D ln L"),
            (-(mean + jac) / (dim * math.log(2)),
             "the Jacobian term has the wrong sign: level-unit data are L times more spread "
             "out, so their density is LOWER: log p_levels = log p_unit - D ln L"),
            (-(mean - jac) / dim, "that is nats per dimension: divide by ln 2 to get bits"),
            (-(mean - jac) / math.log(2), "that is bits per image: divide by the number of "
                                          "dimensions D"),
            (-(mean - math.log(levels)) / (dim * math.log(2)),
             "the rescaling acts on every one of the D dimensions: subtract D ln L, not ln L"),
            ((mean - jac) / (dim * math.log(2)),
             "bits/dim is the NEGATIVE log-likelihood: it should be positive here"),
        ]
        hint = next((h for value, h in slips if _close(got, value)),
                    "bits/dim = -(log p_unit - D ln L) / (D ln 2), averaged over the batch")
        return [f"{label}: got {got:.6g}, expected {expected:.6g}; {hint}"]
    return []


bits_per_dim_levels = Exercise(
    "bits_per_dim_levels",
    "bits_per_dim_levels: bits/dim in level units from a [0, 1]-scaled model",
    _check_bits_per_dim_levels, bits_per_dim_levels,
    hints=["Dividing the data by L shrinks every one of the D axes by L, so the density in "
           "level units is L^D times smaller: log p_levels = log p_unit - D ln L.",
           "Then bits/dim = -mean(log p_levels) / (D ln 2); return one float."])


EXERCISES = [auc, ratio_score, bits_per_dim_levels]


def summary():
    return _base.summary(EXERCISES)

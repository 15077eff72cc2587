"""Exercises for lesson 08 (conditional flows).

1. ``coupling_inverse``: undo a conditional affine coupling.
2. ``bayes_posterior``: classify by Bayes' rule from class-conditional log-likelihoods.
3. ``label_bits``: the most bits per dimension a label can save.
"""

from __future__ import annotations

import math

import torch

from . import _base
from ._base import Exercise, LearnerError, call, compare, diagnose, matches

__all__ = ["coupling_inverse", "bayes_posterior", "label_bits", "EXERCISES", "summary"]


# ----------------------------------------------------------------------------------
# 1. The inverse of a conditional coupling
# ----------------------------------------------------------------------------------


def _scale_shift_net(dim: int, context_dim: int, seed: int):
    """A fixed random conditioner ``scale_shift(kept, context) -> (log_scale, shift)``."""
    g = torch.Generator().manual_seed(seed)
    w1 = torch.randn(dim + context_dim, 16, generator=g, dtype=torch.float64) * 0.7
    w2 = torch.randn(16, 2 * dim, generator=g, dtype=torch.float64) * 0.5

    def scale_shift(kept, context, _mask=None):
        h = torch.tanh(torch.cat([kept.double(), context.double()], dim=1) @ w1) @ w2
        log_scale, shift = h.chunk(2, dim=1)
        free = 1.0 - scale_shift.mask
        return (log_scale * free).to(kept.dtype), (shift * free).to(kept.dtype)

    return scale_shift


def reference_coupling_inverse(z, context, mask, scale_shift):
    # The kept half of z equals the kept half of x, so the conditioner sees exactly what it
    # saw going forward: the same kept values and the same context.
    log_scale, shift = scale_shift(z * mask, context)
    x = (z - shift) * torch.exp(-log_scale)
    return x, -log_scale.sum(dim=1)


def _coupling_cases():
    cases = []
    for seed, (dim, context_dim, batch) in enumerate([(4, 1, 6), (6, 3, 5)]):
        g = torch.Generator().manual_seed(100 + seed)
        mask = (torch.arange(dim) % 2 == seed % 2).double()
        net = _scale_shift_net(dim, context_dim, seed)
        net.mask = mask
        z = torch.randn(batch, dim, generator=g, dtype=torch.float64)
        context = torch.randn(batch, context_dim, generator=g, dtype=torch.float64)
        cases.append((z, context, mask, net))
    return cases


def _check_coupling_inverse(fn) -> list[str]:
    for z, context, mask, net in _coupling_cases():
        out = call(fn, z.clone(), context.clone(), mask.clone(), net, name="coupling_inverse")
        if not (isinstance(out, tuple) and len(out) == 2):
            return [f"coupling_inverse should return a pair (x, log_abs_det), got {type(out).__name__}"]
        x, log_abs_det = out
        expected_x, expected_ld = reference_coupling_inverse(z, context, mask, net)
        log_scale, shift = net(z * mask, context)
        full_s, full_t = net(z, context)
        slips = [
            ((z + shift) * torch.exp(-log_scale), "the shift has the wrong sign: going forward it was added, "
                                                  "so the inverse subtracts it before undoing the scale"),
            (z * torch.exp(-log_scale) - shift, "undo the steps in reverse order: subtract the shift first, "
                                                "then divide by exp(log_scale)"),
            ((z - shift) * torch.exp(log_scale), "the inverse divides by exp(log_scale): multiply by "
                                                 "exp(-log_scale)"),
            ((z - full_t) * torch.exp(-full_s), "the conditioner must see only the kept half, z * mask (which "
                                                "equals x * mask); the other half of z is not x's"),
        ]
        problems = diagnose(x, expected_x, slips, "x", atol=1e-8, rtol=1e-6)
        if problems:
            return problems
        if matches(log_abs_det, -expected_ld, atol=1e-8, rtol=1e-6):
            return ["log_abs_det has the wrong sign: the inverse's log|det dx/dz| is minus the "
                    "forward's sum of log-scales"]
        problems = compare("log_abs_det", log_abs_det, expected_ld, atol=1e-8, rtol=1e-6)
        if problems:
            if isinstance(log_abs_det, torch.Tensor) and log_abs_det.shape == expected_x.shape:
                return ["log_abs_det should have one value per sample, shape (batch,): sum over the features"]
            return problems
    return []


coupling_inverse = Exercise(
    "coupling_inverse",
    "the inverse of a conditional affine coupling",
    _check_coupling_inverse,
    reference_coupling_inverse,
    [
        "Going forward, z = x * exp(s) + t on the free half, where (s, t) = scale_shift(x * mask, context). "
        "Solve that for x.",
        "The kept half of z is the kept half of x, so scale_shift(z * mask, context) gives the same s and t "
        "as going forward. The context is simply passed along: it is never inverted.",
        "x = (z - t) * exp(-s), and log|det dx/dz| = -s.sum(dim=1).",
    ],
)


# ----------------------------------------------------------------------------------
# 2. Bayes' rule from log-likelihoods
# ----------------------------------------------------------------------------------


def reference_bayes_posterior(log_likelihood, prior):
    # p(y | x) = p(x | y) p(y) / sum_k p(x | k) p(k), done in log space: the likelihoods of
    # a whole image are far too small for exp().
    return torch.softmax(log_likelihood + torch.log(prior), dim=1)


def _bayes_cases():
    g = torch.Generator().manual_seed(8)
    small = torch.randn(5, 3, generator=g, dtype=torch.float64) * 2
    images = -1000.0 + torch.randn(6, 10, generator=g, dtype=torch.float64) * 4  # like 28x28 digits, in nats
    return [(small, torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)),
            (images, torch.full((10,), 0.1, dtype=torch.float64)),
            (images[:, :4] + 990, torch.tensor([0.7, 0.1, 0.1, 0.1], dtype=torch.float64))]


def _check_bayes_posterior(fn) -> list[str]:
    for log_lik, prior in _bayes_cases():
        got = call(fn, log_lik.clone(), prior.clone(), name="bayes_posterior")
        expected = reference_bayes_posterior(log_lik, prior)
        if isinstance(got, torch.Tensor) and got.shape == expected.shape and not torch.isfinite(got).all():
            return ["your answer has NaN or infinite values: exp() of a log-likelihood near -1000 is 0 "
                    "in floating point (0/0 = NaN). Stay in log space: torch.softmax or logsumexp"]
        slips = [
            (torch.softmax(log_lik, dim=1), "the prior is missing: p(y | x) is proportional to p(x | y) p(y), "
                                            "so add log(prior) to each row"),
            (torch.softmax(log_lik * prior, dim=1), "in log space the prior is added, not multiplied: "
                                                    "log p(x | y) + log p(y)"),
            (torch.softmax(log_lik + torch.log(prior), dim=0), "normalise over the classes (dim=1): each "
                                                               "image's probabilities sum to 1"),
            (log_lik + torch.log(prior) - torch.logsumexp(log_lik + torch.log(prior), dim=1, keepdim=True),
             "that is the log of the posterior; return the probabilities themselves (exp of it)"),
        ]
        problems = diagnose(got, expected, slips, "posterior", atol=1e-6, rtol=1e-5)
        if problems:
            return problems
    return []


bayes_posterior = Exercise(
    "bayes_posterior",
    "Bayes' rule classification from log-likelihoods",
    _check_bayes_posterior,
    reference_bayes_posterior,
    [
        "p(y | x) = p(x | y) p(y) / sum_k p(x | k) p(k). Each row of log_likelihood holds log p(x | k) for "
        "one image and every class k.",
        "A whole image's log-likelihood can be -1000 nats: exp() of that is exactly 0. Add log(prior) to each "
        "row and normalise in log space.",
        "torch.softmax(log_likelihood + torch.log(prior), dim=1) does both steps safely.",
    ],
)


# ----------------------------------------------------------------------------------
# 3. The most bits a label can save
# ----------------------------------------------------------------------------------


def reference_label_bits(prior, num_dims):
    # -log2 p(x) = -log2 p(x | y) - log2 p(y) + log2 p(y | x): knowing y saves at most the
    # entropy of y on average (the mutual information I(X; Y) <= H(Y)), spread over D dims.
    nonzero = prior[prior > 0]
    entropy_bits = -(nonzero * torch.log2(nonzero)).sum()
    return float(entropy_bits) / num_dims


def _check_label_bits(fn) -> list[str]:
    cases = [(torch.full((10,), 0.1, dtype=torch.float64), 64),
             (torch.tensor([0.5, 0.25, 0.25], dtype=torch.float64), 16),
             (torch.tensor([0.6, 0.4, 0.0], dtype=torch.float64), 8)]
    for prior, dims in cases:
        got = call(fn, prior.clone(), dims, name="label_bits")
        if isinstance(got, torch.Tensor) and got.numel() == 1:
            got = float(got)
        if isinstance(got, bool) or not isinstance(got, (int, float)):
            return [f"label_bits should return one number (bits per dimension), got {type(got).__name__}"]
        expected = reference_label_bits(prior, dims)
        if math.isnan(got):
            return ["got NaN: a class of probability 0 contributes 0 bits (p log p -> 0 as p -> 0); "
                    "leave those classes out of the sum"]
        entropy = expected * dims
        slips = [
            (entropy * math.log(2) / dims, "that is in nats: use log2 (or divide the nats by ln 2)"),
            (entropy, "that is bits per image: divide by num_dims for bits per dimension"),
            (-entropy / dims, "the sign is flipped: an entropy is -sum p log p, which is >= 0"),
            (math.log2(len(prior)) / dims, "log2(K) is the answer only for a uniform prior; in general it is "
                                           "the entropy of the labels, -sum p log2 p"),
        ]
        if math.isclose(got, expected, rel_tol=1e-6, abs_tol=1e-9):
            continue
        for wrong, message in slips:
            if math.isclose(got, wrong, rel_tol=1e-6, abs_tol=1e-9):
                return [message]
        return [f"for prior {prior.tolist()} and num_dims={dims}: got {got:.6g}, expected {expected:.6g}"]
    return []


label_bits = Exercise(
    "label_bits",
    "the most bits a label can save",
    _check_label_bits,
    reference_label_bits,
    [
        "By Bayes' rule, log p(x) = log p(x | y) + log p(y) - log p(y | x). Since p(y | x) <= 1, "
        "-log2 p(x | y) >= -log2 p(x) + log2 p(y): the label saves at most -log2 p(y) bits on this image.",
        "Averaged over images, the saving is at most the entropy of the labels, H(Y) = -sum_k p_k log2 p_k "
        "bits per image; divide by num_dims.",
        "Skip classes with p_k = 0 (they contribute nothing): prior = prior[prior > 0].",
    ],
)

EXERCISES = [coupling_inverse, bayes_posterior, label_bits]


def summary():
    return _base.summary(EXERCISES)

"""Exercises for lesson 09: flows for Bayesian inference.

1. :data:`elbo_from_samples` -- the ELBO as a Monte Carlo average over samples of q;
2. :data:`effective_sample_size` -- the ESS of importance weights, without overflow;
3. :data:`reverse_kl_loss` -- the reverse-KL loss of a flow, with the log-det's sign right.
"""

from __future__ import annotations

import math
import numbers

import torch
from torch import Tensor

from ..models import RealNVP
from ._base import Exercise, call, diagnose
from ._base import summary as _summary

__all__ = ["elbo_from_samples", "effective_sample_size", "reverse_kl_loss", "EXERCISES",
           "summary"]


def _as_scalar(got, what: str) -> tuple[Tensor | None, list[str]]:
    """A learner's scalar (float or one-element tensor) as a float64 0-d tensor."""
    if isinstance(got, Tensor):
        if got.numel() != 1:
            return None, [f"{what} should be one number (a 0-d tensor or a float), got a "
                          f"tensor of shape {tuple(got.shape)}: average over the samples"]
        return got.detach().double().reshape(()), []
    if isinstance(got, numbers.Real) and not isinstance(got, bool):
        return torch.tensor(float(got), dtype=torch.float64), []
    return None, [f"{what} should be a number or a torch.Tensor, got {type(got).__name__}"]


# ----------------------------------------------------------------------------------
# 1. The ELBO from samples
# ----------------------------------------------------------------------------------


def _gaussian_log_prob(mean: float, scale: float):
    def log_prob(x: Tensor) -> Tensor:
        return (-0.5 * (((x - mean) / scale) ** 2).sum(1) - 2 * math.log(scale)
                - math.log(2 * math.pi))
    return log_prob


def _elbo_reference(x, log_q, log_target):
    """The ELBO estimate: the mean over samples x ~ q of log p~(x) - log q(x)."""
    return (log_target(x) - log_q(x)).mean()


def _check_elbo(elbo_from_samples) -> list[str]:
    g = torch.Generator().manual_seed(9)
    cases = [(0.0, 1.0, 0.5, 1.3, 2.0), (1.0, 0.7, 0.0, 1.0, -3.0)]
    for q_mean, q_scale, p_mean, p_scale, log_const in cases:
        x = q_mean + q_scale * torch.randn(400, 2, generator=g, dtype=torch.float64)
        log_q = _gaussian_log_prob(q_mean, q_scale)
        p_norm = _gaussian_log_prob(p_mean, p_scale)

        def log_target(x, p_norm=p_norm, log_const=log_const):
            return p_norm(x) + log_const

        where = f"(q = N({q_mean}, {q_scale}^2 I), target N({p_mean}, {p_scale}^2 I) times e^{log_const})"
        got = call(elbo_from_samples, x.clone(), log_q, log_target, name="elbo_from_samples")
        got, problems = _as_scalar(got, "elbo_from_samples")
        if problems:
            return problems
        log_w = log_target(x) - log_q(x)
        slips = [
            (-log_w.mean(), f"the sign is flipped {where}: the ELBO is E_q[log p~ - log q], "
                            "the negative of the reverse-KL loss"),
            (log_w.sum(), f"you summed over the samples {where}: the ELBO is an average, so "
                          "divide by the number of samples (use .mean())"),
            (torch.logsumexp(log_w, 0) - math.log(len(log_w)),
             f"you computed log of the mean weight {where}: that is the importance-sampling "
             "estimate of log Z (above the ELBO); the ELBO averages the log-weights instead"),
            (log_target(x).mean(), f"the - log q(x) term is missing {where}: without it the "
                                   "ELBO rewards q for piling all its mass on the mode"),
            (log_q(x).mean(), f"you averaged log q(x) alone {where}: the ELBO needs log p~(x) - log q(x)"),
        ]
        problems = diagnose(got, log_w.mean(), slips, f"the ELBO {where}",
                            hint="expected the mean over the samples of log_target(x) - log_q(x)")
        if problems:
            return problems
    return []


elbo_from_samples = Exercise(
    "elbo_from_samples", "the ELBO from samples of q", _check_elbo, _elbo_reference,
    ["The samples x were drawn from q. For each sample you need log p~(x) and log q(x): "
     "call the two functions on the whole batch.",
     "ELBO = mean over samples of (log_target(x) - log_q(x)); it is at most log Z."])


# ----------------------------------------------------------------------------------
# 2. The effective sample size
# ----------------------------------------------------------------------------------


def _ess_reference(log_weights):
    """(sum w)^2 / sum w^2, in log space so huge or tiny weights do not overflow."""
    return torch.exp(2 * torch.logsumexp(log_weights, 0) - torch.logsumexp(2 * log_weights, 0))


def _check_ess(effective_sample_size) -> list[str]:
    g = torch.Generator().manual_seed(3)
    cases = [("spread weights", torch.randn(200, generator=g, dtype=torch.float64)),
             ("equal weights", torch.zeros(50, dtype=torch.float64)),
             ("one weight dominates", torch.tensor([0.0] * 9 + [5.0], dtype=torch.float64)),
             ("log-weights near -1000 (tiny weights)",
              torch.randn(100, generator=g, dtype=torch.float64) - 1000.0),
             ("log-weights near +800 (huge weights)",
              torch.randn(100, generator=g, dtype=torch.float64) * 0.5 + 800.0)]
    for label, log_w in cases:
        got = call(effective_sample_size, log_w.clone(), name="effective_sample_size")
        got, problems = _as_scalar(got, "effective_sample_size")
        if problems:
            return problems
        expected = _ess_reference(log_w)
        w = log_w.exp()
        slips = [
            (expected / len(log_w), f"you returned the ESS as a fraction of n ({label}): "
                                    "return the count itself, (sum w)^2 / sum w^2"),
            (1 / expected, f"the fraction is upside down ({label}): ESS = (sum w)^2 / sum w^2"),
            (log_w.sum() ** 2 / (log_w ** 2).sum(),
             f"you used the log-weights as weights ({label}): exponentiate them first"),
            (w.sum() / (w ** 2).sum(), f"the numerator must be squared ({label}): "
                                       "ESS = (sum w)^2 / sum w^2"),
        ]
        if not torch.isfinite(got):
            return [f"the ESS came out {got.item()} for {label}: exp() of such log-weights "
                    "overflows or underflows. Subtract the largest log-weight first (the ESS "
                    "does not change when every weight is scaled), or work with logsumexp"]
        problems = diagnose(got, expected, slips, f"the ESS for {label}", rtol=1e-6,
                            hint="expected (sum w)^2 / sum w^2 with w = exp(log_weights)")
        if problems:
            return problems
    return []


effective_sample_size = Exercise(
    "effective_sample_size", "the effective sample size of importance weights", _check_ess,
    _ess_reference,
    ["With w_i = exp(log_weights[i]), ESS = (sum_i w_i)^2 / sum_i w_i^2: n when all weights "
     "are equal, 1 when one weight takes everything.",
     "exp(800) overflows. Multiplying every weight by the same constant leaves the ESS "
     "unchanged, so subtract log_weights.max() before exponentiating.",
     "Or stay in logs: log ESS = 2 logsumexp(log w) - logsumexp(2 log w)."])


# ----------------------------------------------------------------------------------
# 3. The reverse-KL loss: the sign of the log-det
# ----------------------------------------------------------------------------------


def _loss_reference(flow, log_target, z):
    """Mean of log q(x) - log p~(x) over x = f^{-1}(z), log q(x) = log p_Z(z) - log|det dx/dz|."""
    x, log_abs_det = flow.inverse(z)
    log_q = flow.base.log_prob(z) - log_abs_det
    return (log_q - log_target(x)).mean()


def _test_flow(seed: int):
    torch.manual_seed(seed)
    flow = RealNVP(2, num_couplings=3, hidden=8).double()
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.4 * torch.randn(p.shape, dtype=p.dtype))
    return flow


def _grads(flow, loss) -> Tensor:
    flow.zero_grad(set_to_none=True)
    loss.backward()
    return torch.cat([p.grad.flatten() if p.grad is not None else torch.zeros(p.numel(),
                      dtype=p.dtype) for p in flow.parameters()])


def _check_loss(reverse_kl_loss) -> list[str]:
    from ..targets import U1

    def log_target(x):
        return U1.log_prob(x)

    for seed in (0, 1):
        flow = _test_flow(seed)
        z = torch.randn(64, 2, generator=torch.Generator().manual_seed(seed + 5),
                        dtype=torch.float64)
        got_raw = call(reverse_kl_loss, flow, log_target, z.clone(), name="reverse_kl_loss")
        got, problems = _as_scalar(got_raw, "reverse_kl_loss")
        if problems:
            return problems
        with torch.no_grad():
            x, log_abs_det = flow.inverse(z)
            log_p_z, log_p = flow.base.log_prob(z), log_target(x)
            x_fwd, log_det_fwd = flow.forward(z)
            expected = (log_p_z - log_abs_det - log_p).mean()
            slips = [
                ((log_p_z + log_abs_det - log_p).mean(),
                 "the log-det has the wrong sign: flow.inverse returns log|det dx/dz|, and "
                 "stretching space (a positive log-det) lowers the density, so "
                 "log q(x) = log p_Z(z) - log|det dx/dz|"),
                ((log_p_z - log_p).mean(), "the log-det term is missing: q is not p_Z moved "
                                           "to x; the volume change must be subtracted"),
                (-expected, "the overall sign is flipped: that is the ELBO; the loss to "
                            "minimise is mean(log q(x) - log p~(x))"),
                ((log_p_z - log_det_fwd - log_target(x_fwd)).mean(),
                 "you pushed z through flow.forward (the normalizing direction); samples "
                 "come from the generative direction, flow.inverse(z)"),
                ((log_p_z + log_det_fwd - log_target(x_fwd)).mean(),
                 "you pushed z through flow.forward (the normalizing direction); samples "
                 "come from the generative direction, flow.inverse(z)"),
            ]
        problems = diagnose(got, expected, slips, "the reverse-KL loss", rtol=1e-6, atol=1e-8,
                            hint="expected mean(log p_Z(z) - log|det dx/dz| - log_target(x)) "
                                 "with x, log|det dx/dz| = flow.inverse(z)")
        if problems:
            return problems
        if not (isinstance(got_raw, Tensor) and got_raw.requires_grad):
            return ["the loss carries no gradient (it must be a tensor computed from the flow, "
                    "not a float, .item() or a result under torch.no_grad()): the optimiser "
                    "could not train the flow with it"]
        got_grads = _grads(flow, got_raw.sum())
        want_grads = _grads(flow, _loss_reference(flow, log_target, z))
        if not torch.allclose(got_grads, want_grads, atol=1e-8, rtol=1e-6):
            return ["the loss has the right value but the wrong gradient: something was "
                    "detached. Sampling must stay differentiable (the reparameterisation "
                    "trick), so do not detach x or the log-det"]
    return []


reverse_kl_loss = Exercise(
    "reverse_kl_loss", "the reverse-KL loss of a flow", _check_loss, _loss_reference,
    ["flow.inverse(z) gives x and log|det dx/dz| in one pass; flow.base.log_prob(z) is "
     "log p_Z(z).",
     "Change of variables in the generative direction: log q(x) = log p_Z(z) - log|det dx/dz|.",
     "The loss is the mean over the batch of log q(x) - log_target(x)."])


EXERCISES = [elbo_from_samples, effective_sample_size, reverse_kl_loss]


def summary():
    """Which of this lesson's exercises passed in this session."""
    return _summary(EXERCISES)

r"""Fitting a flow to a density known only up to a constant (variational inference).

Given an unnormalised log-density :math:`\log\tilde p(x)` with :math:`p = \tilde p / Z`,
a flow :math:`q` is fitted by minimising the reverse KL divergence, through samples of
:math:`q` itself (no sample of :math:`p` is needed):

.. math:: \mathrm{KL}(q\,\|\,p) = \mathbb E_{x\sim q}\big[\log q(x) - \log\tilde p(x)\big]
          + \log Z = \log Z - \mathrm{ELBO}.

Each sample is drawn by the generative direction, :math:`x = f^{-1}(z)` with
:math:`z \sim p_Z`, and its log-density comes out of the same pass:
:math:`\log q(x) = \log p_Z(z) - \log|\det \partial x/\partial z|`. The sample is a
differentiable function of the flow's parameters (the reparameterisation trick), so the
gradient of the Monte Carlo loss is an unbiased gradient of the KL.

:func:`importance` then corrects what the flow got wrong: weights
:math:`w_i = \tilde p(x_i) / q(x_i)` give an estimate of :math:`Z`, self-normalised
expectations under :math:`p`, and the effective sample size, which says how far apart
:math:`q` and :math:`p` are.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from ._checks import check_count, check_positive
from .flow import Flow
from .train import History, _optimize

__all__ = ["fit_vi", "sample_with_log_prob", "importance", "ImportanceResult",
           "reverse_kl", "elbo"]


def _state_copy(flow: Flow) -> dict:
    return {k: v.detach().to("cpu", copy=True) for k, v in flow.state_dict().items()}


def _resolve_device(device) -> torch.device:
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' was requested but no CUDA GPU is available; use device='cpu'")
    return device


def _check_flow(flow, who: str) -> None:
    if not isinstance(flow, Flow):
        raise TypeError(f"{who} expects a flowkit Flow, got {type(flow).__name__}")


def _evaluate_target(log_target: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """``log_target(x)`` checked to be a ``(batch,)`` floating tensor."""
    out = log_target(x)
    if not isinstance(out, Tensor):
        raise TypeError(f"log_target must return a torch.Tensor of shape ({x.shape[0]},), "
                        f"got {type(out).__name__}")
    if tuple(out.shape) != (x.shape[0],):
        raise ValueError(f"log_target must map a ({x.shape[0]}, ...) batch to one log-density "
                         f"per sample, shape ({x.shape[0]},); got shape {tuple(out.shape)}")
    if not out.dtype.is_floating_point:
        raise TypeError(f"log_target must return floating-point log-densities, got {out.dtype}")
    return out


def sample_with_log_prob(flow: Flow, n: int, generator: torch.Generator | None = None,
                         temperature: float = 1.0) -> tuple[Tensor, Tensor]:
    r"""``(x, log q(x))`` for ``n`` samples, in one generative pass, differentiable.

    :math:`x = f^{-1}(z)`, :math:`\log q(x) = \log p_Z(z) - \log|\det\partial x/\partial z|`.
    With ``temperature != 1`` the samples come from a tempered base, but ``log q`` is
    still the flow's own density at them.
    """
    _check_flow(flow, "sample_with_log_prob")
    n = check_count(n, "n")
    z = flow.base.sample(n, temperature=temperature, generator=generator)
    x, log_abs_det = flow.inverse(z)
    return x, flow.base.log_prob(z) - log_abs_det


def fit_vi(
    flow: Flow,
    log_target: Callable[[Tensor], Tensor],
    steps: int,
    batch_size: int = 256,
    lr: float = 1e-3,
    clip_grad: float | None = 10.0,
    seed: int = 0,
    progress: bool = True,
    snapshot_every: int | None = None,
    cosine_schedule: bool = False,
    device: str | torch.device = "cpu",
) -> History:
    r"""Fit ``flow`` to :math:`\tilde p` by reverse KL with Adam; returns a :class:`History`.

    ``log_target`` maps a ``(batch, *event_shape)`` tensor to ``(batch,)`` unnormalised
    log-densities. Each step draws ``batch_size`` samples from the flow and minimises

    .. math:: \mathcal L = \frac1B\sum_i \log q(x_i) - \log\tilde p(x_i) = -\mathrm{ELBO},

    so ``history.loss[i]`` is the negative ELBO of the batch at step ``i + 1`` and
    ``log Z + loss`` estimates :math:`\mathrm{KL}(q\|p)` when ``log Z`` is known. The run is
    seeded; ``snapshot_every`` stores copies of the weights (step 0 first), and
    ``cosine_schedule`` decays the learning rate to zero along a cosine. A loss that turns
    NaN or infinite stops the run with an error naming the step. The flow is left in
    eval mode.
    """
    _check_flow(flow, "fit_vi")
    if not callable(log_target):
        raise TypeError("log_target must be a function mapping a (batch, dim) tensor to "
                        f"(batch,) log-densities, got {type(log_target).__name__}")
    steps = check_count(steps, "steps")
    batch_size = check_count(batch_size, "batch_size")
    if batch_size == 0:
        raise ValueError("batch_size must be at least 1")
    lr = check_positive(lr, "lr")
    if clip_grad is not None:
        clip_grad = check_positive(clip_grad, "clip_grad")
    if snapshot_every is not None:
        snapshot_every = check_count(snapshot_every, "snapshot_every")
        if snapshot_every == 0:
            raise ValueError("snapshot_every must be a positive number of steps (or None)")
    device = _resolve_device(device)

    generator = torch.Generator(device=device).manual_seed(int(seed))
    torch.manual_seed(int(seed))

    def step_loss(step: int) -> Tensor:
        x, log_q = sample_with_log_prob(flow, batch_size, generator=generator)
        log_p = _evaluate_target(log_target, x)
        loss = (log_q - log_p).mean()
        if not torch.isfinite(loss):
            bad = int((~torch.isfinite(log_p)).sum())
            where = (f"log_target gave {bad} non-finite value(s) on the flow's samples"
                     if bad else "the flow's log-density or samples overflowed")
            raise FloatingPointError(
                f"the reverse-KL loss became {loss.item()} at step {step}: {where}; "
                f"lower lr (now {lr:g}), tighten clip_grad, or make log_target finite "
                "everywhere (a large negative number instead of -inf)")
        return loss

    return _optimize(flow, step_loss, steps, lr, device=device, progress=progress,
                     desc="fitting (reverse KL)", postfix="neg_elbo", clip_grad=clip_grad,
                     cosine_schedule=cosine_schedule, snapshot_every=snapshot_every)


@dataclass
class ImportanceResult:
    r"""Importance sampling with the flow as proposal.

    ``samples`` are draws from :math:`q`; ``log_weights`` are
    :math:`\log w_i = \log\tilde p(x_i) - \log q(x_i)`.

    * ``log_Z`` (and ``log_Z_stderr``): :math:`\log\frac1n\sum_i w_i`, an estimate of
      :math:`\log Z` (consistent; its bias is of order ``1/n``), with a delta-method
      standard error;
    * ``elbo``: :math:`\frac1n\sum_i\log w_i`, a lower bound on :math:`\log Z` in expectation;
    * ``ess``: :math:`(\sum w_i)^2 / \sum w_i^2`, between 1 and ``n``; ``ess_fraction`` is
      ``ess / n`` (1 when :math:`q = p`);
    * ``weights``: the self-normalised weights (summing to 1); ``expectation(fn)`` is
      :math:`\sum_i \bar w_i\,\mathrm{fn}(x_i)`, an estimate of :math:`\mathbb E_p[\mathrm{fn}]`.
    """

    samples: Tensor
    log_weights: Tensor

    @property
    def n(self) -> int:
        return self.log_weights.shape[0]

    @property
    def weights(self) -> Tensor:
        return torch.softmax(self.log_weights, 0)

    @property
    def log_Z(self) -> float:
        return float(torch.logsumexp(self.log_weights, 0) - math.log(self.n))

    @property
    def log_Z_stderr(self) -> float:
        # Var(Z_hat)/Z_hat^2 = Var(w)/(n mean(w)^2), by the delta method on log.
        w = torch.exp(self.log_weights - self.log_weights.max())
        return float(w.std() / (w.mean() * math.sqrt(self.n)))

    @property
    def elbo(self) -> float:
        return float(self.log_weights.mean())

    @property
    def ess(self) -> float:
        log_w = self.log_weights
        return float(torch.exp(2 * torch.logsumexp(log_w, 0) - torch.logsumexp(2 * log_w, 0)))

    @property
    def ess_fraction(self) -> float:
        return self.ess / self.n

    def expectation(self, fn: Callable[[Tensor], Tensor]) -> Tensor:
        """Self-normalised estimate of :math:`\\mathbb E_p[\\mathrm{fn}(x)]`; ``fn`` maps the
        ``(n, ...)`` samples to ``(n, ...)`` values."""
        values = fn(self.samples)
        if not isinstance(values, Tensor) or values.shape[:1] != (self.n,):
            raise ValueError(f"fn must map the ({self.n}, ...) samples to a tensor with {self.n} rows")
        w = self.weights.to(values.dtype)
        return torch.tensordot(w, values, dims=([0], [0]))

    def __repr__(self) -> str:
        return (f"ImportanceResult(n={self.n}, ess={self.ess:.1f} ({100 * self.ess_fraction:.1f}%), "
                f"log_Z={self.log_Z:.4f} +- {self.log_Z_stderr:.4f}, elbo={self.elbo:.4f})")


def importance(flow: Flow, log_target: Callable[[Tensor], Tensor], n: int = 10_000,
               seed: int = 0, batch_size: int = 8192) -> ImportanceResult:
    """Draw ``n`` samples from ``flow`` and weigh them by ``log_target``; see
    :class:`ImportanceResult`. Seeded; no gradients; works in float64 for the weights."""
    _check_flow(flow, "importance")
    if not callable(log_target):
        raise TypeError(f"log_target must be a function, got {type(log_target).__name__}")
    n = check_count(n, "n")
    if n < 2:
        raise ValueError(f"importance needs at least 2 samples, got n = {n}")
    generator = torch.Generator().manual_seed(int(seed))
    samples, log_weights = [], []
    with torch.no_grad():
        for size in [batch_size] * (n // batch_size) + [n % batch_size]:
            if size == 0:
                continue
            x, log_q = sample_with_log_prob(flow, size, generator=generator)
            log_p = _evaluate_target(log_target, x)
            samples.append(x)
            log_weights.append(log_p.double() - log_q.double())
    log_weights = torch.cat(log_weights)
    if torch.isnan(log_weights).any() or torch.isposinf(log_weights).any():
        raise FloatingPointError("some importance weights are NaN or +inf: log_target or the "
                                 "flow's log-density is not finite on the flow's samples")
    return ImportanceResult(torch.cat(samples), log_weights)


def elbo(flow: Flow, log_target: Callable[[Tensor], Tensor], n: int = 10_000,
         seed: int = 0) -> float:
    r"""A Monte Carlo ELBO, :math:`\mathbb E_q[\log\tilde p - \log q]` from ``n`` samples."""
    return importance(flow, log_target, n, seed).elbo


def reverse_kl(flow: Flow, log_target: Callable[[Tensor], Tensor], log_Z: float,
               n: int = 20_000, seed: int = 0) -> tuple[float, float]:
    r""":math:`\mathrm{KL}(q\|p) = \log Z - \mathrm{ELBO}` with its Monte Carlo standard
    error, given the exact ``log_Z`` (for example a target's quadrature value)."""
    result = importance(flow, log_target, n, seed)
    stderr = float(result.log_weights.std() / math.sqrt(result.n))
    return float(log_Z) - result.elbo, stderr

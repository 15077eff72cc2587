"""Exercises for lesson 04: training a flow on two moons by maximum likelihood.

* ``nll`` -- the training loss, written from ``flow.forward`` and the Gaussian log-density;
* ``kl`` -- how far a model is from the true two-moons density, in nats;
* ``realnvp`` -- a RealNVP-like :class:`~flowkit.Flow` built from
  :class:`~flowkit.AffineCoupling` layers.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

import flowkit as fk  # the reference solutions are written as a learner writes them

from .. import data
from ..flow import Flow, StandardNormal
from ..models import RealNVP
from ..transforms import AffineCoupling
from . import _base
from ._base import Exercise, call, compare, forbid

__all__ = ["nll", "kl", "realnvp", "perturbed_flow", "EXERCISES", "summary"]

_LOG_2PI = math.log(2 * math.pi)


def perturbed_flow(num_couplings: int = 4, hidden: int = 16, scale: float = 0.4,
                   seed: int = 0) -> Flow:
    """A small RealNVP with random weights everywhere (a fresh one is the identity).

    The checkers test on it, so a wrong log-determinant cannot hide behind a zero one.
    """
    with torch.random.fork_rng():  # the same flow whatever the global random state
        torch.manual_seed(seed)
        flow = RealNVP(2, num_couplings=num_couplings, hidden=hidden)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))
    return flow.eval()


def _as_scalar(value, name: str) -> tuple[torch.Tensor | None, list[str]]:
    """A 0-d float64 tensor from a float / 0-d tensor, or the problem with it."""
    if isinstance(value, bool):
        return None, [f"{name} should be a number, got a bool"]
    if isinstance(value, (int, float)):
        value = torch.tensor(float(value))
    if not isinstance(value, torch.Tensor):
        return None, [f"{name} should be a number or a 0-d tensor, got {type(value).__name__}"]
    if value.numel() != 1:
        return None, [
            f"{name} should be a single number (the mean over the batch), got a tensor of "
            f"shape {tuple(value.shape)}; did you forget .mean()?"
        ]
    value = value.detach().double().reshape(())
    if not torch.isfinite(value):
        return None, [f"{name} is {value.item()}: NaN or infinite"]
    return value, []


def _close(a: float, b: float, tol: float = 1e-4) -> bool:
    return abs(a - b) <= tol * max(1.0, abs(b))


# ----------------------------------------------------------------------------------
# Reference solutions (shown by solution(); a notebook never runs them)
# ----------------------------------------------------------------------------------


def nll_loss(flow, x):
    z, log_abs_det = flow.forward(x)
    dims = z.shape[1]
    log_base = -0.5 * (z ** 2).sum(dim=1) - 0.5 * dims * math.log(2 * math.pi)
    return -(log_base + log_abs_det).mean()


def kl_gap(flow, x, noise):
    with torch.no_grad():
        log_p = fk.data.two_moons_log_prob(x, noise=noise)
        log_q = flow.log_prob(x)
    return (log_p - log_q).mean().item()


def make_realnvp(num_couplings, hidden):
    layers = [fk.AffineCoupling(fk.alternating_mask(2, i % 2), fk.MLP(2, 4, hidden))
              for i in range(num_couplings)]
    return fk.Flow(layers, fk.StandardNormal(2))


# ----------------------------------------------------------------------------------
# Exercise 1: the negative log-likelihood
# ----------------------------------------------------------------------------------


def _nll_diagnosis(got: float, flow: Flow, x: torch.Tensor) -> str:
    """Name the usual slip that produces ``got``, or say what was expected."""
    with torch.no_grad():
        z, log_abs_det = flow.forward(x)
        log_base = -0.5 * (z ** 2).sum(dim=1) - _LOG_2PI
        x_inv, log_abs_det_inv = flow.inverse(x)
        log_base_inv = -0.5 * (x_inv ** 2).sum(dim=1) - _LOG_2PI
    n = x.shape[0]
    right = -(log_base + log_abs_det).mean().item()
    candidates = [
        (-(log_base).mean().item(),
         "did you forget the log-determinant term? log p(x) = log N(z) + log|det dz/dx|"),
        (-(log_base - log_abs_det).mean().item(),
         "the log-determinant has the wrong sign: forward returns log|det dz/dx|, which is "
         "added to log N(z)"),
        ((right + 0.0) - _LOG_2PI, "the Gaussian's normalising constant is missing: "
         "log N(z) = -|z|^2/2 - (D/2) log(2 pi), with D = 2 here"),
        (right - 0.5 * _LOG_2PI, "the constant is (D/2) log(2 pi) with D = 2 coordinates, "
         "so log(2 pi) per sample, not half of it"),
        (right + _LOG_2PI, "the normalising constant has the wrong sign or is counted twice: "
         "log N(z) = -|z|^2/2 - (D/2) log(2 pi)"),
        (-right, "the sign is flipped: the loss is the NEGATIVE log-likelihood, so minimising "
         "it makes the data more likely"),
        (right * n, "you summed over the batch; take the mean so the loss does not grow "
         "with the batch size"),
        (-(log_base_inv + log_abs_det_inv).mean().item(),
         "you used flow.inverse; the data goes through flow.forward (x -> z) to be scored"),
        (-(log_base + log_abs_det).sum().item() / (2 * n),
         "you divided by the number of coordinates too; the loss is nats per sample"),
    ]
    for value, hint in candidates:
        if _close(got, value, 1e-4):
            return hint
    return "compare with -(log N(z) + log|det dz/dx|).mean(), where z, log_abs_det = flow.forward(x)"


def _check_nll_loss(nll_loss) -> list[str]:
    """Check ``nll_loss(flow, x) -> 0-d tensor``: the mean negative log-likelihood.

    It must equal ``-flow.log_prob(x).mean()``, be built from ``flow.forward`` and the
    standard normal log-density, and keep the autograd graph (training needs it).
    """
    shortcut = forbid(nll_loss, ["log_prob"], "write the standard normal log-density yourself, "
                      "from z and log_abs_det = flow.forward(x)")
    if shortcut:
        return shortcut
    flow = perturbed_flow(seed=4)
    for n, seed in ((64, 1), (37, 2)):
        x = data.two_moons(n, seed=seed)
        expected = -flow.log_prob(x).mean()
        got = call(nll_loss, flow, x)
        if not isinstance(got, torch.Tensor):
            return [
                f"nll_loss should return a torch.Tensor the optimizer can backpropagate "
                f"through, got {type(got).__name__} (did you call .item()?)"
            ]
        value, problems = _as_scalar(got, "nll_loss(flow, x)")
        if problems:
            return problems
        if not _close(value.item(), expected.item()):
            return [
                f"on {n} two-moons points: got {value.item():.6f}, expected "
                f"{expected.item():.6f}; {_nll_diagnosis(value.item(), flow, x)}"
            ]
        if not got.requires_grad:
            return [
                "the value is right but carries no gradient: do not wrap it in torch.no_grad() "
                "or rebuild it from numbers; the optimizer needs the graph back to the weights"
            ]
    return []


# ----------------------------------------------------------------------------------
# Exercise 2: the KL gap
# ----------------------------------------------------------------------------------


def _check_kl_gap(kl_gap) -> list[str]:
    r"""Check ``kl_gap(flow, x, noise) -> float``: :math:`\frac1N\sum_i \log p(x_i) - \log q(x_i)`.

    ``x`` holds samples of the true two moons (noise ``noise``), ``p`` is the exact
    density (:func:`flowkit.data.two_moons_log_prob`), ``q`` the flow's.
    """
    flow = perturbed_flow(seed=7, scale=0.2)  # a KL of a few nats: slips stand apart
    for n, noise, seed in ((400, 0.1, 11), (250, 0.15, 12)):
        x = data.two_moons(n, noise=noise, seed=seed)
        with torch.no_grad():
            log_p = data.two_moons_log_prob(x.double(), noise=noise)
            log_q = flow.log_prob(x).double()
        expected = (log_p - log_q).mean().item()
        got = call(kl_gap, flow, x, noise)
        value, problems = _as_scalar(got, "kl_gap(flow, x, noise)")
        if problems:
            return problems
        v = value.item()
        if _close(v, expected, 1e-5):
            continue
        if _close(v, -expected, 1e-5):
            hint = ("the sign is flipped: KL(p || q) = E_p[log p(x) - log q(x)] is never negative "
                    "(you computed log q - log p)")
        elif _close(v, -log_q.mean().item(), 1e-5):
            hint = ("that is the model's NLL on the data; subtract the entropy "
                    "H = -E_p[log p(x)] to get the gap")
        elif _close(v, -log_p.mean().item(), 1e-5):
            hint = "that is the entropy of the data alone; the model's log q(x) is missing"
        elif _close(v, expected * n, 1e-5):
            hint = "you summed over the samples; take the mean"
        elif noise != 0.1 and abs(v - expected) > 1e-3:
            hint = ("did you pass noise to fk.data.two_moons_log_prob? this call used "
                    f"noise={noise}")
        else:
            hint = "expected mean(two_moons_log_prob(x, noise) - flow.log_prob(x))"
        return [
            f"on {n} points with noise={noise}: got {v:.5f}, expected {expected:.5f}; {hint}"
        ]
    return []


# ----------------------------------------------------------------------------------
# Exercise 3: a RealNVP from parts
# ----------------------------------------------------------------------------------


def _first_linear(module: nn.Module) -> nn.Linear | None:
    return next((m for m in module.modules() if isinstance(m, nn.Linear)), None)


def _check_make_realnvp(make_realnvp) -> list[str]:
    """Check ``make_realnvp(num_couplings, hidden) -> fk.Flow`` built from AffineCouplings.

    Expected: ``num_couplings`` :class:`~flowkit.AffineCoupling` layers on 2-D vectors with
    alternating masks, conditioners with ``hidden`` units, a standard normal base, and a
    flow that starts as the identity.
    """
    problems: list[str] = []
    for num_couplings, hidden in ((4, 32), (3, 16)):
        where = f"make_realnvp({num_couplings}, {hidden})"
        with torch.random.fork_rng():  # leave the learner's random state alone
            torch.manual_seed(0)
            flow = call(make_realnvp, num_couplings, hidden)
        if not isinstance(flow, Flow):
            return [f"{where} should return an fk.Flow, got {type(flow).__name__}; "
                            "wrap the layers: fk.Flow(layers, fk.StandardNormal(2))"]
        layers = list(flow.transforms)
        if len(layers) != num_couplings:
            return [f"{where} has {len(layers)} transforms, expected {num_couplings} couplings"]
        for i, layer in enumerate(layers):
            if not isinstance(layer, AffineCoupling):
                return [f"{where}: transform {i} is a {type(layer).__name__}, expected fk.AffineCoupling"]
            if tuple(layer.mask.shape) != (2,) or layer.mask.sum().item() != 1:
                return [
                    f"{where}: coupling {i} has mask {layer.mask.tolist()}; for 2-D data each mask "
                    "keeps exactly one coordinate, e.g. fk.alternating_mask(2, i % 2)"
                ]
        for i in range(num_couplings - 1):
            if torch.equal(layers[i].mask, layers[i + 1].mask):
                return [
                    f"{where}: couplings {i} and {i + 1} both have mask {layers[i].mask.tolist()}; "
                    "alternate the masks (fk.alternating_mask(2, i % 2)), so that each coupling "
                    "transforms the coordinate the previous one kept: two couplings in a row "
                    "with the same mask transform the same coordinate, and together are no "
                    "more flexible than one"
                ]
        if not isinstance(flow.base, StandardNormal) or tuple(flow.base.event_shape) != (2,):
            return [f"{where}: the base should be fk.StandardNormal(2), got {flow.base!r}"]
        first = _first_linear(layers[0].conditioner)
        if first is None or first.out_features != hidden:
            width = None if first is None else first.out_features
            return [f"{where}: the conditioner's first layer has {width} units, expected "
                            f"hidden={hidden} (fk.MLP(2, 4, hidden))"]
        x = data.two_moons(50, seed=3)
        with torch.no_grad():
            start = flow.log_prob(x)
            gaussian = -0.5 * (x ** 2).sum(dim=1) - _LOG_2PI
        if not torch.allclose(start, gaussian, atol=1e-5):
            return [
                f"{where}: a new flow should be the identity (its density the standard normal), "
                "but it is not; fk.MLP starts its last layer at zero, which makes each coupling "
                "start as the identity"
            ]
        # Randomise a copy: every coordinate should move, and inverse(forward(x)) == x.
        moved = copy.deepcopy(flow)
        g = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for p in moved.parameters():
                p.add_(0.3 * torch.randn(p.shape, generator=g))
            z, log_abs_det = moved.forward(x)
            back, _ = moved.inverse(z)
            expected_log_prob = moved.base.log_prob(z) + log_abs_det
        changed = ((z - x).abs() > 1e-6).any(dim=0)
        if num_couplings >= 2 and not changed.all():
            return [f"{where}: after training-like weight changes, coordinate(s) "
                            f"{(~changed).nonzero().flatten().tolist()} never change; alternate the masks"]
        problems += compare(f"{where}: inverse(forward(x))", back, x, atol=1e-4, rtol=1e-4)
        problems += compare(f"{where}: log_prob", moved.log_prob(x).detach(), expected_log_prob,
                            atol=1e-4, rtol=1e-4)
        if problems:
            return problems
    return []


nll = Exercise(
    "nll", "nll_loss: the mean negative log-likelihood of a batch", _check_nll_loss, nll_loss,
    hints=["z, log_abs_det = flow.forward(x) gives the latent and log|det dz/dx|, one per row.",
           "log N(z; 0, I) = -|z|^2 / 2 - (D / 2) log(2 pi) with D = z.shape[1]; the loss is "
           "-(log N(z) + log_abs_det).mean(). Keep it a tensor: no .item(), no torch.no_grad()."])

kl = Exercise(
    "kl", "kl_gap: KL(data || model) estimated on samples of the data", _check_kl_gap, kl_gap,
    hints=["KL(p || q) = E_p[log p(x) - log q(x)]: average log p - log q over the samples x, "
           "which come from p.",
           "log p is fk.data.two_moons_log_prob(x, noise=noise), log q is flow.log_prob(x); "
           "return the mean as a number (.item())."])

realnvp = Exercise(
    "realnvp", "make_realnvp: a RealNVP built from AffineCoupling layers", _check_make_realnvp,
    make_realnvp,
    hints=["Coupling i is fk.AffineCoupling(fk.alternating_mask(2, i % 2), fk.MLP(2, 4, hidden)): "
           "the mask alternates, so each coupling transforms the coordinate the previous one kept.",
           "Put the couplings in a list and return fk.Flow(layers, fk.StandardNormal(2))."])

EXERCISES = [nll, kl, realnvp]


def summary():
    """Print which of this lesson's exercises passed in this kernel."""
    return _base.summary(EXERCISES)

"""Checkers for lesson 04: training a flow on two moons by maximum likelihood.

* :func:`check_nll_loss` -- the training loss, written from ``flow.forward`` and the
  Gaussian log-density;
* :func:`check_kl_gap` -- how far a model is from the true two-moons density, in nats;
* :func:`check_make_realnvp` -- a RealNVP-like :class:`~flowkit.Flow` built from
  :class:`~flowkit.AffineCoupling` layers.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from .. import data
from ..flow import Flow, StandardNormal
from ..models import RealNVP
from ..transforms import AffineCoupling
from ._base import LegacyCheckResult as CheckResult, compare

__all__ = ["check_nll_loss", "check_kl_gap", "check_make_realnvp", "perturbed_flow"]

_LOG_2PI = math.log(2 * math.pi)


def perturbed_flow(num_couplings: int = 4, hidden: int = 16, scale: float = 0.4,
                   seed: int = 0) -> Flow:
    """A small RealNVP with random weights everywhere (a fresh one is the identity).

    The checkers test on it, so a wrong log-determinant cannot hide behind a zero one.
    """
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


def check_nll_loss(nll_loss) -> CheckResult:
    """Check ``nll_loss(flow, x) -> 0-d tensor``: the mean negative log-likelihood.

    It must equal ``-flow.log_prob(x).mean()``, be built from ``flow.forward`` and the
    standard normal log-density, and keep the autograd graph (training needs it).
    """
    result = CheckResult("nll_loss: the mean negative log-likelihood of a batch")
    flow = perturbed_flow(seed=4)
    for n, seed in ((64, 1), (37, 2)):
        x = data.two_moons(n, seed=seed)
        expected = -flow.log_prob(x).mean()
        try:
            got = nll_loss(flow, x)
        except NotImplementedError:
            result.problems.append("nll_loss is not written yet (it raises NotImplementedError)")
            return result
        except Exception as err:  # a learner's bug: report it, do not crash the notebook
            result.problems.append(f"nll_loss(flow, x) raised {type(err).__name__}: {err}")
            return result
        if not isinstance(got, torch.Tensor):
            result.problems.append(
                f"nll_loss should return a torch.Tensor the optimizer can backpropagate "
                f"through, got {type(got).__name__} (did you call .item()?)"
            )
            return result
        value, problems = _as_scalar(got, "nll_loss(flow, x)")
        if problems:
            result.problems += problems
            return result
        if not _close(value.item(), expected.item()):
            result.problems.append(
                f"on {n} two-moons points: got {value.item():.6f}, expected "
                f"{expected.item():.6f}; {_nll_diagnosis(value.item(), flow, x)}"
            )
            return result
        if not got.requires_grad:
            result.problems.append(
                "the value is right but carries no gradient: do not wrap it in torch.no_grad() "
                "or rebuild it from numbers; the optimizer needs the graph back to the weights"
            )
            return result
    return result


# ----------------------------------------------------------------------------------
# Exercise 2: the KL gap
# ----------------------------------------------------------------------------------


def check_kl_gap(kl_gap) -> CheckResult:
    r"""Check ``kl_gap(flow, x, noise) -> float``: :math:`\frac1N\sum_i \log p(x_i) - \log q(x_i)`.

    ``x`` holds samples of the true two moons (noise ``noise``), ``p`` is the exact
    density (:func:`flowkit.data.two_moons_log_prob`), ``q`` the flow's.
    """
    result = CheckResult("kl_gap: KL(data || model) estimated on samples of the data")
    flow = perturbed_flow(seed=7)
    for n, noise, seed in ((400, 0.1, 11), (250, 0.15, 12)):
        x = data.two_moons(n, noise=noise, seed=seed)
        with torch.no_grad():
            log_p = data.two_moons_log_prob(x.double(), noise=noise)
            log_q = flow.log_prob(x).double()
        expected = (log_p - log_q).mean().item()
        try:
            got = kl_gap(flow, x, noise)
        except NotImplementedError:
            result.problems.append("kl_gap is not written yet (it raises NotImplementedError)")
            return result
        except Exception as err:
            result.problems.append(f"kl_gap(flow, x, noise={noise}) raised {type(err).__name__}: {err}")
            return result
        value, problems = _as_scalar(got, "kl_gap(flow, x, noise)")
        if problems:
            result.problems += problems
            return result
        v = value.item()
        if _close(v, expected, 1e-3):
            continue
        if _close(v, -expected, 1e-3):
            hint = ("the sign is flipped: KL(p || q) = E_p[log p(x) - log q(x)] is never negative "
                    "(you computed log q - log p)")
        elif _close(v, -log_q.mean().item(), 1e-3):
            hint = ("that is the model's NLL on the data; subtract the entropy "
                    "H = -E_p[log p(x)] to get the gap")
        elif _close(v, -log_p.mean().item(), 1e-3):
            hint = "that is the entropy of the data alone; the model's log q(x) is missing"
        elif _close(v, expected * n, 1e-3):
            hint = "you summed over the samples; take the mean"
        elif noise != 0.1 and abs(v - expected) > 1e-3:
            hint = ("did you pass noise to fk.data.two_moons_log_prob? this call used "
                    f"noise={noise}")
        else:
            hint = "expected mean(two_moons_log_prob(x, noise) - flow.log_prob(x))"
        result.problems.append(
            f"on {n} points with noise={noise}: got {v:.5f}, expected {expected:.5f}; {hint}"
        )
        return result
    return result


# ----------------------------------------------------------------------------------
# Exercise 3: a RealNVP from parts
# ----------------------------------------------------------------------------------


def _first_linear(module: nn.Module) -> nn.Linear | None:
    return next((m for m in module.modules() if isinstance(m, nn.Linear)), None)


def check_make_realnvp(make_realnvp) -> CheckResult:
    """Check ``make_realnvp(num_couplings, hidden) -> fk.Flow`` built from AffineCouplings.

    Expected: ``num_couplings`` :class:`~flowkit.AffineCoupling` layers on 2-D vectors with
    alternating masks, conditioners with ``hidden`` units, a standard normal base, and a
    flow that starts as the identity.
    """
    result = CheckResult("make_realnvp: a RealNVP built from AffineCoupling layers")
    problems = result.problems
    for num_couplings, hidden in ((4, 32), (3, 16)):
        call = f"make_realnvp({num_couplings}, {hidden})"
        try:
            with torch.random.fork_rng():  # leave the learner's random state alone
                torch.manual_seed(0)
                flow = make_realnvp(num_couplings, hidden)
        except NotImplementedError:
            problems.append("make_realnvp is not written yet (it raises NotImplementedError)")
            return result
        except Exception as err:
            problems.append(f"{call} raised {type(err).__name__}: {err}")
            return result
        if not isinstance(flow, Flow):
            problems.append(f"{call} should return an fk.Flow, got {type(flow).__name__}; "
                            "wrap the layers: fk.Flow(layers, fk.StandardNormal(2))")
            return result
        layers = list(flow.transforms)
        if len(layers) != num_couplings:
            problems.append(f"{call} has {len(layers)} transforms, expected {num_couplings} couplings")
            return result
        for i, layer in enumerate(layers):
            if not isinstance(layer, AffineCoupling):
                problems.append(f"{call}: transform {i} is a {type(layer).__name__}, expected fk.AffineCoupling")
                return result
            if tuple(layer.mask.shape) != (2,) or layer.mask.sum().item() != 1:
                problems.append(
                    f"{call}: coupling {i} has mask {layer.mask.tolist()}; for 2-D data each mask "
                    "keeps exactly one coordinate, e.g. fk.alternating_mask(2, i % 2)"
                )
                return result
        for i in range(num_couplings - 1):
            if torch.equal(layers[i].mask, layers[i + 1].mask):
                problems.append(
                    f"{call}: couplings {i} and {i + 1} both have mask {layers[i].mask.tolist()}; "
                    "alternate the masks (fk.alternating_mask(2, i % 2)) or one coordinate is "
                    "never transformed twice in a row"
                )
                return result
        if not isinstance(flow.base, StandardNormal) or tuple(flow.base.event_shape) != (2,):
            problems.append(f"{call}: the base should be fk.StandardNormal(2), got {flow.base!r}")
            return result
        first = _first_linear(layers[0].conditioner)
        if first is None or first.out_features != hidden:
            width = None if first is None else first.out_features
            problems.append(f"{call}: the conditioner's first layer has {width} units, expected "
                            f"hidden={hidden} (fk.MLP(2, 4, hidden))")
            return result
        x = data.two_moons(50, seed=3)
        with torch.no_grad():
            start = flow.log_prob(x)
            gaussian = -0.5 * (x ** 2).sum(dim=1) - _LOG_2PI
        if not torch.allclose(start, gaussian, atol=1e-5):
            problems.append(
                f"{call}: a new flow should be the identity (its density the standard normal), "
                "but it is not; fk.MLP starts its last layer at zero, which makes each coupling "
                "start as the identity"
            )
            return result
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
            problems.append(f"{call}: after training-like weight changes, coordinate(s) "
                            f"{(~changed).nonzero().flatten().tolist()} never change; alternate the masks")
            return result
        problems += compare(f"{call}: inverse(forward(x))", back, x, atol=1e-4, rtol=1e-4)
        problems += compare(f"{call}: log_prob", moved.log_prob(x).detach(), expected_log_prob,
                            atol=1e-4, rtol=1e-4)
        if problems:
            return result
    return result

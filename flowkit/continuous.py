r"""Continuous flows: an ODE in place of a stack of layers, trained by flow matching.

A velocity field :math:`v(x, t)` moves points along :math:`dx/dt = v(x, t)` for
:math:`t \in [0, 1]`. At :math:`t = 0` the points are Gaussian noise, at :math:`t = 1` they
are data. The log-density follows the instantaneous change of variables,

.. math:: \frac{d}{dt} \log p_t(x_t) = -\operatorname{div} v(x_t, t),
   \qquad \log p_1(x) = \log p_0(z) - \int_0^1 \operatorname{div} v(x_t, t)\, dt,

where :math:`z = x_0` is found by integrating from the data point at :math:`t = 1` back to
:math:`t = 0`. That backward run is :meth:`ContinuousFlow.forward` (data -> latent, the
normalizing direction, as for every flowkit transform), and its log-det is
:math:`\log|\det dz/dx| = -\int_0^1 \operatorname{div} v\, dt`.

The ODE is solved with a fixed number of Euler, midpoint or RK4 steps. The divergence is
exact (one batched backward pass over ``D`` copies of the batch) or Hutchinson's
estimate :math:`\epsilon^\top (\partial v/\partial x)\, \epsilon` with one Rademacher
vector :math:`\epsilon` per sample, held fixed along the path.

:func:`fit_flow_matching` trains the field by conditional flow matching with the linear
(rectified) path :math:`x_t = (1 - t) z + t x`, whose velocity is :math:`x - z`.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
from torch import Tensor, nn

from ._checks import as_event_shape, check_count, check_positive, check_tensor
from .flow import Flow, StandardNormal
from .ode import (DIVERGENCES, SOLVERS, _check_field_output, _check_solver, _check_steps,
                  _time_column, exact_divergence, hutchinson_divergence, odeint)
from .train import History, _batches, _optimize, _resolve_device

__all__ = ["ContinuousFlow", "VelocityMLP", "fit_flow_matching", "odeint", "SOLVERS",
           "DIVERGENCES", "exact_divergence", "hutchinson_divergence"]


# ----------------------------------------------------------------------------------
# A velocity network
# ----------------------------------------------------------------------------------


class VelocityMLP(nn.Module):
    """``v(x, t)``: an MLP on the flattened sample and a few features of time.

    Time enters as ``t`` and ``sin/cos(2 pi k t)`` for ``k = 1..time_frequencies``, so the
    field can change quickly along the path. Output has the shape of ``x``.
    """

    def __init__(self, event_shape: int | Sequence[int], hidden: int = 128, num_layers: int = 3,
                 time_frequencies: int = 3, activation: type[nn.Module] = nn.SiLU):
        super().__init__()
        self.event_shape = as_event_shape(event_shape)
        hidden, num_layers = check_count(hidden, "hidden"), check_count(num_layers, "num_layers")
        if hidden < 1 or num_layers < 1:
            raise ValueError("VelocityMLP needs hidden >= 1 and num_layers >= 1")
        self.time_frequencies = check_count(time_frequencies, "time_frequencies")
        dims = math.prod(self.event_shape)
        sizes = [dims + 1 + 2 * self.time_frequencies] + [hidden] * num_layers
        layers: list[nn.Module] = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(a, b), activation()]
        layers.append(nn.Linear(hidden, dims))
        self.net = nn.Sequential(*layers)

    def time_features(self, t: Tensor) -> Tensor:
        k = torch.arange(1, self.time_frequencies + 1, dtype=t.dtype, device=t.device)
        angle = 2 * math.pi * t * k
        return torch.cat([t, torch.sin(angle), torch.cos(angle)], dim=1)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        flat = x.reshape(x.shape[0], -1)
        out = self.net(torch.cat([flat, self.time_features(t)], dim=1))
        return out.reshape(x.shape)


# ----------------------------------------------------------------------------------
# The flow
# ----------------------------------------------------------------------------------


class ContinuousFlow(Flow):
    r"""A flow defined by an ODE :math:`dx/dt = v(x, t)`: noise at ``t = 0``, data at ``t = 1``.

    Arguments:
        field: ``field(x, t) -> dx/dt`` with ``x`` of shape ``(batch, *event_shape)`` and
            ``t`` of shape ``(batch, 1)``; an ``nn.Module`` (its parameters are trained) or
            any function.
        event_shape: the shape of one sample.
        steps: solver steps from ``t = 0`` to ``t = 1`` (each a "layer").
        solver: ``"euler"``, ``"midpoint"`` or ``"rk4"`` (fixed steps).
        divergence: ``"exact"`` or ``"hutchinson"`` (for the log-det).
        loc, scale: optional standardisation: the ODE runs on ``(x - loc) / scale``, with
            its log-det, so a field can work in unit-scale coordinates.

    ``forward(x)`` integrates from ``t = 1`` back to ``t = 0`` and returns
    ``(z, log|det dz/dx|)``; ``inverse(z)`` runs forward in time. ``log_prob``,
    ``forward`` and ``sample`` accept ``steps=``, ``solver=`` (and ``divergence=``)
    to override the defaults for one call.
    """

    def __init__(self, field: Callable, event_shape: int | Sequence[int], steps: int = 100,
                 solver: str = "rk4", divergence: str = "exact",
                 loc: Tensor | float | None = None, scale: Tensor | float | None = None):
        if not callable(field):
            raise TypeError(f"field must be a function or module field(x, t) -> dx/dt, got "
                            f"{type(field).__name__}")
        event_shape = as_event_shape(event_shape)
        super().__init__([], StandardNormal(event_shape))
        self.field = field  # an nn.Module is registered, so its parameters train and move
        self.steps = _check_steps(steps)
        self.solver = _check_solver(solver)
        self.divergence = self._check_divergence(divergence)
        self.register_buffer("loc", self._as_event_tensor(0.0 if loc is None else loc, "loc"))
        self.register_buffer("scale", self._as_event_tensor(1.0 if scale is None else scale, "scale"))
        if not (self.scale > 0).all():
            raise ValueError("scale must be positive everywhere")

    def _as_event_tensor(self, value, name: str) -> Tensor:
        value = torch.as_tensor(value, dtype=torch.float32).detach().clone()
        try:
            value = value.expand(self.event_shape).clone()
        except RuntimeError:
            raise ValueError(f"{name} must broadcast to the event shape {self.event_shape}, "
                             f"got shape {tuple(value.shape)}") from None
        if not torch.isfinite(value).all():
            raise ValueError(f"{name} contains NaN or infinite values")
        return value

    @staticmethod
    def _check_divergence(divergence) -> str:
        if divergence not in DIVERGENCES:
            raise ValueError(f"divergence must be 'exact' or 'hutchinson', got {divergence!r}")
        return divergence

    def _velocity(self, x: Tensor, t: float) -> Tensor:
        return _check_field_output(self.field(x, _time_column(t, x)), x)

    def _log_scale(self) -> Tensor:
        return self.scale.log().sum()

    def _integrate(self, y: Tensor, t0: float, t1: float, steps, solver, divergence,
                   with_logdet: bool = True) -> tuple[Tensor, Tensor]:
        """Run the ODE from ``t0`` to ``t1``; return the end state and ``int div v dt``."""
        steps = self.steps if steps is None else _check_steps(steps)
        solver = self.solver if solver is None else _check_solver(solver)
        divergence = self.divergence if divergence is None else self._check_divergence(divergence)
        if not with_logdet:
            end = odeint(lambda t, x: self._velocity(x, t), y, t0, t1, steps, solver)
            return end, y.new_zeros(y.shape[0])
        create_graph = torch.is_grad_enabled()
        noise = None
        if divergence == "hutchinson":  # one Rademacher vector per sample for the whole path
            noise = torch.randint(0, 2, y.shape, device=y.device).to(y.dtype) * 2 - 1

        def dynamics(t, state):
            x = state[0]
            time = _time_column(t, x)
            if noise is None:
                v, div = exact_divergence(self.field, x, time, create_graph)
            else:
                v, div = hutchinson_divergence(self.field, x, time, noise, create_graph)
            _check_field_output(v, x)
            if not create_graph:
                v, div = v.detach(), div.detach()
            return v, div

        end, integral = odeint(dynamics, (y, y.new_zeros(y.shape[0])), t0, t1, steps, solver)
        return end, integral

    def forward(self, x: Tensor, context=None, steps: int | None = None, solver: str | None = None,
                divergence: str | None = None):
        """Data -> latent: integrate from ``t = 1`` back to ``t = 0``; ``(z, log|det dz/dx|)``."""
        y = (x - self.loc) / self.scale
        z, integral = self._integrate(y, 1.0, 0.0, steps, solver, divergence)
        # integral runs from t=1 to t=0, so it already equals -int_0^1 div v dt
        return z, integral - self._log_scale()

    def inverse(self, z: Tensor, context=None, steps: int | None = None, solver: str | None = None,
                divergence: str | None = None):
        """Latent -> data: integrate from ``t = 0`` to ``t = 1``; ``(x, log|det dx/dz|)``."""
        y, integral = self._integrate(z, 0.0, 1.0, steps, solver, divergence)
        return y * self.scale + self.loc, integral + self._log_scale()

    def log_prob(self, x: Tensor, context=None, steps: int | None = None, solver: str | None = None,
                 divergence: str | None = None) -> Tensor:
        r""":math:`\log p(x) = \log \mathcal N(z) - \int_0^1 \operatorname{div} v\,dt - \sum\log \text{scale}`."""
        z, log_abs_det = self.forward(x, context=context, steps=steps, solver=solver,
                                      divergence=divergence)
        return self.base.log_prob(z) + log_abs_det

    def sample(self, n: int, context=None, temperature: float = 1.0,
               generator: torch.Generator | None = None, steps: int | None = None,
               solver: str | None = None) -> Tensor:
        """``n`` samples: Gaussian noise carried from ``t = 0`` to ``t = 1`` (no divergence needed)."""
        if context is not None:
            raise TypeError("this ContinuousFlow is not conditional: its field takes (x, t) only, "
                            "so it takes no context")
        z = self.base.sample(n, temperature=temperature, generator=generator)
        if z.shape[0] == 0:
            return z
        y, _ = self._integrate(z, 0.0, 1.0, steps, solver, None, with_logdet=False)
        return y * self.scale + self.loc

    def trajectory(self, z: Tensor, steps: int | None = None, solver: str | None = None) -> Tensor:
        """Latents carried from ``t = 0`` to ``t = 1``: shape ``(steps + 1, batch, *event_shape)``."""
        check_tensor(z, "z", self.event_shape)
        steps = self.steps if steps is None else _check_steps(steps)
        solver = self.solver if solver is None else _check_solver(solver)
        with torch.no_grad():
            path = odeint(lambda t, x: self._velocity(x, t), z, 0.0, 1.0, steps, solver,
                          return_path=True)
        return torch.stack(path) * self.scale + self.loc

    def forward_stages(self, x: Tensor) -> list[Tensor]:
        """``[x, y, ..., z]``: the data, its standardised form ``y`` (the ODE's state at
        ``t = 1``), then the state after each solver step back to ``t = 0``."""
        check_tensor(x, "x", self.event_shape)
        with torch.no_grad():
            y = (x - self.loc) / self.scale
            path = odeint(lambda t, v: self._velocity(v, t), y, 1.0, 0.0, self.steps,
                          self.solver, return_path=True)
        return [x] + path

    def inverse_stages(self, z: Tensor) -> list[Tensor]:
        """``[z, ..., y, x]``: a latent after each solver step from ``t = 0`` to ``t = 1``,
        then in data units."""
        check_tensor(z, "z", self.event_shape)
        with torch.no_grad():
            path = odeint(lambda t, v: self._velocity(v, t), z, 0.0, 1.0, self.steps,
                          self.solver, return_path=True)
        return path + [path[-1] * self.scale + self.loc]

    def __len__(self) -> int:
        return self.steps

    def extra_repr(self) -> str:
        return f"event_shape={self.event_shape}, steps={self.steps}, solver={self.solver!r}, " \
               f"divergence={self.divergence!r}"


# ----------------------------------------------------------------------------------
# Flow matching
# ----------------------------------------------------------------------------------


def flow_matching_loss(flow: ContinuousFlow, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    r"""Conditional flow matching with the linear path, on one batch of data ``x``.

    Draw :math:`z \sim \mathcal N(0, I)` and :math:`t \sim U[0, 1]`, set
    :math:`x_t = (1 - t) z + t x` (in the flow's standardised coordinates), and regress
    the field on the path's velocity :math:`x - z`: the mean of
    :math:`\lVert v(x_t, t) - (x - z)\rVert^2 / D`.
    """
    y = (x - flow.loc) / flow.scale
    z = torch.randn(y.shape, generator=generator, dtype=y.dtype).to(y.device)
    t = torch.rand((y.shape[0], 1), generator=generator, dtype=y.dtype).to(y.device)
    t_b = t.reshape(-1, *([1] * (y.dim() - 1)))
    x_t = (1 - t_b) * z + t_b * y
    v = _check_field_output(flow.field(x_t, t), x_t)
    return ((v - (y - z)) ** 2).mean()


def fit_flow_matching(
    flow: ContinuousFlow,
    data: Tensor | Callable[[int, torch.Generator], Tensor],
    steps: int,
    batch_size: int = 256,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    clip_grad: float | None = 10.0,
    seed: int = 0,
    progress: bool = True,
    preprocess: Callable[[Tensor], Tensor] | None = None,
    cosine_schedule: bool = False,
    ema: float | None = None,
    device: str | torch.device = "cpu",
) -> History:
    r"""Train ``flow.field`` by flow matching with Adam; returns a :class:`~flowkit.History`.

    Each step regresses :math:`v(x_t, t)` on :math:`x - z` along the straight path
    :math:`x_t = (1 - t) z + t x` (see :func:`flow_matching_loss`): a plain least-squares
    loss, with no ODE solved and no divergence computed. ``history.loss`` holds that loss.
    ``data`` is a tensor of samples (shuffled each epoch) or ``data(batch_size, generator)``;
    ``preprocess`` is applied to each batch (e.g. :func:`flowkit.data.dequantize`). Seeded:
    the same arguments give the same model. The flow is left in eval mode.

    ``ema`` (e.g. 0.999) keeps an exponential moving average of the weights and leaves the
    flow with it at the end: the regression targets are noisy, and averaging the last few
    thousand steps' weights gives a smoother field than the last step's.
    """
    if not isinstance(flow, ContinuousFlow):
        raise TypeError(f"fit_flow_matching expects a flowkit ContinuousFlow, got {type(flow).__name__}")
    params = [p for p in flow.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the flow's field has no trainable parameters: pass an nn.Module "
                         "such as fk.VelocityMLP(event_shape) as the field")
    steps = check_count(steps, "steps")
    batch_size = check_count(batch_size, "batch_size")
    if batch_size == 0:
        raise ValueError("batch_size must be at least 1")
    lr = check_positive(lr, "lr")
    if ema is not None and not (isinstance(ema, (int, float)) and 0 < ema < 1):
        raise ValueError(f"ema must be a decay rate strictly between 0 and 1 (e.g. 0.999), or None; got {ema!r}")
    device = _resolve_device(device)

    generator = torch.Generator().manual_seed(int(seed))
    torch.manual_seed(int(seed))
    next_batch = _batches(flow, data, None, batch_size, preprocess, generator)

    def step_loss(step: int) -> Tensor:
        batch, _ = next_batch()
        if preprocess is not None:
            batch = preprocess(batch)
        loss = flow_matching_loss(flow, batch.to(device), generator)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"the flow-matching loss became {loss.item()} at step "
                                     f"{step}; lower lr (now {lr:g}) or tighten clip_grad")
        return loss

    # Unlike fit's ema, the average starts from the initial weights and replaces them at the end.
    flow.to(device)  # so the average lives beside the weights
    averaged = [p.detach().clone() for p in params] if ema is not None else None

    def update_average() -> None:
        with torch.no_grad():
            torch._foreach_lerp_(averaged, [p.detach() for p in params], 1 - ema)

    def use_average() -> None:
        with torch.no_grad():
            for p, avg in zip(params, averaged):
                p.copy_(avg)

    return _optimize(flow, step_loss, steps, lr, device=device, progress=progress,
                     desc="flow matching", postfix="loss", params=params,
                     weight_decay=weight_decay, clip_grad=clip_grad,
                     cosine_schedule=cosine_schedule,
                     after_update=update_average if averaged is not None else None,
                     on_exit=use_average if averaged is not None else None)

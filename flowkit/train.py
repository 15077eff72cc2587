"""Maximum-likelihood training."""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator

import torch
from torch import Tensor

from ._checks import check_count, check_positive, check_tensor
from .errors import NonFiniteError
from .flow import Flow

__all__ = ["fit", "History", "mean_nll", "minibatches", "warmup_cosine"]


@dataclass
class History:
    """What :func:`fit` recorded.

    ``loss[i]`` is the mean negative log-likelihood (nats per sample) of the batch at
    step ``i + 1``. ``snapshots`` holds ``(step, state_dict)`` pairs, starting with step 0,
    when ``snapshot_every`` was given; ``val_loss`` holds ``(step, nll)`` pairs when
    ``val_data`` was given; ``averaged`` is the flow with exponentially averaged weights
    when ``ema`` was given.
    """

    loss: list[float] = field(default_factory=list)
    snapshots: list[tuple[int, dict]] = field(default_factory=list)
    val_loss: list[tuple[int, float]] = field(default_factory=list)
    seconds: float = 0.0
    averaged: Flow | None = None

    @property
    def steps(self) -> int:
        return len(self.loss)

    def restore(self, flow: Flow, index: int = -1) -> int:
        """Load snapshot ``index`` into ``flow``; returns the step it was taken at."""
        if not self.snapshots:
            raise ValueError("no snapshots were recorded: call fit(..., snapshot_every=k)")
        step, state = self.snapshots[index]
        flow.load_state_dict(state)
        return step


def _state_copy(flow: Flow) -> dict:
    return {k: v.detach().to("cpu", copy=True) for k, v in flow.state_dict().items()}


def minibatches(*tensors: Tensor, batch_size: int,
                generator: torch.Generator | None = None) -> Iterator[tuple[Tensor, ...]]:
    """Endless shuffled minibatches drawing the same rows from every tensor.

    Each epoch is a fresh permutation from ``generator``; a batch never straddles two
    epochs (the few rows left at an epoch's end are skipped that epoch). A data set
    smaller than ``batch_size`` gives the whole (shuffled) set each time.

    Example:
        >>> import torch, flowkit as fk
        >>> x, labels = torch.arange(10.0), torch.arange(10)
        >>> batches = fk.minibatches(x, labels, batch_size=4, generator=torch.Generator().manual_seed(0))
        >>> bx, bl = next(batches)
        >>> bool((bx == bl.float()).all()), bx.shape
        (True, torch.Size([4]))
    """
    if not tensors:
        raise ValueError("minibatches needs at least one tensor")
    n = tensors[0].shape[0]
    if any(t.shape[0] != n for t in tensors):
        raise ValueError(f"minibatches needs tensors with the same first dimension, got "
                         f"{[t.shape[0] for t in tensors]}")
    batch_size = check_count(batch_size, "batch_size")
    if batch_size == 0 or n == 0:
        raise ValueError("minibatches needs batch_size >= 1 and a non-empty data set")
    order, cursor = torch.randperm(n, generator=generator), 0
    while True:
        if cursor + batch_size > n:
            order, cursor = torch.randperm(n, generator=generator), 0
        idx = order[cursor:cursor + min(batch_size, n)]
        cursor += batch_size
        yield tuple(t[idx] for t in tensors)


def warmup_cosine(steps: int, warmup: int = 0) -> Callable[[int], float]:
    """A learning-rate factor for :func:`fit`'s ``lr_schedule``: linear warm-up, then cosine to zero.

    Step ``s`` (counted from 0) gets ``(s + 1) / warmup`` during the warm-up, then
    ``(1 + cos(pi (s - warmup) / (steps - warmup))) / 2``.

    Example:
        >>> from flowkit.train import warmup_cosine
        >>> f = warmup_cosine(10, warmup=2)
        >>> [round(f(s), 3) for s in (0, 1, 2, 6)]
        [0.5, 1.0, 1.0, 0.5]
    """
    steps, warmup = check_count(steps, "steps"), check_count(warmup, "warmup")

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))

    return factor


def mean_nll(flow: Flow, data: Tensor, batch_size: int = 4096,
             preprocess: Callable[[Tensor], Tensor] | None = None,
             context: Tensor | None = None) -> float:
    """Mean negative log-likelihood of ``data`` (given ``context``) under ``flow`` in nats, without gradients."""
    total, count = 0.0, 0
    device = next((p.device for p in flow.parameters()), torch.device("cpu"))
    if context is not None:
        context = flow._context(context, data.shape[0])
    contexts = context.split(batch_size) if context is not None else [None] * len(data.split(batch_size))
    with torch.no_grad():
        for batch, c in zip(data.split(batch_size), contexts):
            if preprocess is not None:
                batch = preprocess(batch)
            c = None if c is None else c.to(device)
            total += -flow.log_prob(batch.to(device), c).sum().item()
            count += batch.shape[0]
    return total / max(count, 1)


def _resolve_device(device) -> torch.device:
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' was requested but no CUDA GPU is available; use device='cpu'")
    return device


def _batches(flow: Flow, data, context, batch_size: int, preprocess, generator) -> Callable:
    """A function returning the next ``(batch, context_batch or None)``."""
    if isinstance(data, Tensor):
        if preprocess is None:
            check_tensor(data, "data", flow.event_shape)
        elif data.dim() < 1 or tuple(data.shape[1:]) != tuple(flow.event_shape):
            raise ValueError(
                f"data has shape {tuple(data.shape)}, expected (N, {', '.join(map(str, flow.event_shape))})"
            )
        if data.shape[0] == 0:
            raise ValueError("data is empty")
        context = flow._context(context, data.shape[0])
        stream = minibatches(data, *([] if context is None else [context]),
                             batch_size=batch_size, generator=generator)
        return lambda: (lambda b: (b[0], b[1] if len(b) > 1 else None))(next(stream))
    if callable(data):
        if context is not None:
            raise TypeError("with a sampler as data, return (batch, context) from it instead of passing context=")
        if flow.conditional:
            def draw():
                out = data(batch_size, generator)
                if not (isinstance(out, tuple) and len(out) == 2):
                    raise TypeError("for a conditional flow the sampler must return (batch, context)")
                return out
            return draw
        return lambda: (data(batch_size, generator), None)
    raise TypeError("data must be a tensor of samples or a function (batch_size, generator) -> batch")


def fit(
    flow: Flow,
    data: Tensor | Callable[[int, torch.Generator], Tensor],
    steps: int,
    batch_size: int = 256,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    clip_grad: float | None = 10.0,
    seed: int = 0,
    progress: bool = True,
    snapshot_every: int | None = None,
    preprocess: Callable[[Tensor], Tensor] | None = None,
    val_data: Tensor | None = None,
    val_every: int = 100,
    cosine_schedule: bool = False,
    device: str | torch.device = "cpu",
    context: Tensor | None = None,
    val_context: Tensor | None = None,
    lr_schedule: Callable[[int], float] | None = None,
    ema: float | None = None,
    callback: Callable[[int, Flow, "History", float], bool | None] | None = None,
) -> History:
    r"""Train ``flow`` by maximum likelihood with Adam; returns a :class:`History`.

    Each step draws a batch, computes :math:`-\frac1B\sum_i \log p(x_i \mid c_i)`,
    backpropagates, clips the gradient norm to ``clip_grad`` and takes an Adam step.

    Arguments:
        flow: the :class:`~flowkit.Flow` to train (left in eval mode).
        data: samples ``(N, *event_shape)`` (shuffled each epoch, see :func:`minibatches`)
            or a sampler ``data(batch_size, generator)`` returning a fresh batch (for a
            conditional flow, a pair ``(batch, context)``).
        steps: the number of optimisation steps.
        context: for a conditional flow, the contexts ``(N, *context_shape)`` of ``data``
            (integer labels ``(N,)``); each batch draws the same rows from both.
        preprocess: applied to each batch before the model sees it (for example
            :func:`flowkit.data.dequantize`).
        val_data, val_context, val_every: held-out data scored every ``val_every`` steps.
        cosine_schedule: decay the learning rate to zero along a cosine.
        lr_schedule: instead, a function ``step -> factor`` (step from 0) multiplying
            ``lr``, e.g. :func:`warmup_cosine`.
        ema: keep an exponential moving average of the weights with this decay (e.g.
            0.998) in ``history.averaged``; it starts from the weights after step 1.
        callback: ``callback(step, flow, history, loss)`` after each step; returning
            True stops training.
        seed: the run is seeded: the same arguments give the same model.
        device: ``"cpu"`` unless you ask for ``"cuda"`` and have one.

    Raises :class:`~flowkit.NonFiniteError` when the loss diverges.

    Example:
        >>> import torch, flowkit as fk
        >>> flow = fk.Flow([fk.Affine(1.0, 0.0, learnable=True)], fk.StandardNormal(1))
        >>> data = 3.0 + 2.0 * torch.randn(2000, 1, generator=torch.Generator().manual_seed(0))
        >>> history = fk.fit(flow, data, steps=300, lr=0.05, progress=False)
        >>> abs(1 / flow.transforms[0].scale.item() - 2.0) < 0.2  # the data's standard deviation
        True
    """
    if not isinstance(flow, Flow):
        raise TypeError(f"fit expects a flowkit Flow, got {type(flow).__name__}")
    steps = check_count(steps, "steps")
    batch_size = check_count(batch_size, "batch_size")
    if batch_size == 0:
        raise ValueError("batch_size must be at least 1")
    lr = check_positive(lr, "lr")
    if snapshot_every is not None:
        snapshot_every = check_count(snapshot_every, "snapshot_every")
        if snapshot_every == 0:
            raise ValueError("snapshot_every must be a positive number of steps (or None)")
    if cosine_schedule and lr_schedule is not None:
        raise ValueError("give cosine_schedule=True or lr_schedule=, not both")
    if ema is not None and not 0.0 < float(ema) < 1.0:
        raise ValueError(f"ema must be a decay strictly between 0 and 1 (e.g. 0.998), got {ema}")
    device = _resolve_device(device)

    generator = torch.Generator().manual_seed(int(seed))
    torch.manual_seed(int(seed))
    next_batch = _batches(flow, data, context, batch_size, preprocess, generator)

    def step_loss(step: int) -> Tensor:
        batch, batch_context = next_batch()
        if preprocess is not None:
            batch = preprocess(batch)
        batch = batch.to(device)
        if batch_context is not None:
            batch_context = batch_context.to(device)
        loss = -flow.log_prob(batch, batch_context).mean()
        if not torch.isfinite(loss):
            raise NonFiniteError(
                f"the loss became {loss.item()} at step {step}; lower lr (now {lr:g}) "
                "or tighten clip_grad"
            )
        return loss

    def after_step(step: int, history: History) -> bool | None:
        if val_data is not None and (step % val_every == 0 or step == steps):
            flow.eval()
            history.val_loss.append((step, mean_nll(flow, val_data, preprocess=preprocess,
                                                    context=val_context)))
            flow.train()
        return callback is not None and callback(step, flow, history, history.loss[-1])

    return _optimize(flow, step_loss, steps, lr, device=device, progress=progress,
                     desc="training", postfix="nll", weight_decay=weight_decay,
                     clip_grad=clip_grad, cosine_schedule=cosine_schedule, lr_schedule=lr_schedule,
                     ema=ema, snapshot_every=snapshot_every, after_step=after_step)


def _optimize(flow: Flow, step_loss: Callable[[int], Tensor], steps: int, lr: float, *,
              device: torch.device, progress: bool, desc: str, postfix: str,
              params: list | None = None,
              weight_decay: float = 0.0, clip_grad: float | None = None,
              cosine_schedule: bool = False, lr_schedule: Callable[[int], float] | None = None,
              ema: float | None = None, snapshot_every: int | None = None,
              after_update: Callable[[], None] | None = None,
              after_step: Callable[[int, History], bool | None] | None = None,
              on_exit: Callable[[], None] | None = None) -> History:
    """The Adam loop shared by :func:`fit`, :func:`~flowkit.fit_vi` and
    :func:`~flowkit.fit_flow_matching`; returns the :class:`History`.

    ``step_loss(step)`` (step from 1) returns the batch's scalar loss and raises its own
    error when that loss is not finite. Each step then backpropagates, clips the gradient
    norm of ``params`` (all the flow's parameters by default) to ``clip_grad``, steps Adam
    and the schedule, and calls ``after_update()``. ``ema`` keeps ``history.averaged``
    (from the weights after step 1). ``after_step(step, history)`` runs after the loss and
    any snapshot are recorded; returning True stops. ``on_exit()`` runs however the loop
    ends, before the flow is put in eval mode. The bar shows ``desc`` and the mean of the
    last 25 losses as ``postfix`` when ``progress``.
    """
    flow.to(device)
    flow.train()
    params = list(flow.parameters()) if params is None else params
    optimizer = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if cosine_schedule:
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(steps, 1))
    elif lr_schedule is not None:
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_schedule)
    else:
        scheduler = None
    history = History()
    if ema is not None:
        history.averaged = copy.deepcopy(flow)
    if snapshot_every:
        history.snapshots.append((0, _state_copy(flow)))

    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=steps, desc=desc, leave=True)
    start = time.perf_counter()
    try:
        for step in range(1, steps + 1):
            loss = step_loss(step)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if clip_grad is not None:
                torch.nn.utils.clip_grad_norm_(params, clip_grad)
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            if history.averaged is not None:
                _update_average(history.averaged, flow, float(ema), first=step == 1)
            if after_update is not None:
                after_update()
            history.loss.append(loss.item())
            if snapshot_every and (step % snapshot_every == 0 or step == steps):
                if history.snapshots[-1][0] != step:
                    history.snapshots.append((step, _state_copy(flow)))
            if bar is not None:
                bar.update(1)
                if step % 25 == 0 or step == steps:
                    window = history.loss[-25:]
                    bar.set_postfix(**{postfix: f"{sum(window) / len(window):.3f}"})
            if after_step is not None and after_step(step, history):
                break
    finally:
        if bar is not None:
            bar.close()
        if on_exit is not None:
            on_exit()
        flow.eval()
        if history.averaged is not None:
            history.averaged.eval()
        history.seconds = time.perf_counter() - start
    return history


@torch.no_grad()
def _update_average(averaged: Flow, flow: Flow, decay: float, first: bool) -> None:
    if first:  # data-dependent initialisations (ActNorm) ran on the first batch: start there
        averaged.load_state_dict(flow.state_dict())
    for avg, live in zip(averaged.parameters(), flow.parameters()):
        avg.lerp_(live, 1.0 - decay)

"""Maximum-likelihood training."""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import Tensor

from ._checks import check_count, check_positive, check_tensor
from .flow import Flow

__all__ = ["fit", "History", "mean_nll"]


@dataclass
class History:
    """What :func:`fit` recorded.

    ``loss[i]`` is the mean negative log-likelihood (nats per sample) of the batch at
    step ``i + 1``. ``snapshots`` holds ``(step, state_dict)`` pairs, starting with step 0,
    when ``snapshot_every`` was given; ``val_loss`` holds ``(step, nll)`` pairs when
    ``val_data`` was given.
    """

    loss: list[float] = field(default_factory=list)
    snapshots: list[tuple[int, dict]] = field(default_factory=list)
    val_loss: list[tuple[int, float]] = field(default_factory=list)
    seconds: float = 0.0

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


def mean_nll(flow: Flow, data: Tensor, batch_size: int = 4096,
             preprocess: Callable[[Tensor], Tensor] | None = None) -> float:
    """Mean negative log-likelihood of ``data`` under ``flow`` in nats, without gradients."""
    total, count = 0.0, 0
    device = next((p.device for p in flow.parameters()), torch.device("cpu"))
    with torch.no_grad():
        for batch in data.split(batch_size):
            if preprocess is not None:
                batch = preprocess(batch)
            total += -flow.log_prob(batch.to(device)).sum().item()
            count += batch.shape[0]
    return total / max(count, 1)


def _resolve_device(device) -> torch.device:
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' was requested but no CUDA GPU is available; use device='cpu'")
    return device


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
) -> History:
    r"""Train ``flow`` by maximum likelihood with Adam; returns a :class:`History`.

    Each step draws a batch, computes :math:`-\frac1B\sum_i \log p(x_i)`, backpropagates,
    clips the gradient norm to ``clip_grad`` and takes an Adam step.

    ``data`` is a tensor of samples (shuffled each epoch) or a function
    ``data(batch_size, generator)`` that returns a fresh batch. ``preprocess`` is applied to
    each batch before the model sees it (for example :func:`flowkit.data.dequantize`).
    The run is seeded: the same arguments give the same model. ``device`` is ``"cpu"``
    unless you ask for ``"cuda"`` and have one. The flow is left in eval mode.
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
    device = _resolve_device(device)

    generator = torch.Generator().manual_seed(int(seed))
    torch.manual_seed(int(seed))
    if isinstance(data, Tensor):
        if preprocess is None:
            check_tensor(data, "data", flow.event_shape)
        elif data.dim() < 1 or tuple(data.shape[1:]) != tuple(flow.event_shape):
            raise ValueError(
                f"data has shape {tuple(data.shape)}, expected (N, {', '.join(map(str, flow.event_shape))})"
            )
        if data.shape[0] == 0:
            raise ValueError("data is empty")
        n = data.shape[0]
        order, cursor = torch.randperm(n, generator=generator), 0

        def next_batch() -> Tensor:
            nonlocal order, cursor
            if cursor + batch_size > n:
                order, cursor = torch.randperm(n, generator=generator), 0
            idx = order[cursor:cursor + min(batch_size, n)]
            cursor += batch_size
            return data[idx]
    elif callable(data):
        def next_batch() -> Tensor:
            return data(batch_size, generator)
    else:
        raise TypeError("data must be a tensor of samples or a function (batch_size, generator) -> batch")

    flow.to(device)
    flow.train()
    optimizer = torch.optim.Adam(flow.parameters(), lr=lr, weight_decay=weight_decay)
    scheduler = (torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(steps, 1))
                 if cosine_schedule else None)
    history = History()
    if snapshot_every:
        history.snapshots.append((0, _state_copy(flow)))

    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=steps, desc="training", leave=True)
    start = time.perf_counter()
    try:
        for step in range(1, steps + 1):
            batch = next_batch()
            if preprocess is not None:
                batch = preprocess(batch)
            batch = batch.to(device)
            loss = -flow.log_prob(batch).mean()
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"the loss became {loss.item()} at step {step}; lower lr (now {lr:g}) "
                    "or tighten clip_grad"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if clip_grad is not None:
                torch.nn.utils.clip_grad_norm_(flow.parameters(), clip_grad)
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            history.loss.append(loss.item())
            if snapshot_every and (step % snapshot_every == 0 or step == steps):
                if history.snapshots[-1][0] != step:
                    history.snapshots.append((step, _state_copy(flow)))
            if val_data is not None and (step % val_every == 0 or step == steps):
                flow.eval()
                history.val_loss.append((step, mean_nll(flow, val_data, preprocess=preprocess)))
                flow.train()
            if bar is not None:
                bar.update(1)
                if step % 25 == 0 or step == steps:
                    window = history.loss[-25:]
                    bar.set_postfix(nll=f"{sum(window) / len(window):.3f}")
    finally:
        if bar is not None:
            bar.close()
        flow.eval()
        history.seconds = time.perf_counter() - start
    return history

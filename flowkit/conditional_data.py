"""Data for conditional flows: moons at many noise levels, synthetic tones, degraded digits.

Each data set comes with its context: the noise level of each moons point, the pitch
and brightness of each tone window, the visible part of each digit.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from ._checks import check_count, check_positive
from .data import two_moons, two_moons_log_prob

__all__ = [
    "moons_at_noise_levels",
    "moons_kl_gap",
    "TONE_RATE",
    "TONE_WINDOW",
    "PITCH_RANGE",
    "tone_windows",
    "tone_context",
    "overlap_add",
    "magnitude_spectrum",
    "DEGRADATIONS",
    "degrade",
    "visible_part",
    "bits_per_dim",
    "class_log_likelihoods",
    "confusion_matrix",
    "logistic_regression_accuracy",
]

# ----------------------------------------------------------------------------------
# Moons at several noise levels: the context is the noise level itself
# ----------------------------------------------------------------------------------


def _noise_levels(levels) -> list[float]:
    values = [float(v) for v in (levels if isinstance(levels, (list, tuple)) else [levels])]
    if not values or any(not math.isfinite(v) or v <= 0 for v in values):
        raise ValueError(f"noise levels must be finite positive numbers, got {levels!r}")
    return values


def moons_at_noise_levels(n: int, noise_levels: Sequence[float], seed: int = 0) -> tuple[Tensor, Tensor]:
    """``n`` two-moons points, each at a noise level drawn from ``noise_levels``.

    Returns ``(x, context)``: ``x`` of shape ``(n, 2)`` and the noise level of each point,
    ``context`` of shape ``(n, 1)``. Equal shares of the points (up to one) go to each level.
    """
    n = check_count(n, "n")
    levels = _noise_levels(list(noise_levels))
    xs, cs = [], []
    for i, level in enumerate(levels):
        m = n // len(levels) + (1 if i < n % len(levels) else 0)
        xs.append(two_moons(m, noise=level, seed=seed * 1009 + i))
        cs.append(torch.full((m, 1), level))
    x, c = torch.cat(xs), torch.cat(cs)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return x[order], c[order]


@torch.no_grad()
def moons_kl_gap(flow, noise: float, n: int = 4000, seed: int = 1) -> float:
    r"""Monte Carlo :math:`\mathrm{KL}(p_c \,\|\, q_c)` in nats at noise level ``noise``.

    Draws ``n`` fresh points from the exact two moons at that noise and averages
    :math:`\log p(x \mid c) - \log q(x \mid c)` with the exact density
    :func:`flowkit.data.two_moons_log_prob`. Zero only when the flow matches the truth.
    """
    noise = check_positive(noise, "noise")
    x = two_moons(check_count(n, "n"), noise=noise, seed=seed)
    log_p = two_moons_log_prob(x.double(), noise=noise)
    context = torch.full((1, 1), noise)
    was_training = flow.training
    flow.eval()
    log_q = flow.log_prob(x, context=context.expand(len(x), 1)).double()
    flow.train(was_training)
    return float((log_p - log_q).mean())


# ----------------------------------------------------------------------------------
# Tones: short windows of a periodic sound, conditioned on pitch and brightness
# ----------------------------------------------------------------------------------

TONE_RATE = 8000            # samples per second
TONE_WINDOW = 64            # samples per window: 8 ms
PITCH_RANGE = (250.0, 1000.0)  # Hz
_HARMONICS = 3
_TONE_NOISE = 0.02


def _harmonic_weights(brightness: Tensor) -> Tensor:
    # Brightness b weights harmonic k by b^(k-1): b = 0 is a pure sine, b = 1 three equal harmonics.
    k = torch.arange(_HARMONICS, dtype=torch.float64)
    weights = brightness.double()[:, None] ** k[None, :]
    return weights / weights.sum(dim=1, keepdim=True)


def tone_windows(n: int, pitch: float | Tensor | None = None, brightness: float | Tensor | None = None,
                 window: int = TONE_WINDOW, rate: int = TONE_RATE, seed: int = 0) -> tuple[Tensor, Tensor]:
    r"""``n`` windows of a synthetic tone and their contexts.

    Each window is :math:`a \sum_k w_k \sin(k(2\pi f t + \varphi)) + 0.02\,\varepsilon`
    with pitch :math:`f` (Hz), harmonic weights :math:`w_k \propto b^{k-1}` set by the
    brightness :math:`b \in [0, 1]`, a random phase :math:`\varphi` (the window starts
    anywhere in the tone), a random loudness :math:`a \sim U[0.5, 1]` and a little white
    noise. ``pitch`` and ``brightness`` default to uniform draws over
    :data:`PITCH_RANGE` and ``[0, 1]``. Returns ``(x, context)``: ``x`` of shape
    ``(n, window)`` and ``context`` of shape ``(n, 2)`` holding (pitch in Hz, brightness).
    """
    n, window, rate = check_count(n, "n"), check_count(window, "window"), check_count(rate, "rate")
    g = torch.Generator().manual_seed(int(seed))
    low, high = PITCH_RANGE
    f = (torch.rand(n, generator=g, dtype=torch.float64) * (high - low) + low) if pitch is None \
        else torch.as_tensor(pitch, dtype=torch.float64).expand(n).clone()
    b = torch.rand(n, generator=g, dtype=torch.float64) if brightness is None \
        else torch.as_tensor(brightness, dtype=torch.float64).expand(n).clone()
    if (f <= 0).any() or (f >= rate / (2 * _HARMONICS)).any():
        raise ValueError(f"pitch must lie in (0, {rate / (2 * _HARMONICS):g}) Hz so every harmonic is below "
                         f"half the sample rate")
    if (b < 0).any() or (b > 1).any():
        raise ValueError("brightness must lie in [0, 1]")
    phase = torch.rand(n, generator=g, dtype=torch.float64) * 2 * math.pi
    loudness = 0.5 + 0.5 * torch.rand(n, generator=g, dtype=torch.float64)
    t = torch.arange(window, dtype=torch.float64) / rate
    angle = 2 * math.pi * f[:, None] * t[None, :] + phase[:, None]            # (n, T)
    k = torch.arange(1, _HARMONICS + 1, dtype=torch.float64)
    waves = torch.sin(k[None, :, None] * angle[:, None, :])                    # (n, K, T)
    x = loudness[:, None] * (_harmonic_weights(b)[:, :, None] * waves).sum(dim=1)
    x = x + _TONE_NOISE * torch.randn(n, window, generator=g, dtype=torch.float64)
    return x.float(), torch.stack([f, b], dim=1).float()


def tone_context(pitch: float, brightness: float) -> Tensor:
    """One context ``(1, 2)``: (pitch in Hz, brightness), for ``flow.sample(n, context=...)``."""
    return torch.tensor([[float(pitch), float(brightness)]])


def overlap_add(windows: Tensor, hop: int | None = None) -> np.ndarray:
    """Glue windows ``(n, T)`` into one signal: Hann-weighted, overlapping by half.

    Neighbouring windows are independent samples (their phases do not line up), so the
    cross-fade hides the seams rather than removing them; the pitch survives.
    """
    if not isinstance(windows, Tensor) or windows.dim() != 2:
        raise ValueError("windows must be a tensor of shape (n, T)")
    n, t = windows.shape
    hop = hop or t // 2
    fade = torch.hann_window(t, periodic=True, dtype=torch.float64)
    out = torch.zeros(hop * (n - 1) + t, dtype=torch.float64)
    for i in range(n):
        out[i * hop:i * hop + t] += fade * windows[i].double()
    return out.numpy()


def magnitude_spectrum(x: Tensor, rate: int = TONE_RATE) -> tuple[np.ndarray, np.ndarray]:
    """Mean magnitude spectrum of windows ``(n, T)`` (Hann-weighted): ``(frequencies_hz, magnitude)``."""
    if not isinstance(x, Tensor) or x.dim() != 2:
        raise ValueError("x must be a tensor of windows, shape (n, T)")
    t = x.shape[1]
    spectrum = torch.fft.rfft(x.double() * torch.hann_window(t, dtype=torch.float64), dim=1).abs().mean(dim=0)
    return np.fft.rfftfreq(t, 1.0 / rate), spectrum.numpy()


# ----------------------------------------------------------------------------------
# Degraded digits: what a completion model is conditioned on
# ----------------------------------------------------------------------------------

DEGRADATIONS = ("top", "lowres")


def degrade(images: Tensor, kind: str | Sequence[str], levels: int = 17) -> Tensor:
    """The context a completion model sees for integer images ``(B, 1, H, W)``: ``(B, 3, H, W)``.

    ``kind`` is ``"top"`` (the top half of each image; the bottom is hidden) or
    ``"lowres"`` (a copy down-sampled by 2 in each direction: the mean of each 2x2 block,
    shown on its four pixels), or one kind per image. The three channels are the visible
    values scaled to ``[0, 1]``, a mask of pixels known exactly, and a mask of pixels
    known only through their block's mean; a hidden pixel is 0 in all three.
    """
    if not isinstance(images, Tensor) or images.dtype.is_floating_point or images.dim() != 4:
        raise TypeError("images must be an integer tensor of levels (B, 1, H, W), e.g. flowkit.data.digits('test')")
    b, c, h, w = images.shape
    if c != 1 or h % 2 or w % 2:
        raise ValueError(f"degrade expects one-channel images of even size, got shape {tuple(images.shape)}")
    kinds = [kind] * b if isinstance(kind, str) else list(kind)
    if len(kinds) != b or any(k not in DEGRADATIONS for k in kinds):
        raise ValueError(f"kind must be one of {DEGRADATIONS} (or one per image), got {kind!r}")
    x = images.float() / (levels - 1)
    top_rows = (torch.arange(h) < h // 2).float().view(1, 1, h, 1).expand(1, 1, h, w)
    block_mean = torch.nn.functional.avg_pool2d(x, 2)
    block_mean = block_mean.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
    is_top = torch.tensor([k == "top" for k in kinds]).view(b, 1, 1, 1)
    values = torch.where(is_top, x * top_rows, block_mean)
    exact = torch.where(is_top, top_rows.expand(b, 1, h, w), torch.zeros(b, 1, h, w))
    blocky = torch.where(is_top, torch.zeros(b, 1, h, w), torch.ones(b, 1, h, w))
    return torch.cat([values, exact, blocky], dim=1)


def visible_part(context: Tensor, levels: int = 17) -> Tensor:
    """What a viewer sees of a degraded image: levels ``(B, H, W)``, NaN where hidden."""
    values, exact, blocky = context[:, 0], context[:, 1], context[:, 2]
    shown = values * (levels - 1)
    return torch.where((exact + blocky) > 0, shown, torch.full_like(shown, float("nan")))


# ----------------------------------------------------------------------------------
# Scoring conditional digit models
# ----------------------------------------------------------------------------------


def _flow_input(flow, images: Tensor) -> Tensor:
    # A flow over vectors sees flattened images; an image flow sees (B, 1, H, W).
    return images.reshape(images.shape[0], *flow.event_shape)


@torch.no_grad()
def bits_per_dim(flow, images: Tensor, context=None, draws: int = 4, seed: int = 0,
                 num_dims: int | None = None) -> float:
    """Mean bits per dimension of integer ``images`` under ``flow`` given ``context``.

    Averaged over ``draws`` uniform-noise draws (an upper bound on the discrete code
    length). ``num_dims`` divides the total (default: every pixel); pass the number of
    *missing* pixels to charge a completion's bits to what was hidden.
    """
    from .data import dequantize

    if not isinstance(images, Tensor) or images.dtype.is_floating_point:
        raise TypeError("images must be an integer tensor of levels, e.g. flowkit.data.digits('test')")
    generator = torch.Generator().manual_seed(int(seed))
    flow.eval()
    total = 0.0
    for _ in range(check_count(draws, "draws")):
        x = _flow_input(flow, dequantize(images, generator=generator))
        log_prob = flow.log_prob(x) if context is None else flow.log_prob(x, context=context)
        total += -log_prob.double().mean().item()
    dims = num_dims or math.prod(images.shape[1:])
    return total / draws / (dims * math.log(2.0))


@torch.no_grad()
def class_log_likelihoods(flow, images: Tensor, classes: int = 10, draws: int = 4, seed: int = 0) -> Tensor:
    """``log p(x | y = k)`` for each image and class, ``(N, classes)``, averaged over noise draws."""
    from .data import dequantize

    generator = torch.Generator().manual_seed(int(seed))
    flow.eval()
    out = torch.zeros(len(images), classes, dtype=torch.float64)
    for _ in range(check_count(draws, "draws")):
        x = _flow_input(flow, dequantize(images, generator=generator))
        for k in range(classes):
            out[:, k] += flow.log_prob(x, context=torch.full((len(x),), k, dtype=torch.long)).double()
    return out / draws


def confusion_matrix(true: Tensor, predicted: Tensor, classes: int = 10) -> np.ndarray:
    """Counts ``[i, j]`` of images of class ``i`` predicted as ``j``."""
    matrix = np.zeros((classes, classes), dtype=int)
    np.add.at(matrix, (np.asarray(true), np.asarray(predicted)), 1)
    return matrix


def logistic_regression_accuracy(seed: int = 0) -> tuple[float, np.ndarray]:
    """Test accuracy and confusion matrix of a logistic regression on the same digits split.

    Trained on the train and validation splits (pixels scaled to [0, 1]), scored on test.
    """
    from sklearn.linear_model import LogisticRegression

    from .data import digits

    (train, train_y), (val, val_y) = digits("train", True), digits("val", True)
    test, test_y = digits("test", True)
    features = torch.cat([train, val]).flatten(1).numpy() / 16.0
    model = LogisticRegression(max_iter=3000, random_state=seed)
    model.fit(features, torch.cat([train_y, val_y]).numpy())
    predicted = model.predict(test.flatten(1).numpy() / 16.0)
    return float((predicted == test_y.numpy()).mean()), confusion_matrix(test_y, torch.from_numpy(predicted))

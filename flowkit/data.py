"""Data sets the course uses: two moons (with its exact density) and 8x8 digits.

Nothing is downloaded: two moons is generated, and the digits ship inside scikit-learn.
MNIST (:func:`mnist`) is an optional extra for learners who have the files or are online;
the course never needs it.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
from torch import Tensor

from ._checks import check_count, check_positive, check_tensor

__all__ = [
    "two_moons",
    "two_moons_log_prob",
    "two_moons_entropy",
    "two_moons_entropy_estimate",
    "digits",
    "DIGIT_LEVELS",
    "mnist",
    "read_idx",
    "MNIST_LEVELS",
    "dequantize",
]

# ----------------------------------------------------------------------------------
# Two moons
# ----------------------------------------------------------------------------------


def _arc_points(t: Tensor, upper: Tensor) -> Tensor:
    """Points on the upper arc (cos t, sin t) or the lower arc (1 - cos t, 0.5 - sin t)."""
    c, s = torch.cos(t), torch.sin(t)
    x = torch.where(upper, c, 1.0 - c)
    y = torch.where(upper, s, 0.5 - s)
    return torch.stack([x, y], dim=1)


def two_moons(n: int, noise: float = 0.1, seed: int = 0) -> Tensor:
    """``n`` points from two moons, float32 of shape ``(n, 2)``.

    Each point picks an arc with probability 1/2, a position ``t ~ U[0, pi]`` along it,
    and isotropic Gaussian noise of standard deviation ``noise``. The same ``seed`` gives
    the same points.
    """
    n = check_count(n, "n")
    if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not math.isfinite(noise) or noise < 0:
        raise ValueError(f"noise must be a finite number >= 0, got {noise!r}")
    g = torch.Generator().manual_seed(int(seed))
    t = torch.rand(n, generator=g, dtype=torch.float64) * math.pi
    upper = torch.rand(n, generator=g) < 0.5
    eps = torch.randn(n, 2, generator=g, dtype=torch.float64) * noise
    return (_arc_points(t, upper) + eps).float()


@functools.lru_cache(maxsize=8)
def _quadrature(panels: int, order: int) -> tuple[Tensor, Tensor]:
    """Composite Gauss-Legendre nodes and log-weights on [0, pi]."""
    nodes, weights = np.polynomial.legendre.leggauss(order)
    edges = np.linspace(0.0, math.pi, panels + 1)
    half = np.diff(edges) / 2
    mid = (edges[:-1] + edges[1:]) / 2
    t = (mid[:, None] + half[:, None] * nodes[None, :]).ravel()
    w = (half[:, None] * weights[None, :]).ravel()
    return torch.from_numpy(t), torch.from_numpy(np.log(w))


def two_moons_log_prob(x: Tensor, noise: float = 0.1, panels: int = 256, order: int = 8) -> Tensor:
    r"""Exact log-density of :func:`two_moons` at each row of ``x``: shape ``(n,)``.

    .. math:: p(x) = \sum_{\text{arc}} \frac12 \cdot \frac1\pi \int_0^\pi
              \mathcal N\!\left(x;\ c_{\text{arc}}(t),\ \sigma^2 I\right) dt

    The integral along each arc is done in log space with composite Gauss-Legendre
    quadrature (``panels`` x ``order`` nodes), accurate to far below 0.01 in log p.
    Computed in float64; returned in ``x``'s dtype.
    """
    check_tensor(x, "x", (2,))
    sigma = check_positive(noise, "noise")
    t, log_w = _quadrature(panels, order)
    x64 = x.detach().double()
    log_norm = -math.log(2 * math.pi * sigma**2) - math.log(2.0) - math.log(math.pi)
    out = []
    for chunk in x64.split(2048):
        terms = []
        for upper in (True, False):
            arc = _arc_points(t, torch.full_like(t, upper, dtype=torch.bool))  # (T, 2)
            sq = torch.cdist(chunk, arc).pow(2)  # (n, T)
            terms.append(torch.logsumexp(log_w - sq / (2 * sigma**2), dim=1))
        out.append(torch.logaddexp(terms[0], terms[1]) + log_norm)
    return torch.cat(out).to(x.dtype)


# two_moons_entropy_estimate(noise) for the noise levels the lessons use, with the default
# n = 100_000 and seed = 12345: recomputing one takes tens of seconds on a laptop CPU, too long
# for a lesson's budget. tests/test_data.py recomputes them and compares.
_ENTROPY_ESTIMATES = {
    0.02: (-0.6464632284566127, 0.0022471933252410075),
    0.05: (0.28688156427483597, 0.002297809644051678),
    0.1: (1.0055859596689216, 0.0023536570362518235),
    0.2: (1.6754122343237823, 0.0021694266172595355),
}


@functools.lru_cache(maxsize=16)
def two_moons_entropy_estimate(noise: float = 0.1, n: int = 100_000,
                               seed: int = 12345) -> tuple[float, float]:
    r"""``(H, standard_error)``: the entropy :math:`H = -\mathbb E[\log p(x)]` of two moons, in nats.

    ``H`` is the mean of the exact ``-log p(x)`` over ``n`` samples drawn with ``seed``; the
    standard error is ``std(log p) / sqrt(n)`` (about 0.002 nats for the defaults). Every
    lesson uses the defaults, so they all print the same value. The defaults' results for
    the noise levels the lessons use are stored, the rest computed once and cached.
    """
    if n == 100_000 and seed == 12345 and noise in _ENTROPY_ESTIMATES:
        return _ENTROPY_ESTIMATES[noise]
    x = two_moons(n, noise=noise, seed=seed)
    neg_log_p = -two_moons_log_prob(x.double(), noise=noise)
    return float(neg_log_p.mean()), float(neg_log_p.std() / math.sqrt(n))


def two_moons_entropy(noise: float = 0.1, n: int = 100_000, seed: int = 12345) -> float:
    r"""Differential entropy :math:`H = -\mathbb E[\log p(x)]` of two moons, in nats.

    A Monte Carlo average of the exact log-density over ``n`` fresh samples; its standard
    error is about ``std(log p) / sqrt(n)`` (:func:`two_moons_entropy_estimate` returns it).
    This is the floor of any model's expected test NLL: ``NLL - H = KL(data || model) >= 0``.
    Cached: the same arguments return the same number without recomputing.
    """
    return two_moons_entropy_estimate(noise, n, seed)[0]


# ----------------------------------------------------------------------------------
# Digits
# ----------------------------------------------------------------------------------

DIGIT_LEVELS = 17  # scikit-learn's 8x8 digits take integer values 0..16
_SPLIT_SIZES = {"train": 1257, "val": 180, "test": 360}  # 1797 images in all


@functools.lru_cache(maxsize=1)
def _all_digits() -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = bunch.images.astype(np.int64)
    labels = bunch.target.astype(np.int64)
    # A legacy RandomState permutation is stable across NumPy versions: the split never moves.
    order = np.random.RandomState(20260101).permutation(len(images))
    a = _SPLIT_SIZES["train"]
    b = a + _SPLIT_SIZES["val"]
    index = {"train": order[:a], "val": order[a:b], "test": order[b:]}
    return images, labels, index


def digits(split: str = "train", return_labels: bool = False):
    """scikit-learn's 8x8 handwritten digits as an int64 tensor ``(N, 1, 8, 8)``, values 0..16.

    ``split`` is ``"train"`` (1257 images), ``"val"`` (180) or ``"test"`` (360): a fixed,
    disjoint split of all 1797 images. The test split is never trained on. With
    ``return_labels=True`` also returns the digit classes ``(N,)``.
    """
    if split not in _SPLIT_SIZES:
        raise ValueError(f"split must be one of {sorted(_SPLIT_SIZES)}, got {split!r}")
    images, labels, index = _all_digits()
    idx = index[split]
    x = torch.from_numpy(images[idx]).unsqueeze(1)
    if return_labels:
        return x, torch.from_numpy(labels[idx])
    return x


# ----------------------------------------------------------------------------------
# MNIST (optional: files on disk, or a download through torchvision)
# ----------------------------------------------------------------------------------

MNIST_LEVELS = 256
_MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", 60000),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", 10000),
}


def read_idx(path) -> np.ndarray:
    """Read an IDX file (the format MNIST ships in), gzipped or not, as a NumPy array.

    The header is two zero bytes, a type code (``0x08`` = unsigned bytes, the only one
    MNIST uses), the number of dimensions, then one big-endian 32-bit size per dimension.
    """
    import gzip
    from pathlib import Path

    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{path} is not an IDX file of unsigned bytes (it should start 00 00 08 <ndim>)")
    ndim = data[3]
    if len(data) < 4 + 4 * ndim:
        raise ValueError(f"{path} is truncated: its header promises {ndim} sizes")
    shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != math.prod(shape):
        raise ValueError(f"{path} holds {body.size} values but its header says {shape} = {math.prod(shape)}")
    return body.reshape(shape)


def _find_idx(root, stem: str):
    from pathlib import Path

    for folder in (Path(root), Path(root) / "MNIST" / "raw"):  # also torchvision's layout
        for name in (stem, stem + ".gz"):
            if (folder / name).is_file():
                return folder / name
    return None


def mnist(split: str = "train", root=None, download: bool = False, return_labels: bool = False):
    """MNIST as an int64 tensor ``(N, 1, 28, 28)`` of levels 0..255 (:data:`MNIST_LEVELS`).

    Optional: the course runs without it. The four standard IDX files (gzipped or not)
    are read from ``root`` (default ``~/.cache/flowkit/mnist``) or from torchvision's
    ``root/MNIST/raw``. With ``download=True`` and torchvision installed and online, the
    files are fetched through ``torchvision.datasets.MNIST`` first. ``split`` is
    ``"train"`` (60,000 images) or ``"test"`` (10,000). The same :class:`ImageRealNVP`
    code trains on it: ``ImageRealNVP(shape=(1, 28, 28), levels=256, num_scales=3)``.
    """
    from pathlib import Path

    if split not in _MNIST_FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    root = Path(root) if root is not None else Path.home() / ".cache" / "flowkit" / "mnist"
    image_stem, label_stem, _ = _MNIST_FILES[split]
    if _find_idx(root, image_stem) is None and download:
        try:
            import torchvision
        except Exception as err:  # not installed, or built for another torch
            raise ImportError(
                "downloading MNIST needs torchvision (pip install torchvision, matching your torch), "
                f"which could not be imported ({err}); or put the four IDX files from the MNIST "
                f"site in {root}"
            ) from err
        torchvision.datasets.MNIST(str(root), train=(split == "train"), download=True)
    image_path, label_path = _find_idx(root, image_stem), _find_idx(root, label_stem)
    if image_path is None or label_path is None:
        raise FileNotFoundError(
            f"MNIST {split} files not found in {root} (looked for {image_stem}[.gz] and "
            f"{label_stem}[.gz], also under MNIST/raw); pass root=..., or download=True with "
            "torchvision installed and a network connection"
        )
    images, labels = read_idx(image_path), read_idx(label_path)
    if images.ndim != 3 or images.shape[1:] != (28, 28) or labels.shape != images.shape[:1]:
        raise ValueError(
            f"expected images (N, 28, 28) and labels (N,), got {images.shape} and {labels.shape}"
        )
    x = torch.from_numpy(images.astype(np.int64)).unsqueeze(1)
    if return_labels:
        return x, torch.from_numpy(labels.astype(np.int64))
    return x


def dequantize(x: Tensor, levels: int = DIGIT_LEVELS, generator: torch.Generator | None = None) -> Tensor:
    r"""Uniform dequantization: integer levels ``k`` become ``k + u``, ``u ~ U[0, 1)``.

    The result lives in ``[0, levels)``. A density ``p`` on it gives the discrete image a
    probability of at least :math:`\exp\,\mathbb E_u[\log p(k + u)]` (each unit cube has
    volume 1), so its negative log-density in these *level units* is an upper bound on the
    discrete code length: divide by :math:`D \ln 2` for bits per dimension.
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"x must be a torch.Tensor of integer levels, got {type(x).__name__}")
    if x.dtype.is_floating_point:
        raise TypeError(
            f"dequantize expects integer levels (e.g. flowkit.data.digits()), got dtype {x.dtype}; "
            "it would add noise twice to already-continuous data"
        )
    if x.numel() and (x.min() < 0 or x.max() >= levels):
        raise ValueError(f"levels must lie in 0..{levels - 1}, got values in [{x.min().item()}, {x.max().item()}]")
    noise = torch.rand(x.shape, generator=generator)
    return x.float() + noise

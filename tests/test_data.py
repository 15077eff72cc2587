"""Data: two moons' exact density, the digits split, dequantization."""

import math

import numpy as np
import pytest
import torch
from scipy.integrate import quad

import flowkit as fk


def _log_prob_by_quad(x, y, s):
    total = 0.0
    for arc in (lambda t: (math.cos(t), math.sin(t)), lambda t: (1 - math.cos(t), 0.5 - math.sin(t))):
        f = lambda t, arc=arc: math.exp(-((x - arc(t)[0]) ** 2 + (y - arc(t)[1]) ** 2) / (2 * s * s))
        total += quad(f, 0, math.pi, epsabs=0, epsrel=1e-12, limit=500)[0]
    return math.log(total / (2 * math.pi * s * s) / (2 * math.pi))


def test_two_moons_is_seeded_and_shaped():
    a = fk.data.two_moons(100, seed=3)
    assert a.shape == (100, 2) and a.dtype == torch.float32
    assert torch.equal(a, fk.data.two_moons(100, seed=3))
    assert not torch.equal(a, fk.data.two_moons(100, seed=4))
    clean = fk.data.two_moons(1000, noise=0.0)
    # Without noise every point lies on one of the arcs: the unit circle's upper half, or
    # the lower half of the unit circle around (1, 0.5).
    off_upper = (clean.norm(dim=1) - 1).abs() + (clean[:, 1] < -1e-6).float()
    off_lower = ((clean - torch.tensor([1.0, 0.5])).norm(dim=1) - 1).abs() + (clean[:, 1] > 0.5 + 1e-6).float()
    assert torch.minimum(off_upper, off_lower).max() < 1e-5
    on_upper = off_upper < 1e-5
    assert 400 < on_upper.sum() < 600  # each arc with probability 1/2


@pytest.mark.parametrize("noise", [0.05, 0.1, 0.3])
def test_two_moons_log_prob_matches_adaptive_quadrature(noise):
    pts = [(0, 0), (1, 0), (0.5, 0.25), (-1.0, 0.0), (2.0, 0.5), (0.0, -0.3), (1.0, 1.0),
           (-1.2, 0.1), (0.5, -0.6), (2.3, 0.2), (1.5, -0.5), (-1.5, 1.3)]
    got = fk.data.two_moons_log_prob(torch.tensor(pts, dtype=torch.float64), noise=noise)
    for (x, y), g in zip(pts, got.tolist()):
        assert abs(g - _log_prob_by_quad(x, y, noise)) < 1e-6


@pytest.mark.parametrize("noise", [0.1, 0.2])
def test_two_moons_density_integrates_to_one(noise):
    n = 500
    xs = torch.linspace(-2.5, 3.5, n, dtype=torch.float64)
    ys = torch.linspace(-2.0, 2.5, n, dtype=torch.float64)
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    p = fk.data.two_moons_log_prob(torch.stack([xx.flatten(), yy.flatten()], 1), noise=noise).exp()
    mass = torch.trapezoid(torch.trapezoid(p.reshape(n, n), xs, dim=1), ys).item()
    assert abs(mass - 1.0) < 1e-4


def test_two_moons_density_matches_a_histogram_of_samples():
    x = fk.data.two_moons(400_000, seed=7).double()
    edges = 0.25
    centres = torch.tensor([[0.0, 1.0], [1.0, -0.5], [-1.0, 0.0], [0.5, 0.25], [2.0, 0.5]], dtype=torch.float64)
    for c in centres:
        inside = ((x - c).abs() < edges / 2).all(dim=1).double().mean().item()
        # Density at the centre times the cell area, corrected to second order by a fine sum.
        g = torch.linspace(-edges / 2, edges / 2, 41, dtype=torch.float64)
        gy, gx = torch.meshgrid(g, g, indexing="ij")
        cell = torch.stack([gx.flatten(), gy.flatten()], 1) + c
        p = fk.data.two_moons_log_prob(cell).exp().reshape(41, 41)
        expected = torch.trapezoid(torch.trapezoid(p, g, dim=1), g).item()
        se = math.sqrt(expected * (1 - expected) / x.shape[0])
        assert abs(inside - expected) < 5 * se + 1e-4


def test_two_moons_entropy_is_the_mean_negative_log_density():
    h = fk.data.two_moons_entropy(0.1, n=50_000, seed=1)
    h2 = fk.data.two_moons_entropy(0.1, n=50_000, seed=2)
    assert abs(h - h2) < 0.02  # two independent estimates agree within a few standard errors
    # More noise spreads the density: higher entropy.
    assert fk.data.two_moons_entropy(0.2, n=20_000) > h


def test_digits_split_is_fixed_disjoint_and_complete():
    parts = {s: fk.data.digits(s, return_labels=True) for s in ("train", "val", "test")}
    sizes = {s: len(v[0]) for s, v in parts.items()}
    assert sizes == {"train": 1257, "val": 180, "test": 360}
    for x, y in parts.values():
        assert x.dtype == torch.int64 and x.shape[1:] == (1, 8, 8)
        assert x.min() >= 0 and x.max() <= 16
        assert set(y.tolist()) == set(range(10))
    from sklearn.datasets import load_digits
    everything = torch.from_numpy(load_digits().images.astype(np.int64)).reshape(-1, 64)
    seen = torch.cat([parts[s][0].reshape(-1, 64) for s in parts])
    # Same multiset of images: sort rows lexicographically and compare.
    key = lambda t: sorted(map(tuple, t.tolist()))
    assert key(seen) == key(everything)
    assert torch.equal(fk.data.digits("test"), parts["test"][0])


def test_dequantize_stays_within_each_unit_cell():
    x = fk.data.digits("val")
    d = fk.data.dequantize(x, generator=torch.Generator().manual_seed(0))
    assert d.dtype == torch.float32
    assert ((d - x) >= 0).all() and ((d - x) < 1).all()
    with pytest.raises(TypeError, match="integer levels"):
        fk.data.dequantize(d)
    with pytest.raises(ValueError, match="0..16"):
        fk.data.dequantize(x + 1)

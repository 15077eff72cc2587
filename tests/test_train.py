"""Training lowers held-out NLL, is seeded, and records what widgets need."""

import math

import torch

import flowkit as fk
from flowkit.train import mean_nll


def test_fit_lowers_test_nll_of_realnvp_on_moons():
    torch.manual_seed(0)
    flow = fk.RealNVP(2, num_couplings=4, hidden=32)
    train = fk.data.two_moons(4000, seed=1)
    test = fk.data.two_moons(4000, seed=2)
    before = mean_nll(flow, test)
    history = fk.fit(flow, train, steps=400, batch_size=256, lr=3e-3, progress=False,
                     snapshot_every=100, val_data=test, val_every=200)
    after = mean_nll(flow, test)
    entropy = fk.data.two_moons_entropy(0.1, n=20_000)
    # The untrained flow is N(0, I): its expected NLL is E|x|^2 / 2 + log(2 pi), with
    # E|x|^2 = 1 (upper arc) and 2.25 - 2/pi (lower arc, mean of 2.25 - 2cos t - sin t),
    # averaged, plus the noise variance 2 * 0.1^2.
    mean_sq = (1.0 + 2.25 - 2 / math.pi) / 2 + 2 * 0.1**2
    assert abs(before - (mean_sq / 2 + math.log(2 * math.pi))) < 0.03
    assert after < before - 1.0
    assert after > entropy - 0.05  # no model beats the data's entropy (up to MC error)
    assert len(history.loss) == 400 and history.seconds > 0
    assert [s for s, _ in history.snapshots] == [0, 100, 200, 300, 400]
    assert [s for s, _ in history.val_loss] == [200, 400]
    # Restoring step 0 gives back the untrained (identity) flow.
    history.restore(flow, 0)
    assert abs(mean_nll(flow, test) - before) < 1e-6


def test_fit_is_seeded():
    data = fk.data.two_moons(512, seed=0)
    runs = []
    for _ in range(2):
        torch.manual_seed(123)
        flow = fk.RealNVP(2, num_couplings=2, hidden=8)
        fk.fit(flow, data, steps=20, batch_size=64, progress=False, seed=5)
        runs.append(flow.sample(5, generator=torch.Generator().manual_seed(0)))
    torch.testing.assert_close(runs[0], runs[1])


def test_fit_with_a_sampler_and_preprocessing():
    digits = fk.data.digits("train")[:128]
    flow = fk.Flow([fk.Affine(torch.ones(1, 8, 8) * 0.2, torch.zeros(1, 8, 8), learnable=True)],
                   fk.StandardNormal((1, 8, 8)))
    before = mean_nll(flow, digits, preprocess=fk.data.dequantize)
    fk.fit(flow, digits, steps=50, batch_size=32, lr=1e-2, preprocess=fk.data.dequantize, progress=False)
    assert mean_nll(flow, digits, preprocess=fk.data.dequantize) < before
    sampler = lambda n, g: torch.randn(n, 2, generator=g) * 3.0
    gauss = fk.Flow([fk.Affine(torch.ones(2), torch.zeros(2), learnable=True)], fk.StandardNormal(2))
    fk.fit(gauss, sampler, steps=300, batch_size=256, lr=2e-2, progress=False)
    # The ML scale for N(0, 9) data is 1/3 (z = scale * x must be standard normal).
    assert (gauss.transforms[0].scale.abs() - 1 / 3).abs().max() < 0.05

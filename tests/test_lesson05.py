"""Lesson 05: explorers respond to every control; checkers pass the reference, catch mistakes."""

import math

import matplotlib

matplotlib.use("module://ipympl.backend_nbagg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import flowkit as fk  # noqa: E402
from flowkit.exercises import lesson05 as ex  # noqa: E402
from flowkit.images import ImageRealNVP  # noqa: E402
from flowkit.widgets import lesson05 as w  # noqa: E402


@pytest.fixture(scope="module")
def flow():
    """A small image flow, moved away from the identity (fast to build)."""
    torch.manual_seed(0)
    model = ImageRealNVP(hidden=8, num_blocks=1, couplings=1, final_couplings=1)
    model(fk.data.dequantize(fk.data.digits("train")[:64]))  # initialise ActNorm
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


@pytest.fixture(scope="module")
def test_digits():
    return fk.data.digits("test")[:8]


def snapshot(artist):
    return np.array(artist.get_array(), dtype=float, copy=True)


def test_dequantization_explorer(tmp_path):
    e = w.dequantization_explorer()
    curve, readout = e.artists["curve"], e.artists["readout"]
    before_curve, before_text = curve.get_ydata().copy(), readout.get_text()
    e.set(log_sigma=-2.5)
    assert not np.allclose(curve.get_ydata(), before_curve)
    assert readout.get_text() != before_text
    # as sigma shrinks, the integer log-likelihood grows and the dequantized one falls
    vals = {}
    for s in (-1.0, -2.5):
        e.set(log_sigma=s)
        text = readout.get_text()
        vals[s] = [float(t) for t in text.replace("integers:", "").replace("dequantized:", "|")
                   .replace("bound:", "|").split("|")]
    assert vals[-2.5][0] > vals[-1.0][0] and vals[-2.5][0] > 0
    assert vals[-2.5][1] < vals[-1.0][1]
    assert all(v[1] <= v[2] + 0.05 for v in vals.values())  # never beats the histogram bound
    e.set(log_sigma=-3.0)  # the extreme of the slider is still finite
    assert np.isfinite(curve.get_ydata()).all() and "clipped" in e.figure.axes[0].texts[0].get_text()


def test_temperature_explorer(flow):
    e = w.temperature_explorer(flow, n=4)
    image, title = e.artists["image"], e.artists["title"]
    before = snapshot(image)
    e.set(temperature=0.0)
    at_zero = snapshot(image)
    assert not np.allclose(np.nan_to_num(at_zero), np.nan_to_num(before))
    tiles = at_zero[~np.isnan(at_zero)].reshape(-1)
    # T = 0 decodes the origin: the four samples are identical
    grid = w.mosaic(np.zeros((4, 8, 8)))
    assert np.isnan(at_zero).sum() == np.isnan(grid).sum()
    first = at_zero[:8, :8]
    assert np.allclose(at_zero[:8, 9:17], first) and tiles.min() >= 0 and tiles.max() <= 16
    e.set(temperature=1.5)
    assert "T = 1.50" in title.get_text()


def test_interpolation_explorer(flow, test_digits):
    e = w.interpolation_explorer(flow, test_digits, pairs=[(0, 1), (2, 3)], steps=11)
    latent, pixel = e.artists["latent"], e.artists["pixel"]
    before = snapshot(latent), snapshot(pixel)
    e.set(t=0.9)
    assert not np.allclose(snapshot(latent), before[0]) and not np.allclose(snapshot(pixel), before[1])
    # at t = 0 both paths start at digit A (reconstructed through the flow)
    e.set(t=0.0)
    np.testing.assert_allclose(snapshot(pixel), snapshot(e.artists["a"]), atol=1e-6)
    np.testing.assert_allclose(snapshot(latent), snapshot(e.artists["a"]), atol=1e-3)
    a_before = snapshot(e.artists["a"])
    e.set(pair=1)
    assert not np.allclose(snapshot(e.artists["a"]), a_before)


def test_scale_explorer(flow, test_digits):
    e = w.scale_explorer(flow, test_digits[:3], variants=3)
    variants, original, title = e.artists["variants"], e.artists["original"], e.artists["title"]
    before = snapshot(variants)
    e.set(temperature=0.3)
    after_t = snapshot(variants)
    assert not np.allclose(np.nan_to_num(after_t), np.nan_to_num(before))
    e.set(resample="coarse structure")
    assert not np.allclose(np.nan_to_num(snapshot(variants)), np.nan_to_num(after_t))
    assert "coarse structure" in title.get_text()
    o = snapshot(original)
    e.set(digit=2)
    assert not np.allclose(snapshot(original), o)
    # T = 0 and nothing resampled away from the origin: every variant is the same image
    e.set(temperature=0.0)
    v = snapshot(variants)
    np.testing.assert_allclose(v[:, :8], v[:, 9:17])


def test_mosaic_layout():
    m = w.mosaic(np.ones((5, 8, 8)) * 20, cols=3)
    assert m.shape == (17, 26) and np.nanmax(m) == 16  # clipped to the top level
    assert np.isnan(m[8]).all()


# ----------------------------------------------------------------------------------
# Exercises
# ----------------------------------------------------------------------------------


def _template(*args):
    raise NotImplementedError


def _answers(exercise):
    return exercise.reference if isinstance(exercise.reference, tuple) else (exercise.reference,)


def assert_slips(exercise, cases):
    for needle, answers in cases.items():
        result = exercise.check(*answers, show=False)
        assert not result.passed, needle
        assert needle in str(result), (needle, str(result))


@pytest.mark.parametrize("exercise", ex.EXERCISES, ids=lambda e: e.name)
def test_every_reference_passes_and_the_template_is_not_attempted(exercise):
    answers = _answers(exercise)
    result = exercise.check(*answers, show=False)
    assert result.passed and str(result).startswith("PASS"), str(result)
    untouched = exercise.check(*[_template] * len(answers), show=False)
    assert untouched.status == "not attempted" and str(untouched).startswith("Not attempted yet")
    code = exercise.solution_code()
    assert all(f"def {f.__name__}(" in code for f in answers) and exercise.hints


def test_summary_lists_every_exercise(capsys):
    rows = ex.summary()
    assert [name for name, _ in rows] == [e.name for e in ex.EXERCISES]
    assert "exercises passed" in capsys.readouterr().out


def test_dequantization_bound_reference_obeys_jensen_and_matches_quadrature():
    log_density = ex._bumps([0.7, 2.2, 3.9], 0.6, [3.0, 1.0, 2.0])
    k = torch.arange(5, dtype=torch.float64)
    log_prob, bound = ex.discrete_log_prob_and_bound(log_density, k, 2000)
    assert (bound <= log_prob).all()
    # The cells' probabilities by adaptive quadrature, and the density's total mass.
    from scipy import integrate

    def density(v):
        return log_density(torch.tensor([v], dtype=torch.float64)).exp().item()

    assert integrate.quad(density, -np.inf, np.inf)[0] == pytest.approx(1.0, abs=1e-8)
    for level, value in zip(k.tolist(), log_prob.tolist()):
        assert value == pytest.approx(math.log(integrate.quad(density, level, level + 1)[0]), abs=1e-6)


def test_dequantization_bound_slips():
    ref = ex.discrete_log_prob_and_bound

    def swapped(log_density, k, n):
        log_prob, bound = ref(log_density, k, n)
        return bound, log_prob

    def naive_exp(log_density, k, n):
        u = (torch.arange(n, dtype=torch.float64) + 0.5) / n
        log_p = log_density(k[:, None] + u)
        return log_p.exp().mean(dim=1).log(), log_p.mean(dim=1)

    def summed(log_density, k, n):
        u = (torch.arange(n, dtype=torch.float64) + 0.5) / n
        log_p = log_density(k[:, None] + u)
        return torch.logsumexp(log_p, dim=1), log_p.mean(dim=1)

    def at_integers(log_density, k, n):
        return log_density(k), log_density(k)

    assert_slips(ex.dequantization_bound, {
        "that is the bound": (swapped,),
        "torch.logsumexp": (naive_exp,),
        "divide by their number": (summed,),
        "density at a point is not a probability": (at_integers,),
        "return a pair": (lambda log_density, k, n: ref(log_density, k, n)[0],),
        "should be a torch.Tensor": (lambda log_density, k, n: (1.0, 0.5),),
    })


def test_logit_log_det_slips():
    def per_pixel(x, levels, alpha):
        y = alpha + (1 - 2 * alpha) * x / levels
        return math.log((1 - 2 * alpha) / levels) - torch.log(y) - torch.log1p(-y)

    assert_slips(ex.logit_log_det, {
        "sign is flipped": (lambda x, L, a: -per_pixel(x, L, a).flatten(1).sum(1),),
        "log-slope of the first, affine step is missing":
            (lambda x, L, a: (per_pixel(x, L, a) - math.log((1 - 2 * a) / L)).flatten(1).sum(1),),
        "one number per pixel": (per_pixel,),
        "rules out": (lambda x, L, a: fk.LogitPreprocess(L, a)(x)[1],),
        "should be a torch.Tensor": (lambda x, L, a: per_pixel(x, L, a).sum().item(),),
    })


def test_squeeze_slips():
    def plain_reshape(x):
        b, c, h, w_ = x.shape
        return x.reshape(b, 4 * c, h // 2, w_ // 2)

    def other_order(x):
        b, c, h, w_ = x.shape
        return x.reshape(b, c, h // 2, 2, w_ // 2, 2).permute(0, 1, 5, 3, 2, 4).reshape(b, 4 * c, h // 2, w_ // 2)

    assert_slips(ex.squeeze_pair, {
        "plain reshape": (plain_reshape, ex.my_unsqueeze),
        "another order": (other_order, ex.my_unsqueeze),
        "4x the channels": (lambda x: x, ex.my_unsqueeze),
        "should give back shape": (ex.my_squeeze, lambda z: z),
        "unsqueeze(squeeze(x)) is not x": (ex.my_squeeze, lambda z: plain_reshape(z.reshape(z.shape[0], -1, 2 * z.shape[2], 2 * z.shape[3])).reshape(z.shape[0], -1, 2 * z.shape[2], 2 * z.shape[3])),
        "should return a tensor": (lambda x: x.tolist(), ex.my_unsqueeze),
        "rules out": (lambda x: fk.images.squeeze(x), ex.my_unsqueeze),
    })


def test_split_slips():
    def rest_first(h, factor_out, rest):
        z, log_det = ex.split_forward(h, factor_out, rest)
        k = factor_out * h.shape[2] * h.shape[3]
        return torch.cat([z[:, k:], z[:, :k]], dim=1), log_det

    def counts_done(h, factor_out, rest):
        z, log_det = ex.split_forward(h, factor_out, rest)
        return z, log_det + h[:, :factor_out].flatten(1).sum(1)

    def wrong_inverse_sign(z, shape, factor_out, rest):
        h, log_det = ex.split_inverse(z, shape, factor_out, rest)
        return h, -log_det

    def inverse_swaps_halves(z, shape, factor_out, rest):
        h, log_det = ex.split_inverse(z, shape, factor_out, rest)
        return torch.cat([h[:, factor_out:], h[:, :factor_out]], dim=1), log_det

    assert_slips(ex.split_pair, {
        "puts the rest's output first": (rest_first, ex.split_inverse),
        "counts the factored-out channels": (counts_done, ex.split_inverse),
        "has the forward's sign": (ex.split_forward, wrong_inverse_sign),
        "reshape them to (batch, factor_out, H, W)": (ex.split_forward, inverse_swaps_halves),
        "return a pair (z, log_det)": (lambda h, f, rest: h, ex.split_inverse),
        "rules out": (lambda h, f, rest: fk.images.Split(tuple(h.shape[1:]), f, rest)(h), ex.split_inverse),
    })

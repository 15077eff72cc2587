"""A context travels one way through Flow, fit and check_transform; bad contexts get clear errors."""

import math

import numpy as np
import pytest
import torch
from torch import nn

import flowkit as fk
from flowkit.jacobian import log_abs_det_jacobian


class ConditionalCoupling(fk.Transform):
    """2-D coupling whose scale and shift of x2 depend on x1 and the context."""

    conditional = True

    def __init__(self, context_dim: int, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.net = nn.Sequential(nn.Linear(1 + context_dim, 16), nn.Tanh(), nn.Linear(16, 2))
        self.event_shape = (2,)
        self.context_shape = (context_dim,)

    def _params(self, x1, context):
        log_scale, shift = self.net(torch.cat([x1, context], dim=1)).chunk(2, dim=1)
        return torch.tanh(log_scale), shift

    def forward(self, x, context):
        log_scale, shift = self._params(x[:, :1], context)
        z2 = x[:, 1:] * torch.exp(log_scale) + shift
        return torch.cat([x[:, :1], z2], dim=1), log_scale.sum(dim=1)

    def inverse(self, z, context):
        log_scale, shift = self._params(z[:, :1], context)
        x2 = (z[:, 1:] - shift) * torch.exp(-log_scale)
        return torch.cat([z[:, :1], x2], dim=1), -log_scale.sum(dim=1)


class ConditionalShift(fk.Transform):
    """z = x - mu(context): the simplest conditional layer, exact per context."""

    conditional = True

    def forward(self, x, context):
        return x - context, x.new_zeros(x.shape[0])

    def inverse(self, z, context):
        return z + context, z.new_zeros(z.shape[0])


class LearnerTanhScale(fk.Transform):
    """A learner's plain transform: forward(x) only, no context."""

    def forward(self, x):
        return 2.0 * x, torch.full((x.shape[0],), x.shape[1] * math.log(2.0), dtype=x.dtype)

    def inverse(self, z):
        return z / 2.0, torch.full((z.shape[0],), -z.shape[1] * math.log(2.0), dtype=z.dtype)


def conditional_flow(context_dim=3):
    return fk.Flow([ConditionalCoupling(context_dim, seed=1), fk.Reverse(2), LearnerTanhScale(),
                    ConditionalCoupling(context_dim, seed=2)],
                   fk.StandardNormal(2), context_shape=(context_dim,))


def label_flow():
    torch.manual_seed(0)
    embedding = nn.Embedding(3, 2)
    return fk.Flow([ConditionalCoupling(2, seed=3), fk.Reverse(2), ConditionalCoupling(2, seed=4)],
                   fk.StandardNormal(2), embedding=embedding)


def test_log_det_matches_autograd_for_each_context():
    t = ConditionalCoupling(3).double()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 2, generator=g, dtype=torch.float64)
    c = torch.randn(6, 3, generator=g, dtype=torch.float64)
    z, log_abs_det = t(x, c)
    # Row by row, with that row's context held fixed.
    for i in range(6):
        auto = log_abs_det_jacobian(lambda v: t(v, c[i:i + 1].expand(v.shape[0], 3)), x[i:i + 1])
        torch.testing.assert_close(log_abs_det[i:i + 1], auto)
    x_back, inverse_log_abs_det = t.inverse(z, c)
    torch.testing.assert_close(x_back, x)
    torch.testing.assert_close(inverse_log_abs_det, -log_abs_det)
    report = fk.check_transform(t, x, context=c, tolerance=1e-9)
    assert report.passed, str(report)


def test_check_transform_catches_a_wrong_conditional_log_det():
    class Wrong(ConditionalCoupling):
        def forward(self, x, context):
            z, log_abs_det = super().forward(x, context)
            return z, log_abs_det + context[:, 0]  # a context term that is no Jacobian

    x, c = torch.randn(5, 2), torch.randn(5, 3)
    report = fk.check_transform(Wrong(3), x, context=c)
    assert not report.passed and "forward's log|det| is wrong" in str(report)


def test_check_transform_on_conditional_flows_per_context():
    flow = conditional_flow()
    x, c = torch.randn(5, 2), torch.randn(5, 3)
    assert fk.check_transform(flow, x, context=c).passed
    labels = label_flow()
    assert labels.context_classes == 3 and labels.context_shape == ()
    assert fk.check_transform(labels, x, context=torch.tensor([0, 1, 2, 1, 0])).passed
    with pytest.raises(TypeError, match="not conditional"):
        fk.check_transform(fk.Tanh(), x, context=c)


def test_a_learners_plain_transform_works_inside_a_conditional_flow():
    flow = conditional_flow().double()
    x = torch.randn(7, 2, dtype=torch.float64)
    c = torch.randn(7, 3, dtype=torch.float64)
    log_p = flow.log_prob(x, context=c)
    assert log_p.shape == (7,)
    # The same density computed by hand: the learner's layer only doubles its input.
    h = x
    total = torch.zeros(7, dtype=torch.float64)
    for t in flow.transforms:
        h, ld = (t(h, c) if t.conditional else t(h))
        total = total + ld
    expected = -0.5 * (h ** 2).sum(1) - math.log(2 * math.pi) + total
    torch.testing.assert_close(log_p, expected)
    back, _ = flow.inverse(flow.forward(x, c)[0], c)
    torch.testing.assert_close(back, x)


def test_one_context_is_repeated_for_all_samples():
    flow = conditional_flow()
    c = torch.randn(3)
    sample = lambda ctx: flow.sample(5, context=ctx, generator=torch.Generator().manual_seed(0))
    repeated = sample(c.expand(5, 3))
    torch.testing.assert_close(sample(c), repeated)
    torch.testing.assert_close(sample(c.unsqueeze(0)), repeated)
    x = torch.randn(4, 2)
    torch.testing.assert_close(flow.log_prob(x, c.unsqueeze(0)), flow.log_prob(x, c.expand(4, 3)))
    labels = label_flow()
    one = labels.sample(6, context=torch.tensor(2), generator=torch.Generator().manual_seed(1))
    many = labels.sample(6, context=torch.full((6,), 2), generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(one, many)
    assert labels.sample(0, context=torch.tensor(1)).shape == (0, 2)


def test_samples_follow_the_context():
    flow = fk.Flow([ConditionalShift()], fk.StandardNormal(2), context_shape=(2,))
    c = torch.tensor([[5.0, -3.0], [-1.0, 2.0]])
    samples = flow.sample(2, context=c)  # one context per sample
    assert samples.shape == (2, 2)
    many = flow.sample(4000, context=c[0], generator=torch.Generator().manual_seed(0))
    assert (many.mean(0) - c[0]).abs().max() < 0.1


def test_density_integrates_to_one_for_each_context():
    class Shift1d(ConditionalShift):
        pass

    flow = fk.Flow([fk.SinhArcsinh(0.5, 1.4, learnable=False), Shift1d(), fk.Affine(0.7, 0.2)],
                   fk.StandardNormal(1), context_shape=(1,)).double()
    x = torch.linspace(-40, 40, 100_001, dtype=torch.float64).unsqueeze(1)
    for value in (-2.0, 0.0, 3.5):
        with torch.no_grad():
            p = flow.log_prob(x, context=torch.tensor([value], dtype=torch.float64)).exp()
        assert abs(torch.trapezoid(p, x[:, 0]).item() - 1.0) < 1e-6

    flow2 = conditional_flow(context_dim=1).double()
    n = 401
    xs = torch.linspace(-14, 14, n, dtype=torch.float64)
    xx, yy = torch.meshgrid(xs, xs, indexing="ij")
    pts = torch.stack([xx.flatten(), yy.flatten()], 1)
    for value in (-1.0, 2.0):
        with torch.no_grad():
            p = flow2.log_prob(pts, torch.tensor([value], dtype=torch.float64)).exp().reshape(n, n)
        mass = torch.trapezoid(torch.trapezoid(p, xs, dim=1), xs).item()
        assert abs(mass - 1.0) < 2e-3


def test_fit_draws_the_same_rows_from_data_and_context():
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 3, (3000,), generator=g)
    centres = torch.tensor([[-4.0, 0.0], [0.0, 4.0], [4.0, -2.0]])
    data = centres[labels] + 0.5 * torch.randn(3000, 2, generator=g)
    # Noise 0.5 around each centre: a shift by the centre and a scale of 2 make it N(0, I).
    flow = fk.Flow([ConditionalShift(), fk.Affine(2.0)],
                   fk.StandardNormal(2), embedding=nn.Embedding(3, 2), context_classes=3)
    nn.init.zeros_(flow.embedding.weight)
    history = fk.fit(flow, data, steps=400, batch_size=128, lr=5e-2, context=labels, progress=False,
                     val_data=data[:500], val_context=labels[:500], val_every=400)
    # Each label's embedding learns its cluster centre: only if batches kept x and c paired.
    torch.testing.assert_close(flow.embedding.weight.detach(), centres, atol=0.1, rtol=0)
    # The best possible NLL: the entropy of N(centre, 0.25 I), 1 + log(2 pi 0.25).
    assert abs(history.val_loss[-1][1] - (1 + math.log(2 * math.pi * 0.25))) < 0.1
    for k in range(3):
        s = flow.sample(2000, context=torch.tensor(k), generator=torch.Generator().manual_seed(k))
        assert (s.mean(0) - centres[k]).abs().max() < 0.1


def test_fit_with_a_conditional_sampler():
    def sampler(n, generator):
        c = torch.randn(n, 1, generator=generator)
        return c + 0.5 * torch.randn(n, 1, generator=generator), c

    flow = fk.Flow([ConditionalShift(), fk.Affine(1.0, 0.0, learnable=True)], fk.StandardNormal(1),
                   context_shape=(1,))
    fk.fit(flow, sampler, steps=300, lr=5e-2, progress=False)
    assert abs(flow.transforms[1].scale.item() - 2.0) < 0.1  # 1 / the noise level


@pytest.fixture
def flow():
    return conditional_flow()


def test_missing_and_unexpected_contexts(flow):
    x = torch.randn(4, 2)
    with pytest.raises(TypeError, match=r"this flow is conditional: pass context= of shape \(batch, 3\)"):
        flow.log_prob(x)
    with pytest.raises(TypeError, match="conditional: pass context="):
        flow.sample(3)
    with pytest.raises(TypeError, match="conditional: pass context="):
        fk.fit(flow, x, steps=1, progress=False)
    plain = fk.RealNVP(2, num_couplings=2, hidden=4)
    with pytest.raises(TypeError, match="not conditional"):
        plain.log_prob(x, context=torch.randn(4, 3))
    with pytest.raises(TypeError, match="not conditional"):
        plain.sample(3, context=torch.randn(3, 3))
    with pytest.raises(TypeError, match=r"did you mean temperature=0.5"):
        plain.sample(3, 0.5)
    with pytest.raises(TypeError, match="not conditional"):
        fk.fit(plain, x, steps=1, context=torch.randn(4, 3), progress=False)
    with pytest.raises(TypeError, match="not conditional"):
        fk.Tanh()(x, torch.randn(4, 3))
    with pytest.raises(ValueError, match="is conditional: give the Flow context_shape"):
        fk.Flow([ConditionalShift()], fk.StandardNormal(2))


def test_contexts_of_the_wrong_shape_or_batch(flow):
    x = torch.randn(4, 2)
    with pytest.raises(ValueError, match=r"context has shape \(4, 2\), expected shape \(batch, 3\)"):
        flow.log_prob(x, torch.randn(4, 2))
    with pytest.raises(ValueError, match="batch size 3 but there are 4 samples"):
        flow.log_prob(x, torch.randn(3, 3))
    with pytest.raises(ValueError, match="batch size 2 but there are 5 samples"):
        flow.sample(5, context=torch.randn(2, 3))
    with pytest.raises(ValueError, match="batch size"):
        fk.fit(flow, x, steps=1, context=torch.randn(3, 3), progress=False)
    with pytest.raises(ValueError, match="context has shape"):
        fk.check_transform(flow, x, context=torch.randn(4, 3, 1))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_contexts(flow, bad):
    c = torch.randn(4, 3)
    c[1, 2] = bad
    with pytest.raises(fk.NonFiniteError, match="context contains 1 NaN or infinite"):
        flow.log_prob(torch.randn(4, 2), c)
    with pytest.raises(ValueError, match="context contains"):
        fk.fit(flow, torch.randn(4, 2), steps=1, context=c, progress=False)


def test_integer_labels_versus_float_contexts(flow):
    labels = label_flow()
    x = torch.randn(3, 2)
    with pytest.raises(TypeError, match=r"integer class labels in \[0, 3\).*context.long\(\)"):
        labels.log_prob(x, torch.tensor([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\), got values in \[0, 3\]"):
        labels.log_prob(x, torch.tensor([0, 1, 3]))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        labels.sample(2, context=torch.tensor(-1))
    with pytest.raises(TypeError, match=r"floating-point tensor, got dtype torch.int64.*context.float\(\)"):
        flow.log_prob(x, torch.zeros(3, 3, dtype=torch.int64))
    with pytest.raises(TypeError, match=r"NumPy array.*torch.as_tensor\(context, dtype=torch.float32\)"):
        flow.log_prob(x, np.zeros((3, 3)))
    with pytest.raises(TypeError, match=r"NumPy array.*dtype=torch.long"):
        labels.log_prob(x, np.zeros(3, dtype=int))
    with pytest.raises(ValueError, match=r"context_shape \(\)"):
        fk.Flow([], fk.StandardNormal(2), context_shape=(2,), context_classes=3)


def test_a_conditional_transform_called_alone_checks_its_context():
    t = ConditionalCoupling(3)
    x = torch.randn(4, 2)
    with pytest.raises(TypeError, match="ConditionalCoupling is conditional: pass context="):
        t(x)
    with pytest.raises(ValueError, match="batch size 2 but there are 4"):
        t(x, torch.randn(2, 3))
    z, _ = t(x, torch.randn(1, 3))  # one context for the whole batch
    assert z.shape == (4, 2)

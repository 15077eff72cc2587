"""fit_vi and importance sampling: exact identities and a fit that reaches its target."""

import math

import pytest
import torch

import flowkit as fk
from flowkit.vi import elbo, reverse_kl, sample_with_log_prob


def _scaled_normal(scale, shift=0.0, log_const=0.0):
    """Log-density of N(shift, scale^2 I) in 2-D, plus ``log_const``."""
    def log_prob(x):
        return (-0.5 * (((x - shift) / scale) ** 2).sum(1) - 2 * math.log(scale)
                - math.log(2 * math.pi) + log_const)
    return log_prob


def _random_flow(seed=0):
    torch.manual_seed(seed)
    flow = fk.RealNVP(2, num_couplings=4, hidden=16)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return flow.double().eval()


def test_samples_and_their_log_q_agree_with_the_normalizing_direction():
    flow = _random_flow()
    x, log_q = sample_with_log_prob(flow, 64, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(log_q, flow.log_prob(x), atol=1e-10)


def test_importance_of_the_target_itself_is_exact():
    flow = fk.RealNVP(2, num_couplings=2, hidden=8)  # starts as the identity: q = N(0, I)
    result = fk.importance(flow, _scaled_normal(1.0, log_const=1.7), 5000)
    assert result.log_Z == pytest.approx(1.7, abs=1e-5)
    assert result.ess == pytest.approx(5000, rel=1e-6)
    assert result.log_Z_stderr < 1e-5
    assert result.elbo == pytest.approx(1.7, abs=1e-5)


def test_ess_and_expectations_match_closed_forms():
    # q = N(0, I), p = N(0, s^2 I): E_q[w^2] = (s^-2 / sqrt(2/s^2 - 1))^2 in 2-D.
    s, n = 1.2, 200_000
    flow = fk.RealNVP(2, num_couplings=2, hidden=8)
    result = fk.importance(flow, _scaled_normal(s), n, seed=3)
    second_moment = (s ** -2 / math.sqrt(2 / s ** 2 - 1)) ** 2
    assert result.ess_fraction == pytest.approx(1 / second_moment, rel=0.02)
    assert result.log_Z == pytest.approx(0.0, abs=4 * result.log_Z_stderr + 1e-3)
    var = result.expectation(lambda x: x ** 2)
    assert var.shape == (2,)
    assert torch.allclose(var.double(), torch.full((2,), s * s, dtype=torch.float64), rtol=0.03)
    # KL(N(0,1) || N(0,s^2)) = log s + 1/(2 s^2) - 1/2 per dimension.
    exact_kl = 2 * (math.log(s) + 0.5 / s ** 2 - 0.5)
    kl, stderr = reverse_kl(flow, _scaled_normal(s), log_Z=0.0, n=n)
    assert kl == pytest.approx(exact_kl, abs=4 * stderr + 1e-4)
    assert elbo(flow, _scaled_normal(s), n) <= 0.0  # ELBO <= log Z


def test_fit_vi_recovers_a_shifted_stretched_gaussian():
    def log_target(x):  # N((1, -1), diag(0.25, 4)), normalised
        return (-0.5 * (((x - torch.tensor([1.0, -1.0])) / torch.tensor([0.5, 2.0])) ** 2).sum(1)
                - math.log(0.5 * 2.0) - math.log(2 * math.pi))

    torch.manual_seed(0)
    flow = fk.RealNVP(2, num_couplings=2, hidden=16)
    history = fk.fit_vi(flow, log_target, 400, batch_size=128, lr=5e-3, progress=False,
                        snapshot_every=100, cosine_schedule=True)
    assert history.steps == 400 and [s for s, _ in history.snapshots] == [0, 100, 200, 300, 400]
    assert history.loss[-1] < history.loss[0]
    kl, stderr = reverse_kl(flow, log_target, log_Z=0.0, n=20_000)
    assert kl < 0.02
    result = fk.importance(flow, log_target, 20_000)
    assert result.ess_fraction > 0.95
    assert abs(result.log_Z) < 0.01
    mean = result.expectation(lambda x: x)
    assert torch.allclose(mean, torch.tensor([1.0, -1.0]), atol=0.05)
    assert not flow.training


def test_fit_vi_is_seeded():
    losses = []
    for _ in range(2):
        torch.manual_seed(123)
        flow = fk.RealNVP(2, num_couplings=2, hidden=8)
        losses.append(fk.fit_vi(flow, fk.targets.U1.log_prob, 5, progress=False, seed=4).loss)
    assert losses[0] == losses[1]


def test_fit_vi_stops_on_nan_with_the_step_number():
    calls = []

    def log_target(x):
        calls.append(1)
        out = -0.5 * (x ** 2).sum(1)
        return out * float("nan") if len(calls) == 3 else out

    flow = fk.RealNVP(2, num_couplings=2, hidden=8)
    with pytest.raises(FloatingPointError, match="step 3.*log_target gave 256 non-finite"):
        fk.fit_vi(flow, log_target, 10, progress=False)


def test_fit_vi_and_importance_refuse_bad_arguments():
    flow = fk.RealNVP(2, num_couplings=2, hidden=8)
    with pytest.raises(ValueError, match=r"shape \(256,\)"):
        fk.fit_vi(flow, lambda x: -0.5 * x ** 2, 3, progress=False)
    with pytest.raises(TypeError, match="torch.Tensor"):
        fk.fit_vi(flow, lambda x: 0.0, 3, progress=False)
    with pytest.raises(TypeError, match="function"):
        fk.fit_vi(flow, "U1", 3, progress=False)
    with pytest.raises(TypeError, match="Flow"):
        fk.fit_vi(torch.nn.Linear(2, 2), fk.targets.U1, 3, progress=False)
    with pytest.raises(ValueError, match="lr"):
        fk.fit_vi(flow, fk.targets.U1, 3, lr=-1.0, progress=False)
    with pytest.raises(ValueError, match="at least 2"):
        fk.importance(flow, fk.targets.U1, 1)
    with pytest.raises(ValueError, match="rows"):
        fk.importance(flow, fk.targets.U1, 10).expectation(lambda x: x.sum())


def test_benchmark_runs_and_reports_json(capsys):
    import json

    from flowkit.benchmarks import vi as bench

    code = bench.main(["--targets", "U1", "--steps", "3", "--couplings", "2", "--hidden", "8"])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines[0]["threads"] == 1
    record = lines[1]
    assert record["target"] == "U1" and record["steps"] == 3
    assert record["log_Z_quadrature"] == pytest.approx(fk.targets.U1.log_Z, abs=1e-5)
    assert record["kl"] > bench.KL_TARGET and code == 1  # three steps cannot meet it
    assert not record["meets_quality_target"]

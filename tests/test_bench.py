"""The benchmark's code path, with tiny settings (no timing assertions)."""

import json
import math

import pytest
import torch

import flowkit as fk
from flowkit import bench
from flowkit.benchmarks import moons

TINY = dict(steps=15, train_size=1500, test_size=300, hidden=16, num_couplings=2,
            entropy_samples=1500, progress=False)


def test_moons_benchmark_reports_consistent_numbers():
    result = moons.moons(**TINY)
    for key in ("test_nll", "entropy", "kl_gap", "kl_gap_paired", "kl_gap_stderr",
                "ms_per_step", "seconds"):
        assert math.isfinite(result[key]), key
    assert result["kl_gap"] == pytest.approx(result["test_nll"] - result["entropy"], abs=2e-5)
    assert result["kl_gap_paired"] > 0  # 15 steps is far from the true density
    assert result["steps"] == 15 and result["batch_size"] == 256 and result["lr"] == 1e-3
    assert result["schedule"] == "cosine"
    assert result["kl_gap_met"] == (result["kl_gap"] <= moons.KL_GAP_TARGET)
    assert result["entropy"] == pytest.approx(1.0, abs=0.1)  # two moons at noise 0.1
    assert "compare" not in result


def test_default_model_is_the_specified_size():
    assert sum(p.numel() for p in fk.RealNVP(2, num_couplings=8, hidden=128).parameters()) == 139296
    args = moons.moons.__defaults__
    assert args[:4] == (3000, 256, 1e-3, 50_000)


def test_command_line_prints_json(capsys):
    code = bench.main(["moons", "--steps", "5", "--train-size", "800", "--test-size", "200",
                       "--hidden", "8", "--num-couplings", "2", "--entropy-samples", "800",
                       "--no-progress", "--constant-lr"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["steps"] == 5 and result["schedule"] == "constant"
    assert result["model"].startswith("fk.RealNVP(2, num_couplings=2, hidden=8")


def test_dispatcher_lists_and_refuses_unknown_benchmarks(capsys):
    assert "moons" in bench.available()
    assert bench.main([]) == 2 and "moons" in capsys.readouterr().out
    assert bench.main(["no_such_benchmark"]) == 2
    assert "unknown benchmark 'no_such_benchmark'" in capsys.readouterr().err


def test_bad_activation_is_refused():
    with pytest.raises(ValueError, match="activation must be one of"):
        moons.moons(activation="swishy", **TINY)


def test_comparison_loop_runs_without_other_libraries():
    assert "note" in moons.compare_step_time(torch.zeros(10, 2), libraries=[])
    flow = fk.RealNVP(2, num_couplings=2, hidden=8)
    loop = moons._training_loop(flow, flow.log_prob, fk.data.two_moons(300), 64, 1e-3, 0)
    before = [p.detach().clone() for p in flow.parameters()]
    times = [next(loop) for _ in range(3)]
    assert all(t > 0 for t in times)
    assert any(not torch.equal(a, b) for a, b in zip(before, flow.parameters()))


@pytest.mark.skipif(not moons._available_libraries(), reason="no comparison library installed")
def test_comparison_with_another_library():  # pragma: no cover - only where zuko/nflows exist
    result = moons.compare_step_time(fk.data.two_moons(2000), steps=10, block=5, hidden=16,
                                     num_couplings=2)
    assert result["flowkit"]["ms_per_step_median"] > 0

"""The flow-matching benchmark runs end to end (tiny settings; the real numbers come from the CLI)."""

import json

import pytest
import torch

from flowkit.benchmarks import flow_matching


@pytest.fixture(autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def test_main_prints_a_report_with_a_step_halving_check(capsys):
    previous = torch.get_num_threads()
    try:
        code = flow_matching.main(["--steps", "30", "--test-size", "300", "--ode-steps", "2",
                                   "--skip-digits"])
    finally:
        torch.set_num_threads(previous)
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    moons = report["moons"]
    assert report["threads"] == 1
    assert moons["train_steps"] == 30
    halving = moons["step_halving"]
    assert [row["ode_steps"] for row in halving][:2] == [2, 4]
    assert moons["ode_steps"] == halving[-1]["ode_steps"]
    # the loop stops at the first step count whose halving changed the gap by < 0.001, or at the cap
    changes = [abs(b["kl_gap"] - a["kl_gap"]) for a, b in zip(halving, halving[1:])]
    assert changes[-1] < 1e-3 or moons["ode_steps"] >= 160
    assert all(change >= 1e-3 for change in changes[:-1])
    assert moons["kl_gap"] > 0  # 30 steps of training are far from the data


def test_digits_reports_bits_per_dim_beside_the_realnvp():
    result = flow_matching.digits(steps=2, hidden=8, ode_steps=1, test_images=24)
    assert result["fm_divergence"] == "exact"
    assert 0 < result["realnvp_bits_per_dim"] < result["fm_bits_per_dim_rk4_1"]
    assert "fm_bits_per_dim_rk4_2" in result and result["test_images"] == 24

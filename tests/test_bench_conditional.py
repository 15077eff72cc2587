"""The conditional benchmark runs and reports every number it promises (targets are not asserted)."""

import json

from flowkit.benchmarks import conditional


def test_conditional_benchmark_smoke(capsys):
    assert conditional.main(["--only", "moons", "--moons-steps", "20"]) == 0
    result = json.loads(capsys.readouterr().out)["moons"]
    gaps = result["kl_gap_by_noise"]
    assert set(gaps) == {f"{c:.2f}" for c in conditional.TRAINED_NOISE + conditional.BETWEEN_NOISE
                         + conditional.OUTSIDE_NOISE}
    # A KL divergence is never negative beyond Monte Carlo error, and levels outside the
    # training range are farther from the truth than those inside it.
    assert all(g > -0.01 for g in gaps.values())
    assert result["kl_gap_outside_range"] > result["kl_gap_mean_training_range"]
    assert result["met"] == (result["kl_gap_mean_training_range"] <= conditional.MOONS_KL_TARGET)

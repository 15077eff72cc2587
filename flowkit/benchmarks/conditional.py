"""Benchmark for lesson 08: conditional flows (prints JSON).

    python -m flowkit.bench conditional                 # everything (a few minutes on a CPU)
    python -m flowkit.bench conditional --only moons    # one part: moons, digits, completion, tones
    python -m flowkit.bench conditional --moons-steps 500   # a quick run

Targets (measured, not asserted by the unit tests):

* conditional moons: mean KL gap over the training range of noise levels <= 0.04 nats;
* class-conditional digits: test bits/dim below the unconditional twin trained with the
  same budget (both shipped checkpoints, built by scripts/train_conditional_digits.py);
* generative classifier (Bayes' rule on the class-conditional flow): test accuracy >= 0.90,
  reported beside a logistic regression on the same split.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time

import torch

MOONS_KL_TARGET = 0.04
ACCURACY_TARGET = 0.90
TRAINED_NOISE = [0.08, 0.10, 0.12, 0.14, 0.16, 0.18, 0.20]
BETWEEN_NOISE = [0.09, 0.11, 0.13, 0.15, 0.17, 0.19]
OUTSIDE_NOISE = [0.03, 0.05, 0.06, 0.24, 0.28, 0.32]


def train_conditional_moons(steps: int = 3000, hidden: int = 64, num_couplings: int = 8, seed: int = 0,
                            progress: bool = False):
    """The lesson's conditional moons flow: one ConditionalRealNVP for every trained noise level."""
    import flowkit as fk
    from flowkit.conditional import ConditionalRealNVP, Standardize
    from flowkit.conditional_data import moons_at_noise_levels

    torch.manual_seed(seed)
    x, c = moons_at_noise_levels(60_000, TRAINED_NOISE, seed=seed)
    flow = ConditionalRealNVP(2, 1, num_couplings=num_couplings, hidden=hidden,
                              embedding=Standardize(0.14, 0.04))
    history = fk.fit(flow, x, steps, batch_size=256, lr=2e-3, context=c, cosine_schedule=True,
                     seed=seed, progress=progress)
    return flow, history


def moons(steps: int, seed: int = 0, samples: int = 4000) -> dict:
    from flowkit.conditional_data import moons_kl_gap

    flow, history = train_conditional_moons(steps, seed=seed)
    gap = {f"{c:.2f}": round(moons_kl_gap(flow, c, n=samples), 4)
           for c in sorted(TRAINED_NOISE + BETWEEN_NOISE + OUTSIDE_NOISE)}
    inside = [gap[f"{c:.2f}"] for c in TRAINED_NOISE + BETWEEN_NOISE]
    mean_inside = sum(inside) / len(inside)
    return {"steps": steps, "train_seconds": round(history.seconds, 1),
            "trained_noise_levels": TRAINED_NOISE, "kl_gap_by_noise": gap,
            "kl_gap_trained_levels": round(sum(gap[f"{c:.2f}"] for c in TRAINED_NOISE) / len(TRAINED_NOISE), 4),
            "kl_gap_between_levels": round(sum(gap[f"{c:.2f}"] for c in BETWEEN_NOISE) / len(BETWEEN_NOISE), 4),
            "kl_gap_outside_range": round(sum(gap[f"{c:.2f}"] for c in OUTSIDE_NOISE) / len(OUTSIDE_NOISE), 4),
            "kl_gap_mean_training_range": round(mean_inside, 4),
            "target": MOONS_KL_TARGET, "met": bool(mean_inside <= MOONS_KL_TARGET)}


def digits(draws: int = 8) -> dict:
    import flowkit as fk
    from flowkit.conditional_data import bits_per_dim, class_log_likelihoods, logistic_regression_accuracy

    conditional = fk.load_pretrained("digits-conditional-realnvp")
    twin = fk.load_pretrained("digits-same-budget-realnvp")
    test, labels = fk.data.digits("test", return_labels=True)
    start = time.perf_counter()
    bpd_conditional = bits_per_dim(conditional, test, labels, draws=draws, seed=2)
    bpd_twin = bits_per_dim(twin, test, draws=draws, seed=2)
    log_lik = class_log_likelihoods(conditional, test, draws=4, seed=3)
    accuracy = float((log_lik.argmax(dim=1) == labels).double().mean())
    logistic, _ = logistic_regression_accuracy()
    return {"test_bits_per_dim_conditional": round(bpd_conditional, 4),
            "test_bits_per_dim_unconditional_same_budget": round(bpd_twin, 4),
            "bits_per_dim_saved": round(bpd_twin - bpd_conditional, 4),
            "label_worth_at_most_bits_per_dim": round(math.log2(10) / 64, 4),
            "conditional_below_unconditional": bool(bpd_conditional < bpd_twin),
            "generative_classifier_test_accuracy": round(accuracy, 4),
            "logistic_regression_test_accuracy": round(logistic, 4),
            "accuracy_target": ACCURACY_TARGET, "accuracy_met": bool(accuracy >= ACCURACY_TARGET),
            "training": {name: flow.metadata.get("args") for name, flow in
                         (("conditional", conditional), ("unconditional", twin))},
            "eval_seconds": round(time.perf_counter() - start, 1)}


def completion(draws: int = 8) -> dict:
    import flowkit as fk
    from flowkit.conditional_data import bits_per_dim, degrade

    flow = fk.load_pretrained("digits-completion-realnvp")
    test = fk.data.digits("test")
    return {"bits_per_missing_dim_top_half": round(
                bits_per_dim(flow, test, degrade(test, "top"), draws=draws, seed=2, num_dims=32), 4),
            "bits_per_dim_given_4x4_copy": round(
                bits_per_dim(flow, test, degrade(test, "lowres"), draws=draws, seed=2), 4),
            "note": "whole-image code length given the context, divided by the hidden pixels (32 for the "
                    "top half) or by all 64 (the 4x4 copy hides part of every pixel); an upper bound"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flowkit.bench conditional", description=__doc__.split("\n")[0])
    parser.add_argument("--only", choices=["moons", "digits", "completion"], action="append")
    parser.add_argument("--moons-steps", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    parts = args.only or ["moons", "digits", "completion"]
    result = {"benchmark": "conditional", "threads": torch.get_num_threads(), "torch": torch.__version__,
              "python": platform.python_version()}
    if "moons" in parts:
        result["moons"] = moons(args.moons_steps, seed=args.seed)
    if "digits" in parts:
        result["digits"] = digits()
    if "completion" in parts:
        result["completion"] = completion()
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

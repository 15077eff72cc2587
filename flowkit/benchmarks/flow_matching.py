"""Flow matching: how close to the true moons density, how fast, and bits/dim on digits.

    python -m flowkit.benchmarks.flow_matching               # moons (12,000 steps) and digits
    python -m flowkit.benchmarks.flow_matching --steps 24000 # the longer moons budget
    python -m flowkit.benchmarks.flow_matching --skip-digits

``moons`` trains ``fk.VelocityMLP(2, hidden=128)`` (3 SiLU layers) by flow matching on 50,000
two-moons points (noise 0.1, standardised), batch 256, Adam with a cosine schedule, then scores
fresh test points through the ODE with the exact divergence and RK4. The number of solver
steps starts at ``--ode-steps`` and doubles until halving the step changes the KL gap by less
than 0.001 nats. It prints one JSON object with

* ``kl_gap``: the mean of ``log p(x) - log q(x)`` over the test points (an estimate of
  ``KL(data || model)``), with ``kl_gap_stderr``, at the converged step count;
* ``step_halving``: the gap at each solver step count tried;
* ``train_seconds`` (wall clock), ``train_cpu_seconds`` (CPU time of this process, which on
  a machine shared with other work is close to what an idle core would take), ``train_steps``,
  ``ms_per_step``: one CPU thread unless ``--threads``.

Targets: ``kl_gap <= 0.05`` nats after at most 60 s of training on one thread, and
``<= 0.03`` with a longer budget (``--steps 24000``). Wall time depends on the machine and
on what else it runs; the report says which thread count and how many steps.

``digits`` trains ``fk.VelocityMLP((1, 8, 8), hidden=512)`` by flow matching on the 8x8 digits
(uniformly dequantized, standardised per pixel) and reports test bits/dim through the ODE
(exact divergence, RK4) beside the pretrained RealNVP's (``fk.load_pretrained("digits-realnvp")``),
both on the same dequantized test images.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time

import torch

from .. import data
from ..continuous import ContinuousFlow, VelocityMLP, fit_flow_matching
from ..images import dequantized_bits_per_dim
from ..pretrained import load_pretrained

__all__ = ["moons", "digits", "main", "KL_GAP_TARGET", "KL_GAP_LONG_TARGET"]

KL_GAP_TARGET = 0.05       # nats, after <= 60 s of training on one thread
KL_GAP_LONG_TARGET = 0.03  # nats, with a longer budget


def moons_flow(x_train: torch.Tensor, hidden: int = 128) -> ContinuousFlow:
    """The benchmark's (and lesson 10's) moons model: standardised coordinates, RK4."""
    field = VelocityMLP(2, hidden=hidden, num_layers=3)
    return ContinuousFlow(field, 2, steps=20, solver="rk4", divergence="exact",
                          loc=x_train.mean(0), scale=x_train.std(0))


def kl_gap(flow: ContinuousFlow, test: torch.Tensor, steps: int, batch_size: int = 2500) -> tuple[float, float]:
    """Mean and standard error of ``log p(x) - log q(x)`` over ``test`` (exact divergence, RK4)."""
    true = data.two_moons_log_prob(test)
    with torch.no_grad():
        model = torch.cat([flow.log_prob(b, steps=steps, solver="rk4", divergence="exact")
                           for b in test.split(batch_size)])
    diff = (true - model).double()
    return diff.mean().item(), (diff.std() / math.sqrt(len(diff))).item()


def moons(steps: int = 12_000, lr: float = 1e-2, batch_size: int = 256, test_size: int = 10_000,
          ode_steps: int = 10, max_ode_steps: int = 160, seed: int = 0, progress: bool = False) -> dict:
    """Train flow matching on two moons and measure its KL gap; see the module docstring."""
    x_train = data.two_moons(50_000, seed=seed + 1)
    test = data.two_moons(test_size, seed=seed + 1000)
    torch.manual_seed(seed)
    flow = moons_flow(x_train)
    cpu_start = time.process_time()
    history = fit_flow_matching(flow, x_train, steps, batch_size=batch_size, lr=lr,
                                cosine_schedule=True, seed=seed, progress=progress)
    cpu_seconds = time.process_time() - cpu_start
    halving = []
    n = ode_steps
    gap, err = kl_gap(flow, test, n)
    halving.append({"ode_steps": n, "kl_gap": gap})
    while n < max_ode_steps:
        n *= 2
        finer, err_finer = kl_gap(flow, test, n)
        halving.append({"ode_steps": n, "kl_gap": finer})
        converged = abs(finer - gap) < 1e-3
        gap, err = finer, err_finer
        if converged:
            break
    return {
        "kl_gap": round(gap, 4),
        "kl_gap_stderr": round(err, 4),
        "ode_steps": n,
        "step_halving": [{k: (round(v, 5) if isinstance(v, float) else v) for k, v in row.items()}
                         for row in halving],
        "step_halving_change": round(abs(halving[-1]["kl_gap"] - halving[-2]["kl_gap"]), 5)
        if len(halving) > 1 else None,
        "train_steps": steps,
        "train_seconds": round(history.seconds, 1),
        "train_cpu_seconds": round(cpu_seconds, 1),
        "ms_per_step": round(1000 * history.seconds / max(steps, 1), 2),
        "lr": lr,
        "batch_size": batch_size,
        "test_size": test_size,
        "final_fm_loss": round(sum(history.loss[-100:]) / len(history.loss[-100:]), 4),
        "target": KL_GAP_TARGET,
        "meets_target": bool(gap <= KL_GAP_TARGET and min(history.seconds, cpu_seconds) <= 60),
        "meets_long_target": bool(gap <= KL_GAP_LONG_TARGET),
    }


def digits(steps: int = 2000, lr: float = 2e-3, hidden: int = 512, batch_size: int = 256,
           ode_steps: int = 10, seed: int = 0, progress: bool = False,
           test_images: int | None = None) -> dict:
    """Flow matching on the 8x8 digits; test bits/dim through the ODE beside the RealNVP's.

    ``test_images`` scores only the first that many test images (all 360 by default).
    """
    train, test = data.digits("train"), data.digits("test")
    if test_images is not None:
        test = test[:test_images]
    scale_data = data.dequantize(train, generator=torch.Generator().manual_seed(seed))
    torch.manual_seed(seed)
    flow = ContinuousFlow(VelocityMLP((1, 8, 8), hidden=hidden, num_layers=3), (1, 8, 8),
                          steps=ode_steps, divergence="exact",
                          loc=scale_data.mean(0), scale=scale_data.std(0))
    cpu_start = time.process_time()
    history = fit_flow_matching(flow, train, steps, batch_size=batch_size, lr=lr,
                                cosine_schedule=True, preprocess=data.dequantize, seed=seed,
                                progress=progress)
    cpu_seconds = time.process_time() - cpu_start
    result = {"train_steps": steps, "train_seconds": round(history.seconds, 1),
              "train_cpu_seconds": round(cpu_seconds, 1), "hidden": hidden,
              "fm_divergence": "exact", "fm_solver": "rk4"}
    start = time.perf_counter()
    with torch.no_grad():
        for n in (ode_steps, 2 * ode_steps):
            flow.steps = n
            result[f"fm_bits_per_dim_rk4_{n}"] = round(
                dequantized_bits_per_dim(flow, test, draws=1, seed=seed + 2, batch_size=120), 4)
        result["fm_eval_seconds"] = round(time.perf_counter() - start, 1)
        result["realnvp_bits_per_dim"] = round(
            dequantized_bits_per_dim(load_pretrained("digits-realnvp"), test, draws=1, seed=seed + 2), 4)
    result["test_images"] = int(test.shape[0])
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flowkit.benchmarks.flow_matching",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=12_000, help="moons training steps")
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--ode-steps", type=int, default=10, help="first RK4 step count tried")
    parser.add_argument("--test-size", type=int, default=10_000)
    parser.add_argument("--digits-steps", type=int, default=2000)
    parser.add_argument("--skip-digits", action="store_true")
    parser.add_argument("--skip-moons", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--progress", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    report = {"python": platform.python_version(), "torch": torch.__version__, "threads": args.threads}
    if not args.skip_moons:
        report["moons"] = moons(steps=args.steps, lr=args.lr, test_size=args.test_size,
                                ode_steps=args.ode_steps, seed=args.seed, progress=args.progress)
    if not args.skip_digits:
        report["digits"] = digits(steps=args.digits_steps, seed=args.seed, progress=args.progress)
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

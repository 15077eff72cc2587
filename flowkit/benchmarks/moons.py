"""The two-moons benchmark: density quality against the exact density, and training speed.

    python -m flowkit.bench moons                 # the full benchmark (a few minutes)
    python -m flowkit.bench moons --steps 300     # a quick run
    python -m flowkit.bench moons --compare       # also time another library's RealNVP

``moons`` trains the default ``fk.RealNVP(2, num_couplings=8, hidden=128)`` on 50,000
two-moons points (noise 0.1) with batch 256, Adam at lr 1e-3 for 3,000 steps, then scores
it on 20,000 fresh points against the exact density and prints one JSON object:

* ``test_nll``: mean negative log-likelihood of the fresh points (nats per point);
* ``entropy``: the data's differential entropy ``H`` (the best any model can score);
* ``kl_gap``: ``test_nll - entropy``, an estimate of ``KL(data || model)``;
* ``kl_gap_paired`` and ``kl_gap_stderr``: the same gap measured as the mean of
  ``log p(x) - log q(x)`` over the test points, with its standard error (lower noise);
* ``ms_per_step`` and ``seconds``: training speed as ``fk.fit`` runs it.

Targets (2-core CPU): ``kl_gap <= 0.03`` nats, and a training step no slower than an
established flow library's RealNVP of the same size. ``--compare`` times that library
(zuko, or nflows) side by side if it happens to be importable; it is never a flowkit
dependency. Both models run through the same training loop in alternating blocks, so
a busy machine slows both alike.

The command line runs torch on one thread unless ``--threads`` says otherwise: for a
model this small a second thread buys nothing, and on a machine shared with other work
threads that wait on each other can make a step ten times slower.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import sys
import time
from typing import Callable

import torch
from torch import nn

from .. import data
from ..models import RealNVP
from ..errors import NonFiniteError
from ..train import fit, mean_nll, minibatches
from ..transforms import CHECK_MODE

__all__ = ["moons", "compare_step_time", "main", "KL_GAP_TARGET"]

KL_GAP_TARGET = 0.03  # nats

_ACTIVATIONS = {"relu": nn.ReLU, "silu": nn.SiLU, "elu": nn.ELU, "gelu": nn.GELU,
                "tanh": nn.Tanh, "leaky_relu": nn.LeakyReLU}


# ----------------------------------------------------------------------------------
# Side-by-side step time against another library (optional)
# ----------------------------------------------------------------------------------


def _zuko_model(num_couplings: int, hidden: int):
    import zuko  # noqa: F401  (only if installed; never a course dependency)

    flow = zuko.flows.RealNVP(2, transforms=num_couplings, hidden_features=[hidden, hidden])

    def log_prob(x):
        return flow().log_prob(x)

    return flow, log_prob, f"zuko {zuko.__version__} RealNVP(2, transforms={num_couplings}, hidden_features=[{hidden}, {hidden}])"


def _nflows_model(num_couplings: int, hidden: int):
    import nflows  # noqa: F401
    from nflows.distributions.normal import StandardNormal
    from nflows.flows.base import Flow as NFlow
    from nflows.nn.nets import MLP
    from nflows.transforms.base import CompositeTransform
    from nflows.transforms.coupling import AffineCouplingTransform

    class Net(nn.Module):  # nflows calls transform_net(inputs, context)
        def __init__(self, in_features, out_features):
            super().__init__()
            self.mlp = MLP((in_features,), (out_features,), hidden_sizes=[hidden, hidden],
                           activation=torch.relu)

        def forward(self, inputs, context=None):
            return self.mlp(inputs)

    layers = [AffineCouplingTransform(torch.tensor([1, 0] if i % 2 == 0 else [0, 1]), Net)
              for i in range(num_couplings)]
    flow = NFlow(CompositeTransform(layers), StandardNormal([2]))
    from importlib.metadata import version as _version

    version = _version("nflows")
    return flow, flow.log_prob, (f"nflows {version} AffineCouplingTransform x {num_couplings}, "
                                 f"MLP [{hidden}, {hidden}]")


_LIBRARIES: dict[str, Callable] = {"zuko": _zuko_model, "nflows": _nflows_model}


def _available_libraries() -> list[str]:
    found = []
    for name in _LIBRARIES:
        try:
            __import__(name)
        except Exception:
            continue
        found.append(name)
    return found


def _training_loop(module: nn.Module, log_prob: Callable, x: torch.Tensor, batch_size: int,
                   lr: float, seed: int):
    """A generator: each ``next()`` runs one training step as ``fk.fit`` does; yields seconds."""
    optimizer = torch.optim.Adam(module.parameters(), lr=lr)
    batches = minibatches(x, batch_size=batch_size, generator=torch.Generator().manual_seed(seed))
    while True:
        start = time.perf_counter()
        (batch,) = next(batches)
        loss = -log_prob(batch).mean()
        if not torch.isfinite(loss):
            raise NonFiniteError("the loss became non-finite while timing")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(module.parameters(), 10.0)
        optimizer.step()
        loss.item()
        yield time.perf_counter() - start


def compare_step_time(x: torch.Tensor, steps: int = 400, block: int = 25, batch_size: int = 256,
                      lr: float = 1e-3, num_couplings: int = 8, hidden: int = 128,
                      activation: str = "relu", libraries: list[str] | None = None,
                      seed: int = 0, check_cost: bool = False) -> dict:
    """Median milliseconds per training step: flowkit against each importable library.

    Every model runs the same loop (batch, NLL, backward, grad-norm clip, Adam step) in
    alternating blocks of ``block`` steps after a warm-up, so machine load hits all alike.
    ``check_cost=True`` adds flowkit with every layer checking its input and output for
    NaN (what a Flow did before it checked once per call), to measure what that costs.
    """
    libraries = _available_libraries() if libraries is None else libraries
    if not libraries and not check_cost:
        return {"note": "no comparison library importable (pip install zuko, in a separate venv)"}
    torch.manual_seed(seed)
    fk_flow = RealNVP(2, num_couplings=num_couplings, hidden=hidden,
                      activation=_ACTIVATIONS[activation])
    fk_flow.train()
    contenders = {"flowkit": (_training_loop(fk_flow, fk_flow.log_prob, x, batch_size, lr, seed),
                              f"flowkit RealNVP(2, num_couplings={num_couplings}, hidden={hidden})")}
    if check_cost:
        torch.manual_seed(seed)
        per_layer = RealNVP(2, num_couplings=num_couplings, hidden=hidden,
                            activation=_ACTIVATIONS[activation]).train()

        def log_prob_checking_each_layer(batch):
            token = CHECK_MODE.set("full")
            try:
                return per_layer.log_prob(batch)
            finally:
                CHECK_MODE.reset(token)

        contenders["flowkit_checks_per_layer"] = (
            _training_loop(per_layer, log_prob_checking_each_layer, x, batch_size, lr, seed),
            "the same flowkit RealNVP, every layer checking its input and output for NaN")
    for name in libraries:
        module, log_prob, label = _LIBRARIES[name](num_couplings, hidden)
        module.train()
        params = sum(p.numel() for p in module.parameters())
        contenders[name] = (_training_loop(module, log_prob, x, batch_size, lr, seed),
                            f"{label}, {params} parameters")
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for loop, _ in contenders.values():  # warm-up
        for _ in range(20):
            next(loop)
    done = 0
    while done < steps:
        for name, (loop, _) in contenders.items():
            times[name] += [next(loop) for _ in range(block)]
        done += block
    fk_params = sum(p.numel() for p in fk_flow.parameters())
    out = {"steps_each": done, "flowkit_parameters": fk_params}
    fk_ms = 1000 * statistics.median(times["flowkit"])
    for name, (_, label) in contenders.items():
        ms = 1000 * statistics.median(times[name])
        out[name] = {"model": label, "ms_per_step_median": round(ms, 3)}
        if name != "flowkit":
            out[name]["flowkit_speedup"] = round(ms / fk_ms, 3)
    return out


# ----------------------------------------------------------------------------------
# The moons benchmark
# ----------------------------------------------------------------------------------


def moons(steps: int = 3000, batch_size: int = 256, lr: float = 1e-3, train_size: int = 50_000,
          test_size: int = 20_000, noise: float = 0.1, num_couplings: int = 8, hidden: int = 128,
          activation: str = "relu", cosine_schedule: bool = True, entropy_samples: int = 100_000,
          seed: int = 0, progress: bool = True, compare: bool = False,
          compare_steps: int = 600, check_cost: bool = False) -> dict:
    """Train the default RealNVP on two moons and score it against the exact density."""
    if activation not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
    torch.manual_seed(seed)
    x = data.two_moons(train_size, noise=noise, seed=seed)
    test = data.two_moons(test_size, noise=noise, seed=seed + 1_000_003)
    flow = RealNVP(2, num_couplings=num_couplings, hidden=hidden,
                   activation=_ACTIVATIONS[activation])
    history = fit(flow, x, steps, batch_size=batch_size, lr=lr, seed=seed,
                  cosine_schedule=cosine_schedule, progress=progress)

    test_nll = mean_nll(flow, test)
    entropy = data.two_moons_entropy(noise, n=entropy_samples)
    with torch.no_grad():
        log_p = data.two_moons_log_prob(test.double(), noise=noise)
        log_q = torch.cat([flow.log_prob(b) for b in test.split(4096)]).double()
    gap = log_p - log_q
    result = {
        "benchmark": "moons",
        "model": f"fk.RealNVP(2, num_couplings={num_couplings}, hidden={hidden}, "
                 f"activation={_ACTIVATIONS[activation].__name__})",
        "parameters": sum(p.numel() for p in flow.parameters()),
        "train_size": train_size, "test_size": test_size, "noise": noise,
        "steps": steps, "batch_size": batch_size, "lr": lr,
        "schedule": "cosine" if cosine_schedule else "constant",
        "test_nll": round(test_nll, 5),
        "entropy": round(entropy, 5),
        "kl_gap": round(test_nll - entropy, 5),
        "kl_gap_paired": round(gap.mean().item(), 5),
        "kl_gap_stderr": round(gap.std().item() / math.sqrt(max(len(gap), 1)), 5),
        "kl_gap_target": KL_GAP_TARGET,
        "kl_gap_met": bool(test_nll - entropy <= KL_GAP_TARGET),
        "final_train_nll_last100": round(sum(history.loss[-100:]) / max(len(history.loss[-100:]), 1), 5),
        "ms_per_step": round(1000 * history.seconds / max(steps, 1), 3),
        "seconds": round(history.seconds, 2),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    if compare or check_cost:
        result["compare"] = compare_step_time(x, steps=compare_steps, batch_size=batch_size, lr=lr,
                                              num_couplings=num_couplings, hidden=hidden,
                                              activation=activation, seed=seed,
                                              libraries=None if compare else [], check_cost=check_cost)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flowkit.bench moons",
                                     description="the two-moons benchmark (prints JSON)")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--train-size", type=int, default=50_000)
    parser.add_argument("--test-size", type=int, default=20_000)
    parser.add_argument("--noise", type=float, default=0.1)
    parser.add_argument("--num-couplings", type=int, default=8)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--activation", choices=sorted(_ACTIVATIONS), default="relu")
    parser.add_argument("--constant-lr", action="store_true",
                        help="keep lr constant instead of the cosine schedule")
    parser.add_argument("--entropy-samples", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: a model this small gains nothing from "
                             "more, and threads stall badly on a busy machine); 0 = torch's default")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--compare", action="store_true",
                        help="also time zuko / nflows RealNVP of the same size, if importable")
    parser.add_argument("--compare-steps", type=int, default=600)
    parser.add_argument("--check-cost", action="store_true",
                        help="also time flowkit with NaN checks in every layer instead of once per Flow call")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    result = moons(steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                   train_size=args.train_size, test_size=args.test_size, noise=args.noise,
                   num_couplings=args.num_couplings, hidden=args.hidden,
                   activation=args.activation, cosine_schedule=not args.constant_lr,
                   entropy_samples=args.entropy_samples, seed=args.seed,
                   progress=not args.no_progress, compare=args.compare,
                   compare_steps=args.compare_steps, check_cost=args.check_cost)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

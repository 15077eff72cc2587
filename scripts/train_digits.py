"""Train the pretrained digits model shipped as flowkit/checkpoints/digits-realnvp.pt.

    python scripts/train_digits.py                 # the shipped settings: 6,000 steps
    python scripts/train_digits.py --steps 200 --out /tmp/quick.pt   # a smoke test

The defaults are the settings of the shipped checkpoint: a multi-scale ImageRealNVP with
rational-quadratic spline couplings and a variational dequantizer, trained on training
digits dequantized afresh every batch (half of each batch shifted at random by up to one
pixel), with an exponential moving average of the weights.

Model selection and the final refit: the settings were chosen by validation bits/dim with
``--no-train-on-val`` (train split only; keeps the averaged weights with the best
validation score). The shipped model is then refitted with the same settings on the train
and validation splits together (``--train-on-val``, the default), keeping the last averaged
weights. Either way the test split is used once, at the end, to report test bits/dim
(averaged over 8 noise draws); it is never used for training or model selection.
Seeded: the same arguments on the same machine give the same weights (CPU float arithmetic
may differ slightly across machines). Prints the checkpoint's SHA-256; copy it into
flowkit/pretrained.py (PRETRAINED).
"""

from __future__ import annotations

import argparse
import copy
import math
import time
from pathlib import Path

import torch

import flowkit as fk
from flowkit.images import ImageRealNVP, dequantized_bits_per_dim
from flowkit.pretrained import CHECKPOINT_DIR, save_checkpoint, load_checkpoint


def shift_augment(batch: torch.Tensor, generator: torch.Generator, max_shift: int) -> torch.Tensor:
    """Shift each integer image by up to ``max_shift`` pixels (blank fill); keeps levels integer."""
    if max_shift == 0:
        return batch
    n, _, h, w = batch.shape
    padded = torch.nn.functional.pad(batch, (max_shift,) * 4)
    dy = torch.randint(0, 2 * max_shift + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * max_shift + 1, (n,), generator=generator)
    out = torch.empty_like(batch)
    for i in range(n):
        out[i] = padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=6000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--weight-decay", type=float, default=0.0)
    parser.add_argument("--hidden", type=int, default=48)
    parser.add_argument("--num-blocks", type=int, default=1)
    parser.add_argument("--num-scales", type=int, default=2)
    parser.add_argument("--couplings", type=int, default=4)
    parser.add_argument("--final-couplings", type=int, default=6)
    parser.add_argument("--alpha", type=float, default=0.05)
    parser.add_argument("--dropout", type=float, default=0.0, help="dropout in the conditioners (training only)")
    parser.add_argument("--dequantizer-bins", type=int, default=16,
                        help="spline bins of the variational dequantizer (0: uniform dequantization)")
    parser.add_argument("--dequantizer-hidden", type=int, default=64)
    parser.add_argument("--spline-bins", type=int, default=8,
                        help="rational-quadratic spline couplings with this many bins (0: affine couplings)")
    parser.add_argument("--shift", type=int, default=1, help="augmentation: random shifts of up to this many pixels")
    parser.add_argument("--shift-prob", type=float, default=0.5, help="fraction of each batch that is shifted")
    parser.add_argument("--ema", type=float, default=0.998,
                        help="keep an exponential moving average of the weights with this decay "
                             "(e.g. 0.998) and validate/save the averaged weights; 0 turns it off")
    parser.add_argument("--train-on-val", action=argparse.BooleanOptionalAction, default=True,
                        help="final refit: train on train + val and keep the last (averaged) weights; "
                             "the validation numbers printed are then not held out")
    parser.add_argument("--val-every", type=int, default=200)
    parser.add_argument("--patience", type=int, default=8, help="validations without improvement before stopping")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is reproducible and fast on a busy machine)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=CHECKPOINT_DIR / "digits-realnvp.pt")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    train, val, test = fk.data.digits("train"), fk.data.digits("val"), fk.data.digits("test")
    if args.train_on_val:
        train = torch.cat([train, val])
    flow = ImageRealNVP(shape=(1, 8, 8), levels=17, num_scales=args.num_scales, couplings=args.couplings,
                        final_couplings=args.final_couplings, hidden=args.hidden,
                        num_blocks=args.num_blocks, alpha=args.alpha, dropout=args.dropout,
                        dequantizer_bins=args.dequantizer_bins, dequantizer_hidden=args.dequantizer_hidden,
                        spline_bins=args.spline_bins)
    print(f"ImageRealNVP with {sum(p.numel() for p in flow.parameters()):,} parameters; config {flow.config}")

    def augment_and_dequantize(batch: torch.Tensor) -> torch.Tensor:
        if args.shift:
            chosen = torch.rand(len(batch), generator=generator) < args.shift_prob
            batch = batch.clone()
            batch[chosen] = shift_augment(batch[chosen], generator, args.shift)
        return fk.data.dequantize(batch, 17, generator=generator)

    best = {"bpd": math.inf, "step": 0, "state": None, "bad": 0, "last": 0}
    start = time.perf_counter()

    def validate(step: int, live, history, loss: float) -> bool:
        best["last"] = step
        if step % args.val_every and step != args.steps:
            return False
        scored = live if history.averaged is None else history.averaged
        val_bpd = dequantized_bits_per_dim(scored, val, draws=4, seed=1)
        improved = val_bpd < best["bpd"] or (args.train_on_val and step == args.steps)
        if improved:
            best.update(bpd=val_bpd, step=step, state=copy.deepcopy(scored.state_dict()), bad=0)
        else:
            best["bad"] += 1
        print(f"step {step:5d}  {time.perf_counter() - start:7.1f}s  lr {schedule(step - 1) * args.lr:.2e}  "
              f"train batch {fk.metrics.nats_to_bits(loss / 64):.3f}  val {val_bpd:.4f} bits/dim{'  *' if improved else ''}",
              flush=True)
        if best["bad"] >= args.patience and not args.train_on_val:
            print(f"no improvement in {args.patience} validations: stopping early")
            return True
        return False

    schedule = fk.warmup_cosine(args.steps, warmup=min(200, args.steps // 10))
    fk.fit(flow, train, args.steps, batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
           clip_grad=50.0, seed=args.seed, progress=False, preprocess=augment_and_dequantize,
           lr_schedule=schedule, ema=args.ema or None, callback=validate)
    step = best["last"]
    best = (best["bpd"], best["step"], best["state"])
    seconds = time.perf_counter() - start
    flow.load_state_dict(best[2])
    flow.eval()
    test_bpd = dequantized_bits_per_dim(flow, test, draws=8, seed=2)
    kept = "last" if args.train_on_val else "best"
    print(f"{kept} validation {best[0]:.4f} bits/dim at step {best[1]}"
          f"{' (val was trained on)' if args.train_on_val else ''}; training took {seconds / 60:.1f} min")
    print(f"TEST bits/dim (8 noise draws): {test_bpd:.4f}   (uniform model: log2(17) = {math.log2(17):.4f})")
    metadata = {"val_bits_per_dim": round(best[0], 4), "val_held_out": not args.train_on_val,
                "test_bits_per_dim": round(test_bpd, 4),
                "best_step": best[1], "steps_run": step, "train_seconds": round(seconds, 1),
                "script": "scripts/train_digits.py", "args": {k: str(v) for k, v in vars(args).items()}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    digest = save_checkpoint(flow, args.out, metadata)
    reloaded = load_checkpoint(args.out, expected_sha256=digest)
    check = dequantized_bits_per_dim(reloaded, test, draws=8, seed=2)
    assert abs(check - test_bpd) < 1e-4, (check, test_bpd)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB)")
    print(f"sha256 {digest}")


if __name__ == "__main__":
    main()

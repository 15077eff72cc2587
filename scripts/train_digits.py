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
    optimizer = torch.optim.Adam(flow.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    warmup = min(200, args.steps // 10)

    def lr_at(step: int) -> float:  # linear warm-up, then cosine decay to zero
        if step < warmup:
            return args.lr * (step + 1) / warmup
        return args.lr * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, args.steps - warmup)))

    averaged = copy.deepcopy(flow) if args.ema else None
    best = (math.inf, 0, None)
    bad_validations = 0
    order, cursor = torch.randperm(len(train), generator=generator), 0
    start = time.perf_counter()
    flow.train()
    for step in range(1, args.steps + 1):
        if cursor + args.batch_size > len(train):
            order, cursor = torch.randperm(len(train), generator=generator), 0
        batch = train[order[cursor:cursor + args.batch_size]]
        cursor += args.batch_size
        if args.shift:
            chosen = torch.rand(len(batch), generator=generator) < args.shift_prob
            batch = batch.clone()
            batch[chosen] = shift_augment(batch[chosen], generator, args.shift)
        x = fk.data.dequantize(batch, 17, generator=generator)
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step - 1)
        loss = -flow.log_prob(x).mean()
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss became {loss.item()} at step {step}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(flow.parameters(), 50.0)
        optimizer.step()
        if averaged is not None:
            with torch.no_grad():
                if step == 1:  # ActNorm set itself up on the first batch: start the average there
                    averaged.load_state_dict(flow.state_dict())
                for avg, live in zip(averaged.parameters(), flow.parameters()):
                    avg.lerp_(live, 1.0 - args.ema)
        if step % args.val_every == 0 or step == args.steps:
            scored = flow if averaged is None else averaged
            val_bpd = dequantized_bits_per_dim(scored, val, draws=4, seed=1)
            flow.train()
            improved = val_bpd < best[0] or (args.train_on_val and step == args.steps)
            if improved:
                best = (val_bpd, step, copy.deepcopy(scored.state_dict()))
                bad_validations = 0
            else:
                bad_validations += 1
            train_bpd = loss.item() / (64 * math.log(2))
            print(f"step {step:5d}  {time.perf_counter() - start:7.1f}s  lr {lr_at(step - 1):.2e}  "
                  f"train batch {train_bpd:.3f}  val {val_bpd:.4f} bits/dim{'  *' if improved else ''}",
                  flush=True)
            if bad_validations >= args.patience and not args.train_on_val:
                print(f"no improvement in {args.patience} validations: stopping early")
                break
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

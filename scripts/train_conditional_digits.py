"""Train the conditional digits models shipped in flowkit/checkpoints/.

    python scripts/train_conditional_digits.py --context labels       # digits-conditional-realnvp.pt
    python scripts/train_conditional_digits.py --context none         # digits-same-budget-realnvp.pt
    python scripts/train_conditional_digits.py --context completion   # digits-completion-realnvp.pt
    python scripts/train_conditional_digits.py --context labels --steps 100 --out /tmp/quick.pt  # smoke test

The defaults are the shipped settings. All three are
:class:`flowkit.conditional.ConditionalImageRealNVP` with the same
architecture and the same training budget (steps, batch size, learning-rate schedule,
seed); they differ only in the context: the digit's label, nothing (the unconditional
twin lesson 08 compares against), or a degraded copy of the digit (its top half or a
4x4 down-sampled copy, half of each batch each). Training uses the train and validation
splits, dequantized afresh every batch with half of each batch shifted at random by up
to one pixel, and keeps an exponential moving average of the weights. The test split is
used once, at the end, for the numbers printed. Seeded: the same arguments on the same
machine give the same weights. Prints the checkpoint's SHA-256; copy it into
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
from flowkit.conditional import ConditionalImageRealNVP
from flowkit.conditional_data import degrade
from flowkit.pretrained import CHECKPOINT_DIR, load_checkpoint, save_checkpoint

OUT_NAMES = {"labels": "digits-conditional-realnvp.pt", "none": "digits-same-budget-realnvp.pt",
             "completion": "digits-completion-realnvp.pt"}


def shift_augment(batch: torch.Tensor, generator: torch.Generator, max_shift: int = 1) -> torch.Tensor:
    """Shift each integer image by up to ``max_shift`` pixels (blank fill)."""
    n, _, h, w = batch.shape
    padded = torch.nn.functional.pad(batch, (max_shift,) * 4)
    dy = torch.randint(0, 2 * max_shift + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * max_shift + 1, (n,), generator=generator)
    return torch.stack([padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(n)])


def context_for(kind: str, images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator):
    if kind == "labels":
        return labels
    if kind == "completion":
        top = torch.rand(len(images), generator=generator) < 0.5
        return degrade(images, ["top" if t else "lowres" for t in top.tolist()])
    return None


@torch.no_grad()
def test_bits_per_dim(flow, images, contexts, draws: int = 8, seed: int = 2) -> float:
    """Mean bits/dim over ``draws`` uniform-noise draws (an upper bound on the code length)."""
    generator = torch.Generator().manual_seed(seed)
    total = 0.0
    for _ in range(draws):
        x = fk.data.dequantize(images, 17, generator=generator)
        total += -flow.log_prob(x, context=contexts).mean().item() if contexts is not None \
            else -flow.log_prob(x).mean().item()
    return total / draws / (64 * math.log(2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--context", choices=sorted(OUT_NAMES), required=True)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--num-blocks", type=int, default=1)
    parser.add_argument("--couplings", type=int, default=3)
    parser.add_argument("--embedding-dim", type=int, default=8)
    parser.add_argument("--spline-bins", type=int, default=0)
    parser.add_argument("--dequantizer-bins", type=int, default=0)
    parser.add_argument("--ema", type=float, default=0.998)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    out = args.out or CHECKPOINT_DIR / OUT_NAMES[args.context]

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    (train, train_y), (val, val_y) = fk.data.digits("train", True), fk.data.digits("val", True)
    test, test_y = fk.data.digits("test", True)
    train, train_y = torch.cat([train, val]), torch.cat([train_y, val_y])
    flow = ConditionalImageRealNVP(
        classes=10 if args.context == "labels" else 0,
        context_channels=3 if args.context == "completion" else 0,
        embedding_dim=args.embedding_dim, couplings=args.couplings, hidden=args.hidden,
        num_blocks=args.num_blocks, spline_bins=args.spline_bins, dequantizer_bins=args.dequantizer_bins)
    print(f"{args.context}: {sum(p.numel() for p in flow.parameters()):,} parameters; config {flow.config}")
    optimizer = torch.optim.Adam(flow.parameters(), lr=args.lr)
    warmup = min(200, args.steps // 10)

    def lr_at(step: int) -> float:  # linear warm-up, then cosine decay to zero
        if step < warmup:
            return args.lr * (step + 1) / warmup
        return args.lr * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, args.steps - warmup)))

    averaged = copy.deepcopy(flow)
    order, cursor = torch.randperm(len(train), generator=generator), 0
    start = time.perf_counter()
    flow.train()
    for step in range(1, args.steps + 1):
        if cursor + args.batch_size > len(train):
            order, cursor = torch.randperm(len(train), generator=generator), 0
        idx = order[cursor:cursor + args.batch_size]
        cursor += args.batch_size
        batch, labels = train[idx].clone(), train_y[idx]
        chosen = torch.rand(len(batch), generator=generator) < 0.5
        batch[chosen] = shift_augment(batch[chosen], generator)
        context = context_for(args.context, batch, labels, generator)
        x = fk.data.dequantize(batch, 17, generator=generator)
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step - 1)
        log_prob = flow.log_prob(x, context=context) if context is not None else flow.log_prob(x)
        loss = -log_prob.mean()
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss became {loss.item()} at step {step}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(flow.parameters(), 50.0)
        optimizer.step()
        with torch.no_grad():
            if step == 1:  # ActNorm set itself up on the first batch: start the average there
                averaged.load_state_dict(flow.state_dict())
            for avg, live in zip(averaged.parameters(), flow.parameters()):
                avg.lerp_(live, 1.0 - args.ema)
        if step % 250 == 0 or step == args.steps:
            print(f"step {step:5d}  {time.perf_counter() - start:7.1f}s  lr {lr_at(step - 1):.2e}  "
                  f"train batch {loss.item() / (64 * math.log(2)):.3f} bits/dim", flush=True)
    seconds = time.perf_counter() - start
    flow = averaged.eval()
    test_context = context_for(args.context, test, test_y, torch.Generator().manual_seed(7))
    test_bpd = test_bits_per_dim(flow, test, test_context)
    print(f"TEST bits/dim (8 noise draws): {test_bpd:.4f}; training took {seconds / 60:.1f} min")
    metadata = {"test_bits_per_dim": round(test_bpd, 4), "steps_run": args.steps,
                "train_seconds": round(seconds, 1), "context": args.context,
                "script": "scripts/train_conditional_digits.py",
                "args": {k: str(v) for k, v in vars(args).items() if k != "out"}}
    out.parent.mkdir(parents=True, exist_ok=True)
    digest = save_checkpoint(flow, out, metadata)
    reloaded = load_checkpoint(out, expected_sha256=digest)
    check = test_bits_per_dim(reloaded, test, test_context)
    assert abs(check - test_bpd) < 1e-4, (check, test_bpd)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB)")
    print(f"sha256 {digest}")


if __name__ == "__main__":
    main()

"""Tokens/s of the Lightning CPT loop vs a plain PyTorch loop over the same model and batches, same process.

    .venv/bin/python benchmarks/train_overhead.py [--size s] [--steps 60] [--repeats 3] [--threads 1]

Both loops do the same work per step: forward, token-mean NLL, backward, grad-norm clip 1.0, AdamW, LR
scheduler step. The Lightning loop is `cptlaw.lm.module.CausalLMModule` under a `Trainer` exactly as the CPT
stage builds it (`cptlaw.lm.cpt.train_cpt` settings: no logger, no checkpointing, the `EvalCallback` counting
tokens but with no evaluation points, progress bar on), so the difference is the framework's overhead.
Loops alternate and the best of `--repeats` is kept (other processes on a shared box add noise). Target:
Lightning overhead <= 10%.
"""

from __future__ import annotations

import argparse
import copy
import json
import time

import lightning as L
import numpy as np
import torch

from cptlaw.cpu import setup_cpu
from cptlaw.lm.cpt import EvalCallback
from cptlaw.lm.datamodule import PackedDataset
from cptlaw.lm.model import build_model
from cptlaw.lm.module import CausalLMModule, lr_at, token_nll

SIZES = {
    "s": {"d_model": 64, "n_layers": 2, "n_heads": 4, "d_ff": 256},
    "m": {"d_model": 96, "n_layers": 3, "n_heads": 4, "d_ff": 384},
    "l": {"d_model": 128, "n_layers": 4, "n_heads": 4, "d_ff": 512},
}


def plain_loop(model: torch.nn.Module, loader, steps: int, lr: float) -> float:
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
        lr=lr, betas=(0.9, 0.95),
    )  # fmt: skip
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_at(s, lr=lr, min_lr=lr, warmup_steps=0, max_steps=steps) / lr
    )
    model.train()
    t0 = time.perf_counter()
    for step, batch in enumerate(loader):
        if step >= steps:
            break
        nll, n = token_nll(model, batch)
        loss = nll / n
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
    return time.perf_counter() - t0


def lightning_loop(model: torch.nn.Module, loader, steps: int, lr: float, progress_bar: bool) -> float:
    module = CausalLMModule(model, lr=lr, min_lr=lr, warmup_steps=0, max_steps=steps)
    callback = EvalCallback([], [], points=[])  # counts tokens like the CPT run; no test sets, no evaluations
    trainer = L.Trainer(
        max_steps=steps, max_epochs=1, logger=False, callbacks=[callback], enable_checkpointing=False,
        num_sanity_val_steps=0, limit_val_batches=0, accelerator="cpu", devices=1, precision="32-true",
        gradient_clip_val=1.0, enable_progress_bar=progress_bar, enable_model_summary=False,
    )  # fmt: skip
    model.train()
    t0 = time.perf_counter()
    trainer.fit(module, train_dataloaders=loader)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="s", choices=sorted(SIZES))
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-progress-bar", action="store_true")
    args = ap.parse_args()
    setup_cpu(args.threads)
    rng = np.random.default_rng(0)
    rows = rng.integers(0, args.vocab, size=(args.steps * args.batch_size, args.seq_len + 1), dtype=np.int32)
    loader = torch.utils.data.DataLoader(PackedDataset(rows), batch_size=args.batch_size, shuffle=False)
    base = build_model(SIZES[args.size], args.vocab, args.seq_len, seed=0)
    tokens = args.steps * args.batch_size * args.seq_len
    # warm-up (allocator, kernels) for both paths, then alternate
    plain_loop(copy.deepcopy(base), loader, 5, 1e-3)
    lightning_loop(copy.deepcopy(base), loader, 5, 1e-3, False)
    times: dict[str, list[float]] = {"plain": [], "lightning": []}
    for _ in range(args.repeats):
        times["plain"].append(plain_loop(copy.deepcopy(base), loader, args.steps, 1e-3))
        times["lightning"].append(
            lightning_loop(copy.deepcopy(base), loader, args.steps, 1e-3, not args.no_progress_bar)
        )
    best = {k: min(v) for k, v in times.items()}
    result = {
        "size": args.size, "threads": args.threads, "tokens_per_run": tokens,
        "plain_tokens_per_s": round(tokens / best["plain"]), "lightning_tokens_per_s": round(tokens / best["lightning"]),
        "overhead_pct": round(100 * (best["lightning"] / best["plain"] - 1), 1),
        "all_seconds": {k: [round(x, 2) for x in v] for k, v in times.items()},
    }  # fmt: skip
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()

"""Benchmark: the batched scorer (`cptlaw.lm.score.score_token_ids`) vs the naive per-sample loop.

Same model, same samples, same process. Prints tokens/s of both, the ratio, and the batched scorer's
achieved FLOP/s as a share of a matmul peak measured here at the model's width. The naive loop is the
float64 reference of the tests; the ratio against a float32 batch-1 loop (the Hugging Face perplexity
guide's) is printed too, because it shows how much of the gain is batching and how much is precision.

The allocator changes the answer, so by default both loops are measured twice, each time in a fresh process:
with glibc's default allocator (how a plain perplexity script runs) and with the allocator set-up every
cptlaw stage applies (`cptlaw.cpu.keep_freed_memory`), which speeds the naive loop up far more than ours.

    .venv/bin/python benchmarks/scoring.py [--size s] [--domain medical] [--n-samples 400] [--threads 1]
        [--allocator both|default|cptlaw] [--breakdown]

Uses the real corpus/tokenizer when `data/` holds them, else random token samples of similar lengths.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def matmul_peak_flops(width: int, rows: int = 4096, repeats: int = 20) -> float:
    """FLOP/s of an fp32 (rows × width) @ (width × 4·width) matmul: the best this CPU does at this width."""
    a, b = torch.randn(rows, width), torch.randn(width, 4 * width)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * rows * width * 4 * width / float(np.median(times))  # median: robust to other jobs on the CPU


def forward_flops_per_token(model, context: float) -> float:
    """2·N (non-embedding) + 2·d·V (lm_head) + 4·layers·context·d (attention scores and values)."""
    from cptlaw.lm.model import non_embedding_params

    c = model.config
    return (
        2 * non_embedding_params(model)
        + 2 * c.hidden_size * c.vocab_size
        + 4 * c.num_hidden_layers * context * c.hidden_size
    )


def load_samples(domain: str, n: int, vocab: int, seed: int = 0) -> tuple[list[np.ndarray], str]:
    tok_dir, pool = ROOT / "data" / "tokenizer", ROOT / "data" / "corpora" / domain / "train.parquet"
    if tok_dir.is_dir() and pool.is_file():
        import pandas as pd

        from cptlaw.lm.base import load_tokenizer

        texts = pd.read_parquet(pool)["text"].tolist()[:n]
        ids = load_tokenizer(tok_dir)(texts, add_special_tokens=False)["input_ids"]
        return [np.asarray(x, dtype=np.int64) for x in ids], f"{domain}/train (real corpus)"
    rng = np.random.default_rng(seed)
    return [rng.integers(1, vocab, size=int(rng.integers(20, 400))) for _ in range(n)], "random tokens"


@torch.inference_mode()
def float32_loop(model, samples: list[np.ndarray], max_length: int, stride: int) -> np.ndarray:
    """A batch-1 loop as the Hugging Face perplexity guide writes it: full logits, float32 cross-entropy."""
    from cptlaw.lm.score import rolling_windows

    out = np.zeros(len(samples), dtype=np.float64)
    for i, x in enumerate(samples):
        t = torch.as_tensor(np.concatenate([[0], x]))
        for a, e, m in rolling_windows(len(x), max_length, stride):
            logits = model(input_ids=t[a:e].unsqueeze(0)).logits[0]
            out[i] += float(
                torch.nn.functional.cross_entropy(logits[-m:], t[e - m + 1 : e + 1], reduction="sum")
            )
    return out


def breakdown(model, samples: list[np.ndarray], max_length: int, stride: int, batch_tokens: int) -> None:
    """Seconds per part of the work, both ways: where the batched scorer gains and where it cannot."""
    from cptlaw.lm.score import IGNORE, WindowBatches, head_nll, make_windows, rolling_windows, scored_hidden

    decoder, head = model.get_decoder(), model.get_output_embeddings()
    fast = dict.fromkeys(("decoder", "head + log-softmax (scored positions)"), 0.0)
    slow = dict.fromkeys(("decoder", "head (all positions)", "log-softmax (float64)"), 0.0)
    data = WindowBatches(make_windows(samples, 0, max_length, stride), batch_tokens, pad_id=0)
    with torch.inference_mode():
        for i in range(len(data)):
            b = data[i]
            scored = b["targets"] != IGNORE
            t0 = time.perf_counter()
            h = scored_hidden(model, b, scored)
            t1 = time.perf_counter()
            head_nll(head, h, b["targets"][scored])
            fast["decoder"] += t1 - t0
            fast["head + log-softmax (scored positions)"] += time.perf_counter() - t1
        for x in samples:
            t = torch.as_tensor(np.concatenate([[0], x]))
            for a, e, _ in rolling_windows(len(x), max_length, stride):
                t0 = time.perf_counter()
                h = decoder(input_ids=t[a:e].unsqueeze(0)).last_hidden_state[0]
                t1 = time.perf_counter()
                logits = head(h)
                t2 = time.perf_counter()
                torch.log_softmax(logits.double(), dim=-1)
                slow["decoder"] += t1 - t0
                slow["head (all positions)"] += t2 - t1
                slow["log-softmax (float64)"] += time.perf_counter() - t2
    for name, parts in (("batched scorer", fast), ("naive loop", slow)):
        print(f"{name:20s}: " + ", ".join(f"{k} {v:.2f} s" for k, v in parts.items()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--size", default="s", help="a conf/model/tiny.yaml size (uses models/base/<size> if present)"
    )
    ap.add_argument("--domain", default="medical")
    ap.add_argument("--n-samples", type=int, default=400)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--stride", type=int, default=128)
    ap.add_argument("--batch-tokens", type=int, default=2048)
    ap.add_argument("--repeats", type=int, default=3, help="timed runs of each after a warm-up run (median)")
    ap.add_argument(
        "--threads", type=int, default=1, help="2 threads ran 4-5x slower next to other jobs here"
    )
    ap.add_argument(
        "--breakdown", action="store_true", help="also time decoder / head / log-softmax both ways"
    )
    ap.add_argument("--allocator", choices=["both", "default", "cptlaw"], default="both",
                    help="glibc defaults, cptlaw's set-up, or both (each in its own process)")  # fmt: skip
    args = ap.parse_args()
    if args.allocator == "both":
        from cptlaw.cpu import ALLOCATOR_ENV

        env = {k: v for k, v in os.environ.items() if k not in ALLOCATOR_ENV}
        for mode in ("default", "cptlaw"):
            print(f"== allocator: {mode}", flush=True)
            subprocess.run(
                [sys.executable, __file__, *sys.argv[1:], "--allocator", mode], env=env, check=True
            )
        return
    if args.allocator == "default":
        os.environ["CPTLAW_KEEP_FREED_MEMORY"] = "0"

    from omegaconf import OmegaConf

    from cptlaw.cpu import setup_cpu
    from cptlaw.lm.model import build_model, load_causal_lm
    from cptlaw.lm.score import score_naive, score_token_ids

    setup_cpu(args.threads)
    base = ROOT / "models" / "base" / args.size
    if (base / "config.json").is_file():
        model, origin = load_causal_lm(base), str(base)
    else:
        size = OmegaConf.load(ROOT / "conf" / "model" / "tiny.yaml").sizes[args.size]
        model, origin = build_model(size, 4096, args.max_length, seed=0).eval(), "random init"
    samples, source = load_samples(args.domain, args.n_samples, model.config.vocab_size)
    n_tokens = int(sum(len(x) for x in samples))
    kw = dict(prefix_id=0, max_length=args.max_length, stride=args.stride)
    print(f"model {args.size} ({origin}), {len(samples)} samples of {source}, {n_tokens:,} tokens, "
          f"window {args.max_length} stride {args.stride}, {args.threads} threads")  # fmt: skip

    fast_times, slow_times, f32_times = [], [], []
    for _ in range(args.repeats + 1):  # rep 0 warms all up (allocator, oneDNN kernels per shape)
        start = time.perf_counter()
        nll, _ = score_token_ids(model, samples, batch_tokens=args.batch_tokens, **kw)
        fast_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        ref = score_naive(model, samples, **kw)
        slow_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        f32 = float32_loop(model, samples, args.max_length, args.stride)
        f32_times.append(time.perf_counter() - start)
    fast, slow = float(np.median(fast_times[1:])), float(np.median(slow_times[1:]))
    f32_slow = float(np.median(f32_times[1:]))
    per_token = np.maximum([len(x) for x in samples], 1)
    err = float(np.max(np.abs(nll - ref) / per_token))
    f32_err = float(np.max(np.abs(f32 - ref) / per_token))

    lengths = np.array([min(len(x), args.max_length) for x in samples])
    flops = forward_flops_per_token(model, context=float(np.mean(lengths)) / 2) * n_tokens / fast
    peak = matmul_peak_flops(model.config.hidden_size)
    print(f"naive loop (batch 1): {n_tokens / slow:10,.0f} tokens/s  ({slow:.2f} s)")
    print(f"batched scorer      : {n_tokens / fast:10,.0f} tokens/s  ({fast:.2f} s)")
    ratios = ", ".join(f"{s / f:.2f}" for s, f in zip(slow_times[1:], fast_times[1:], strict=True))
    print(f"speed-up            : {slow / fast:10.2f} x   (max |Δ mean NLL| {err:.1e} nats/token)")
    print(f"  medians of {args.repeats} alternating runs after a warm-up run; per-run ratios {ratios}")
    print(f"vs a float32 loop   : {f32_slow / fast:10.2f} x   (batch 1, full logits, float32 cross-entropy: "
          f"{n_tokens / f32_slow:,.0f} tokens/s; max |Δ mean NLL| {f32_err:.1e})")  # fmt: skip
    print(f"achieved            : {flops / 1e9:10.2f} GFLOP/s = {100 * flops / peak:.0f}% of a {peak / 1e9:.1f} GFLOP/s "
          f"matmul peak at width {model.config.hidden_size}")  # fmt: skip
    if args.breakdown:
        breakdown(model, samples, args.max_length, args.stride, args.batch_tokens)


if __name__ == "__main__":
    main()

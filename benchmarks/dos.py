"""DOS selection speed: our exact O(log n)-per-step greedy vs the naive greedy, same process.

    OPENBLAS_NUM_THREADS=1 python benchmarks/dos.py [--pool 1000000] [--naive-cap 20]

The naive greedy re-evaluates J for every remaining candidate at every step (vectorised numpy, O(pool) per
step). It runs on the *same* 1M pool under a time cap; its full time is extrapolated from its measured
per-step time x the number of steps ours needed (its per-step cost is constant: it scans the whole pool).
Both are also run to completion on a 20k pool to check they select the same samples.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from cptlaw.laws.select import dos_select, dos_select_naive


def pool(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.lognormal(3.0, 0.6, n), rng.integers(50, 500, n)  # per-sample ppl, tokens


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pool", type=int, default=1_000_000)
    ap.add_argument("--budget-frac", type=float, default=0.1, help="token budget as a fraction of the pool")
    ap.add_argument(
        "--naive-cap", type=float, default=20.0, help="seconds the naive greedy may run on the pool"
    )
    args = ap.parse_args()
    mu_hat, sigma_hat = 25.0, 8.0

    x, t = pool(20_000, 1)
    a = dos_select(x, t, 0.2 * t.sum(), mu_hat, sigma_hat)
    b = dos_select_naive(x, t, 0.2 * t.sum(), mu_hat, sigma_hat)
    same = np.array_equal(a.indices, b.indices)
    print(f"20k pool check: ours and naive pick the same {a.indices.size} samples in the same order: {same}")

    x, t = pool(args.pool)
    budget = args.budget_frac * t.sum()
    t0 = time.perf_counter()
    ours = dos_select(x, t, budget, mu_hat, sigma_hat)
    t_ours = time.perf_counter() - t0
    steps = ours.indices.size
    print(f"pool {args.pool:,} candidates, budget {budget:,.0f} tokens, target mu {mu_hat} sigma {sigma_hat}")
    print(
        f"  ours : {t_ours:.2f} s for {steps:,} steps -> mu {ours.mu:.4f} sigma {ours.sigma:.4f} J {ours.objective:.3g}"
    )

    t0 = time.perf_counter()  # a short probe sizes the capped run
    dos_select_naive(x, t, budget, mu_hat, sigma_hat, max_steps=50)
    per_step = (time.perf_counter() - t0) / 50
    # time a longer run for a stable per-step figure, within the cap
    n_steps = max(50, min(steps, int(args.naive_cap / max(per_step, 1e-9))))
    t0 = time.perf_counter()
    dos_select_naive(x, t, budget, mu_hat, sigma_hat, max_steps=n_steps)
    t_meas = time.perf_counter() - t0
    per_step = t_meas / n_steps
    t_naive = per_step * steps
    print(f"  naive: {t_meas:.2f} s for its first {n_steps:,} steps (time cap {args.naive_cap:.0f} s) -> "
          f"{per_step * 1e3:.2f} ms/step, extrapolated {t_naive:,.0f} s for all {steps:,} steps")  # fmt: skip
    print(f"  speed-up (extrapolated) {t_naive / t_ours:,.0f}x")


if __name__ == "__main__":
    main()

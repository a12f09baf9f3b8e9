"""Formula law vs the equivalent built-in form: fit time and optimum, same data, same process.

    OPENBLAS_NUM_THREADS=1 python benchmarks/formula_speed.py [--repeats 5]

The D-CPT law on 200 synthetic points (as in fit_speed.py) and the Chinchilla law on 42 points, each fitted by
the built-in form and by `formula_law(...)` of the same formula; prints the median wall time of each and the
ratio formula / built-in (target: <= 2).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import cpu_model  # noqa: E402
from fit_speed import dcpt_points  # noqa: E402

from cptlaw.laws import fit, formula_law, get_law  # noqa: E402

CASES = {
    "dcpt": ("E + A/N**alpha + B*r**eta/D**beta + C/(r+eps)**gamma", {"eps": 1e-3}),
    "chinchilla": ("E + A/N**alpha + B/D**beta", {}),
}


def chinchilla_points() -> tuple[dict[str, np.ndarray], np.ndarray]:
    n, d = np.meshgrid(np.geomspace(1e5, 3e6, 6), np.geomspace(2e4, 6e5, 7), indexing="ij")
    x = {"N": n.ravel(), "D": d.ravel()}
    y = get_law("chinchilla").predict(dict(E=1.7, A=100.0, B=60.0, alpha=0.34, beta=0.3), x)
    return x, y * np.exp(np.random.default_rng(0).normal(0, 0.002, y.size))


def timed(form, x, y, repeats: int) -> tuple[float, float]:
    times, res = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        res = fit(form, x, y)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), res.huber


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    print(f"CPU: {cpu_model()}")
    for law, (text, fixed) in CASES.items():
        x, y = dcpt_points() if law == "dcpt" else chinchilla_points()
        builtin = get_law(law)
        t0 = time.perf_counter()
        form = formula_law(
            text, fixed=fixed, bounds=dict(zip(builtin.nonlinear, builtin.bounds, strict=True))
        )
        t_build = time.perf_counter() - t0
        fit(builtin, x, y, n_starts=4), fit(form, x, y, n_starts=4)  # warm-up
        tb, hb = timed(builtin, x, y, args.repeats)
        tf, hf = timed(form, x, y, args.repeats)
        print(f"{law}, {y.size} points, median of {args.repeats} fits (64 starts)")
        print(f"  built-in: {tb:.3f} s  huber {hb:.10g}")
        print(
            f"  formula : {tf:.3f} s  huber {hf:.10g}  (parse + derivatives + compile once: {t_build:.2f} s)"
        )
        print(f"  ratio formula / built-in: {tf / tb:.2f}  (target <= 2); optimum ratio {hf / hb:.9f}")


if __name__ == "__main__":
    main()

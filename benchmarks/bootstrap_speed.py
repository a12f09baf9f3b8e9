"""Bootstrap resamples per second: warm start (project + Levenberg-Marquardt polish, the default) vs a full
multi-start fit per resample (the previous method), same data, same process.

    OPENBLAS_NUM_THREADS=1 python benchmarks/bootstrap_speed.py [--n-boot 1000] [--n-full 20]

D-CPT law, 200 synthetic points (fit_speed.py), every point its own group. Target: >= 1,000 resamples in
<= 10 s on 2 cores (this runs on one).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import cpu_model  # noqa: E402
from fit_speed import dcpt_points  # noqa: E402

from cptlaw.laws import bootstrap, fit  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--n-full", type=int, default=20, help="resamples timed with the full-fit method")
    args = ap.parse_args()
    print(f"CPU: {cpu_model()}")
    x, y = dcpt_points()
    groups = np.arange(y.size)
    base = fit("dcpt", x, y)
    bootstrap("dcpt", x, y, groups, n_boot=5, base=base)  # warm-up
    t0 = time.perf_counter()
    warm = bootstrap("dcpt", x, y, groups, n_boot=args.n_boot, base=base, seed=1)
    tw = time.perf_counter() - t0
    t0 = time.perf_counter()
    full = bootstrap("dcpt", x, y, groups, n_boot=args.n_full, base=base, seed=1, method="full")
    tf = time.perf_counter() - t0
    print(f"D-CPT, {y.size} points, 1 process")
    print(f"  warm (project + LM polish): {args.n_boot} resamples in {tw:.2f} s = {args.n_boot / tw:.0f} resamples/s "
          f"({warm.n_failed} failed)")  # fmt: skip
    print(
        f"  full fit per resample (16 starts + base): {args.n_full} in {tf:.2f} s = {args.n_full / tf:.1f} resamples/s"
    )
    print(f"  speed-up {(args.n_boot / tw) / (args.n_full / tf):.0f}x")
    same = warm.samples["beta"][: args.n_full]
    print(
        f"  first {args.n_full} resamples, beta: max |warm - full| = {np.max(np.abs(same - full.samples['beta'])):.2e}"
    )
    for k in ("alpha", "beta", "eta", "gamma"):
        print(f"  90% CI {k}: [{warm.ci[k][0]:.4f}, {warm.ci[k][1]:.4f}]")


if __name__ == "__main__":
    main()

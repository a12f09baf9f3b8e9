"""Fit speed: our variable-projection fitter vs the plain multi-start L-BFGS-B fit, same process.

    OPENBLAS_NUM_THREADS=1 python benchmarks/fit_speed.py [--plain-grid small|full]

1. D-CPT law on 200 synthetic points (4 N x 5 r x 10 D, 0.3% noise). Plain approach (Chinchilla replication
   style, Besiroglu et al. 2024): `scipy.optimize.minimize(method="L-BFGS-B")` on the log-Huber objective in
   the log-sum-exp parameterisation, finite-difference gradients, from every start of a grid, in a Python loop.
2. Chinchilla real data (240 points): ours vs the plain 4,500-start fit measured at 53.5 s (data README).
   Needs the reference data: set CPTLAW_REFDATA to a folder holding `data/chinchilla_hoffmann2022_fig4.csv`
   (Hoffmann et al.'s points as extracted by Besiroglu et al. 2024, `svg_extracted_data.csv` in
   github.com/epoch-research/analyzing-chinchilla); without it, part 2 is skipped with that hint.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import logsumexp

from cptlaw.laws import fit, get_law
from cptlaw.laws.metrics import huber

TRUTH = dict(E=1.5, A=30.0, B=200.0, C=0.05, alpha=0.3, beta=0.35, eta=0.4, gamma=0.3)
EPS = 1e-3
REF_HUBER, REF_WALL = 0.00101827, 53.5


def dcpt_points(seed: int = 0) -> tuple[dict[str, np.ndarray], np.ndarray]:
    mesh = np.meshgrid(
        [1e5, 3e5, 8e5, 2e6], [0.0, 0.2, 0.5, 0.8, 1.0], np.geomspace(2e4, 1e6, 10), indexing="ij"
    )
    x = {k: v.ravel() for k, v in zip(("N", "r", "D"), mesh, strict=True)}
    form = get_law("dcpt")
    y = form.predict(TRUTH | form.fixed, x) * np.exp(
        np.random.default_rng(seed).normal(0, 0.003, x["N"].size)
    )
    return x, y


def plain_dcpt(x: dict[str, np.ndarray], y: np.ndarray, grid: str) -> tuple[float, np.ndarray, int]:
    """log L = LSE(e, a - alpha ln N, b + eta ln r - beta ln D, c - gamma ln(r + eps)); Huber on log L."""
    ln_n, ln_d, ly = np.log(x["N"]), np.log(x["D"]), np.log(y)
    with np.errstate(divide="ignore"):
        ln_r = np.log(x["r"])  # -inf at r = 0: that term is exp(-inf) = 0
    ln_re = np.log(x["r"] + EPS)

    def obj(p: np.ndarray) -> float:
        e, a, b, c, al, be, et, ga = p
        terms = np.stack([np.full_like(ly, e), a - al * ln_n, b + et * ln_r - be * ln_d, c - ga * ln_re])
        return float(np.sum(huber(logsumexp(terms, axis=0) - ly, 1e-3)))

    expo = [0.5, 1.5] if grid == "small" else [0.0, 0.5, 1.0, 1.5]
    consts = [0.0, 10.0, 20.0] if grid == "small" else [0.0, 5.0, 10.0, 15.0, 20.0]
    best, best_p, n = np.inf, None, 0
    for e, a, b, c, *ex in itertools.product([-1.0, 1.0], consts, consts, consts, expo, expo, expo, expo):
        res = minimize(obj, np.array([e, a, b, c, *ex]), method="L-BFGS-B")
        n += 1
        if res.fun < best:
            best, best_p = float(res.fun), res.x
    return best, best_p, n


def refdata_path(relative: str) -> Path | None:
    """A reference-data file under $CPTLAW_REFDATA, or None with a hint on stderr."""
    root = os.environ.get("CPTLAW_REFDATA")
    path = Path(root) / relative if root else None
    if path is None or not path.is_file():
        print(f"skipped: {relative} not found; set CPTLAW_REFDATA to the reference-data folder "
              "(docs/laws.md, 'Reference data', says where to get it)", file=sys.stderr)  # fmt: skip
        return None
    return path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--plain-grid", choices=["small", "full"], default="small",
                    help="small: 864 starts (2 e x 3^3 constants x 2^4 exponents); full: 64,000 starts")  # fmt: skip
    args = ap.parse_args()

    x, y = dcpt_points()
    fit("dcpt", x, y, n_starts=8)  # warm-up (imports, caches) so neither side pays them
    t0 = time.perf_counter()
    ours = fit("dcpt", x, y)
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    plain_f, plain_p, n_plain = plain_dcpt(x, y, args.plain_grid)
    t_plain = time.perf_counter() - t0
    print(f"D-CPT, {y.size} synthetic points")
    print(
        f"  ours : {t_ours:8.3f} s  huber {ours.huber:.10g}  ({ours.n_starts} starts, {ours.n_converged} polished)"
    )
    print(f"  plain: {t_plain:8.3f} s  huber {plain_f:.10g}  ({n_plain} starts, L-BFGS-B, log-sum-exp)")
    print(f"  speed-up {t_plain / t_ours:.1f}x; objective ours/plain = {ours.huber / plain_f:.6f} "
          f"({'no worse' if ours.huber <= plain_f * (1 + 1e-9) else 'WORSE'})")  # fmt: skip
    print(f"  ours  params: { {k: round(v, 4) for k, v in ours.params.items()} }")
    pp = dict(zip(["e", "a", "b", "c", "alpha", "beta", "eta", "gamma"], plain_p, strict=True))
    print(f"  plain params: E={np.exp(pp['e']):.4f} A={np.exp(pp['a']):.4g} B={np.exp(pp['b']):.4g} "
          f"C={np.exp(pp['c']):.4g} alpha={pp['alpha']:.4f} beta={pp['beta']:.4f} eta={pp['eta']:.4f} "
          f"gamma={pp['gamma']:.4f}")  # fmt: skip

    path = refdata_path("data/chinchilla_hoffmann2022_fig4.csv")
    if path is None:
        return
    d = pd.read_csv(path).sort_values("loss").iloc[:-5]
    t0 = time.perf_counter()
    res = fit("chinchilla", d, d["loss"].to_numpy())
    t_c = time.perf_counter() - t0
    print(f"Chinchilla real data, {res.n_points} points")
    print(
        f"  ours : {t_c:8.3f} s  huber {res.huber:.10g}  { ({k: round(v, 4) for k, v in res.params.items()}) }"
    )
    print(f"  plain (reference, 4,500 starts, measured in the data README): {REF_WALL} s  huber {REF_HUBER}")
    print(f"  speed-up {REF_WALL / t_c:.0f}x; objective ours/reference = {res.huber / REF_HUBER:.6f}")


if __name__ == "__main__":
    main()

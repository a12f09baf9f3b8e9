"""What the runs themselves say about a decision, where they bracket it.

A law's answer is only worth reporting if it agrees with the runs it was fitted on. Where the runs bracket a
decision (runs on both sides of the answer at the N and D it is evaluated for), the bracket is the
run-based answer, and a law answer outside it is a contradiction: the report then gives the bracket, not
the law's number.
- usage 1 (largest domain share whose general-loss rise stays within T): at N and D, the observed rise per
  domain share r; the bracket is [largest r with rise <= T, smallest r with rise > T];
- usage 2 (best domain share with D_d domain tokens): each run's domain loss where it has consumed D_d domain
  tokens (at D = D_d / r, interpolated in log D); the bracket is the neighbours of the best observed r.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd


def _at_size(rows: pd.DataFrame, n_params: float) -> pd.DataFrame | None:
    """The runs at the observed model size nearest `n_params` (None if none within 10%)."""
    sizes = np.unique(rows["N"].to_numpy(float))
    near = sizes[np.argmin(np.abs(np.log(sizes) - np.log(n_params)))]
    return rows[rows["N"] == near] if abs(np.log(near / n_params)) <= np.log(1.1) else None


def _loss_at(run: pd.DataFrame, col: str, d: float) -> float:
    """A run's `col` at D = d, interpolated in log D; NaN outside the evaluated range (never extrapolated)."""
    run = run.sort_values("D")
    ds, ys = run["D"].to_numpy(float), run[col].to_numpy(float)
    if ds.size == 0 or not ds[0] * 0.999 <= d <= ds[-1] * 1.001:
        return float("nan")
    return float(np.interp(np.log(d), np.log(ds), ys))


def _by_share(rows: pd.DataFrame, col: str, d_of_r: Any) -> pd.Series:
    """Mean over runs (seeds) of `col` at D = d_of_r(r), per domain share r."""
    vals = {rid: (float(run["r"].iloc[0]), _loss_at(run, col, d_of_r(float(run["r"].iloc[0]))))
            for rid, run in rows.groupby("run_id")}  # fmt: skip
    frame = pd.DataFrame(vals.values(), columns=["r", "v"]).dropna()
    return frame.groupby("r")["v"].mean().sort_index()


def usage1_bracket(
    rows: pd.DataFrame, n_params: float, n_tokens: float, lg0: float, tolerance: float
) -> dict:
    """Observed general-loss rise per domain share at (N, D) and the bracket of the largest share within T."""
    at = _at_size(rows, n_params)
    if at is None or not np.isfinite(lg0):
        return {"bracketed": False, "why": f"no runs at N={n_params:.3g}"}
    rise = (_by_share(at, "general_loss", lambda r: n_tokens) - lg0) / lg0
    if rise.size < 2:
        return {"bracketed": False, "why": f"fewer than 2 domain shares evaluated at D={n_tokens:.3g}"}
    ok, over = rise.index[rise <= tolerance], rise.index[rise > tolerance]
    lo = float(ok.max()) if ok.size else 0.0
    hi = float(over[over > lo].min()) if (over > lo).any() else 1.0
    # `hi` is a share the runs saw exceed T, so the answer lies in [lo, hi): a law answer of `hi` contradicts them
    return {"bracketed": bool(ok.size and over.size) or lo == 1.0, "bracket": [lo, hi],
            "upper_excluded": bool((over > lo).any()), "observed": {f"{r:g}": float(v) for r, v in rise.items()}}  # fmt: skip


def usage2_bracket(rows: pd.DataFrame, n_params: float, domain_tokens: float) -> dict:
    """Observed domain loss per share at D_d domain tokens and the bracket around the best observed share."""
    at = _at_size(rows, n_params)
    if at is None:
        return {"bracketed": False, "why": f"no runs at N={n_params:.3g}"}
    loss = _by_share(at[at["r"] > 0], "domain_loss", lambda r: domain_tokens / r)
    if loss.size < 3:
        return {
            "bracketed": False,
            "why": f"fewer than 3 domain shares reach D_d={domain_tokens:.3g} domain tokens",
        }
    shares = loss.index.to_numpy(float)
    i = int(np.argmin(loss.to_numpy()))
    lo, hi = float(shares[max(i - 1, 0)]), float(shares[min(i + 1, shares.size - 1)])
    return {"bracketed": 0 < i < shares.size - 1, "bracket": [lo, hi], "best_observed": float(shares[i]),
            "observed": {f"{r:g}": float(v) for r, v in loss.items()}}  # fmt: skip


def verdict(answer: float | None, runs: dict[str, Any]) -> dict[str, Any]:
    """Does the law's answer lie in the runs' bracket? `agrees` is None where the runs do not bracket it."""
    if answer is None or not runs.get("bracketed"):
        return runs | {"agrees": None}
    lo, hi = runs["bracket"]
    below_hi = answer < hi - 1e-9 if runs.get("upper_excluded") else answer <= hi + 1e-9
    return runs | {"agrees": bool(lo - 1e-9 <= answer and below_hi)}

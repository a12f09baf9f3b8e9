"""Validation of a DOS selection: CPT runs at one token budget on DOS vs random vs perplexity windows,
compared on domain and general test loss, and the data saving of DOS over random selection.

Data saving = D'/D, the fraction of random selection's tokens D that DOS needs to reach random's loss:
- from the law: solve `L(mu_dos, sigma_dos, D') = L(mu_random, sigma_random, D)` for D' (Liu et al. 2025);
- from the runs: the first D' at which DOS's eval curve (mean over seeds) falls to random's final loss,
  log-linear interpolation between eval points.
A difference below the seed noise (`validate.seed_noise`: tiny models trained from different seeds differ by
0.02-0.04 nats; or twice the measured seed std when there are >= 2 seeds) is reported as such, not as a finding.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import brentq


def arm_table(
    table: pd.DataFrame, runs: pd.DataFrame, arms: dict[str, str], noise: float
) -> list[dict[str, Any]]:
    """One row per arm: final domain/general loss (mean, seed std), landscape, difference vs random.

    `table`: fitting-table rows of the validation runs (`cptlaw.fit_table.build_fit_table`); `runs`: their
    MLflow rows; `arms`: run id -> arm name.
    """
    out = []
    final = table.sort_values("D").groupby("run_id").tail(1).set_index("run_id")
    by_arm: dict[str, list[str]] = {}
    for rid, arm in arms.items():
        by_arm.setdefault(arm, []).append(rid)
    meta = runs.set_index("run_id")
    for arm, rids in by_arm.items():
        f = final.loc[[r for r in rids if r in final.index]]
        m = meta.loc[[r for r in rids if r in meta.index]]
        dl, gl = f["domain_loss"].to_numpy(float), f["general_loss"].to_numpy(float)
        out.append({
            "arm": arm, "n_seeds": len(f), "run_ids": rids,
            "domain_loss": float(dl.mean()), "domain_loss_std": float(dl.std(ddof=1)) if len(dl) > 1 else None,
            "general_loss": float(gl.mean()), "general_loss_std": float(gl.std(ddof=1)) if len(gl) > 1 else None,
            "ppl_mean": _mean(m, "metrics.ppl_mean"), "ppl_std": _mean(m, "metrics.ppl_std"),
            "log_ppl_mean": _mean(m, "metrics.log_ppl_mean"), "log_ppl_std": _mean(m, "metrics.log_ppl_std"),
            "n_tokens": float(f["D"].max()) if len(f) else None, "domain_epochs": _mean(m, "metrics.domain_epochs"),
        })  # fmt: skip
    ref = next((r for r in out if r["arm"] == "random"), None)
    stds = [r[k] for r in out for k in ("domain_loss_std",) if r[k] is not None]
    threshold = max(noise, 2 * max(stds)) if stds else noise
    for r in out:
        if ref is None:
            continue
        for k in ("domain_loss", "general_loss"):
            diff = r[k] - ref[k]
            r[f"{k}_vs_random"] = diff
            r[f"{k}_below_noise"] = bool(abs(diff) < threshold) if r is not ref else None
    for r in out:
        r["noise_threshold"] = threshold
    return out


def _mean(frame: pd.DataFrame, col: str) -> float | None:
    if col not in frame.columns or frame.empty:
        return None
    v = frame[col].to_numpy(float)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else None


def mean_curve(
    table: pd.DataFrame, run_ids: list[str], col: str = "domain_loss"
) -> tuple[np.ndarray, np.ndarray]:
    """(D, loss) averaged over the runs (seeds) at the eval points they share."""
    t = table[table["run_id"].isin(run_ids)]
    g = t.groupby("D")[col].agg(["mean", "count"])
    g = g[g["count"] == len(set(t["run_id"]))]
    return g.index.to_numpy(float), g["mean"].to_numpy(float)


def saving_from_curve(d: np.ndarray, loss: np.ndarray, target: float, d_ref: float) -> dict[str, Any]:
    """Fraction D'/d_ref at which the curve first reaches `target` (log-linear interpolation)."""
    below = np.flatnonzero(loss <= target)
    if below.size == 0:
        return {"fraction": None, "reached": False,
                "message": f"DOS's curve never reaches random's final loss {target:.4f} within D={d[-1]:.3g}: no saving"}  # fmt: skip
    i = int(below[0])
    if i == 0:
        return {"fraction": float(d[0] / d_ref), "reached": True, "upper_bound": True,
                "message": "DOS reaches random's final loss by its first eval point: the fraction is an upper bound"}  # fmt: skip
    l0, l1 = loss[i - 1], loss[i]
    w = (l0 - target) / (l0 - l1) if l0 != l1 else 1.0
    d_star = math.exp(math.log(d[i - 1]) + w * (math.log(d[i]) - math.log(d[i - 1])))
    return {"fraction": float(d_star / d_ref), "reached": True, "upper_bound": False}


def saving_from_law(
    form: Any, params: dict, dos: tuple[float, float], rand: tuple[float, float], d_ref: float
) -> dict[str, Any]:
    """D'/D solving L(dos, D') = L(random, D) with the fitted perplexity-aware law."""

    def law(mu: float, sigma: float, d: float) -> float:
        return float(form.predict(params, {"mu": [mu], "sigma": [sigma], "D": [d]})[0])

    target = law(*rand, d_ref)
    out: dict[str, Any] = {"predicted_dos": law(*dos, d_ref), "predicted_random": target}

    def g(logd: float) -> float:
        return law(*dos, math.exp(logd)) - target

    lo, hi = math.log(d_ref) - math.log(1e4), math.log(d_ref) + math.log(1e4)
    if g(lo) * g(hi) > 0:
        out |= {"fraction": None, "message": "the law has no D' within 1e-4..1e4 x D reaching random's loss"}
        return out
    out["fraction"] = math.exp(brentq(g, lo, hi, xtol=1e-10)) / d_ref
    return out

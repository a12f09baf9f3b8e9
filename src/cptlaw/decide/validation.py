"""Validation of a DOS selection: CPT runs at one token budget on DOS vs random vs perplexity windows,
compared on domain and general test loss, and the data saving of DOS over random selection.

Data saving = D'/D, the fraction of random selection's tokens D that DOS needs to reach random's loss:
- from the law: solve `L(mu_dos, sigma_dos, D') = L(mu_random, sigma_random, D)` for D' (Liu et al. 2025);
- from the runs: the first D' at which DOS's eval curve (mean over seeds) falls to random's final loss,
  log-linear interpolation between eval points.
DOS vs random is a paired difference over seeds with a Student-t interval from the measured seed-to-seed
spread; it is "a finding" only when that interval excludes zero (the threshold is derived from the runs' own
noise, never assumed), and one seed gives no verdict.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import brentq
from scipy.stats import t as student_t


def paired_difference(a: Mapping[int, float], b: Mapping[int, float], level: float = 0.9) -> dict[str, Any]:
    """Mean of `a - b` over the seeds both arms ran, with a Student-t interval from the measured seed-to-seed
    spread of the differences: the threshold for "a finding" is that interval's half-width, derived from the
    runs' own noise rather than assumed. One seed measures no noise, so it gives no verdict."""
    seeds = sorted(set(a) & set(b))
    d = np.array([a[s] - b[s] for s in seeds], float)
    out: dict[str, Any] = {"n_seeds": len(seeds), "level": level, "mean": float(d.mean()) if d.size else None}
    if d.size < 2:
        return out | {"ci": None, "half_width": None, "finding": None,
                      "message": f"{d.size} paired seed(s): no measured seed noise, no verdict (run >= 3 seeds)"}  # fmt: skip
    se = float(d.std(ddof=1) / math.sqrt(d.size))
    hw = float(student_t.ppf(0.5 + level / 2, d.size - 1) * se)
    return out | {"sd": float(d.std(ddof=1)), "se": se, "half_width": hw,
                  "ci": [out["mean"] - hw, out["mean"] + hw], "finding": bool(abs(out["mean"]) > hw)}  # fmt: skip


def arm_table(
    table: pd.DataFrame, runs: pd.DataFrame, arms: Mapping[str, tuple[str, int]], level: float = 0.9
) -> list[dict[str, Any]]:
    """One row per arm: final domain/general loss (mean, seed std), landscape, and its paired difference to
    random (`paired_difference`, per loss) when a `random` arm ran.

    `table`: fitting-table rows of the validation runs (`cptlaw.fit_table.build_fit_table`); `runs`: their
    MLflow rows; `arms`: run id -> (arm name, seed).
    """
    final = table.sort_values("D").groupby("run_id").tail(1).set_index("run_id")
    meta = runs.set_index("run_id")
    by_arm: dict[str, dict[int, str]] = {}
    for rid, (arm, seed) in arms.items():
        if rid in final.index:
            by_arm.setdefault(arm, {})[int(seed)] = rid
    out = [_arm_row(arm, seeds, final, meta) for arm, seeds in by_arm.items()]
    ref = next((r for r in out if r["arm"] == "random"), None)
    for r in out if ref is not None else []:
        for k in ("domain_loss", "general_loss"):
            r[f"{k}_vs_random"] = paired_difference(r[f"{k}_by_seed"], ref[f"{k}_by_seed"], level)
    return out


def _arm_row(arm: str, seeds: dict[int, str], final: pd.DataFrame, meta: pd.DataFrame) -> dict[str, Any]:
    rids = list(seeds.values())
    f, m = final.loc[rids], meta.loc[[r for r in rids if r in meta.index]]
    row: dict[str, Any] = {"arm": arm, "n_seeds": len(f), "run_ids": rids, "seeds": sorted(seeds)}
    for k in ("domain_loss", "general_loss"):
        v = f[k].to_numpy(float)
        row |= {k: float(v.mean()), f"{k}_std": float(v.std(ddof=1)) if len(v) > 1 else None,
                f"{k}_by_seed": {s: float(final.loc[rid, k]) for s, rid in seeds.items()}}  # fmt: skip
    row |= {"ppl_mean": _mean(m, "metrics.ppl_mean"), "ppl_std": _mean(m, "metrics.ppl_std"),
            "log_ppl_mean": _mean(m, "metrics.log_ppl_mean"), "log_ppl_std": _mean(m, "metrics.log_ppl_std"),
            "n_tokens": float(f["D"].max()), "domain_epochs": _mean(m, "metrics.domain_epochs")}  # fmt: skip
    return row


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

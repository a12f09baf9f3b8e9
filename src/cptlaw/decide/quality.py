"""Is a fitted D-CPT law in the regime the law describes? The checks a reader needs before trusting a decision.

A D-CPT fit is trusted here when its irreducible loss E is clearly above zero (E → 0 means the runs are still
in the transient, where the loss has not settled into a power law in D), no exponent ends on its search bound,
and it predicts held-out groups of runs well: leave-one-group-out R² by N, by D and by r at or above a target
(the D-CPT paper reports 0.95 / 0.91 / 0.97). Pure functions over the fit stage's `fits.json`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

E_FLOOR = 1e-3  # nats: an E whose interval reaches below this is "at zero" (a loss floor of a thousandth nat)


def held_out_r2(target: dict[str, Any], form: str) -> dict[str, float]:
    """Pooled leave-one-group-out R² of `form` per split (N, D, r, ...) from the target's comparison."""
    summary = (target.get("comparison") or {}).get("summary", [])
    return {s["split"]: float(s["r2"]) for s in summary if s["form"] == form and s.get("r2") is not None}


def e_check(target: dict[str, Any], form: str) -> dict[str, Any]:
    """E of `form` with its bootstrap interval (when `form` is the bootstrapped law) and whether it is clear of 0."""
    e = target["fits"][form]["params"].get("E")
    boot = target.get("bootstrap") or {}
    ci = (boot.get("ci") or {}).get("E") if boot.get("law") == form else None
    low = ci[0] if ci else e
    return {"E": e, "ci": ci, "clear": e is not None and low is not None and low > E_FLOOR}


def law_quality(fits: dict[str, Any], r2_target: float) -> list[dict[str, Any]]:
    """One row per domain/general target fitted at >= 2 model sizes: the best held-out form (and the published
    `dcpt` form beside it) against the targets. `meets`: held-out R² >= `r2_target` by N, D and r, and for a
    domain law also E clear of zero and no exponent on a bound."""
    rows = []
    for name, tg in fits.get("targets", {}).items():
        if tg.get("kind") not in ("domain", "general") or not tg.get("fits"):
            continue
        best = (tg.get("comparison") or {}).get("best_overall")
        forms = [f for f in dict.fromkeys([best, "dcpt"]) if f in tg["fits"]]
        for form in forms:
            r2 = held_out_r2(tg, form)
            if "N" not in r2:  # one model size: N is not identified, the targets do not apply
                continue
            e = e_check(tg, form)
            bounds = list(tg["fits"][form].get("at_bounds") or [])
            r2_ok = all(r2.get(s, float("-inf")) >= r2_target for s in ("N", "D", "r"))
            meets = r2_ok and (tg["kind"] == "general" or (e["clear"] and not bounds))
            rows.append({"target": name, "kind": tg["kind"], "form": form, "best": form == best, "r2": r2,
                         "E": e, "at_bounds": bounds, "meets": meets})  # fmt: skip
    return rows


def deceleration(table: pd.DataFrame, min_d: float) -> pd.DataFrame:
    """Per D-CPT run: the domain loss's fall per e-fold of D over the later half of its points (D >= `min_d`)
    over that of the earlier half. Below 1 the curve decelerates, as a power law with a floor does; at or above
    1 the run is still in the phase before it, where E cannot be identified."""
    t = table[(table["study"] == "dcpt") & (table["D"] >= min_d) & (table["r"] > 0)]
    rows = []
    for (run, domain, n, r), g in t.groupby(["run_id", "domain", "N", "r"], sort=False):
        g = g.sort_values("D")
        d, y = np.log(g["D"].to_numpy(float)), g["domain_loss"].to_numpy(float)
        if d.size < 4:
            continue
        m = d.size // 2
        early, late = (y[0] - y[m]) / (d[m] - d[0]), (y[m] - y[-1]) / (d[-1] - d[m])
        rows.append({"run_id": run, "domain": domain, "N": n, "r": r, "early": early, "late": late,
                     "ratio": late / early if early > 0 else np.nan})  # fmt: skip
    return pd.DataFrame(rows, columns=["run_id", "domain", "N", "r", "early", "late", "ratio"])

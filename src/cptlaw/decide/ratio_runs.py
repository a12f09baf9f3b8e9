"""Validation of the usage-2 decision by new runs: CPT at the recommended domain share r* and at r* ± δ with
the same domain budget D_d (total tokens D = D_d / r) at the size usage 2 was evaluated for, over seeds.

Runs that already bracket r* only say where the law's answer sits among past shares; fresh runs at r* test it.
The verdict: r* is the best of the three, or within the measured seed noise of the best (a paired Student-t
interval over seeds, `cptlaw.decide.validation.paired_difference`), or beaten. Each run's realised domain
loss stands beside the law's prediction, and the published form's (D-CPT Table 5).
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from cptlaw import layout, tracking
from cptlaw.decide.inputs import DecisionError, fitted_law
from cptlaw.decide.validation import paired_difference
from cptlaw.fit_table import build_fit_table

STAGE = "validate"
PUBLISHED = "dcpt"


def ratio_points(r_star: float, delta: float, r_min: float) -> list[float]:
    """r* and r* ± δ, clipped to [r_min, 1]; duplicates from clipping dropped (r* = 1 gives two points)."""
    if not 0 < delta < 1:
        raise DecisionError(f"`validate.ratio.delta` must lie in (0, 1), got {delta}")
    pts = {round(float(np.clip(r, r_min, 1.0)), 4) for r in (r_star - delta, r_star, r_star + delta)}
    return sorted(pts)


def ratio_verdict(losses: dict[float, dict[int, float]], r_star: float, level: float) -> dict[str, Any]:
    """Is r* the best share of those run, or within seed noise of the best? (`losses`: share -> seed -> loss)"""
    r_star = min(losses, key=lambda r: abs(r - r_star))
    means = {r: float(np.mean(list(v.values()))) for r, v in losses.items()}
    best = min(means, key=means.get)
    out: dict[str, Any] = {
        "r_star_run": r_star,
        "best_run": best,
        "mean_loss": {f"{r:g}": m for r, m in means.items()},
    }
    if best == r_star:
        return out | {
            "confirmed": True,
            "verdict": f"r* = {r_star:g} gave the lowest domain loss of the shares run",
        }
    diff = paired_difference(losses[r_star], losses[best], level)
    out["r_star_minus_best"] = diff
    if diff["finding"] is None:
        return out | {"confirmed": None, "verdict": f"r = {best:g} beat r* = {r_star:g} by {diff['mean']:.4f} "
                      f"nats; {diff['message']}"}  # fmt: skip
    lo, hi = diff["ci"]
    tail = f"by {diff['mean']:.4f} nats ({level:.0%} interval [{lo:+.4f}, {hi:+.4f}] over {diff['n_seeds']} seeds)"
    if not diff["finding"]:
        return out | {"confirmed": True, "verdict": f"r* = {r_star:g} is within seed noise of the best share "
                      f"r = {best:g} ({tail})"}  # fmt: skip
    return out | {"confirmed": False, "verdict": f"r = {best:g} beat the recommended r* = {r_star:g} {tail}: "
                  "the runs do not confirm the law's recommendation"}  # fmt: skip


def grid_base(domain: str, prefix: str, n_params: float, fitted: set[str]) -> tuple[str, str]:
    """(base model, regime) of the D-CPT grid runs of `domain` at size `n_params` that the laws were fitted on
    (`fitted` run ids): the runs usage 2 came from, not older runs left in the store."""
    runs = tracking.runs_frame([layout.cpt_experiment("dcpt", domain, prefix)])
    if not runs.empty:
        runs = runs[runs["run_id"].isin(fitted)]
    if runs.empty:
        raise DecisionError(
            f"no fitted D-CPT grid runs of `{domain}` to validate usage 2 against: run the fit stage"
        )
    at = runs[np.isclose(runs["metrics.n_params"].astype(float), n_params, rtol=1e-6)]
    if at.empty:
        raise DecisionError(
            f"no D-CPT grid run of `{domain}` at N={n_params:.4g}: re-run the recommend stage"
        )
    return str(at["params.base_model"].mode()[0]), str(at["params.regime"].mode()[0])


def ratio_config(cfg: DictConfig, domain: str, base: str, regime: str, r: float, n_tokens: int, seed: int):
    """The CPT config of one validation run: share `r` of `domain` at `n_tokens` total tokens."""
    sub = copy.deepcopy(cfg)
    for key, value in {"cpt.study": STAGE, "cpt.domain": domain, "cpt.regime": regime, "cpt.r": r,
                       "cpt.n_tokens": n_tokens, "cpt.base": base, "cpt.eval_points": int(cfg[STAGE].eval_points),
                       "seed": seed}.items():  # fmt: skip
        OmegaConf.update(sub, key, value, merge=False)
    return sub


def train_ratios(cfg: DictConfig, domain: str, u2: dict[str, Any]) -> dict[str, tuple[float, int]]:
    """Run (or find finished) r* and r* ± δ at the usage's domain budget, per seed: {run id: (r, seed)}."""
    from cptlaw.lm.cpt_run import run_cells  # torch: only when runs are trained

    c = cfg[STAGE].ratio
    fitted = set(pd.read_csv(layout.fit_table_file(cfg), usecols=["run_id"], dtype=str)["run_id"])
    base, regime = grid_base(domain, layout.prefix(cfg), float(u2["n_params"]), fitted)
    cells = [(r, int(seed)) for seed in c.seeds for r in ratio_points(float(u2["r_domain"]), float(c.delta),
                                                                         float(c.r_min))]  # fmt: skip
    tokens = {r: int(round(float(u2["domain_tokens"]) / r)) for r, _ in cells}
    print(f"[validate] {domain}: usage 2 check at r (D) {', '.join(f'{r:g} ({d})' for r, d in tokens.items())}, "
          f"D_d={u2['domain_tokens']:.0f}, seeds {list(c.seeds)}")  # fmt: skip
    cfgs = [ratio_config(cfg, domain, base, regime, r, tokens[r], seed) for r, seed in cells]
    summaries = run_cells(cfgs, int(cfg[STAGE].n_jobs))
    return {s["run_id"]: cell for s, cell in zip(summaries, cells, strict=True)}


def predictions(fits: dict, domain: str, laws: list[str], final: pd.DataFrame) -> dict[str, np.ndarray]:
    """Each named domain law's prediction at the runs' (N, D, r); laws that need other inputs are left out."""
    fitted = fits["targets"].get(f"domain_{domain}", {}).get("fits", {})
    out = {}
    for name in dict.fromkeys(laws):
        if name not in fitted:
            continue
        law = fitted_law(f"domain_{domain}", name, fitted[name])
        if set(law.form.columns) <= {"N", "D", "r"}:
            out[name] = law.form.predict(law.params, {k: final[k].to_numpy(float) for k in law.form.columns})
    return out


def validate_ratio(cfg: DictConfig, fits: dict, rec: dict, domain: str) -> dict[str, Any]:
    """Train the usage-2 check runs of one domain and compare them with the law and with each other."""
    u2 = (rec.get("domains", {}).get(domain) or {}).get("limited_data")
    if not u2 or u2.get("r_domain") is None:
        raise DecisionError(f"recommend.json has no usage-2 answer for `{domain}`: run the recommend stage")
    run_r = train_ratios(cfg, domain, u2)
    exp = layout.cpt_experiment(STAGE, domain, layout.prefix(cfg))
    runs = tracking.runs_frame([exp])
    table = build_fit_table(runs[runs["run_id"].isin(list(run_r))])
    final = table.sort_values("D").groupby("run_id").tail(1).reset_index(drop=True)
    pred = predictions(fits, domain, [str(u2["law"]), PUBLISHED], final)
    rows = [{"r": run_r[rid][0], "seed": run_r[rid][1], "N": float(f["N"]), "D": float(f["D"]),
             "domain_loss": float(f["domain_loss"]), "general_loss": float(f["general_loss"]), "run_id": rid,
             "predicted": {k: float(v[i]) for k, v in pred.items()}}
            for i, (rid, f) in enumerate(final.set_index("run_id").iterrows())]  # fmt: skip
    losses: dict[float, dict[int, float]] = {}
    for row in rows:
        losses.setdefault(row["r"], {})[row["seed"]] = row["domain_loss"]
    r_star, r_min = float(u2["r_domain"]), float(cfg[STAGE].ratio.r_min)
    out = {"domain": domain, "law": u2["law"], "r_star": r_star, "n_params": float(u2["n_params"]),
           "domain_tokens": float(u2["domain_tokens"]), "runs": sorted(rows, key=lambda x: (x["r"], x["seed"])),
           **ratio_verdict(losses, r_star, float(cfg[STAGE].level))}  # fmt: skip
    if r_star < r_min:  # the law's r* would need D = D_d / r* tokens: the smallest share run stands in for it
        out["verdict"] = (f"r* = {r_star:.3g} lies below validate.ratio.r_min = {r_min:g} (a run at r* would need "
                          f"D = {u2['domain_tokens'] / r_star:.3g} tokens), so r = {out['r_star_run']:g} stands in "
                          f"for it: {out['verdict']}")  # fmt: skip
    return out

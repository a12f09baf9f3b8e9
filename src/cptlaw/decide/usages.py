"""The three D-CPT usages (Que et al. 2024, sec. 4) per domain, with run-bootstrap CIs, and the
leave-one-domain-out table of the cross-domain law.

Usage 1 (trade-off) uses the general law, usages 2 and 3 the domain law (`cptlaw.laws.decide`). The CIs come
from `cptlaw.laws.bootstrap` over whole runs of the fitting table, with each usage as a derived quantity, so
an interval reflects how much the decision moves when the runs that fixed the law are resampled.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
from joblib import Parallel, delayed

from cptlaw.decide.brackets import usage1_bracket, usage2_bracket, verdict
from cptlaw.decide.inputs import SWEEP_HINT, DecisionError, Law, dcpt_rows, target_law
from cptlaw.laws import (
    FitError,
    LawInputError,
    bootstrap,
    compare_forms,
    compute_optimal,
    law_from_spec,
    max_domain_share,
    optimal_share_limited_data,
    two_modes,
)
from cptlaw.laws.design import candidate_grid, decision_function, rank_next_runs
from cptlaw.laws.fit import FitProblem, refit

# the decisions among a bootstrap's derived quantities (the rest are flags such as `binding`)
ANSWERS = ("r_domain", "limited_r_domain", "compute_n_params", "compute_n_tokens")
LOG_ANSWERS = ("compute_n_params", "compute_n_tokens")  # spans decades: two groups are judged in log units


@dataclass
class Setting:
    """Where the usages are evaluated (null config values are filled from the runs)."""

    n_params: float  # N (non-embedding parameters)
    n_tokens: float  # D for usage 1
    domain_tokens: float  # D_d for usage 2
    compute: float  # C = 6 N D for usage 3
    lg0: float  # base model's general loss at N (step 0 of the runs)
    notes: list[str]


def setting(rows: pd.DataFrame, c: Any) -> Setting:
    notes = []
    n_obs = np.unique(rows["N"].to_numpy(float))
    n = float(c.n_params) if c.get("n_params") else float(n_obs.max())
    d = float(c.n_tokens) if c.get("n_tokens") else float(rows["D"].max())
    dd = float(c.domain_tokens) if c.get("domain_tokens") else 0.5 * float(rows["D"].max())
    comp = float(c.compute) if c.get("compute") else 6.0 * n * d
    near = n_obs[np.argmin(np.abs(np.log(n_obs) - math.log(n)))]
    base = rows.loc[rows["N"] == near, "general_loss_base"].to_numpy(float)
    base = base[np.isfinite(base)]
    if near != n:
        notes.append(f"Lg0 taken from the runs at the nearest observed N={near:.3g} (asked N={n:.3g})")
    if n > n_obs.max() * 1.01 or d > rows["D"].max() * 1.01:
        notes.append(
            f"extrapolation: N={n:.3g}, D={d:.3g} beyond the largest run (N={n_obs.max():.3g}, D={rows['D'].max():.3g})"
        )
    return Setting(n, d, dd, comp, float(np.mean(base)) if base.size else float("nan"), notes)


def _xy(rows: pd.DataFrame, kind: str) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    r = rows["r"].to_numpy(float)
    X = {
        "N": rows["N"].to_numpy(float),
        "D": rows["D"].to_numpy(float),
        "r": r if kind == "domain" else 1.0 - r,
    }
    y = rows[f"{kind}_loss"].to_numpy(float)
    return X, y, rows["run_id"].to_numpy(str)


def _boot(law: Law, rows: pd.DataFrame, kind: str, derived: dict, c: Any, seed: int) -> dict[str, Any] | None:
    n_runs = rows["run_id"].nunique()
    if int(c.bootstrap) <= 0:
        return None
    if n_runs < 3:
        return {"error": f"{n_runs} runs: too few to bootstrap (need >= 3)"}
    X, y, groups = _xy(rows, kind)
    bs = bootstrap(law.form, X, y, groups, n_boot=int(c.bootstrap), level=float(c.ci_level), seed=seed,
                   base=SimpleNamespace(params=law.params), derived=derived, method=str(c.get("bootstrap_method", "warm")), n_starts=int(c.bootstrap_starts),
                   n_refine=2, n_polish=1, maxiter=int(c.bootstrap_maxiter))  # fmt: skip
    out = bs.to_dict()
    out["mean"] = {k: float(np.mean(v)) for k, v in bs.samples.items() if v.size and k in derived}
    out["modes"] = {k: m for k in derived if k in ANSWERS
                    and (m := two_modes(bs.samples[k], log=k in LOG_ANSWERS)) is not None}  # fmt: skip
    return out


def _only(boot: dict | None, keys: tuple[str, ...]) -> dict | None:
    """The bootstrap record restricted to one usage's derived quantities (the parameter CIs are in fits.json)."""
    if not boot or "ci" not in boot:
        return boot
    sub = {k: v for k, v in boot.items() if k not in ("ci", "median", "mean")}
    return sub | {
        s: {k: v for k, v in boot.get(s, {}).items() if k in keys} for s in ("ci", "median", "mean", "modes")
    }


def _ci(boot: dict | None, key: str) -> list[float] | None:
    return None if not boot or "ci" not in boot or key not in boot["ci"] else boot["ci"][key]


def _flag_split(out: dict[str, Any], boot: dict | None, key: str, what: str = "r_d") -> dict[str, Any]:
    """Say so when the resampled answers fall into two groups (`laws.two_modes`): the interval alone hides it."""
    m = ((boot or {}).get("modes") or {}).get(key)
    if m is not None:
        (a, b), (pa, pb) = m["medians"], m["shares"]
        out["split"] = m
        out["fragile"] = (
            f"the resampled answers fall into two groups ({what} ≈ {a:.3g} in {pa:.0%} of resamples, ≈ {b:.3g} "
            f"in {pb:.0%}), not one spread around the answer: the runs leave the law's optimum in a flat valley; "
            "add runs between the two and refit"
        )
    return out


def usage_tradeoff(lg: Law, rows: pd.DataFrame, s: Setting, c: Any, seed: int) -> dict[str, Any]:
    """Usage 1: largest domain share whose general-loss rise over Lg0 stays <= T."""
    t = float(c.tolerance)
    out: dict[str, Any] = {"law": lg.name, "law_choice": lg.choice, "tolerance": t, "n_params": s.n_params,
                           "n_tokens": s.n_tokens, "general_loss_base": s.lg0}  # fmt: skip
    if not np.isfinite(s.lg0):
        out["error"] = "the runs hold no base general loss (general_loss at step 0): re-run the dcpt sweep"
        return out
    dec = max_domain_share(lg.form, lg.params, s.n_params, s.n_tokens, s.lg0, t)
    out |= {"status": dec.status, "rise": dec.rise, "general_loss": dec.general_loss}
    out["r_domain"] = None if dec.status == "infeasible" else dec.r_domain
    if dec.status == "infeasible":
        out["message"] = (
            f"no domain share satisfies T={t:.1%}: even r_d=0 raises the general loss by {dec.rise:.1%} "
            f"at N={s.n_params:.3g}, D={s.n_tokens:.3g} (CPT on general text alone moves it); raise "
            f"`recommend.tolerance` or evaluate at a smaller D"
        )
    elif dec.status == "unconstrained":
        out["message"] = f"r_d=1 (pure domain CPT) stays within T={t:.1%}: the trade-off does not bind"

    def share(p):
        return max_domain_share(lg.form, p, s.n_params, s.n_tokens, s.lg0, t).r_domain

    def binding(p):
        return float(max_domain_share(lg.form, p, s.n_params, s.n_tokens, s.lg0, t).status == "binding")

    boot = _boot(lg, rows, "general", {"r_domain": share, "binding": binding}, c, seed)
    out["bootstrap"] = _only(boot, ("r_domain", "binding"))
    out["ci"] = _ci(boot, "r_domain")
    _flag_split(out, boot, "r_domain")
    out["runs"] = verdict(out["r_domain"], usage1_bracket(rows, s.n_params, s.n_tokens, s.lg0, t))
    return _answer_to_runs(out, "rise within T")


def _answer_to_runs(out: dict[str, Any], what: str) -> dict[str, Any]:
    """A law answer outside the runs' bracket is not the answer: keep it as `r_domain_law`, report the bracket."""
    runs = out["runs"]
    if runs.get("agrees") is not False:
        return out
    lo, hi = runs["bracket"]
    law = out["r_domain"]
    out |= {"r_domain_law": law, "r_domain": None, "status": "contradicted by the runs",
            "message": f"the law contradicts the runs: it gives r_d={law:.3f}, but the runs at this N and D put the "
                       f"answer ({what}) between r_d={lo:g} and r_d={hi:g}; use that bracket, or add runs inside it "
                       "and refit"}  # fmt: skip
    return out


def published_answer(usage: str, law: Law, s: Setting, c: Any) -> dict[str, Any]:
    """The decision under the published form, reported beside the one the best held-out form gives."""
    if usage == "tradeoff":
        dec = max_domain_share(law.form, law.params, s.n_params, s.n_tokens, s.lg0, float(c.tolerance))
        return {"law": law.name, "r_domain": None if dec.status == "infeasible" else dec.r_domain,
                "status": dec.status}  # fmt: skip
    dec = optimal_share_limited_data(law.form, law.params, s.n_params, s.domain_tokens, r_min=float(c.r_min))
    return {"law": law.name, "r_domain": dec.r_domain, "on_boundary": dec.on_boundary}


def usage_limited_data(ld: Law, rows: pd.DataFrame, s: Setting, c: Any, boot: dict | None) -> dict[str, Any]:
    """Usage 2: optimal domain share when only D_d domain tokens exist (D = D_d / r)."""
    r_min = float(c.r_min)
    dec = optimal_share_limited_data(ld.form, ld.params, s.n_params, s.domain_tokens, r_min=r_min)
    out: dict[str, Any] = {
        "law": ld.name, "law_choice": ld.choice, "n_params": s.n_params, "domain_tokens": s.domain_tokens,
        "r_domain": dec.r_domain, "total_tokens": dec.total_tokens, "domain_loss": dec.domain_loss,
        "on_boundary": dec.on_boundary, "extrapolation_factor": dec.total_tokens / float(rows["D"].max()),
    }  # fmt: skip
    if dec.on_boundary:
        edge = "r_d = 1 (use only domain data)" if dec.r_domain > 0.5 else f"the search limit r_min={r_min}"
        out["message"] = (
            f"boundary optimum at {edge}: the fitted domain law has no interior optimum at D_d={s.domain_tokens:.3g}; "
            f"add runs at small r (e.g. 0.05-0.2) and several D to resolve it"
        )
    out["bootstrap"] = _only(boot, ("limited_r_domain", "limited_on_boundary"))
    out["ci"] = _ci(boot, "limited_r_domain")
    _flag_split(out, boot, "limited_r_domain")
    out["runs"] = verdict(dec.r_domain, usage2_bracket(rows, s.n_params, s.domain_tokens))
    return _answer_to_runs(out, "lowest domain loss")


def usage_compute(ld: Law, rows: pd.DataFrame, s: Setting, r: float, boot: dict | None) -> dict[str, Any]:
    """Usage 3: loss-optimal (N, D) at fixed compute C = 6ND and fixed domain share r (domain law)."""
    out: dict[str, Any] = {"law": ld.name, "law_choice": ld.choice, "compute": s.compute, "r_domain": r}
    sizes = np.unique(rows["N"].to_numpy(float))
    if len(sizes) < 2:
        out["error"] = (
            f"needs runs at >= 2 model sizes, have N={sizes[0]:.3g} only: the N term is not identified; add bases "
            f"to the domain's sweep ({SWEEP_HINT['domain'].format(d=rows['domain'].iloc[0])} with more `bases`)"
        )
        return out
    try:
        a = compute_optimal(ld.form, ld.params, s.compute, r)
    except LawInputError as exc:
        out["error"] = str(exc)
        return out
    out |= {"n_params": a.n_params, "n_tokens": a.n_tokens, "domain_loss": a.loss,
            "tokens_per_param": a.n_tokens / a.n_params}  # fmt: skip
    n_obs = rows["N"].to_numpy(float)
    if not n_obs.min() <= a.n_params <= n_obs.max():
        out["message"] = (
            f"N*={a.n_params:.3g} lies outside the model sizes run ({n_obs.min():.3g}-{n_obs.max():.3g}): "
            f"an extrapolation of the N term"
        )
    out["bootstrap"] = _only(boot, ("compute_n_params", "compute_n_tokens"))
    out["ci"] = {"n_params": _ci(boot, "compute_n_params"), "n_tokens": _ci(boot, "compute_n_tokens")}
    return _flag_split(out, boot, "compute_n_params", "N*")


def domain_usages(
    fits: dict, table: pd.DataFrame, domain: str, c: Any, seed: int
) -> tuple[dict[str, Any], tuple[Law, Law, Setting]]:
    """All three usages of one domain (record, (general law, domain law, setting) for the plots).

    Raises `DecisionError` when the domain's laws or runs are missing."""
    rows = dcpt_rows(table, domain, float(c.min_d_tokens))
    if rows.empty:
        raise DecisionError(
            f"no dcpt runs of domain `{domain}` in the fitting table: {SWEEP_HINT['domain'].format(d=domain)}"
        )
    lg = target_law(fits, f"general_{domain}", str(c.law_choice))
    ld = target_law(fits, f"domain_{domain}", str(c.law_choice), exclude=("dcpt_forgetting",))
    s = setting(rows, c)
    out: dict[str, Any] = {"domain": domain, "n_runs": int(rows["run_id"].nunique()), "notes": s.notes}
    out["tradeoff"] = usage_tradeoff(lg, rows, s, c, seed)
    r3 = c.get("compute_r")
    if r3 is None:
        r3 = (
            out["tradeoff"].get("r_domain")
            or (out["tradeoff"].get("runs", {}).get("bracket") or [0.5])[0]
            or 0.5
        )
    r3, r_min = max(float(r3), 1e-3), float(c.r_min)

    def _limited(p):
        return optimal_share_limited_data(ld.form, p, s.n_params, s.domain_tokens, r_min)

    def _alloc(p, key):
        try:
            return getattr(compute_optimal(ld.form, p, s.compute, r3), key)
        except LawInputError:
            return float("nan")

    fn = {
        "limited_r_domain": lambda p: _limited(p).r_domain,
        "limited_on_boundary": lambda p: float(_limited(p).on_boundary),
        "compute_n_params": lambda p: _alloc(p, "n_params"),
        "compute_n_tokens": lambda p: _alloc(p, "n_tokens"),
    }
    boot = _boot(ld, rows, "domain", fn, c, seed)
    out["limited_data"] = usage_limited_data(ld, rows, s, c, boot)
    out["compute"] = usage_compute(ld, rows, s, r3, boot)
    for usage, law, kind in (("tradeoff", lg, "general"), ("limited_data", ld, "domain")):
        try:
            pub = target_law(fits, f"{kind}_{domain}", "primary")
        except DecisionError:
            continue
        if pub.name != law.name:
            out[usage]["published"] = published_answer(usage, pub, s, c)
    return out, (lg, ld, s)


def cross_domain_table(fits: dict, table: pd.DataFrame, fit_kwargs: dict) -> dict[str, Any]:
    """Held-out-domain errors of the cross-domain law: fit on the other domains, predict the held-out domain
    (or pair of domains, split `domain_pair`) from k1, k2 alone. Reuses the fit stage's comparison when it
    holds a `domain` split."""
    tg = fits["targets"].get("cross")
    if tg is None or not tg.get("fits"):
        why = "; ".join(f"{k}: {v}" for k, v in (tg or {}).get("skipped", {}).items()) or "not fitted"
        return {"rows": [], "message": f"no cross-domain law ({why}): {SWEEP_HINT['cross']}"}
    rows = [
        r
        for r in (tg.get("comparison") or {}).get("rows", [])
        if r["split"] in ("domain", "domain_pair") and r["form"] != "naive"
    ]
    source = "fit stage comparison"
    if not rows:
        t = table[table["study"] == "dcpt"] if "study" in table.columns else table
        t = t[np.isfinite(t["k1"]) & np.isfinite(t["k2"]) & np.isfinite(t["domain_loss"])]
        if t["domain"].nunique() < 3:
            return {"rows": [], "message": f"leave-one-domain-out needs >= 3 domains with k1, k2 (have "
                                           f"{t['domain'].nunique()}): {SWEEP_HINT['cross']}"}  # fmt: skip
        X = {k: t[k].to_numpy(float) for k in ("N", "D", "r", "k1", "k2")} | {
            "domain": t["domain"].to_numpy(str)
        }
        try:
            rows = compare_forms(
                [law_from_spec(f.get("spec", name)) for name, f in tg["fits"].items()],
                X,
                t["domain_loss"].to_numpy(float),
                ["domain"],
                **fit_kwargs,
            ).rows
        except (FitError, LawInputError) as exc:
            return {"rows": [], "message": f"leave-one-domain-out failed: {exc}"}
        source = "recomputed"
    out = []
    for r in rows:
        own = fits["targets"].get(f"domain_{r['held_out']}", {}).get("fits", {})
        own_rmse = next(iter(own.values()))["rmse"] if own else None
        keys = ("split", "form", "held_out", "n_train", "n_test", "rmse", "mape", "r2", "error")
        out.append({k: r.get(k) for k in keys}
                   | {"own_fit_rmse": own_rmse})  # fmt: skip
    return {"rows": out, "source": source}


def next_runs(ld: Law, rows: pd.DataFrame, s: Setting, c: Any, seed: int) -> dict[str, Any]:
    """Which D-CPT run to make next for usage 2 (the optimal domain share at N, D_d): candidates at the
    observed N and r, `next_run.d_factor` times longer than the longest run so far, ranked by the expected shrinkage of the
    decision's interval per FLOP (`laws.design.rank_next_runs`)."""
    nr = c.get("next_run") or {}
    if not nr or int(c.bootstrap) <= 0 or rows["run_id"].nunique() < 3:
        return {"skipped": "needs recommend.next_run, recommend.bootstrap > 0 and >= 3 runs"}
    X, y, groups = _xy(rows, "domain")
    try:
        fitted = refit(FitProblem(ld.form, ld.form.features(X), y), ld.params)
        boot = bootstrap(ld.form, X, y, groups, n_boot=int(nr["n_boot"]), base=fitted, seed=seed)
        decide = decision_function(ld.form, "usage2", N=s.n_params, domain_tokens=s.domain_tokens)
        d_max = float(X["D"].max())
        grid = candidate_grid(
            N=np.unique(X["N"]), D=[float(nr.get("d_factor", 2.0)) * d_max], r=np.unique(X["r"])
        )
        width, ranked = rank_next_runs(ld.form, X, y, fitted, boot, decide, grid, groups=groups,
                                       level=float(c.ci_level), n_sim=int(nr["n_sim"]), n_boot=int(nr["n_boot"]),
                                       seed=seed)  # fmt: skip
    except (FitError, LawInputError) as exc:
        return {"error": f"next-run design failed: {exc}"}
    return {"decision": "usage2 r_domain", "width_now": width, "n_candidates": len(grid),
            "top": [r.to_dict() for r in ranked[: int(nr.get("top", 3))]]}  # fmt: skip


def decide_domain(
    fits: dict, table: pd.DataFrame, d: str, c: Any, seed: int
) -> tuple[dict, tuple | None, str | None]:
    """One domain's usages and next runs, its plot inputs, or the reason it cannot be decided."""
    try:
        rec, inputs = domain_usages(fits, table, d, c, seed)
    except DecisionError as exc:
        return {}, None, str(exc)
    _, ld, s = inputs
    rec["next_run"] = next_runs(ld, dcpt_rows(table, d, float(c.min_d_tokens)), s, c, seed)
    return rec, inputs, None


def recommend_domains(
    fits: dict, table: pd.DataFrame, c: Any, seed: int, fit_kwargs: dict, n_jobs: int = 1
) -> dict[str, Any]:
    """The three usages of every domain in `c.domains` (a domain that cannot be decided is kept in `errors`
    with the reason) and the leave-one-domain-out table of the cross-domain law; `plot_inputs` holds the
    laws and setting of each decided domain for the plots. `n_jobs` domains are decided at once, one process
    each (joblib): every domain's randomness comes from `seed` alone, so the answers are those of one process."""
    out: dict[str, Any] = {"domains": {}, "errors": {}, "plot_inputs": {}}
    domains = list(map(str, c.domains))
    decided = Parallel(n_jobs=n_jobs)(delayed(decide_domain)(fits, table, d, c, seed) for d in domains)
    for d, (rec, inputs, why) in zip(domains, decided, strict=True):
        if why is None:
            out["domains"][d], out["plot_inputs"][d] = rec, inputs
        else:
            out["errors"][d] = why
    if not out["domains"]:
        raise DecisionError("no domain could be decided: " + " | ".join(out["errors"].values()))
    out["cross_domain"] = cross_domain_table(fits, table, fit_kwargs)
    return out


def usage_metrics(domains: dict[str, Any]) -> dict[str, Any]:
    """The numbers of each domain's decisions, for DVC metrics and MLflow."""
    m: dict[str, Any] = {}
    for d, rec in domains.items():
        u1, u2, u3 = rec["tradeoff"], rec["limited_data"], rec["compute"]
        m[d] = {
            "tradeoff_r_domain": u1.get("r_domain"), "tradeoff_rise": u1.get("rise"),
            "limited_r_domain": u2.get("r_domain"), "limited_domain_loss": u2.get("domain_loss"),
            "compute_n_params": u3.get("n_params"), "compute_n_tokens": u3.get("n_tokens"),
        }  # fmt: skip
        m[d] = {k: v for k, v in m[d].items() if v is not None}
    return m


def summary_lines(d: str, rec: dict[str, Any]) -> list[str]:
    """What a user reads on the console for one domain: the three decisions, then every note."""
    u1, u2, u3 = rec["tradeoff"], rec["limited_data"], rec["compute"]
    lines = [f"{d}: usage 1 r_d={u1.get('r_domain')} ci={u1.get('ci')} ({u1.get('status', u1.get('error'))}); "
             f"usage 2 r_d={u2['r_domain']:.3f} ci={u2.get('ci')}; usage 3 N*={u3.get('n_params', float('nan')):.3g} "
             f"D*={u3.get('n_tokens', float('nan')):.3g}"]  # fmt: skip
    return lines + [
        f"{d}: note: {m}" for m in [*rec["notes"], *(u.get("message") for u in (u1, u2, u3))] if m
    ]

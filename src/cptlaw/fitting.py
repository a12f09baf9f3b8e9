"""The fitting driver: the fitting table → targets → every configured law → fits, held-out comparison with
skill against a naive baseline, run-group bootstrap intervals.

Targets (docs/CONTRACTS.md):
- `domain_<d>`: domain loss of `dcpt-<d>` runs vs (N, D, r = domain share);
- `general_<d>`: general loss of the same runs vs (N, D, r = general share = 1 - domain share);
- `cross`: domain loss of all `dcpt-*` runs with their domain's k1, k2 from the `probe-<d>` runs (cross-domain
  law; needs >= 2 domains);
- `ppl_<d>` / `ppl_log_<d>`: domain loss of `ppl-regimes-<d>` runs vs (mu, sigma, D) of perplexity / log-ppl.
A target with too few runs for a law is skipped, with the reason kept in its result. Pure pandas/numpy over
the laws: the stage reads the tracking store and writes the files.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from joblib import Parallel, delayed

from cptlaw.errors import FitStageError
from cptlaw.laws import (
    REGISTRY,
    FitError,
    FitResult,
    LawForm,
    LawInputError,
    bootstrap,
    calibrate,
    compare_forms,
    fit,
    law_from_spec,
    naive_predict,
    noise_scale,
    ppl_optimum,
    prediction_intervals,
)

log = logging.getLogger("cptlaw.fit")
PPL_STATS = {"ppl": ("mu", "sigma"), "log_ppl": ("log_mu", "log_sigma")}


@dataclass(frozen=True)
class Target:
    """One fitting problem: loss `y` of runs `runs` at inputs `X` (columns named as the laws expect)."""

    name: str
    kind: str  # domain | general | cross | ppl
    domain: str | None
    X: dict[str, np.ndarray]
    y: np.ndarray
    runs: np.ndarray  # run id of every point: the bootstrap and min_runs count whole runs


def domain_coefficients(dcpt: pd.DataFrame, probe: pd.DataFrame) -> pd.DataFrame:
    """Set each domain's k1, k2 (the cross-domain law's K = w1/k1 + w2*k2 is one number per domain).

    Que et al. 2024 (cross-domain D-CPT): k1 = the base model's initial domain loss, k2 = how fast it falls in
    a short probe run. Taken from the domain's `probe-<d>` runs (r = 1, ~1% of a run) at the smallest base,
    else from its r = 1 grid runs; the per-run values stay in `k1_run`, `k2_run` (they vary with r and noise).
    """
    dcpt = dcpt.assign(k1_run=dcpt["k1"], k2_run=dcpt["k2"])
    for d in dcpt["domain"].dropna().unique():
        src = probe[probe["domain"] == d] if len(probe) else probe
        if src.empty:
            src = dcpt[(dcpt["domain"] == d) & (dcpt["r"] == 1.0)]
        if src.empty:
            continue
        runs = src[src["N"] == src["N"].min()].drop_duplicates("run_id")
        dcpt.loc[dcpt["domain"] == d, ["k1", "k2"]] = float(runs["k1"].mean()), float(runs["k2"].mean())
    return dcpt


def _target(name: str, kind: str, domain: str | None, rows: pd.DataFrame, y: str, X: dict) -> Target:
    return Target(name, kind, domain, X, rows[y].to_numpy(dtype=float), rows["run_id"].to_numpy())


def dcpt_targets(dcpt: pd.DataFrame, domains: Sequence[str]) -> list[Target]:
    """`domain_<d>` and `general_<d>` for every domain, then the pooled `cross` target."""
    out = []
    for d in domains:
        t = dcpt[dcpt["domain"] == d]
        n_d = {"N": t["N"].to_numpy(), "D": t["D"].to_numpy()}
        out.append(_target(f"domain_{d}", "domain", d, t, "domain_loss", n_d | {"r": t["r"].to_numpy()}))
        out.append(
            _target(f"general_{d}", "general", d, t, "general_loss", n_d | {"r": 1.0 - t["r"].to_numpy()})
        )
    k1, k2 = (pd.to_numeric(dcpt[k], errors="coerce") for k in ("k1", "k2"))
    usable = np.isfinite(k1) & np.isfinite(k2) & (k2 > 0)
    for d in sorted(set(dcpt["domain"][~usable].dropna())):
        log.warning("[fit] cross: domain %s left out (no positive probe rate k2: run +sweep=probe)", d)
    t = dcpt[usable]
    X = {c: t[c].to_numpy() for c in ("N", "D", "r", "k1", "k2")} | {"domain": t["domain"].to_numpy()}
    X["domain_pair"] = domain_pairs(X["domain"])
    return [*out, _target("cross", "cross", None, t, "domain_loss", X)]


def all_targets(
    dcpt: pd.DataFrame, ppl: pd.DataFrame, domains: Sequence[str], stats: Sequence[str]
) -> list[Target]:
    """The fit stage's targets, in its order: every D-CPT target, then every perplexity target."""
    return dcpt_targets(dcpt, domains) + ppl_targets(ppl, domains, stats)


def untimed(result: Any) -> Any:
    """A result without its wall-clock timings (`*_s` keys): the part that must agree across processes."""
    if isinstance(result, dict):
        return {k: untimed(v) for k, v in result.items() if not k.endswith("_s")}
    return [untimed(v) for v in result] if isinstance(result, list) else result


def domain_pairs(domains: np.ndarray) -> np.ndarray:
    """Label each row with its pair of domains (sorted names, taken two by two: `a+b`).

    Holding out a pair fits the cross-domain law on the other domains and predicts two unseen ones from their
    probe coefficients alone, as Que et al. do (four fitted, two predicted with six domains).
    """
    names = sorted(set(domains))
    label = {d: "+".join(names[i - i % 2 : i - i % 2 + 2]) for i, d in enumerate(names)}
    return np.array([label[d] for d in domains], dtype=object)


def ppl_targets(ppl: pd.DataFrame, domains: Sequence[str], stats: Sequence[str]) -> list[Target]:
    """`ppl_<d>` (perplexity statistics) and/or `ppl_log_<d>` (log-perplexity) for every domain."""
    out = []
    for d in domains:
        t = ppl[ppl["domain"] == d]
        for stat in stats:
            m, s = PPL_STATS[stat]
            X = {"mu": t[m].to_numpy(), "sigma": t[s].to_numpy(), "D": t["D"].to_numpy(),
                 "regime": t["regime"].astype(str).to_numpy()}  # fmt: skip
            out.append(
                _target(f"ppl_{d}" if stat == "ppl" else f"ppl_log_{d}", "ppl", d, t, "domain_loss", X)
            )
    return out


def usable_points(t: Target, min_d_tokens: float) -> Target:
    """Drop points with a non-finite loss or input, or fewer than `min_d_tokens` tokens seen."""
    keep = np.isfinite(t.y) & (np.asarray(t.X["D"], dtype=float) >= min_d_tokens)
    for v in t.X.values():
        if v.dtype.kind == "f":
            keep &= np.isfinite(v)
    return replace(t, X={k: v[keep] for k, v in t.X.items()}, y=t.y[keep], runs=t.runs[keep])


def skip_reason(t: Target, form: LawForm, min_runs: int) -> str | None:
    """Why `form` cannot be fitted on `t` (None: it can)."""
    n_runs = len(set(t.runs))
    if n_runs < min_runs:
        return f"{n_runs} finished runs, fewer than fit.min_runs={min_runs}"
    if t.y.size <= form.n_params:
        return f"{t.y.size} points for {form.n_params} parameters"
    if t.kind == "cross" and len(set(t.X["domain"])) < 2:
        return "the cross-domain law needs runs with k1, k2 from >= 2 domains"
    if t.kind == "ppl" and len(set(zip(t.X["mu"], t.X["sigma"], strict=True))) < 3:
        return "fewer than 3 distinct (mu, sigma) regimes"
    return None


def law_forms(specs: Sequence[Any], t: Target, epsilon: float) -> list[tuple[Any, LawForm]]:
    """(spec, law) of the laws configured for a target kind: built-in names, formulas or mappings
    (`laws.law_from_spec`); fits.json keeps each spec so the decisions can rebuild the law."""
    return [
        (s, law_from_spec(s, columns=list(t.X), **({"epsilon": epsilon} if _builtin(s) else {})))
        for s in specs
    ]


def _builtin(spec: Any) -> bool:
    return (isinstance(spec, str) and spec in REGISTRY) or (isinstance(spec, Mapping) and "law" in spec)


def naive_baseline(X_train: dict, y_train: np.ndarray, X_test: dict, split: str) -> np.ndarray:
    """Interpolate the held-out group from its neighbours along `split` at equal other inputs."""
    return naive_predict(X_train, y_train, X_test, split, [c for c in X_train if c != split])


def fit_laws(
    t: Target, forms: Sequence[tuple[Any, LawForm]], min_runs: int, **kw: Any
) -> tuple[dict, dict, list]:
    """Every (spec, form) on one target: ({law: fit dict}, {law: skip reason}, [FitResult of the fitted])."""
    fits, skipped, fitted = {}, {}, []
    for spec, form in forms:
        reason = skip_reason(t, form, min_runs)
        if reason is None:
            try:
                res = fit(form, t.X, t.y, **kw)
            except (FitError, LawInputError) as exc:
                reason = f"fit failed: {exc}"
            else:
                fits[form.name] = res.to_dict() | {"spec": spec}
                fitted.append(res)
                continue
        skipped[form.name] = reason
    return fits, skipped, fitted


def fit_targets(
    targets: Sequence[Target], c: Mapping[str, Any], seed: int, n_jobs: int = 1
) -> Iterator[tuple[Target, dict[str, Any], FitResult | None]]:
    """`fit_target` of each target, `n_jobs` processes at once (joblib), yielded in order with its log lines:
    every fit is seeded alone, so the results are those of one process."""
    done = Parallel(n_jobs=n_jobs, return_as="generator")(delayed(fit_target)(t, c, seed) for t in targets)
    for t, (result, main) in zip(targets, done, strict=True):
        log_target(t.name, result)
        yield t, result, main


def log_target(name: str, result: Mapping[str, Any]) -> None:
    """One line per fitted law and per skipped one (in the stage's process: targets may fit in workers)."""
    for law, f in result.get("fits", {}).items():
        log.info("[fit] %s %s: huber %.4g r2 %.4f (%s)", name, law, f["huber"], f["r2"], f["message"])
    for law, reason in result.get("skipped", {}).items():
        log.warning("[fit] skipping %s %s: %s", name, law, reason)


def ppl_surface_optimum(main: FitResult, X: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """The (mu, sigma) minimising the fitted ppl law at the largest D, within the observed landscape."""
    box = ((float(X["mu"].min()), float(X["mu"].max())), (float(X["sigma"].min()), float(X["sigma"].max())))
    d_max = float(X["D"].max())
    opt = ppl_optimum(main.form, main.params, d_max, *box)
    return {"n_tokens": d_max, "mu": opt.mu, "sigma": opt.sigma, "loss": opt.loss, "interior": opt.interior,
            "on_boundary": opt.on_boundary, "box": box}  # fmt: skip


def forecast_intervals(
    t: Target, main: FitResult, boot: Any, along: str, factor: float, level: float, seed: int, **kw: Any
) -> dict[str, Any]:
    """Calibrated prediction intervals where a user extrapolates: each run continued to `factor` x its largest
    `along` (D: a run `factor` times longer). Calibrated on extrapolation folds of these runs along `along`, so
    the intervals widen with the extrapolation error the law actually made here, not only with parameter noise."""
    cal = calibrate(
        main.form, t.X, t.y, along, groups=t.runs, horizon=float(np.log10(factor)), seed=seed, **kw
    )
    last = pd.DataFrame({k: v for k, v in t.X.items() if k in main.form.columns}).assign(run=t.runs)
    last = last.loc[last.groupby("run", sort=False)[along].idxmax()]  # runs in table order, not by random id
    X_new = {c: last[c].to_numpy() * (factor if c == along else 1) for c in main.form.columns}
    iv = prediction_intervals(
        main, boot, X_new, level=level, noise=noise_scale(main, t.X, t.y), calibration=cal
    )
    return {"level": level, "along": along, "factor": factor, "method": iv.method, "calibration": cal.to_dict(),
            "points": {c: X_new[c].tolist() for c in main.form.columns}
            | {"prediction": iv.pred.tolist(), "lo": iv.lo.tolist(), "hi": iv.hi.tolist()}}  # fmt: skip


def fit_target(t: Target, c: Mapping[str, Any], seed: int) -> tuple[dict[str, Any], FitResult | None]:
    """One target's result (fits, skips, comparison with naive skill, bootstrap, ppl optimum) and its primary
    fit (the first configured law that could be fitted; None if none could)."""
    kw = {"n_starts": int(c["n_starts"]), "n_refine": int(c["n_refine"]), "n_polish": int(c["n_polish"]),
          "sampler": str(c["sampler"]), "delta": float(c["huber_delta"]), "seed": seed,
          "maxiter": int(c.get("polish_maxiter", 1500))}  # fmt: skip
    t = usable_points(t, float(c["min_d_tokens"]))
    forms = law_forms(list(c["laws"][t.kind]), t, float(c["epsilon"]))
    fits, skipped, fitted = fit_laws(t, forms, int(c["min_runs"]), **kw)
    out: dict[str, Any] = {"kind": t.kind, "domain": t.domain, "n_points": int(t.y.size),
                           "n_runs": len(set(t.runs)), "fits": fits, "skipped": skipped}  # fmt: skip
    if not fitted:
        return out, None
    splits = [s for s in c["holdouts"][t.kind] if s in t.X and len(set(t.X[s])) >= 2]
    if splits:
        cmp_ = compare_forms([f.form for f in fitted], t.X, t.y, splits, mode=str(c["holdout_mode"]),
                             max_groups=int(c["max_holdout_groups"]), baseline=naive_baseline, **kw)  # fmt: skip
        out["comparison"] = cmp_.to_dict()
    main = fitted[0]
    if int(c["bootstrap"]) > 0 and out["n_runs"] >= 3:
        bs = bootstrap(main.form, t.X, t.y, t.runs, n_boot=int(c["bootstrap"]), level=float(c["ci_level"]),
                       base=main, seed=seed, delta=kw["delta"], maxiter=kw["maxiter"])  # fmt: skip
        out["bootstrap"] = {"law": main.law} | bs.to_dict()
        iv = (c.get("intervals") or {}).get(t.kind)
        if iv:
            try:
                out["intervals"] = forecast_intervals(t, main, bs, str(iv["along"]), float(iv["factor"]),
                                                      float(c["ci_level"]), seed, delta=kw["delta"])  # fmt: skip
            except (FitError, LawInputError) as exc:
                out["intervals"] = {"error": str(exc)}
    if t.kind == "ppl":
        out["optimum"] = ppl_surface_optimum(main, t.X)
    return out, main


def fit_metrics(results: Mapping[str, Any]) -> dict[str, Any]:
    """R2 and Huber per target, law and split (train + pooled held-out, with skill vs naive) for DVC."""
    m: dict[str, Any] = {}
    for name, r in results.items():
        for law, f in r["fits"].items():
            m.setdefault(name, {})[law] = {"train": {"r2": f["r2"], "huber": f["huber"]}}
        for s in r.get("comparison", {}).get("summary", []):
            if s["form"] in m.get(name, {}):
                held = {"r2": s["r2"], "huber": s["huber"]}
                if s.get("skill") is not None:
                    held["skill_vs_naive"] = s["skill"]
                m[name][s["form"]][f"heldout_{s['split']}"] = held
    return m


def pipeline_run_ids(sweeps_dir: str | Path) -> set[str]:
    """Run ids of the cells in the sweep summaries (`reports/sweeps/*.json`): the runs the current sweeps made
    or reused. Runs of earlier base models, tokenizers or corpora stay in the store but are not these."""
    files = sorted(Path(sweeps_dir).glob("*.json"))
    if not files:
        raise FitStageError(
            f"no sweep summaries in {sweeps_dir}: run the CPT sweeps (dvc repro cpt_dcpt cpt_ppl), or set "
            "fit.runs=store to fit every finished run in the tracking store"
        )
    return {
        str(r["run_id"]) for f in files for r in json.loads(f.read_text()).get("runs", []) if r.get("run_id")
    }


def source_run_ids(mode: str, sweeps_dir: str | Path) -> set[str] | None:
    """The run ids the fit stage may use: those of the sweep summaries (`sweeps`), or None for every run (`store`)."""
    if mode not in ("sweeps", "store"):
        raise FitStageError(f"`fit.runs` must be `sweeps` or `store`, got {mode!r}")
    return pipeline_run_ids(sweeps_dir) if mode == "sweeps" else None

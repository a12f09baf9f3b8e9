"""Stage `fit`: FINISHED CPT runs (MLflow) → fitting table → every configured law → fits, metrics, plots.

    python -m cptlaw.stages.fit [fit.n_starts=64 fit.bootstrap=50 ...]

Targets (docs/CONTRACTS.md experiments, prefixed by `tracking.experiment_prefix`):
- `domain_<d>`: domain loss of `dcpt-<d>` runs vs (N, D, r = domain share);
- `general_<d>`: general loss of the same runs vs (N, D, r = general share = 1 - domain share);
- `cross`: domain loss of all `dcpt-*` runs with their domain's k1, k2 from the `probe-<d>` runs (cross-domain
  law; needs >= 2 domains);
- `ppl_<d>` / `ppl_log_<d>`: domain loss of `ppl-regimes-<d>` runs vs (mu, sigma, D) of perplexity / log-ppl.
A target with too few runs for a law is skipped with the reason logged and written to fits.json.
Outputs: `reports/fits.json`, `reports/fit_table.csv`, `reports/metrics/fit.json`, `reports/plots/fit/*.png`
and an MLflow `fit` run holding the source run ids (artifact + tag with their count).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import pandas as pd
from omegaconf import DictConfig

from cptlaw import fit_plots, tracking
from cptlaw.config import CONF_DIR, config_hash, to_dict
from cptlaw.cpu import setup_cpu
from cptlaw.errors import FitStageError
from cptlaw.fit_table import fit_table_from_experiments
from cptlaw.laws import FitError, LawInputError, bootstrap, compare_forms, fit, get_law, ppl_optimum
from cptlaw.stages import exit_on_bad_input

log = logging.getLogger("cptlaw.fit")


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


def _targets(cfg: DictConfig, dcpt: pd.DataFrame, ppl: pd.DataFrame) -> list[dict[str, Any]]:
    """(name, kind, X, y, groups) of every target that has data."""
    out = []
    for d in cfg.domains:
        t = dcpt[dcpt["domain"] == d]
        base = {"N": t["N"].to_numpy(), "D": t["D"].to_numpy()}
        out.append({"name": f"domain_{d}", "kind": "domain", "domain": d, "rows": t, "y": t["domain_loss"],
                    "X": base | {"r": t["r"].to_numpy()}})  # fmt: skip
        out.append({"name": f"general_{d}", "kind": "general", "domain": d, "rows": t, "y": t["general_loss"],
                    "X": base | {"r": 1.0 - t["r"].to_numpy()}})  # fmt: skip
    k1, k2 = (pd.to_numeric(dcpt[k], errors="coerce") for k in ("k1", "k2"))
    usable = np.isfinite(k1) & np.isfinite(k2) & (k2 > 0)
    for d in sorted(set(dcpt["domain"][~usable].dropna())):
        log.warning("[fit] cross: domain %s left out (no positive probe rate k2: run +sweep=probe)", d)
    t = dcpt[usable]
    X = {c: t[c].to_numpy() for c in ("N", "D", "r", "k1", "k2")} | {"domain": t["domain"].to_numpy()}
    out.append({"name": "cross", "kind": "cross", "domain": None, "rows": t, "y": t["domain_loss"], "X": X})
    for d in cfg.domains:
        t = ppl[ppl["domain"] == d]
        for stats, (m, s) in {"ppl": ("mu", "sigma"), "log_ppl": ("log_mu", "log_sigma")}.items():
            if stats not in cfg.fit.ppl_stats:
                continue
            X = {"mu": t[m].to_numpy(), "sigma": t[s].to_numpy(), "D": t["D"].to_numpy(),
                 "regime": t["regime"].astype(str).to_numpy()}  # fmt: skip
            name = f"ppl_{d}" if stats == "ppl" else f"ppl_log_{d}"
            out.append({"name": name, "kind": "ppl", "domain": d, "rows": t, "y": t["domain_loss"], "X": X})
    return out


def _skip_reason(tg: dict[str, Any], form: Any, min_runs: int) -> str | None:
    n_runs = tg["rows"]["run_id"].nunique()
    if n_runs < min_runs:
        return f"{n_runs} finished runs, fewer than fit.min_runs={min_runs}"
    if len(tg["y"]) <= form.n_params:
        return f"{len(tg['y'])} points for {form.n_params} parameters"
    if tg["kind"] == "cross" and len(set(tg["X"]["domain"])) < 2:
        return "the cross-domain law needs runs with k1, k2 from >= 2 domains"
    if tg["kind"] == "ppl" and len(set(zip(tg["X"]["mu"], tg["X"]["sigma"], strict=True))) < 3:
        return "fewer than 3 distinct (mu, sigma) regimes"
    return None


def _fit_target(cfg: DictConfig, tg: dict[str, Any], plots: Path) -> dict[str, Any]:
    c = cfg.fit
    kw = {"n_starts": int(c.n_starts), "n_refine": int(c.n_refine), "n_polish": int(c.n_polish),
          "sampler": str(c.sampler), "delta": float(c.huber_delta), "seed": int(cfg.seed),
          "maxiter": int(c.get("polish_maxiter", 1500))}  # fmt: skip
    y = tg["y"].to_numpy(dtype=float)
    keep = np.isfinite(y) & (tg["X"]["D"] >= float(c.min_d_tokens))
    for v in tg["X"].values():
        if v.dtype.kind == "f":
            keep &= np.isfinite(v)
    X, y = {k: v[keep] for k, v in tg["X"].items()}, y[keep]
    runs = tg["rows"]["run_id"].to_numpy()[keep]
    out: dict[str, Any] = {"kind": tg["kind"], "domain": tg["domain"], "n_points": int(y.size),
                           "n_runs": int(len(set(runs))), "fits": {}, "skipped": {}}  # fmt: skip
    tg = tg | {"X": X, "y": pd.Series(y), "rows": pd.DataFrame({"run_id": runs})}
    forms = [get_law(n, epsilon=float(c.epsilon)) for n in c.laws[tg["kind"]]]
    fitted = []
    for form in forms:
        reason = _skip_reason(tg, form, int(c.min_runs))
        if reason is None:
            try:
                res = fit(form, X, y, **kw)
                out["fits"][form.name] = res.to_dict()
                fitted.append(res)
                log.info(
                    "[fit] %s %s: huber %.4g r2 %.4f (%s)",
                    tg["name"],
                    form.name,
                    res.huber,
                    res.r2,
                    res.message,
                )
                continue
            except (FitError, LawInputError) as exc:
                reason = f"fit failed: {exc}"
        out["skipped"][form.name] = reason
        log.warning("[fit] skipping %s %s: %s", tg["name"], form.name, reason)
    if not fitted:
        return out
    splits = [s for s in c.holdouts[tg["kind"]] if s in X and len(set(X[s])) >= 2]
    if splits:
        cmp_ = compare_forms([f.form for f in fitted], X, y, splits, mode=str(c.holdout_mode),
                             max_groups=int(c.max_holdout_groups), **kw)  # fmt: skip
        out["comparison"] = cmp_.to_dict()
    main = fitted[0]
    if int(c.bootstrap) > 0 and out["n_runs"] >= 3:
        # refits start from the full-data optimum, so fewer refine/polish runs suffice
        bs = bootstrap(main.form, X, y, runs, n_boot=int(c.bootstrap), level=float(c.ci_level), base=main,
                       seed=int(cfg.seed), delta=float(c.huber_delta), n_starts=kw["n_starts"],
                       n_refine=max(1, kw["n_refine"] // 3), n_polish=max(1, kw["n_polish"] // 3),
                       maxiter=kw["maxiter"], sampler=kw["sampler"])  # fmt: skip
        out["bootstrap"] = {"law": main.law} | bs.to_dict()
    if c.plots:
        _plots(tg, main, X, y, plots, out)
    return out


def _plots(tg: dict[str, Any], main: Any, X: dict, y: np.ndarray, plots: Path, out: dict[str, Any]) -> None:
    name = tg["name"]
    pred = main.predict(X)
    fit_plots.observed_vs_predicted(
        y, pred, f"{name}: {main.law} (R2 {main.r2:.3f})", plots / f"{name}_obs_pred.png"
    )
    if tg["kind"] in ("domain", "general"):
        share = "domain share" if tg["kind"] == "domain" else "general share"

        def law(n, d, r):
            return main.predict({"N": n, "D": d, "r": r})

        fit_plots.loss_vs_r(X, y, law, f"{name}: loss vs {share}", plots / f"{name}_loss_vs_r.png")
        grp = np.array([f"N={n:.2g} r={r:.2f}" for n, r in zip(X["N"], X["r"], strict=True)])
        fit_plots.loss_vs_d(X["D"], y, grp, pred, f"{name}: loss vs D", plots / f"{name}_loss_vs_d.png")
    if tg["kind"] == "ppl":
        fit_plots.loss_vs_d(
            X["D"], y, X["regime"], pred, f"{name}: loss vs D per regime", plots / f"{name}_loss_vs_d.png"
        )
        box = (
            (float(X["mu"].min()), float(X["mu"].max())),
            (float(X["sigma"].min()), float(X["sigma"].max())),
        )
        d_max = float(X["D"].max())
        opt = ppl_optimum(main.form, main.params, d_max, *box)
        out["optimum"] = {"n_tokens": d_max, "mu": opt.mu, "sigma": opt.sigma, "loss": opt.loss,
                          "interior": opt.interior, "on_boundary": opt.on_boundary}  # fmt: skip
        mg, sg = np.meshgrid(np.linspace(*box[0], 60), np.linspace(*box[1], 60))
        surf = main.predict({"mu": mg.ravel(), "sigma": sg.ravel(), "D": np.full(mg.size, d_max)}).reshape(
            mg.shape
        )
        fit_plots.ppl_surface(mg, sg, surf, opt, (X["mu"], X["sigma"]), f"{name}: L(mu, sigma, D={d_max:.2g})",
                              plots / f"{name}_surface.png")  # fmt: skip


def _metrics(results: dict[str, Any]) -> dict[str, Any]:
    """R2 and Huber per target, law and split (train + pooled held-out) for DVC."""
    m: dict[str, Any] = {}
    for name, r in results.items():
        for law, f in r["fits"].items():
            m.setdefault(name, {})[law] = {"train": {"r2": f["r2"], "huber": f["huber"]}}
        for s in r.get("comparison", {}).get("summary", []):
            m[name][s["form"]][f"heldout_{s['split']}"] = {"r2": s["r2"], "huber": s["huber"]}
    return m


def run(cfg: DictConfig) -> dict[str, Any]:
    t0 = time.perf_counter()
    setup_cpu(int(cfg.threads))
    tracking.configure_from(cfg.tracking)
    prefix = str(cfg.tracking.get("experiment_prefix") or "")
    dcpt, ids_d = fit_table_from_experiments([f"{prefix}dcpt-{d}" for d in cfg.domains])
    ppl, ids_p = fit_table_from_experiments([f"{prefix}ppl-regimes-{d}" for d in cfg.domains])
    probe, ids_k = fit_table_from_experiments([f"{prefix}probe-{d}" for d in cfg.domains])
    if len(dcpt):
        dcpt = domain_coefficients(dcpt, probe)
    source = sorted(set(ids_d) | set(ids_p) | set(ids_k))
    if not source:
        raise FitStageError(
            f"no FINISHED CPT runs for domains {list(cfg.domains)} in {cfg.tracking.uri} (experiments "
            f"{prefix}dcpt-<domain>, {prefix}ppl-regimes-<domain>): run the CPT sweeps first (dvc repro cpt_dcpt cpt_ppl)"
        )
    reports = Path(cfg.paths.reports)
    plots = reports / "plots" / "fit"
    plots.mkdir(parents=True, exist_ok=True)
    (reports / "metrics").mkdir(parents=True, exist_ok=True)
    log.info("[fit] %d source runs, %d dcpt rows, %d ppl-regime rows", len(source), len(dcpt), len(ppl))
    results = {tg["name"]: _fit_target(cfg, tg, plots) for tg in _targets(cfg, dcpt, ppl)}
    fits = {"targets": results, "n_source_runs": len(source), "source_run_ids": source,
            "config": to_dict(cfg.fit), "config_hash": config_hash(cfg.fit), "wall_s": time.perf_counter() - t0}  # fmt: skip
    # Written only once every fit is done, so a crash part-way leaves the previous table and fits together.
    pd.concat([dcpt.assign(study="dcpt"), ppl.assign(study="ppl_regimes")]).to_csv(
        reports / "fit_table.csv", index=False
    )
    (reports / "fits.json").write_text(json.dumps(fits, indent=1, default=float))
    metrics = _metrics(results)
    (reports / "metrics" / "fit.json").write_text(json.dumps(metrics, indent=1, default=float))
    flat = {f"{t}_{law}_{s}_{k}": v for t, laws in metrics.items() for law, ss in laws.items()
            for s, kv in ss.items() for k, v in kv.items() if np.isfinite(v)}  # fmt: skip
    with tracking.run(f"{prefix}fit", run_name="fit", config_hash=config_hash(cfg.fit),
                      tags={"cptlaw.stage": "fit", "cptlaw.n_source_runs": len(source)}):  # fmt: skip
        tracking.log_dict({"source_run_ids": source}, "source_runs.json")
        tracking.log_params({"profile": cfg.get("profile_name"), "laws": json.dumps(to_dict(cfg.fit.laws))})
        tracking.log_metrics(flat)
        tracking.log_artifact(reports / "fits.json")
    log.info("[fit] wrote %s (%.1f s)", reports / "fits.json", time.perf_counter() - t0)
    return fits


@hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    with exit_on_bad_input("fit"):
        run(cfg)


if __name__ == "__main__":
    main()

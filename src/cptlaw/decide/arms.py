"""Validation arms: CPT runs on the DOS subset vs random vs low/middle/high perplexity windows at one token
budget, compared on domain and general test loss, and the data saving of DOS read off the fitted law and off
the measured curves.

Each arm is one CPT cell (`cptlaw.lm.cpt_run.run_cell`, study `validate`), so an arm that already finished
with the same config is not trained again; nor is one that a study of `validate.reuse_from` ran (the random
arm and the perplexity windows at the regime runs' D and seeds), whose run is read from that study.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from omegaconf import DictConfig, OmegaConf

from cptlaw import layout, tracking
from cptlaw.decide import plots
from cptlaw.decide.inputs import DecisionError
from cptlaw.decide.selection import ppl_law
from cptlaw.decide.validation import arm_table, mean_curve, saving_from_curve, saving_from_law
from cptlaw.fit_table import build_fit_table

STAGE = "validate"
PPL_KEYS = {"ppl": ("ppl_mean", "ppl_std"), "log_ppl": ("log_ppl_mean", "log_ppl_std")}


def arm_config(cfg: DictConfig, domain: str, regime: str, n_tokens: int, base: str, seed: int) -> DictConfig:
    """The CPT config of one arm: pure domain data (r = 1) of `regime` at `n_tokens` from base `base`."""
    sub = copy.deepcopy(cfg)
    for key, value in {"cpt.study": "validate", "cpt.domain": domain, "cpt.regime": regime, "cpt.r": 1.0,
                       "cpt.n_tokens": n_tokens, "cpt.base": base, "cpt.scores_base": base,
                       "cpt.eval_points": int(cfg[STAGE].eval_points), "seed": seed,
                       "cpt.reuse_from": list(cfg[STAGE].get("reuse_from") or [])}.items():  # fmt: skip
        OmegaConf.update(sub, key, value, merge=False)
    return sub


def load_selection(cfg: DictConfig, domain: str) -> dict[str, Any]:
    path = layout.selection_file(cfg, domain)
    if not path.is_file():
        raise DecisionError(f"{path} does not exist: run the select stage (python -m cptlaw.stages.select)")
    return json.loads(path.read_text())


def train_arms(
    cfg: DictConfig, domain: str, sel: dict[str, Any], n_tokens: int
) -> tuple[list[str], dict[str, tuple[str, int]]]:
    """Run (or find finished) every arm x seed: (the experiments of their runs, {run id: (arm, seed)})."""
    from cptlaw.lm.cpt_run import run_cells  # torch: only when arms are trained

    c = cfg[STAGE]
    arms = {str(k): (f"ids:{sel['ids_file']}" if str(v) == "selected" else str(v)) for k, v in c.arms.items()}
    if "random" not in arms:
        raise DecisionError("`validate.arms` needs a `random` arm: the data saving is measured against it")
    cells = [(arm, int(seed)) for seed in c.seeds for arm in arms]
    print(f"[validate] {domain}: {len(arms)} arms x {len(c.seeds)} seeds at D={n_tokens} ({c.n_jobs} jobs)")
    cfgs = [arm_config(cfg, domain, arms[arm], n_tokens, str(sel["base"]), seed) for arm, seed in cells]
    summaries = run_cells(cfgs, int(c.n_jobs))
    exps = sorted({s["experiment"] for s in summaries})
    return exps, {s["run_id"]: cell for s, cell in zip(summaries, cells, strict=True)}


def dos_saving(law: Any, sel: dict, by: dict, curves: dict, n_tokens: int) -> dict[str, Any]:
    """Tokens DOS saves to reach random's final loss (from the curves and from the law), and the verdict."""
    if "dos" not in by:
        return {}
    d_r, l_r = curves["random"]
    saving: dict[str, Any] = {"curve": saving_from_curve(*curves["dos"], float(l_r[-1]), float(d_r[-1]))}
    dos, rnd = (tuple(by[a][k] for k in PPL_KEYS[sel["stats"]]) for a in ("dos", "random"))
    if None not in dos + rnd:
        saving["law"] = saving_from_law(law.form, law.params, dos, rnd, float(n_tokens))
    vs = by["dos"].get("domain_loss_vs_random") or {}
    saving |= {"dos_minus_random": vs.get("mean"), "ci": vs.get("ci"), "finding": vs.get("finding")}
    saving["verdict"] = dos_verdict(vs)
    return saving


def dos_verdict(vs: dict[str, Any]) -> str:
    """One sentence on DOS vs random: the paired difference, its interval and whether it is a finding."""
    if not vs or vs.get("mean") is None:
        return "DOS vs random: no paired runs"
    head = f"DOS minus random: {vs['mean']:+.4f} nats over {vs['n_seeds']} seed(s)"
    if vs.get("ci") is None:
        return f"{head}; {vs['message']}"
    lo, hi = vs["ci"]
    ci = f"{vs['level']:.0%} interval [{lo:+.4f}, {hi:+.4f}] from the measured seed noise"
    if not vs["finding"]:
        return f"{head}, {ci}: it contains zero, so no difference is shown (not a finding)"
    return f"{head}, {ci}: DOS is {'better' if vs['mean'] < 0 else 'worse'} than random (a finding)"


def predicted_losses(rows: list[dict[str, Any]], law: Any, stats: str) -> None:
    """Each arm's domain loss predicted by the fitted perplexity-aware law at its (mu, sigma, D), beside the
    realised one: how well the law that chose the subset foresaw the runs."""
    for r in rows:
        mu, sigma = (r.get(k) for k in PPL_KEYS[stats])
        if None in (mu, sigma) or not r.get("n_tokens"):
            continue
        x = {"mu": [mu], "sigma": [sigma], "D": [r["n_tokens"]]}
        r["predicted_domain_loss"] = float(law.form.predict(law.params, x)[0])
        r["prediction_error"] = r["predicted_domain_loss"] / r["domain_loss"] - 1


def log_summary(cfg: DictConfig, out: dict[str, Any], fig: Any) -> None:
    rows, saving = out["arms"], out["saving"]
    metrics = {f"{r['arm']}_{k}": r[k] for r in rows for k in ("domain_loss", "general_loss")}
    metrics |= {
        f"saving_{k}": v["fraction"] for k, v in saving.items() if isinstance(v, dict) and v.get("fraction")
    }
    with tracking.run(out["experiment"], run_name=f"{STAGE}-summary-{out['domain']}",
                      tags={tracking.STAGE_TAG: STAGE, "cptlaw.kind": "summary"},
                      artifact_root=cfg.tracking.get("artifact_root")):  # fmt: skip
        tracking.log_params({"domain": out["domain"], "n_tokens": out["n_tokens"],
                             "seeds": ",".join(map(str, cfg[STAGE].seeds))})  # fmt: skip
        tracking.log_metrics(metrics)
        tracking.log_dict(out, "validate.json")
        if fig:
            tracking.log_artifact(fig, "plots")


def validate_domain(cfg: DictConfig, fits: dict, domain: str) -> dict[str, Any]:
    """Train (or reuse) one domain's arms, compare them and log a summary run."""
    c = cfg[STAGE]
    sel = load_selection(cfg, domain) | {"domain": domain}
    n_tokens = int(c.n_tokens or sel["budget_tokens"])
    exps, run_arm = train_arms(cfg, domain, sel, n_tokens)
    runs = tracking.runs_frame(exps)
    runs = runs[runs["run_id"].isin(list(run_arm))]
    table = build_fit_table(runs)
    rows = arm_table(table, runs, run_arm, float(c.level))
    law = ppl_law(fits, domain, sel["stats"], str(cfg.select.law_choice))
    predicted_losses(rows, law, sel["stats"])
    by = {r["arm"]: r for r in rows}
    curves = {a: mean_curve(table, by[a]["run_ids"]) for a in by}
    exp = layout.cpt_experiment(
        STAGE, domain, layout.prefix(cfg)
    )  # the summary run's (the arms may be elsewhere)
    out: dict[str, Any] = {"domain": domain, "experiment": exp, "arm_experiments": exps, "n_tokens": n_tokens,
                           "arms": rows,
                           "selection": {k: sel[k] for k in ("optimum", "achieved", "stats", "law")},
                           "saving": dos_saving(law, sel, by, curves, n_tokens)}  # fmt: skip
    fig = None
    if c.plots:
        fig = plots.validation_curves(curves, f"{domain}: validation runs (D={n_tokens})",
                                      layout.plots_dir(cfg, STAGE) / f"{domain}_curves.png")  # fmt: skip
        out["plot"] = str(fig.relative_to(layout.reports(cfg)))  # relative to the reports folder
    log_summary(cfg, out, fig)
    return out


def validation_metrics(domains: dict[str, Any], usage2: dict[str, Any]) -> dict[str, Any]:
    """Per domain, for DVC: each arm's losses, DOS minus random, the DOS saving (curves, law), and the usage-2
    check (r*, the best share run, whether the runs confirm r*)."""
    out: dict[str, Any] = {
        d: {r["arm"]: {"domain_loss": r["domain_loss"], "general_loss": r["general_loss"]} for r in v["arms"]}
        | {"dos_minus_random": v["saving"].get("dos_minus_random"),
           "saving_curve": (v["saving"].get("curve") or {}).get("fraction"),
           "saving_law": (v["saving"].get("law") or {}).get("fraction")}
        for d, v in domains.items()
    }  # fmt: skip
    for d, v in usage2.items():
        out.setdefault(d, {})["usage2"] = {"r_star": v["r_star"], "best_run": v["best_run"],
                                           "confirmed": v["confirmed"]}  # fmt: skip
    return out

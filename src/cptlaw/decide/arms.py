"""Validation arms: CPT runs on the DOS subset vs random vs low/middle/high perplexity windows at one token
budget, compared on domain and general test loss, and the data saving of DOS read off the fitted law and off
the measured curves.

Each arm is one CPT cell (`cptlaw.lm.cpt_run.run_cell`, study `validate`), so an arm that already finished
with the same config is not trained again.
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
                       "cpt.eval_points": int(cfg[STAGE].eval_points), "seed": seed}.items():  # fmt: skip
        OmegaConf.update(sub, key, value, merge=False)
    return sub


def load_selection(cfg: DictConfig, domain: str) -> dict[str, Any]:
    path = layout.selection_file(cfg, domain)
    if not path.is_file():
        raise DecisionError(f"{path} does not exist: run the select stage (python -m cptlaw.stages.select)")
    return json.loads(path.read_text())


def train_arms(
    cfg: DictConfig, domain: str, sel: dict[str, Any], n_tokens: int
) -> tuple[str, dict[str, str]]:
    """Run (or find finished) every arm x seed: (experiment, {run id: arm})."""
    from cptlaw.lm.cpt_run import run_cell  # torch: only when arms are trained

    c = cfg[STAGE]
    arms = {str(k): (f"ids:{sel['ids_file']}" if str(v) == "selected" else str(v)) for k, v in c.arms.items()}
    if "random" not in arms:
        raise DecisionError("`validate.arms` needs a `random` arm: the data saving is measured against it")
    run_arm: dict[str, str] = {}
    for seed in c.seeds:
        for arm, regime in arms.items():
            print(f"[validate] {domain}: arm {arm} ({regime}), D={n_tokens}, seed {seed}")
            summary = run_cell(arm_config(cfg, domain, regime, n_tokens, str(sel["base"]), int(seed)))
            run_arm[summary["run_id"]] = arm
    return summary["experiment"], run_arm


def dos_saving(
    cfg: DictConfig, fits: dict, sel: dict, by: dict, curves: dict, n_tokens: int
) -> dict[str, Any]:
    """Tokens DOS saves to reach random's final loss (from the curves and from the law), and the verdict."""
    if "dos" not in by:
        return {}
    d_r, l_r = curves["random"]
    saving: dict[str, Any] = {"curve": saving_from_curve(*curves["dos"], float(l_r[-1]), float(d_r[-1]))}
    law = ppl_law(fits, sel["domain"], sel["stats"], str(cfg.select.law_choice))
    dos, rnd = (tuple(by[a][k] for k in PPL_KEYS[sel["stats"]]) for a in ("dos", "random"))
    if None not in dos + rnd:
        saving["law"] = saving_from_law(law.form, law.params, dos, rnd, float(n_tokens))
    diff, thr, n = by["dos"]["domain_loss_vs_random"], by["dos"]["noise_threshold"], len(cfg[STAGE].seeds)
    saving |= {"dos_minus_random": diff, "below_noise": by["dos"]["domain_loss_below_noise"]}
    saving["verdict"] = (
        f"DOS vs random differ by {diff:+.4f} nats, below the seed-noise threshold {thr:.3f}: not a finding "
        f"({n} seed(s))" if saving["below_noise"] else
        f"DOS is {'better' if diff < 0 else 'worse'} than random by {abs(diff):.4f} nats (threshold {thr:.3f}, {n} seed(s))"
    )  # fmt: skip
    return saving


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
    exp, run_arm = train_arms(cfg, domain, sel, n_tokens)
    runs = tracking.runs_frame([exp])
    runs = runs[runs["run_id"].isin(list(run_arm))]
    table = build_fit_table(runs)
    rows = arm_table(table, runs, run_arm, float(c.seed_noise))
    by = {r["arm"]: r for r in rows}
    curves = {a: mean_curve(table, by[a]["run_ids"]) for a in by}
    out: dict[str, Any] = {"domain": domain, "experiment": exp, "n_tokens": n_tokens, "arms": rows,
                           "selection": {k: sel[k] for k in ("optimum", "achieved", "stats", "law")},
                           "saving": dos_saving(cfg, fits, sel, by, curves, n_tokens)}  # fmt: skip
    fig = None
    if c.plots:
        fig = plots.validation_curves(curves, f"{domain}: validation runs (D={n_tokens})",
                                      layout.plots_dir(cfg, STAGE) / f"{domain}_curves.png")  # fmt: skip
        out["plot"] = str(fig.relative_to(layout.reports(cfg)))  # relative to the reports folder
    log_summary(cfg, out, fig)
    return out


def validation_metrics(domains: dict[str, Any]) -> dict[str, Any]:
    """Per domain: each arm's losses and the DOS saving (from the curves and from the law), for DVC."""
    return {d: {r["arm"]: {"domain_loss": r["domain_loss"], "general_loss": r["general_loss"]} for r in v["arms"]}
            | {"saving_curve": (v["saving"].get("curve") or {}).get("fraction"),
               "saving_law": (v["saving"].get("law") or {}).get("fraction")}
            for d, v in domains.items()}  # fmt: skip

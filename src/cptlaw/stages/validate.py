"""Stage `validate`: CPT runs on DOS vs random vs low/middle/high perplexity windows at one token budget,
their domain and general test losses, and the data saving of DOS (from the fitted law and from the curves).

    python -m cptlaw.stages.validate [validate.seeds=[0,1] validate.n_tokens=60000 ...]

Each arm is one CPT cell (`cptlaw.lm.cpt_run.run_cell`) in-process (study `validate`, experiment `validate-<domain>`,
skipped when a FINISHED run with the same config hash exists). Inputs: `data/selected/<d>/selection.json`
(stage `select`), `reports/fits.json`. Outputs: `reports/validate.json`, `reports/metrics/validate.json`,
`reports/plots/validate/*.png`, a summary MLflow run per domain (tag `cptlaw.stage=validate`).
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from cptlaw.config import CONF_DIR, to_dict
from cptlaw.cpu import setup_cpu
from cptlaw.stages import exit_on_bad_input

STAGE = "validate"


def _arm_cfg(cfg: DictConfig, domain: str, regime: str, n_tokens: int, base: str, seed: int) -> DictConfig:
    sub = copy.deepcopy(cfg)
    for key, value in {"cpt.study": "validate", "cpt.domain": domain, "cpt.regime": regime, "cpt.r": 1.0,
                       "cpt.n_tokens": n_tokens, "cpt.base": base, "cpt.scores_base": base,
                       "cpt.eval_points": int(cfg[STAGE].eval_points), "seed": seed}.items():  # fmt: skip
        OmegaConf.update(sub, key, value, merge=False)
    return sub


def validate_domain(cfg: DictConfig, fits: dict, domain: str) -> dict[str, Any]:
    from cptlaw import tracking
    from cptlaw.decide import plots
    from cptlaw.decide.inputs import DecisionError
    from cptlaw.decide.selection import ppl_law
    from cptlaw.decide.validation import arm_table, mean_curve, saving_from_curve, saving_from_law
    from cptlaw.fit_table import build_fit_table
    from cptlaw.lm.cpt_run import run_cell

    c = cfg[STAGE]
    sel_path = Path(cfg.paths.selected) / domain / "selection.json"
    if not sel_path.is_file():
        raise DecisionError(
            f"{sel_path} does not exist: run the select stage (python -m cptlaw.stages.select)"
        )
    sel = json.loads(sel_path.read_text())
    n_tokens = int(c.n_tokens or sel["budget_tokens"])
    arms = {str(k): (f"ids:{sel['ids_file']}" if str(v) == "selected" else str(v)) for k, v in c.arms.items()}
    if "random" not in arms:
        raise DecisionError("`validate.arms` needs a `random` arm: the data saving is measured against it")
    run_arm: dict[str, str] = {}
    for seed in c.seeds:
        for arm, regime in arms.items():
            print(f"[validate] {domain}: arm {arm} ({regime}), D={n_tokens}, seed {seed}")
            summary = run_cell(_arm_cfg(cfg, domain, regime, n_tokens, str(sel["base"]), int(seed)))
            run_arm[summary["run_id"]] = arm
    exp = summary["experiment"]
    runs = tracking.runs_frame([exp])
    runs = runs[runs["run_id"].isin(list(run_arm))]
    table = build_fit_table(runs)
    rows = arm_table(table, runs, run_arm, float(c.seed_noise))
    by = {r["arm"]: r for r in rows}
    curves = {a: mean_curve(table, by[a]["run_ids"]) for a in by}
    out: dict[str, Any] = {"domain": domain, "experiment": exp, "n_tokens": n_tokens, "arms": rows,
                           "selection": {k: sel[k] for k in ("optimum", "achieved", "stats", "law")}}  # fmt: skip
    saving: dict[str, Any] = {}
    if "dos" in by:
        d_r, l_r = curves["random"]
        saving["curve"] = saving_from_curve(*curves["dos"], float(l_r[-1]), float(d_r[-1]))
        law = ppl_law(fits, domain, sel["stats"], str(cfg.select.law_choice))
        keys = ("ppl_mean", "ppl_std") if sel["stats"] == "ppl" else ("log_ppl_mean", "log_ppl_std")
        dos, rnd = tuple(by["dos"][k] for k in keys), tuple(by["random"][k] for k in keys)
        if None not in dos + rnd:
            saving["law"] = saving_from_law(law.form, law.params, dos, rnd, float(n_tokens))
        diff = by["dos"]["domain_loss_vs_random"]
        saving["dos_minus_random"] = diff
        saving["below_noise"] = by["dos"]["domain_loss_below_noise"]
        saving["verdict"] = (
            f"DOS vs random differ by {diff:+.4f} nats, below the seed-noise threshold "
            f"{by['dos']['noise_threshold']:.3f}: not a finding ({len(c.seeds)} seed(s))"
            if saving["below_noise"] else
            f"DOS is {'better' if diff < 0 else 'worse'} than random by {abs(diff):.4f} nats "
            f"(threshold {by['dos']['noise_threshold']:.3f}, {len(c.seeds)} seed(s))"
        )  # fmt: skip
    out["saving"] = saving
    print(
        f"[validate] {domain}: "
        + "; ".join(f"{r['arm']} domain {r['domain_loss']:.4f} general {r['general_loss']:.4f}" for r in rows)
    )
    if saving.get("verdict"):
        print(f"[validate] {domain}: {saving['verdict']}; saving from curves {saving['curve'].get('fraction')}, "
              f"from law {saving.get('law', {}).get('fraction')}")  # fmt: skip
    fig = None
    if c.plots:
        fig = plots.validation_curves(curves, f"{domain}: validation runs (D={n_tokens})",
                                      Path(cfg.paths.reports) / "plots" / STAGE / f"{domain}_curves.png")  # fmt: skip
        out["plot"] = str(fig)
    with tracking.run(exp, run_name=f"{STAGE}-summary-{domain}", tags={tracking.STAGE_TAG: STAGE, "cptlaw.kind": "summary"},
                      artifact_root=cfg.tracking.get("artifact_root")):  # fmt: skip
        tracking.log_params({"domain": domain, "n_tokens": n_tokens, "seeds": ",".join(map(str, c.seeds))})
        tracking.log_metrics({f"{r['arm']}_{k}": r[k] for r in rows for k in ("domain_loss", "general_loss")})
        fr = {
            f"saving_{k}": v["fraction"]
            for k, v in saving.items()
            if isinstance(v, dict) and v.get("fraction")
        }
        tracking.log_metrics(fr)
        tracking.log_dict(out, "validate.json")
        if fig:
            tracking.log_artifact(fig, "plots")
    return out


def run(cfg: DictConfig) -> dict[str, Any]:
    from cptlaw.decide.inputs import load_fits

    t0 = time.perf_counter()
    setup_cpu(int(cfg.threads))
    from cptlaw import tracking

    tracking.configure_from(cfg.tracking)
    reports = Path(cfg.paths.reports)
    fits = load_fits(reports / "fits.json")
    out = {"domains": {str(d): validate_domain(cfg, fits, str(d)) for d in cfg[STAGE].domains},
           "config": to_dict(cfg[STAGE])}  # fmt: skip
    out["wall_s"] = time.perf_counter() - t0
    (reports / "metrics").mkdir(parents=True, exist_ok=True)
    (reports / "validate.json").write_text(json.dumps(out, indent=1, default=float))
    metrics = {d: {r["arm"]: {"domain_loss": r["domain_loss"], "general_loss": r["general_loss"]} for r in v["arms"]}
               | {"saving_curve": (v["saving"].get("curve") or {}).get("fraction"),
                  "saving_law": (v["saving"].get("law") or {}).get("fraction")}
               for d, v in out["domains"].items()}  # fmt: skip
    (reports / "metrics" / f"{STAGE}.json").write_text(json.dumps(metrics, indent=1, default=float))
    print(f"[validate] wrote {reports / 'validate.json'} ({out['wall_s']:.1f} s)")
    return out


@hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    with exit_on_bad_input("validate"):
        run(cfg)


if __name__ == "__main__":
    main()

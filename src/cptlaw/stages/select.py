"""Stage `select`: fitted perplexity-aware law → optimum (mu_hat, sigma_hat) → DOS subset of the candidate pool.

    python -m cptlaw.stages.select [select.n_tokens=60000 select.stats=log_ppl ...]

Inputs: `reports/fits.json`, `reports/fit_table.csv` (stage `fit`), `data/scores/<d>/<base>.parquet` and
`data/corpora/<d>/train.parquet`. Outputs: `data/selected/<d>/{ids.txt,selection.json}`,
`reports/metrics/select.json`, `reports/plots/select/*.png`, an MLflow `select` run per domain.
A boundary optimum is a soft condition (recorded and printed); missing fits, a budget larger than the pool
or unaligned scores exit 2 with one line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from cptlaw.config import CONF_DIR, config_hash, to_dict
from cptlaw.cpu import setup_cpu
from cptlaw.stages import exit_on_bad_input

STAGE = "select"


def run(cfg: DictConfig) -> dict[str, Any]:
    from cptlaw import tracking
    from cptlaw.decide import plots
    from cptlaw.decide.inputs import load_fit_table, load_fits
    from cptlaw.decide.selection import read_pool, select_domain, write_selection

    setup_cpu(int(cfg.threads))
    tracking.configure_from(cfg.tracking)  # before anything is written: an unreachable server fails fast
    c = cfg[STAGE]
    reports = Path(cfg.paths.reports)
    prefix = str(cfg.tracking.get("experiment_prefix") or "")
    fits = load_fits(reports / "fits.json")
    table = load_fit_table(reports, [f"{prefix}ppl-regimes-{d}" for d in c.domains])
    out: dict[str, Any] = {}
    for d in map(str, c.domains):
        scores_path = Path(cfg.paths.scores) / d / f"{c.base}.parquet"
        pool = read_pool(scores_path, Path(cfg.paths.corpora) / d / "train.parquet")
        rec, chosen = select_domain(fits, table, pool, d, c)
        rec |= {"scores": str(scores_path), "base": str(c.base), "config_hash": config_hash(c)}
        ids_path = write_selection(Path(cfg.paths.selected) / d, pool, chosen, rec)
        o, a = rec["optimum"], rec["achieved"]
        print(f"[select] {d}: optimum mu={o['mu']:.4g} sigma={o['sigma']:.4g} ({'interior' if o['interior'] else 'BOUNDARY'}); "
              f"DOS {a['n_samples']} samples, {a['n_tokens']:.0f} tokens, mu={a['mu']:.4g} sigma={a['sigma']:.4g} "
              f"J={a['objective_J']:.3g} -> {ids_path}")  # fmt: skip
        if rec.get("message"):
            print(f"[select] {d}: note: {rec['message']}")
        fig = None
        if c.plots:
            import numpy as np

            vals = pool["ppl"].to_numpy(float)
            vals = np.log(vals) if rec["stats"] == "log_ppl" else vals
            fig = plots.landscape(vals, chosen, o["mu"], o["sigma"], rec["stats"], f"{d}: DOS selection",
                                  reports / "plots" / STAGE / f"{d}_landscape.png")  # fmt: skip
        out[d] = rec
        with tracking.run(f"{prefix}{STAGE}", run_name=f"{STAGE}-{d}", config_hash=rec["config_hash"],
                          tags={tracking.STAGE_TAG: STAGE, "cptlaw.boundary_optimum": not o["interior"]},
                          artifact_root=cfg.tracking.get("artifact_root")):  # fmt: skip
            tracking.log_params({"domain": d, "base": str(c.base), "stats": rec["stats"], "law": rec["law"],
                                 "profile": cfg.get("profile_name")})  # fmt: skip
            tracking.log_metrics({"mu_hat": o["mu"], "sigma_hat": o["sigma"], "mu": a["mu"], "sigma": a["sigma"],
                                  "objective_J": a["objective_J"], "n_tokens": a["n_tokens"],
                                  "budget_tokens": rec["budget_tokens"], "n_samples": a["n_samples"],
                                  "optimum_interior": float(o["interior"])})  # fmt: skip
            tracking.log_artifact(ids_path.parent / "selection.json")
            tracking.log_artifact(ids_path)
            if fig:
                tracking.log_artifact(fig, "plots")
    metrics = {d: {"mu_hat": r["optimum"]["mu"], "sigma_hat": r["optimum"]["sigma"], "mu": r["achieved"]["mu"],
                   "sigma": r["achieved"]["sigma"], "objective_J": r["achieved"]["objective_J"],
                   "n_tokens": r["achieved"]["n_tokens"], "interior": int(r["optimum"]["interior"])}
               for d, r in out.items()}  # fmt: skip
    (reports / "metrics").mkdir(parents=True, exist_ok=True)
    (reports / "metrics" / f"{STAGE}.json").write_text(json.dumps(metrics, indent=1, default=float))
    return {"domains": out, "config": to_dict(c)}


@hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    with exit_on_bad_input("select"):
        run(cfg)


if __name__ == "__main__":
    main()

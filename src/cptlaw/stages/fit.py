"""Stage `fit`: FINISHED CPT runs (MLflow) → fitting table → every configured law (`cptlaw.fitting`).

    python -m cptlaw.stages.fit [fit.n_starts=64 fit.bootstrap=200 'fit.laws.domain=[dcpt, "E + B/D**beta"]']

Inputs: the runs of `reports/sweeps/*.json` (`fit.runs=store`: all). Outputs: `reports/fits.json`,
`reports/fit_table.csv`, `reports/metrics/fit.json`, `reports/plots/fit/*.png`, an MLflow `fit` run."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import hydra
import numpy as np
import pandas as pd
from omegaconf import DictConfig

from cptlaw import fit_plots, fitting, layout, tracking
from cptlaw.config import CONF_DIR, config_hash, to_dict
from cptlaw.cpu import setup_cpu
from cptlaw.errors import FitStageError
from cptlaw.fit_table import fit_table_from_experiments
from cptlaw.provenance import provenance
from cptlaw.stages import exit_on_bad_input, write_json

log = logging.getLogger("cptlaw.fit")


def load_tables(cfg: DictConfig) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """The D-CPT table (with each domain's k1, k2 from its probe runs), the ppl-regime table, source run ids."""
    only = fitting.source_run_ids(str(cfg.fit.runs), layout.reports(cfg) / "sweeps")
    dcpt, ids_d = fit_table_from_experiments(layout.cpt_experiments(cfg, "dcpt", cfg.domains), only)
    ppl, ids_p = fit_table_from_experiments(layout.cpt_experiments(cfg, "ppl_regimes", cfg.domains), only)
    probe, ids_k = fit_table_from_experiments(layout.cpt_experiments(cfg, "probe", cfg.domains), only)
    source = sorted(set(ids_d) | set(ids_p) | set(ids_k))
    if not source:
        raise FitStageError(
            f"no FINISHED CPT runs for domains {list(cfg.domains)} in {cfg.tracking.uri} (experiments "
            f"{', '.join(layout.cpt_experiments(cfg, 'dcpt', ['<domain>']))} and ppl-regimes): run the CPT "
            "sweeps first (dvc repro cpt_dcpt cpt_ppl)"
        )
    return (fitting.domain_coefficients(dcpt, probe) if len(dcpt) else dcpt), ppl, source


def fit_all(cfg: DictConfig, dcpt: pd.DataFrame, ppl: pd.DataFrame) -> dict[str, Any]:
    """Every target's result (`fit.n_jobs` targets at once); plots of each primary fit into `reports/plots/fit/`."""
    targets = fitting.all_targets(dcpt, ppl, cfg.domains, cfg.fit.ppl_stats)
    results = {}
    for t, result, main in fitting.fit_targets(targets, to_dict(cfg.fit), int(cfg.seed), int(cfg.fit.n_jobs)):
        results[t.name] = result
        if main is not None and cfg.fit.plots:
            usable = fitting.usable_points(t, float(cfg.fit.min_d_tokens))
            fit_plots.target_plots(usable, main, layout.plots_dir(cfg, "fit"), result.get("optimum"))
    return results


def log_fit_run(cfg: DictConfig, source: list[str], metrics: dict[str, Any]) -> None:
    flat = {f"{t}_{law}_{s}_{k}": v for t, laws in metrics.items() for law, ss in laws.items()
            for s, kv in ss.items() for k, v in kv.items() if np.isfinite(v)}  # fmt: skip
    with tracking.run(layout.stage_experiment(cfg, "fit"), run_name="fit", config_hash=config_hash(cfg.fit),
                      tags={"cptlaw.stage": "fit", "cptlaw.n_source_runs": len(source)}):  # fmt: skip
        tracking.log_dict({"source_run_ids": source}, "source_runs.json")
        tracking.log_params({"profile": cfg.get("profile_name"), "laws": json.dumps(to_dict(cfg.fit.laws))})
        tracking.log_metrics(flat)
        tracking.log_artifact(layout.fits_file(cfg))


def run(cfg: DictConfig) -> dict[str, Any]:
    t0 = time.perf_counter()
    setup_cpu(int(cfg.threads))
    tracking.configure_from(cfg.tracking)
    dcpt, ppl, source = load_tables(cfg)
    log.info("[fit] %d source runs, %d dcpt rows, %d ppl-regime rows", len(source), len(dcpt), len(ppl))
    results = fit_all(cfg, dcpt, ppl)
    fits = {"targets": results, "n_source_runs": len(source), "source_run_ids": source,
            "config": to_dict(cfg.fit), "config_hash": config_hash(cfg.fit),
            "provenance": provenance(cfg, hashed=cfg.fit), "wall_s": time.perf_counter() - t0}  # fmt: skip
    # Written only once every fit is done, so a crash part-way leaves the previous table and fits together.
    table = pd.concat([dcpt.assign(study="dcpt"), ppl.assign(study="ppl_regimes")])
    layout.fit_table_file(cfg).parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(layout.fit_table_file(cfg), index=False)
    write_json(layout.fits_file(cfg), fits)
    write_json(layout.metrics_file(cfg, "fit"), metrics := fitting.fit_metrics(results))
    log_fit_run(cfg, source, metrics)
    log.info("[fit] wrote %s (%.1f s)", layout.fits_file(cfg), time.perf_counter() - t0)
    return fits


@hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    with exit_on_bad_input("fit"):
        run(cfg)


if __name__ == "__main__":
    main()

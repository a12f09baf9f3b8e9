"""Stage `recommend`: fitted D-CPT laws → the three usages per domain (with bootstrap CIs) + the
leave-one-domain-out table of the cross-domain law (`cptlaw.decide.usages`).

    python -m cptlaw.stages.recommend [recommend.tolerance=0.05 recommend.law_choice=best ...]

Inputs: `reports/fits.json` and `reports/fit_table.csv` (stage `fit`). Outputs: `reports/recommend.json`,
`reports/metrics/recommend.json`, `reports/plots/recommend/*.png`, an MLflow `recommend` run.
Hard errors (missing fits, no domain decidable) exit 2 with one line; soft conditions (infeasible
tolerance, boundary optimum, extrapolation, a domain without fitted laws) are recorded in the outputs and printed.
"""

from __future__ import annotations

import time
from typing import Any

import hydra
from omegaconf import DictConfig

from cptlaw import layout, tracking
from cptlaw.config import CONF_DIR, config_hash, to_dict
from cptlaw.cpu import setup_cpu
from cptlaw.decide import plots
from cptlaw.decide.inputs import load_fit_table, load_fits
from cptlaw.decide.usages import recommend_domains, summary_lines, usage_metrics
from cptlaw.stages import exit_on_bad_input, write_json

STAGE = "recommend"


def draw(cfg: DictConfig, out: dict[str, Any], inputs: dict[str, Any]) -> list:
    figs = [plots.usages(d, out["domains"][d], *inputs[d], layout.plots_dir(cfg, STAGE) / f"{d}_usages.png")
            for d in inputs]  # fmt: skip
    if out["cross_domain"]["rows"]:
        figs.append(
            plots.cross_domain(out["cross_domain"]["rows"], layout.plots_dir(cfg, STAGE) / "cross_domain.png")
        )
    return figs


def run(cfg: DictConfig) -> dict[str, Any]:
    t0 = time.perf_counter()
    setup_cpu(int(cfg.threads))
    c = cfg.recommend
    fits, table = load_fits(layout.fits_file(cfg)), load_fit_table(layout.fit_table_file(cfg))
    tracking.configure_from(cfg.tracking)  # inputs first (a missing file fails in a second), then the store,
    # before anything is written: an unreachable server fails fast
    fit_kw = {"n_starts": int(cfg.fit.n_starts), "delta": float(cfg.fit.huber_delta), "seed": int(cfg.seed)}
    out = recommend_domains(fits, table, c, int(cfg.seed), fit_kw, int(c.n_jobs))
    inputs = out.pop("plot_inputs")
    for d, rec in out["domains"].items():
        print("\n".join(f"[recommend] {line}" for line in summary_lines(d, rec)))
    for d, why in out["errors"].items():
        print(f"[recommend] {d}: {why}")
    if out["cross_domain"].get("message"):
        print(f"[recommend] cross-domain: {out['cross_domain']['message']}")
    figs = draw(cfg, out, inputs) if c.plots else []
    out |= {
        "config": to_dict(c),
        "fits_config_hash": fits.get("config_hash"),
        "wall_s": time.perf_counter() - t0,
    }
    write_json(layout.stage_output(cfg, STAGE), out)
    write_json(layout.metrics_file(cfg, STAGE), metrics := usage_metrics(out["domains"]))
    tracking.log_stage_run(
        layout.stage_experiment(cfg, STAGE), STAGE, config_hash=config_hash(c),
        params={"profile": cfg.get("profile_name"), "tolerance": float(c.tolerance), "law_choice": str(c.law_choice),
                "domains": ",".join(map(str, c.domains))},
        metrics={f"{d}_{k}": v for d, kv in metrics.items() for k, v in kv.items()},
        artifacts=[layout.stage_output(cfg, STAGE)], plots=figs, artifact_root=cfg.tracking.get("artifact_root"),
    )  # fmt: skip
    print(f"[recommend] wrote {layout.stage_output(cfg, STAGE)} ({out['wall_s']:.1f} s)")
    return out


@hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    with exit_on_bad_input(STAGE):
        run(cfg)


if __name__ == "__main__":
    main()

"""Stage `select`: fitted perplexity-aware law → optimum (mu_hat, sigma_hat) → DOS subset of the candidate pool
(`cptlaw.decide.selection`).

    python -m cptlaw.stages.select [select.n_tokens=60000 select.stats=log_ppl ...]

Inputs: `reports/fits.json`, `reports/fit_table.csv` (stage `fit`), `data/scores/<d>/<base>.parquet` and
`data/corpora/<d>/train.parquet`. Outputs: `data/selected/<d>/{ids.txt,selection.json}`,
`reports/metrics/select.json`, `reports/plots/select/*.png`, an MLflow `select` run per domain.
A boundary optimum is a soft condition (recorded and printed); missing fits, a budget larger than the pool
or unaligned scores exit 2 with one line.
"""

from __future__ import annotations

from typing import Any

import hydra
from omegaconf import DictConfig

from cptlaw import layout, tracking
from cptlaw.config import CONF_DIR, config_hash, config_root, to_dict
from cptlaw.cpu import setup_cpu
from cptlaw.decide import plots
from cptlaw.decide.inputs import load_fit_table, load_fits
from cptlaw.decide.selection import (
    pool_values,
    read_pool,
    select_domain,
    selection_metrics,
    summary_line,
    write_selection,
)
from cptlaw.stages import exit_on_bad_input, write_json

STAGE = "select"


def select_one(cfg: DictConfig, fits: dict, table: Any, d: str) -> dict[str, Any]:
    """Select, write and log one domain's subset."""
    c = cfg[STAGE]
    scores = layout.score_file(cfg, d, str(c.base))
    pool = read_pool(scores, layout.corpus_split(cfg, d, "train"))
    rec, chosen = select_domain(fits, table, pool, d, c)
    root = config_root(cfg)  # as the CPT runs read it
    rec |= {"scores": layout.in_project(scores, root), "base": str(c.base), "config_hash": config_hash(c)}
    ids_path = write_selection(layout.selection_dir(cfg, d), pool, chosen, rec, root)
    print(
        f"[select] {summary_line(rec, ids_path)}"
        + (f"\n[select] {d}: note: {rec['message']}" if rec.get("message") else "")
    )
    o = rec["optimum"]
    figs = [plots.landscape(pool_values(pool, rec["stats"]), chosen, o["mu"], o["sigma"], rec["stats"],
                            f"{d}: DOS selection", layout.plots_dir(cfg, STAGE) / f"{d}_landscape.png")] if c.plots else []  # fmt: skip
    tracking.log_stage_run(
        layout.stage_experiment(cfg, STAGE), STAGE, run_name=f"{STAGE}-{d}", config_hash=rec["config_hash"],
        params={"domain": d, "base": str(c.base), "stats": rec["stats"], "law": rec["law"], "profile": cfg.get("profile_name")},
        metrics=selection_metrics(rec), artifacts=[layout.selection_file(cfg, d), ids_path], plots=figs,
        tags={"cptlaw.boundary_optimum": not o["interior"]}, artifact_root=cfg.tracking.get("artifact_root"),
    )  # fmt: skip
    return rec


def run(cfg: DictConfig) -> dict[str, Any]:
    setup_cpu(int(cfg.threads))
    fits, table = load_fits(layout.fits_file(cfg)), load_fit_table(layout.fit_table_file(cfg))
    tracking.configure_from(cfg.tracking)  # inputs first (a missing file fails in a second), then the store,
    # before anything is written: an unreachable server fails fast
    out = {d: select_one(cfg, fits, table, d) for d in map(str, cfg[STAGE].domains)}
    write_json(layout.metrics_file(cfg, STAGE), {d: selection_metrics(r) for d, r in out.items()})
    return {"domains": out, "config": to_dict(cfg[STAGE])}


@hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    with exit_on_bad_input(STAGE):
        run(cfg)


if __name__ == "__main__":
    main()

"""Stage `score`: the perplexity landscape of every domain's candidate pool under a frozen base model.

    python -m cptlaw.stages.score profile=demo [score.base=m] [model=hf_local model.name_or_path=/abs/dir]
        [score.trainer.accelerator=cuda score.trainer.precision=bf16-mixed score.trainer.devices=4]

Outs: `data/scores/<domain>/<base>.parquet` (`id, nll, ppl, tokens`, train-split order) with its provenance
beside it (`<base>.provenance.json`), `reports/metrics/score.json` (landscape statistics),
`reports/plots/score/` (histogram PNG + CSV plot data); one MLflow run per domain and one summary run
(experiment `score`). All inputs are checked before any scoring starts. Driver: `cptlaw.lm.landscape`.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from cptlaw import layout
from cptlaw.config import CONF_DIR
from cptlaw.cpu import setup_cpu
from cptlaw.stages import exit_on_bad_input, write_json

STAGE = "score"


def run(cfg: DictConfig) -> dict:
    """The stage body (tests call this with a composed config); returns the metrics summary."""
    setup_cpu(int(cfg.score.get("threads") or cfg.threads))
    from cptlaw.lm.landscape import log_landscape, score_landscape, write_landscape_plots

    landscape = score_landscape(cfg)
    metrics = write_json(layout.metrics_file(cfg, STAGE), landscape.summary, indent=2)
    plots = write_landscape_plots(
        landscape.scores, layout.plots_dir(cfg, STAGE), landscape.label, int(cfg.score.hist_bins)
    )
    log_landscape(cfg, landscape, [metrics, *plots])
    return landscape.summary


@hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    with exit_on_bad_input("score"):
        run(cfg)


if __name__ == "__main__":
    main()

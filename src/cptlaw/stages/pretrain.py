"""Stage `pretrain`: pre-train each tiny base model size on the general corpus.

    python -m cptlaw.stages.pretrain profile=demo [pretrain.n_tokens=...] [trainer=ddp_cpu threads=1]

Outs: `models/base/<size>/` (HF `save_pretrained` + tokenizer + `cptlaw.json` with the final learning rate,
N, tokens seen, seq_len and provenance), `reports/metrics/pretrain.json`; one MLflow run per size
(experiment `pretrain`). With `model=hf_local` there is nothing to pre-train: the local dir is the base
model. Driver: `cptlaw.lm.pretrain`.
"""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

from cptlaw import layout
from cptlaw.config import CONF_DIR
from cptlaw.cpu import setup_cpu
from cptlaw.stages import exit_on_bad_input, write_json

STAGE = "pretrain"


def run(cfg: DictConfig) -> dict:
    """The stage body (tests call this with a composed config); returns `{size: metrics}` or `{skipped}`."""
    setup_cpu(int(cfg.pretrain.get("threads") or cfg.threads))
    from cptlaw.lm.pretrain import check_local_base, pretrain_sizes

    Path(cfg.paths.base_models).mkdir(parents=True, exist_ok=True)
    if cfg.model.get("name_or_path"):  # a local HF model is the base: check it, pre-train nothing
        result = {"skipped": f"model.name_or_path={check_local_base(cfg)} is used as the base model"}
        print(f"[pretrain] {result['skipped']}; nothing to pre-train")
    else:
        result = pretrain_sizes(cfg)
    write_json(layout.metrics_file(cfg, STAGE), result, indent=2)
    return result


@hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    with exit_on_bad_input("pretrain"):
        run(cfg)


if __name__ == "__main__":
    main()

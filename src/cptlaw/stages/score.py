"""Stage `score`: the perplexity landscape of every domain's candidate pool under a frozen base model.

    python -m cptlaw.stages.score profile=demo [score.base=m] [model=hf_local model.name_or_path=/abs/dir]
        [score.trainer.accelerator=cuda score.trainer.precision=bf16-mixed score.trainer.devices=4]

Outs: `data/scores/<domain>/<base>.parquet` (`id, nll, ppl, tokens`, train-split order),
`reports/metrics/score.json` (landscape statistics), `reports/plots/score/` (histogram PNG + CSV plot data);
one MLflow run per domain (experiment `score`). All inputs are checked before any scoring starts.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import hydra
import numpy as np
import pandas as pd
from omegaconf import DictConfig

from cptlaw.config import CONF_DIR, config_hash, to_dict
from cptlaw.cpu import setup_cpu
from cptlaw.lm.model import ModelError
from cptlaw.stages import exit_on_bad_input

STAGE = "score"


def load_pools(cfg: DictConfig) -> dict[str, pd.DataFrame]:
    """Each domain's candidate pool (train split, optionally its first `score.max_samples`); none empty."""
    from cptlaw.lm.datamodule import read_texts

    pools = {}
    for domain in cfg.domains:
        frame = read_texts(cfg.paths.corpora, domain, "train")[["id", "text"]]
        if cfg.score.get("max_samples"):
            frame = frame.iloc[: int(cfg.score.max_samples)]
        if len(frame) == 0:
            raise ModelError(f"candidate pool {domain}/train is empty: nothing to score")
        pools[domain] = frame
    return pools


def write_landscape_plots(
    scores: dict[str, pd.DataFrame], plot_dir: Path, label: str, bins: int
) -> list[Path]:
    """Histogram of per-sample log-ppl per domain: one PNG and one CSV (DVC plot data) per domain."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plot_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    fig, axes = plt.subplots(1, len(scores), figsize=(4 * len(scores), 3), squeeze=False)
    for ax, (domain, frame) in zip(axes[0], scores.items(), strict=True):
        log_ppl = np.log(frame["ppl"].dropna().to_numpy())
        counts, edges = np.histogram(log_ppl, bins=bins)
        csv = plot_dir / f"log_ppl_hist_{domain}.csv"
        pd.DataFrame({"log_ppl": (edges[:-1] + edges[1:]) / 2, "count": counts}).to_csv(csv, index=False)
        paths.append(csv)
        ax.hist(log_ppl, bins=edges, color="tab:blue")
        ax.set(
            title=f"{domain} under base {label}",
            xlabel="per-sample log-perplexity (nats/token)",
            ylabel="samples",
        )
    fig.tight_layout()
    png = plot_dir / "log_ppl_hist.png"
    fig.savefig(png, dpi=100)
    plt.close(fig)
    return [png, *paths]


def run(cfg: DictConfig) -> dict:
    """The stage body (tests call this with a composed config)."""
    setup_cpu(int(cfg.score.get("threads") or cfg.threads))
    from cptlaw import tracking
    from cptlaw.lm.base import (
        base_model_dir,
        base_model_dtype,
        base_model_info,
        base_model_label,
        tokenizer_for,
    )
    from cptlaw.lm.model import check_vocab, load_causal_lm
    from cptlaw.lm.pool import score_pool
    from cptlaw.lm.score import aggregate, score_strategy
    from cptlaw.lm.trainer import check_trainer

    s = cfg.score
    # --- every input checked before any work -------------------------------------------------------------
    t = s.trainer
    devices = t.get("devices", 1)
    if not isinstance(devices, int) or devices < 1:
        raise ModelError(
            f"score.trainer.devices must be a whole number >= 1 (how many to use), got {devices!r}"
        )
    device = {"accelerator": str(t.accelerator), "precision": str(t.precision), "devices": devices}
    device["strategy"] = score_strategy(devices, str(t.get("strategy", "auto")))
    check_trainer(device, "score.trainer")
    model_dir = base_model_dir(cfg, s.base)
    label = base_model_label(cfg, s.base)
    dtype = base_model_dtype(cfg)
    model = load_causal_lm(model_dir, dtype)
    tokenizer = tokenizer_for(model_dir, cfg.paths.tokenizer)
    check_vocab(model, tokenizer)
    pools = load_pools(cfg)
    max_length = int(s.max_length or model.config.max_position_embeddings)
    stride = int(s.stride or max(1, max_length // 2))
    if not 1 <= stride <= max_length:
        raise ModelError(f"score.stride must be in [1, {max_length}] (score.max_length), got {stride}")
    # Our base models saw EOS between packed documents: it is their "start of document". For a foreign HF
    # model, BOS is (as in lm-evaluation-harness), falling back to EOS.
    ours = bool(base_model_info(model_dir))
    bos = getattr(tokenizer, "bos_token_id", None)
    prefix_id = tokenizer.eos_token_id if ours or bos is None else bos

    tracking.configure_from(cfg.tracking)
    exp = f"{cfg.tracking.get('experiment_prefix', '')}{STAGE}"
    tracking.experiment_id(exp, cfg.tracking.get("artifact_root"))
    summary: dict = {"base_model": label, "max_length": max_length, "stride": stride, **device, "domains": {}}
    scores = {}
    for domain, frame in pools.items():
        params = {"domain": domain, "base_model": label, "base_model_dir": str(model_dir), "max_length": max_length,
                  "stride": stride, "n_samples": len(frame), "profile": cfg.profile_name, **device,
                  "model_dtype": dtype}  # fmt: skip
        chash = config_hash({**params, "batch_tokens": s.batch_tokens, "shard_size": s.shard_size})
        with tracking.run(exp, run_name=f"score-{domain}-{label}", params=params, config_hash=chash,
                          tags={tracking.STAGE_TAG: STAGE}, artifact_root=cfg.tracking.get("artifact_root")):  # fmt: skip
            start = time.perf_counter()
            out = score_pool(
                model, tokenizer, frame, Path(cfg.paths.scores) / domain / f"{label}.parquet",
                model_dir=model_dir, prefix_id=prefix_id, max_length=max_length, stride=stride,
                batch_tokens=int(s.batch_tokens), shard_size=int(s.shard_size), progress_bar=bool(s.progress_bar),
                **device,
            )  # fmt: skip
            seconds = time.perf_counter() - start
            stats = aggregate(out["nll"].to_numpy(), out["tokens"].to_numpy())
            stats.update(seconds=seconds, tokens_per_s=stats["n_tokens"] / max(seconds, 1e-9))
            tracking.log_metrics(stats)
            summary["domains"][domain] = stats
            scores[domain] = out
        print(f"[score] {domain}: {stats['n_samples']} samples, {stats['n_tokens']:,} tokens in {seconds:.1f}s; "
              f"ppl mean {stats['ppl_mean']:.2f} std {stats['ppl_std']:.2f}")  # fmt: skip

    metrics_path = Path(cfg.paths.reports) / "metrics" / f"{STAGE}.json"
    metrics_path.parent.mkdir(parents=True, exist_ok=True)
    metrics_path.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    plots = write_landscape_plots(scores, Path(cfg.paths.reports) / "plots" / STAGE, label, int(s.hist_bins))
    with tracking.run(exp, run_name=f"score-landscape-{label}", params={"base_model": label, "domains": ",".join(pools)},
                      tags={tracking.STAGE_TAG: STAGE, "cptlaw.kind": "landscape"},
                      artifact_root=cfg.tracking.get("artifact_root")):  # fmt: skip
        for path in [metrics_path, *plots]:
            tracking.log_artifact(path)
        tracking.log_dict(to_dict(cfg), "config.json")
    return summary


@hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    with exit_on_bad_input("score"):
        run(cfg)


if __name__ == "__main__":
    main()

"""The score stage's driver: the perplexity landscape of every domain's candidate pool under one frozen base.

`score_landscape(cfg)` checks every input first (`load_scorer`, `load_pools`), then scores each domain's
train split resumably (`cptlaw.lm.pool.score_pool`) into `data/scores/<domain>/<base>.parquet` inside one
MLflow run (experiment `score`) that logs its landscape statistics (`cptlaw.data.landscape.aggregate`), and
writes the score file's provenance beside it (`<base>.provenance.json`). `write_landscape_plots` draws the
log-ppl histograms and `log_landscape` logs the stage's summary run.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from cptlaw import layout, tracking
from cptlaw.config import config_hash, config_root, to_dict
from cptlaw.data.landscape import aggregate, log_ppl_histogram
from cptlaw.data.version import content_version
from cptlaw.errors import ModelError
from cptlaw.provenance import provenance

STAGE = "score"


@dataclass(frozen=True)
class Scorer:
    """A frozen base model, its tokenizer and the checked settings every pool is scored with."""

    model: Any
    tokenizer: Any
    model_dir: Path
    label: str  # the base's name in file names and MLflow params (`base.base_model_label`)
    dtype: str  # `model.dtype` the weights were loaded in
    prefix_id: int  # x_0 of every sample (`score.prefix_token_id`)
    max_length: int  # tokens per window
    stride: int  # new tokens scored per later window
    device: dict[str, Any]  # Lightning accelerator, precision, devices, strategy


@dataclass(frozen=True)
class Landscape:
    """A scored landscape: `summary` (the stage's DVC metrics) and each domain's scores (`id, nll, ppl, tokens`)."""

    label: str
    summary: dict[str, Any]
    scores: dict[str, pd.DataFrame]


def load_scorer(cfg: Any) -> Scorer:
    """The base model `score.base` (or `model.name_or_path`) with its settings; one-line `ModelError`s."""
    from cptlaw.lm.base import (
        base_model_dir,
        base_model_dtype,
        base_model_info,
        base_model_label,
        tokenizer_for,
    )
    from cptlaw.lm.model import check_vocab, load_causal_lm
    from cptlaw.lm.score import prefix_token_id, score_device, window_settings

    s = cfg.score
    t = s.trainer
    device = score_device(t.accelerator, t.precision, t.get("devices", 1), t.get("strategy", "auto"))
    model_dir, dtype = base_model_dir(cfg, s.base), base_model_dtype(cfg)
    model = load_causal_lm(model_dir, dtype)
    tokenizer = tokenizer_for(model_dir, cfg.paths.tokenizer)
    check_vocab(model, tokenizer)
    max_length, stride = window_settings(s.max_length, s.stride, model.config.max_position_embeddings)
    prefix_id = prefix_token_id(tokenizer, pretrained_here=bool(base_model_info(model_dir)))
    label = base_model_label(cfg, s.base)
    return Scorer(model, tokenizer, model_dir, label, dtype, prefix_id, max_length, stride, device)


def load_pools(cfg: Any, tokenizer: Any) -> dict[str, Any]:
    """Each domain's candidate pool (the train split's token store, optionally its first
    `score.max_samples` documents), every store checked against its corpus split and `tokenizer`; none empty."""
    from cptlaw.data.token_store import open_store, tokenizer_fingerprint
    from cptlaw.lm.pool import Pool

    pools, fp = {}, tokenizer_fingerprint(tokenizer)
    for domain in cfg.domains:
        store = open_store(layout.token_store(cfg, domain, "train"), tokenizer_fp=fp,
                           corpus=layout.corpus_split(cfg, domain, "train"))  # fmt: skip
        ids = store.ids()
        if cfg.score.get("max_samples"):
            ids = ids[: int(cfg.score.max_samples)]
        if len(ids) == 0:
            raise ModelError(f"candidate pool {domain}/train is empty: nothing to score")
        pools[domain] = Pool(ids, store)
    return pools


def run_params(cfg: Any, scorer: Scorer, domain: str, n_samples: int) -> dict[str, Any]:
    """MLflow params of a domain's score run; with `batch_tokens` and `shard_size` they make its config hash."""
    return {"domain": domain, "base_model": scorer.label, "base_model_dir": str(scorer.model_dir),
            "max_length": scorer.max_length, "stride": scorer.stride, "n_samples": n_samples,
            "profile": cfg.profile_name, **scorer.device, "model_dtype": scorer.dtype}  # fmt: skip


def provenance_file(score_file: str | Path) -> Path:
    """`data/scores/<domain>/<base>.provenance.json`, beside its score file."""
    score_file = Path(score_file)
    return score_file.with_name(f"{score_file.stem}.provenance.json")


def score_provenance(cfg: Any, scorer: Scorer, domain: str, hashed: dict[str, Any], run_id: str) -> dict:
    """Where a score file came from: `provenance` of the pool's split (config hash = the run's), the base
    model's content version and the MLflow run."""
    model_files = sorted(p for p in scorer.model_dir.iterdir() if p.is_file())
    record = provenance(cfg, [layout.corpus_split(cfg, domain, "train")], hashed=hashed)
    return {**record, "base_model": scorer.label, "base_model_version": content_version(model_files, config_root(cfg)),
            "run_id": run_id}  # fmt: skip


def score_domain(cfg: Any, scorer: Scorer, domain: str, pool: Any) -> tuple[dict, pd.DataFrame]:
    """Score one pool into its score file (+ provenance) inside one MLflow run; returns `(stats, scores)`."""
    from cptlaw.lm.pool import score_pool

    s, out_path = cfg.score, layout.score_file(cfg, domain, scorer.label)
    params = run_params(cfg, scorer, domain, len(pool))
    hashed = {**params, "batch_tokens": s.batch_tokens, "shard_size": s.shard_size}
    with tracking.run(layout.stage_experiment(cfg, STAGE), run_name=f"score-{domain}-{scorer.label}", params=params,
                      config_hash=config_hash(hashed), tags={tracking.STAGE_TAG: STAGE},
                      artifact_root=cfg.tracking.get("artifact_root")) as active:  # fmt: skip
        start = time.perf_counter()
        out = score_pool(
            scorer.model, scorer.tokenizer, pool, out_path, model_dir=scorer.model_dir, prefix_id=scorer.prefix_id,
            max_length=scorer.max_length, stride=scorer.stride, batch_tokens=int(s.batch_tokens),
            shard_size=int(s.shard_size), launch_shards=int(s.get("launch_shards") or 1),
            progress_bar=bool(s.progress_bar), **scorer.device,
        )  # fmt: skip
        seconds = time.perf_counter() - start
        stats = aggregate(out["nll"].to_numpy(), out["tokens"].to_numpy())
        stats.update(seconds=seconds, tokens_per_s=stats["n_tokens"] / max(seconds, 1e-9))
        tracking.log_metrics(stats)
        record = score_provenance(cfg, scorer, domain, hashed, active.info.run_id)
        provenance_file(out_path).write_text(json.dumps(record, indent=2, default=str) + "\n")
    print(f"[score] {domain}: {stats['n_samples']} samples, {stats['n_tokens']:,} tokens in {seconds:.1f}s; "
          f"ppl mean {stats['ppl_mean']:.2f} std {stats['ppl_std']:.2f}")  # fmt: skip
    return stats, out


def score_landscape(cfg: Any) -> Landscape:
    """Score every domain of `domains` under the base model, all inputs checked first (module docstring)."""
    scorer = load_scorer(cfg)
    pools = load_pools(cfg, scorer.tokenizer)
    tracking.configure_from(cfg.tracking)
    tracking.experiment_id(layout.stage_experiment(cfg, STAGE), cfg.tracking.get("artifact_root"))
    summary: dict[str, Any] = {"base_model": scorer.label, "max_length": scorer.max_length,
                               "stride": scorer.stride, **scorer.device, "domains": {}}  # fmt: skip
    scores = {}
    for domain, pool in pools.items():
        summary["domains"][domain], scores[domain] = score_domain(cfg, scorer, domain, pool)
    return Landscape(scorer.label, summary, scores)


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
        log_ppl, edges, counts = log_ppl_histogram(frame["ppl"].to_numpy(), bins)
        csv = plot_dir / f"log_ppl_hist_{domain}.csv"
        pd.DataFrame({"log_ppl": (edges[:-1] + edges[1:]) / 2, "count": counts}).to_csv(csv, index=False)
        paths.append(csv)
        ax.hist(log_ppl, bins=edges, color="tab:blue")
        ax.set(title=f"{domain} under base {label}", xlabel="per-sample log-perplexity (nats/token)",
               ylabel="samples")  # fmt: skip
    fig.tight_layout()
    png = plot_dir / "log_ppl_hist.png"
    fig.savefig(png, dpi=100)
    plt.close(fig)
    return [png, *paths]


def log_landscape(cfg: Any, landscape: Landscape, files: list[Path]) -> None:
    """The stage's summary MLflow run: the metrics and plot files as artifacts, and the resolved config."""
    params = {"base_model": landscape.label, "domains": ",".join(landscape.scores)}
    with tracking.run(layout.stage_experiment(cfg, STAGE), run_name=f"score-landscape-{landscape.label}",
                      params=params, tags={tracking.STAGE_TAG: STAGE, "cptlaw.kind": "landscape"},
                      artifact_root=cfg.tracking.get("artifact_root")):  # fmt: skip
        for path in files:
            tracking.log_artifact(path)
        tracking.log_dict(to_dict(cfg), "config.json")

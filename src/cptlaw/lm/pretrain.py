"""Pre-training of the tiny base models on the general corpus: one size (`pretrain_size`) or all
(`pretrain_sizes`), each saved to `models/base/<size>/` with a `cptlaw.json` and logged as one MLflow run.

CPT is pre-training from a checkpoint (litgpt), so the pieces below the stage logic are meant for both:
`make_trainer` builds the Lightning Trainer (no checkpoints, validation every `eval_every` steps or never)
and `fit_module` runs it and reports steps and training seconds, also for a spawned DDP run.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L

from cptlaw import layout, tracking
from cptlaw.config import config_hash, resolved, to_dict
from cptlaw.errors import ModelError
from cptlaw.lm.base import base_model_info, load_tokenizer, write_base_model_info
from cptlaw.lm.model import build_model, non_embedding_params
from cptlaw.lm.module import CausalLMModule, TrainTimer, lr_at, mean_token_loss
from cptlaw.provenance import provenance

STAGE = "pretrain"


@dataclass(frozen=True)
class Schedule:
    """Optimizer steps of a pre-training run."""

    world: int  # processes sharing each step (`trainer.devices` under a DDP strategy, else 1)
    tokens_per_step: int  # target tokens per optimizer step over all processes
    max_steps: int  # `pretrain.n_tokens` // tokens_per_step, at least 1
    warmup_steps: int  # round(`pretrain.warmup_frac` × max_steps)


@dataclass(frozen=True)
class Fit:
    """What a finished `trainer.fit` reports back."""

    steps: int  # optimizer steps taken
    train_seconds: float  # in training batches only (the whole fit for a spawned DDP run)
    wall_seconds: float
    cpu_seconds: float  # of this process
    train_loss: float  # last logged `train_loss` (NaN when none reached this process)


def schedule(p: Any, trainer: Any) -> Schedule:
    """The `Schedule` of config section `pretrain` (`p`) on Trainer settings `trainer`."""
    world = int(trainer.devices) if "ddp" in str(trainer.get("strategy", "")) else 1
    tokens_per_step = p.batch_size * p.seq_len * world
    max_steps = max(1, int(p.n_tokens) // tokens_per_step)
    return Schedule(world, tokens_per_step, max_steps, int(round(p.warmup_frac * max_steps)))


def make_trainer(
    trainer_kwargs: Mapping[str, Any], *, max_steps: int, logger: Any = False,
    callbacks: Sequence[L.Callback] = (), eval_every: int = 0, **extra: Any,
) -> L.Trainer:  # fmt: skip
    """A Trainer for `max_steps` optimizer steps (`trainer_kwargs`: a resolved `trainer` config section): no
    checkpoints, no sanity check, validation over every val dataloader each `eval_every` steps (0: never)."""
    return L.Trainer(
        **trainer_kwargs, max_steps=max_steps, logger=logger, callbacks=list(callbacks),
        enable_checkpointing=False, enable_model_summary=False, num_sanity_val_steps=0,
        limit_val_batches=1.0 if eval_every else 0, val_check_interval=eval_every or None,
        check_val_every_n_epoch=None, **extra,
    )  # fmt: skip


def fit_module(
    trainer: L.Trainer, module: L.LightningModule, datamodule: Any, *, world: int, max_steps: int
) -> Fit:
    """Run `trainer.fit` and time it. A spawned DDP run (`world` > 1) hands no loop counters back to this
    process: it ran to `max_steps`, and its training seconds are the wall time of the fit."""
    timer = next((c for c in trainer.callbacks if isinstance(c, TrainTimer)), None)
    start, cpu_start = time.perf_counter(), time.process_time()
    trainer.fit(module, datamodule=datamodule)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    single = world == 1
    return Fit(
        steps=trainer.global_step if single else max_steps,
        train_seconds=timer.seconds if single and timer is not None else wall,
        wall_seconds=wall, cpu_seconds=cpu,
        train_loss=float(trainer.callback_metrics.get("train_loss", float("nan"))),
    )  # fmt: skip


def size_hashed(cfg: Any, size: str, vocab_size: int, val_names: list[str]) -> dict[str, Any]:
    """What a finished model of `size` is keyed on (its `config_hash`); a change here re-trains every size.
    Threads and side-by-side jobs are how it runs, not what it trains (the same weights either way)."""
    run_only = ("threads", "n_jobs")
    return {"size": cfg.model.sizes[size], "pretrain": {k: v for k, v in cfg.pretrain.items() if k not in run_only},
            "trainer": cfg.trainer, "seed": cfg.seed, "vocab": vocab_size, "val_domains": val_names}  # fmt: skip


def run_params(cfg: Any, size: str, n_params: int, plan: Schedule) -> dict[str, Any]:
    """MLflow params of one size's run."""
    p, shape = cfg.pretrain, cfg.model.sizes[size]
    return {"size": size, **{k: shape[k] for k in shape}, "n_params": n_params, "seq_len": p.seq_len,
            "batch_size": p.batch_size, "max_steps": plan.max_steps, "warmup_steps": plan.warmup_steps,
            "lr": p.lr, "min_lr": p.min_lr, "seed": cfg.seed, "profile": cfg.profile_name,
            "precision": cfg.trainer.precision, "devices": plan.world}  # fmt: skip


def train_size(cfg: Any, model: Any, datamodule: Any, plan: Schedule, n_params: int, run_id: str) -> dict:
    """Pre-train `model` inside MLflow run `run_id` and log its metrics (validation losses included)."""
    p = cfg.pretrain
    module = CausalLMModule(
        model, lr=p.lr, min_lr=p.min_lr, warmup_steps=plan.warmup_steps, max_steps=plan.max_steps,
        weight_decay=p.weight_decay, betas=tuple(p.betas), val_names=datamodule.val_names,
    )  # fmt: skip
    trainer = make_trainer(
        to_dict(cfg.trainer), max_steps=plan.max_steps, logger=tracking.lightning_logger(run_id),
        callbacks=[TrainTimer()], eval_every=int(p.eval_every) if p.eval_every else 0,
    )  # fmt: skip
    fit = fit_module(trainer, module, datamodule, world=plan.world, max_steps=plan.max_steps)
    n_tokens = fit.steps * plan.tokens_per_step
    final_lr = lr_at(
        fit.steps, lr=p.lr, min_lr=p.min_lr, warmup_steps=plan.warmup_steps, max_steps=plan.max_steps
    )
    val = {
        f"val_loss_{name}": mean_token_loss(model, datamodule.val_batches(name))
        for name in datamodule.val_names
    }
    metrics = {"n_params": n_params, "n_tokens": n_tokens, "tokens_per_s": n_tokens / max(fit.train_seconds, 1e-9),
               "train_seconds": fit.train_seconds, "wall_seconds": fit.wall_seconds, "cpu_seconds": fit.cpu_seconds,
               "final_lr": final_lr, "train_loss": fit.train_loss, **val}  # fmt: skip
    tracking.log_metrics(metrics, step=fit.steps)
    return metrics


def save_base_model(out_dir: Path, model: Any, tokenizer: Any, info: dict[str, Any]) -> None:
    """A base model dir: HF weights + config, the tokenizer, and `cptlaw.json` (`info`)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    write_base_model_info(out_dir, info)


def pretrain_size(cfg: Any, size: str, tokenizer: Any, datamodule: Any) -> dict[str, float]:
    """Pre-train one size (skipped when its dir holds a finished model of the same config hash), save it with
    its provenance, log it; returns its metrics."""
    p, out_dir = cfg.pretrain, layout.base_model(cfg, size)
    hashed = size_hashed(cfg, size, len(tokenizer), datamodule.val_names)
    chash, info = config_hash(hashed), base_model_info(out_dir)
    if p.skip_finished and info.get("config_hash") == chash and (out_dir / "config.json").is_file():
        print(f"[pretrain] {size}: finished model with config hash {chash} in {out_dir}, skipped")
        return info["metrics"]
    plan = schedule(p, cfg.trainer)
    model = build_model(cfg.model.sizes[size], vocab_size=len(tokenizer), seq_len=p.seq_len, seed=cfg.seed)
    n_params = non_embedding_params(model)
    print(f"[pretrain] {size}: N={n_params:,} non-embedding params, {plan.max_steps} steps x {plan.tokens_per_step} tokens")  # fmt: skip
    with tracking.run(
        layout.stage_experiment(cfg, STAGE), run_name=f"pretrain-{size}", params=run_params(cfg, size, n_params, plan),
        config_hash=chash, tags={tracking.STAGE_TAG: STAGE, "cptlaw.size": size},
        artifact_root=cfg.tracking.get("artifact_root"),
    ) as active:  # fmt: skip
        metrics = train_size(cfg, model, datamodule, plan, n_params, active.info.run_id)
        tracking.log_dict(to_dict(cfg), "config.json")
        record = provenance(cfg, [layout.corpus_split(cfg, p.train_domain, "train")], hashed=hashed)
        save_base_model(out_dir, model, tokenizer, {
            "size": size, "n_params": n_params, "n_tokens": metrics["n_tokens"], "seq_len": int(p.seq_len),
            "final_lr": metrics["final_lr"], "peak_lr": float(p.lr), "config_hash": chash,
            "run_id": active.info.run_id, "metrics": metrics, "provenance": record,
        })  # fmt: skip
    val = ", ".join(f"{k}={v:.3f}" for k, v in metrics.items() if k.startswith("val_loss_"))
    print(f"[pretrain] {size}: {metrics['n_tokens']:,} tokens in {metrics['train_seconds']:.1f}s "
          f"({metrics['tokens_per_s']:,.0f} tok/s); {val}")  # fmt: skip
    return metrics


def load_data(cfg: Any, tokenizer: Any) -> Any:
    """The packed training rows of `pretrain.train_domain` and a validation set per domain (+ the train one),
    streamed from the token stores (checked against the corpus splits and the tokenizer first)."""
    from cptlaw.data.token_store import tokenizer_fingerprint
    from cptlaw.lm.datamodule import LMDataModule

    p, start = cfg.pretrain, time.perf_counter()
    datamodule = LMDataModule.from_stores(
        cfg.paths.tokens, corpora_dir=cfg.paths.corpora, tokenizer_fp=tokenizer_fingerprint(tokenizer),
        train_domain=p.train_domain, val_domains=[p.train_domain, *cfg.domains],
        seq_len=p.seq_len, n_train_tokens=p.n_tokens, n_val_tokens=p.val_tokens, batch_size=p.batch_size,
        val_batch_size=p.val_batch_size, seed=cfg.seed,
    )  # fmt: skip
    print(f"[pretrain] data: {datamodule.train_array.shape[0]} train rows x {p.seq_len + 1}, "
          f"val sets {datamodule.val_names} ({time.perf_counter() - start:.1f}s)")  # fmt: skip
    return datamodule


def pretrain_sizes(cfg: Any) -> dict[str, dict[str, float]]:
    """Pre-train every `model.train_sizes` size, all inputs checked first; `{size: metrics}`."""
    from cptlaw.lm.trainer import check_trainer

    unknown = [s for s in cfg.model.train_sizes if s not in cfg.model.sizes]
    if unknown:
        raise ModelError(f"model.train_sizes names unknown sizes {unknown}; known: {list(cfg.model.sizes)}")
    check_trainer(to_dict(cfg.trainer), "trainer")
    sizes = list(cfg.model.train_sizes)
    n_jobs = min(int(cfg.pretrain.get("n_jobs") or 1), len(sizes))
    if n_jobs > 1 and schedule(cfg.pretrain, cfg.trainer).world > 1:
        raise ModelError(f"pretrain.n_jobs={n_jobs} runs sizes side by side, one process each: use it with a "
                         "one-device trainer, or pretrain.n_jobs=1 with a multi-device one")  # fmt: skip
    tokenizer = load_tokenizer(cfg.paths.tokenizer)
    if tokenizer.eos_token_id is None:
        raise ModelError(f"tokenizer {cfg.paths.tokenizer} has no eos_token")
    tracking.configure_from(cfg.tracking)
    tracking.experiment_id(layout.stage_experiment(cfg, STAGE), cfg.tracking.get("artifact_root"))
    if n_jobs == 1:
        datamodule = load_data(cfg, tokenizer)
        return {size: pretrain_size(cfg, size, tokenizer, datamodule) for size in sizes}
    from joblib import Parallel, delayed

    costliest_first = sorted(sizes, key=lambda s: -size_cost(cfg.model.sizes[s]))
    done = Parallel(n_jobs=n_jobs)(
        delayed(pretrain_in_worker)(resolved(cfg), size) for size in costliest_first
    )
    by_size = dict(zip(costliest_first, done, strict=True))
    return {size: by_size[size] for size in sizes}


def size_cost(shape: Mapping[str, Any]) -> int:
    """Training cost of a size up to a constant (its per-layer matmul parameters): the longest start first."""
    return int(shape["n_layers"]) * int(shape["d_model"]) * (int(shape["d_model"]) + int(shape["d_ff"]))


def pretrain_in_worker(cfg: Any, size: str) -> dict[str, float]:
    """One size in a joblib worker process: its own threads, store connection, tokenizer and data (the
    model's init and data order come from the seed alone, so it trains as it would in the stage's process)."""
    from cptlaw.cpu import setup_cpu

    setup_cpu(int(cfg.pretrain.get("threads") or cfg.threads))
    tracking.configure_from(cfg.tracking)
    tokenizer = load_tokenizer(cfg.paths.tokenizer)
    return pretrain_size(cfg, size, tokenizer, load_data(cfg, tokenizer))


def check_local_base(cfg: Any) -> Path:
    """With `model.name_or_path` (hf_local) nothing is pre-trained: check that the dir is a usable base."""
    from cptlaw.lm.base import base_model_dir, base_model_dtype
    from cptlaw.lm.model import check_vocab, load_causal_lm

    path = base_model_dir(cfg, "")
    tokenizer_dir = path if (path / "tokenizer.json").is_file() else cfg.paths.tokenizer
    check_vocab(load_causal_lm(path, base_model_dtype(cfg)), load_tokenizer(tokenizer_dir))
    return path

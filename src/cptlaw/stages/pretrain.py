"""Stage `pretrain`: pre-train each tiny base model size on the general corpus.

    python -m cptlaw.stages.pretrain profile=demo [pretrain.n_tokens=...] [trainer=ddp_cpu threads=1]

Outs: `models/base/<size>/` (HF `save_pretrained` + tokenizer + `cptlaw.json` with the final learning rate,
N, tokens seen, seq_len), `reports/metrics/pretrain.json`; one MLflow run per size (experiment `pretrain`).
With `model=hf_local` there is nothing to pre-train: the local dir is the base model.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from cptlaw.config import CONF_DIR, config_hash, to_dict
from cptlaw.cpu import setup_cpu
from cptlaw.lm.model import ModelError
from cptlaw.stages import exit_on_bad_input

STAGE = "pretrain"


def pretrain_size(cfg: DictConfig, size: str, tokenizer, datamodule) -> dict:
    """Pre-train one size, save it, log it; returns its metrics."""
    import lightning as L

    from cptlaw import tracking
    from cptlaw.lm.base import base_model_info, write_base_model_info
    from cptlaw.lm.model import build_model, non_embedding_params
    from cptlaw.lm.module import CausalLMModule, TrainTimer, lr_at, mean_token_loss

    p = cfg.pretrain
    shape = cfg.model.sizes[size]
    out_dir = Path(cfg.paths.base_models) / size
    chash = config_hash({"size": shape, "pretrain": {k: v for k, v in p.items() if k != "threads"},
                         "trainer": cfg.trainer, "seed": cfg.seed, "vocab": len(tokenizer),
                         "val_domains": datamodule.val_names})  # fmt: skip
    info = base_model_info(out_dir)
    if p.skip_finished and info.get("config_hash") == chash and (out_dir / "config.json").is_file():
        print(f"[pretrain] {size}: finished model with config hash {chash} in {out_dir}, skipped")
        return info["metrics"]

    world = int(cfg.trainer.devices) if "ddp" in str(cfg.trainer.get("strategy", "")) else 1
    tokens_per_step = p.batch_size * p.seq_len * world
    max_steps = max(1, int(p.n_tokens) // tokens_per_step)
    warmup = int(round(p.warmup_frac * max_steps))
    model = build_model(shape, vocab_size=len(tokenizer), seq_len=p.seq_len, seed=cfg.seed)
    n_params = non_embedding_params(model)
    print(
        f"[pretrain] {size}: N={n_params:,} non-embedding params, {max_steps} steps x {tokens_per_step} tokens"
    )

    module = CausalLMModule(
        model, lr=p.lr, min_lr=p.min_lr, warmup_steps=warmup, max_steps=max_steps,
        weight_decay=p.weight_decay, betas=tuple(p.betas), val_names=datamodule.val_names,
    )  # fmt: skip
    params = {"size": size, **{k: shape[k] for k in shape}, "n_params": n_params, "seq_len": p.seq_len,
              "batch_size": p.batch_size, "max_steps": max_steps, "warmup_steps": warmup, "lr": p.lr,
              "min_lr": p.min_lr, "seed": cfg.seed, "profile": cfg.profile_name,
              "precision": cfg.trainer.precision, "devices": world}  # fmt: skip
    with tracking.run(
        tracking_name(cfg), run_name=f"pretrain-{size}", params=params, config_hash=chash,
        tags={tracking.STAGE_TAG: STAGE, "cptlaw.size": size}, artifact_root=cfg.tracking.get("artifact_root"),
    ) as active:  # fmt: skip
        timer = TrainTimer()
        eval_every = int(p.eval_every) if p.eval_every else 0
        trainer = L.Trainer(
            **OmegaConf.to_container(cfg.trainer, resolve=True),
            max_steps=max_steps, logger=tracking.lightning_logger(active.info.run_id), callbacks=[timer],
            enable_checkpointing=False, enable_model_summary=False, num_sanity_val_steps=0,
            limit_val_batches=1.0 if eval_every else 0, val_check_interval=eval_every or None,
            check_val_every_n_epoch=None,
        )  # fmt: skip
        start, cpu_start = time.perf_counter(), time.process_time()
        trainer.fit(module, datamodule=datamodule)
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        train_seconds = timer.seconds if world == 1 else wall
        # a spawned DDP run does not hand its loop counters back to this process; it ran to max_steps
        steps = trainer.global_step if world == 1 else max_steps
        n_tokens = steps * tokens_per_step
        final_lr = lr_at(steps, lr=p.lr, min_lr=p.min_lr, warmup_steps=warmup, max_steps=max_steps)
        val = {
            f"val_loss_{name}": mean_token_loss(model, datamodule.val_batches(name))
            for name in datamodule.val_names
        }
        metrics = {
            "n_params": n_params, "n_tokens": n_tokens, "tokens_per_s": n_tokens / max(train_seconds, 1e-9),
            "train_seconds": train_seconds, "wall_seconds": wall, "cpu_seconds": cpu, "final_lr": final_lr,
            "train_loss": float(trainer.callback_metrics.get("train_loss", float("nan"))), **val,
        }  # fmt: skip
        tracking.log_metrics(metrics, step=steps)
        tracking.log_dict(to_dict(cfg), "config.json")

        out_dir.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(out_dir)
        tokenizer.save_pretrained(out_dir)
        write_base_model_info(
            out_dir, {"size": size, "n_params": n_params, "n_tokens": n_tokens, "seq_len": int(p.seq_len),
                      "final_lr": final_lr, "peak_lr": float(p.lr), "config_hash": chash,
                      "run_id": active.info.run_id, "metrics": metrics},
        )  # fmt: skip
    print(f"[pretrain] {size}: {n_tokens:,} tokens in {train_seconds:.1f}s ({metrics['tokens_per_s']:,.0f} tok/s); "
          + ", ".join(f"{k}={v:.3f}" for k, v in val.items()))  # fmt: skip
    return metrics


def tracking_name(cfg: DictConfig) -> str:
    return f"{cfg.tracking.get('experiment_prefix', '')}{STAGE}"


def run(cfg: DictConfig) -> dict:
    """The stage body (tests call this with a composed config)."""
    setup_cpu(int(cfg.pretrain.get("threads") or cfg.threads))
    from cptlaw import tracking
    from cptlaw.lm.base import base_model_dir, base_model_dtype, load_tokenizer
    from cptlaw.lm.datamodule import LMDataModule
    from cptlaw.lm.model import check_vocab, load_causal_lm
    from cptlaw.lm.trainer import check_trainer

    metrics_path = Path(cfg.paths.reports) / "metrics" / f"{STAGE}.json"
    metrics_path.parent.mkdir(parents=True, exist_ok=True)
    Path(cfg.paths.base_models).mkdir(parents=True, exist_ok=True)
    if cfg.model.get("name_or_path"):  # a local HF model is the base: check it, pre-train nothing
        path = base_model_dir(cfg, "")
        check_vocab(
            load_causal_lm(path, base_model_dtype(cfg)),
            load_tokenizer(path if (path / "tokenizer.json").is_file() else cfg.paths.tokenizer),
        )
        result = {"skipped": f"model.name_or_path={path} is used as the base model"}
        metrics_path.write_text(json.dumps(result, indent=2) + "\n")
        print(f"[pretrain] {result['skipped']}; nothing to pre-train")
        return result

    p = cfg.pretrain
    unknown = [s for s in cfg.model.train_sizes if s not in cfg.model.sizes]
    if unknown:
        raise ModelError(f"model.train_sizes names unknown sizes {unknown}; known: {list(cfg.model.sizes)}")
    check_trainer(to_dict(cfg.trainer), "trainer")
    tokenizer = load_tokenizer(cfg.paths.tokenizer)
    if tokenizer.eos_token_id is None:
        raise ModelError(f"tokenizer {cfg.paths.tokenizer} has no eos_token")
    tracking.configure_from(cfg.tracking)
    tracking.experiment_id(tracking_name(cfg), cfg.tracking.get("artifact_root"))
    start = time.perf_counter()
    datamodule = LMDataModule.from_corpora(
        cfg.paths.corpora, tokenizer, train_domain=p.train_domain, val_domains=[p.train_domain, *cfg.domains],
        seq_len=p.seq_len, n_train_tokens=p.n_tokens, n_val_tokens=p.val_tokens, batch_size=p.batch_size,
        val_batch_size=p.val_batch_size, seed=cfg.seed,
    )  # fmt: skip
    print(f"[pretrain] data: {datamodule.train_array.shape[0]} train rows x {p.seq_len + 1}, "
          f"val sets {datamodule.val_names} ({time.perf_counter() - start:.1f}s)")  # fmt: skip
    result = {size: pretrain_size(cfg, size, tokenizer, datamodule) for size in cfg.model.train_sizes}
    metrics_path.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    return result


@hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    with exit_on_bad_input("pretrain"):
        run(cfg)


if __name__ == "__main__":
    main()

"""Stage `cpt`: one continual-pre-training run, logged to MLflow with the schema of docs/CONTRACTS.md.

    python -m cptlaw.stages.cpt cpt.domain=medical cpt.base=s cpt.r=0.5 cpt.n_tokens=100000
    python -m cptlaw.stages.cpt -m +sweep=dcpt_grid profile=demo hydra/launcher=joblib2

Order: check every input (one-line error, exit 2, no run created) → config hash → take a file lock on it
(identical cells of one parallel sweep run once) → skip if a FINISHED run has it → build the mixture and
test sets → open the run (FAILED with its error on any exception) → train with evaluations → log the
curves, final metrics, resolved config and loss plot. A result file (`cpt_result.json`) in the Hydra job
dir lets the sweep callback summarise the sweep.
"""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import hydra
from filelock import FileLock
from omegaconf import DictConfig

from cptlaw.config import CONF_DIR, config_hash, project_root, to_dict
from cptlaw.cpu import setup_cpu
from cptlaw.errors import CPTConfigError
from cptlaw.stages import exit_on_bad_input
from cptlaw.sweep_callback import cpt_experiment_name, register_resolvers

register_resolvers()

STUDIES = ("dcpt", "ppl_regimes", "probe", "validate")
RESULT_FILE = "cpt_result.json"
_NOT_HASHED = ("force", "fail_job", "sweeps", "log_every_n_steps", "eval_batch_size")


@dataclass
class Plan:
    """Everything resolved from the config before any heavy work."""

    experiment: str
    base_id: str
    base_dir: Path
    scores_path: Path | None
    files: list[Path]
    data_version: str
    config_hash: str
    lr: float
    seq_len: int


def plan(cfg: DictConfig) -> Plan:
    """Validate `cfg.cpt` against the files on disk; raise one-line errors before anything is trained."""
    from cptlaw.data.subsets import parse_regime
    from cptlaw.data.version import content_version
    from cptlaw.lm.base import base_model_dir, base_model_dtype, base_model_info, base_model_label
    from cptlaw.lm.model import ModelError

    c = cfg.cpt
    if c.study not in STUDIES:
        raise CPTConfigError(f"`cpt.study` must be one of {list(STUDIES)}, got {c.study}")
    if not 0.0 <= float(c.r) <= 1.0:
        raise CPTConfigError(f"`cpt.r` must be in [0, 1], got {c.r}")
    if int(c.n_tokens) < 1:
        raise CPTConfigError(f"`cpt.n_tokens` must be positive, got {c.n_tokens}")
    if not 0.0 < float(c.lr_factor) <= 1.0:
        raise CPTConfigError(f"`cpt.lr_factor` must be in (0, 1] (re-warming bump), got {c.lr_factor}")
    if not 0.0 <= float(c.min_lr_ratio) <= 1.0:
        raise CPTConfigError(f"`cpt.min_lr_ratio` must be in [0, 1], got {c.min_lr_ratio}")
    regime = parse_regime(c.regime)
    corpora = Path(cfg.paths.corpora)
    files = []
    for domain in (str(c.domain), "general"):
        for split in ("train", "test"):
            path = corpora / domain / f"{split}.parquet"
            if not path.is_file():
                known = sorted(d.name for d in corpora.iterdir() if d.is_dir()) if corpora.is_dir() else []
                raise CPTConfigError(
                    f"unknown domain '{domain}': {path} does not exist (corpora has {known})"
                )
            files.append(path)
    base_id, base_dir = base_model_label(cfg, c.base), base_model_dir(cfg, c.base)
    if not (base_dir / "config.json").is_file():
        raise ModelError(f"base model {base_dir} does not exist (run the pretrain stage or set `cpt.base`)")
    scores_path = Path(cfg.paths.scores) / str(c.domain) / f"{c.scores_base or base_id}.parquet"
    if not scores_path.is_file():
        if not regime.is_random:
            raise CPTConfigError(
                f"regime {regime.name} needs perplexity scores {scores_path} (run the score stage)"
            )
        scores_path = None
    files += [p for p in (scores_path, regime.ids_path and Path(regime.ids_path)) if p]
    info = base_model_info(base_dir)
    model_cfg = json.loads((base_dir / "config.json").read_text())
    seq_len = int(c.seq_len or info.get("seq_len") or model_cfg.get("max_position_embeddings") or 0)
    if seq_len < 1:
        raise CPTConfigError(
            f"`cpt.seq_len` is null and base model {base_dir} does not say its context length"
        )
    lr = float(c.lr_factor) * float(info["final_lr"]) if "final_lr" in info else float(c.lr)
    root = project_root()
    data_version = content_version(files, root)
    base_version = content_version(sorted(p for p in base_dir.iterdir() if p.is_file()), root)
    hashed = {k: v for k, v in to_dict(c).items() if k not in _NOT_HASHED}
    hashed["trainer"] = {k: v for k, v in hashed["trainer"].items() if k != "enable_progress_bar"}
    dtype = base_model_dtype(cfg)  # an unknown name fails here, before any run
    if dtype != "float32":  # only then: float32 runs keep the hashes they had before the option existed
        hashed["model_dtype"] = dtype
    chash = config_hash(
        {"cpt": hashed, "base_id": base_id, "base_version": base_version, "seed": int(cfg.seed),
         "data_version": data_version, "profile": str(cfg.profile_name)}
    )  # fmt: skip
    exp = cpt_experiment_name(str(c.study), str(c.domain), str(cfg.tracking.get("experiment_prefix") or ""))
    return Plan(exp, base_id, base_dir, scores_path, files, data_version, chash, lr, seq_len)


def _job_num() -> int | None:
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get().job.num if HydraConfig.initialized() else None


def _write_result(result: dict) -> None:
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        out = Path(HydraConfig.get().runtime.output_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / RESULT_FILE).write_text(json.dumps(result, indent=2) + "\n")


def _git_rev() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent
        )
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def run(cfg: DictConfig) -> dict:
    """The stage body (tests call it with a composed config). Returns the run's summary."""
    setup_cpu(int(cfg.threads))
    from cptlaw import tracking

    tracking.configure_from(cfg.tracking)
    p = plan(cfg)
    c = cfg.cpt
    summary = {"experiment": p.experiment, "config_hash": p.config_hash, "domain": str(c.domain),
               "base": p.base_id, "regime": str(c.regime), "r": float(c.r), "n_tokens": int(c.n_tokens)}  # fmt: skip
    lock = Path(cfg.paths.outputs) / "locks" / f"{p.experiment}-{p.config_hash}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(lock):  # identical cells of one parallel sweep: the second waits for the first, then skips
        return _skip_or_train(cfg, p, summary)


def _skip_or_train(cfg: DictConfig, p: Plan, summary: dict) -> dict:
    from cptlaw import tracking

    c = cfg.cpt
    done = tracking.find_finished(p.experiment, p.config_hash)
    if done and not c.force:
        print(f"[cpt] skip: finished as run {done}")
        summary.update(run_id=done, status="skipped")
        _write_result(summary)
        return summary

    import numpy as np
    import torch

    from cptlaw.data.mixture import CPTDataModule, load_cpt_data
    from cptlaw.data.subsets import parse_regime
    from cptlaw.lm.base import base_model_dtype, tokenizer_for
    from cptlaw.lm.cpt import plot_curves, train_cpt
    from cptlaw.lm.model import check_vocab, load_causal_lm, non_embedding_params
    from cptlaw.lm.trainer import check_trainer

    check_trainer(to_dict(c.trainer), "cpt.trainer")
    start = time.perf_counter()
    regime = parse_regime(c.regime)
    tokenizer = tokenizer_for(p.base_dir, cfg.paths.tokenizer)
    model = load_causal_lm(p.base_dir, base_model_dtype(cfg))
    check_vocab(model, tokenizer)
    cpt_data = load_cpt_data(
        cfg.paths.corpora, str(c.domain), regime, p.scores_path, tokenizer, n_tokens=int(c.n_tokens), r=float(c.r),
        seq_len=p.seq_len, seed=int(cfg.seed), on_short_data=str(c.on_short_data), eval_sequences=int(c.eval_sequences),
    )  # fmt: skip
    mixture = cpt_data.mixture
    data = CPTDataModule(cpt_data, int(c.batch_size), int(c.eval_batch_size))
    n_params = non_embedding_params(model)
    prep_seconds = time.perf_counter() - start
    print(f"[cpt] {p.experiment}: base {p.base_id} (N={n_params:,}), regime {regime.name}, r={c.r}, "
          f"D={mixture.n_tokens:,} ({mixture.domain_tokens:,} domain), lr={p.lr:.2e}; data in {prep_seconds:.1f}s")  # fmt: skip

    params = {
        "domain": c.domain, "regime": regime.name, "q_lo": regime.q_lo, "q_hi": regime.q_hi, "r": float(c.r),
        "n_params": n_params, "n_tokens": mixture.n_tokens, "base_model": p.base_id, "seed": int(cfg.seed),
        "profile": cfg.profile_name, "data_version": p.data_version, "config_hash": p.config_hash,
        "study": c.study, "lr": p.lr, "seq_len": p.seq_len, "batch_size": int(c.batch_size),
        "base_dir": str(p.base_dir), "ids_file": regime.ids_path or "",
    }  # fmt: skip
    tags = {"cptlaw.stage": "cpt", "cptlaw.study": c.study, "cptlaw.git_rev": _git_rev()}
    warnings = list(mixture.warnings)
    if p.scores_path is None:
        warnings.append(f"no perplexity scores for base {c.scores_base or p.base_id}: ppl metrics are NaN")
    if warnings:
        tags["cptlaw.warning"] = "; ".join(warnings)
        print(f"[cpt] warning: {tags['cptlaw.warning']}")
    run_name = f"{c.domain}-{p.base_id}-{regime.name}-r{float(c.r):g}-D{mixture.n_tokens}-s{cfg.seed}"
    torch.manual_seed(int(cfg.seed))
    with tracking.run(p.experiment, run_name=run_name, tags=tags, params=params, config_hash=p.config_hash,
                      artifact_root=cfg.tracking.get("artifact_root")) as active:  # fmt: skip
        run_id = active.info.run_id
        summary["run_id"] = run_id
        tracking.log_dict(to_dict(cfg), "config.yaml")
        tracking.log_metrics(
            {"n_params": n_params, "n_tokens": mixture.n_tokens, "r": float(c.r), "q_lo": regime.q_lo,
             "q_hi": regime.q_hi, **mixture.stats.as_metrics(), "domain_tokens": mixture.domain_tokens,
             "general_tokens": mixture.general_tokens, "r_actual": mixture.domain_tokens / mixture.n_tokens,
             "domain_epochs": mixture.domain_epochs, "general_epochs": mixture.general_epochs,
             "n_domain_samples": mixture.stats.n_samples, "data_seconds": prep_seconds}
        )  # fmt: skip

        def on_point(pt) -> None:
            tracking.log_metrics(
                {"domain_loss": pt.domain_loss, "general_loss": pt.general_loss}, step=pt.tokens
            )

        trainer_kwargs = dict(to_dict(c.trainer))
        trainer_kwargs["log_every_n_steps"] = int(c.log_every_n_steps)
        result = train_cpt(
            model, data, lr=p.lr, min_lr=p.lr * float(c.min_lr_ratio), warmup_steps=int(c.warmup_steps),
            weight_decay=float(c.weight_decay), n_points=int(c.eval_points), probe_tokens=int(c.probe_tokens),
            trainer_kwargs=trainer_kwargs, on_point=on_point,
            log_train_loss=lambda loss, tokens: tracking.log_metrics({"train_loss": loss}, step=tokens),
            log_every_n_steps=int(c.log_every_n_steps),
            fail_after_first=c.fail_job is not None and _job_num() == int(c.fail_job),
        )  # fmt: skip
        final = result.curve[-1]
        metrics = {
            "k1": result.k1, "k2": result.k2, "probe_tokens": result.probe_tokens,
            "domain_loss_final": final.domain_loss, "general_loss_final": final.general_loss,
            "general_loss_base": result.curve[0].general_loss, "tokens_per_s": result.tokens_per_s,
            "train_seconds": result.train_seconds, "wall_seconds": time.perf_counter() - start,
        }  # fmt: skip
        if not np.isfinite(final.domain_loss):
            raise RuntimeError(f"domain loss diverged (final {final.domain_loss})")
        tracking.log_metrics(metrics)
        fig = plot_curves(result.curve, run_name)
        tracking.log_figure(fig, "loss_curve.png")
        summary.update(metrics, status="finished")
    print(f"[cpt] finished run {run_id}: domain {result.k1:.3f} -> {final.domain_loss:.3f}, general "
          f"{result.curve[0].general_loss:.3f} -> {final.general_loss:.3f}, k2={result.k2:.4f}, "
          f"{result.tokens_per_s:,.0f} tok/s, {metrics['wall_seconds']:.1f}s")  # fmt: skip
    _write_result(summary)
    return summary


@hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    with exit_on_bad_input("cpt"):
        run(cfg)


if __name__ == "__main__":
    main()

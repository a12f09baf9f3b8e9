"""One CPT cell from config to MLflow: check → hash → lock → skip if finished → train → log.

    plan(cfg)    every input checked against the files on disk (one-line `BadInput`, no run created), the
                 run's experiment, base model, data version and config hash;
    run_cell(cfg) the cell: orphaned RUNNING runs of the same hash are marked KILLED, a FINISHED run with
                 the hash is reused (skipped), and so is one of the same cell in a study of `cpt.reuse_from`
                 (a validation arm that a perplexity-regime run already ran); else the run is trained
                 (`cptlaw.lm.cpt.train_cpt`) and logged with the schema of docs/CONTRACTS.md.
    run_cells(cfgs, n_jobs) several cells, in `n_jobs` joblib (loky) worker processes of `threads` threads
                 each: the validate stage's arms, as the Hydra joblib launcher runs a sweep's cells.

The CPT stage, the sweeps and the validate stage all call `run_cell`; the hash covers everything that
decides a result, so an interrupted sweep resumes without redoing finished cells.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from filelock import FileLock
from omegaconf import DictConfig

from cptlaw import layout
from cptlaw.config import config_hash, config_root, resolved, to_dict
from cptlaw.errors import CorpusError, CPTConfigError, ModelError, SubsetError, first_line

# Settings that do not change a run's result (or only how it is launched) stay out of its hash.
_NOT_HASHED = ("force", "fail_job", "sweeps", "log_every_n_steps", "eval_batch_size", "reuse_from")


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
    reusable: list[tuple[str, str]]  # (experiment, hash) of this very cell in the studies of `cpt.reuse_from`


def _check_settings(c: DictConfig) -> None:
    if c.study not in layout.STUDIES:
        raise CPTConfigError(f"`cpt.study` must be one of {list(layout.STUDIES)}, got {c.study}")
    if not 0.0 <= float(c.r) <= 1.0:
        raise CPTConfigError(f"`cpt.r` must be in [0, 1], got {c.r}")
    if int(c.n_tokens) < 1:
        raise CPTConfigError(f"`cpt.n_tokens` must be positive, got {c.n_tokens}")
    if not 0.0 < float(c.lr_factor) <= 1.0:
        raise CPTConfigError(f"`cpt.lr_factor` must be in (0, 1] (re-warming bump), got {c.lr_factor}")
    if not 0.0 <= float(c.min_lr_ratio) <= 1.0:
        raise CPTConfigError(f"`cpt.min_lr_ratio` must be in [0, 1], got {c.min_lr_ratio}")
    devices = c.trainer.get("devices", 1)
    if str(devices).isdigit() and int(devices) > 1 and int(c.batch_size) % int(devices):
        raise CPTConfigError(
            f"`cpt.batch_size` ({c.batch_size}) must be a multiple of `cpt.trainer.devices` ({devices}): "
            f"each DDP process takes batch_size / devices rows of every step"
        )


def _input_files(cfg: DictConfig, regime: Any, base_id: str) -> tuple[list[Path], Path | None]:
    """Corpus splits, score file and ids file the run reads; each must exist."""
    c, files = cfg.cpt, []
    for domain in (str(c.domain), "general"):
        for split in ("train", "test"):
            path = layout.corpus_split(cfg, domain, split)
            if not path.is_file():
                corpora = path.parent.parent
                known = sorted(d.name for d in corpora.iterdir() if d.is_dir()) if corpora.is_dir() else []
                raise CPTConfigError(
                    f"unknown domain '{domain}': {path} does not exist (corpora has {known})"
                )
            files.append(path)
    scores_path: Path | None = layout.score_file(cfg, str(c.domain), str(c.scores_base or base_id))
    if not scores_path.is_file():
        if not regime.is_random:
            raise CPTConfigError(
                f"regime {regime.name} needs perplexity scores {scores_path} (run the score stage)"
            )
        scores_path = None
    files += [p for p in (scores_path, regime.ids_path and Path(regime.ids_path)) if p]
    return files, scores_path


# A Hugging Face model dir holds its weights in one of these (or shards listed by an index file).
_WEIGHTS = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


def _check_parquet(path: Path, error: type[Exception], what: str, fix: str) -> None:
    """A parquet file is whole: its footer reads (a truncated or half-copied file fails here, cheaply)."""
    import pyarrow.parquet as pq

    try:
        pq.read_metadata(path)
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        raise error(f"corrupt {what} {path} ({first_line(exc)}): {fix}") from None


def _check_files(files: list[Path], scores_path: Path | None, base_dir: Path) -> None:
    """Corpus splits and the score file are whole parquet files and the base model has its weights, before
    any lock, run or training (one line naming the file and the stage to re-run)."""
    for path in files[:4]:  # the corpus splits (`_input_files` lists them first)
        _check_parquet(path, CorpusError, "corpus split", "re-run the corpora stage (then tokenize)")
    if scores_path is not None:
        _check_parquet(scores_path, SubsetError, "perplexity scores", "re-run the score stage")
    if not any((base_dir / name).is_file() for name in _WEIGHTS):
        raise ModelError(
            f"base model {base_dir} has no weights file ({' or '.join(_WEIGHTS[::2])}): re-run the pretrain "
            f"stage (or copy the model dir whole)"
        )


def _hash(
    cfg: DictConfig, base_id: str, base_version: str, data_version: str, dtype: str, **cell: Any
) -> str:
    """The run's identity; with `study` (and `n_tokens`), that of the same cell as another study set it."""
    hashed = {k: v for k, v in to_dict(cfg.cpt).items() if k not in _NOT_HASHED} | cell
    hashed["trainer"] = {k: v for k, v in hashed["trainer"].items() if k != "enable_progress_bar"}
    if dtype != "float32":  # only then: float32 runs keep the hashes they had before the option existed
        hashed["model_dtype"] = dtype
    return config_hash(
        {"cpt": hashed, "base_id": base_id, "base_version": base_version, "seed": int(cfg.seed),
         "data_version": data_version, "profile": str(cfg.profile_name)}
    )  # fmt: skip


def _check_stores(cfg: DictConfig, base_dir: Path) -> None:
    """The token stores of the run are whole, current with their corpus splits and built with the base
    model's tokenizer (one-line `StoreError` naming the store and the tokenize stage, before any run)."""
    from cptlaw.data.mixture import cpt_stores
    from cptlaw.data.token_store import tokenizer_fingerprint
    from cptlaw.lm.base import tokenizer_for

    fp = tokenizer_fingerprint(tokenizer_for(base_dir, cfg.paths.tokenizer))
    cpt_stores(cfg.paths.tokens, cfg.paths.corpora, str(cfg.cpt.domain), fp)


def plan(cfg: DictConfig) -> Plan:
    """Validate `cfg.cpt` against the files on disk; raise one-line errors before anything is trained."""
    from cptlaw.data.subsets import parse_regime
    from cptlaw.data.version import content_version
    from cptlaw.lm.base import base_model_dir, base_model_dtype, base_model_info, base_model_label

    c = cfg.cpt
    _check_settings(c)
    regime = parse_regime(c.regime, config_root(cfg))
    base_id, base_dir = base_model_label(cfg, c.base), base_model_dir(cfg, c.base)
    files, scores_path = _input_files(cfg, regime, base_id)
    if not (base_dir / "config.json").is_file():
        raise ModelError(f"base model {base_dir} does not exist (run the pretrain stage or set `cpt.base`)")
    _check_files(files, scores_path, base_dir)
    info = base_model_info(base_dir)
    model_cfg = json.loads((base_dir / "config.json").read_text())
    seq_len = int(c.seq_len or info.get("seq_len") or model_cfg.get("max_position_embeddings") or 0)
    if seq_len < 1:
        raise CPTConfigError(
            f"`cpt.seq_len` is null and base model {base_dir} does not say its context length"
        )
    lr = float(c.lr_factor) * float(info["final_lr"]) if "final_lr" in info else float(c.lr)
    _check_stores(cfg, base_dir)
    root = config_root(cfg)
    data_version = content_version(files, root)
    base_version = content_version(sorted(p for p in base_dir.iterdir() if p.is_file()), root)
    hash_of = partial(_hash, cfg, base_id, base_version, data_version, base_model_dtype(cfg))
    exp = layout.cpt_experiment(str(c.study), str(c.domain), layout.prefix(cfg))
    return Plan(exp, base_id, base_dir, scores_path, files, data_version, hash_of(), lr, seq_len,
                _reusable(cfg, seq_len, hash_of))  # fmt: skip


def _reusable(cfg: DictConfig, seq_len: int, hash_of: Callable[..., str]) -> list[tuple[str, str]]:
    """(experiment, hash) of this very cell in each study of `cpt.reuse_from`: the same settings, seed and
    inputs, and `cpt.n_tokens` as given here or as that study's sweep set it for the same rows
    (`n_tokens // seq_len`): a validation arm at the regime runs' trained D (79,872) is the cell they set as
    80,000, and trains the same run."""
    c, out = cfg.cpt, []
    for study in (str(s) for s in c.get("reuse_from") or [] if str(s) != str(c.study)):
        swept = ((c.get("sweeps") or {}).get(study) or {}).get("n_tokens") or []
        same = {int(c.n_tokens), *(int(n) for n in swept if int(n) // seq_len == int(c.n_tokens) // seq_len)}
        exp = layout.cpt_experiment(study, str(c.domain), layout.prefix(cfg))
        out += [(exp, hash_of(study=study, n_tokens=n)) for n in sorted(same)]
    return out


def _cell_in_worker(cfg: DictConfig) -> dict[str, Any]:
    from cptlaw.cpu import setup_cpu

    setup_cpu(int(cfg.threads))
    return run_cell(cfg)


def run_cells(cfgs: list[DictConfig], n_jobs: int = 1) -> list[dict[str, Any]]:
    """`run_cell` of every config, in order; with `n_jobs` > 1 in that many worker processes at once.
    Ends with one line in this process: how many cells were trained and how many had finished earlier."""
    if n_jobs <= 1 or len(cfgs) <= 1:
        out = [run_cell(c) for c in cfgs]
    else:
        from joblib import Parallel, delayed

        out = list(
            Parallel(n_jobs=n_jobs, backend="loky")(delayed(_cell_in_worker)(resolved(c)) for c in cfgs)
        )
    skipped = sum(s["status"] == "skipped" for s in out)
    print(f"[cpt] {len(out)} cells: {len(out) - skipped} trained, {skipped} skipped (finished earlier)")
    return out


def run_cell(cfg: DictConfig, *, fail_after_first: bool = False) -> dict[str, Any]:
    """The cell, under a file lock on its hash (identical cells of a parallel sweep run once): returns its
    summary (`status` finished | skipped, `run_id`, the final metrics)."""
    from cptlaw import tracking

    tracking.configure_from(cfg.tracking)
    p = plan(cfg)
    c = cfg.cpt
    summary = {"experiment": p.experiment, "config_hash": p.config_hash, "domain": str(c.domain),
               "base": p.base_id, "regime": str(c.regime), "r": float(c.r), "n_tokens": int(c.n_tokens)}  # fmt: skip
    lock = Path(cfg.paths.outputs) / "locks" / f"{p.experiment}-{p.config_hash}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(lock):  # the second of two identical cells waits for the first, then skips
        for orphan in tracking.mark_orphans(p.experiment, p.config_hash):
            print(f"[cpt] marked orphaned run {orphan} KILLED (its process is gone)")
        done = tracking.find_finished(p.experiment, p.config_hash)
        if done and not c.force:
            print(f"[cpt] skip: finished as run {done}")
            return summary | {"run_id": done, "status": "skipped"}
        for exp, chash in [] if c.force else p.reusable:
            if done := tracking.find_finished(exp, chash):
                print(f"[cpt] skip: the same cell finished as run {done} of {exp}")
                return summary | {
                    "experiment": exp,
                    "config_hash": chash,
                    "run_id": done,
                    "status": "skipped",
                }
        from cptlaw.lm.cpt import train_cell

        return summary | train_cell(cfg, p, fail_after_first=fail_after_first)

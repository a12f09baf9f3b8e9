"""Score a whole candidate pool resumably: shards of `shard_size` samples, each written atomically.

The pool's token ids come from its memory-mapped token store (`cptlaw.data.token_store`, the tokenize
stage): a shard reads its documents' ids from the memory map (minus each document's trailing EOS), so
nothing is re-tokenized and the text is never loaded.

A re-run after a crash keeps the finished shards if the scoring settings (devices and precision included)
and the model files are unchanged — `meta.json` holds their hash — and scores only the rest. Each shard is
scored the same way whether or not the run was interrupted (batches are planned within a shard), so the
final Parquet file is byte-identical to that of an uninterrupted run. Up to `launch_shards` shards share one
launch of the scorer (with several devices, one process spawn: seconds each), and are written when it ends.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cptlaw.config import config_hash
from cptlaw.data.landscape import per_sample_ppl
from cptlaw.lm.score import score_groups


@dataclass(frozen=True)
class Pool:
    """A candidate pool: the first `len(ids)` documents of a token store, with their sample ids."""

    ids: list[str]
    store: Any  # cptlaw.data.token_store.TokenStore

    def __len__(self) -> int:
        return len(self.ids)

    def token_ids(self, start: int, stop: int) -> list[np.ndarray]:
        """Each document's ids without its trailing EOS (the scorer prefixes x_0 itself)."""
        return [
            np.asarray(self.store.doc(i)[:-1], dtype=np.int64) for i in range(start, min(stop, len(self)))
        ]


def model_files_key(model_dir: str | Path) -> list[tuple[str, int, int]]:
    """Name, size and mtime of a model dir's files: changes when the model is re-trained or replaced."""
    d = Path(model_dir)
    return sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in d.iterdir() if p.is_file())


def _write_atomic(frame: pd.DataFrame, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    frame.to_parquet(tmp, index=False)
    os.replace(tmp, path)


def score_shards(
    model: Any, pool: Pool, spans: list[tuple[int, int]], settings: dict[str, Any]
) -> list[pd.DataFrame]:
    """`id, nll, ppl, tokens` of samples [start, stop) of the pool, in its order, for each span: one launch."""
    scored = score_groups(
        model, [pool.token_ids(a, b) for a, b in spans], prefix_id=settings["prefix_id"],
        max_length=settings["max_length"], stride=settings["stride"], batch_tokens=settings["batch_tokens"],
        accelerator=settings["accelerator"], precision=settings["precision"], devices=settings["devices"],
        strategy=settings["strategy"], progress_bar=settings["progress_bar"],
    )  # fmt: skip
    return [
        pd.DataFrame({"id": np.asarray(pool.ids[a:b], dtype=object), "nll": nll,
                      "ppl": per_sample_ppl(nll, tokens), "tokens": tokens})
        for (a, b), (nll, tokens) in zip(spans, scored, strict=True)
    ]  # fmt: skip


def _keep_current_shards(shard_dir: Path, key: str, settings: dict[str, Any]) -> None:
    """Finished shards stay only if they were scored with these settings and this model (`meta.json`)."""
    meta = shard_dir / "meta.json"
    if shard_dir.exists() and (not meta.is_file() or json.loads(meta.read_text()).get("key") != key):
        shutil.rmtree(shard_dir)  # stale shards of other settings or another model
    shard_dir.mkdir(parents=True, exist_ok=True)
    meta.write_text(json.dumps({"key": key, **settings}) + "\n")


def score_pool(
    model: Any,
    tokenizer: Any,
    pool: Pool,
    out_path: str | Path,
    *,
    model_dir: str | Path,
    prefix_id: int,
    max_length: int,
    stride: int,
    batch_tokens: int,
    shard_size: int,
    launch_shards: int = 1,
    accelerator: str = "cpu",
    precision: str = "32-true",
    devices: int = 1,
    strategy: str = "auto",
    progress_bar: bool = False,
) -> pd.DataFrame:
    """Score `pool` into `out_path` (`id, nll, ppl, tokens`, in pool order), resuming from shards."""
    out_path = Path(out_path)
    shard_dir = out_path.parent / f".{out_path.stem}.shards"
    settings = {"prefix_id": int(prefix_id), "max_length": int(max_length), "stride": int(stride),
                "batch_tokens": int(batch_tokens), "shard_size": int(shard_size), "accelerator": str(accelerator),
                "precision": str(precision), "devices": int(devices), "strategy": str(strategy)}  # fmt: skip
    weights = str(next(model.parameters()).dtype)
    key = config_hash({**settings, "model": model_files_key(model_dir), "weights": weights, "vocab": len(tokenizer),
                       "ids": config_hash({"ids": list(pool.ids)})})  # fmt: skip
    _keep_current_shards(shard_dir, key, settings)
    starts = range(0, len(pool), int(shard_size))
    todo = [k for k in range(len(starts)) if not (shard_dir / f"{k:05d}.parquet").is_file()]
    step = max(1, int(launch_shards))
    for launch in (todo[at : at + step] for at in range(0, len(todo), step)):
        spans = [(starts[k], min(starts[k] + int(shard_size), len(pool))) for k in launch]
        for k, shard in zip(launch, score_shards(model, pool, spans, {**settings, "progress_bar": progress_bar}),
                            strict=True):  # fmt: skip
            _write_atomic(shard, shard_dir / f"{k:05d}.parquet")
            print(f"[score] shard {k + 1}/{len(starts)} -> {k:05d}.parquet")
    result = pd.concat([pd.read_parquet(shard_dir / f"{k:05d}.parquet") for k in range(len(starts))],
                       ignore_index=True)  # fmt: skip
    out_path.parent.mkdir(parents=True, exist_ok=True)
    _write_atomic(result, out_path)
    shutil.rmtree(shard_dir)
    return result

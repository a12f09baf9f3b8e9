"""Where a base model lives and what is known about it — shared by the pretrain, score and CPT stages.

Two kinds of base model (conf/model/):
- `tiny`: sizes pre-trained here by the pretrain stage into `models/base/<size>/` (+ `cptlaw.json`);
- `hf_local`: `model.name_or_path` is any local Hugging Face causal-LM dir, used as is (no pre-training).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cptlaw.errors import first_line
from cptlaw.lm.model import ModelError, weights_dtype

INFO_FILE = "cptlaw.json"  # written beside a pre-trained base model: final_lr, n_params, n_tokens, seq_len


def base_model_dir(cfg: Any, size: str) -> Path:
    """`model.name_or_path` if set, else `paths.base_models/<size>`."""
    local = cfg.model.get("name_or_path")
    return Path(local) if local else Path(cfg.paths.base_models) / str(size)


def base_model_label(cfg: Any, size: str) -> str:
    """Name of the base model in file names and MLflow params: the size, or `model.label` for `hf_local`."""
    if cfg.model.get("name_or_path"):
        return str(cfg.model.get("label") or Path(cfg.model.name_or_path).name)
    return str(size)


def base_model_dtype(cfg: Any) -> str:
    """`model.dtype`, the dtype an existing base is loaded in (float32 when unset); unknown names fail here."""
    name = str(cfg.model.get("dtype", "float32"))
    weights_dtype(name)
    return name


def base_model_info(path: str | Path) -> dict[str, Any]:
    """The `cptlaw.json` of a base model dir written by the pretrain stage ({} for a foreign HF model)."""
    info = Path(path) / INFO_FILE
    return json.loads(info.read_text()) if info.is_file() else {}


def write_base_model_info(path: str | Path, info: dict[str, Any]) -> None:
    Path(path, INFO_FILE).write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")


def load_tokenizer(path: str | Path) -> Any:
    """A fast tokenizer from a dir (via `cptlaw.data.tokenizer.load_tokenizer` when available); one-line errors."""
    path = Path(path)
    if not path.is_dir():
        raise ModelError(f"tokenizer dir {path} does not exist (run the tokenizer stage)")
    try:
        from cptlaw.data.tokenizer import load_tokenizer as data_load_tokenizer
    except ImportError:
        data_load_tokenizer = None
    try:
        if data_load_tokenizer is not None:
            return data_load_tokenizer(path)
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(path, local_files_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure here is "not a tokenizer dir"
        first = first_line(exc)
        raise ModelError(f"tokenizer dir {path} cannot be loaded: {first}") from None


def tokenizer_for(model_dir: str | Path, fallback_dir: str | Path) -> Any:
    """The tokenizer saved beside the model if there is one, else the project tokenizer."""
    model_dir = Path(model_dir)
    if (model_dir / "tokenizer.json").is_file() or (model_dir / "tokenizer_config.json").is_file():
        return load_tokenizer(model_dir)
    return load_tokenizer(fallback_dir)

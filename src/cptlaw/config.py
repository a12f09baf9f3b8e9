"""Hydra/OmegaConf glue shared by every stage: the project-root resolver and config helpers.

Paths in `conf/` are absolute (built from `${cptlaw_root:}`) because DVC experiments run in copies of the
repo and MLflow needs an absolute SQLite URI; the root is found from the working directory, not from Hydra
(`${hydra:runtime.cwd}` breaks DVC composition).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf


def project_root() -> str:
    """`$CPTLAW_ROOT`, else the nearest ancestor of the cwd holding `dvc.yaml` or `conf/`, else the cwd."""
    env = os.environ.get("CPTLAW_ROOT")
    if env:
        return str(Path(env).resolve())
    here = Path.cwd().resolve()
    for d in (here, *here.parents):
        if (d / "dvc.yaml").exists() and (d / "conf").is_dir():
            return str(d)
    return str(here)


def config_root(cfg: Any) -> str:
    """The project a config describes (`paths.root`): a worker process may have another cwd or environment,
    so paths that enter hashes and records are made relative to this, not to `project_root()`."""
    root = OmegaConf.select(cfg, "paths.root", default=None) if isinstance(cfg, DictConfig) else None
    return str(root) if root else project_root()


def conf_dir() -> Path:
    """The project's `conf/` (so a DVC experiment copy uses its own configs), else the one beside the code."""
    here = Path(project_root()) / "conf"
    return here if (here / "config.yaml").is_file() else Path(__file__).resolve().parents[2] / "conf"


CONF_DIR = conf_dir()

if not OmegaConf.has_resolver("cptlaw_root"):
    OmegaConf.register_new_resolver("cptlaw_root", project_root)


def to_dict(cfg: DictConfig | dict) -> dict[str, Any]:
    """Resolved plain-dict copy of a config (for hashing, logging and JSON)."""
    if isinstance(cfg, DictConfig):
        return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
    return dict(cfg)


def resolved(cfg: DictConfig) -> DictConfig:
    """A copy with every interpolation resolved here, for another process: a reused joblib worker must not
    resolve `${cptlaw_root:}` or `${oc.env:...}` against its own (older) working directory and environment."""
    return OmegaConf.create(to_dict(cfg))


def config_hash(cfg: DictConfig | dict, *, length: int = 16) -> str:
    """Stable hash of a (sub)config: same settings → same hash, used to skip finished runs."""
    blob = json.dumps(to_dict(cfg), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:length]


def _csv(values: Any) -> str:
    """A list as a Hydra sweep value (`a,b,c`), so sweep configs can read their lists from profile keys."""
    if isinstance(values, str | int | float):
        return str(values)
    return ",".join(str(v) for v in values)


def register_resolvers() -> None:
    """`${cptlaw_csv:...}` for the sweep configs (idempotent)."""
    if not OmegaConf.has_resolver("cptlaw_csv"):
        OmegaConf.register_new_resolver("cptlaw_csv", _csv)

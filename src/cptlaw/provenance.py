"""Where an artifact came from: git revision, config hash, resolved config and data version.

Written into every base model's `cptlaw.json`, into `fits.json`, beside every score file, and logged with
every run, so a result can be traced to the code, the settings and the data that made it.
"""

from __future__ import annotations

import functools
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from cptlaw.config import config_hash, config_root, project_root, to_dict


@functools.cache
def git_revision() -> str:
    """`git describe`-style revision of the project checkout (`<sha>` or `<sha>-dirty`), else 'unknown'."""
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--abbrev=12"],
            capture_output=True, text=True, cwd=project_root(), timeout=10,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


def provenance(cfg: Any, data_files: Iterable[str | Path] = (), *, hashed: Any = None) -> dict[str, Any]:
    """The provenance record: git revision, hash of `hashed` (default: the whole config), data version of
    `data_files` (DVC md5s where DVC tracks them) and the resolved config."""
    from cptlaw.data.version import content_version

    files = [Path(f) for f in data_files]
    return {
        "git_rev": git_revision(),
        "config_hash": config_hash(cfg if hashed is None else hashed),
        "data_version": content_version(files, config_root(cfg)) if files else None,
        "config": relative_paths(to_dict(cfg), config_root(cfg)),
    }


def relative_paths(obj: Any, root: str) -> Any:
    """`obj` with every path under `root` (also inside a URI) made relative to it: a record names no machine's
    folders."""
    if isinstance(obj, dict):
        return {k: relative_paths(v, root) for k, v in obj.items()}
    if isinstance(obj, list):
        return [relative_paths(v, root) for v in obj]
    if isinstance(obj, str) and obj == root:
        return "."
    if isinstance(obj, str):  # a path under root, or a URI holding one (sqlite:////<root>/mlruns/mlflow.db)
        return obj.replace(root.rstrip("/") + "/", "")
    return obj

"""Shared benchmark helpers: the CPU model and reference-data paths ($CPTLAW_REFDATA)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def cpu_model() -> str:
    """`lscpu`'s model name (or 'unknown'), printed with every figure."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    except OSError:
        return "unknown"
    for line in out.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip() + f", {os.cpu_count()} CPUs"
    return "unknown"


def refdata_path(relative: str) -> Path | None:
    """A reference-data file under $CPTLAW_REFDATA, or None with a hint on stderr."""
    root = os.environ.get("CPTLAW_REFDATA")
    path = Path(root) / relative if root else None
    if path is None or not path.is_file():
        print(f"skipped: {relative} not found; set CPTLAW_REFDATA to the reference-data folder "
              "(docs/laws.md, 'Reference data', says where to get each file)", file=sys.stderr)  # fmt: skip
        return None
    return path

"""Thin Hydra entry points, one per DVC stage (`python -m cptlaw.stages.<stage>`).

A stage reads its config, calls one library driver and writes that driver's outputs; the bad-input contract
(`cptlaw.errors.BadInput` → one stderr line, exit 2) and JSON writing are the only things they share.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cptlaw.errors import BadInput, first_line


@contextlib.contextmanager
def exit_on_bad_input(stage: str) -> Iterator[None]:
    """An error meant for the user (`BadInput`) becomes one stderr line, `<stage>: error: <message>`, exit 2."""
    try:
        yield
    except BadInput as exc:
        print(f"{stage}: error: {first_line(exc)}", file=sys.stderr)
        sys.exit(2)


def write_json(path: str | Path, obj: Any, indent: int = 1) -> Path:
    """Write `obj` as JSON (numpy scalars as floats), creating the folder; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=indent, default=float) + "\n")
    return path

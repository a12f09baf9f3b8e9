"""Thin Hydra entry points, one per DVC stage (`python -m cptlaw.stages.<stage>`)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator


@contextlib.contextmanager
def exit_on_bad_input(
    errors: type[BaseException] | tuple[type[BaseException], ...], prefix: str
) -> Iterator[None]:
    """The stages' bad-input contract: an error meant for the user becomes one stderr line and exit 2."""
    try:
        yield
    except errors as exc:
        print(f"{prefix}: {exc}", file=sys.stderr)
        sys.exit(2)

"""Lightning `Trainer` settings from a config section, checked before any work starts.

A setting this machine cannot run (`accelerator=gpu` without a GPU, a misspelt precision) would otherwise
surface as a Lightning traceback after data loading, model loading and an MLflow run had begun.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cptlaw.errors import first_line
from cptlaw.lm.model import ModelError


def check_trainer(kwargs: Mapping[str, Any], where: str) -> None:
    """One-line `ModelError` naming `where` (e.g. `score.trainer`) if Lightning cannot build this Trainer here."""
    import logging

    import lightning as L
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    # silent while checking: its "GPU available: ..." lines come with the real Trainer
    quiet = logging.getLogger("lightning.pytorch")
    level = quiet.level
    quiet.setLevel(logging.WARNING)
    try:
        L.Trainer(logger=False, enable_checkpointing=False, enable_model_summary=False, **kwargs)
    except (MisconfigurationException, ValueError, TypeError) as exc:
        first = first_line(exc)
        raise ModelError(
            f"{where} {dict(kwargs)} cannot run on this machine: {first} "
            f"(fix: override {where}.accelerator=cpu or auto, or a valid {where}.precision)"
        ) from None
    finally:
        quiet.setLevel(level)

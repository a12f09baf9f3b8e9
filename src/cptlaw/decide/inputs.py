"""Inputs of the decision stages: the fit stage's `reports/fits.json` and its fitting table.

`fits.json` (stage `fit`) holds, per target (`domain_<d>`, `general_<d>`, `cross`, `ppl_<d>`, `ppl_log_<d>`),
the fitted laws (`fits[<law>].params`, paper names), the skipped laws with their reason, the held-out
comparison and a parameter bootstrap. The fitting table (`reports/fit_table.csv`, one row per run x eval step,
docs/CONTRACTS.md) is what the decision bootstrap resamples; when the file is missing it is re-read from
MLflow through `cptlaw.fit_table`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cptlaw.errors import DecisionError
from cptlaw.laws import LawForm, law_from_spec

SWEEP_HINT = {
    "domain": "python -m cptlaw.stages.cpt -m +sweep=dcpt_grid (N x r x D grid of `dcpt-{d}`)",
    "general": "python -m cptlaw.stages.cpt -m +sweep=dcpt_grid (N x r x D grid of `dcpt-{d}`)",
    "cross": "python -m cptlaw.stages.cpt -m +sweep=dcpt_cross and +sweep=probe (runs with k1, k2 on >= 3 domains)",
    "ppl": "python -m cptlaw.stages.cpt -m +sweep=ppl_regimes (>= 3 perplexity regimes of `ppl-regimes-{d}`)",
}


@dataclass
class Law:
    """One fitted law of one target, ready to evaluate."""

    target: str
    name: str
    form: LawForm
    params: dict[str, float]
    fit: dict[str, Any]  # the FitResult record of fits.json (r2, huber, at_bounds, ...)
    choice: str  # why this law: "primary" | "best held-out"


def load_fits(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise DecisionError(f"{path} does not exist: run the fit stage first (python -m cptlaw.stages.fit)")
    try:
        fits = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DecisionError(
            f"{path} is not valid JSON ({exc.msg} at line {exc.lineno}): re-run the fit stage"
        ) from None
    if not isinstance(fits.get("targets"), dict):
        raise DecisionError(f"{path} has no `targets` section: re-run the fit stage")
    return fits


def target_law(
    fits: dict[str, Any], target: str, choice: str = "primary", exclude: tuple[str, ...] = ()
) -> Law:
    """The law of `target` to decide with: the primary (first configured) law or the best held-out one.

    `exclude`: law names unusable for this decision (e.g. forms without a closed-form optimum).
    Raises `DecisionError` naming the runs to add when the target was not fitted.
    """
    if choice not in ("primary", "best"):
        raise DecisionError(f"law choice must be 'primary' or 'best', got {choice!r}")
    tg = fits["targets"].get(target)
    kind = target.split("_")[0] if not target.startswith("ppl") else "ppl"
    domain = target.split("_")[-1]
    hint = SWEEP_HINT.get(kind, "the CPT sweeps").format(d=domain)
    if tg is None:
        raise DecisionError(
            f"fits.json has no target `{target}`: add the runs ({hint}) and re-run the fit stage"
        )
    fitted = {k: v for k, v in tg.get("fits", {}).items() if k not in exclude}
    if not fitted:
        why = "; ".join(f"{k}: {v}" for k, v in tg.get("skipped", {}).items()) or "no law fitted"
        raise DecisionError(
            f"no usable law for `{target}` ({why}): add runs ({hint}) and re-run the fit stage"
        )
    name, how = next(iter(fitted)), "primary"
    best = (tg.get("comparison") or {}).get("best_overall")
    if choice == "best" and best in fitted:
        name, how = best, "best held-out"
    return fitted_law(target, name, fitted[name], how)


def fitted_law(target: str, name: str, rec: dict[str, Any], choice: str = "named") -> Law:
    """A law of fits.json (`rec`: its FitResult record) rebuilt from its spec, ready to evaluate."""
    params = {k: float(v) for k, v in rec["params"].items()}
    form = law_from_spec(rec.get("spec", name), epsilon=params.get("epsilon", 1e-3))
    return Law(target, name, form, params, rec, choice)


def load_fit_table(path: str | Path) -> pd.DataFrame:
    """`reports/fit_table.csv`: the points the fit stage fitted (one row per run x eval step)."""
    path = Path(path)
    if not path.is_file():
        raise DecisionError(f"{path} does not exist: run the fit stage first (python -m cptlaw.stages.fit)")
    return pd.read_csv(path, dtype={"run_id": str, "domain": str, "regime": str})


def dcpt_rows(table: pd.DataFrame, domain: str, min_d_tokens: float = 0.0) -> pd.DataFrame:
    """The D-CPT grid rows of one domain (as the fit stage uses them for `domain_<d>` / `general_<d>`)."""
    t = table
    if "study" in t.columns:
        t = t[t["study"] == "dcpt"]
    t = t[(t["domain"] == domain) & (t["D"] >= min_d_tokens)]
    return t[np.isfinite(t["domain_loss"]) & np.isfinite(t["general_loss"])].reset_index(drop=True)


def ppl_rows(table: pd.DataFrame, domain: str) -> pd.DataFrame:
    t = table
    if "study" in t.columns:
        t = t[t["study"] == "ppl_regimes"]
    return t[t["domain"] == domain].reset_index(drop=True)

"""MLflow CPT runs → the fitting table (docs/CONTRACTS.md): one row per (run, eval step > 0).

Columns: `run_id, domain, N, D, r, regime, mu, sigma, log_mu, log_sigma, k1, k2, seed, domain_loss,
general_loss, general_loss_base`. D = tokens seen (the eval step), r = the domain share of the CPT mixture,
mu/sigma = the subset's per-sample perplexity mean/std (log_mu/log_sigma: of log-perplexity),
general_loss_base = the general loss at step 0 (the base model). Runs are read only through
`cptlaw.tracking` (the one module that imports mlflow).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from cptlaw import tracking

COLUMNS = [
    "run_id", "domain", "N", "D", "r", "regime", "mu", "sigma", "log_mu", "log_sigma", "k1", "k2", "seed",
    "domain_loss", "general_loss", "general_loss_base",
]  # fmt: skip
_METRICS = {"N": "n_params", "r": "r", "mu": "ppl_mean", "sigma": "ppl_std", "log_mu": "log_ppl_mean",
            "log_sigma": "log_ppl_std", "k1": "k1", "k2": "k2"}  # fmt: skip


def _get(row: pd.Series, key: str) -> object:
    v = row.get(key)
    return None if v is None or (isinstance(v, float) and np.isnan(v)) else v


def build_fit_table(
    runs: pd.DataFrame, history: Callable[[str, str], list[tuple[int, float]]] = tracking.metric_history
) -> pd.DataFrame:
    """The fitting table of `runs` (a `tracking.runs_frame` DataFrame); `history(run_id, key)` gives curves."""
    rows: list[dict[str, object]] = []
    for _, run in runs.iterrows():
        rid = str(run["run_id"])
        base = {"run_id": rid}
        for col, key in _METRICS.items():
            v = _get(run, f"metrics.{key}")
            if v is None and col in ("N", "r"):
                v = _get(run, f"params.{'n_params' if col == 'N' else 'r'}")
            base[col] = float(v) if v is not None else np.nan
        base["domain"] = _get(run, "params.domain")
        base["regime"] = _get(run, "params.regime")
        seed = _get(run, "params.seed")
        base["seed"] = int(float(seed)) if seed is not None else -1
        dom = dict(history(rid, "domain_loss"))
        gen = dict(history(rid, "general_loss"))
        base["general_loss_base"] = float(gen[0]) if 0 in gen else np.nan
        for step in sorted(s for s in set(dom) | set(gen) if s > 0):
            rows.append(base | {"D": float(step), "domain_loss": dom.get(step, np.nan),
                                "general_loss": gen.get(step, np.nan)})  # fmt: skip
    table = pd.DataFrame(rows, columns=COLUMNS)
    return table.astype({"N": float, "D": float, "r": float, "seed": int}) if len(table) else table


def fit_table_from_experiments(
    exp_names: list[str], run_ids: set[str] | None = None
) -> tuple[pd.DataFrame, list[str]]:
    """(fitting table, source run ids) of the FINISHED runs of the named experiments (only `run_ids` if given)."""
    runs = tracking.runs_frame(exp_names, finished_only=True)
    if run_ids is not None and not runs.empty:
        runs = runs[runs["run_id"].isin(run_ids)]
    if not runs.empty and "tags.cptlaw.stage" in runs:  # sweep parent runs hold no points
        runs = runs[runs["tags.cptlaw.stage"].fillna("cpt") != "sweep"]
    if not runs.empty and "tags.cptlaw.config_hash" in runs:  # a forced re-run counts once: the newest
        runs = runs.sort_values("start_time", ascending=False)
        dup = runs["tags.cptlaw.config_hash"].notna() & runs["tags.cptlaw.config_hash"].duplicated()
        runs = runs[~dup]
    if runs.empty:
        return pd.DataFrame(columns=COLUMNS), []
    table = in_content_order(build_fit_table(runs))
    return table, list(dict.fromkeys([*map(str, table["run_id"]), *sorted(map(str, runs["run_id"]))]))


CONTENT_ORDER = ["domain", "N", "r", "regime", "seed", "k1", "k2", "D"]


def in_content_order(table: pd.DataFrame) -> pd.DataFrame:
    """Rows sorted by what they are, not by when their runs finished: the store lists runs by start time, which
    two parallel jobs decide by a race, and the fits' low digits (multi-start order, held-out folds) followed."""
    return table.sort_values([*CONTENT_ORDER, "run_id"], kind="stable", na_position="last").reset_index(
        drop=True
    )

"""Distance-to-optimum selection (DOS; Liu et al. 2025) of one domain's candidate pool from its fitted
perplexity-aware law: optimum (mu_hat, sigma_hat) inside the observed landscape (`laws.ppl_optimum`), then the
greedy subset at a token budget (`laws.dos_select`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cptlaw.decide.inputs import SWEEP_HINT, DecisionError, Law, ppl_rows, target_law
from cptlaw.laws import dos_select, ppl_optimum

STATS = {"ppl": ("ppl", "mu", "sigma"), "log_ppl": ("ppl_log", "log_mu", "log_sigma")}
EDGE_HINT = {
    "mu_min": "lower-perplexity windows (e.g. c05w10)",
    "mu_max": "higher-perplexity windows (e.g. c95w10)",
    "sigma_min": "narrower windows (e.g. width 10%)",
    "sigma_max": "wider windows (e.g. width 100% = random, or two-sided mixes)",
}


def read_pool(scores_path: Path, train_path: Path) -> pd.DataFrame:
    """The candidate pool: score rows aligned with the train split (one-line errors otherwise)."""
    from cptlaw.data.subsets import check_aligned, read_scores

    scores = read_scores(scores_path)
    if not train_path.is_file():
        raise DecisionError(f"{train_path} does not exist: run the corpora stage")
    check_aligned(scores, pd.read_parquet(train_path, columns=["id"])["id"], scores_path)
    return scores


def ppl_law(fits: dict, domain: str, stats: str, choice: str) -> Law:
    if stats not in STATS:
        raise DecisionError(f"`select.stats` must be one of {list(STATS)}, got {stats!r}")
    return target_law(fits, f"{STATS[stats][0]}_{domain}", choice)


def select_domain(
    fits: dict, table: pd.DataFrame, pool: pd.DataFrame, domain: str, c: Any
) -> tuple[dict, np.ndarray]:
    """(selection record, chosen pool positions) for one domain; `DecisionError` on hard problems."""
    stats = str(c.stats)
    law = ppl_law(fits, domain, stats, str(c.law_choice))
    _, mcol, scol = STATS[stats]
    rows = ppl_rows(table, domain)
    rows = rows[np.isfinite(rows[mcol]) & np.isfinite(rows[scol])]
    if rows.empty:
        raise DecisionError(
            f"no perplexity-regime runs of `{domain}` in the fitting table: {SWEEP_HINT['ppl'].format(d=domain)}"
        )
    values = pool["ppl"].to_numpy(float)
    values = np.log(values) if stats == "log_ppl" else values
    tokens = pool["tokens"].to_numpy(float)
    pool_tokens = float(tokens.sum())
    budget = float(c.n_tokens) if c.get("n_tokens") else float(rows["D"].max())
    if budget > pool_tokens:
        raise DecisionError(
            f"`select.n_tokens`={budget:.0f} exceeds the candidate pool of `{domain}` ({pool_tokens:.0f} tokens in "
            f"{len(pool)} samples): lower the budget or enlarge the domain corpus"
        )
    box = (
        (float(rows[mcol].min()), float(rows[mcol].max())),
        (float(rows[scol].min()), float(rows[scol].max())),
    )
    if not (box[0][0] < box[0][1] and box[1][0] < box[1][1]):
        raise DecisionError(f"the ppl regimes of `{domain}` do not vary both mu and sigma (box {box}): "
                            f"{SWEEP_HINT['ppl'].format(d=domain)} over a centre x width grid")  # fmt: skip
    opt = ppl_optimum(law.form, law.params, budget, *box)
    sel = dos_select(values, tokens, budget, opt.mu, opt.sigma, c.get("w_mu"), c.get("w_sigma"))

    def predict(mu: float, sigma: float) -> float:
        return float(law.form.predict(law.params, {"mu": [mu], "sigma": [sigma], "D": [budget]})[0])

    rec: dict[str, Any] = {
        "domain": domain, "stats": stats, "law": law.name, "law_choice": law.choice, "budget_tokens": budget,
        "optimum": {"mu": opt.mu, "sigma": opt.sigma, "loss": opt.loss, "interior": opt.interior,
                    "on_boundary": opt.on_boundary, "box": {"mu": list(box[0]), "sigma": list(box[1])}},
        "achieved": {"mu": sel.mu, "sigma": sel.sigma, "objective_J": sel.objective, "n_tokens": sel.n_tokens,
                     "n_samples": int(sel.indices.size), "budget_met": sel.budget_met,
                     "predicted_loss": predict(sel.mu, sel.sigma)},
        "pool": {"n_samples": len(pool), "n_tokens": pool_tokens, "mu": float(values.mean()),
                 "sigma": float(values.std()), "predicted_loss": predict(float(values.mean()), float(values.std()))},
        "n_regimes": int(rows["regime"].nunique()),
    }  # fmt: skip
    if not opt.interior:
        hints = ", ".join(EDGE_HINT[e] for e in opt.on_boundary)
        rec["message"] = (
            f"boundary optimum: the fitted law is minimised on the {'/'.join(opt.on_boundary)} edge of the "
            f"observed landscape, so (mu_hat, sigma_hat) is an edge value, not a resolved optimum; add {hints} "
            f"to the ppl_regimes sweep"
        )
    return rec, sel.indices


def write_selection(
    out_dir: Path, pool: pd.DataFrame, chosen: np.ndarray, record: dict, root: str | Path
) -> Path:
    """`ids.txt` (one id per line, in selection order: `cpt.regime=ids:<path>`) and `selection.json`, which
    names it relative to the project `root` (the validate arms' regime, so their config hashes survive a move)."""
    import json

    from cptlaw.layout import in_project

    out_dir.mkdir(parents=True, exist_ok=True)
    ids_path = out_dir / "ids.txt"
    ids_path.write_text("\n".join(pool["id"].astype(str).to_numpy()[chosen]) + "\n")
    record = record | {"ids_file": in_project(ids_path, root)}
    (out_dir / "selection.json").write_text(json.dumps(record, indent=1, default=float))
    return ids_path


def pool_values(pool: pd.DataFrame, stats: str) -> np.ndarray:
    """The pool's per-sample statistic the law is written in: perplexity, or its log."""
    values = pool["ppl"].to_numpy(float)
    return np.log(values) if stats == "log_ppl" else values


def selection_metrics(rec: dict[str, Any]) -> dict[str, float]:
    """The numbers of one selection, for DVC metrics and MLflow."""
    o, a = rec["optimum"], rec["achieved"]
    return {"mu_hat": o["mu"], "sigma_hat": o["sigma"], "mu": a["mu"], "sigma": a["sigma"],
            "objective_J": a["objective_J"], "n_tokens": a["n_tokens"], "budget_tokens": rec["budget_tokens"],
            "n_samples": a["n_samples"], "interior": float(o["interior"])}  # fmt: skip


def summary_line(rec: dict[str, Any], ids_path: Path) -> str:
    o, a = rec["optimum"], rec["achieved"]
    return (f"{rec['domain']}: optimum mu={o['mu']:.4g} sigma={o['sigma']:.4g} "
            f"({'interior' if o['interior'] else 'BOUNDARY'}); DOS {a['n_samples']} samples, {a['n_tokens']:.0f} "
            f"tokens, mu={a['mu']:.4g} sigma={a['sigma']:.4g} J={a['objective_J']:.3g} -> {ids_path}")  # fmt: skip

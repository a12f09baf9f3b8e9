"""Perplexity-landscape statistics: the one place per-sample perplexity and its moments are computed.

Scoring keeps, per sample, the summed NLL (nats) and the number of scored tokens separate (as
lm-evaluation-harness does) until these functions turn them into statistics:

    log_ppl_i = nll_i / tokens_i        (natural log, nats per token)
    ppl_i     = exp(log_ppl_i)

and over the samples with tokens: μ and σ (population std, ddof = 0) of `ppl` and of `log_ppl`, and their
quantiles. The score stage logs them for a whole pool (`aggregate`); a CPT run logs them for the subset it
trained on (`ppl_stats`, from a score file's `ppl` column). numpy only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

QUANTILES = (
    0.05,
    0.1,
    0.25,
    0.5,
    0.75,
    0.9,
    0.95,
)  # landscape quantiles logged as `ppl_q05`, `log_ppl_q05`, ...


def per_sample_log_ppl(nll: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    """nll / tokens (nats per token); NaN for samples without tokens."""
    tokens = np.asarray(tokens, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(
            tokens > 0, np.asarray(nll, dtype=np.float64) / np.where(tokens > 0, tokens, 1), np.nan
        )


def per_sample_ppl(nll: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    """exp(nll / tokens); NaN for samples without tokens (the `ppl` column of a score file)."""
    return np.exp(per_sample_log_ppl(nll, tokens))


@dataclass(frozen=True)
class PplStats:
    """μ and σ of per-sample ppl and of natural-log ppl (unweighted, population std) over `n_samples`."""

    ppl_mean: float
    ppl_std: float
    log_ppl_mean: float
    log_ppl_std: float
    n_samples: int

    def as_metrics(self) -> dict[str, float]:
        return {
            "ppl_mean": self.ppl_mean,
            "ppl_std": self.ppl_std,
            "log_ppl_mean": self.log_ppl_mean,
            "log_ppl_std": self.log_ppl_std,
        }


def ppl_stats(ppl: np.ndarray, log_ppl: np.ndarray | None = None) -> PplStats:
    """μ, σ of `ppl` and of `log_ppl` (default: log(ppl); pass it when known exactly); NaN without samples."""
    ppl = np.asarray(ppl, dtype=float)
    if len(ppl) == 0:
        nan = float("nan")
        return PplStats(nan, nan, nan, nan, 0)
    log_ppl = np.log(ppl) if log_ppl is None else np.asarray(log_ppl, dtype=float)
    return PplStats(
        float(ppl.mean()), float(ppl.std()), float(log_ppl.mean()), float(log_ppl.std()), len(ppl)
    )


def aggregate(
    nll: np.ndarray, tokens: np.ndarray, *, quantiles: Sequence[float] = QUANTILES
) -> dict[str, Any]:
    """Landscape statistics of a scored pool from per-sample summed `nll` and `tokens`: counts, the
    token-weighted corpus (log-)perplexity, `ppl_stats` of the samples with tokens, and quantiles."""
    nll, tokens = np.asarray(nll, dtype=np.float64), np.asarray(tokens, dtype=np.int64)
    ok = tokens > 0
    log_ppl = per_sample_log_ppl(nll, tokens)[ok]
    ppl = np.exp(log_ppl)
    stats: dict[str, Any] = {
        "n_samples": int(len(nll)),
        "n_empty": int((~ok).sum()),
        "n_tokens": int(tokens.sum()),
        "corpus_log_ppl": float(nll.sum() / max(tokens.sum(), 1)),
        **ppl_stats(ppl, log_ppl).as_metrics(),
    }
    stats["corpus_ppl"] = float(np.exp(stats["corpus_log_ppl"]))
    for q in quantiles:
        key = f"q{round(q * 100):02d}"
        stats[f"ppl_{key}"] = float(np.quantile(ppl, q)) if len(ppl) else float("nan")
        stats[f"log_ppl_{key}"] = float(np.quantile(log_ppl, q)) if len(ppl) else float("nan")
    return stats


def log_ppl_histogram(ppl: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`(log_ppl, edges, counts)`: the natural-log ppl of the scored samples (NaN dropped) and its histogram."""
    ppl = np.asarray(ppl, dtype=np.float64)
    log_ppl = np.log(ppl[~np.isnan(ppl)])
    counts, edges = np.histogram(log_ppl, bins=bins)
    return log_ppl, edges, counts

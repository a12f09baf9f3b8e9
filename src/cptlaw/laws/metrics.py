"""Goodness-of-fit metrics. `huber_log` is the fitting objective (Besiroglu et al. 2024, sec. 2)."""

from __future__ import annotations

import numpy as np


def huber(residual: np.ndarray, delta: float = 1e-3) -> np.ndarray:
    """Elementwise Huber loss: r^2/2 for |r| <= delta, delta*(|r| - delta/2) beyond."""
    a = np.abs(residual)
    return np.where(a <= delta, 0.5 * residual**2, delta * (a - 0.5 * delta))


def huber_log(pred: np.ndarray, obs: np.ndarray, delta: float = 1e-3) -> float:
    """Sum of Huber losses of log(pred) - log(obs): the objective of every fit here."""
    pred = np.asarray(pred, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        res = np.log(pred) - np.log(obs)
    if not np.all(np.isfinite(res)):
        return float("inf")
    return float(np.sum(huber(res, delta)))


def r2(pred: np.ndarray, obs: np.ndarray) -> float:
    """Coefficient of determination of the loss values (1 - SS_res / SS_tot); nan with < 2 points."""
    obs = np.asarray(obs, dtype=float)
    if obs.size < 2:
        return float("nan")
    ss_tot = float(np.sum((obs - obs.mean()) ** 2))
    ss_res = float(np.sum((obs - np.asarray(pred, dtype=float)) ** 2))
    return 1.0 - ss_res / ss_tot if ss_tot > 0 else float("nan")


def rmse(pred: np.ndarray, obs: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(pred, dtype=float) - np.asarray(obs, dtype=float)) ** 2)))


def mape(pred: np.ndarray, obs: np.ndarray) -> float:
    """Mean absolute percentage error, as a fraction (0.01 = 1%)."""
    obs = np.asarray(obs, dtype=float)
    return float(np.mean(np.abs(np.asarray(pred, dtype=float) - obs) / np.abs(obs)))


def all_metrics(pred: np.ndarray, obs: np.ndarray, delta: float = 1e-3) -> dict[str, float]:
    return {
        "huber": huber_log(pred, obs, delta),
        "r2": r2(pred, obs),
        "rmse": rmse(pred, obs),
        "mape": mape(pred, obs),
    }

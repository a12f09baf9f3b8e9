"""Prediction intervals that hold up when a law extrapolates.

A bootstrap over runs (`cptlaw.laws.evaluate.bootstrap`) only measures parameter noise *given the form*; far
from the data the real error is dominated by the form being slightly wrong, so percentile intervals are
over-confident exactly where laws are used (a model 2-10x larger, a longer run). Here the interval of a
prediction is, in log space, `log L_hat(x) +- lambda * s(x)` with
- `s(x)^2 = Var_boot[log L_hat(x)] + s_noise^2 + kappa^2 d(x)^2`: the bootstrap spread of the prediction,
  the point noise (robust scale of the fit's log residuals), and a drift that grows with the extrapolation
  distance `d(x) = log10(x_along / max observed x_along)` (0 inside the data): the form's own error, which
  no resampling of the fitted points can show;
- `kappa` and `lambda` are calibrated on *extrapolation folds* of the training data itself: cut the data at
  a value of the column the target extrapolates along (N, D, ...), fit + bootstrap on the rows at or below
  the cut, and look at the rows above it. `kappa^2` is the least-squares slope of the excess squared log
  error (beyond bootstrap + noise variance) on `d^2`; `lambda` is the split-conformal quantile of the
  normalised scores `|log(y / L_hat)| / s(x)` (Vovk et al. 2005; Lei et al. 2018): their
  ceil((n+1) level)-th smallest. Without a calibration, `kappa = 0` and `lambda` is the normal quantile (the
  plain bootstrap + noise interval).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.stats import norm

from cptlaw.laws.evaluate import BootstrapResult, bootstrap, take
from cptlaw.laws.fit import FitError, FitResult, check_loss, fit
from cptlaw.laws.forms import LawForm, LawInputError, get_law


@dataclass
class Intervals:
    """Per-point prediction intervals: `lo <= loss <= hi` with probability `level` (if calibrated)."""

    level: float
    pred: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    scale: np.ndarray  # s(x): log-space scale of each prediction
    multiplier: float  # lambda (calibrated) or the normal quantile (method "bootstrap")
    method: str  # "calibrated" | "bootstrap"

    def coverage(self, obs: Any) -> float:
        obs = np.asarray(obs, dtype=float)
        return float(np.mean((obs >= self.lo) & (obs <= self.hi)))

    def mean_width(self) -> float:
        """Mean relative width (hi - lo) / prediction."""
        return float(np.mean((self.hi - self.lo) / self.pred))

    def to_dict(self) -> dict[str, Any]:
        return {"level": self.level, "method": self.method, "multiplier": self.multiplier,
                "intervals": np.stack([self.lo, self.hi], axis=1).tolist()}  # fmt: skip


@dataclass
class Calibration:
    """Normalised extrapolation scores `|log(y / L_hat)| / s(x)` from folds cut along `along`."""

    along: str
    cuts: list[float]
    scores: np.ndarray
    distances: np.ndarray  # d of each scored point: log10(x / cut), how far it extrapolates
    kappa: float = 0.0  # drift of the log error per decade of extrapolation
    train_max: float = np.inf  # largest `along` of the full data: d(x) of new points is measured from it
    folds: list[dict[str, Any]] = field(default_factory=list)

    def distance(self, X: Mapping[str, Any]) -> np.ndarray:
        return extrapolation_distance(np.asarray(X[self.along], dtype=float), self.train_max)

    def multiplier(self, level: float) -> float:
        """Split-conformal quantile: the ceil((n+1) level)-th smallest score (the largest if n is too small)."""
        if not 0 < level < 1:
            raise LawInputError(f"`level` must be in (0, 1), got {level}")
        s = np.sort(self.scores)
        if s.size == 0:
            raise LawInputError("calibration has no scores: every fold failed to fit")
        k = int(np.ceil((s.size + 1) * level))
        return float(s[min(k, s.size) - 1])

    def to_dict(self) -> dict[str, Any]:
        return {"along": self.along, "cuts": self.cuts, "n_scores": int(self.scores.size), "kappa": self.kappa,
                "folds": self.folds, "multiplier_90": self.multiplier(0.9) if self.scores.size else None}  # fmt: skip


def extrapolation_distance(values: np.ndarray, top: float) -> np.ndarray:
    """log10(value / top) beyond `top` (0 at or below it); plain differences for non-positive values."""
    with np.errstate(all="ignore"):
        d = np.log10(values / top) if top > 0 and np.all(values > 0) else values - top
    return np.maximum(np.nan_to_num(d, nan=0.0, posinf=0.0, neginf=0.0), 0.0)


def noise_scale(fitted: FitResult, X: Mapping[str, Any], y: Any) -> float:
    """Robust scale (1.4826 x median absolute deviation) of the fit's log residuals: the point noise."""
    res = np.log(fitted.predict(X)) - np.log(check_loss(y))
    return float(1.4826 * np.median(np.abs(res - np.median(res))))


def log_scale(boot: BootstrapResult, X: Mapping[str, Any], noise: float, drift: Any = 0.0) -> np.ndarray:
    """s(x) = sqrt(bootstrap variance of log L_hat(x) + noise^2 + drift^2) (drift: kappa d(x), per point)."""
    with np.errstate(all="ignore"):
        lp = np.log(boot.predict(X))
    lp = lp[np.all(np.isfinite(lp), axis=1)]
    if lp.shape[0] < 2:
        raise LawInputError("`boot` has fewer than 2 finite resamples at these points")
    return np.sqrt(np.var(lp, axis=0, ddof=1) + noise**2 + np.asarray(drift, dtype=float) ** 2)


def prediction_intervals(
    fitted: FitResult, boot: BootstrapResult, X_new: Mapping[str, Any], *, level: float = 0.9,
    noise: float, calibration: Calibration | None = None,
) -> Intervals:  # fmt: skip
    """Intervals `L_hat(x) * exp(+- lambda s(x))` at `X_new` (see the module docstring)."""
    if not 0 < level < 1:
        raise LawInputError(f"`level` must be in (0, 1), got {level}")
    pred = fitted.predict(X_new)
    drift = calibration.kappa * calibration.distance(X_new) if calibration is not None else 0.0
    s = log_scale(boot, X_new, noise, drift)
    lam = calibration.multiplier(level) if calibration is not None else float(norm.ppf(0.5 + level / 2))
    method = "calibrated" if calibration is not None else "bootstrap"
    return Intervals(level, pred, pred * np.exp(-lam * s), pred * np.exp(lam * s), s, lam, method)


def extrapolation_cuts(values: np.ndarray, fracs: Sequence[float], min_train: int) -> list[float]:
    """Cut values: for each fraction f, the largest value with at least a share f of the rows above it."""
    u = np.unique(values)
    cuts = []
    for f in fracs:
        above = np.array([np.mean(values > v) for v in u])
        ok = np.flatnonzero((above >= f) & (np.array([np.sum(values <= v) for v in u]) >= min_train))
        if ok.size:
            cuts.append(float(u[ok[-1]]))
    return sorted(set(cuts), reverse=True)


def calibrate(
    form: LawForm | str, X: Mapping[str, Any], y: Any, along: str, *, groups: Any = None,
    fracs: Sequence[float] = (0.1, 0.2, 0.3), n_boot: int = 200, seed: int = 0, **fit_kwargs: Any,
) -> Calibration:  # fmt: skip
    """Scores for `prediction_intervals` from extrapolation folds of the training data along `along`.

    For each cut (the largest value of `along` with a share `f` of the rows above it, for f in `fracs`), fit
    and bootstrap on the rows at or below the cut and score the rows above it. Scores of one fold share a
    fit, so a few folds give fewer independent scores than points: prefer several `fracs`.
    """
    form = get_law(form) if isinstance(form, str) else form
    y = check_loss(y)
    if along not in X:
        raise LawInputError(f"missing column `{along}` to calibrate along")
    vals = np.asarray(X[along], dtype=float)
    groups = np.arange(y.size) if groups is None else np.asarray(groups)
    cols = tuple(form.columns)
    absr, var, dists, folds = [], [], [], []
    cuts = extrapolation_cuts(vals, fracs, max(2 * form.n_params, form.n_params + 3))
    for cut in cuts:
        tr, te = np.flatnonzero(vals <= cut), np.flatnonzero(vals > cut)
        try:
            Xtr, Xte = take(X, tr, cols), take(X, te, cols)
            res = fit(form, Xtr, y[tr], **fit_kwargs)
            bs = bootstrap(form, Xtr, y[tr], groups[tr], n_boot=n_boot, base=res, seed=seed, **fit_kwargs)
            v = log_scale(bs, Xte, noise_scale(res, Xtr, y[tr])) ** 2
            r = np.abs(np.log(y[te] / res.predict(Xte)))
        except (FitError, LawInputError) as exc:
            folds.append({"cut": cut, "error": str(exc)})
            continue
        absr.append(r)
        var.append(v)
        dists.append(extrapolation_distance(vals[te], cut))
        folds.append({"cut": cut, "n_train": int(tr.size), "n_scored": int(te.size),
                      "median_abs_log_error": float(np.median(r))})  # fmt: skip
    if not absr:
        return Calibration(along, cuts, np.zeros(0), np.zeros(0), 0.0, float(vals.max()), folds)
    r, v, d = np.concatenate(absr), np.concatenate(var), np.concatenate(dists)
    # drift: least squares of the excess squared error on d^2 (through the origin), never negative
    kappa2 = float(np.sum(d**2 * (r**2 - v)) / np.sum(d**4)) if np.any(d > 0) else 0.0
    kappa = float(np.sqrt(max(kappa2, 0.0)))
    scores = r / np.sqrt(v + (kappa * d) ** 2)
    return Calibration(along, cuts, scores, d, kappa, float(vals.max()), folds)


def extrapolated_column(
    X_train: Mapping[str, Any], X_new: Mapping[str, Any], columns: Sequence[str]
) -> str | None:
    """The one column whose new values all lie beyond the training range (the direction of extrapolation)."""
    out = []
    for c in columns:
        if c not in X_train or c not in X_new:
            continue
        try:
            a, b = np.asarray(X_train[c], dtype=float), np.asarray(X_new[c], dtype=float)
        except (TypeError, ValueError):
            continue
        if b.size and (np.all(b > a.max()) or np.all(b < a.min())):
            out.append(c)
    return out[0] if len(out) == 1 else None

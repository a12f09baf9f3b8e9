"""Prediction intervals that hold up when a law extrapolates.

A bootstrap over runs (`cptlaw.laws.evaluate.bootstrap`) only measures parameter noise *given the form*; far
from the data the real error is dominated by the form being slightly wrong, so percentile intervals are
over-confident exactly where laws are used (a model 2-10x larger, a longer run). Here the interval of a
prediction is, in log space, `log L_hat(x) +- z s(x)` with `z` the normal quantile of the level and
- `s(x)^2 = Var_boot[log L_hat(x)] + s_noise^2 + kappa^2 d(x)^2`: the bootstrap spread of the prediction,
  the point noise (robust scale of the fit's log residuals), and a drift that grows with the extrapolation
  distance `d(x) = log10(x_along / max observed x_along)` (0 inside the data): the form's own error, which
  no resampling of the fitted points can show.
- `kappa` is calibrated on *extrapolation folds* of the training data itself: cut the data at a value of the
  column the target extrapolates along (N, D, ...; cuts with 10-50% of the rows above them), fit on the rows
  at or below the cut and score the rows above it, at distances up to the target's (`horizon`: the folds
  extrapolate as far as the target does, no further) and beyond 0.01 decades (nearer is not extrapolating).
- The unit of calibration is the fold, not the point. The points of one extrapolation (the later checkpoints
  of a run, the five 3B runs of a ladder) share one form error, so per-point scores pooled over folds are
  not exchangeable with a new extrapolation's points, and the many near points of a fold swamp the few far
  ones. Each fold gives one drift `kappa_k = sqrt(b_k^2 + tau_k^2)`: `b_k` the least-squares slope of its
  signed log errors on d (the drift its points share), `tau_k^2` the slope of their excess squared residual
  about `b_k d` on d^2 (a spread that grows with d, e.g. a form error in another column). `kappa(level)` is
  split conformal over the K folds: their ceil((K+1) level)-th smallest drift, the largest when K is too
  small for that rank (K < 9 at 0.9: then a new extrapolation needs no more drift with probability
  K/(K+1), not `level`). The folds' point variance is their noise (`n_boot > 0` adds their bootstrap
  variance; measured to change little), so `kappa` also carries the parameter error that grows with d and
  the full fit's bootstrap term counts it a second time: a small, conservative overlap.
Without a calibration, `kappa = 0`: the plain bootstrap + noise interval. What this buys on published runs,
and where it falls short, is measured by `benchmarks/coverage.py` (docs/laws.md, *Intervals*).
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

FOLD_FRACS = (0.1, 0.2, 0.3, 0.4, 0.5)  # shares of the rows above each fold's cut
MIN_LEVELS = 3  # distinct values of the extrapolated variable a fold trains on (offset, scale, exponent)


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
    """Signed log errors of extrapolation folds cut along `along`, and the drift each fold showed.

    One row per scored point: its log error `log(y / L_hat)`, extrapolation distance `d` and point variance
    (all from its fold's fit), and its fold index. The unit of calibration is the fold, not the point: the
    points of one extrapolation share one form error, so they are not exchangeable (module docstring).
    """

    along: str
    cuts: list[float]
    errors: np.ndarray  # log(y / L_hat) of each scored point (its fold's fit)
    distances: np.ndarray  # d of each scored point: log10(x / cut), how far it extrapolates
    variances: np.ndarray  # point variance of each scored point: its fold's noise^2 (+ bootstrap variance)
    fold_ids: np.ndarray  # fold index of each scored point
    train_max: float = np.inf  # largest `along` of the full data: d(x) of new points is measured from it
    folds: list[dict[str, Any]] = field(default_factory=list)

    @property
    def scores(self) -> np.ndarray:
        """|log error| of each scored point (empty: no fold could be scored)."""
        return np.abs(self.errors)

    @property
    def fold_drifts(self) -> np.ndarray:
        """kappa_k of each scored fold (`fold_drift`), in fold order."""
        ids = np.unique(self.fold_ids)
        return np.array([fold_drift(*(a[self.fold_ids == k] for a in self._rows())) for k in ids])

    @property
    def kappa(self) -> float:
        """The calibrated drift at level 0.9 (log error per decade), for reports."""
        return self.drift(0.9) if self.errors.size else 0.0

    def _rows(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self.errors, self.distances, self.variances

    def distance(self, X: Mapping[str, Any]) -> np.ndarray:
        return extrapolation_distance(np.asarray(X[self.along], dtype=float), self.train_max)

    def drift(self, level: float) -> float:
        """kappa(level): the ceil((K+1) level)-th smallest of the K folds' drifts, the largest when K is too
        small for that rank (a guarantee of K/(K+1) then): split conformal with one score per extrapolation."""
        check_level(level)
        k = np.sort(self.fold_drifts)
        if k.size == 0:
            raise LawInputError("calibration has no scores: every fold failed to fit")
        return float(k[min(int(np.ceil((k.size + 1) * level)), k.size) - 1])

    def multiplier(self, level: float) -> float:
        """The normal quantile of `level`: the drift, not the multiplier, carries the calibration."""
        return float(norm.ppf(0.5 + check_level(level) / 2))

    def to_dict(self) -> dict[str, Any]:
        return {"along": self.along, "cuts": self.cuts, "n_scores": int(self.errors.size), "kappa": self.kappa,
                "fold_kappas": self.fold_drifts.tolist(), "folds": self.folds,
                "multiplier_90": self.multiplier(0.9)}  # fmt: skip


def check_level(level: float) -> float:
    """`level` in (0, 1), else a one-line error."""
    if not 0 < level < 1:
        raise LawInputError(f"`level` must be in (0, 1), got {level}")
    return float(level)


def fold_drift(err: np.ndarray, d: np.ndarray, var: np.ndarray) -> float:
    """kappa_k = sqrt(b^2 + tau^2) of one fold: its mean squared log error per decade beyond point noise.

    `b`, the least-squares slope of the signed errors on d, is the drift the fold's points share (averaged
    over them, so it shows through noise; `b^2` less its sampling variance from `var`, unbiased);
    `tau^2`, the least-squares slope of the excess squared residual about `b d` (beyond `var`) on d^2, the
    spread that grows with d (e.g. a form error in another column).
    """
    sd2 = np.sum(d**2)
    b = float(np.sum(err * d) / sd2)
    b2 = b**2 - float(np.sum(d**2 * var)) / sd2**2
    tau2 = float(np.sum(d**2 * ((err - b * d) ** 2 - var)) / np.sum(d**4))
    return float(np.sqrt(max(b2, 0.0) + max(tau2, 0.0)))


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
    """Intervals `L_hat(x) * exp(+- z s(x))` at `X_new` (see the module docstring)."""
    lam = float(norm.ppf(0.5 + check_level(level) / 2))
    pred = fitted.predict(X_new)
    drift = calibration.drift(level) * calibration.distance(X_new) if calibration is not None else 0.0
    s = log_scale(boot, X_new, noise, drift)
    method = "calibrated" if calibration is not None else "bootstrap"
    return Intervals(level, pred, pred * np.exp(-lam * s), pred * np.exp(lam * s), s, lam, method)


def extrapolation_cuts(
    values: np.ndarray, fracs: Sequence[float], min_train: int, min_levels: int = MIN_LEVELS
) -> list[float]:
    """Cut values: for each fraction f, the largest value with at least a share f of the rows above it.

    A cut keeps at least `min_train` rows and `min_levels` distinct values at or below it: with fewer
    levels along the axis, a power law with an offset on it (three parameters) is not identified, so the
    fold's extrapolation is whichever of its equally good optima the optimizer lands on.
    """
    u = np.unique(values)
    cuts = []
    for f in fracs:
        above = np.array([np.mean(values > v) for v in u])
        n_below = np.array([np.sum(values <= v) for v in u])
        ok = np.flatnonzero((above >= f) & (n_below >= min_train) & (np.arange(u.size) + 1 >= min_levels))
        if ok.size:
            cuts.append(float(u[ok[-1]]))
    return sorted(set(cuts), reverse=True)


def calibrate(
    form: LawForm | str, X: Mapping[str, Any], y: Any, along: str, *, groups: Any = None,
    fracs: Sequence[float] = FOLD_FRACS, horizon: float | None = None, min_distance: float = 0.01,
    n_boot: int = 0, seed: int = 0, **fit_kwargs: Any,
) -> Calibration:  # fmt: skip
    """Extrapolation folds of the training data along `along`, for `prediction_intervals`.

    For each cut (the largest value of `along` with a share `f` of the rows above it, for f in `fracs`), fit
    on the rows at or below the cut and score the rows above it whose distance from the cut is in
    [`min_distance`, `horizon`] decades: pass the target's largest distance as `horizon` so the folds reach
    as far as the extrapolation at hand (None: all rows above the cut). `n_boot > 0` adds each fold's
    bootstrap variance (over `groups`) to its point noise.
    """
    form = get_law(form) if isinstance(form, str) else form
    y = check_loss(y)
    if along not in X:
        raise LawInputError(f"missing column `{along}` to calibrate along")
    vals = np.asarray(X[along], dtype=float)
    groups = np.arange(y.size) if groups is None else np.asarray(groups)
    top = np.inf if horizon is None else max(float(horizon), min_distance)
    rows, folds = [], []
    cuts = extrapolation_cuts(vals, fracs, max(2 * form.n_params, form.n_params + 3))
    for cut in cuts:
        try:
            out = score_fold(form, X, y, vals, cut, groups, (min_distance, top), n_boot, seed, fit_kwargs)
        except (FitError, LawInputError) as exc:
            folds.append({"cut": cut, "error": str(exc)})
            continue
        if out[0].size:
            rows.append((*out, np.full(out[0].size, len(rows))))
        folds.append({"cut": cut, "n_train": int(np.sum(vals <= cut)), "n_scored": int(out[0].size),
                      "median_abs_log_error": float(np.median(np.abs(out[0]))) if out[0].size else None})  # fmt: skip
    cols = (
        [np.concatenate(c) for c in zip(*rows, strict=True)]
        if rows
        else [np.zeros(0)] * 3 + [np.zeros(0, int)]
    )
    return Calibration(along, cuts, cols[0], cols[1], cols[2], cols[3], float(vals.max()), folds)


def score_fold(
    form: LawForm, X: Mapping[str, Any], y: np.ndarray, vals: np.ndarray, cut: float, groups: np.ndarray,
    window: tuple[float, float], n_boot: int, seed: int, fit_kwargs: Mapping[str, Any],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """Signed log error, distance and point variance of the rows a fold cut at `cut` extrapolates to
    (distance within `window`), from a fit (+ bootstrap if `n_boot`) on the rows at or below the cut."""
    cols = tuple(form.columns)
    d_all = extrapolation_distance(vals, cut)
    tr = np.flatnonzero(vals <= cut)
    te = np.flatnonzero((vals > cut) & (d_all >= window[0]) & (d_all <= window[1] * (1 + 1e-9)))
    if te.size == 0:
        return np.zeros(0), np.zeros(0), np.zeros(0)
    Xtr, Xte = take(X, tr, cols), take(X, te, cols)
    res = fit(form, Xtr, y[tr], **fit_kwargs)
    noise = noise_scale(res, Xtr, y[tr])
    var = np.full(te.size, noise**2)
    if n_boot > 0:
        bs = bootstrap(form, Xtr, y[tr], groups[tr], n_boot=n_boot, base=res, seed=seed, **fit_kwargs)
        var = log_scale(bs, Xte, noise) ** 2
    return np.log(y[te] / res.predict(Xte)), d_all[te], var


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

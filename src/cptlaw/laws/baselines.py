"""Skill against a naive baseline: does the law predict a held-out group better than its neighbours do?

A law earns its keep only if it beats the obvious: on Ye et al.'s CPT runs (arXiv 2403.16952), linear
interpolation between the neighbouring mixture ratios predicts a held-out ratio better than the D-CPT law.
The naive predictor here, for a held-out split along column `along`:
- among training rows that share every other input (`by`) with the test row, interpolate linearly in
  `along` (in log `along` when it is positive and spans >= 10x, as N and D do) between its neighbours;
- beyond the observed range, carry the nearest observed value (for a D split: the last checkpoint's loss
  carried forward);
- no training row shares the other inputs: no naive prediction (NaN; counted in `n_naive`).
`skill = law error / naive error` on the rows both predict (MAPE; < 1: the law is better).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from cptlaw.laws.evaluate import _held_out_values, _plain, take
from cptlaw.laws.fit import FitError, check_loss, fit
from cptlaw.laws.forms import LawForm, LawInputError, get_law
from cptlaw.laws.metrics import mape, rmse


def _axis(values: np.ndarray) -> np.ndarray:
    v = values.astype(float)
    if np.all(v > 0) and v.max() / v.min() >= 10:
        return np.log(v)
    return v


def naive_predict(
    X_train: Mapping[str, Any], y_train: Any, X_test: Mapping[str, Any], along: str, by: Sequence[str] = (),
) -> np.ndarray:  # fmt: skip
    """Naive predictions at `X_test` for a split along `along` (see the module docstring); NaN where undefined."""
    y_train = check_loss(y_train, "y_train")
    for c in (along, *by):
        if c not in X_train or c not in X_test:
            raise LawInputError(f"missing column `{c}` for the naive baseline")
    a_tr = np.asarray(X_train[along], dtype=float)
    a_te = np.asarray(X_test[along], dtype=float)
    scale = _axis(np.concatenate([a_tr, a_te]))
    s_tr, s_te = scale[: a_tr.size], scale[a_tr.size :]
    key_tr = (
        list(zip(*(np.asarray(X_train[c]).tolist() for c in by), strict=True)) if by else [()] * a_tr.size
    )
    key_te = list(zip(*(np.asarray(X_test[c]).tolist() for c in by), strict=True)) if by else [()] * a_te.size
    rows: dict[tuple, list[int]] = {}
    for i, k in enumerate(key_tr):
        rows.setdefault(k, []).append(i)
    out = np.full(a_te.size, np.nan)
    for j, k in enumerate(key_te):
        idx = rows.get(k)
        if not idx:
            continue
        xs, ys = s_tr[idx], y_train[idx]
        order = np.argsort(xs, kind="stable")
        xs, ys = xs[order], ys[order]
        ux, first = np.unique(xs, return_index=True)  # repeated x: mean loss there
        uy = np.array([ys[xs == u].mean() for u in ux]) if ux.size < xs.size else ys[first]
        out[j] = np.interp(s_te[j], ux, uy)  # np.interp holds the end values beyond the range
    return out


@dataclass
class Skill:
    """Law vs naive errors on one held-out split (`ratio` < 1: the law is better)."""

    split: str
    held_out: Any
    n_test: int
    n_naive: int  # test rows the naive baseline can predict (the ratio uses these)
    law_mape: float
    naive_mape: float
    law_rmse: float
    naive_rmse: float
    ratio: float  # law MAPE / naive MAPE on the rows both predict
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def skill(law_pred: Any, naive_pred: Any, obs: Any, *, split: str = "", held_out: Any = None) -> Skill:
    """Errors of the law and of the naive baseline, and their ratio, on the rows both predict."""
    lp, npred, o = (np.asarray(v, dtype=float) for v in (law_pred, naive_pred, obs))
    ok = np.isfinite(npred)
    if not ok.any():
        return Skill(split, held_out, int(o.size), 0, mape(lp, o), float("nan"), rmse(lp, o), float("nan"),
                     float("nan"), "no training row shares the other inputs: naive baseline undefined")  # fmt: skip
    lm, nm = mape(lp[ok], o[ok]), mape(npred[ok], o[ok])
    ratio = lm / nm if nm > 0 else float("inf")
    return Skill(split, held_out, int(o.size), int(ok.sum()), lm, nm, rmse(lp[ok], o[ok]), rmse(npred[ok], o[ok]),
                 float(ratio))  # fmt: skip


def split_skill(
    law_pred: Any, X_train: Mapping[str, Any], y_train: Any, X_test: Mapping[str, Any], y_test: Any,
    along: str, columns: Sequence[str], *, held_out: Any = None,
) -> Skill:  # fmt: skip
    """`skill` of one held-out split: the naive baseline matches rows on the other `columns`.

    For a leave-one-group-out loop: call it with the law's predictions of the held-out rows.
    """
    by = [c for c in columns if c != along]
    naive = naive_predict(X_train, y_train, X_test, along, by)
    return skill(law_pred, naive, check_loss(y_test, "y_test"), split=along, held_out=held_out)


def skill_splits(
    form: LawForm | str, X: Mapping[str, Any], y: Any, split_by: Sequence[str] = ("N", "D", "r"), *,
    mode: str = "logo", max_groups: int = 6, **fit_kwargs: Any,
) -> list[Skill]:  # fmt: skip
    """Leave-one-group-out law vs naive error for each column in `split_by` (as `compare_forms` splits)."""
    form = get_law(form) if isinstance(form, str) else form
    y = check_loss(y)
    cols = tuple(form.columns)
    out = []
    for split in split_by:
        if split not in X:
            raise LawInputError(f"missing column `{split}` to split by")
        labels = np.asarray(X[split])
        for value in _held_out_values(labels, mode, max_groups):
            te, tr = np.flatnonzero(labels == value), np.flatnonzero(labels != value)
            Xtr, Xte = take(X, tr, cols), take(X, te, cols)
            try:
                res = fit(form, Xtr, y[tr], **fit_kwargs)
                out.append(split_skill(res.predict(Xte), Xtr, y[tr], Xte, y[te], split, cols,
                                       held_out=_plain(value)))  # fmt: skip
            except (FitError, LawInputError) as exc:
                out.append(Skill(split, _plain(value), int(te.size), 0, *[float("nan")] * 5, str(exc)))
    return out

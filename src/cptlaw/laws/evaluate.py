"""Uncertainty and model choice: bootstrap over runs, leave-one-group-out comparison of parameterisations.

Points from one run (its eval steps) are not independent, so the bootstrap resamples whole run groups, and
held-out error is measured on whole groups (a model size, a data size, a mixture ratio, a domain) — the
held-out splits of the D-CPT paper (Que et al. 2024, sec. 3.3).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cptlaw.laws.fit import FitError, FitProblem, check_loss, fit, refit
from cptlaw.laws.forms import LawForm, LawInputError, get_law
from cptlaw.laws.metrics import all_metrics, mape


def take(X: Mapping[str, Any], idx: np.ndarray, columns: Sequence[str]) -> dict[str, np.ndarray]:
    """Rows `idx` of the named columns of a column mapping (dict or DataFrame)."""
    out = {}
    for c in columns:
        if c not in X:
            raise LawInputError(f"missing column `{c}`")
        out[c] = np.asarray(X[c])[idx]
    return out


@dataclass
class BootstrapResult:
    """Percentile CIs of the parameters and of derived decisions over run-group resamples."""

    level: float
    n_boot: int
    n_failed: int
    samples: dict[str, np.ndarray]  # parameter or decision name -> values over successful resamples
    ci: dict[str, tuple[float, float]] = field(default_factory=dict)
    form: LawForm | None = field(default=None, repr=False, compare=False)
    fixed: dict[str, float] = field(default_factory=dict)

    def param_dicts(self) -> list[dict[str, float]]:
        """One params dict per successful resample (the form's parameters plus its fixed values)."""
        assert self.form is not None
        names = self.form.param_names
        m = self.samples[names[0]].size if names else 0
        return [{p: float(self.samples[p][i]) for p in names} | self.fixed for i in range(m)]

    def predict(self, X: Mapping[str, Any]) -> np.ndarray:
        """(resamples, points) predictions: the bootstrap distribution of the law at `X`."""
        assert self.form is not None
        feats = self.form.features(X)
        out = []
        for p in self.param_dicts():
            th = np.array([p[k] for k in self.form.nonlinear], dtype=float)
            c = np.array([p[k] for k in self.form.linear], dtype=float)
            with np.errstate(all="ignore"):
                pred = np.real(self.form.design(feats, th)) @ c
                off = self.form.offset(feats, th)
            out.append(pred if off is None else pred + off)
        return np.asarray(out).reshape(len(out), -1)

    def to_dict(self) -> dict[str, Any]:
        return {"level": self.level, "n_boot": self.n_boot, "n_failed": self.n_failed,
                "ci": {k: list(v) for k, v in self.ci.items()},
                "median": {k: float(np.median(v)) for k, v in self.samples.items() if v.size}}  # fmt: skip


def group_codes(groups: Any) -> np.ndarray:
    """0, 1, 2, ... per point, numbering the groups in order of first appearance, not by label: the labels
    (MLflow run ids are random) then cannot change which runs a seeded resample draws, only the rows can."""
    _, first, inverse = np.unique(np.asarray(groups), return_index=True, return_inverse=True)
    rank = np.empty(first.size, dtype=int)
    rank[np.argsort(first, kind="stable")] = np.arange(first.size)
    return rank[inverse.reshape(-1)]


def resample_weights(groups: Any, n_boot: int, seed: int = 0) -> np.ndarray:
    """(n_boot, n_points) multiplicities of each point when whole groups are drawn with replacement."""
    codes = group_codes(groups)
    n_groups = int(codes.max()) + 1 if codes.size else 0
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_groups, (n_boot, n_groups))
    counts = np.stack([np.bincount(d, minlength=n_groups) for d in draws])
    return counts[:, codes].astype(float)


def bootstrap(
    form: LawForm | str, X: Mapping[str, Any], y: Any, groups: Any, *, n_boot: int = 100, level: float = 0.9,
    seed: int = 0, base: Any = None, derived: Mapping[str, Callable[[dict], float]] | None = None,
    n_starts: int = 16, method: str = "warm", **fit_kwargs: Any,
) -> BootstrapResult:  # fmt: skip
    """Refit on `n_boot` resamples of whole groups (e.g. run ids) drawn with replacement.

    `method="warm"` (default): each resample is the full data with bootstrap multiplicities as point
    weights, refitted by project + polish from `base` (the full-data fit, computed if not given; anything
    with a `params` dict) -- a resample's optimum sits near the full-data one, so the scan is not needed
    (~5 ms per resample of a 200-point D-CPT fit). `method="full"`: a full multi-start fit per resample
    (`n_starts` fresh starts plus `base`), for laws with several competing optima.
    `derived`: name -> function of a params dict (e.g. a usage's r_d), whose CIs are reported too.
    """
    form = get_law(form) if isinstance(form, str) else form
    y = check_loss(y)
    groups = np.asarray(groups)
    if groups.shape != y.shape:
        raise LawInputError(f"`groups` must have one label per point ({y.size}), got {groups.size}")
    if not 0 < level < 1:
        raise LawInputError(f"`level` must be in (0, 1), got {level}")
    if method not in ("warm", "full"):
        raise LawInputError(f"`method` must be 'warm' or 'full', got {method!r}")
    base = base or fit(form, X, y, **fit_kwargs)
    names = list(form.param_names) + list(derived or {})
    samples: dict[str, list[float]] = {k: [] for k in names}
    failed = 0
    weights = resample_weights(groups, n_boot, seed)
    if method == "warm":
        kw: dict[str, Any] = {}
        prob = FitProblem(form, form.features(X), y, fit_kwargs.get("delta", 1e-3), fit_kwargs.get("bounds"))
    rng = np.random.default_rng(seed + 1)
    for w in weights:
        try:
            if method == "warm":
                res = refit(prob.with_weights(w), base.params, **kw)
            else:
                idx = np.repeat(np.arange(y.size), w.astype(int))
                res = fit(form, take(X, idx, form.columns), y[idx], init=base.params, n_starts=n_starts,
                          seed=int(rng.integers(2**31)), **fit_kwargs)  # fmt: skip
            vals = {p: res.params[p] for p in form.param_names}
            for k, fn in (derived or {}).items():
                vals[k] = float(fn(res.params))
        except (FitError, LawInputError, ValueError, ArithmeticError):
            failed += 1
            continue
        for k in names:
            samples[k].append(vals[k])
    arr = {k: np.asarray(v, dtype=float) for k, v in samples.items()}
    q = ((1 - level) / 2, 1 - (1 - level) / 2)
    ci = {k: (float(np.quantile(v, q[0])), float(np.quantile(v, q[1]))) for k, v in arr.items() if v.size}
    return BootstrapResult(level, n_boot, failed, arr, ci, form=form, fixed=dict(form.fixed))


def two_modes(
    samples: Any, *, log: bool = False, min_share: float = 0.05, separation: float = 0.8, min_gap: float = 5.0
) -> dict[str, Any] | None:
    """Whether bootstrap answers fall into two separate groups (None: they do not).

    A percentile interval summarises one hump; when a law's optimum jumps between two points of a flat valley
    from resample to resample, the interval hides that the runs do not pin the answer down. The best split of
    the sorted answers (Otsu / Jenks natural break) is a finding when its between-group share of the variance
    is at least `separation` (200 draws of a normal score ~0.65, of a uniform 0.75-0.80), the empty stretch
    between the groups is at least `min_gap` times the answers' mean spacing (range / (n - 1); a uniform's
    stretch is ~1), and the smaller group holds at least `min_share` of the answers. Returns each group's median
    and share and the empty stretch between them. `log`: split the logs of positive answers (a size or a token
    count spans decades: in linear units its upper tail would decide the split), reported in the answers' units.
    """
    a = np.asarray(samples, dtype=float)
    a = np.log(a[a > 0]) if log else a
    x = np.sort(a[np.isfinite(a)])
    n = x.size
    lo = max(1, int(np.ceil(min_share * n)))
    if n < 20 or n - lo < lo or x[0] == x[-1]:
        return None
    sst = float(np.sum((x - x.mean()) ** 2))
    k = np.arange(lo, n - lo + 1)  # the lower group is x[:k]
    csum = np.cumsum(x)
    m1, m2 = csum[k - 1] / k, (csum[-1] - csum[k - 1]) / (n - k)
    between = np.where(x[k - 1] < x[k], k * (n - k) / n * (m1 - m2) ** 2, 0.0)  # never split equal answers
    best = int(np.argmax(between))
    eta, cut = float(between[best] / sst), int(k[best])
    if eta < separation or x[cut] - x[cut - 1] < min_gap * (x[-1] - x[0]) / (n - 1):
        return None
    unit = np.exp if log else float
    return {"separation": eta, "medians": [float(unit(np.median(x[:cut]))), float(unit(np.median(x[cut:])))],
            "shares": [cut / n, (n - cut) / n], "gap": [float(unit(x[cut - 1])), float(unit(x[cut]))]}  # fmt: skip


@dataclass
class Comparison:
    """Held-out errors of several forms: `rows` per held-out group, `summary` pooled per form x split."""

    rows: list[dict[str, Any]]
    summary: list[dict[str, Any]]
    best: dict[str, str]  # split -> form with the lowest pooled held-out RMSE
    best_overall: str | None  # lowest mean rank over splits

    def to_dict(self) -> dict[str, Any]:
        return {
            "best": self.best,
            "best_overall": self.best_overall,
            "summary": self.summary,
            "rows": self.rows,
        }


def _held_out_values(labels: np.ndarray, mode: str, max_groups: int) -> list[Any]:
    uniq = np.unique(labels)
    if uniq.size < 2:
        return []
    if mode == "largest":
        return [uniq[-1]]
    if mode != "logo":
        raise LawInputError(f"`mode` must be 'logo' or 'largest', got {mode!r}")
    if uniq.size > max_groups:  # evenly spread picks, always including the largest (extrapolation)
        uniq = uniq[np.unique(np.linspace(0, uniq.size - 1, max_groups).round().astype(int))]
    return list(uniq)


def compare_forms(
    forms: Sequence[LawForm | str], X: Mapping[str, Any], y: Any, split_by: Sequence[str] = ("N", "D", "r"),
    *, mode: str = "logo", max_groups: int = 6, baseline: Baseline | None = None, **fit_kwargs: Any,
) -> Comparison:  # fmt: skip
    """Leave-one-group-out held-out error of every form, for each column in `split_by` (e.g. N, D, r, domain).

    For each split column and each held-out value (all values, or `max_groups` spread ones, or with
    `mode="largest"` only the largest), fit every form on the other rows and score it on the held-out rows.
    A form that cannot be fitted on a split gets a row with its `error` instead of metrics.
    `baseline(X_train, y_train, X_test, split)`: a fit-free predictor (NaN where undefined, e.g.
    `laws.baselines.naive_predict`), scored as form `naive`; each law's summary then carries its `skill`,
    law MAPE / baseline MAPE on the held-out rows both predict (> 1: the law loses to the baseline).
    """
    forms = [get_law(f) if isinstance(f, str) else f for f in forms]
    y = check_loss(y)
    rows: list[dict[str, Any]] = []
    pooled: dict[tuple[str, str], tuple[list[np.ndarray], list[np.ndarray]]] = {}
    base_pooled: dict[str, list[np.ndarray]] = {}
    columns = list(dict.fromkeys(c for f in forms for c in f.columns))
    for split in split_by:
        if split not in X:
            raise LawInputError(f"missing column `{split}` to split by")
        labels = np.asarray(X[split])
        for value in _held_out_values(labels, mode, max_groups):
            test = labels == value
            tr, te = np.flatnonzero(~test), np.flatnonzero(test)
            if baseline is not None:
                base = _baseline_rows(baseline, X, y, tr, te, split, columns)
                base_pooled.setdefault(split, []).append(base)
                rows.append(_baseline_row(split, value, tr, te, base, y[te]))
            for form in forms:
                row: dict[str, Any] = {"form": form.name, "split": split, "held_out": _plain(value),
                                       "n_train": int(tr.size), "n_test": int(te.size), "error": None}  # fmt: skip
                try:
                    res = fit(form, take(X, tr, form.columns), y[tr], **fit_kwargs)
                    pred = res.predict(take(X, te, form.columns))
                    row |= all_metrics(pred, y[te], res.diagnostics["delta"])
                except (FitError, LawInputError) as exc:
                    row["error"] = str(exc)
                    pred = np.full(te.size, np.nan)
                p, o = pooled.setdefault((form.name, split), ([], []))
                p.append(pred)
                o.append(y[te])
                rows.append(row)
    summary = []
    for (name, split), (p, o) in pooled.items():
        pred, obs = np.concatenate(p), np.concatenate(o)
        ok = np.isfinite(pred)
        if not ok.any():
            continue
        row = {"form": name, "split": split, "n_test": int(ok.sum())} | all_metrics(pred[ok], obs[ok])
        if split in base_pooled:
            row |= _skill(pred, np.concatenate(base_pooled[split]), obs)
        summary.append(row)
    for split, b in base_pooled.items():
        base, obs = np.concatenate(b), np.concatenate(pooled[(forms[0].name, split)][1]) if forms else None
        ok = np.isfinite(base)
        if ok.any():
            summary.append(
                {"form": "naive", "split": split, "n_test": int(ok.sum())} | all_metrics(base[ok], obs[ok])
            )
    return Comparison(rows, summary, *rank_forms(summary, split_by))


def rank_forms(
    summary: Sequence[Mapping[str, Any]], split_by: Sequence[str]
) -> tuple[dict[str, str], str | None]:
    """Per split, the form with the lowest pooled held-out RMSE; overall, the lowest mean rank over the splits
    that discriminate. A split where no form beats the held-out points' own mean (every R² <= 0) does not
    vote: its ranking only orders how wildly the forms extrapolate, and across machines it flipped the choice
    on round-off. If no split discriminates, every split votes."""
    per_split = {
        split: sorted(
            (s for s in summary if s["split"] == split and s["form"] != "naive"), key=lambda s: s["rmse"]
        )
        for split in split_by
    }
    per_split = {split: cands for split, cands in per_split.items() if cands}
    best = {split: cands[0]["form"] for split, cands in per_split.items()}
    voting = {
        split: c for split, c in per_split.items() if any(s.get("r2", -np.inf) > 0 for s in c)
    } or per_split
    ranks: dict[str, list[int]] = {}
    for cands in voting.values():
        for i, s in enumerate(cands):
            ranks.setdefault(s["form"], []).append(i)
    best_overall = min(ranks, key=lambda f: (-len(ranks[f]), np.mean(ranks[f]))) if ranks else None
    return best, best_overall


Baseline = Callable[[dict, np.ndarray, dict, str], np.ndarray]


def _baseline_rows(
    baseline: Baseline, X: Mapping[str, Any], y: np.ndarray, tr: np.ndarray, te: np.ndarray, split: str,
    columns: Sequence[str],
) -> np.ndarray:  # fmt: skip
    """The baseline's predictions of the held-out rows; all NaN when it cannot predict along `split`."""
    cols = list(dict.fromkeys([*columns, split]))
    try:
        pred = np.asarray(baseline(take(X, tr, cols), y[tr], take(X, te, cols), split), dtype=float)
    except (LawInputError, ValueError, TypeError):  # e.g. a categorical split (domain, regime): no neighbours
        pred = np.full(te.size, np.nan)
    return pred


def _baseline_row(
    split: str, value: Any, tr: np.ndarray, te: np.ndarray, pred: np.ndarray, obs: np.ndarray
) -> dict:
    row: dict[str, Any] = {"form": "naive", "split": split, "held_out": _plain(value), "n_train": int(tr.size),
                           "n_test": int(te.size), "error": None}  # fmt: skip
    ok = np.isfinite(pred)
    if ok.any():
        return row | {"n_test": int(ok.sum())} | all_metrics(pred[ok], obs[ok])
    return row | {"error": "no training row shares the other inputs: naive baseline undefined"}


def _skill(pred: np.ndarray, base: np.ndarray, obs: np.ndarray) -> dict[str, Any]:
    """Law vs baseline MAPE on the held-out rows both predict (`skill` > 1: the law loses)."""
    ok = np.isfinite(pred) & np.isfinite(base)
    if not ok.any():
        return {"skill": None, "naive_mape": None, "n_skill": 0}
    law, naive = mape(pred[ok], obs[ok]), mape(base[ok], obs[ok])
    return {"skill": float(law / naive) if naive > 0 else float("inf"), "naive_mape": float(naive),
            "n_skill": int(ok.sum())}  # fmt: skip


def _plain(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v

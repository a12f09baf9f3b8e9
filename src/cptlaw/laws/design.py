"""Which run to make next: rank candidate runs by how much they are expected to narrow a decision's interval,
per FLOP.

For each candidate run (N, D, r, ... and its evaluation checkpoints along D) and each of `n_sim` draws from the
bootstrap of the current fit: take the drawn parameters as the truth, simulate the run's losses (law + point
noise), add them to the data, refit (warm: project + polish) and bootstrap the augmented data (warm, `n_boot`
resamples), and measure the width of the decision's interval. The expected width over draws, against today's,
is the run's expected shrinkage; divided by its cost (6 N D FLOPs, Kaplan et al. 2020) it ranks the
candidates. Common random numbers (the same draws and resample weights for every candidate) keep the ranking
from being decided by Monte-Carlo noise. This is preposterior analysis (Raiffa & Schlaifer 1961) with the
bootstrap standing in for the posterior.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from cptlaw.laws.decide import compute_optimal, max_domain_share, optimal_share_limited_data, ppl_optimum
from cptlaw.laws.evaluate import BootstrapResult, group_codes, resample_weights, take
from cptlaw.laws.fit import FitError, FitProblem, FitResult, check_loss, refit
from cptlaw.laws.forms import LawForm, LawInputError

Decision = Callable[[Mapping[str, float]], float]


def decision_function(form: LawForm, kind: str, **args: float) -> Decision:
    """A decision as a function of a params dict: `usage1` (max domain share; the law is the general-loss law:
    N, D, lg0, tolerance), `usage2` (optimal domain share with limited domain data: N, domain_tokens),
    `usage3` (log10 of the compute-optimal N: compute, r), `ppl` (the perplexity optimum's mu: D, mu_lo,
    mu_hi, sigma_lo, sigma_hi)."""
    need = {"usage1": ("N", "D", "lg0"), "usage2": ("N", "domain_tokens"), "usage3": ("compute",),
            "ppl": ("D", "mu_lo", "mu_hi", "sigma_lo", "sigma_hi")}  # fmt: skip
    if kind not in need:
        raise LawInputError(f"`decision` must be one of {', '.join(need)}, got {kind!r}")
    missing = [k for k in need[kind] if k not in args]
    if missing:
        raise LawInputError(f"`decision` {kind} needs {', '.join(missing)}")
    a = {k: float(v) for k, v in args.items()}
    if kind == "usage1":
        return lambda p: (
            max_domain_share(form, p, a["N"], a["D"], a["lg0"], a.get("tolerance", 0.03)).r_domain
        )
    if kind == "usage2":
        return lambda p: optimal_share_limited_data(form, p, a["N"], a["domain_tokens"]).r_domain
    if kind == "usage3":
        return lambda p: float(np.log10(compute_optimal(form, p, a["compute"], a.get("r", 1.0)).n_params))
    return lambda p: ppl_optimum(form, p, a["D"], (a["mu_lo"], a["mu_hi"]), (a["sigma_lo"], a["sigma_hi"])).mu


@dataclass
class RunValue:
    """One candidate run: its inputs, cost, and the decision interval width expected after making it."""

    run: dict[str, float]
    flops: float
    width_now: float
    width_expected: float
    shrinkage: float  # width_now - width_expected
    shrinkage_per_pflop: float  # shrinkage per 1e15 FLOPs
    n_ok: int  # simulations that refitted

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def interval_width(values: np.ndarray, level: float) -> float:
    v = values[np.isfinite(values)]
    if v.size < 2:
        return float("nan")
    q = np.quantile(v, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(q[1] - q[0])


def _decisions(
    problem: FitProblem, base: Mapping[str, float], weights: np.ndarray, decide: Decision
) -> np.ndarray:
    out = []
    for w in weights:
        try:
            out.append(float(decide(refit(problem.with_weights(w), base).params)))
        except (FitError, LawInputError, ValueError, ArithmeticError):
            out.append(np.nan)
    return np.asarray(out)


def candidate_rows(
    run: Mapping[str, float], columns: Sequence[str], checkpoints: Sequence[float]
) -> dict[str, np.ndarray]:
    """The evaluation points of one candidate run: its inputs with D at each checkpoint fraction."""
    rows = {c: np.full(len(checkpoints), float(run[c])) for c in columns}
    if "D" in rows:
        rows["D"] = float(run["D"]) * np.asarray(checkpoints, dtype=float)
    return rows


def rank_next_runs(
    form: LawForm, X: Mapping[str, Any], y: Any, fitted: FitResult, boot: BootstrapResult, decide: Decision,
    candidates: Sequence[Mapping[str, float]], *, groups: Any = None, level: float = 0.9, n_sim: int = 4,
    n_boot: int = 100, checkpoints: Sequence[float] = (0.25, 0.5, 1.0), noise: float | None = None,
    cost: Callable[[Mapping[str, float]], float] | None = None, seed: int = 0,
) -> tuple[float, list[RunValue]]:  # fmt: skip
    """(today's decision interval width, candidates ranked by expected shrinkage per FLOP, best first).

    `boot`: a bootstrap of `fitted` (its resamples are the draws of the truth); `noise`: log-space point
    noise of a simulated loss (default: robust scale of the fit's residuals); `cost`: FLOPs of a run
    (default 6 N D).
    """
    y = check_loss(y)
    cols = tuple(form.columns)
    for c in candidates:
        missing = [k for k in cols if k not in c]
        if missing:
            raise LawInputError(f"`candidates` rows need {', '.join(cols)}; missing {', '.join(missing)}")
    groups = np.arange(y.size) if groups is None else np.asarray(groups)
    if noise is None:
        res = np.log(fitted.predict(X)) - np.log(y)
        noise = float(1.4826 * np.median(np.abs(res - np.median(res))))
    cost = cost or (lambda r: 6.0 * float(r["N"]) * float(r["D"]))
    base_X = take(X, np.arange(y.size), cols)
    prob0 = FitProblem(form, form.features(base_X), y, fitted.diagnostics.get("delta", 1e-3))
    w0 = resample_weights(groups, n_boot, seed)
    width_now = interval_width(_decisions(prob0, fitted.params, w0, decide), level)
    rng = np.random.default_rng(seed)
    draws = boot.param_dicts()
    if not draws:
        raise LawInputError("`boot` has no successful resamples to draw the truth from")
    picks = [draws[i] for i in rng.choice(len(draws), size=n_sim, replace=len(draws) < n_sim)]
    eps = rng.normal(0.0, 1.0, (n_sim, len(checkpoints)))
    # groups of the augmented data: the candidate run is one new group
    inv = group_codes(groups)
    aug_groups = np.concatenate([inv, np.full(len(checkpoints), int(inv.max()) + 1)])
    wa = resample_weights(aug_groups, n_boot, seed + 1)
    out = []
    for run in candidates:
        rows = candidate_rows(run, cols, checkpoints)
        Xa = {c: np.concatenate([np.asarray(base_X[c], dtype=float), rows[c]]) for c in cols}
        feats = form.features(Xa)
        widths = []
        for s, truth in enumerate(picks):
            y_new = form.predict(truth, rows) * np.exp(noise * eps[s])
            if not np.all(np.isfinite(y_new)) or np.any(y_new <= 0):
                continue
            prob = FitProblem(form, feats, np.concatenate([y, y_new]), prob0.delta)
            try:
                base = refit(prob, fitted.params).params
            except (FitError, LawInputError):
                continue
            widths.append(interval_width(_decisions(prob, base, wa, decide), level))
        widths = [w for w in widths if np.isfinite(w)]
        flops = float(cost(run))
        we = float(np.mean(widths)) if widths else float("nan")
        out.append(RunValue({k: float(v) for k, v in run.items()}, flops, width_now, we, width_now - we,
                            (width_now - we) / flops * 1e15, len(widths)))  # fmt: skip
    out.sort(key=lambda v: -v.shrinkage_per_pflop if np.isfinite(v.shrinkage_per_pflop) else np.inf)
    return width_now, out


def candidate_grid(**axes: Sequence[float]) -> list[dict[str, float]]:
    """Every combination of the given axis values, e.g. `candidate_grid(N=[...], D=[...], r=[...])`."""
    mesh = np.meshgrid(*[np.asarray(v, dtype=float) for v in axes.values()], indexing="ij")
    return [
        dict(zip(axes, map(float, vals), strict=True))
        for vals in zip(*(m.ravel() for m in mesh), strict=True)
    ]

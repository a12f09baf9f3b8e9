"""The fitter: log-Huber optimum (Besiroglu et al. 2024) at variable-projection speed.

Objective (Hoffmann et al. 2022, sec. D.2; Besiroglu et al. 2024): `sum_i Huber_delta(log L_hat(x_i) - log L_i)`,
delta = 1e-3, positive constants in log space, L-BFGS-B from many starts, keep the best.

Every law here is linear in its constants once its exponents are fixed (`cptlaw.laws.forms`), so:
1. *Scan*: for each start of the exponents (Latin hypercube or grid over the bounds), solve the constants by
   non-negative least squares on relative residuals (`(Phi c - L)/L ~ log residual`) and score the result on
   the log-Huber objective. Cheap: one small NNLS per start.
2. *Project*: from the best `n_refine` starts, L-BFGS-B over the exponents only, constants solved exactly
   by NNLS at every step (variable projection: Golub & Pereyra 1973).
3. *Polish*: from the best `n_polish` distinct projected solutions, L-BFGS-B over all parameters
   (log-constants + exponents) on the log-Huber objective itself, with an exact gradient (complex-step
   derivative of the design matrix). The best polished point is the result.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import minimize, nnls
from scipy.stats import qmc

from cptlaw.errors import BadInput
from cptlaw.laws.forms import LawForm, LawInputError, get_law
from cptlaw.laws.metrics import all_metrics, huber

LOGC_BOUNDS = (-90.0, 90.0)  # log of the constants: wide enough for B*r^eta/D^beta with D ~ 1e12, beta ~ 3


class FitError(BadInput, RuntimeError):
    """Every start failed; `diagnostics` says what happened."""

    def __init__(self, message: str, diagnostics: dict[str, Any]):
        super().__init__(message)
        self.diagnostics = diagnostics


@dataclass
class FitResult:
    """A fitted law. `params` uses the paper's names (plus fixed ones such as epsilon)."""

    law: str
    params: dict[str, float]
    huber: float  # sum of Huber losses of log residuals on the fitted points (the objective)
    r2: float
    rmse: float
    mape: float
    success: bool
    message: str
    n_points: int
    n_starts: int
    n_converged: int  # polish runs the optimizer reported as converged
    at_bounds: list[str] = field(default_factory=list)  # exponents that ended on their bound
    diagnostics: dict[str, Any] = field(default_factory=dict)
    form: LawForm | None = field(default=None, repr=False, compare=False)

    def predict(self, X: Mapping[str, Any]) -> np.ndarray:
        assert self.form is not None
        return self.form.predict(self.params, X)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self) if self.form is None else {k: v for k, v in asdict(self).items() if k != "form"}
        d.pop("form", None)
        d["equation"] = self.form.equation if self.form is not None else None
        return d


def check_loss(y: Any, name: str = "loss") -> np.ndarray:
    arr = np.asarray(y, dtype=float).reshape(-1)
    if not np.all(np.isfinite(arr)):
        bad = int(np.flatnonzero(~np.isfinite(arr))[0])
        raise LawInputError(f"`{name}` must be finite, got {arr[bad]} at row {bad}")
    if np.any(arr <= 0):
        bad = int(np.flatnonzero(arr <= 0)[0])
        raise LawInputError(f"`{name}` must be > 0 (it is fitted in log space), got {arr[bad]} at row {bad}")
    return arr


def _starts(lo: np.ndarray, hi: np.ndarray, n: int, sampler: str, seed: int) -> np.ndarray:
    p = lo.size
    if sampler == "grid":
        m = max(2, int(round(n ** (1.0 / p))))
        axes = [lo[j] + (np.arange(m) + 0.5) / m * (hi[j] - lo[j]) for j in range(p)]
        return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, p)
    if sampler == "lhs":
        return qmc.scale(qmc.LatinHypercube(d=p, seed=seed).random(n), lo, hi) if p > 1 else (
            lo + (np.arange(n) + 0.5) / n * (hi - lo)
        ).reshape(-1, 1)  # fmt: skip
    raise LawInputError(f"`sampler` must be 'lhs' or 'grid', got {sampler!r}")


class _Problem:
    """The fitting problem of one form on one data set: projection, objectives and gradients."""

    def __init__(self, form: LawForm, feats: dict[str, np.ndarray], y: np.ndarray, delta: float):
        self.form, self.feats, self.y, self.delta = form, feats, y, delta
        self.ly = np.log(y)
        self.k, self.p = len(form.linear), len(form.nonlinear)

    def design(self, theta: np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"):
            return np.real(self.form.design(self.feats, theta))

    def project(self, theta: np.ndarray) -> tuple[np.ndarray, float]:
        """Constants by NNLS on relative residuals; returns (c, sum of squared relative residuals)."""
        phi = self.design(theta)
        if not np.all(np.isfinite(phi)):
            return np.full(self.k, np.nan), np.inf
        w = phi / self.y[:, None]
        scale = np.sqrt(np.sum(w**2, axis=0))
        ok = scale > 0
        c = np.zeros(self.k)
        try:
            cs, rnorm = nnls(w[:, ok] / scale[ok], np.ones_like(self.y))
        except (RuntimeError, ValueError):
            return np.full(self.k, np.nan), np.inf
        c[ok] = cs / scale[ok]
        return c, float(rnorm**2)

    def huber_of(self, c: np.ndarray, theta: np.ndarray) -> float:
        pred = self.design(theta) @ c
        if not np.all(np.isfinite(pred)) or np.any(pred <= 0):
            return np.inf
        return float(np.sum(huber(np.log(pred) - self.ly, self.delta)))

    def full(self, z: np.ndarray) -> tuple[float, np.ndarray]:
        """log-Huber objective and exact gradient in (log c, theta)."""
        k, p = self.k, self.p
        c, th = np.exp(z[:k]), z[k:]
        h = 1e-30
        jac = np.empty((self.y.size, k, p))
        phi = None
        with np.errstate(all="ignore"):
            for j in range(p):
                tc = th.astype(complex)
                tc[j] += 1j * h
                d = self.form.design(self.feats, tc)
                jac[:, :, j] = d.imag / h
                if phi is None:
                    phi = d.real
            if phi is None:
                phi = self.design(th)
            pred = phi @ c
        if not (np.all(np.isfinite(pred)) and np.all(pred > 0) and np.all(np.isfinite(jac))):
            return 1e10, np.zeros_like(z)
        res = np.log(pred) - self.ly
        w = np.clip(res, -self.delta, self.delta) / pred
        g_c = (phi * c).T @ w
        g_th = np.einsum("nkp,k,n->p", jac, c, w)
        return float(np.sum(huber(res, self.delta))), np.concatenate([g_c, g_th])


def fit(
    form: LawForm | str,
    X: Mapping[str, Any],
    y: Any,
    *,
    n_starts: int = 64,
    delta: float = 1e-3,
    seed: int = 0,
    sampler: str = "lhs",
    n_refine: int = 12,
    n_polish: int = 6,
    bounds: Mapping[str, tuple[float, float]] | None = None,
    init: Mapping[str, float] | None = None,
    maxiter: int = 1500,
    minimizer: Callable[..., Any] = minimize,
) -> FitResult:
    """Fit `form` to points `X` (column → array) with observed losses `y` (see the module docstring).

    `init`: a previous fit's params, added as an extra start (used by the bootstrap); `bounds`: per-exponent
    overrides of the form's box; `maxiter`: per polish run; `minimizer`: a `scipy.optimize.minimize`-compatible function.
    """
    t0 = time.perf_counter()
    form = get_law(form) if isinstance(form, str) else form
    feats = form.features(X)
    y = check_loss(y)
    n = next(iter(feats.values())).shape[0]
    if y.size != n:
        raise LawInputError(f"`loss` has {y.size} values but the columns have {n} rows")
    if n < form.n_params:
        raise LawInputError(
            f"`loss` has {n} points, fewer than the {form.n_params} parameters of `{form.name}`"
        )
    if n_starts < 1:
        raise LawInputError(f"`n_starts` must be >= 1, got {n_starts}")
    box = dict(zip(form.nonlinear, form.data_bounds(feats), strict=True)) | dict(bounds or {})
    lo = np.array([box[p][0] for p in form.nonlinear], dtype=float)
    hi = np.array([box[p][1] for p in form.nonlinear], dtype=float)
    prob = _Problem(form, feats, y, delta)

    # 1. scan
    starts = _starts(lo, hi, n_starts, sampler, seed)
    if init is not None:
        starts = np.vstack([np.clip([init[p] for p in form.nonlinear], lo, hi), starts])
    scan = np.array([prob.huber_of(prob.project(t)[0], t) for t in starts])
    diag: dict[str, Any] = {
        "n_scan_finite": int(np.isfinite(scan).sum()),
        "t_scan_s": time.perf_counter() - t0,
    }
    if not np.any(np.isfinite(scan)):
        raise FitError(f"`{form.name}`: every one of {len(starts)} starts gave a non-finite fit", diag)

    # 2. variable projection over the exponents only
    zb = list(zip(lo, hi, strict=True))
    order = np.argsort(scan)[: min(n_refine, int(np.isfinite(scan).sum()))]
    projected = []
    for i in order:
        res = minimizer(lambda t: prob.project(t)[1], starts[i], method="L-BFGS-B", bounds=zb)
        th = np.asarray(res.x, dtype=float)
        c, _ = prob.project(th)
        projected.append((prob.huber_of(c, th), th, c, bool(res.success)))
        # the scan point itself stays a candidate: projection minimises squares, not the Huber objective
        c0, _ = prob.project(starts[i])
        projected.append((scan[i], starts[i], c0, True))
    diag["t_project_s"] = time.perf_counter() - t0
    projected = [q for q in projected if np.isfinite(q[0])]
    projected.sort(key=lambda q: q[0])
    chosen: list[tuple[float, np.ndarray, np.ndarray, bool]] = []
    for q in projected:
        if all(np.max(np.abs(q[1] - o[1]) / (hi - lo + 1e-12)) > 1e-3 for o in chosen):
            chosen.append(q)
        if len(chosen) == n_polish:
            break

    # 3. polish all parameters on the log-Huber objective
    polished = []
    for _, th, c, _ in chosen:
        floor = 1e-8 * np.mean(y) / np.maximum(np.mean(np.abs(prob.design(th)), axis=0), 1e-300)
        z0 = np.concatenate([np.log(np.maximum(c, floor)), th])
        z0[: prob.k] = np.clip(z0[: prob.k], *LOGC_BOUNDS)
        # scale the objective to ~1 at the start: L-BFGS-B's ftol is relative to max(|f|, 1)
        scale = 1.0 / max(prob.full(z0)[0], 1e-300)

        def scaled(z: np.ndarray, s: float = scale) -> tuple[float, np.ndarray]:
            f, g = prob.full(z)
            return f * s, g * s

        res = minimizer(
            scaled, z0, jac=True, method="L-BFGS-B", bounds=[LOGC_BOUNDS] * prob.k + zb,
            options={"maxiter": maxiter, "ftol": 1e-13, "gtol": 1e-9},
        )  # fmt: skip
        polished.append((float(res.fun) / scale, np.asarray(res.x), bool(res.success), str(res.message)))
    polished = [q for q in polished if np.isfinite(q[0]) and q[0] < 1e10]
    diag["t_polish_s"] = time.perf_counter() - t0
    if not polished:
        raise FitError(f"`{form.name}`: every polish run failed (non-finite objective)", diag)
    polished.sort(key=lambda q: q[0])
    best_fun, z, ok, msg = polished[0]
    c, th = np.exp(z[: prob.k]), z[prob.k :]

    params = dict(zip(form.linear, map(float, c), strict=True)) | dict(
        zip(form.nonlinear, map(float, th), strict=True)
    )
    params |= dict(form.fixed)
    pred = prob.design(th) @ c
    m = all_metrics(pred, y, delta)
    tol = 1e-6 * (hi - lo)
    at_bounds = [
        p for j, p in enumerate(form.nonlinear) if th[j] <= lo[j] + tol[j] or th[j] >= hi[j] - tol[j]
    ]
    n_conv = sum(q[2] for q in polished)
    diag |= {
        "polish_objectives": [q[0] for q in polished],
        "n_near_best": int(sum(q[0] <= best_fun * (1 + 1e-6) + 1e-15 for q in polished)),
        "scan_best": float(np.min(scan)),
        "projected_best": float(projected[0][0]),
        "bounds": {p: (float(lo[j]), float(hi[j])) for j, p in enumerate(form.nonlinear)},
        "wall_s": time.perf_counter() - t0,
        "sampler": sampler,
        "delta": delta,
    }
    message = msg if not at_bounds else f"{msg}; exponents on their bound: {', '.join(at_bounds)}"
    return FitResult(
        law=form.name, params=params, huber=m["huber"], r2=m["r2"], rmse=m["rmse"], mape=m["mape"],
        success=ok or n_conv > 0, message=message, n_points=int(n), n_starts=int(len(starts)),
        n_converged=int(n_conv), at_bounds=at_bounds, diagnostics=diag, form=form,
    )  # fmt: skip

"""The fitter: log-Huber optimum (Besiroglu et al. 2024) at variable-projection speed.

Objective (Hoffmann et al. 2022, sec. D.2; Besiroglu et al. 2024): `sum_i Huber_delta(log L_hat(x_i) - log L_i)`,
delta = 1e-3, positive constants in log space, L-BFGS-B from many starts, keep the best.

Every law here is linear in its constants once its nonlinear parameters are fixed (`cptlaw.laws.forms`), so
`fit` runs three steps, each a separately callable function on a `FitProblem`:
1. `scan`: for each start of the nonlinear parameters (Latin hypercube or grid over the bounds), solve the
   constants by (non-negative) least squares on relative residuals (`(Phi c - L)/L ~ log residual`) and score
   the result on the log-Huber objective. Cheap: one small NNLS per start.
2. `project`: from the best `n_refine` starts, L-BFGS-B over the nonlinear parameters only, constants solved
   exactly at every step (variable projection: Golub & Pereyra 1973), with the exact gradient of the projected
   objective (the envelope theorem: one Jacobian per step in place of a projection per parameter).
3. `polish`: from the best `n_polish` distinct projected solutions, L-BFGS-B over all parameters
   (log-constants + nonlinear ones) on the log-Huber objective itself, with an exact gradient (the form's
   `design_jac`). The best polished point is the result; `FitResult.success` is its optimizer's verdict.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

import numpy as np
from scipy.optimize import lsq_linear, minimize, nnls
from scipy.stats import qmc

from cptlaw.errors import BadInput
from cptlaw.laws.forms import LawForm, LawInputError, get_law
from cptlaw.laws.metrics import all_metrics, huber

LOGC_BOUNDS = (-90.0, 90.0)  # log of the constants: wide enough for B*r^eta/D^beta with D ~ 1e12, beta ~ 3
_BAD = 1e10  # objective value returned where the law is not finite or not positive


class FitError(BadInput, RuntimeError):
    """Every start failed; `diagnostics` says what happened."""

    def __init__(self, message: str, diagnostics: dict[str, Any]):
        super().__init__(message)
        self.diagnostics = diagnostics


@dataclass
class FitResult:
    """A fitted law. `params` uses the paper's names (plus fixed ones such as epsilon).

    `success` is scipy's meaning for the returned optimum: its polish run converged, and the data identify
    every parameter (else `message` says which are not); `n_converged` counts all converged polish runs.
    """

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
    at_bounds: list[str] = field(default_factory=list)  # nonlinear parameters that ended on their bound
    diagnostics: dict[str, Any] = field(default_factory=dict)
    form: LawForm | None = field(default=None, repr=False, compare=False)

    def predict(self, X: Mapping[str, Any]) -> np.ndarray:
        assert self.form is not None
        return self.form.predict(self.params, X)

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if k != "form"}
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


def starts(lo: np.ndarray, hi: np.ndarray, n: int, sampler: str = "lhs", seed: int = 0) -> np.ndarray:
    """(n, p) starting points of the nonlinear parameters in the box [lo, hi]: Latin hypercube or grid."""
    p = lo.size
    if sampler == "grid":
        m = max(2, int(round(n ** (1.0 / p)))) if p else 1
        axes = [lo[j] + (np.arange(m) + 0.5) / m * (hi[j] - lo[j]) for j in range(p)]
        return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, p)
    if sampler == "lhs":
        if p == 0:
            return np.zeros((1, 0))
        return qmc.scale(qmc.LatinHypercube(d=p, seed=seed).random(n), lo, hi) if p > 1 else (
            lo + (np.arange(n) + 0.5) / n * (hi - lo)
        ).reshape(-1, 1)  # fmt: skip
    raise LawInputError(f"`sampler` must be 'lhs' or 'grid', got {sampler!r}")


class Candidate(NamedTuple):
    """A point of the search: objective (log-Huber), nonlinear parameters, constants, optimizer verdict."""

    objective: float
    theta: np.ndarray
    c: np.ndarray
    converged: bool
    message: str = ""


class FitProblem:
    """One form on one data set: projection, objective and gradient, and the parameter boxes.

    `weights` (one per point, e.g. bootstrap multiplicities) multiply each point's Huber loss and squared
    residual; `None` is weight 1 everywhere.
    """

    def __init__(
        self, form: LawForm, feats: dict[str, np.ndarray], y: np.ndarray, delta: float = 1e-3,
        box: Mapping[str, tuple[float, float]] | None = None, weights: np.ndarray | None = None,
    ):  # fmt: skip
        self.form, self.feats, self.y, self.delta = form, feats, y, delta
        self.ly = np.log(y)
        self.k, self.p = len(form.linear), len(form.nonlinear)
        box = dict(zip(form.nonlinear, form.data_bounds(feats), strict=True)) | dict(box or {})
        self.lo = np.array([box[p][0] for p in form.nonlinear], dtype=float)
        self.hi = np.array([box[p][1] for p in form.nonlinear], dtype=float)
        cb = form.constant_bounds()
        self.clo = np.array([b[0] for b in cb], dtype=float)
        self.chi = np.array([b[1] for b in cb], dtype=float)
        self.logc = (self.clo == 0) & (self.chi == np.inf)  # non-negative constants: polished in log space
        self.weights = weights
        self._sw = None if weights is None else np.sqrt(weights)

    def with_weights(self, weights: np.ndarray | None) -> FitProblem:
        """The same problem (features computed once) with other point weights."""
        new = object.__new__(FitProblem)
        new.__dict__ |= self.__dict__
        new.weights, new._sw = weights, None if weights is None else np.sqrt(weights)
        return new

    def design(self, theta: np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"):
            return np.real(self.form.design(self.feats, theta))

    def offset(self, theta: np.ndarray) -> np.ndarray | None:
        with np.errstate(all="ignore"):
            return self.form.offset(self.feats, theta)

    def predict(self, c: np.ndarray, theta: np.ndarray) -> np.ndarray:
        pred = self.design(theta) @ c
        off = self.offset(theta)
        return pred if off is None else pred + off

    def project(self, theta: np.ndarray) -> tuple[np.ndarray, float]:
        """Constants by bounded least squares on relative residuals; (c, weighted sum of squares)."""
        c, value, _ = self._solve(self.design(theta), self.offset(theta))
        return c, value

    def project_grad(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        """The projected sum of squares and its exact gradient in theta. The constants are optimal for every
        theta, so (envelope theorem) the gradient is the residual's at fixed constants: one Jacobian in place
        of a projection per parameter."""
        with np.errstate(all="ignore"):
            phi, jac = self.form.design_jac(self.feats, theta)
            oj = self.form.offset_jac(self.feats, theta)
        c, value, res = self._solve(np.real(phi), None if oj is None else oj[0])
        if not (np.isfinite(value) and np.all(np.isfinite(jac))):
            return _BAD, np.zeros_like(theta)
        dres = (np.einsum("nkp,k->np", jac, c) + (0.0 if oj is None else oj[1])) / self.y[:, None]
        if self._sw is not None:
            dres = dres * self._sw[:, None]
        return value, 2.0 * res @ dres

    def _solve(self, phi: np.ndarray, off: np.ndarray | None) -> tuple[np.ndarray, float, np.ndarray | None]:
        """(c, weighted sum of squares, weighted relative residuals) for a design and offset."""
        if not np.all(np.isfinite(phi)) or (off is not None and not np.all(np.isfinite(off))):
            return np.full(self.k, np.nan), np.inf, None
        w = phi / self.y[:, None]
        t = np.ones_like(self.y) if off is None else 1.0 - off / self.y
        if self._sw is not None:
            w, t = w * self._sw[:, None], t * self._sw
        if self.k == 0:
            return np.zeros(0), float(t @ t), -t
        scale = np.sqrt(np.sum(w**2, axis=0))
        ok = scale > 0
        c = np.zeros(self.k)
        try:
            cs, rnorm = _bounded_lstsq(
                w[:, ok] / scale[ok], t, self.clo[ok] * scale[ok], self.chi[ok] * scale[ok]
            )
        except (RuntimeError, ValueError, np.linalg.LinAlgError):
            return np.full(self.k, np.nan), np.inf, None
        c[ok] = cs / scale[ok]
        return c, float(rnorm**2), w @ c - t

    def huber_of(self, c: np.ndarray, theta: np.ndarray) -> float:
        pred = self.predict(c, theta)
        if not np.all(np.isfinite(pred)) or np.any(pred <= 0):
            return np.inf
        h = huber(np.log(pred) - self.ly, self.delta)
        return float(np.sum(h if self.weights is None else h * self.weights))

    def constants(self, z: np.ndarray) -> np.ndarray:
        return np.where(self.logc, np.exp(np.where(self.logc, z[: self.k], 0.0)), z[: self.k])

    def z_of(self, c: np.ndarray, theta: np.ndarray) -> np.ndarray:
        """Polish coordinates: log of the non-negative constants (floored at a tiny share of the loss)."""
        floor = 1e-8 * np.mean(self.y) / np.maximum(np.mean(np.abs(self.design(theta)), axis=0), 1e-300)
        zc = np.where(self.logc, np.log(np.maximum(c, floor)), np.clip(c, self.clo, self.chi))
        zc = np.where(self.logc, np.clip(zc, *LOGC_BOUNDS), zc)
        return np.concatenate([zc, theta])

    def z_bounds(self) -> list[tuple[float | None, float | None]]:
        cb = [
            LOGC_BOUNDS if lg else (None if lo == -np.inf else lo, None if hi == np.inf else hi)
            for lg, lo, hi in zip(self.logc, self.clo, self.chi, strict=True)
        ]
        return cb + list(zip(self.lo, self.hi, strict=True))

    def full(self, z: np.ndarray) -> tuple[float, np.ndarray]:
        """log-Huber objective and exact gradient in the polish coordinates (log c, theta)."""
        k = self.k
        c, th = self.constants(z), z[k:]
        with np.errstate(all="ignore"):
            phi, jac = self.form.design_jac(self.feats, th)
            pred = phi @ c
            oj = self.form.offset_jac(self.feats, th)
            if oj is not None:
                pred = pred + oj[0]
        if not (np.all(np.isfinite(pred)) and np.all(pred > 0) and np.all(np.isfinite(jac))):
            return _BAD, np.zeros_like(z)
        res = np.log(pred) - self.ly
        w = np.clip(res, -self.delta, self.delta) / pred
        h = huber(res, self.delta)
        if self.weights is not None:
            w, h = w * self.weights, h * self.weights
        g_c = np.where(self.logc, (phi * c).T @ w, phi.T @ w)
        g_th = np.einsum("nkp,k,n->p", jac, c, w)
        if oj is not None:
            g_th = g_th + oj[1].T @ w
        return float(np.sum(h)), np.concatenate([g_c, g_th])


def _bounded_lstsq(a: np.ndarray, b: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, float]:
    """min ||a x - b|| with lo <= x <= hi: NNLS for [0, inf) boxes, lstsq when unbounded, BVLS otherwise."""
    if np.all(lo == 0) and np.all(hi == np.inf):
        return nnls(a, b)
    if np.all(lo == -np.inf) and np.all(hi == np.inf):
        x = np.linalg.lstsq(a, b, rcond=None)[0]
    else:
        x = lsq_linear(a, b, bounds=(lo, hi), method="bvls").x
    return x, float(np.linalg.norm(a @ x - b))


# ------------------------------------------------------------------------------------------ the 3 steps
def scan(problem: FitProblem, thetas: np.ndarray) -> np.ndarray:
    """Step 1: log-Huber objective of each start with its constants projected (inf where not finite)."""
    return np.array([problem.huber_of(problem.project(t)[0], t) for t in thetas])


def project(
    problem: FitProblem, thetas: np.ndarray, scores: np.ndarray, *, n_refine: int = 12,
    minimizer: Callable[..., Any] = minimize,
) -> list[Candidate]:  # fmt: skip
    """Step 2: variable projection from the `n_refine` best-scoring starts; candidates sorted by objective.

    Each start yields its projected optimum and itself (projection minimises squares, not the Huber
    objective, so the scan point stays a candidate).
    """
    zb = list(zip(problem.lo, problem.hi, strict=True))
    order = np.argsort(scores)[: min(n_refine, int(np.isfinite(scores).sum()))]
    out = []
    for i in order:
        if problem.p:
            res = minimizer(problem.project_grad, thetas[i], jac=True, method="L-BFGS-B", bounds=zb)
            th, ok = np.asarray(res.x, dtype=float), bool(res.success)
        else:
            th, ok = thetas[i], True
        c, _ = problem.project(th)
        out.append(Candidate(problem.huber_of(c, th), th, c, ok))
        c0, _ = problem.project(thetas[i])
        out.append(Candidate(float(scores[i]), thetas[i], c0, True))
    out = [q for q in out if np.isfinite(q.objective)]
    out.sort(key=lambda q: q.objective)
    return out


def distinct(problem: FitProblem, candidates: list[Candidate], n: int) -> list[Candidate]:
    """The first `n` candidates whose nonlinear parameters differ by > 0.1% of the box from every earlier one."""
    span = problem.hi - problem.lo + 1e-12
    chosen: list[Candidate] = []
    for q in candidates:
        if all(np.max(np.abs(q.theta - o.theta) / span, initial=0.0) > 1e-3 for o in chosen) or not chosen:
            chosen.append(q)
        if len(chosen) == n:
            break
    return chosen


def polish(
    problem: FitProblem, candidates: list[Candidate], *, maxiter: int = 1500,
    minimizer: Callable[..., Any] = minimize,
) -> list[Candidate]:  # fmt: skip
    """Step 3: L-BFGS-B over all parameters on the log-Huber objective from each candidate; sorted by objective."""
    out = []
    bounds = problem.z_bounds()
    for cand in candidates:
        z0 = problem.z_of(cand.c, cand.theta)
        # scale the objective to ~1 at the start: L-BFGS-B's ftol is relative to max(|f|, 1)
        scale = 1.0 / max(problem.full(z0)[0], 1e-300)

        def scaled(z: np.ndarray, s: float = scale) -> tuple[float, np.ndarray]:
            f, g = problem.full(z)
            return f * s, g * s

        res = minimizer(
            scaled, z0, jac=True, method="L-BFGS-B", bounds=bounds,
            options={"maxiter": maxiter, "ftol": 1e-13, "gtol": 1e-9},
        )  # fmt: skip
        z = np.asarray(res.x, dtype=float)
        fun = float(res.fun) / scale
        out.append(Candidate(fun, z[problem.k :], problem.constants(z), bool(res.success), str(res.message)))
    out = [q for q in out if np.isfinite(q.objective) and q.objective < _BAD]
    out.sort(key=lambda q: q.objective)
    return out


def unidentified(problem: FitProblem, c: np.ndarray, theta: np.ndarray, rtol: float = 1e-9) -> list[str]:
    """Parameters the data cannot tell apart at the optimum: the near-null space of the relative Jacobian.

    Columns are d log L_hat / d(parameter), normalised; a singular value below `rtol` (exact collinearity up
    to rounding, e.g. a term in N when every point has one N) marks the parameters that dominate its right
    singular vector. A nonlinear parameter whose term has constant 0 has no effect; it is not reported here
    (it ends on a bound or is reported by `at_bounds`).
    """
    with np.errstate(all="ignore"):
        phi, jac = problem.form.design_jac(problem.feats, theta)
        oj = problem.form.offset_jac(problem.feats, theta)
        pred = phi @ c + (0.0 if oj is None else oj[0])
        cols = np.concatenate([phi, np.einsum("nkp,k->np", jac, c) + (0.0 if oj is None else oj[1])], axis=1)
    cols = cols / pred[:, None]
    if problem.weights is not None:
        keep = problem.weights > 0
        cols = cols[keep]
    if not np.all(np.isfinite(cols)):
        return []
    names = list(problem.form.linear) + list(problem.form.nonlinear)
    norm = np.linalg.norm(cols, axis=0)
    live = norm > 1e-12 * max(float(norm.max(initial=0.0)), 1e-300)
    if live.sum() < 1:
        return []
    a = cols[:, live] / norm[live]
    if a.shape[0] < a.shape[1]:
        return [n for n, ok in zip(names, live, strict=True) if ok]
    _, s, vt = np.linalg.svd(a, full_matrices=False)
    bad = np.flatnonzero(s < rtol * s[0])
    if bad.size == 0:
        return []
    weight = np.max(np.abs(vt[bad]), axis=0)
    live_names = [n for n, ok in zip(names, live, strict=True) if ok]
    return [n for n, w in zip(live_names, weight, strict=True) if w > 0.1]


# ------------------------------------------------------------------------------------------- the entry
def check_fit_args(
    form: LawForm, n: int, y: np.ndarray, n_starts: int, bounds: Mapping[str, tuple[float, float]] | None
) -> None:
    """One-line `LawInputError` for inputs no fit can use."""
    if y.size != n:
        raise LawInputError(f"`loss` has {y.size} values but the columns have {n} rows")
    if n < form.n_params:
        raise LawInputError(
            f"`loss` has {n} points, fewer than the {form.n_params} parameters of `{form.name}`"
        )
    if n_starts < 1:
        raise LawInputError(f"`n_starts` must be >= 1, got {n_starts}")
    unknown = sorted(set(bounds or {}) - set(form.nonlinear))
    if unknown:
        raise LawInputError(
            f"`bounds` names {', '.join(unknown)}, not a nonlinear parameter of `{form.name}` "
            f"({', '.join(form.nonlinear) or 'none'})"
        )


def settle_best(
    prob: FitProblem, polished: list[Candidate], *, maxiter: int, minimizer: Callable[..., Any]
) -> tuple[Candidate, int]:
    """(the returned optimum, number of converged polish runs): the best run continued while it stopped on
    its iteration limit; a line-search stop where converged runs agree to 1e-9 counts as converged."""
    n_conv = sum(q.converged for q in polished)
    best = polished[0]
    for _ in range(3):  # the best run stopped on its iteration limit: continue it from where it stopped
        if best.converged or "ITERATIONS" not in best.message.upper():
            break
        more = polish(prob, [best], maxiter=maxiter, minimizer=minimizer)
        if not more or more[0].objective > best.objective:
            break
        best = more[0]
        n_conv += best.converged
    agree = [q for q in polished if q.converged and q.objective <= best.objective * (1 + 1e-9) + 1e-15]
    if not best.converged and "ABNORMAL" in best.message.upper() and agree:
        # the line search found no further decrease in floating point, where a converged run ended too
        msg = (
            f"{best.message.strip()} (line search at the optimum: {len(agree)} converged runs agree to 1e-9)"
        )
        best = best._replace(converged=True, message=msg)
    return best, n_conv


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
    """Fit `form` to points `X` (column -> array) with observed losses `y`: scan, project, polish.

    `init`: a previous fit's params, added as an extra start (used by the bootstrap); `bounds`: per-parameter
    overrides of the form's box for the nonlinear parameters; `maxiter`: per polish run; `minimizer`: a
    `scipy.optimize.minimize`-compatible function.
    """
    t0 = time.perf_counter()
    form = get_law(form) if isinstance(form, str) else form
    feats = form.features(X)
    y = check_loss(y)
    check_fit_args(form, form.n_rows(feats), y, n_starts, bounds)
    prob = FitProblem(form, feats, y, delta, bounds)
    lo, hi = prob.lo, prob.hi

    thetas = starts(lo, hi, n_starts, sampler, seed)
    if init is not None:
        thetas = np.vstack([np.clip([init[p] for p in form.nonlinear], lo, hi), thetas])
    scores = scan(prob, thetas)
    diag: dict[str, Any] = {
        "n_scan_finite": int(np.isfinite(scores).sum()),
        "t_scan_s": time.perf_counter() - t0,
    }
    if not np.any(np.isfinite(scores)):
        raise FitError(f"`{form.name}`: every one of {len(thetas)} starts gave a non-finite fit", diag)
    projected = project(prob, thetas, scores, n_refine=n_refine, minimizer=minimizer)
    diag["t_project_s"] = time.perf_counter() - t0
    polished = polish(prob, distinct(prob, projected, n_polish), maxiter=maxiter, minimizer=minimizer)
    diag["t_polish_s"] = time.perf_counter() - t0
    if not polished:
        raise FitError(f"`{form.name}`: every polish run failed (non-finite objective)", diag)
    best, n_conv = settle_best(prob, polished, maxiter=maxiter, minimizer=minimizer)
    diag |= {
        "polish_objectives": [q.objective for q in polished],
        "n_near_best": int(sum(q.objective <= polished[0].objective * (1 + 1e-6) + 1e-15 for q in polished)),
        "scan_best": float(np.min(scores)),
        "projected_best": float(projected[0].objective),
        "bounds": {p: (float(lo[j]), float(hi[j])) for j, p in enumerate(form.nonlinear)},
        "wall_s": time.perf_counter() - t0,
        "sampler": sampler,
        "delta": delta,
    }
    return _result(prob, best, n_starts=len(thetas), n_converged=n_conv, diag=diag)


def _result(prob: FitProblem, best: Candidate, *, n_starts: int, n_converged: int, diag: dict) -> FitResult:
    """The typed result of an optimum: paper-named params, metrics, bounds hit, identification check."""
    form, lo, hi = prob.form, prob.lo, prob.hi
    c, th = best.c, best.theta
    params = dict(zip(form.linear, map(float, c), strict=True)) | dict(
        zip(form.nonlinear, map(float, th), strict=True)
    )
    params |= dict(form.fixed)
    pred = prob.predict(c, th)
    keep = np.ones(prob.y.size, bool) if prob.weights is None else prob.weights > 0
    m = all_metrics(pred[keep], prob.y[keep], prob.delta)
    m["huber"] = prob.huber_of(c, th)  # the (weighted) objective itself
    tol = 1e-6 * (hi - lo)
    at_bounds = [
        p for j, p in enumerate(form.nonlinear) if th[j] <= lo[j] + tol[j] or th[j] >= hi[j] - tol[j]
    ]
    message = (
        best.message if not at_bounds else f"{best.message}; exponents on their bound: {', '.join(at_bounds)}"
    )
    nid = unidentified(prob, c, th)
    diag["unidentified"] = nid
    if nid:
        message = (
            f"parameters not identified by the data: {', '.join(nid)} (the points do not vary the inputs of "
            f"their terms independently; add points or fix some with `fixed`); {message}"
        )
    return FitResult(
        law=form.name, params=params, huber=m["huber"], r2=m["r2"], rmse=m["rmse"], mape=m["mape"],
        success=best.converged and not nid, message=message, n_points=int(keep.sum()),
        n_starts=int(n_starts), n_converged=int(n_converged), at_bounds=at_bounds, diagnostics=diag, form=form,
    )  # fmt: skip


def polish_lm(problem: FitProblem, cand: Candidate, *, maxiter: int = 100, ftol: float = 1e-10) -> Candidate:
    """Step 3 from a warm start: damped Gauss-Newton (Levenberg-Marquardt, IRLS weights) on the same log-Huber
    objective, in the same coordinates and box as `polish`.

    Near an optimum Newton steps with the Huber loss's own curvature (only points in its quadratic zone
    have any) converge in a few steps where L-BFGS-B needs hundreds of line searches; `ftol` is relative
    to the objective (1e-10 moves the parameters by ~1e-8). Used by the bootstrap's per-resample refit.
    """
    zb = problem.z_bounds()
    lo = np.array([-np.inf if b[0] is None else b[0] for b in zb])
    hi = np.array([np.inf if b[1] is None else b[1] for b in zb])
    w_pts = np.ones_like(problem.y) if problem.weights is None else problem.weights
    k, delta = problem.k, problem.delta

    def state(z: np.ndarray) -> tuple[float, np.ndarray, np.ndarray] | None:
        c, th = problem.constants(z), z[k:]
        with np.errstate(all="ignore"):
            phi, jac = problem.form.design_jac(problem.feats, th)
            pred = phi @ c
            oj = problem.form.offset_jac(problem.feats, th)
            J = np.concatenate([np.where(problem.logc, phi * c, phi), np.einsum("nkp,k->np", jac, c)], axis=1)
            if oj is not None:
                pred = pred + oj[0]
                J[:, k:] += oj[1]
            J = J / pred[:, None]
            r = np.log(pred) - problem.ly
        if not (np.all(np.isfinite(r)) and np.all(np.isfinite(J))):
            return None
        return float(np.sum(w_pts * huber(r, delta))), r, J

    z = np.clip(problem.z_of(cand.c, cand.theta), lo, hi)
    cur = state(z)
    if cur is None:
        return cand._replace(objective=np.inf, converged=False, message="not finite at the warm start")
    lam, msg, ok = 1e-3, "iteration limit reached", False
    for _ in range(maxiter):
        f, r, J = cur
        g = J.T @ (w_pts * np.clip(r, -delta, delta))
        # Gauss-Newton curvature of the Huber loss: only points in its quadratic zone have any
        H = (J * (w_pts * (np.abs(r) <= delta))[:, None]).T @ J
        d = np.diag(H).copy()
        d[d <= 0] = 1e-12
        for _ in range(30):
            try:
                step = np.linalg.solve(H + lam * np.diag(d), -g)
            except np.linalg.LinAlgError:
                lam *= 10
                continue
            zn = np.clip(z + step, lo, hi)
            new = state(zn)
            if new is not None and new[0] <= f:
                break
            lam *= 4.0
        else:
            msg, ok = "no decrease: at the optimum to rounding", True
            break
        z, cur = zn, new
        lam = max(lam / 3.0, 1e-12)
        if f - new[0] <= ftol * max(f, 1e-300):
            msg, ok = "converged: relative reduction of the objective <= ftol", True
            break
    return Candidate(cur[0], z[k:], problem.constants(z), ok, msg)


def refit(problem: FitProblem, base: Mapping[str, float], *, maxiter: int = 100) -> FitResult:
    """Project + polish only, warm-started from `base` (a nearby optimum): the bootstrap's per-resample fit.

    Skips the scan and the exponent search: a resample's optimum sits near the full-data one. Project
    re-solves the constants at `base`'s nonlinear parameters; the better of that and `base` itself is
    polished by `polish_lm`.
    """
    form = problem.form
    th0 = np.clip([base[p] for p in form.nonlinear], problem.lo, problem.hi).astype(float)
    c_base = np.array([base[p] for p in form.linear], dtype=float)
    c_proj, _ = problem.project(th0)
    cands = [
        Candidate(problem.huber_of(c, th0), th0, c, True) for c in (c_proj, c_base) if np.all(np.isfinite(c))
    ]
    cands = sorted((q for q in cands if np.isfinite(q.objective)), key=lambda q: q.objective)
    if not cands:
        raise FitError(f"`{form.name}`: the warm start is not finite on this resample", {})
    best = polish_lm(problem, cands[0], maxiter=maxiter)
    if not np.isfinite(best.objective):
        raise FitError(f"`{form.name}`: the warm-started polish failed on this resample", {})
    return _result(problem, best, n_starts=1, n_converged=int(best.converged), diag={})

"""Decisions from fitted laws: the three D-CPT usages (Que et al. 2024, sec. 4) and the perplexity optimum.

Every function takes a law form and a params dict (as in `FitResult.params`), so the decisions can be
bootstrapped by calling them on each bootstrap fit.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq, minimize, minimize_scalar

from cptlaw.laws.forms import LawForm, LawInputError

Params = Mapping[str, float]


def _law_at(form: LawForm, params: Params, **cols: float | np.ndarray) -> np.ndarray:
    n = max(np.size(v) for v in cols.values())
    return form.predict(
        params, {k: np.broadcast_to(np.asarray(v, dtype=float), (n,)) for k, v in cols.items()}
    )


@dataclass
class ShareDecision:
    """Usage 1: the largest domain share whose general-loss rise stays within `tolerance`."""

    r_domain: float
    general_loss: float  # Lg(N, D, 1 - r_domain)
    general_loss_base: float  # Lg0
    rise: float  # (Lg - Lg0) / Lg0 at r_domain
    tolerance: float
    status: (
        str  # "binding" | "unconstrained" (r_d = 1 is within tolerance) | "infeasible" (even r_d = 0 is not)
    )


def max_domain_share(
    general_form: LawForm, general_params: Params, n_params: float, n_tokens: float, lg0: float,
    tolerance: float = 0.03, grid: int = 2001,
) -> ShareDecision:  # fmt: skip
    """Usage 1 (trade-off): largest r_d in [0, 1] with `(Lg(N, D, 1 - r_d) - Lg0) / Lg0 <= T`.

    The general law is fitted with r = general share, so it is evaluated at r = 1 - r_d. The feasible set is
    scanned on a grid (the law need not be monotone in r) and its upper edge refined by root finding.
    """
    if lg0 <= 0:
        raise LawInputError(f"`lg0` must be > 0, got {lg0}")
    rd = np.linspace(0.0, 1.0, grid)
    rise = (_law_at(general_form, general_params, N=n_params, D=n_tokens, r=1.0 - rd) - lg0) / lg0
    ok = rise <= tolerance
    if not ok.any():
        i = 0
        return ShareDecision(0.0, float(lg0 * (1 + rise[i])), lg0, float(rise[i]), tolerance, "infeasible")
    if ok.all():
        return ShareDecision(
            1.0, float(lg0 * (1 + rise[-1])), lg0, float(rise[-1]), tolerance, "unconstrained"
        )
    i = int(np.flatnonzero(ok)[-1])
    if i + 1 < grid and not ok[i + 1]:

        def g(x: float) -> float:
            lg = _law_at(general_form, general_params, N=n_params, D=n_tokens, r=1.0 - x)[0]
            return (lg - lg0) / lg0 - tolerance

        r_star = brentq(g, rd[i], rd[i + 1], xtol=1e-12)
    else:
        r_star = rd[i]
    lg = float(_law_at(general_form, general_params, N=n_params, D=n_tokens, r=1.0 - r_star)[0])
    return ShareDecision(float(r_star), lg, lg0, (lg - lg0) / lg0, tolerance, "binding")


@dataclass
class LimitedDataDecision:
    """Usage 2: the domain share minimising domain loss when only `domain_tokens` domain tokens exist."""

    r_domain: float
    total_tokens: float  # D = D_d / r_d
    domain_loss: float
    on_boundary: bool  # optimum at r_d = 1 (or at the lower search limit): no interior optimum


def optimal_share_limited_data(
    domain_form: LawForm, domain_params: Params, n_params: float, domain_tokens: float, r_min: float = 1e-3
) -> LimitedDataDecision:
    """Usage 2: `r_d* = argmin_r Ld(N, D_d / r, r)` over r in [r_min, 1] (grid in log r, then Brent)."""
    if domain_tokens <= 0:
        raise LawInputError(f"`domain_tokens` must be > 0, got {domain_tokens}")

    def ld(r: np.ndarray) -> np.ndarray:
        r = np.atleast_1d(r)
        return _law_at(domain_form, domain_params, N=n_params, D=domain_tokens / r, r=r)

    grid = np.geomspace(r_min, 1.0, 400)
    vals = ld(grid)
    i = int(np.argmin(vals))
    lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, grid.size - 1)]
    res = minimize_scalar(
        lambda x: float(ld(x)[0]), bounds=(lo, hi), method="bounded", options={"xatol": 1e-10}
    )
    r = float(res.x) if res.fun <= vals[i] else float(grid[i])
    on_b = bool(r >= 1.0 - 1e-6 or r <= r_min * (1 + 1e-6))
    return LimitedDataDecision(r, domain_tokens / r, float(ld(r)[0]), on_b)


@dataclass
class ComputeAllocation:
    """Usage 3: compute-optimal model size and tokens at fixed compute C = 6 N D and fixed share r."""

    n_params: float
    n_tokens: float
    loss: float
    compute: float


def compute_optimal(form: LawForm, params: Params, compute: float, r: float) -> ComputeAllocation:
    """Usage 3, closed form as in Chinchilla (Hoffmann et al. 2022, eq. 4) at fixed r.

    At fixed r the D-CPT law is `E' + A/N^alpha + B'/D^beta` with `B' = B r^eta` (B for forms without the
    coupling). Minimising under C = 6ND: `N* = G (C/6)^(beta/(alpha+beta))`, `D* = G^-1 (C/6)^(alpha/(alpha+beta))`,
    `G = (alpha A / (beta B'))^(1/(alpha+beta))`.
    """
    if compute <= 0:
        raise LawInputError(f"`compute` must be > 0, got {compute}")
    if not 0 < r <= 1:
        raise LawInputError(f"`r` must be in (0, 1], got {r}")
    a, b, A = params["alpha"], params["beta"], params["A"]
    b_eff = params["B"] * (r ** params["eta"] if "eta" in params else 1.0)
    if "F" in params and "kappa" in params:
        raise LawInputError("`form` with a forgetting term has no closed-form compute optimum; use `dcpt`")
    if min(a, b, A, b_eff) <= 0:
        raise LawInputError("`params` need alpha, beta, A and B*r^eta > 0 for a compute optimum")
    g = (a * A / (b * b_eff)) ** (1.0 / (a + b))
    n = g * (compute / 6.0) ** (b / (a + b))
    d = (compute / 6.0) ** (a / (a + b)) / g
    cols = {"N": n, "D": d, "r": r}
    if "k1" in form.columns:
        raise LawInputError("`form` dcpt_cross needs k1, k2: use the domain's fitted dcpt law")
    loss = float(_law_at(form, params, **{c: cols[c] for c in form.columns})[0])
    return ComputeAllocation(float(n), float(d), loss, float(compute))


@dataclass
class PplOptimum:
    """Minimum of the perplexity-aware law over a (mu, sigma) box at fixed D."""

    mu: float
    sigma: float
    loss: float
    interior: bool  # False: the minimum sits on the box boundary (the law has no interior optimum there)
    on_boundary: list[str]  # e.g. ["mu_min", "sigma_max"]
    box: tuple[tuple[float, float], tuple[float, float]]


def ppl_optimum(
    form: LawForm, params: Params, n_tokens: float, mu_box: tuple[float, float], sigma_box: tuple[float, float],
    grid: int = 101,
) -> PplOptimum:  # fmt: skip
    """(mu_hat, sigma_hat) = argmin L(mu, sigma, D) inside the observed landscape box (Liu et al. 2025).

    Grid search, then L-BFGS-B from the best grid point; reports which box edges the optimum touches.
    """
    (m0, m1), (s0, s1) = mu_box, sigma_box
    if not (0 < m0 < m1 and 0 < s0 < s1):
        raise LawInputError(
            f"`mu_box`/`sigma_box` must be positive increasing pairs, got {mu_box}, {sigma_box}"
        )
    mg, sg = np.meshgrid(np.linspace(m0, m1, grid), np.linspace(s0, s1, grid), indexing="ij")

    def law(mu: np.ndarray, sig: np.ndarray) -> np.ndarray:
        return _law_at(form, params, mu=mu, sigma=sig, D=n_tokens)

    vals = law(mg.ravel(), sg.ravel())
    i = int(np.nanargmin(vals))
    x0 = np.array([mg.ravel()[i], sg.ravel()[i]])
    sc = np.array([m1 - m0, s1 - s0])
    res = minimize(
        lambda u: float(law(np.array([m0 + u[0] * sc[0]]), np.array([s0 + u[1] * sc[1]]))[0]),
        (x0 - [m0, s0]) / sc, method="L-BFGS-B", bounds=[(0, 1), (0, 1)],
    )  # fmt: skip
    u = res.x if res.fun <= vals[i] else (x0 - [m0, s0]) / sc
    mu, sig = float(m0 + u[0] * sc[0]), float(s0 + u[1] * sc[1])
    tol = 1e-6
    edges = [
        name for name, hit in
        (("mu_min", u[0] <= tol), ("mu_max", u[0] >= 1 - tol), ("sigma_min", u[1] <= tol), ("sigma_max", u[1] >= 1 - tol))
        if hit
    ]  # fmt: skip
    loss = float(law(np.array([mu]), np.array([sig]))[0])
    return PplOptimum(mu, sig, loss, not edges, edges, ((m0, m1), (s0, s1)))

"""Scaling-law forms: Chinchilla, D-CPT (and variants), cross-domain D-CPT, perplexity-aware law.

Every form here is *linear in its constants once its exponents are fixed*:
`L(x) = sum_j c_j * phi_j(x; theta)` with constants `c_j >= 0` (E, A, B, C, F, D_c) and exponents `theta`.
That is what makes variable projection possible (see `cptlaw.laws.fit`): a form only has to say which
columns `phi_j` it has. `design(feats, theta)` returns the (n, k) matrix of those columns and must be
written with operations that also work for complex `theta`: a form's `design_jac` defaults to the complex-step
derivative of `design`; the built-in forms give theirs in closed form (each column is a power: column x log).

Inputs are mappings of column name → 1-D array (a dict or a pandas DataFrame both work):
`N` non-embedding parameters, `D` training tokens, `r` mixture share in [0, 1], `k1`/`k2` a domain's
initial loss and probe loss-decline rate, `mu`/`sigma` perplexity landscape statistics of the subset.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cptlaw.errors import BadInput

Features = dict[str, np.ndarray]


class LawInputError(BadInput, ValueError):
    """Bad inputs to a law or the fitter; the message names the offending argument."""


def _powcol(logx: np.ndarray, zero: np.ndarray | None, expo: Any) -> np.ndarray:
    """x**expo from log(x), with x == 0 (marked in `zero`) mapped to 0 (positive exponents only)."""
    col = np.exp(expo * logx)
    return col if zero is None else np.where(zero, 0.0, col)


def _power_jac(phi: np.ndarray, theta: np.ndarray, slopes: list[tuple[int, int, np.ndarray]]) -> np.ndarray:
    """d design / d theta of power-law columns: column j depends on theta_i as exp(slope * theta_i), so its
    derivative is slope * column; `slopes` lists (column j, parameter i, slope per row)."""
    jac = np.zeros((*phi.shape, len(theta)))
    for j, i, slope in slopes:
        jac[:, j, i] = slope * phi[:, j]
    return jac


def _column(X: Mapping[str, Any], name: str, law: str, columns: tuple[str, ...]) -> np.ndarray:
    if name not in X:
        raise LawInputError(f"missing column `{name}` (law `{law}` needs {', '.join(columns)})")
    arr = np.asarray(X[name], dtype=float).reshape(-1)
    if not np.all(np.isfinite(arr)):
        bad = int(np.flatnonzero(~np.isfinite(arr))[0])
        raise LawInputError(f"`{name}` must be finite, got {arr[bad]} at row {bad}")
    return arr


@dataclass(frozen=True)
class LawForm:
    """A parametric law `L(x) = sum_j c_j phi_j(x; theta)`; subclasses define `features` and `design`."""

    name: str
    equation: str
    columns: tuple[str, ...]  # required input columns
    linear: tuple[str, ...]  # paper names of the non-negative constants (one per design column)
    nonlinear: tuple[str, ...]  # paper names of the exponents / shape parameters
    bounds: tuple[tuple[float, float], ...]  # box for the nonlinear parameters (the start grid spans it)
    positive: tuple[str, ...] = ()  # columns that must be > 0
    unit_interval: tuple[str, ...] = ()  # columns that must lie in [0, 1]
    fixed: dict[str, float] = field(default_factory=dict)  # reported constants (e.g. epsilon, w1)

    @property
    def param_names(self) -> tuple[str, ...]:
        return self.linear + self.nonlinear

    @property
    def n_params(self) -> int:
        return len(self.linear) + len(self.nonlinear)

    def validate(self, X: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Checked float arrays of the required columns (one-line errors that name the column)."""
        cols = {c: _column(X, c, self.name, self.columns) for c in self.columns}
        n = {len(v) for v in cols.values()}
        if len(n) > 1:
            raise LawInputError(f"columns of law `{self.name}` have different lengths: {sorted(n)}")
        for c in self.positive:
            if np.any(cols[c] <= 0):
                bad = int(np.flatnonzero(cols[c] <= 0)[0])
                raise LawInputError(f"`{c}` must be > 0, got {cols[c][bad]} at row {bad}")
        for c in self.unit_interval:
            out = (cols[c] < 0) | (cols[c] > 1)
            if np.any(out):
                bad = int(np.flatnonzero(out)[0])
                raise LawInputError(f"`{c}` must be in [0, 1], got {cols[c][bad]} at row {bad}")
        return cols

    def data_bounds(self, feats: Features) -> tuple[tuple[float, float], ...]:
        """Box for the nonlinear parameters given the data (default: the form's fixed `bounds`)."""
        return self.bounds

    def constant_bounds(self) -> tuple[tuple[float, float], ...]:
        """Box of the linear constants: [0, inf) each for the built-in forms (the papers' positive constants)."""
        return tuple((0.0, np.inf) for _ in self.linear)

    def features(self, X: Mapping[str, Any]) -> Features:
        """Validated, precomputed (log) features; computed once per fit."""
        raise NotImplementedError

    def n_rows(self, feats: Features) -> int:
        return int(next(iter(v for v in feats.values() if np.ndim(v) == 1)).shape[0])

    def design(self, feats: Features, theta: np.ndarray) -> np.ndarray:
        """(n, k) design matrix, one column per linear constant, for exponents `theta`."""
        raise NotImplementedError

    def design_jac(self, feats: Features, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(design (n, k), d design / d theta (n, k, p)); exact by complex step (Squire & Trapp 1998)."""
        h = 1e-30
        p = len(theta)
        jac = np.empty((self.n_rows(feats), len(self.linear), p))
        phi = None
        for j in range(p):
            tc = np.asarray(theta, dtype=float).astype(complex)
            tc[j] += 1j * h
            d = self.design(feats, tc)
            jac[:, :, j] = d.imag / h
            if phi is None:
                phi = d.real
        if phi is None:
            phi = np.real(self.design(feats, theta))
        return phi, jac

    def offset(self, feats: Features, theta: np.ndarray) -> np.ndarray | None:
        """Part of the law without a linear constant (None: there is none; every built-in form)."""
        return None

    def offset_jac(self, feats: Features, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """(offset (n,), d offset / d theta (n, p)), or None."""
        return None

    def predict(self, params: Mapping[str, float], X: Mapping[str, Any]) -> np.ndarray:
        """Predicted loss for a dict of paper-named parameters (as in `FitResult.params`)."""
        feats = self.features(X)
        theta = np.array([params[p] for p in self.nonlinear], dtype=float)
        c = np.array([params[p] for p in self.linear], dtype=float)
        pred = self.design(feats, theta) @ c
        off = self.offset(feats, theta)
        return pred if off is None else pred + off


# ----------------------------------------------------------------------------------------------- forms
@dataclass(frozen=True)
class Chinchilla(LawForm):
    """Chinchilla law (Hoffmann et al. 2022, eq. 2): `L(N, D) = E + A/N^alpha + B/D^beta`."""

    def features(self, X):
        c = self.validate(X)
        return {"lnN": np.log(c["N"]), "lnD": np.log(c["D"])}

    def design(self, f, th):
        a, b = th[0], th[1]
        one = np.ones_like(f["lnN"]) * (a * 0 + 1)
        return np.stack([one, _powcol(f["lnN"], None, -a), _powcol(f["lnD"], None, -b)], axis=1)

    def design_jac(self, f, th):
        phi = self.design(f, th)
        return phi, _power_jac(phi, th, [(1, 0, -f["lnN"]), (2, 1, -f["lnD"])])


@dataclass(frozen=True)
class DCPT(LawForm):
    """D-CPT Law (Que et al. 2024, eq. 6): `L(N, D, r) = E + A/N^alpha + B*r^eta/D^beta + C/(r+eps)^gamma`.

    Fitted separately for the domain loss (r = domain share) and the general loss (r = general share).
    Variants (for comparison, not the paper's choice): `coupling=False` drops the D x r coupling
    (`B/D^beta`, the paper's L1-like form); `forgetting=True` adds `F*((1-r)*D)^kappa`, a forgetting term
    that grows with the other-corpus tokens seen (at r_g = 0 the published general-loss
    form is constant in D, but measured general loss keeps rising).
    """

    epsilon: float = 1e-3
    coupling: bool = True
    forgetting: bool = False

    def features(self, X):
        c = self.validate(X)
        r = c["r"]
        f = {"lnN": np.log(c["N"]), "lnD": np.log(c["D"]), "lnr_eps": np.log(r + self.epsilon)}
        f["r0"] = r <= 0
        f["lnr"] = np.log(np.where(f["r0"], 1.0, r))
        if self.forgetting:
            other = (1.0 - r) * c["D"]
            f["o0"] = other <= 0
            f["lnother"] = np.log(np.where(f["o0"], 1.0, other))
        return f

    def design(self, f, th):
        a, b = th[0], th[1]
        i = 2
        if self.coupling:
            eta = th[i]
            i += 1
            bcol = _powcol(f["lnr"], f["r0"], eta) * _powcol(f["lnD"], None, -b)
        else:
            bcol = _powcol(f["lnD"], None, -b)
        gamma = th[i]
        i += 1
        one = np.ones_like(f["lnN"]) * (a * 0 + 1)
        cols = [one, _powcol(f["lnN"], None, -a), bcol, _powcol(f["lnr_eps"], None, -gamma)]
        if self.forgetting:
            cols.append(_powcol(f["lnother"], f["o0"], th[i]))
        return np.stack(cols, axis=1)

    def design_jac(self, f, th):
        phi = self.design(f, th)  # rows with r = 0 (or no other-corpus tokens) have a zero column: slope 0
        slopes = [(1, 0, -f["lnN"]), (2, 1, -f["lnD"])] + ([(2, 2, f["lnr"])] if self.coupling else [])
        i = 3 if self.coupling else 2
        slopes.append((3, i, -f["lnr_eps"]))
        if self.forgetting:
            slopes.append((4, i + 1, f["lnother"]))
        return phi, _power_jac(phi, th, slopes)


@dataclass(frozen=True)
class DCPTCross(LawForm):
    """Cross-domain D-CPT Law (Que et al. 2024, eq. 8):
    `L(N, D, r, K) = E + A/N^alpha + B*r^eta/D^beta + C/(r+eps)^gamma + F/K^mu`, `K = w1/k1 + w2*k2`.

    k1 = the base model's initial validation loss on the domain, k2 = its loss-decline rate in a short probe.
    `F/K^mu` is invariant to scaling (w1, w2, F) together, so w1 is fixed to 1 and reported as such.
    """

    epsilon: float = 1e-3
    use_k2: bool = True  # False: K = 1/k1 alone (no probe run needed), an alternative for comparison

    def features(self, X):
        c = self.validate(X)
        r = c["r"]
        r0 = r <= 0
        return {
            "lnN": np.log(c["N"]),
            "lnD": np.log(c["D"]),
            "lnr_eps": np.log(r + self.epsilon),
            "r0": r0,
            "lnr": np.log(np.where(r0, 1.0, r)),
            "k1": c["k1"],
            "k2": c["k2"] if self.use_k2 else np.zeros_like(c["k1"]),
        }

    def design(self, f, th):
        a, b, eta, gamma, mu, lnw2 = th if self.use_k2 else (*th, -np.inf)
        k = 1.0 / f["k1"] + np.exp(lnw2) * f["k2"]
        one = np.ones_like(f["lnN"]) * (a * 0 + 1)
        return np.stack(
            [
                one,
                _powcol(f["lnN"], None, -a),
                _powcol(f["lnr"], f["r0"], eta) * _powcol(f["lnD"], None, -b),
                _powcol(f["lnr_eps"], None, -gamma),
                np.exp(-mu * np.log(k)),
            ],
            axis=1,
        )

    def design_jac(self, f, th):
        phi = self.design(f, th)
        mu = th[4]
        slopes = [(1, 0, -f["lnN"]), (2, 1, -f["lnD"]), (2, 2, f["lnr"]), (3, 3, -f["lnr_eps"])]
        k = 1.0 / f["k1"] + (np.exp(th[5]) * f["k2"] if self.use_k2 else 0.0)
        slopes.append((4, 4, -np.log(k)))
        if self.use_k2:  # d K^-mu / d log w2 = -mu K^-mu * w2 k2 / K
            slopes.append((4, 5, -mu * np.exp(th[5]) * f["k2"] / k))
        return phi, _power_jac(phi, th, slopes)


@dataclass(frozen=True)
class PerplexityLaw(LawForm):
    """Perplexity-aware data scaling law (Liu et al. 2025, arXiv 2512.21515; reconstructed form):
    `L(mu, sigma, D) = E + D_c / (mu^(alpha0 + alpha1*sigma) * sigma^(beta0 + beta1*mu) * D^alpha_D)`.

    mu, sigma: mean and standard deviation of the subset's per-sample perplexity under the frozen base model
    (or of log-perplexity: a data choice, the form is the same). `interaction=False` drops alpha1, beta1.
    """

    interaction: bool = True

    def data_bounds(self, feats):
        """Interaction slopes scaled so that alpha1*sigma and beta1*mu stay within +-3 on the data."""
        if not self.interaction:
            return self.bounds
        s1, s2 = 3.0 / float(np.max(feats["sigma"])), 3.0 / float(np.max(feats["mu"]))
        b = list(self.bounds)
        b[1], b[3] = (-s1, s1), (-s2, s2)
        return tuple(b)

    def features(self, X):
        c = self.validate(X)
        return {"mu": c["mu"], "sigma": c["sigma"], "lnmu": np.log(c["mu"]), "lnsig": np.log(c["sigma"])} | {
            "lnD": np.log(c["D"])
        }

    def design(self, f, th):
        if self.interaction:
            a0, a1, b0, b1, ad = th
            expo = (a0 + a1 * f["sigma"]) * f["lnmu"] + (b0 + b1 * f["mu"]) * f["lnsig"] + ad * f["lnD"]
        else:
            a0, b0, ad = th
            expo = a0 * f["lnmu"] + b0 * f["lnsig"] + ad * f["lnD"]
        one = np.ones_like(f["lnD"]) * (ad * 0 + 1)
        return np.stack([one, np.exp(-expo)], axis=1)

    def design_jac(self, f, th):
        phi = self.design(f, th)  # d exp(-expo) = -exp(-expo) d expo
        if self.interaction:
            dexpo = [f["lnmu"], f["sigma"] * f["lnmu"], f["lnsig"], f["mu"] * f["lnsig"], f["lnD"]]
        else:
            dexpo = [f["lnmu"], f["lnsig"], f["lnD"]]
        return phi, _power_jac(phi, th, [(1, i, -d) for i, d in enumerate(dexpo)])


# -------------------------------------------------------------------------------------------- registry
_EXP = (0.0, 3.0)  # power-law exponents: non-negative, the data cannot support more than ~3


def _chinchilla(**_: Any) -> LawForm:
    return Chinchilla(
        "chinchilla", "L = E + A/N^alpha + B/D^beta", ("N", "D"), ("E", "A", "B"), ("alpha", "beta"),
        (_EXP, _EXP), positive=("N", "D"),
    )  # fmt: skip


def _dcpt(epsilon: float = 1e-3, coupling: bool = True, forgetting: bool = False, **_: Any) -> LawForm:
    nonlin = (
        ("alpha", "beta") + (("eta",) if coupling else ()) + ("gamma",) + (("kappa",) if forgetting else ())
    )
    lin = ("E", "A", "B", "C") + (("F",) if forgetting else ())
    eq = "L = E + A/N^alpha + " + ("B*r^eta/D^beta" if coupling else "B/D^beta") + " + C/(r+eps)^gamma"
    name = "dcpt" if coupling else "dcpt_nocoupling"
    if forgetting:
        eq += " + F*((1-r)*D)^kappa"
        name = "dcpt_forgetting" if coupling else "dcpt_nocoupling_forgetting"
    bounds = tuple([_EXP] * len(nonlin))
    if forgetting:  # kappa: growth of forgetting with other-corpus tokens, slow (< 1)
        bounds = bounds[:-1] + ((0.0, 1.5),)
    return DCPT(
        name, eq, ("N", "D", "r"), lin, nonlin, bounds, positive=("N", "D"), unit_interval=("r",),
        fixed={"epsilon": epsilon}, epsilon=epsilon, coupling=coupling, forgetting=forgetting,
    )  # fmt: skip


def _dcpt_cross(epsilon: float = 1e-3, use_k2: bool = True, **_: Any) -> LawForm:
    if not use_k2:  # K = 1/k1: the domain's initial loss alone
        return DCPTCross(
            "dcpt_cross_k1", "L = E + A/N^alpha + B*r^eta/D^beta + C/(r+eps)^gamma + F/K^mu, K = 1/k1",
            ("N", "D", "r", "k1"), ("E", "A", "B", "C", "F"), ("alpha", "beta", "eta", "gamma", "mu"),
            (_EXP, _EXP, _EXP, _EXP, (0.0, 5.0)), positive=("N", "D", "k1"), unit_interval=("r",),
            fixed={"epsilon": epsilon, "w1": 1.0, "w2": 0.0}, epsilon=epsilon, use_k2=False,
        )  # fmt: skip
    return DCPTCross(
        "dcpt_cross", "L = E + A/N^alpha + B*r^eta/D^beta + C/(r+eps)^gamma + F/K^mu, K = w1/k1 + w2*k2",
        ("N", "D", "r", "k1", "k2"), ("E", "A", "B", "C", "F"),
        ("alpha", "beta", "eta", "gamma", "mu", "log_w2"),
        (_EXP, _EXP, _EXP, _EXP, (0.0, 5.0), (-7.0, 7.0)), positive=("N", "D", "k1", "k2"),
        unit_interval=("r",), fixed={"epsilon": epsilon, "w1": 1.0}, epsilon=epsilon,
    )  # fmt: skip


def _ppl(interaction: bool = True, **_: Any) -> LawForm:
    if interaction:
        nonlin = ("alpha0", "alpha1", "beta0", "beta1", "alpha_D")
        bounds = ((-3.0, 3.0), (-1.0, 1.0), (-3.0, 3.0), (-1.0, 1.0), (0.0, 3.0))
        eq = "L = E + D_c/(mu^(alpha0+alpha1*sigma) * sigma^(beta0+beta1*mu) * D^alpha_D)"
    else:
        nonlin, bounds = ("alpha0", "beta0", "alpha_D"), ((-3.0, 3.0), (-3.0, 3.0), (0.0, 3.0))
        eq = "L = E + D_c/(mu^alpha0 * sigma^beta0 * D^alpha_D)"
    return PerplexityLaw(
        "ppl" if interaction else "ppl_nointeraction", eq, ("mu", "sigma", "D"), ("E", "D_c"), nonlin,
        bounds, positive=("mu", "sigma", "D"), interaction=interaction,
    )  # fmt: skip


REGISTRY: dict[str, Callable[..., LawForm]] = {
    "chinchilla": _chinchilla,
    "dcpt": _dcpt,
    "dcpt_nocoupling": lambda **kw: _dcpt(**(kw | {"coupling": False, "forgetting": False})),
    "dcpt_forgetting": lambda **kw: _dcpt(**(kw | {"coupling": True, "forgetting": True})),
    "dcpt_cross": _dcpt_cross,
    "dcpt_cross_k1": lambda **kw: _dcpt_cross(**(kw | {"use_k2": False})),
    "ppl": _ppl,
    "ppl_nointeraction": lambda **kw: _ppl(**(kw | {"interaction": False})),
}


def get_law(name: str, **options: Any) -> LawForm:
    """A law form by registry name; options: `epsilon` (D-CPT forms)."""
    if name not in REGISTRY:
        raise LawInputError(f"`law` must be one of {', '.join(REGISTRY)}, got {name!r}")
    return REGISTRY[name](**options)

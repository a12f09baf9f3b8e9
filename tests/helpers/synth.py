"""Synthetic points from known law parameters (shared by the laws tests, the fit-stage tests and fit_runs.py)."""

from __future__ import annotations

import numpy as np

from cptlaw.laws import get_law

TRUTH = {
    "chinchilla": dict(E=1.7, A=100.0, B=60.0, alpha=0.34, beta=0.3),
    "dcpt": dict(E=1.5, A=30.0, B=200.0, C=0.05, alpha=0.3, beta=0.35, eta=0.4, gamma=0.3),
    "dcpt_nocoupling": dict(E=1.5, A=30.0, B=150.0, C=0.05, alpha=0.3, beta=0.35, gamma=0.3),
    "dcpt_forgetting": dict(E=1.5, A=30.0, B=200.0, C=0.05, F=0.01, alpha=0.3, beta=0.35, eta=0.4, gamma=0.3,
                            kappa=0.3),
    "dcpt_cross": dict(E=1.5, A=30.0, B=200.0, C=0.05, F=0.5, alpha=0.3, beta=0.35, eta=0.4, gamma=0.3, mu=1.0,
                       log_w2=float(np.log(2.0))),
    "ppl": dict(E=1.8, D_c=40.0, alpha0=-0.2, alpha1=0.004, beta0=0.1, beta1=-0.002, alpha_D=0.3),
    "ppl_nointeraction": dict(E=1.8, D_c=40.0, alpha0=-0.2, beta0=0.1, alpha_D=0.3),
}  # fmt: skip
K1 = np.array([4.0, 5.0, 6.0, 3.5, 4.5])
K2 = np.array([0.5, 0.3, 0.8, 0.2, 0.6])


def _grid(**axes: np.ndarray) -> dict[str, np.ndarray]:
    mesh = np.meshgrid(*axes.values(), indexing="ij")
    return {k: v.ravel().astype(float) for k, v in zip(axes, mesh, strict=True)}


def inputs(law: str) -> dict[str, np.ndarray]:
    """A design like a small CPT sweep: runs (N x r [x domain]) each evaluated at several D."""
    nd = np.geomspace(2e4, 6e5, 7)
    if law == "chinchilla":
        return _grid(N=np.geomspace(1e5, 3e6, 6), D=nd)
    if law.startswith("ppl"):
        return _grid(mu=np.array([10.0, 20, 40, 80]), sigma=np.array([5.0, 15, 40]), D=nd[:5])
    if law == "dcpt_cross":
        x = _grid(
            N=np.array([1e5, 3e5, 8e5]), D=nd[:6], r=np.array([0.0, 0.2, 0.5, 0.8, 1.0]), domain=np.arange(4)
        )
        x["k1"], x["k2"] = K1[x["domain"].astype(int)], K2[x["domain"].astype(int)]
        return x
    return _grid(N=np.array([1e5, 3e5, 8e5]), D=nd, r=np.array([0.0, 0.1, 0.2, 0.33, 0.5, 0.67, 0.8, 1.0]))


def points(law: str, noise: float = 0.002, seed: int = 0) -> tuple[dict[str, np.ndarray], np.ndarray, dict]:
    """(X, y, true params): multiplicative log-normal noise of `noise` (0.2% ~ the fit residuals of a real law)."""
    form = get_law(law)
    x = inputs(law)
    truth = TRUTH[law] | form.fixed
    y = form.predict(truth, x) * np.exp(np.random.default_rng(seed).normal(0.0, noise, x["D"].size))
    return x, y, truth


def run_ids(x: dict[str, np.ndarray]) -> np.ndarray:
    """One label per run: the non-D coordinates of a point."""
    keys = [k for k in x if k not in ("D", "k1", "k2")]
    return np.array(["|".join(f"{x[k][i]:g}" for k in keys) for i in range(x["D"].size)])

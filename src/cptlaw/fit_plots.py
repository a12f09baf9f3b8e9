"""Plots of the fit stage (matplotlib, Agg): observed vs predicted, loss vs r / D, the (mu, sigma) surface."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def observed_vs_predicted(obs: np.ndarray, pred: np.ndarray, title: str, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.scatter(obs, pred, s=10, alpha=0.7)
    lo, hi = float(min(obs.min(), pred.min())), float(max(obs.max(), pred.max()))
    ax.plot([lo, hi], [lo, hi], "k--", lw=1)
    ax.set(xlabel="observed loss (nats)", ylabel="predicted loss (nats)", title=title)
    return save_figure(fig, path)


def loss_vs_r(x: dict[str, np.ndarray], y: np.ndarray, predict: Any, title: str, path: Path) -> Path:
    """Loss against mixture share, one line per (N, D) at the largest few D per N; law curves dashed."""
    fig, ax = plt.subplots(figsize=(6, 4.5))
    rr = np.linspace(0.0, 1.0, 101)
    for n in np.unique(x["N"]):
        ds = np.unique(x["D"][x["N"] == n])
        for d in ds[np.unique(np.linspace(0, ds.size - 1, min(3, ds.size)).round().astype(int))]:
            m = (x["N"] == n) & (x["D"] == d)
            line = ax.plot(x["r"][m], y[m], "o", ms=4, label=f"N={n:.2g} D={d:.2g}")[0]
            ax.plot(
                rr, predict(np.full_like(rr, n), np.full_like(rr, d), rr), "--", color=line.get_color(), lw=1
            )
    ax.set(xlabel="mixture share r", ylabel="loss (nats)", title=title)
    ax.legend(fontsize=6)
    return save_figure(fig, path)


def loss_vs_d(
    d: np.ndarray, y: np.ndarray, group: np.ndarray, pred: np.ndarray, title: str, path: Path
) -> Path:
    """Loss against tokens per group (regime or N x r), with the law's predictions dashed."""
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for g in np.unique(group):
        m = group == g
        o = np.argsort(d[m])
        line = ax.plot(d[m][o], y[m][o], "o", ms=3, label=str(g))[0]
        ax.plot(d[m][o], pred[m][o], "--", color=line.get_color(), lw=1)
    ax.set(xscale="log", xlabel="tokens D", ylabel="loss (nats)", title=title)
    ax.legend(fontsize=6)
    return save_figure(fig, path)


def ppl_surface(
    mu: np.ndarray, sig: np.ndarray, loss: np.ndarray, opt: Any, obs: tuple, title: str, path: Path
) -> Path:
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    cs = ax.contourf(mu, sig, loss, levels=20, cmap="viridis")
    fig.colorbar(cs, ax=ax, label="predicted loss (nats)")
    ax.scatter(*obs, c="w", s=12, edgecolors="k", label="regimes")
    ax.plot(opt.mu, opt.sigma, "r*", ms=14, label="optimum" + ("" if opt.interior else " (on boundary)"))
    ax.set(xlabel="mu", ylabel="sigma", title=title)
    ax.legend(fontsize=7)
    return save_figure(fig, path)


def save_figure(fig: Any, path: Path) -> Path:
    """Write a figure (creating its folder) and free it: plots go where DVC and MLflow pick them up."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path

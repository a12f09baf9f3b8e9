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
    ax.plot(
        opt["mu"], opt["sigma"], "r*", ms=14, label="optimum" + ("" if opt["interior"] else " (on boundary)")
    )
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


def target_plots(t: Any, main: Any, out_dir: Path, optimum: dict[str, Any] | None = None) -> list[Path]:
    """The plots of one fitted target (`cptlaw.fitting.Target`) under its primary law `main`."""
    name, X, y = t.name, t.X, t.y
    pred = main.predict(X)
    paths = [
        observed_vs_predicted(
            y, pred, f"{name}: {main.law} (R2 {main.r2:.3f})", out_dir / f"{name}_obs_pred.png"
        )
    ]
    if t.kind in ("domain", "general"):
        share = "domain share" if t.kind == "domain" else "general share"

        def law(n: Any, d: Any, r: Any) -> np.ndarray:
            return main.predict({"N": n, "D": d, "r": r})

        paths.append(loss_vs_r(X, y, law, f"{name}: loss vs {share}", out_dir / f"{name}_loss_vs_r.png"))
        grp = np.array([f"N={n:.2g} r={r:.2f}" for n, r in zip(X["N"], X["r"], strict=True)])
        paths.append(loss_vs_d(X["D"], y, grp, pred, f"{name}: loss vs D", out_dir / f"{name}_loss_vs_d.png"))
    if t.kind == "ppl":
        paths.append(loss_vs_d(X["D"], y, X["regime"], pred, f"{name}: loss vs D per regime",
                               out_dir / f"{name}_loss_vs_d.png"))  # fmt: skip
    if t.kind == "ppl" and optimum is not None:
        (mu_lo, mu_hi), (s_lo, s_hi), d_max = optimum["box"][0], optimum["box"][1], optimum["n_tokens"]
        mg, sg = np.meshgrid(np.linspace(mu_lo, mu_hi, 60), np.linspace(s_lo, s_hi, 60))
        surf = main.predict({"mu": mg.ravel(), "sigma": sg.ravel(), "D": np.full(mg.size, d_max)}).reshape(
            mg.shape
        )
        paths.append(ppl_surface(mg, sg, surf, optimum, (X["mu"], X["sigma"]), f"{name}: L(mu, sigma, D={d_max:.2g})",
                                 out_dir / f"{name}_surface.png"))  # fmt: skip
    return paths

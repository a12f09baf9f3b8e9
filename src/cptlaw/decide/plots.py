"""Plots of the decision stages (matplotlib, Agg): the three usages, the cross-domain table, DOS landscapes,
validation curves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from cptlaw.fit_plots import save_figure  # noqa: E402


def _band(ax: Any, ci: list[float] | None, color: str = "C1") -> None:
    if ci and all(np.isfinite(ci)):
        ax.axvspan(ci[0], ci[1], color=color, alpha=0.15, label="bootstrap CI")


def usages(domain: str, rec: dict[str, Any], lg: Any, ld: Any, s: Any, path: Path) -> Path:
    """Three panels: general-loss rise vs r_d (usage 1), Ld(D_d/r, r) vs r (usage 2), iso-compute loss vs N (3)."""
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    rd = np.linspace(0, 1, 201)
    u1 = rec["tradeoff"]
    ax = axes[0]
    if np.isfinite(s.lg0):
        lgv = lg.form.predict(
            lg.params, {"N": np.full_like(rd, s.n_params), "D": np.full_like(rd, s.n_tokens), "r": 1 - rd}
        )
        ax.plot(rd, (lgv - s.lg0) / s.lg0 * 100, label=f"{lg.name}")
        ax.axhline(u1["tolerance"] * 100, color="k", ls="--", lw=1, label="tolerance T")
        if u1.get("r_domain") is not None:
            ax.axvline(u1["r_domain"], color="C1", label=f"r_d* = {u1['r_domain']:.2f}")
        _band(ax, u1.get("ci"))
    ax.set(xlabel="domain share r_d", ylabel="general-loss rise over base (%)",
           title=f"{domain}: usage 1 trade-off (N={s.n_params:.2g}, D={s.n_tokens:.2g})")  # fmt: skip
    ax.legend(fontsize=7)
    u2 = rec["limited_data"]
    ax = axes[1]
    rr = np.geomspace(1e-2, 1, 200)
    ldv = ld.form.predict(ld.params, {"N": np.full_like(rr, s.n_params), "D": s.domain_tokens / rr, "r": rr})
    ax.plot(rr, ldv, label=ld.name)
    ax.axvline(
        u2["r_domain"],
        color="C1",
        label=f"r_d* = {u2['r_domain']:.2f}" + (" (boundary)" if u2["on_boundary"] else ""),
    )
    _band(ax, u2.get("ci"))
    ax.set(xscale="log", xlabel="domain share r_d (D = D_d / r_d)", ylabel="predicted domain loss (nats)",
           title=f"usage 2: D_d = {s.domain_tokens:.2g} domain tokens")  # fmt: skip
    ax.legend(fontsize=7)
    u3 = rec["compute"]
    ax = axes[2]
    if "n_params" in u3:
        nn = np.geomspace(u3["n_params"] / 30, u3["n_params"] * 30, 200)
        lv = ld.form.predict(
            ld.params, {"N": nn, "D": s.compute / (6 * nn), "r": np.full_like(nn, u3["r_domain"])}
        )
        ax.plot(nn, lv, label=f"C = {s.compute:.2g} FLOPs")
        ax.axvline(u3["n_params"], color="C1", label=f"N* = {u3['n_params']:.2g}")
        _band(ax, (u3.get("ci") or {}).get("n_params"))
    ax.set(xscale="log", xlabel="non-embedding params N (D = C / 6N)", ylabel="predicted domain loss (nats)",
           title=f"usage 3: compute allocation at r_d = {u3['r_domain']:.2f}")  # fmt: skip
    ax.legend(fontsize=7)
    return save_figure(fig, path)


def cross_domain(rows: list[dict[str, Any]], path: Path) -> Path:
    ok = [r for r in rows if r.get("mape") is not None]
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    names = [str(r["held_out"]) for r in ok]
    ax.bar(names, [100 * r["mape"] for r in ok], color="C0")
    ax.set(ylabel="held-out MAPE (%)", title="cross-domain law: leave-one-domain-out")
    return save_figure(fig, path)


def landscape(values: np.ndarray, chosen: np.ndarray, mu_hat: float, sigma_hat: float, stat: str, title: str,
              path: Path) -> Path:  # fmt: skip
    """Pool histogram of the landscape statistic with the DOS selection overlaid and the target marked."""
    fig, ax = plt.subplots(figsize=(6, 4))
    bins = np.histogram_bin_edges(values, bins=50)
    ax.hist(values, bins=bins, alpha=0.4, label="pool", density=True)
    ax.hist(values[chosen], bins=bins, alpha=0.6, label="DOS selection", density=True)
    ax.axvline(mu_hat, color="r", label=f"target mu = {mu_hat:.3g}")
    ax.axvspan(
        mu_hat - sigma_hat, mu_hat + sigma_hat, color="r", alpha=0.08, label=f"target sigma = {sigma_hat:.3g}"
    )
    ax.set(xlabel=stat, ylabel="density", title=title)
    ax.legend(fontsize=7)
    return save_figure(fig, path)


def validation_curves(curves: dict[str, tuple[np.ndarray, np.ndarray]], title: str, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for name, (d, loss) in curves.items():
        ax.plot(d, loss, "o-", ms=3, label=name, lw=2 if name == "dos" else 1)
    ax.set(xscale="log", xlabel="tokens D", ylabel="domain test loss (nats)", title=title)
    ax.legend(fontsize=7)
    return save_figure(fig, path)

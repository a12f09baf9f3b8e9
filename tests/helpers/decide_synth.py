"""Synthetic fit-stage outputs for the decision tests: a fitting table from known laws and a `fits.json` in
the fit stage's format (laws fitted here with `cptlaw.laws.fit`, so the structure is the real one)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from cptlaw.laws import fit, get_law

STEPS = np.array([20000, 40000, 80000, 160000, 320000], float)
DOMAIN = dict(E=1.5, A=30.0, B=200.0, C=0.5, alpha=0.3, beta=0.35, eta=0.4, gamma=0.3, epsilon=1e-3)
GENERAL = dict(E=2.0, A=30.0, B=20.0, C=0.3, alpha=0.3, beta=0.3, eta=0.2, gamma=0.25, epsilon=1e-3)
# the ppl form with interactions that put its minimum inside the regime box (mu ~ 40, sigma ~ 8 at any D)
PPL = dict(E=1.8, D_c=40.0, alpha0=1.0, alpha1=-0.02, beta0=1.0, beta1=-0.01, alpha_D=0.3)


def fit_table(domains=("medical", "code"), ratios=(0.0, 0.2, 0.5, 0.8, 1.0), sizes=(1e5, 3e5, 8e5),
              ppl_grid=((10, 5), (10, 25), (35, 5), (35, 15), (35, 25), (60, 5), (60, 25)), seed=0) -> pd.DataFrame:  # fmt: skip
    rng = np.random.default_rng(seed)
    dom, gen, ppl = get_law("dcpt"), get_law("dcpt"), get_law("ppl")
    rows = []
    for k, d in enumerate(domains):
        for n in sizes:
            for r in ratios:
                x = {"N": np.full(5, n), "D": STEPS, "r": np.full(5, r)}
                ld = dom.predict(DOMAIN, x) + 0.2 * k
                lg = gen.predict(GENERAL, x | {"r": 1 - x["r"]})
                lg0 = gen.predict(GENERAL, {"N": [n], "D": [STEPS[-1]], "r": [1.0]})[0]  # rise 0 at r_d = 0
                noise = np.exp(rng.normal(0, 0.002, (2, 5)))
                rid = f"{d}-{n:g}-{r:g}"
                for i in range(5):
                    rows.append({"run_id": rid, "domain": d, "N": n, "D": STEPS[i], "r": r, "regime": "random",
                                 "k1": 4.0 + k, "k2": 0.3 + 0.2 * k, "seed": 0, "domain_loss": ld[i] * noise[0, i],
                                 "general_loss": lg[i] * noise[1, i], "general_loss_base": lg0, "study": "dcpt"})  # fmt: skip
    for mu, sigma in ppl_grid:
        x = {"mu": np.full(5, float(mu)), "sigma": np.full(5, float(sigma)), "D": STEPS}
        ld = ppl.predict(PPL, x) * np.exp(rng.normal(0, 0.002, 5))
        for i in range(5):
            rows.append({"run_id": f"ppl-{mu}-{sigma}", "domain": domains[0], "N": 1e5, "D": STEPS[i], "r": 1.0,
                         "regime": f"m{mu}s{sigma}", "mu": float(mu), "sigma": float(sigma),
                         "log_mu": np.log(mu), "log_sigma": sigma / mu, "seed": 0, "domain_loss": ld[i],
                         "general_loss": 3.0, "general_loss_base": 3.0, "study": "ppl_regimes"})  # fmt: skip
    return pd.DataFrame(rows)


def fits_json(table: pd.DataFrame, ppl_law: str = "ppl", exact_ppl: bool = True) -> dict:
    """fits.json as the fit stage writes it (targets → fits / skipped / comparison)."""
    kw = {"n_starts": 16, "n_refine": 4, "n_polish": 2}
    targets = {}
    dc = table[table["study"] == "dcpt"]
    for d in dc["domain"].unique():
        t = dc[dc["domain"] == d]
        for kind, r in (("domain", t["r"]), ("general", 1 - t["r"])):
            X = {"N": t["N"].to_numpy(), "D": t["D"].to_numpy(), "r": r.to_numpy()}
            res = fit("dcpt", X, t[f"{kind}_loss"].to_numpy(), **kw)
            targets[f"{kind}_{d}"] = {"kind": kind, "domain": d, "n_points": len(t), "n_runs": t["run_id"].nunique(),
                                      "fits": {"dcpt": res.to_dict()}, "skipped": {}}  # fmt: skip
    targets["cross"] = {
        "kind": "cross",
        "domain": None,
        "fits": {},
        "skipped": {"dcpt_cross": "fewer than 3 domains"},
    }
    pp = table[table["study"] == "ppl_regimes"]
    for d in pp["domain"].unique():
        t = pp[pp["domain"] == d]
        X = {"mu": t["mu"].to_numpy(), "sigma": t["sigma"].to_numpy(), "D": t["D"].to_numpy()}
        rec = fit(ppl_law, X, t["domain_loss"].to_numpy(), **kw).to_dict()
        if exact_ppl:  # the true law: the tests check that its known optimum is found and selected
            rec["params"] = dict(PPL)
        targets[f"ppl_{d}"] = {"kind": "ppl", "domain": d, "fits": {ppl_law: rec}, "skipped": {}}
    return {"targets": targets, "n_source_runs": int(table["run_id"].nunique()), "config_hash": "synthetic"}


def write(reports: Path, table: pd.DataFrame, fits: dict) -> None:
    reports.mkdir(parents=True, exist_ok=True)
    table.to_csv(reports / "fit_table.csv", index=False)
    (reports / "fits.json").write_text(json.dumps(fits, indent=1, default=float))

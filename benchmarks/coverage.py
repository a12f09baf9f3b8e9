"""Coverage of prediction intervals on held-out extrapolations of real runs: nominal vs realised, with width.

    OPENBLAS_NUM_THREADS=1 CPTLAW_REFDATA=/path/to/reference python benchmarks/coverage.py [--n-boot 300]

Splits (the rows beyond a cut are predicted from the rows below it):
- Hoffmann et al.'s points (Besiroglu et al.'s extraction; 5 highest-loss points dropped): the 17 largest N;
- Ye et al.'s CPT runs (Pythia-70M, Pile : Python): checkpoints 8k-10k from steps <= 7k, domain and general
  loss, D-CPT at one size as a formula `E + B*r**eta/D**beta + C/(r+eps)**gamma`;
- the OLMo ladder's final C4 losses: the 3B runs from the 190M-1.3B runs.
Methods: `param` = percentile interval of the bootstrap predictions (parameter noise only); `boot+noise` =
the same widened by the point noise (normal quantile); `calibrated` = `cptlaw.laws.intervals` (a drift with
extrapolation distance, split conformal over extrapolation folds of the training rows that reach as far as
the split's target: `horizon`). Width: mean (hi - lo) / pred.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from _common import cpu_model, refdata_path  # noqa: E402

from cptlaw.laws import bootstrap, calibrate, fit, formula_law, noise_scale, prediction_intervals  # noqa: E402
from cptlaw.laws.intervals import extrapolation_distance  # noqa: E402

LEVELS = (0.5, 0.8, 0.9, 0.95)


def splits():
    """(name, form, X_train, y_train, X_test, y_test, along, groups) for each available data set."""
    p = refdata_path("data/chinchilla_hoffmann2022_fig4.csv")
    if p is not None:
        d = pd.read_csv(p).sort_values("loss").iloc[:-5].sort_values("N")
        tr, te = d.iloc[:-17], d.iloc[-17:]
        cols = lambda g: {"N": g["N"].to_numpy(float), "D": g["D"].to_numpy(float)}  # noqa: E731
        yield (
            "Hoffmann, 17 largest N",
            "chinchilla",
            cols(tr),
            tr["loss"].to_numpy(),
            cols(te),
            te["loss"].to_numpy(),
            "N",
            None,
        )
    p = refdata_path("realdata/dml_ye2024_cpt_pythia70m_pile_python.csv")
    if p is not None:
        d = pd.read_csv(p)
        d = d[d["run_id"] != "base"]
        law = formula_law("E + B*r**eta/D**beta + C/(r+eps)**gamma", fixed={"eps": 1e-3})
        for target, share in (
            ("loss_domain_python", "r_domain_python"),
            ("loss_general_pile_weighted", "r_general_pile"),
        ):
            tr, te = d[d["cpt_step"] <= 7000], d[d["cpt_step"] > 7000]
            cols = lambda g, s=share: {"r": g[s].to_numpy(float), "D": g["cpt_step"].to_numpy(float)}  # noqa: E731
            name = f"Ye CPT {'domain' if 'domain' in target else 'general'}, steps 8-10k"
            yield (
                name,
                law,
                cols(tr),
                tr[target].to_numpy(),
                cols(te),
                te[target].to_numpy(),
                "D",
                tr["run_id"].to_numpy(str),
            )
    p = refdata_path("realdata/olmo_ladder_bhagia2024_curves.csv")
    if p is not None:
        o = pd.read_csv(p)
        o = o[o["run"].str.match(r"^\d+[MB]-\d+(\.\d+)?xC$")]
        fin = o.sort_values("step").groupby("run").tail(1)
        tr, te = fin[fin["N"] < 2e9], fin[fin["N"] > 2e9]
        cols = lambda g: {"N": g["N"].to_numpy(float), "D": g["D"].to_numpy(float)}  # noqa: E731
        yield (
            "OLMo ladder, 3B from <= 1.3B",
            "chinchilla",
            cols(tr),
            tr["loss_c4_en"].to_numpy(),
            cols(te),
            te["loss_c4_en"].to_numpy(),
            "N",
            None,
        )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-boot", type=int, default=300)
    args = ap.parse_args()
    print(f"CPU: {cpu_model()}")
    print("| split | n test | method | " + " | ".join(f"{lv:.0%}: cover / width" for lv in LEVELS) + " |")
    print("|---|---|---|" + "---|" * len(LEVELS))
    pooled: dict[str, list] = {}
    for name, form, xtr, ytr, xte, yte, along, groups in splits():
        g = np.arange(ytr.size) if groups is None else groups
        res = fit(form, xtr, ytr)
        bs = bootstrap(form, xtr, ytr, g, n_boot=args.n_boot, base=res)
        noise = noise_scale(res, xtr, ytr)
        horizon = float(
            np.max(extrapolation_distance(np.asarray(xte[along], float), float(np.max(xtr[along]))))
        )
        cal = calibrate(form, xtr, ytr, along, groups=groups, horizon=horizon)
        preds = bs.predict(xte)
        for method in ("param", "boot+noise", "calibrated"):
            cells = []
            for lv in LEVELS:
                if method == "param":
                    lo, hi = np.quantile(preds, [(1 - lv) / 2, (1 + lv) / 2], axis=0)
                    pred = res.predict(xte)
                else:
                    iv = prediction_intervals(res, bs, xte, level=lv, noise=noise,
                                              calibration=cal if method == "calibrated" else None)  # fmt: skip
                    lo, hi, pred = iv.lo, iv.hi, iv.pred
                cover = float(np.mean((yte >= lo) & (yte <= hi)))
                width = float(np.mean((hi - lo) / pred))
                pooled.setdefault(f"{method}|{lv}", []).append(cover)
                cells.append(f"{cover:.2f} / {width:.2%}")
            print(f"| {name} | {yte.size} | {method} | " + " | ".join(cells) + " |")
        print(f"|  |  | (fit MAPE on the split {np.mean(np.abs(res.predict(xte) / yte - 1)):.2%}; "
              f"calibration: kappa {cal.kappa:.4f} per decade, {cal.scores.size} scores from {len(cal.cuts)} folds) | |")  # fmt: skip
    for method in ("param", "boot+noise", "calibrated"):
        cells = [f"{np.mean(pooled[f'{method}|{lv}']):.2f}" for lv in LEVELS if f"{method}|{lv}" in pooled]
        if cells:
            print(f"| mean over splits | | {method} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()

"""Fit a law to points in a CSV file and print JSON (no MLflow, no torch).

    cptlaw-fit-csv --law dcpt points.csv [--holdout more.csv]
    python -m cptlaw.fit_csv --law chinchilla points.csv

Columns per law: chinchilla `N,D,loss`; dcpt (and dcpt_nocoupling, dcpt_forgetting) `N,D,r,loss`;
dcpt_cross `N,D,r,k1,k2,domain,loss`; ppl (and ppl_nointeraction) `mu,sigma,D,loss`. The hold-out file has
the same columns (`loss` optional); its predictions are printed, with metrics when it has `loss`.
Bad input: one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from cptlaw.errors import CSVError
from cptlaw.laws import REGISTRY, FitError, LawInputError, all_metrics, fit, get_law

EXTRA = {"dcpt_cross": ("domain",)}  # columns required by the CSV interface beyond the law's inputs


def read_points(path: str, columns: tuple[str, ...], need_loss: bool = True) -> dict[str, np.ndarray]:
    import pandas as pd

    p = Path(path)
    if not p.is_file():
        raise CSVError(f"{path}: no such file")
    try:
        df = pd.read_csv(p)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise CSVError(f"{path}: not a readable CSV ({str(exc).splitlines()[0]})") from None
    df.columns = [str(c).strip() for c in df.columns]
    need = columns + (("loss",) if need_loss else ())
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise CSVError(f"{path}: missing column(s) {', '.join(missing)} (need {', '.join(need)})")
    if len(df) == 0:
        raise CSVError(f"{path}: no rows")
    out: dict[str, np.ndarray] = {}
    for c in need + (("loss",) if "loss" in df.columns and not need_loss else ()):
        if c == "domain":
            out[c] = df[c].astype(str).to_numpy()
            continue
        vals = pd.to_numeric(df[c], errors="coerce")
        bad = vals.isna() & df[c].notna()
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise CSVError(f"{path}: column `{c}` row {i + 2} is not a number: {df[c].iloc[i]!r}")
        out[c] = vals.to_numpy(dtype=float)
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    form = get_law(args.law, epsilon=args.epsilon)
    cols = form.columns + EXTRA.get(args.law, ())
    pts = read_points(args.points, cols)
    res = fit(form, pts, pts["loss"], n_starts=args.n_starts, seed=args.seed)
    out = {"law": res.law, "equation": form.equation, "params": res.params, "r2": res.r2, "huber": res.huber,
           "rmse": res.rmse, "mape": res.mape, "n_points": res.n_points, "success": res.success,
           "message": res.message, "at_bounds": res.at_bounds}  # fmt: skip
    if args.holdout:
        hold = read_points(args.holdout, cols, need_loss=False)
        pred = res.predict(hold)
        out["holdout"] = {"n_points": int(pred.size), "predictions": pred.tolist()}
        if "loss" in hold and np.all(np.isfinite(hold["loss"])):
            out["holdout"] |= all_metrics(pred, hold["loss"])
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="cptlaw-fit-csv", description=__doc__.split("\n")[0])
    ap.add_argument("--law", required=True, choices=list(REGISTRY), help="law to fit")
    ap.add_argument("points", help="CSV of fitting points")
    ap.add_argument("--holdout", help="CSV of points to predict (same columns; `loss` optional)")
    ap.add_argument("--n-starts", type=int, default=64, help="exponent starts (default 64)")
    ap.add_argument("--epsilon", type=float, default=1e-3, help="D-CPT r + epsilon (default 1e-3)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    try:
        out = run(args)
    except (CSVError, LawInputError, FitError) as exc:
        print(f"cptlaw-fit-csv: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

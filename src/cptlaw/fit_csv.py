"""Fit a law to points in a CSV file and print JSON (no MLflow, no torch).

    cptlaw-fit-csv --law dcpt points.csv [--holdout more.csv] [--bootstrap 1000 --level 0.9]
    cptlaw-fit-csv --formula "E + B/D**beta + K*exp(t*p1)" points.csv [--bounds beta=0:3,t=-10:10] [--fixed eps=1e-3]
    python -m cptlaw.fit_csv --law chinchilla points.csv

Columns per law: chinchilla `N,D,loss`; dcpt (and dcpt_nocoupling, dcpt_forgetting) `N,D,r,loss`;
dcpt_cross `N,D,r,k1,k2,domain,loss`; ppl (and ppl_nointeraction) `mu,sigma,D,loss`; a formula: the columns
it names, plus `loss`. The hold-out file has the same columns (`loss` optional); its predictions are
printed, with metrics, the naive baseline and the skill ratio when it has `loss`. `--bootstrap N` adds
parameter intervals and hold-out prediction intervals (calibrated on extrapolation folds when the hold-out
lies beyond the points along one column). Bad input: one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from cptlaw.errors import BadInput, CSVError
from cptlaw.laws import REGISTRY, all_metrics, bootstrap, fit, law_from_spec
from cptlaw.laws.baselines import split_skill
from cptlaw.laws.forms import LawForm, LawInputError
from cptlaw.laws.intervals import (
    calibrate,
    extrapolated_column,
    extrapolation_distance,
    noise_scale,
    prediction_intervals,
)

EXTRA = {"dcpt_cross": ("domain",)}  # columns required by the CSV interface beyond the law's inputs


def _frame(path: str):
    import pandas as pd

    p = Path(path)
    if not p.is_file():
        raise CSVError(f"{path}: no such file")
    try:
        df = pd.read_csv(p)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise CSVError(f"{path}: not a readable CSV ({str(exc).splitlines()[0]})") from None
    df.columns = [str(c).strip() for c in df.columns]
    return df


def read_points(
    path: str, columns: tuple[str, ...], need_loss: bool = True, text: tuple[str, ...] = ("domain",)
) -> dict[str, np.ndarray]:
    import pandas as pd

    df = _frame(path)
    need = columns + (("loss",) if need_loss else ())
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise CSVError(f"{path}: missing column(s) {', '.join(missing)} (need {', '.join(need)})")
    if len(df) == 0:
        raise CSVError(f"{path}: no rows")
    out: dict[str, np.ndarray] = {}
    for c in need + (("loss",) if "loss" in df.columns and not need_loss else ()):
        if c in text:
            out[c] = df[c].astype(str).to_numpy()
            continue
        vals = pd.to_numeric(df[c], errors="coerce")
        bad = vals.isna() & df[c].notna()
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise CSVError(f"{path}: column `{c}` row {i + 2} is not a number: {df[c].iloc[i]!r}")
        out[c] = vals.to_numpy(dtype=float)
    return out


def parse_assignments(text: str | None, option: str, pair: bool) -> dict[str, Any]:
    """`a=1,b=2` (pair=False) or `a=0:3,b=-inf:inf` (pair=True) into a dict; one-line errors naming `option`."""
    out: dict[str, Any] = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        name, eq, value = item.partition("=")
        try:
            if not eq or not name.strip():
                raise ValueError
            if pair:
                lo, colon, hi = value.partition(":")
                if not colon:
                    raise ValueError
                out[name.strip()] = (float(lo), float(hi))
            else:
                out[name.strip()] = float(value)
        except ValueError:
            want = "name=lo:hi" if pair else "name=value"
            raise LawInputError(f"`{option}` items must be {want}, got {item.strip()!r}") from None
    return out


def build_law(args: argparse.Namespace) -> tuple[LawForm, tuple[str, ...]]:
    """The law and the CSV columns it needs."""
    if args.formula is None:
        if args.bounds or args.fixed:
            raise LawInputError(
                "`--bounds`/`--fixed` apply to `--formula` laws (built-in laws have fixed boxes)"
            )
        form = law_from_spec(args.law, epsilon=args.epsilon)
        return form, form.columns + EXTRA.get(args.law, ())
    header = [c for c in _frame(args.points).columns if c != "loss"]
    spec = {"formula": args.formula, "bounds": parse_assignments(args.bounds, "--bounds", True),
            "fixed": parse_assignments(args.fixed, "--fixed", False)}  # fmt: skip
    form = law_from_spec(spec, columns=header)
    return form, form.columns


def _holdout(args, form, res, pts, cols, boot) -> dict[str, Any]:
    hold = read_points(args.holdout, cols, need_loss=False)
    pred = res.predict(hold)
    out: dict[str, Any] = {"n_points": int(pred.size), "predictions": pred.tolist()}
    has_loss = "loss" in hold and np.all(np.isfinite(hold["loss"]))
    if has_loss:
        out |= all_metrics(pred, hold["loss"])
    inputs = [c for c in form.columns if c in pts]
    along = args.extrapolate or extrapolated_column(pts, hold, inputs)
    if boot is not None:
        noise = noise_scale(res, pts, pts["loss"])
        cal = None
        if along is not None:
            reach = extrapolation_distance(np.asarray(hold[along], float), float(np.max(pts[along])))
            cal = calibrate(form, pts, pts["loss"], along, groups=_groups(args, pts), horizon=float(np.max(reach)),
                            seed=args.seed, n_starts=args.n_starts)  # fmt: skip
            if cal.errors.size == 0:
                cal = None
        iv = prediction_intervals(res, boot, hold, level=args.level, noise=noise, calibration=cal)
        out["intervals"] = np.stack([iv.lo, iv.hi], axis=1).tolist()
        out["interval_method"] = iv.method
        out["interval_multiplier"] = iv.multiplier
        out["calibrated_along"] = along if cal is not None else None
        if has_loss:
            out["coverage"] = iv.coverage(hold["loss"])
    if has_loss:
        split = along or _held_out_column(pts, hold, inputs)
        if split is None:
            out["naive"] = {
                "error": "no single column separates the hold-out from the points; pass --extrapolate COL"
            }
        else:
            sk = split_skill(pred, pts, pts["loss"], hold, hold["loss"], split, inputs)
            naive = {"along": split, "n_predicted": sk.n_naive, "mape": sk.naive_mape, "rmse": sk.naive_rmse}
            out["naive"] = naive | ({"error": sk.error} if sk.error else {})
            out["skill"] = sk.ratio
    return out


def _held_out_column(pts, hold, inputs) -> str | None:
    """The one input whose hold-out values never occur in the points (a held-out ratio, size, ...)."""
    found = [c for c in inputs if not np.isin(hold[c], pts[c]).any()]
    return found[0] if len(found) == 1 else None


def _groups(args, pts) -> np.ndarray:
    if args.groups is None:
        return np.arange(pts["loss"].size)
    return pts[args.groups]


def run(args: argparse.Namespace) -> dict[str, Any]:
    form, cols = build_law(args)
    if args.bootstrap < 0:
        raise LawInputError(f"`--bootstrap` must be >= 0, got {args.bootstrap}")
    if not 0 < args.level < 1:
        raise LawInputError(f"`--level` must be in (0, 1), got {args.level}")
    need = cols + ((args.groups,) if args.groups and args.groups not in cols else ())
    pts = read_points(args.points, need, text=("domain", args.groups) if args.groups else ("domain",))
    res = fit(form, pts, pts["loss"], n_starts=args.n_starts, seed=args.seed)
    out = {"law": res.law, "equation": form.equation, "params": res.params, "r2": res.r2, "huber": res.huber,
           "rmse": res.rmse, "mape": res.mape, "n_points": res.n_points, "success": res.success,
           "message": res.message, "at_bounds": res.at_bounds}  # fmt: skip
    if args.formula is not None:
        out |= {"linear": list(form.linear), "nonlinear": list(form.nonlinear), "inputs": list(form.columns)}
    boot = None
    if args.bootstrap:
        boot = bootstrap(form, pts, pts["loss"], _groups(args, pts), n_boot=args.bootstrap, level=args.level,
                         seed=args.seed, base=res)  # fmt: skip
        out["params_ci"] = {k: list(v) for k, v in boot.ci.items()}
        out["bootstrap"] = {"n_boot": boot.n_boot, "n_failed": boot.n_failed, "level": args.level}
    if args.holdout:
        out["holdout"] = _holdout(args, form, res, pts, cols, boot)
    return out


def plain_json(obj: Any) -> Any:
    """JSON-safe copy: numpy scalars to Python, non-finite floats to null (strict JSON has no NaN)."""
    if isinstance(obj, dict):
        return {str(k): plain_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [plain_json(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="cptlaw-fit-csv", description=__doc__.split("\n")[0])
    which = ap.add_mutually_exclusive_group(required=True)
    which.add_argument("--law", choices=list(REGISTRY), help="built-in law to fit")
    which.add_argument("--formula", help="a law as a formula over the CSV's columns, e.g. 'E + A/N**alpha'")
    ap.add_argument("points", help="CSV of fitting points")
    ap.add_argument("--holdout", help="CSV of points to predict (same columns; `loss` optional)")
    ap.add_argument("--bounds", help="formula parameter boxes, e.g. beta=0:3,t=-10:10,K=-inf:inf")
    ap.add_argument("--fixed", help="formula parameters held fixed, e.g. eps=1e-3")
    ap.add_argument("--n-starts", type=int, default=64, help="exponent starts (default 64)")
    ap.add_argument("--epsilon", type=float, default=1e-3, help="D-CPT r + epsilon (default 1e-3)")
    ap.add_argument("--bootstrap", type=int, default=0, help="resamples for intervals (0: none)")
    ap.add_argument("--level", type=float, default=0.9, help="interval level (default 0.9)")
    ap.add_argument("--groups", help="column naming the run of each point: resample whole runs")
    ap.add_argument("--extrapolate", help="column the hold-out extrapolates along (default: detected)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    try:
        out = run(args)
    except BadInput as exc:
        print(f"cptlaw-fit-csv: error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    print(json.dumps(plain_json(out), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

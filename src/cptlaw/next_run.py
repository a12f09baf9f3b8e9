"""Which run to make next: rank candidate runs by expected shrinkage of a decision's interval per FLOP.

    cptlaw-next-run --law dcpt points.csv --decision "usage2 N=3e5 domain_tokens=5e4" \\
        --grid "N=1e5,3e5,1e6 D=1e5,1e6 r=0.2,0.5,0.8" [--groups run_id] [--json]

Decisions: `usage1 N= D= lg0= [tolerance=]` (fit the general-loss law), `usage2 N= domain_tokens=`,
`usage3 compute= [r=]` (log10 of the compute-optimal N), `ppl D= mu_lo= mu_hi= sigma_lo= sigma_hi=`.
The grid names every input column of the law; a candidate run is evaluated at `--checkpoints` fractions of
its D. Method: `cptlaw.laws.design`. Bad input: one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import numpy as np

from cptlaw.errors import BadInput
from cptlaw.fit_csv import build_law, plain_json, read_points
from cptlaw.laws import REGISTRY, bootstrap, fit
from cptlaw.laws.design import candidate_grid, decision_function, rank_next_runs
from cptlaw.laws.forms import LawInputError


def parse_decision(text: str) -> tuple[str, dict[str, float]]:
    kind, *items = text.split()
    args = {}
    for it in items:
        k, eq, v = it.partition("=")
        try:
            if not eq:
                raise ValueError
            args[k] = float(v)
        except ValueError:
            raise LawInputError(f"`--decision` items must be name=value, got {it!r}") from None
    return kind, args


def parse_grid(text: str) -> dict[str, list[float]]:
    axes = {}
    for part in text.split():
        k, eq, v = part.partition("=")
        try:
            if not eq or not k:
                raise ValueError
            axes[k] = [float(x) for x in v.split(",") if x]
        except ValueError:
            raise LawInputError(f"`--grid` items must be name=v1,v2,..., got {part!r}") from None
    if not axes:
        raise LawInputError("`--grid` is empty; give e.g. 'N=1e5,1e6 D=1e6,1e7'")
    return axes


def run(args: argparse.Namespace) -> dict[str, Any]:
    form, cols = build_law(args)
    need = cols + ((args.groups,) if args.groups and args.groups not in cols else ())
    pts = read_points(args.points, need, text=("domain", args.groups) if args.groups else ("domain",))
    kind, dargs = parse_decision(args.decision)
    decide = decision_function(form, kind, **dargs)
    axes = parse_grid(args.grid)
    missing = [c for c in form.columns if c not in axes]
    if missing:
        raise LawInputError(f"`--grid` must give every input of the law; missing {', '.join(missing)}")
    checkpoints = [float(x) for x in args.checkpoints.split(",")]
    if not checkpoints or not all(0 < c <= 1 for c in checkpoints):
        raise LawInputError(f"`--checkpoints` must be fractions in (0, 1], got {args.checkpoints!r}")
    res = fit(form, pts, pts["loss"], n_starts=args.n_starts, seed=args.seed)
    groups = pts[args.groups] if args.groups else np.arange(pts["loss"].size)
    boot = bootstrap(form, pts, pts["loss"], groups, n_boot=args.bootstrap, base=res, seed=args.seed)
    width_now, ranked = rank_next_runs(
        form, pts, pts["loss"], res, boot, decide, candidate_grid(**axes), groups=groups, level=args.level,
        n_sim=args.n_sim, n_boot=args.n_boot, checkpoints=checkpoints, seed=args.seed,
    )  # fmt: skip
    return {"law": form.name, "decision": kind, "decision_args": dargs, "level": args.level,
            "decision_now": float(decide(res.params)), "width_now": width_now, "fit_success": res.success,
            "ranked": [r.to_dict() for r in ranked[: args.top]]}  # fmt: skip


def table(out: dict[str, Any]) -> str:
    lines = [f"decision {out['decision']} now {out['decision_now']:.4g}, {out['level']:.0%} interval width "
             f"{out['width_now']:.4g}", "rank  run" + " " * 37 + "PFLOP   expected width  shrinkage/PFLOP"]  # fmt: skip
    for i, r in enumerate(out["ranked"], 1):
        run_s = " ".join(f"{k}={v:.3g}" for k, v in r["run"].items())
        lines.append(f"{i:>4}  {run_s:<40} {r['flops'] / 1e15:>7.3g}  {r['width_expected']:>14.4g}  "
                     f"{r['shrinkage_per_pflop']:>15.4g}")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="cptlaw-next-run", description=__doc__.split("\n")[0])
    which = ap.add_mutually_exclusive_group(required=True)
    which.add_argument("--law", choices=list(REGISTRY), help="built-in law")
    which.add_argument("--formula", help="a law as a formula over the CSV's columns")
    ap.add_argument("points", help="CSV of fitting points")
    ap.add_argument("--decision", required=True, help="e.g. 'usage2 N=3e5 domain_tokens=5e4'")
    ap.add_argument("--grid", required=True, help="candidate axes, e.g. 'N=1e5,1e6 D=1e6,1e7 r=0.2,0.5'")
    ap.add_argument("--bounds", help="formula parameter boxes, e.g. beta=0:3")
    ap.add_argument("--fixed", help="formula parameters held fixed, e.g. eps=1e-3")
    ap.add_argument("--epsilon", type=float, default=1e-3, help="D-CPT r + epsilon (default 1e-3)")
    ap.add_argument("--groups", help="column naming the run of each point")
    ap.add_argument("--checkpoints", default="0.25,0.5,1", help="evaluation points of a run, fractions of D")
    ap.add_argument("--level", type=float, default=0.9)
    ap.add_argument(
        "--bootstrap", type=int, default=200, help="resamples of today's fit (the draws of the truth)"
    )
    ap.add_argument("--n-sim", type=int, default=4, help="simulated outcomes per candidate")
    ap.add_argument("--n-boot", type=int, default=100, help="resamples per simulated outcome")
    ap.add_argument("--n-starts", type=int, default=64)
    ap.add_argument("--top", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = ap.parse_args(argv)
    try:
        out = run(args)
    except BadInput as exc:
        print(f"cptlaw-next-run: error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    print(json.dumps(plain_json(out), indent=1) if args.json else table(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())

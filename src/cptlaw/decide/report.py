"""`reports/report.md`: the fits, the decisions with their intervals, the cross-domain table, the DOS
validation table and honest diagnostics, rendered from the JSON outputs of fit / recommend / select / validate
(any of the last three may be missing: the section then says which stage to run)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _f(x: Any, fmt: str = ".4g") -> str:
    if x is None:
        return "—"
    try:
        return format(float(x), fmt)
    except (TypeError, ValueError):
        return str(x)


R2_FLOOR, MAPE_CEIL = -10.0, 10.0  # held-out scores past these print as bounds; exact values stay in the JSON


def _r2(x: Any) -> str:
    """Held-out R²: far extrapolations (a tiny denominator) print as `< -10` rather than -1.6e18."""
    return f"< {R2_FLOOR:g}" if x is not None and float(x) < R2_FLOOR else _f(x, ".3f")


def _mape(x: Any) -> str:
    return (
        "—"
        if x is None
        else (f"> {100 * MAPE_CEIL:g}%" if float(x) > MAPE_CEIL else f"{100 * float(x):.2f}%")
    )


def _ci(ci: Any, fmt: str = ".3g") -> str:
    return f"[{_f(ci[0], fmt)}, {_f(ci[1], fmt)}]" if ci else "—"


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + [
        "| " + " | ".join(str(c) for c in r) + " |" for r in rows
    ]


def _img(path: Path, rel_to: Path, alt: str) -> list[str]:
    return [f"![{alt}]({path.relative_to(rel_to).as_posix()})", ""] if path.is_file() else []


def fits_section(fits: dict, reports: Path, min_runs_warn: int) -> tuple[list[str], list[str]]:
    """(lines, diagnostics) of the fits: per target the laws' R2/Huber, held-out errors, best form."""
    lines = ["## Fits", "", f"{fits.get('n_source_runs', '?')} finished source runs.", ""]
    diags = []
    rows = []
    for name, tg in fits["targets"].items():
        cmp_ = tg.get("comparison") or {}
        held = {}
        for s in cmp_.get("summary", []):
            vs = "" if s.get("skill") is None else (
                f", {_f(s['skill'], '.2f')}× naive" if s["skill"] < 1000 else ", > 1000× naive")  # fmt: skip
            held.setdefault(s["form"], []).append(
                f"{s['split']}: R² {_r2(s['r2'])}, MAPE {_mape(s['mape'])}{vs}"
            )
            if s.get("skill") is not None and s["skill"] > 1 and s["form"] in tg.get("fits", {}):
                diags.append(f"`{name}` {s['form']}: loses to the naive baseline on held-out {s['split']} (MAPE "
                             f"{_mape(s['mape'])} vs {_mape(s['naive_mape'])} for interpolating the neighbouring "
                             f"runs): at this scale the law does not beat its neighbours along {s['split']}")  # fmt: skip
        for law, f in tg.get("fits", {}).items():
            best = " (best held-out)" if cmp_.get("best_overall") == law else ""
            rows.append([name, law + best, tg.get("n_runs", "?"), _f(f["r2"], ".4f"), _f(f["huber"], ".3g"),
                         "; ".join(held.get(law, [])) or "—"])  # fmt: skip
            p = f["params"]
            if p.get("E", 1.0) < 1e-6 and law != "dcpt_cross":
                diags.append(f"`{name}` {law}: E → 0 (E = {_f(p['E'])}): the runs are likely in the transient phase "
                             "(short runs: the loss has not yet settled into a power law in D); "
                             "trust D-extrapolation only after longer CPT runs")  # fmt: skip
            if "eta" in p and p["eta"] < 1e-6:
                diags.append(f"`{name}` {law}: η → 0, the D×r coupling is not identified by these runs")
            if f.get("at_bounds"):
                diags.append(f"`{name}` {law}: exponents on their bound: {', '.join(f['at_bounds'])}")
        for law, why in tg.get("skipped", {}).items():
            rows.append([name, f"{law} (skipped)", tg.get("n_runs", "?"), "—", "—", why])
        n_runs = tg.get("n_runs")
        if isinstance(n_runs, int) and tg.get("fits") and n_runs < min_runs_warn:
            diags.append(
                f"`{name}` is fitted on only {n_runs} runs (< {min_runs_warn}): its parameters and decisions are fragile"
            )
    lines += _table(["target", "law", "runs", "R² (fit)", "Huber (fit)", "held-out"], rows) + [""]
    lines += [f"Held-out: per split, the points at one value of N, D, r (or one regime / domain) are left out in turn and "
              f"predicted from the rest; `k× naive` is the law's MAPE over that of interpolating the neighbouring runs "
              f"along the split at equal other inputs (above 1: the law loses to the naive baseline); R² below "
              f"{R2_FLOOR:g} and MAPE above {100 * MAPE_CEIL:g}% print as bounds (far extrapolation; exact values in "
              "`fits.json`).", ""]  # fmt: skip
    for p in sorted((reports / "plots" / "fit").glob("*_obs_pred.png"))[:6]:
        lines += _img(p, reports, p.stem)
    return lines, diags


def deceleration_lines(table: Any, min_d: float) -> list[str]:
    """Per domain: do its CPT curves decelerate in log D (the law's regime) over the fitted range?"""
    from cptlaw.decide.quality import deceleration

    dec = deceleration(table, min_d)
    if dec.empty:
        return []
    by = dec.groupby("domain")["ratio"].agg(["median", "min", "max", "size"])
    rows = [[d, int(g["size"]), f"{g['median']:.2f} [{g['min']:.2f}, {g['max']:.2f}]",
             "decelerating" if g["max"] < 1 else ("mixed" if g["min"] < 1 else "not decelerating")]
            for d, g in by.iterrows()]  # fmt: skip
    return ["Does the domain loss decelerate in log D over the fitted range? Per run, its fall per e-fold of D over "
            "the later half of its points divided by that over the earlier half (below 1: decelerating, as a power "
            "law with a floor does; 1 or more: still before that phase, where E is not identified).", "",
            *_table(["domain", "runs", "late / early fall: median [min, max]", "curves"], rows), ""]  # fmt: skip


def quality_section(fits: dict, r2_target: float, table: Any = None, min_d: float = 0.0) -> list[str]:
    """The law-quality targets (E clear of zero, no exponent on a bound, held-out R² by N, D, r), met or missed,
    and whether the CPT curves of `table` (the fit table) decelerate."""
    from cptlaw.decide.quality import E_FLOOR, law_quality

    rows = law_quality(fits, r2_target)
    if not rows:
        return []
    lines = ["### Law quality against its targets", ""]
    lines += deceleration_lines(table, min_d) if table is not None else []
    lines += _table(["target", "form", "E [90% CI]", "exponents on a bound", "held-out R² N / D / r", "verdict"],
                    [[r["target"], r["form"] + (" (best held-out)" if r["best"] else ""),
                      f"{_f(r['E']['E'], '.3g')} {_ci(r['E']['ci'])}", ", ".join(r["at_bounds"]) or "none",
                      " / ".join(_r2(r["r2"].get(s)) for s in ("N", "D", "r")),
                      "meets" if r["meets"] else "misses"] for r in rows])  # fmt: skip
    return lines + ["", f"Targets: held-out R² >= {r2_target:g} by N, by D and by r (leave one group of runs out); "
                    f"for a domain law also E clear of zero (its interval above {E_FLOOR:g} nats: E → 0 means the runs "
                    "are still in the transient) and no exponent on its search bound.", ""]  # fmt: skip


def _split_note(u: dict, sep: str = "; ", end: str = "") -> str:
    """A marker beside an answer whose resampled answers fall into two groups (its note says more)."""
    return f"{sep}resamples in two groups{end}" if u.get("split") else ""


def _runs_note(u: dict) -> str:
    """What the runs say beside a law answer: agreement, or the bracket that replaces a contradicted answer."""
    runs, pub = u.get("runs") or {}, u.get("published")
    note = ""
    if runs.get("bracket"):
        lo, hi = runs["bracket"]
        span = f"[{lo:g}, {hi:g}{')' if runs.get('upper_excluded') else ']'}"
    if runs.get("agrees") is False:
        note = f"; **runs: r_d in {span}** — the law's {_f(u.get('r_domain_law'), '.3f')} contradicts them"
    elif runs.get("agrees"):
        note = f"; runs agree ({span})"
    elif runs:
        note = f"; not bracketed by runs ({runs.get('why', 'runs on one side only')})"
    if pub:
        note += f"; published {pub['law']}: {_f(pub.get('r_domain'), '.3f')}"
    return note


def next_run_section(rec: dict) -> list[str]:
    """The runs that would narrow usage 2's interval most per FLOP (`recommend.next_run`)."""
    rows, why = [], []
    for d, r in rec["domains"].items():
        nr = r.get("next_run") or {}
        if nr.get("error") or nr.get("skipped"):
            why.append(f"- {d}: {nr.get('error') or nr.get('skipped')}")
        top = nr.get("top", [])
        if top and not top[0]["shrinkage"] > 0:
            why.append(f"- {d}: no candidate narrows the interval in expectation (best {_f(top[0]['shrinkage'], '.3f')}): "
                       "the simulated runs move the fit more than they add information; more seeds at the "
                       "existing points, or runs at new N, are the better next step")  # fmt: skip
        for i, c in enumerate(top, 1):
            run = c["run"]
            rows.append([d, i, f"N {_f(run['N'], '.3g')}, D {_f(run['D'], '.3g')}, r {_f(run['r'], '.2f')}",
                         _f(c["flops"], ".2g"), f"{_f(c['width_now'], '.3f')} → {_f(c['width_expected'], '.3f')}",
                         _f(c["shrinkage_per_pflop"], ".3g")])  # fmt: skip
    if not rows and not why:
        return []
    lines = ["", "### Which run to make next", "",
             "Candidates at the observed N and r, longer than the longest run so far; each is simulated from "
             "bootstrap draws of the domain law, refitted, and scored by how much it narrows the interval of "
             "usage 2's r_d* per 10^15 FLOPs (6ND).", ""]  # fmt: skip
    if rows:
        lines += _table(["domain", "rank", "run", "FLOPs", "r_d* interval width now → expected",
                         "shrinkage per PFLOP"], rows)  # fmt: skip
    return lines + why + [""]


def recommend_section(rec: dict | None, reports: Path) -> list[str]:
    lines = ["## Decisions (D-CPT usages)", ""]
    if rec is None:
        return lines + ["Not computed: run the recommend stage (`python -m cptlaw.stages.recommend`).", ""]
    lvl = rec.get("config", {}).get("ci_level", 0.9)
    rows = []
    for d, r in rec["domains"].items():
        u1, u2, u3 = r["tradeoff"], r["limited_data"], r["compute"]
        rows.append([d, f"{_f(u1.get('r_domain'), '.3f')} {_ci(u1.get('ci'))} ({u1.get('status', u1.get('error'))})"
                     + _split_note(u1) + _runs_note(u1),
                     f"{_f(u2['r_domain'], '.3f')} {_ci(u2.get('ci'))}" + (" boundary" if u2["on_boundary"] else "")
                     + _split_note(u2) + _runs_note(u2),
                     "not computed (see below)" if u3.get("error") else
                     f"N* {_f(u3.get('n_params'), '.3g')} {_ci((u3.get('ci') or {}).get('n_params'))}, "
                     f"D* {_f(u3.get('n_tokens'), '.3g')}" + _split_note(u3)])  # fmt: skip
    lines += [f"Intervals: {lvl:.0%} run-bootstrap percentile CIs (whole runs resampled, law refitted).", ""]
    lines += _table(["domain", f"1. max r_d (T = {rec['config']['tolerance']:.0%})", "2. r_d* at fixed D_d",
                     "3. compute-optimal (N, D)"], rows) + [""]  # fmt: skip
    for d, r in rec["domains"].items():
        notes = [
            *r.get("notes", []),
            *(u.get("message") for u in (r["tradeoff"], r["limited_data"], r["compute"])),
            *(u.get("fragile") for u in (r["tradeoff"], r["limited_data"], r["compute"])),
            r["compute"].get("error") and f"usage 3 not computed: {r['compute']['error']}",
        ]
        lines += [f"- {d}: {m}" for m in notes if m]
        lines += _img(reports / "plots" / "recommend" / f"{d}_usages.png", reports, f"{d} usages")
    for d, e in rec.get("errors", {}).items():
        lines.append(f"- {d}: not decided — {e}")
    lines += next_run_section(rec)
    lines += ["", "### Cross-domain law: held-out domains", ""]
    cd = rec.get("cross_domain", {})
    if cd.get("rows"):
        lines += _table(["held out", "form", "test points", "RMSE", "MAPE", "R²", "own-fit RMSE"],
                        [[r["held_out"], r["form"], r["n_test"], _f(r["rmse"]), _mape(r.get("mape")),
                          _r2(r["r2"]), _f(r["own_fit_rmse"])] for r in cd["rows"]])  # fmt: skip
        lines += [
            "",
            "Each row fits the law on the other domains and predicts the held-out one (or pair, `a+b`) from its "
            "probe coefficients k1, k2 alone. Own-fit RMSE: the in-sample error of the domain's own D-CPT fit (a "
            "floor for the cross-domain prediction).",
            "",
        ]
        lines += _img(reports / "plots" / "recommend" / "cross_domain.png", reports, "cross-domain")
    else:
        lines += [cd.get("message", "no table"), ""]
    return lines


def validate_section(val: dict | None, selections: dict[str, dict], reports: Path) -> list[str]:
    lines = ["## DOS selection and validation", ""]
    for d, s in selections.items():
        o, a = s["optimum"], s["achieved"]
        lines.append(f"- {d}: optimum ({s['stats']}) μ̂ = {_f(o['mu'])}, σ̂ = {_f(o['sigma'])} "
                     f"({'interior' if o['interior'] else 'on the ' + '/'.join(o['on_boundary']) + ' edge'}); DOS selected "
                     f"{a['n_samples']} samples / {_f(a['n_tokens'], '.0f')} tokens with μ = {_f(a['mu'])}, σ = {_f(a['sigma'])}, J = {_f(a['objective_J'], '.3g')}")  # fmt: skip
        if s.get("message"):
            lines.append(f"  - {s['message']}")
        lines += _img(reports / "plots" / "select" / f"{d}_landscape.png", reports, f"{d} landscape")
    if not selections:
        lines += ["No selection: run the select stage (`python -m cptlaw.stages.select`).", ""]
    if val is None:
        return lines + ["", "Validation runs: not run (`python -m cptlaw.stages.validate`).", ""]
    for d, v in val["domains"].items():
        lines += ["", f"### {d}: validation runs at D = {v['n_tokens']} tokens", ""]
        lines += _table(["arm", "seeds", "domain loss", "predicted (ppl law)", "Δ vs random [interval]", "general loss",
                         "Δ vs random [interval]", "μ (ppl)", "σ (ppl)"],
                        [[r["arm"], r["n_seeds"], _f(r["domain_loss"]) + (f" ± {_f(r['domain_loss_std'], '.3f')}" if r["domain_loss_std"] else ""),
                          _f(r.get("predicted_domain_loss")), _diff(r, "domain_loss"), _f(r["general_loss"]),
                          _diff(r, "general_loss"), _f(r["ppl_mean"]), _f(r["ppl_std"])] for r in v["arms"]])  # fmt: skip
        sv = v.get("saving", {})
        if sv:
            lines += ["", f"- {sv.get('verdict', '')}"]
            law, cur = sv.get("law") or {}, sv.get("curve") or {}
            lines.append(f"- Data saving (tokens DOS needs to match random's loss, as a fraction of random's): from the law "
                         f"{_f(law.get('fraction'), '.3f')}, from the eval curves {_f(cur.get('fraction'), '.3f')}"
                         + (f" ({cur['message']})" if cur.get("message") else "")
                         + (f"; law: {law['message']}" if law.get("message") else ""))  # fmt: skip
        lines += [""] + _img(reports / "plots" / "validate" / f"{d}_curves.png", reports, f"{d} curves")
    for d, u in (val.get("usage2") or {}).items():
        lines += usage2_check_section(d, u)
    return lines


def _diff(row: dict, loss: str) -> str:
    """A paired difference to random: mean, interval, and "within noise" when the interval holds zero."""
    vs = row.get(f"{loss}_vs_random")
    if row["arm"] == "random":
        return "(reference)"
    if not vs or vs.get("mean") is None:
        return "—"
    if vs.get("ci") is None:
        return f"{vs['mean']:+.4f} (1 seed: no verdict)"
    lo, hi = vs["ci"]
    return f"{vs['mean']:+.4f} [{lo:+.4f}, {hi:+.4f}]" + ("" if vs["finding"] else " (within noise)")


def usage2_check_section(d: str, u: dict[str, Any]) -> list[str]:
    """Predicted vs realised domain loss of the runs at r* and r* ± delta (as D-CPT's Table 5), and the verdict."""
    laws = list(dict.fromkeys(k for r in u["runs"] for k in r["predicted"]))
    lines = ["", f"### {d}: usage 2 checked by new runs (r* = {u['r_star']:.3f}, D_d = {u['domain_tokens']:.0f} domain "
             f"tokens, N = {u['n_params']:.3g})", ""]  # fmt: skip
    rows = [[f"{r['r']:g}", r["seed"], _f(r["D"], ".0f"), _f(r["domain_loss"])]
            + [f"{_f(r['predicted'].get(k))} ({_f(100 * (r['predicted'][k] / r['domain_loss'] - 1), '+.2f')}%)"
               if k in r["predicted"] else "—" for k in laws] for r in u["runs"]]  # fmt: skip
    lines += _table(["r", "seed", "D", "realised domain loss"] + [f"predicted: {k}" for k in laws], rows)
    return lines + ["", f"- {u['verdict']}", ""]


def render(fits: dict, rec: dict | None, selections: dict[str, dict], val: dict | None, reports: Path,
           provenance: dict[str, Any], min_runs_warn: int, r2_target: float = 0.9, table: Any = None) -> str:  # fmt: skip
    fl, diags = fits_section(fits, reports, min_runs_warn)
    min_d = float((fits.get("config") or {}).get("min_d_tokens") or 0.0)
    fl += quality_section(fits, r2_target, table, min_d)
    for s in selections.values():
        if not s["optimum"]["interior"]:
            diags.append(
                f"{s['domain']}: the perplexity optimum is on the landscape boundary — {s.get('message', '')}"
            )
    for d, v in (val or {}).get("domains", {}).items():
        if any(r["n_seeds"] < 2 for r in v["arms"]):
            diags.append(f"{d}: validation arms ran with < 2 seeds: seed noise is not measured, so DOS vs random "
                         "has no verdict (set `validate.seeds` to >= 3 seeds)")  # fmt: skip
    for d, u in (val or {}).get("usage2", {}).items():
        if u.get("confirmed") is False:
            diags.append(f"{d}: {u['verdict']}")
    lines = ["# cptlaw report", "",
             " · ".join(f"{k}: `{v}`" for k, v in provenance.items()), ""]  # fmt: skip
    lines += fl + recommend_section(rec, reports) + validate_section(val, selections, reports)
    lines += ["", "## Diagnostics", ""] + ([f"- {d}" for d in diags] or ["- none"]) + [""]
    return "\n".join(lines)


def console_summary(rec: dict | None, selections: dict[str, dict], report: Path, tracking_uri: str) -> str:
    """The few lines `dvc repro` ends with: where the results are, the recommended mixtures, the selections."""
    lines = [f"Results: {report} (fits, decisions with CIs, validation, diagnostics); runs: {tracking_uri}"]
    if tracking_uri.startswith("sqlite:///"):
        lines.append(f"  browse: mlflow ui --backend-store-uri {tracking_uri} --host 127.0.0.1 --workers 1")
    for d, r in ((rec or {}).get("domains") or {}).items():
        parts = []
        if (t := r.get("tradeoff")) and t.get("r_domain") is not None:
            parts.append(
                f"max domain share within T={t['tolerance']:.0%}: {t['r_domain']:.2f} CI {_ci(t.get('ci'))}"
                + _split_note(t, " (", ")")
            )
        if (lim := r.get("limited_data")) and lim.get("r_domain") is not None:
            parts.append(
                f"with {lim['domain_tokens']:.3g} domain tokens: r_d* {lim['r_domain']:.2f} CI {_ci(lim.get('ci'))}"
                + _split_note(lim, " (", ")")
            )
        lines.append(f"  mixture {d}: " + ("; ".join(parts) or "not decided (see the report)"))
    for d, s in selections.items():
        a = s.get("achieved", {})
        lines.append(
            f"  selected {d}: {a.get('n_samples')} samples / {a.get('n_tokens', 0):.0f} tokens (mu {_f(a.get('mu'))},"
            f" sigma {_f(a.get('sigma'))}) -> {s.get('ids_file')}"
        )
    return "\n".join(lines)

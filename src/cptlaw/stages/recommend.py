"""Stage `recommend`: fitted D-CPT laws → the three usages per domain (with bootstrap CIs) + the
leave-one-domain-out table of the cross-domain law.

    python -m cptlaw.stages.recommend [recommend.tolerance=0.05 recommend.law_choice=best ...]

Inputs: `reports/fits.json` and `reports/fit_table.csv` (stage `fit`). Outputs: `reports/recommend.json`,
`reports/metrics/recommend.json`, `reports/plots/recommend/*.png`, an MLflow `recommend` run.
Hard errors (missing fits, a domain without fitted laws) exit 2 with one line; soft conditions (infeasible
tolerance, boundary optimum, extrapolation) are recorded in the outputs and printed.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import hydra
import numpy as np
from omegaconf import DictConfig

from cptlaw.config import CONF_DIR, config_hash, to_dict
from cptlaw.cpu import setup_cpu
from cptlaw.stages import exit_on_bad_input

STAGE = "recommend"


def _metrics(domains: dict[str, Any]) -> dict[str, Any]:
    m: dict[str, Any] = {}
    for d, rec in domains.items():
        u1, u2, u3 = rec["tradeoff"], rec["limited_data"], rec["compute"]
        m[d] = {
            "tradeoff_r_domain": u1.get("r_domain"), "tradeoff_rise": u1.get("rise"),
            "limited_r_domain": u2.get("r_domain"), "limited_domain_loss": u2.get("domain_loss"),
            "compute_n_params": u3.get("n_params"), "compute_n_tokens": u3.get("n_tokens"),
        }  # fmt: skip
        m[d] = {k: v for k, v in m[d].items() if v is not None}
    return m


def run(cfg: DictConfig) -> dict[str, Any]:
    from cptlaw import tracking
    from cptlaw.decide import plots
    from cptlaw.decide.inputs import DecisionError, load_fit_table, load_fits
    from cptlaw.decide.usages import cross_domain_table, domain_usages

    t0 = time.perf_counter()
    setup_cpu(int(cfg.threads))
    tracking.configure_from(cfg.tracking)  # before anything is written: an unreachable server fails fast
    c = cfg.recommend
    reports = Path(cfg.paths.reports)
    prefix = str(cfg.tracking.get("experiment_prefix") or "")
    fits = load_fits(reports / "fits.json")
    table = load_fit_table(reports, [f"{prefix}dcpt-{d}" for d in c.domains])
    out: dict[str, Any] = {"domains": {}, "errors": {}, "config": to_dict(c)}
    plot_dir = reports / "plots" / STAGE
    figs = []
    for d in c.domains:
        try:
            rec, (lg, ld, s) = domain_usages(fits, table, str(d), c, int(cfg.seed))
        except DecisionError as exc:
            out["errors"][str(d)] = str(exc)
            print(f"[recommend] {d}: {exc}")
            continue
        out["domains"][str(d)] = rec
        u1, u2, u3 = rec["tradeoff"], rec["limited_data"], rec["compute"]
        print(f"[recommend] {d}: usage 1 r_d={u1.get('r_domain')} ci={u1.get('ci')} ({u1.get('status', u1.get('error'))}); "
              f"usage 2 r_d={u2['r_domain']:.3f} ci={u2.get('ci')}; usage 3 N*={u3.get('n_params', float('nan')):.3g} "
              f"D*={u3.get('n_tokens', float('nan')):.3g}")  # fmt: skip
        for msg in [*rec["notes"], *(u.get("message") for u in (u1, u2, u3))]:
            if msg:
                print(f"[recommend] {d}: note: {msg}")
        if c.plots:
            figs.append(plots.usages(str(d), rec, lg, ld, s, plot_dir / f"{d}_usages.png"))
    if not out["domains"]:
        raise DecisionError("no domain could be decided: " + " | ".join(out["errors"].values()))
    fit_kw = {"n_starts": int(cfg.fit.n_starts), "delta": float(cfg.fit.huber_delta), "seed": int(cfg.seed)}
    out["cross_domain"] = cross_domain_table(fits, table, fit_kw)
    if out["cross_domain"].get("message"):
        print(f"[recommend] cross-domain: {out['cross_domain']['message']}")
    if c.plots and out["cross_domain"]["rows"]:
        figs.append(plots.cross_domain(out["cross_domain"]["rows"], plot_dir / "cross_domain.png"))
    out["fits_config_hash"] = fits.get("config_hash")
    out["wall_s"] = time.perf_counter() - t0
    (reports / "metrics").mkdir(parents=True, exist_ok=True)
    (reports / "recommend.json").write_text(json.dumps(out, indent=1, default=float))
    metrics = _metrics(out["domains"])
    (reports / "metrics" / f"{STAGE}.json").write_text(json.dumps(metrics, indent=1, default=float))
    flat = {f"{d}_{k}": v for d, kv in metrics.items() for k, v in kv.items() if np.isfinite(v)}
    with tracking.run(f"{prefix}{STAGE}", run_name=STAGE, config_hash=config_hash(c),
                      tags={tracking.STAGE_TAG: STAGE}, artifact_root=cfg.tracking.get("artifact_root")):  # fmt: skip
        tracking.log_params({"profile": cfg.get("profile_name"), "tolerance": float(c.tolerance),
                             "law_choice": str(c.law_choice), "domains": ",".join(map(str, c.domains))})  # fmt: skip
        tracking.log_metrics(flat)
        tracking.log_artifact(reports / "recommend.json")
        for f in figs:
            tracking.log_artifact(f, "plots")
    print(f"[recommend] wrote {reports / 'recommend.json'} ({out['wall_s']:.1f} s)")
    return out


@hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    with exit_on_bad_input("recommend"):
        run(cfg)


if __name__ == "__main__":
    main()

"""Stage `validate`: CPT runs on DOS vs random vs low/middle/high perplexity windows at one token budget,
their domain and general test losses, and the data saving of DOS (`cptlaw.decide.arms`); and runs at the
usage-2 share r* and r* ± delta at the same domain budget (`cptlaw.decide.ratio_runs`).

    python -m cptlaw.stages.validate [validate.seeds=[0,1] validate.n_tokens=60000 ...]

Each arm is one CPT cell in-process (study `validate`, experiment `validate-<domain>`, skipped when a
FINISHED run with the same config hash exists). Inputs: `data/selected/<d>/selection.json` (stage `select`),
`reports/fits.json`, `reports/recommend.json`. Outputs: `reports/validate.json`, `reports/metrics/validate.json`,
`reports/plots/validate/*.png`, a summary MLflow run per domain (tag `cptlaw.stage=validate`).
"""

from __future__ import annotations

import json
import time
from typing import Any

import hydra
from omegaconf import DictConfig

from cptlaw import layout, tracking
from cptlaw.config import CONF_DIR, to_dict
from cptlaw.cpu import setup_cpu
from cptlaw.decide.arms import STAGE, validate_domain, validation_metrics
from cptlaw.decide.inputs import DecisionError, load_fits
from cptlaw.decide.ratio_runs import validate_ratio
from cptlaw.stages import exit_on_bad_input, write_json


def report(domain: str, out: dict[str, Any]) -> None:
    arms = "; ".join(
        f"{r['arm']} domain {r['domain_loss']:.4f} general {r['general_loss']:.4f}" for r in out["arms"]
    )
    print(f"[validate] {domain}: {arms}")
    s = out["saving"]
    if s.get("verdict"):
        print(f"[validate] {domain}: {s['verdict']}; saving from curves {s['curve'].get('fraction')}, "
              f"from law {s.get('law', {}).get('fraction')}")  # fmt: skip


def load_recommend(cfg: DictConfig) -> dict[str, Any]:
    path = layout.stage_output(cfg, "recommend")
    if not path.is_file():
        raise DecisionError(
            f"{path} does not exist: run the recommend stage (python -m cptlaw.stages.recommend)"
        )
    return json.loads(path.read_text())


def run(cfg: DictConfig) -> dict[str, Any]:
    t0 = time.perf_counter()
    setup_cpu(int(cfg.threads))
    fits = load_fits(layout.fits_file(cfg))
    ratio_domains = list(map(str, cfg[STAGE].ratio.domains or []))
    rec = load_recommend(cfg) if ratio_domains else {}
    tracking.configure_from(cfg.tracking)  # inputs first: a missing file fails before the store is touched
    out: dict[str, Any] = {"domains": {}, "config": to_dict(cfg[STAGE])}
    for d in map(str, cfg[STAGE].domains):
        out["domains"][d] = validate_domain(cfg, fits, d)
        report(d, out["domains"][d])
    out["usage2"] = {d: validate_ratio(cfg, fits, rec, d) for d in ratio_domains}
    for d, v in out["usage2"].items():
        print(f"[validate] {d}: usage 2: {v['verdict']}")
    out["wall_s"] = time.perf_counter() - t0
    write_json(layout.stage_output(cfg, STAGE), out)
    write_json(layout.metrics_file(cfg, STAGE), validation_metrics(out["domains"], out["usage2"]))
    print(f"[validate] wrote {layout.stage_output(cfg, STAGE)} ({out['wall_s']:.1f} s)")
    return out


@hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    with exit_on_bad_input(STAGE):
        run(cfg)


if __name__ == "__main__":
    main()

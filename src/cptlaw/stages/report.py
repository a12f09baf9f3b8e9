"""Stage `report`: `reports/report.md` (Markdown, relative links to the plots) from the outputs of the fit,
recommend, select and validate stages, plus an MLflow `report` run holding it.

    python -m cptlaw.stages.report

Only `reports/fits.json` is required (exit 2 with one line without it); a missing later output becomes a
sentence in the report naming the stage to run.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from cptlaw.config import CONF_DIR, config_hash
from cptlaw.stages import exit_on_bad_input

STAGE = "report"


def _json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def run(cfg: DictConfig) -> Path:
    import pandas as pd

    from cptlaw import tracking
    from cptlaw.decide.inputs import load_fits
    from cptlaw.decide.report import console_summary, render

    reports = Path(cfg.paths.reports)
    fits = load_fits(reports / "fits.json")
    sel_dir = Path(cfg.paths.selected)
    selections = {p.parent.name: json.loads(p.read_text()) for p in sorted(sel_dir.glob("*/selection.json"))}
    rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                         cwd=Path(__file__).parent).stdout.strip() or "unknown"  # fmt: skip
    prov: dict[str, Any] = {"profile": cfg.get("profile_name"), "git": rev, "fits": fits.get("config_hash")}
    rec = _json(reports / "recommend.json")
    table_file = reports / "fit_table.csv"
    table = pd.read_csv(table_file) if table_file.is_file() else None
    text = render(fits, rec, selections, _json(reports / "validate.json"), reports, prov,
                  int(cfg[STAGE].min_runs_warn), float(cfg[STAGE].r2_target), table)  # fmt: skip
    out = reports / "report.md"
    out.write_text(text)
    prefix = str(cfg.tracking.get("experiment_prefix") or "")
    tracking.configure_from(cfg.tracking)
    with tracking.run(f"{prefix}{STAGE}", run_name=STAGE, config_hash=config_hash(cfg[STAGE]),
                      tags={tracking.STAGE_TAG: STAGE}, artifact_root=cfg.tracking.get("artifact_root")):  # fmt: skip
        tracking.log_params({"profile": cfg.get("profile_name"), "git_rev": rev})
        tracking.log_artifact(out)
    print(f"[report] wrote {out}")
    print(console_summary(rec, selections, out, str(cfg.tracking.uri)))
    return out


@hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:

    with exit_on_bad_input("report"):
        run(cfg)


if __name__ == "__main__":
    main()

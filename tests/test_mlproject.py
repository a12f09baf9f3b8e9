"""`mlflow run . -e fit --env-manager local` runs the fit stage of MLproject into the run MLflow created:
exactly one new run, FINISHED, holding the fit artifacts (no duplicate run), with the profile's settings (MLflow
passes every parameter's default, so an entry point's parameter would silently override the profile)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from cptlaw import tracking
from tests.helpers.fit_runs import log_runs

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_mlflow_run_fit_entry_point_makes_one_run(mlflow_uri, tmp_path):
    n_cpt = log_runs(mlflow_uri)
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_uri, "CPTLAW_ROOT": str(tmp_path),
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}  # fmt: skip
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("mlflow")), "run", str(REPO), "-e", "fit", "--env-manager", "local",
         "--experiment-name", "fit", "-P", "profile=smoke", "-P", "runs=store"],
        capture_output=True, text=True, env=env, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    tracking.configure(mlflow_uri)
    fit_runs = tracking.runs_frame(["fit"], finished_only=False)
    assert len(fit_runs) == 1, fit_runs[["run_id", "status"]]
    assert fit_runs.loc[0, "status"] == "FINISHED"
    assert int(fit_runs.loc[0, "tags.cptlaw.n_source_runs"]) == n_cpt
    fits = json.loads((tmp_path / "reports" / "fits.json").read_text())
    smoke = OmegaConf.load(REPO / "conf" / "profile" / "smoke.yaml")
    assert fits["config"]["n_starts"] == smoke.fit.n_starts
    everything = tracking.runs_frame(["fit", "dcpt-medical", "dcpt-code", "ppl-regimes-medical", "Default"],
                                     finished_only=False)  # fmt: skip
    assert len(everything) == n_cpt + 1 + 1  # the CPT runs, the FAILED one, and the single fit run

"""Too few runs to fit: the fit stage says which runs to make, in one line, and writes nothing."""

import os
import subprocess
import sys


def test_fit_stage_on_an_empty_store_is_one_clear_line(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "CPTLAW_ROOT": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-m", "cptlaw.stages.fit", "domains=[medical]", "fit.runs=store", f"hydra.run.dir={tmp_path}/h"],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("fit: error: no FINISHED CPT runs") and "cpt_dcpt" in last
    assert not (tmp_path / "reports" / "fits.json").exists()

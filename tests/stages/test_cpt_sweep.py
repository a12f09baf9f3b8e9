"""Hydra multirun sweeps in a subprocess: a 2 x 2 grid lands 4 FINISHED runs nested under a parent run; a
sweep interrupted in job 2 leaves that run FAILED, and re-running it executes only the missing cells."""

import json
import os
import subprocess
import sys

import pytest

from tests.helpers.cpt_project import check_schema, overrides

pytestmark = pytest.mark.slow


def sweep(root, tmp_path, name, *extra):
    grid = [
        "+sweep=dcpt_grid", "cpt.sweeps.dcpt_grid.domains=[medical]", "cpt.sweeps.dcpt_grid.bases=[xs]",
        "cpt.sweeps.dcpt_grid.ratios=[0.5,1.0]", "cpt.sweeps.dcpt_grid.n_tokens=[640,1280]",
    ]  # fmt: skip
    args = [*overrides(root, n_tokens=None), *grid, f"hydra.sweep.dir={tmp_path}/{name}", *extra]
    env = {**os.environ, "CPTLAW_ROOT": str(root), "MLFLOW_TRACKING_URI": os.environ["MLFLOW_TRACKING_URI"]}
    env.pop("CPTLAW_PARENT_RUN_ID", None)
    return subprocess.run(
        [sys.executable, "-m", "cptlaw.stages.cpt", "-m", *args],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip


def runs(status=None):
    from cptlaw import tracking

    df = tracking.runs_frame(["dcpt-medical"], finished_only=False)
    df = df[df["tags.cptlaw.stage"] == "cpt"]
    return df if status is None else df[df["status"] == status]


def parents():
    from cptlaw import tracking

    df = tracking.runs_frame(["dcpt-medical"], finished_only=False)
    return df[df["tags.cptlaw.stage"] == "sweep"]


def test_sweep_2x2_joblib_lands_four_nested_runs(cpt_project, mlflow_uri, tmp_path):
    from cptlaw import tracking

    reports = tmp_path / "reports"
    proc = sweep(cpt_project, tmp_path, "s", "hydra/launcher=joblib2", f"paths.reports={reports}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    tracking.configure(mlflow_uri)
    done = runs("FINISHED")
    assert len(done) == 4 and done["params.config_hash"].nunique() == 4, proc.stdout
    cells = zip(done["params.r"].astype(float), done["params.n_tokens"].astype(int), strict=True)
    assert sorted(cells) == [(0.5, 640), (0.5, 1280), (1.0, 640), (1.0, 1280)]
    for _, row in done.iterrows():
        check_schema(row, tracking.metric_history(row.run_id, "domain_loss"))
    parent = parents()
    assert len(parent) == 1 and parent.iloc[0]["status"] == "FINISHED"
    assert set(done["tags.mlflow.parentRunId"]) == {parent.iloc[0].run_id}
    summary = json.loads((reports / "sweeps" / "dcpt_grid.json").read_text())
    assert summary["n_finished"] == 4 and {r["run_id"] for r in summary["runs"]} == set(done.run_id)
    assert json.loads((reports / "metrics" / "cpt_dcpt_grid.json").read_text())["n_cells"] == 4


def test_killed_sweep_resumes_without_duplicates(cpt_project, mlflow_uri, tmp_path):
    from cptlaw import tracking

    killed = sweep(cpt_project, tmp_path, "a", "cpt.fail_job=2", f"paths.reports={tmp_path}/r")
    assert killed.returncode != 0
    tracking.configure(mlflow_uri)
    assert len(runs("FINISHED")) == 2 and len(runs("FAILED")) == 1 and len(runs()) == 3  # job 3 never ran
    assert "injected failure" in runs("FAILED").iloc[0]["tags.cptlaw.error"]
    assert parents().iloc[0]["status"] == "FAILED"
    first = set(runs("FINISHED").run_id)

    resumed = sweep(cpt_project, tmp_path, "b", f"paths.reports={tmp_path}/r")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert resumed.stdout.count("skip: finished as run") == 2
    done = runs("FINISHED")
    assert len(done) == 4 and done["params.config_hash"].nunique() == 4 and first <= set(done.run_id)
    assert len(runs("FAILED")) == 1 and len(runs("RUNNING")) == 0
    assert sorted(parents()["status"]) == ["FAILED", "FINISHED"]


def test_identical_cells_of_one_parallel_sweep_train_once(cpt_project, mlflow_uri, tmp_path):
    """Two jobs with the same config hash start together (joblib, 2 processes): the second waits on the
    first's lock, then skips it."""
    from cptlaw import tracking

    proc = sweep(cpt_project, tmp_path, "dup", "hydra/launcher=joblib2", "cpt.sweeps.dcpt_grid.ratios=[0.5,0.5]",
                 "cpt.sweeps.dcpt_grid.n_tokens=[640]", f"paths.reports={tmp_path}/r")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    tracking.configure(mlflow_uri)
    assert len(runs("FINISHED")) == 1 and len(runs()) == 1, proc.stdout
    assert proc.stdout.count("skip: finished as run") == 1

"""A team set-up: a real `mlflow server` (SQLite or PostgreSQL backend, served artifacts) on 127.0.0.1; a
smoke CPT run tracked over HTTP and read back through the REST API. Servers are stopped by their PID."""

import json
import os
import subprocess
import sys
import urllib.request

import pytest
from hydra import compose, initialize_config_dir

from cptlaw.config import CONF_DIR
from tests.helpers.cpt_project import overrides

pytestmark = pytest.mark.slow


def _get(url: str, payload: dict | None = None) -> dict:
    req = urllib.request.Request(
        url,
        data=None if payload is None else json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read() or b"{}")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def mlflow_server(request, tmp_path, mlflow_server_factory):
    """`mlflow server` on 127.0.0.1 with a SQLite or a PostgreSQL backend store (served artifacts)."""
    if request.param == "sqlite":
        backend = f"sqlite:///{tmp_path}/server.db"
    else:
        backend = request.getfixturevalue("postgres_uri")
    return mlflow_server_factory(backend).url


def test_cpt_run_tracked_on_http_server(cpt_project, mlflow_server, monkeypatch):
    from cptlaw.stages.cpt import run

    monkeypatch.setenv("CPTLAW_ROOT", str(cpt_project))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[*overrides(cpt_project, r=0.5), "seed=7"])
    assert cfg.tracking.uri == mlflow_server
    out = run(cfg)
    assert out["status"] == "finished"

    api = mlflow_server + "/api/2.0/mlflow"
    exp = _get(f"{api}/experiments/get-by-name?experiment_name=dcpt-medical")["experiment"]
    found = _get(f"{api}/runs/search", {"experiment_ids": [exp["experiment_id"]]})["runs"]
    assert [r["info"]["run_id"] for r in found] == [out["run_id"]]
    data = found[0]["data"]
    params = {p["key"]: p["value"] for p in data["params"]}
    metrics = {m["key"]: m["value"] for m in data["metrics"]}
    assert found[0]["info"]["status"] == "FINISHED"
    assert params["r"] == "0.5" and params["domain"] == "medical"
    assert metrics["domain_loss_final"] < metrics["k1"]
    history = _get(f"{api}/metrics/get-history?run_id={out['run_id']}&metric_key=domain_loss")["metrics"]
    assert len(history) >= 3 and min(m["step"] for m in history) == 0
    # the resolved config went to the server's artifact store
    arts = _get(f"{api}/artifacts/list?run_id={out['run_id']}")["files"]
    assert "config.yaml" in {a["path"] for a in arts}


def test_unreachable_server_fails_before_training(cpt_project, tmp_path):
    env = {**os.environ, "CPTLAW_ROOT": str(cpt_project), "MLFLOW_TRACKING_URI": "http://127.0.0.1:9"}
    proc = subprocess.run(
        [sys.executable, "-m", "cptlaw.stages.cpt", *overrides(cpt_project),
         f"hydra.run.dir={tmp_path}/h"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("cpt: error:")]
    assert len(errors) == 1 and "unreachable" in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


@pytest.mark.slow
def test_fit_stage_fits_from_the_server(mlflow_server, tmp_path, monkeypatch):
    """The fit stage reads its runs straight from the tracking server (SQLite or PostgreSQL behind it)."""
    from cptlaw.stages.fit import run
    from tests.helpers.fit_runs import log_runs

    n_runs = log_runs(mlflow_server)
    monkeypatch.setenv("CPTLAW_ROOT", str(tmp_path))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[
            "profile=smoke", "domains=[medical]", "fit.runs=store", "fit.n_starts=8", "fit.n_refine=4", "fit.n_polish=2",
            "fit.bootstrap=0", "fit.ppl_stats=[ppl]", "fit.holdouts.domain=[]", "fit.holdouts.general=[]",
            "fit.holdouts.ppl=[]", "fit.holdouts.cross=[]", "fit.plots=false",
        ])  # fmt: skip
    assert cfg.tracking.uri == mlflow_server
    fits = run(cfg)
    assert fits["n_source_runs"] == n_runs - 12  # the 12 code runs are not read (domains=[medical]) ...
    assert fits["targets"]["domain_medical"]["fits"]["dcpt"]["r2"] > 0.99
    api = mlflow_server + "/api/2.0/mlflow"
    exp = _get(f"{api}/experiments/get-by-name?experiment_name=fit")["experiment"]
    found = _get(f"{api}/runs/search", {"experiment_ids": [exp["experiment_id"]]})["runs"]
    assert (
        len(found) == 1 and found[0]["info"]["status"] == "FINISHED"
    )  # ... and the fit run went to the server

"""Faults of a CPT sweep, each bounded in time and on 127.0.0.1 only:

- the MLflow tracking server stopped while a cell trains: with MLflow's client retries cut short the cell
  fails with one line naming the server and the sweep stops; with the default retries and the server
  restarted on the same port the cell goes on; either way a re-run leaves one FINISHED run per cell;
- two identical sweeps launched at once against one store (SQLite, PostgreSQL): each cell trains once;
- a truncated corpus or score file, a base model without its weights file: one line, exit 2, before any
  run; the FINISHED run already in the store and its artifacts stay as they were.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers.cpt_project import overrides

pytestmark = pytest.mark.slow

GRID = ["+sweep=dcpt_grid", "cpt.sweeps.dcpt_grid.domains=[medical]", "cpt.sweeps.dcpt_grid.bases=[xs]"]


def _sweep_args(root, tmp_path, name, ratios, n_tokens, *extra):
    return [sys.executable, "-m", "cptlaw.stages.cpt", "-m", *overrides(root, n_tokens=None), *GRID,
            f"cpt.sweeps.dcpt_grid.ratios={ratios}", f"cpt.sweeps.dcpt_grid.n_tokens={n_tokens}",
            f"hydra.sweep.dir={tmp_path}/{name}", f"paths.reports={tmp_path}/reports-{name}", *extra]  # fmt: skip


def _env(root, uri, **extra):
    env = {**os.environ, "CPTLAW_ROOT": str(root), "MLFLOW_TRACKING_URI": uri, **extra}
    env.pop("CPTLAW_PARENT_RUN_ID", None)
    return env


def _runs(status=None):
    from cptlaw import tracking

    df = tracking.runs_frame(["dcpt-medical"], finished_only=False)
    df = df[df["tags.cptlaw.stage"] == "cpt"] if len(df) else df
    return df if status is None or not len(df) else df[df["status"] == status]


def _one_finished_per_cell(n_cells):
    """Every cell has exactly one FINISHED run (by config hash): none lost, none trained twice."""
    done = _runs("FINISHED")
    per_hash = done["params.config_hash"].value_counts()
    assert len(per_hash) == n_cells and set(per_hash) == {1}, per_hash.to_dict()
    return done


def _summary(tmp_path, name):
    return json.loads((tmp_path / f"reports-{name}" / "sweeps" / "dcpt_grid.json").read_text())


def _wait_training(proc, n_tokens, timeout=300):
    """The RUNNING run of the `n_tokens` cell once it has logged an evaluation (it is training)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        df = _runs("RUNNING")
        if len(df) and "metrics.domain_loss" in df:
            df = df[(df["params.n_tokens"] == str(n_tokens)) & df["metrics.domain_loss"].notna()]
            if len(df):
                return df.iloc[0]
        assert proc.poll() is None, proc.communicate()[0][-3000:]
        time.sleep(0.5)
    raise AssertionError(f"the D={n_tokens} cell did not start training within {timeout}s")


# ------------------------------------------------------------------ the tracking server goes away


# 3 cells in this order: a short one, the long one (stopped mid-run), a short one after it
SERVER_CELLS = {"ratios": "[1.0]", "n_tokens": "[640,20000,1280]"}


def test_server_stopped_mid_sweep_fails_one_line_and_rerun_completes(
    cpt_project, tmp_path, mlflow_server_factory, monkeypatch
):
    """MLflow's retries cut short (what the default ~4 minutes of retries end in): the in-flight cell fails
    with one `cpt: error:` line naming the server, the sweep stops (exit 2), its run is left RUNNING; once the
    server is back, a re-run skips the finished cell, marks the orphan KILLED and trains the rest."""
    from cptlaw import tracking

    server = mlflow_server_factory(f"sqlite:///{tmp_path}/server.db")  # the client's side: any backend store
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.url)
    short_retries = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "0",
                     "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}  # fmt: skip
    env = _env(cpt_project, server.url, **short_retries)
    first = subprocess.Popen(_sweep_args(cpt_project, tmp_path, "a", **SERVER_CELLS), env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    tracking.configure(server.url)
    victim = _wait_training(first, 20000)
    finished_before = set(_runs("FINISHED").run_id)
    server.stop()
    out, err = first.communicate(timeout=300)
    assert first.returncode == 2, (out[-2000:], err[-3000:])
    assert "Traceback" not in err, err[-3000:]
    errors = [line for line in err.splitlines() if line.startswith("cpt: error:")]
    assert len(errors) == 1, err[-3000:]
    assert f"tracking server {server.url} became unreachable during run {victim.run_id}" in errors[0]

    server.start()  # same port, same backend store
    tracking.configure(server.url)
    assert tracking.MlflowClient().get_run(victim.run_id).info.status == "RUNNING"
    assert finished_before == set(_runs("FINISHED").run_id) and len(finished_before) == 1
    again = subprocess.run(_sweep_args(cpt_project, tmp_path, "b", **SERVER_CELLS), env=env,
                           capture_output=True, text=True, timeout=600)  # fmt: skip
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"marked orphaned run {victim.run_id} KILLED" in again.stdout
    done = _one_finished_per_cell(3)
    assert finished_before <= set(done.run_id)  # nothing finished was lost or redone
    killed = tracking.MlflowClient().get_run(victim.run_id)
    assert killed.info.status == "KILLED" and "killed" in killed.data.tags[tracking.KILLED_TAG]
    assert len(_runs()) == 4  # 3 FINISHED + the orphan
    summary = _summary(tmp_path, "b")
    assert summary["n_finished"] == 2 and summary["n_skipped"] == 1, summary
    # the first sweep's parent run, left RUNNING by a process that could not reach its server, is ended
    parents = tracking.runs_frame(["dcpt-medical"], finished_only=False)
    parents = parents[parents["tags.cptlaw.stage"] == "sweep"]
    assert sorted(parents["status"]) == ["FINISHED", "KILLED"], parents[["run_id", "status"]]


def test_server_restarted_mid_sweep_client_retries(cpt_project, tmp_path, mlflow_server_factory, monkeypatch):
    """The default client retries (back-off 2, 4, 8, ... s) outlast a restart of the server on the same port:
    the in-flight cell goes on and finishes; the sweep completes with one FINISHED run per cell, and a re-run
    trains nothing."""
    from cptlaw import tracking

    server = mlflow_server_factory(f"sqlite:///{tmp_path}/server.db")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.url)
    env = _env(cpt_project, server.url)
    first = subprocess.Popen(_sweep_args(cpt_project, tmp_path, "a", **SERVER_CELLS), env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    tracking.configure(server.url)
    victim = _wait_training(first, 20000)
    server.stop()
    time.sleep(2)
    server.start()
    out, err = first.communicate(timeout=600)
    assert first.returncode == 0, (out[-2000:], err[-3000:])
    tracking.configure(server.url)
    done = _one_finished_per_cell(3)
    assert victim.run_id in set(done.run_id) and len(_runs()) == 3  # the in-flight run itself finished
    assert len(tracking.metric_history(victim.run_id, "domain_loss")) >= 3
    assert _summary(tmp_path, "a")["n_finished"] == 3

    again = subprocess.run(_sweep_args(cpt_project, tmp_path, "b", **SERVER_CELLS), env=env,
                           capture_output=True, text=True, timeout=300)  # fmt: skip
    assert again.returncode == 0, again.stderr[-3000:]
    assert _summary(tmp_path, "b")["n_skipped"] == 3 and len(_runs()) == 3


# ------------------------------------------------------------------ two identical sweeps at once


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request, tmp_path):
    """One tracking store that two processes write to directly: a fresh SQLite file or PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    return request.getfixturevalue("postgres_uri")


def test_two_identical_sweeps_at_once_train_each_cell_once(cpt_project, tmp_path, store, monkeypatch):
    """Two `-m` sweeps of the same 2 cells start together on one fresh store: a cell is trained by whichever
    sweep takes its lock first, the other waits and skips it."""
    from cptlaw import tracking

    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    extra = [] if store.startswith("sqlite") else [f"tracking.artifact_root={tmp_path}/artifacts"]
    env = _env(cpt_project, store)
    procs = [
        subprocess.Popen(_sweep_args(cpt_project, tmp_path, name, "[0.5,1.0]", "[640]", *extra), env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
        for name in ("a", "b")
    ]  # fmt: skip
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, (out[-2000:], err[-3000:])
    tracking.configure(store)
    _one_finished_per_cell(2)
    assert len(_runs()) == 2  # no FAILED or RUNNING leftovers either
    summaries = [_summary(tmp_path, name) for name in ("a", "b")]
    assert sum(s["n_finished"] for s in summaries) == 2 and sum(s["n_skipped"] for s in summaries) == 2


# ------------------------------------------------------------------ truncated or missing inputs


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _files_digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.md5(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


BAD = {
    "corpus": ("data/corpora/medical/train.parquet", _truncate, r"corrupt corpus split \S+medical/train.parquet"
               r" \(.+\): re-run the corpora stage \(then tokenize\)"),
    "scores": ("data/scores/medical/xs.parquet", _truncate, r"corrupt perplexity scores \S+medical/xs.parquet "
               r"\(.+\): re-run the score stage"),
    "weights": ("models/base/xs/model.safetensors", Path.unlink, r"base model \S+/models/base/xs has no weights "
                r"file \(model.safetensors or pytorch_model.bin\): re-run the pretrain stage .*"),
}  # fmt: skip


def test_truncated_or_missing_inputs_fail_one_line_before_any_run(
    cpt_project, mlflow_uri, tmp_path, monkeypatch, capsys
):
    """Each fault in a copy of the fixture project that already has one FINISHED run: exit 2, one stderr
    line naming the file and the fix, no new run; the FINISHED run and its artifacts are untouched."""
    import re

    from hydra import compose, initialize_config_dir

    from cptlaw import tracking
    from cptlaw.config import CONF_DIR
    from cptlaw.stages import exit_on_bad_input
    from cptlaw.stages.cpt import run

    root = tmp_path / "proj"
    shutil.copytree(cpt_project, root, ignore=shutil.ignore_patterns("outputs", "mlruns"))
    monkeypatch.setenv("CPTLAW_ROOT", str(root))
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=overrides(root))
    earlier = run(cfg)
    assert earlier["status"] == "finished"
    client = tracking.MlflowClient()
    before = client.get_run(earlier["run_id"])
    artifacts = tmp_path / "mlruns" / "artifacts"
    arts_before = _files_digest(artifacts)
    assert any(name.endswith("loss_curve.png") for name in arts_before)

    env = {**os.environ, "CPTLAW_ROOT": str(root)}
    for name, (rel, damage, message) in BAD.items():
        path = root / rel
        kept = path.read_bytes()
        damage(path)
        try:
            if name == "corpus":  # the command line once; the other faults in this process (~5 s less each)
                proc = subprocess.run(
                    [sys.executable, "-m", "cptlaw.stages.cpt", *overrides(root, r=0.5), f"hydra.run.dir={tmp_path}/{name}"],
                    capture_output=True, text=True, env=env, timeout=300,
                )  # fmt: skip
                code, out, err = proc.returncode, proc.stdout, proc.stderr
            else:
                capsys.readouterr()  # what earlier runs printed
                with pytest.raises(SystemExit) as exit_, exit_on_bad_input("cpt"):
                    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
                        run(compose("config", overrides=overrides(root, r=0.5)))
                (out, err), code = capsys.readouterr(), exit_.value.code
        finally:
            path.write_bytes(kept)
        lines = [line for line in err.splitlines() if line.strip()]
        assert code == 2 and len(lines) == 1, (name, code, err[-3000:])
        assert re.fullmatch(f"cpt: error: {message}", lines[0]), (name, lines[0])
        assert "[cpt] finished" not in out and "Traceback" not in out, name

    runs = tracking.runs_frame(["dcpt-medical"], finished_only=False)
    assert list(runs.run_id) == [earlier["run_id"]]  # no new run, failed or otherwise
    after = client.get_run(earlier["run_id"])
    assert after.info.status == "FINISHED" and after.info.end_time == before.info.end_time
    assert after.data.metrics == before.data.metrics and after.data.params == before.data.params
    assert _files_digest(artifacts) == arts_before

"""The tracking module against a real SQLite MLflow store."""

import pytest

from cptlaw import tracking


def test_run_finishes_and_is_found_by_config_hash(mlflow_uri):
    tracking.configure(mlflow_uri)
    with tracking.run("exp-a", run_name="one", config_hash="abc123", params={"r": 0.5}) as active:
        tracking.log_metrics({"domain_loss": 3.0}, step=0)
        tracking.log_metrics({"domain_loss": 2.5}, step=1000)
        run_id = active.info.run_id
    assert tracking.find_finished("exp-a", "abc123") == run_id
    assert tracking.find_finished("exp-a", "other") is None
    assert tracking.metric_history(run_id, "domain_loss") == [(0, 3.0), (1000, 2.5)]
    frame = tracking.runs_frame(["exp-a"])
    assert list(frame["run_id"]) == [run_id]
    assert frame.loc[0, "params.r"] == "0.5"


def test_failed_run_is_marked_failed_not_running(mlflow_uri):
    tracking.configure(mlflow_uri)
    with pytest.raises(ValueError, match="boom"):
        with tracking.run("exp-b", config_hash="h1"):
            raise ValueError("boom")
    frame = tracking.runs_frame(["exp-b"], finished_only=False)
    assert list(frame["status"]) == ["FAILED"]
    assert frame.loc[0, "tags.cptlaw.error"] == "ValueError: boom"
    assert tracking.find_finished("exp-b", "h1") is None


def test_nested_under_parent(mlflow_uri, monkeypatch):
    tracking.configure(mlflow_uri)
    with tracking.run("exp-c", run_name="parent") as parent:
        parent_id = parent.info.run_id
    monkeypatch.setenv("CPTLAW_PARENT_RUN_ID", parent_id)
    with tracking.run("exp-c", run_name="child"):
        pass
    frame = tracking.runs_frame(["exp-c"])
    child = frame[frame["tags.mlflow.runName"] == "child"].iloc[0]
    assert child["tags.mlflow.parentRunId"] == parent_id


def test_unreachable_server_is_one_clear_line():
    with pytest.raises(tracking.TrackingError, match="unreachable.*unset MLFLOW_TRACKING_URI"):
        tracking.configure("http://127.0.0.1:9", None)


def test_relative_sqlite_uri_rejected():
    with pytest.raises(tracking.TrackingError, match="absolute"):
        tracking.configure("sqlite:///mlflow.db")


def test_launcher_run_is_reused_once_then_parent(mlflow_uri, monkeypatch):
    """Under `mlflow run`: the first run reuses MLFLOW_RUN_ID, later ones nest under it (no duplicates)."""
    tracking.configure(mlflow_uri)
    exp = tracking.experiment_id("launched")
    import mlflow

    launcher = mlflow.MlflowClient().create_run(exp).info.run_id
    monkeypatch.setenv("MLFLOW_RUN_ID", launcher)
    monkeypatch.setattr("cptlaw.tracking._LAUNCHER_USED", [])
    with tracking.run("launched", params={"size": "s"}) as first:
        assert first.info.run_id == launcher
    with tracking.run("launched", params={"size": "m"}) as second:
        assert second.info.run_id != launcher
    frame = tracking.runs_frame(["launched"])
    assert len(frame) == 2
    child = frame[frame["run_id"] != launcher].iloc[0]
    assert child["tags.mlflow.parentRunId"] == launcher


def _log_same_dataset(uri: str, source: str, lock, barrier, delay: float) -> None:
    """One sweep cell: opens the store (staggered: some while another creates it), makes its run, then logs the
    dataset every cell shares at the same moment as the others."""
    import time

    time.sleep(delay)
    tracking.configure(uri)
    with lock:  # the experiment exists once (its own get-or-create is not what this test is about)
        tracking.experiment_id("race")
    with tracking.run("race"):
        barrier.wait(timeout=60)
        tracking.log_dataset(source, name="medical:random:r=0.5", digest="cc186d6c941b")


def test_runs_opening_a_new_store_and_logging_one_dataset_at_once_all_succeed(mlflow_uri, tmp_path):
    """Parallel cells of a sweep on a new SQLite store: one creates its schema while the others wait (those
    arriving mid-creation failed with "duplicate column name"); then they log the same dataset together, and
    the store's read-then-insert lets two insert it: the loser must link to the winner's row instead of
    failing its run (seen in a joblib sweep)."""
    import multiprocessing as mp

    ctx, n = mp.get_context("fork"), 6  # forked before this process opens the store: each child has its own
    lock, barrier = ctx.Lock(), ctx.Barrier(n)
    args = [(mlflow_uri, str(tmp_path), lock, barrier, 0.15 * i) for i in range(n)]
    procs = [ctx.Process(target=_log_same_dataset, args=a) for a in args]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0] * n
    tracking.configure(mlflow_uri)
    runs = tracking.MlflowClient().search_runs([tracking.experiment_id("race")])
    assert len(runs) == n
    assert all([d.dataset.name for d in r.inputs.dataset_inputs] == ["medical:random:r=0.5"] for r in runs)

"""Run lifecycle after a SIGKILL: the killed run is marked KILLED (with the reason) when its cell is resumed,
and the cell ends with exactly one FINISHED run."""

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.helpers.cpt_project import overrides


def _running_run(pid: int) -> str:
    """A RUNNING run of this host and `pid`, as a process leaves behind when it is SIGKILLed."""
    from cptlaw import tracking

    exp = tracking.experiment_id("dcpt-medical")
    tags = tracking.process_tags() | {tracking.PID_TAG: str(pid), tracking.CONFIG_HASH_TAG: "h1"}
    if pid != os.getpid():
        tags[tracking.PID_START_TAG] = ""
    return tracking.MlflowClient().create_run(exp, tags=tags).info.run_id


def test_mark_orphans_kills_only_dead_processes(mlflow_uri):
    from cptlaw import tracking

    tracking.configure(mlflow_uri)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    orphan = _running_run(dead.pid)
    alive = _running_run(os.getpid())
    assert tracking.mark_orphans("dcpt-medical", "h1") == [orphan]
    client = tracking.MlflowClient()
    assert client.get_run(orphan).info.status == "KILLED"
    assert "ended without closing the run" in client.get_run(orphan).data.tags[tracking.KILLED_TAG]
    assert client.get_run(alive).info.status == "RUNNING"
    assert tracking.mark_orphans("dcpt-medical", "other-hash") == []


@pytest.mark.slow
def test_sigkilled_cell_resumes_to_one_finished_and_one_killed(cpt_project, mlflow_uri, tmp_path):
    from cptlaw import tracking

    args = [sys.executable, "-m", "cptlaw.stages.cpt", *overrides(cpt_project, n_tokens=80_000),
            "cpt.eval_points=2", f"hydra.run.dir={tmp_path}/run"]  # fmt: skip
    env = {**os.environ, "CPTLAW_ROOT": str(cpt_project)}
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    tracking.configure(mlflow_uri)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # wait until the run exists and is training
        df = tracking.runs_frame(["dcpt-medical"], finished_only=False)
        if len(df) and "metrics.domain_loss" in df and df["metrics.domain_loss"].notna().any():
            break
        assert proc.poll() is None, proc.stdout.read()
        time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    df = tracking.runs_frame(["dcpt-medical"], finished_only=False)
    assert list(df["status"]) == ["RUNNING"]  # what a SIGKILL leaves behind
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "marked orphaned run" in done.stdout
    df = tracking.runs_frame(["dcpt-medical"], finished_only=False)
    assert sorted(df["status"]) == ["FINISHED", "KILLED"]
    assert df["tags.cptlaw.config_hash"].nunique() == 1
    killed = df[df["status"] == "KILLED"].iloc[0]
    assert "killed" in killed["tags.cptlaw.killed_reason"]

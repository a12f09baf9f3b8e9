"""SLURM for real: a one-node cluster on 127.0.0.1 (slurmctld, slurmd, munge, slurmdbd; tests/conftest.py
`slurm_cluster`). `hydra/launcher=slurm` (hydra-submitit-launcher) runs a smoke D-CPT sweep as one array job,
every task lands in MLflow and the fit stage fits from the runs; a task SIGKILLed mid-run and a re-submitted
sweep: only the missing cell runs, no duplicate, no FINISHED run lost, the orphan marked KILLED."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.helpers.cpt_project import overrides

pytestmark = [pytest.mark.slow, pytest.mark.slurm]

# the test cluster's node: 2 CPUs, no GPU; one CPU and 1 GB per task, 2 tasks at once
SLURM = ["hydra/launcher=slurm", "hydra.launcher.gpus_per_node=null", "hydra.launcher.cpus_per_task=1",
         "hydra.launcher.mem_gb=1", "hydra.launcher.timeout_min=15", "hydra.launcher.array_parallelism=2",
         "threads=1"]  # fmt: skip


def _env(root, slurm_cluster):
    env = {**os.environ, "CPTLAW_ROOT": str(root), **slurm_cluster}
    env.pop("CPTLAW_PARENT_RUN_ID", None)
    return env


def _sweep_args(root, tmp_path, name, n_tokens="[640,1280]", ratios="[0.5,1.0]"):
    grid = [
        "+sweep=dcpt_grid", "cpt.sweeps.dcpt_grid.domains=[medical]", "cpt.sweeps.dcpt_grid.bases=[xs]",
        f"cpt.sweeps.dcpt_grid.ratios={ratios}", f"cpt.sweeps.dcpt_grid.n_tokens={n_tokens}",
    ]  # fmt: skip
    return [sys.executable, "-m", "cptlaw.stages.cpt", "-m", *overrides(root, n_tokens=None), *grid, *SLURM,
            f"hydra.sweep.dir={tmp_path}/{name}", f"paths.reports={tmp_path}/reports"]  # fmt: skip


def _runs(status=None):
    from cptlaw import tracking

    df = tracking.runs_frame(["dcpt-medical"], finished_only=False)
    df = df[df["tags.cptlaw.stage"] == "cpt"] if len(df) else df
    return df if status is None or not len(df) else df[df["status"] == status]


def _sacct(slurm_cluster) -> list[list[str]]:
    out = subprocess.run(["sacct", "-X", "-n", "--parsable2", "-o", "JobID,JobName,State"], capture_output=True,
                         text=True, env={**os.environ, **slurm_cluster}, timeout=30, check=True).stdout  # fmt: skip
    return [line.split("|") for line in out.splitlines() if line]


def _wait_queue_empty(slurm_cluster, timeout=180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        q = subprocess.run(
            ["squeue", "-h"], capture_output=True, text=True, env={**os.environ, **slurm_cluster}
        )
        if q.returncode == 0 and not q.stdout.strip():
            return
        time.sleep(1)
    raise AssertionError(f"SLURM queue not empty after {timeout}s")


def _accounted_jobs(slurm_cluster, before: set[str], timeout=120) -> list[list[str]]:
    """The jobs submitted since `before`, once accounting has them all in a final state (slurmdbd records a
    task's end a moment after squeue drops it; on a loaded machine, seconds after)."""
    deadline = time.monotonic() + timeout
    while True:
        jobs = [j for j in _sacct(slurm_cluster) if j[0] not in before]
        if all(j[2] not in ("PENDING", "RUNNING", "COMPLETING") for j in jobs) or time.monotonic() > deadline:
            return jobs
        time.sleep(1)


def test_array_sweep_with_a_sigkilled_task_resubmits_only_the_missing_cell_and_fits(
    cpt_project, mlflow_uri, tmp_path, slurm_cluster
):
    """One array job whose long task is SIGKILLed mid-run; the re-submitted sweep (a second array job, every
    task COMPLETED in SLURM's accounting) trains only that cell, each run carries its array task id, and the
    fit stage fits from the runs."""
    from cptlaw import tracking

    env = _env(cpt_project, slurm_cluster)
    # 3 cells, 2 tasks at a time: D = 640 and 1,280 take a few seconds, the D = 20,000 one ~15 s (killed). The
    # long one is task 0, so it is killed early in the job: submitit polls SLURM at half the job's age
    cells = {"n_tokens": "[20000,640,1280]", "ratios": "[1.0]"}
    args = _sweep_args(cpt_project, tmp_path, "a", **cells)
    first = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    tracking.configure(mlflow_uri)
    victim, deadline = None, time.monotonic() + 300
    while victim is None and time.monotonic() < deadline:  # a long cell that is training (has evaluations)
        df = _runs("RUNNING")
        if len(df) and "metrics.domain_loss" in df:
            df = df[(df["params.n_tokens"] == "20000") & df["metrics.domain_loss"].notna()]
            victim = df.iloc[0] if len(df) else None
        assert first.poll() is None or victim is not None, first.stdout.read()[-3000:]
        time.sleep(0.5)
    assert victim is not None, "no long cell started training"
    # SIGKILL the task's training process (what the OOM killer or a node failure does); `scancel -s KILL`
    # would send SIGTERM first, which lets the run end itself FAILED
    assert victim["tags.cptlaw.slurm_job"].count("_") == 1
    os.kill(int(victim["tags.cptlaw.pid"]), signal.SIGKILL)
    out, _ = first.communicate(timeout=300)
    assert first.returncode != 0, out[-2000:]  # the launcher reports the failed task
    _wait_queue_empty(slurm_cluster)
    finished_before = set(_runs("FINISHED").run_id)
    assert (
        len(finished_before) == 2 and tracking.MlflowClient().get_run(victim.run_id).info.status == "RUNNING"
    )

    before = {j[0] for j in _sacct(slurm_cluster)}
    again = subprocess.run(_sweep_args(cpt_project, tmp_path, "b", **cells), env=env,
                           capture_output=True, text=True, timeout=600)  # fmt: skip
    assert again.returncode == 0, again.stderr[-3000:]
    _wait_queue_empty(slurm_cluster)  # a task's result file can appear while SLURM still says RUNNING
    jobs = _accounted_jobs(slurm_cluster, before)
    array = {j[0].split("_")[0] for j in jobs}
    assert len(array) == 1 and len(jobs) == 3 and {j[2] for j in jobs} == {"COMPLETED"}, jobs  # one array job
    done = _runs("FINISHED")
    assert len(done) == 3 and done["params.config_hash"].nunique() == 3  # each cell once
    assert finished_before <= set(done.run_id)  # nothing finished was lost or redone
    killed = tracking.MlflowClient().get_run(victim.run_id)
    assert killed.info.status == "KILLED" and "killed" in killed.data.tags[tracking.KILLED_TAG]
    assert len(_runs()) == 4  # 3 FINISHED + the orphan, nothing else
    summary = json.loads((tmp_path / "reports" / "sweeps" / "dcpt_grid.json").read_text())
    assert summary["n_finished"] == 1 and summary["n_skipped"] == 2, summary
    retrained = done[~done.run_id.isin(finished_before)]
    assert retrained["tags.cptlaw.slurm_job"].iloc[0].split("_")[0] == next(iter(array))

    fit = subprocess.run(
        [sys.executable, "-m", "cptlaw.stages.fit", f"paths.root={cpt_project}", "profile=smoke", "domains=[medical]",
         f"paths.reports={tmp_path}/reports", "fit.runs=store", "fit.bootstrap=0", "fit.n_starts=8", "fit.plots=false",
         f"hydra.run.dir={tmp_path}/fit"],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert fit.returncode == 0, fit.stderr[-3000:]
    fits = json.loads((tmp_path / "reports" / "fits.json").read_text())
    assert fits["n_source_runs"] == 3 and "domain_medical" in fits["targets"], list(fits["targets"])

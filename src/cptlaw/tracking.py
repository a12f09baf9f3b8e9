"""The one module that talks to MLflow: store URI, experiments, run contexts, skip-if-finished, runs → table.

Every other module logs through the helpers here (or through the Lightning logger made here), so the
tracking backend — a local SQLite file by default, an HTTP tracking server for teams — is one config choice.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from cptlaw.errors import TrackingError

PARENT_TAG = "mlflow.parentRunId"
CONFIG_HASH_TAG = "cptlaw.config_hash"
STAGE_TAG = "cptlaw.stage"
HOST_TAG, PID_TAG, PID_START_TAG = "cptlaw.host", "cptlaw.pid", "cptlaw.pid_start"
KILLED_TAG = "cptlaw.killed_reason"
SLURM_TAG = "cptlaw.slurm_job"
_LAUNCHER_USED: list[str] = []  # the `mlflow run` launcher's run, once this process has used it
_CONFIGURED: list[
    str
] = []  # the URI `configure` set; runs are refused before it (MLflow would use ./mlflow.db)


def _unreachable(uri: str, timeout: float = 5.0) -> str | None:
    """Why the tracking server at `uri` does not answer its health check, or None (it does, or `uri` is no
    server)."""
    if not uri.startswith(("http://", "https://")):
        return None
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout) as resp:
            resp.read()
    except (urllib.error.URLError, OSError) as exc:
        return str(getattr(exc, "reason", exc))
    return None


def _check_reachable(uri: str, timeout: float = 5.0) -> None:
    reason = _unreachable(uri, timeout)
    if reason is not None:
        raise TrackingError(
            f"MLflow tracking server {uri} is unreachable ({reason}): start it "
            f"(`mlflow server --host 127.0.0.1 --port 5000 --workers 1 ...`) or unset MLFLOW_TRACKING_URI "
            f"to use the local SQLite store"
        ) from None


def _lost_server(run_id: str) -> TrackingError | None:
    """The one-line error for a run whose tracking server went away while it ran (MLflow's client retries
    failed requests first: `MLFLOW_HTTP_REQUEST_MAX_RETRIES`, `MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR`), or None
    when the server answers (the failure was something else)."""
    uri = mlflow.get_tracking_uri()
    reason = _unreachable(uri)
    if reason is None:
        return None
    return TrackingError(
        f"MLflow tracking server {uri} became unreachable during run {run_id} ({reason}; MLflow's retries "
        f"ran out): the run stays RUNNING in the store; restart the server and re-run the same command: "
        f"finished cells are skipped and this cell's run is marked KILLED"
    )


def configure(uri: str, artifact_root: str | None = None) -> str:
    """Point MLflow at `uri`, creating the SQLite directory; fail fast if an HTTP server is down."""
    if uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///") :])
        if not db.is_absolute():
            raise TrackingError(f"tracking.uri must be an absolute sqlite:////path URI, got {uri}")
        db.parent.mkdir(parents=True, exist_ok=True)
        _init_sqlite(uri, db)
    _check_reachable(uri)
    mlflow.set_tracking_uri(uri)
    _CONFIGURED[:] = [uri]
    os.environ["MLFLOW_TRACKING_URI"] = uri  # child processes (joblib, ddp) inherit the store
    if artifact_root:
        Path(artifact_root).mkdir(parents=True, exist_ok=True)
    return uri


def _init_sqlite(uri: str, db: Path) -> None:
    """Create a new SQLite store's schema in one process at a time: MLflow migrates a fresh database on first
    use, and two sweeps starting together on a new store otherwise race ("table ... already exists",
    "duplicate column name"). The file appears as soon as the first process connects, long before its
    migration ends, so every process takes the lock (a store that is complete answers at once)."""
    import logging

    from filelock import FileLock

    loggers = [logging.getLogger(n) for n in ("mlflow", "alembic")]  # "Creating initial ... tables" on stderr
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        with FileLock(str(db) + ".init.lock"):
            MlflowClient(uri).search_experiments(max_results=1)
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def configure_from(cfg: Any) -> str:
    """`configure` from a `tracking` config node."""
    return configure(str(cfg.uri), cfg.get("artifact_root"))


def experiment_id(name: str, artifact_root: str | None = None) -> str:
    """Id of experiment `name`, created on first use (create it once before parallel jobs: SQLite race)."""
    client = MlflowClient()
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    location = None
    uri = mlflow.get_tracking_uri()
    if uri.startswith("sqlite:///"):  # a SQLite store keeps its artifacts beside the database: one folder
        location = (Path(uri[len("sqlite:///") :]).parent / "artifacts" / name).resolve().as_uri()
    elif artifact_root and not uri.startswith(("http://", "https://")):
        location = Path(artifact_root, name).resolve().as_uri()
    try:
        return client.create_experiment(name, artifact_location=location)
    except mlflow.exceptions.MlflowException:  # created concurrently by another job
        return client.get_experiment_by_name(name).experiment_id


def find_finished(exp_name: str, config_hash: str) -> str | None:
    """Run id of a FINISHED run of `exp_name` with this config hash, if any (the skip-if-finished check)."""
    exp = MlflowClient().get_experiment_by_name(exp_name)
    if exp is None:
        return None
    runs = MlflowClient().search_runs(
        [exp.experiment_id],
        filter_string=f"tags.`{CONFIG_HASH_TAG}` = '{config_hash}' and attributes.status = 'FINISHED'",
        max_results=1,
    )
    return runs[0].info.run_id if runs else None


def _pid_start(pid: int) -> str:
    """Start time of process `pid` in clock ticks since boot (/proc), so a reused pid is not taken for it."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def process_tags() -> dict[str, str]:
    """Host, pid and pid start time of this process: lets a later run tell whether a RUNNING run is orphaned."""
    pid = os.getpid()
    tags = {HOST_TAG: socket.gethostname(), PID_TAG: str(pid), PID_START_TAG: _pid_start(pid)}
    if os.environ.get("SLURM_JOB_ID"):  # a SLURM task: its array id (`scancel`, `sacct`) or its job id
        array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
        tags[SLURM_TAG] = f"{array}_{task}" if array and task else os.environ["SLURM_JOB_ID"]
    return tags


def _process_alive(pid: int, start: str) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        pass
    return not start or _pid_start(pid) in ("", start)


def mark_orphans(exp_name: str, config_hash: str) -> list[str]:
    """End as KILLED every RUNNING run of `exp_name` with this config hash whose process is gone.

    A SIGKILL (OOM killer, preemption, a killed SLURM task) never lets a run end itself; its cell's next
    attempt calls this first. Only runs started on this host can be checked (a pid means nothing elsewhere);
    runs of other hosts are left as they are. Returns the ids marked.
    """
    return mark_orphaned_runs(exp_name, f"tags.`{CONFIG_HASH_TAG}` = '{config_hash}'", "a resumed cell")


def mark_orphaned_runs(exp_name: str, filter_string: str, found_by: str) -> list[str]:
    """End as KILLED the RUNNING runs of `exp_name` matching `filter_string` whose process (host and pid tags,
    this host only) is gone; returns their ids."""
    client = MlflowClient()
    exp = client.get_experiment_by_name(exp_name)
    if exp is None:
        return []
    running = client.search_runs(
        [exp.experiment_id], filter_string=f"{filter_string} and attributes.status = 'RUNNING'"
    )
    host, marked = socket.gethostname(), []
    for r in running:
        t = r.data.tags
        if t.get(HOST_TAG) != host or not t.get(PID_TAG, "").isdigit():
            continue
        if _process_alive(int(t[PID_TAG]), t.get(PID_START_TAG, "")):
            continue
        reason = f"process {t[PID_TAG]} on {host} ended without closing the run (killed); found by {found_by}"
        client.set_tag(r.info.run_id, KILLED_TAG, reason)
        client.set_terminated(r.info.run_id, "KILLED")
        marked.append(r.info.run_id)
    return marked


def log_dataset(source: str | Path, name: str, digest: str, context: str = "training") -> None:
    """Log the data a run trained on as an MLflow dataset (the UI's Dataset column): `name` says which corpus
    and subset, `digest` is its content version, `source` the folder it was read from."""
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset

    src = resolve_dataset_source(Path(source).resolve().as_uri())
    dataset = MetaDataset(src, name=name, digest=digest)
    for attempt in range(3):
        try:
            return mlflow.log_input(dataset, context=context)
        except MlflowException as e:
            if attempt == 2 or not _lost_insert_race(e):
                raise


def _lost_insert_race(e: Exception) -> bool:
    """The store's log_inputs reads "does this dataset exist?" then inserts it in one transaction: two runs of
    one sweep logging the same dataset at once can both insert, and the loser's transaction is rolled back
    whole (a unique-key violation). Retrying finds the winner's row and links to it."""
    msg = str(e)
    return any(s in msg for s in ("UNIQUE constraint failed", "IntegrityError", "duplicate key value"))


@contextlib.contextmanager
def run(
    exp_name: str,
    *,
    run_name: str | None = None,
    tags: Mapping[str, Any] | None = None,
    params: Mapping[str, Any] | None = None,
    config_hash: str | None = None,
    artifact_root: str | None = None,
    parent_run_id: str | None = None,
) -> Iterator[mlflow.ActiveRun]:
    """An MLflow run that ends FINISHED on success and FAILED (with the error as a tag) on any exception.

    Under `mlflow run` the run already exists (`MLFLOW_RUN_ID`): the first run of the process reuses it.
    """
    if not _CONFIGURED:
        raise TrackingError(
            "tracking is not configured: call cptlaw.tracking.configure(uri) before opening a run"
        )
    exp_id = experiment_id(exp_name, artifact_root)
    all_tags = {k: str(v) for k, v in (tags or {}).items()} | process_tags()
    if config_hash:
        all_tags[CONFIG_HASH_TAG] = config_hash
    # Under `mlflow run` the launcher made a run (MLFLOW_RUN_ID): the first run of the process is that run,
    # any further one is nested under it — never a duplicate, never two configs logged into one run.
    launcher = os.environ.get("MLFLOW_RUN_ID")
    reuse = launcher if (launcher and not _LAUNCHER_USED and mlflow.active_run() is None) else None
    used = _LAUNCHER_USED[0] if _LAUNCHER_USED else None  # MLflow removes MLFLOW_RUN_ID once started
    parent = parent_run_id or os.environ.get("CPTLAW_PARENT_RUN_ID") or (None if reuse else used)
    if parent:
        all_tags[PARENT_TAG] = parent
    if reuse:
        _LAUNCHER_USED.append(reuse)
        active = mlflow.start_run(run_id=reuse)
    else:
        active = mlflow.start_run(
            experiment_id=exp_id, run_name=run_name, nested=mlflow.active_run() is not None
        )
    run_id = active.info.run_id
    try:
        mlflow.set_tags(all_tags)
        if params:
            log_params(params)
        yield active
    except BaseException as exc:
        failed = _end_active(run_id, "FAILED", f"{type(exc).__name__}: {exc}"[:5000])
        lost = _lost_server(run_id) if failed is not None and isinstance(exc, Exception) else None
        if lost is not None:
            raise lost from None
        raise
    failed = _end_active(run_id, "FINISHED")
    if failed is not None:
        raise _lost_server(run_id) or failed


def _end_active(run_id: str, status: str, error: str | None = None) -> Exception | None:
    """End the active run `run_id` (tagged with `error`); returns the store's exception if that failed. The
    run leaves MLflow's active-run stack either way, so the process can go on (e.g. a sequential sweep)."""
    try:
        if error is not None:
            mlflow.set_tag("cptlaw.error", error)
        mlflow.end_run(status=status)
        return None
    except Exception as exc:  # noqa: BLE001 - handed back to the caller
        active = mlflow.active_run()
        if active is not None and active.info.run_id == run_id:
            with contextlib.suppress(Exception):
                mlflow.end_run(status=status)  # pops the run first, then fails to reach the store
        return exc


def log_stage_run(
    exp_name: str, stage: str, *, run_name: str | None = None, config_hash: str | None = None,
    params: Mapping[str, Any] | None = None, metrics: Mapping[str, Any] | None = None,
    artifacts: Iterable[str | Path] = (), plots: Iterable[str | Path] = (), tags: Mapping[str, Any] | None = None,
    artifact_root: str | None = None,
) -> None:  # fmt: skip
    """One finished run of a stage (tag `cptlaw.stage`): its params, finite metrics, output files and plots."""
    with run(exp_name, run_name=run_name or stage, config_hash=config_hash, tags={STAGE_TAG: stage} | dict(tags or {}),
             artifact_root=artifact_root):  # fmt: skip
        log_params(params or {})
        log_metrics({k: v for k, v in (metrics or {}).items() if v is not None and math.isfinite(float(v))})
        for path in artifacts:
            log_artifact(path)
        for path in plots:
            log_artifact(path, "plots")


def log_params(params: Mapping[str, Any]) -> None:
    """Log params (MLflow params are strings; numbers are logged as metrics separately by the caller)."""
    mlflow.log_params({k: ("" if v is None else v) for k, v in params.items()})


def log_metrics(metrics: Mapping[str, float], step: int | None = None, run_id: str | None = None) -> None:
    """Log into the active run, or into run `run_id` by id (from a process that has no active run, e.g. a
    spawned DDP worker: `mlflow.log_metrics` there would open a second run)."""
    if run_id is None:
        mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=step)
        return
    import time

    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    MlflowClient().log_batch(
        run_id, metrics=[Metric(k, float(v), now, step or 0) for k, v in metrics.items()]
    )


def log_artifact(path: str | Path, artifact_path: str | None = None) -> None:
    mlflow.log_artifact(str(path), artifact_path=artifact_path)


def log_dict(obj: Mapping[str, Any], name: str) -> None:
    mlflow.log_dict(dict(obj), name)


def log_figure(fig: Any, name: str) -> None:
    mlflow.log_figure(fig, name)


def active_run_id() -> str | None:
    run_ = mlflow.active_run()
    return run_.info.run_id if run_ else None


def lightning_logger(run_id: str) -> Any:
    """A Lightning MLFlowLogger writing into an existing run (never its default `file:./mlruns` store)."""
    from lightning.pytorch.loggers import MLFlowLogger

    return MLFlowLogger(tracking_uri=mlflow.get_tracking_uri(), run_id=run_id, log_model=False)


def runs_frame(exp_names: list[str], *, filter_string: str = "", finished_only: bool = True) -> pd.DataFrame:
    """Runs of the named experiments as a DataFrame (`params.*`, `metrics.*`, `tags.*` columns)."""
    client = MlflowClient()
    ids = [e.experiment_id for n in exp_names if (e := client.get_experiment_by_name(n)) is not None]
    if not ids:
        return pd.DataFrame()
    parts = [p for p in (filter_string, "attributes.status = 'FINISHED'" if finished_only else "") if p]
    return mlflow.search_runs(experiment_ids=ids, filter_string=" and ".join(parts), max_results=100000)


def metric_history(run_id: str, key: str) -> list[tuple[int, float]]:
    """(step, value) pairs of one metric of one run, sorted by step."""
    hist = MlflowClient().get_metric_history(run_id, key)
    return sorted((m.step, m.value) for m in hist)


def start_detached_run(
    exp_name: str,
    *,
    run_name: str | None = None,
    tags: Mapping[str, Any] | None = None,
    artifact_root: str | None = None,
) -> str:
    """Create a RUNNING run without making it the active run (e.g. a sweep's parent run); returns its id."""
    exp_id = experiment_id(exp_name, artifact_root)
    created = MlflowClient().create_run(
        exp_id, run_name=run_name, tags={k: str(v) for k, v in (tags or {}).items()}
    )
    return created.info.run_id


def end_detached_run(
    run_id: str, status: str | None = "FINISHED", tags: Mapping[str, Any] | None = None
) -> None:
    """Tag a run and end it (status FINISHED | FAILED | KILLED) if it is still running; `status=None`: tag only."""
    client = MlflowClient()
    for key, value in (tags or {}).items():
        client.set_tag(run_id, key, str(value))
    if status is not None and client.get_run(run_id).info.status == "RUNNING":
        client.set_terminated(run_id, status)

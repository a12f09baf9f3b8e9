"""Hydra callback for CPT sweeps: one MLflow parent run per multirun, jobs nested under it, a summary at the end.

Registered in the `hydra.callbacks` of `conf/sweep/*.yaml`. On multirun start it configures the tracking store
and creates the database and every experiment the sweep will write to *once*, before any job starts (parallel
jobs racing to migrate a fresh SQLite store fail), then opens the parent run and exports its id as
`CPTLAW_PARENT_RUN_ID` (honoured by `cptlaw.tracking.run`; joblib/loky workers inherit the environment).
On multirun end it collects the jobs' `cpt_result.json` files into `<reports>/sweeps/<name>.json` (run id,
config hash, skipped/finished per cell) and `<reports>/metrics/cpt_<name>.json`, and ends the parent run.
If the multirun dies first, an exit hook ends the parent run FAILED (never left RUNNING).
"""

from __future__ import annotations

import atexit
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from cptlaw import layout
from cptlaw.config import register_resolvers

register_resolvers()

PARENT_ENV = "CPTLAW_PARENT_RUN_ID"


def _sweep_values(config: DictConfig, key: str, default: Any) -> list[str]:
    params = config.hydra.sweeper.get("params") or {}
    overrides = {
        o.split("=", 1)[0].lstrip("+~"): o.split("=", 1)[1] for o in config.hydra.overrides.task if "=" in o
    }
    value = overrides.get(key, params.get(key))
    if value is None:
        return [str(default)]
    return [v.strip() for v in str(value).split(",") if v.strip()]


class SweepParentRun(Callback):
    def __init__(self, name: str, tracking: Any, reports: str, study: str | None = None) -> None:
        self.name, self.tracking, self.reports, self.study = name, tracking, reports, study
        self.parent_id: str | None = None
        self.owns_parent = True
        self.started = 0.0

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        from cptlaw import tracking

        tracking.configure_from(self.tracking)
        prefix = str(self.tracking.get("experiment_prefix") or "")  # the callback's own tracking node
        study = str(self.study or config.cpt.study)
        domains = _sweep_values(config, "cpt.domain", config.cpt.domain)
        root = self.tracking.get("artifact_root")
        names = [layout.cpt_experiment(study, d, prefix) for d in domains]
        for name in names:
            tracking.experiment_id(name, root)
        parent_exp = names[0] if len(set(names)) == 1 else f"{prefix}sweeps"
        tags = {"cptlaw.stage": "sweep", "cptlaw.study": study, "cptlaw.sweep": self.name,
                "cptlaw.sweep_dir": config.hydra.sweep.dir, "cptlaw.profile": config.get("profile_name")}  # fmt: skip
        # Under `mlflow run` the launcher's run is the parent: every job nests under it, none is logged into it
        # (the launcher ends it with the process's exit status).
        launcher = os.environ.pop("MLFLOW_RUN_ID", None)
        self.owns_parent = launcher is None
        if launcher:
            self.parent_id = launcher
            tracking.end_detached_run(launcher, None, tags)
            parent_exp = "the mlflow-run launcher's experiment"
        else:
            # a parent left RUNNING by a sweep of this name whose process died (SIGKILL, or its tracking
            # server went away so that even the exit hook could not end it) is ended KILLED
            orphans = tracking.mark_orphaned_runs(
                parent_exp, f"tags.`cptlaw.sweep` = '{self.name}' and tags.`cptlaw.stage` = 'sweep'",
                "a later sweep",
            )  # fmt: skip
            for orphan in orphans:
                print(f"[sweep] marked orphaned parent run {orphan} KILLED (its process is gone)")
            self.parent_id = tracking.start_detached_run(
                parent_exp, run_name=f"sweep-{self.name}-{time.strftime('%Y%m%d-%H%M%S')}",
                tags=tags | tracking.process_tags(), artifact_root=root,
            )  # fmt: skip
        os.environ[PARENT_ENV] = self.parent_id
        self.started = time.perf_counter()
        atexit.register(self._end_at_exit)
        print(f"[sweep] {self.name}: parent run {self.parent_id} in experiment {parent_exp}")

    def _end(self, status: str, tags: dict | None = None) -> None:
        if self.parent_id is None:
            return
        from cptlaw import tracking

        try:
            tracking.end_detached_run(self.parent_id, status if self.owns_parent else None, tags)
        finally:
            self.parent_id = None
            os.environ.pop(PARENT_ENV, None)

    def _end_at_exit(self) -> None:
        """The exit hook: end the parent FAILED; if the store cannot be reached, one line instead of a
        traceback (the parent stays RUNNING until a later sweep of this name marks it KILLED)."""
        from cptlaw.errors import first_line

        parent = self.parent_id
        try:
            self._end("FAILED")
        except Exception as exc:  # noqa: BLE001 - the process is exiting: report, do not raise
            print(f"[sweep] {self.name}: could not end parent run {parent} ({first_line(exc)[:300]})",
                  file=sys.stderr)  # fmt: skip

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        results = []
        for path in sorted(
            Path(config.hydra.sweep.dir).glob(f"*/{layout.CPT_RESULT_FILE}"), key=lambda p: int(p.parent.name)
        ):
            results.append({"job": int(path.parent.name), **json.loads(path.read_text())})
        statuses = [r.get("status") for r in results]
        metrics = {
            "n_cells": len(results),
            "n_finished": statuses.count("finished"),
            "n_skipped": statuses.count("skipped"),
            "wall_seconds": round(time.perf_counter() - self.started, 1),
        }
        ran = [r for r in results if r.get("status") == "finished"]
        if ran:
            metrics["mean_tokens_per_s"] = round(sum(r["tokens_per_s"] for r in ran) / len(ran), 1)
        reports = Path(self.reports)
        layout.sweep_summary(reports, self.name).parent.mkdir(parents=True, exist_ok=True)
        (reports / "metrics").mkdir(parents=True, exist_ok=True)
        summary = {"sweep": self.name, "parent_run_id": self.parent_id, **metrics, "runs": results}
        layout.sweep_summary(reports, self.name).write_text(json.dumps(summary, indent=2) + "\n")
        (reports / "metrics" / f"cpt_{self.name}.json").write_text(json.dumps(metrics, indent=2) + "\n")
        print(f"[sweep] {self.name}: {metrics}")
        self._end("FINISHED", {"cptlaw.n_cells": len(results)})

"""End to end: `dvc repro` of the whole pipeline on the `smoke` profile in a fresh copy of the project (real
registry corpora, real Lightning training, a real SQLite MLflow store), then: a second repro does nothing,
one changed parameter re-runs only its dependants, the analysis notebook executes against the store."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]


def _sh(args, cwd, env, timeout=1500):
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{args} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A copy of the project's files (what git would check out), profile smoke, its own git repo."""
    root = tmp_path_factory.mktemp("pipeline")
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    for rel in files:
        if rel.startswith("reports/") or rel == "dvc.lock" or not (REPO / rel).is_file():
            continue
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, root / rel)
    (root / "params.yaml").write_text("profile: smoke\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "CPTLAW_"))}
    env |= {"PATH": f"{Path(sys.executable).parent}:{env['PATH']}", "DVC_NO_ANALYTICS": "1",
            "OPENBLAS_NUM_THREADS": "1", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
            "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}  # fmt: skip
    _sh(["git", "init", "-q"], root, env)
    _sh(["git", "add", "-A"], root, env)
    _sh(["git", "commit", "-qm", "copy"], root, env)
    out = _sh(["dvc", "repro"], root, env, timeout=2400)
    return root, env, out


def test_repro_builds_every_artifact(project):
    root, _, out = project
    for rel in ("data/raw/manifest.json", "data/corpora/medical/train.parquet", "data/tokenizer/tokenizer.json",
                "reports/fits.json", "reports/recommend.json", "reports/validate.json", "reports/report.md"):  # fmt: skip
        assert (root / rel).is_file(), rel
    assert list((root / "models" / "base").glob("*/config.json"))
    assert list((root / "data" / "scores" / "medical").glob("*.parquet"))
    assert (root / "data" / "selected" / "medical" / "ids.txt").is_file()
    fits = json.loads((root / "reports" / "fits.json").read_text())
    domain = fits["targets"]["domain_medical"]["fits"]
    assert domain and all(f["r2"] > 0.5 for f in domain.values())  # fitted from the real smoke runs
    report = (root / "reports" / "report.md").read_text()
    assert "## Fits" in report and "validation runs" in report
    check = json.loads((root / "reports" / "validate.json").read_text())["usage2"]["medical"]
    assert len(check["runs"]) >= 4 and check["verdict"] and "usage 2 checked by new runs" in report
    dos = json.loads((root / "reports" / "validate.json").read_text())["domains"]["medical"]["saving"]
    assert (
        dos["ci"] is not None and dos["verdict"] in report
    )  # 2 paired seeds: an interval, not an assumption


def test_runs_are_in_the_sqlite_store(project, monkeypatch):
    root, _, _ = project
    from cptlaw import tracking

    tracking.configure(f"sqlite:///{root}/mlruns/mlflow.db")
    runs = tracking.runs_frame(["dcpt-medical"], filter_string="tags.`cptlaw.stage` = 'cpt'")
    sweep = json.loads((root / "reports" / "sweeps" / "dcpt_grid.json").read_text())
    assert sweep["n_cells"] >= 4 and len(runs) >= sweep["n_cells"]
    assert set(runs["status"]) == {"FINISHED"}
    assert (runs["metrics.domain_loss_final"] < runs["metrics.k1"]).all()  # CPT lowers domain loss


def test_second_repro_does_nothing_and_one_param_reruns_only_dependants(project):
    root, env, _ = project
    status = _sh(["dvc", "status"], root, env)
    assert "up to date" in status, status
    again = _sh(["dvc", "repro"], root, env)
    assert "Running stage" not in again, again
    # a report-only setting changes: only `report` is stale, and only it re-runs
    path = root / "conf" / "report" / "default.yaml"
    path.write_text(path.read_text().replace("min_runs_warn: 6", "min_runs_warn: 7"))
    status = _sh(["dvc", "status"], root, env)
    stale = {line.rstrip(":") for line in status.splitlines() if line and not line[0].isspace()}
    assert stale == {"report"}, status
    rerun = _sh(["dvc", "repro"], root, env)
    assert [line for line in rerun.splitlines() if line.startswith("Running stage")] == [
        "Running stage 'report':"
    ], rerun


def test_notebook_executes_against_the_store(project):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    root, _, _ = project
    nb = nbformat.read(REPO / "notebooks" / "analysis.ipynb", as_version=4)
    old = {k: os.environ.get(k) for k in ("CPTLAW_ROOT", "CPTLAW_PROFILE")}
    os.environ.update(CPTLAW_ROOT=str(root), CPTLAW_PROFILE="smoke")
    try:
        client = nbclient.NotebookClient(
            nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(root)}}
        )
        client.execute()
    finally:
        for k, v in old.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any(o.output_type == "display_data" for o in outputs)  # the plots were drawn


def test_mlflow_run_main_entry_point_runs_the_pipeline_as_a_dvc_experiment(project):
    """`mlflow run . -e main` = `dvc exp run -S profile=…`: one FINISHED MLflow run, one DVC experiment, and
    nothing re-run (the pipeline is up to date)."""
    root, env, _ = project
    uri = f"sqlite:///{root}/mlruns/mlflow.db"
    out = _sh([str(Path(sys.executable).with_name("mlflow")), "run", str(root), "-e", "main", "--env-manager",
               "local", "--experiment-name", "pipeline", "-P", "profile=smoke"],
              root, env | {"MLFLOW_TRACKING_URI": uri}, timeout=900)  # fmt: skip
    assert "Running stage" not in out, out[-3000:]
    exps = _sh(["dvc", "exp", "list", "--name-only"], root, env).split()
    assert len(exps) == 1, exps
    from cptlaw import tracking

    tracking.configure(uri)
    runs = tracking.runs_frame(["pipeline"], finished_only=False)
    assert list(runs["status"]) == ["FINISHED"]


def test_outputs_travel_through_a_dvc_remote_to_a_fresh_clone(project, tmp_path):
    """A DVC remote (here a directory; S3/GCS/SSH remotes are the same commands): `dvc push` from the project,
    then a fresh `git clone` + `dvc pull` restores every cached output byte for byte and `dvc status` is clean."""
    root, env, _ = project
    remote = tmp_path / "remote"
    _sh(["dvc", "remote", "add", "-d", "store", str(remote)], root, env)
    _sh(["dvc", "push"], root, env)
    _sh(["git", "add", "-A"], root, env)
    _sh(["git", "commit", "-qm", "pipeline outputs"], root, env)
    clone = tmp_path / "clone"
    _sh(["git", "clone", "-q", str(root), str(clone)], tmp_path, env)
    assert not (clone / "data").exists() and not (clone / "models").exists()  # only git's files came along
    _sh(["dvc", "pull"], clone, env)
    assert "up to date" in _sh(["dvc", "status"], clone, env)
    for rel in ("data/scores", "data/selected", "data/tokenizer", "models/base"):
        ours = sorted(p.relative_to(root) for p in (root / rel).rglob("*") if p.is_file())
        theirs = sorted(p.relative_to(clone) for p in (clone / rel).rglob("*") if p.is_file())
        assert ours and ours == theirs, rel
        assert all((root / p).read_bytes() == (clone / p).read_bytes() for p in ours), rel

"""Shared test set-up: one thread per process (2-core machines), no analytics, a tmp project root."""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ["DVC_NO_ANALYTICS"] = "1"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.pop("MLFLOW_TRACKING_URI", None)
os.environ.pop("MLFLOW_RUN_ID", None)

import pytest  # noqa: E402


@pytest.fixture
def mlflow_uri(tmp_path, monkeypatch):
    """A fresh, real SQLite MLflow store for one test."""
    uri = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    (tmp_path / "mlruns").mkdir(exist_ok=True)
    return uri


REFDATA_ENV = "CPTLAW_REFDATA"


@pytest.fixture(scope="session")
def refdata():
    """Published reference data (Chinchilla points, real CPT/mixing runs), from the folder named by $CPTLAW_REFDATA.

    Layout: `data/chinchilla_hoffmann2022_fig4.csv` and `realdata/<file>.csv` (see the README's "Reference data").
    Returns a function `path(relative) -> Path` that skips the test, with its reason, when the file is absent.
    """
    from pathlib import Path

    root = os.environ.get(REFDATA_ENV)

    def path(relative: str) -> Path:
        if not root:
            pytest.skip(f"reference data: set {REFDATA_ENV} to the reference-data folder to run this test")
        p = Path(root) / relative
        if not p.is_file():
            pytest.skip(f"reference data: {relative} not found under {REFDATA_ENV}={root}")
        return p

    return path

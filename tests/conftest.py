"""Shared test set-up: one thread per process (2-core machines), no analytics, a tmp MLflow store, the reference
data, and the two fixture projects (CPT: tests/helpers/cpt_project.py; lm: tests/helpers/lm_project.py)."""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ["DVC_NO_ANALYTICS"] = "1"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.pop("MLFLOW_TRACKING_URI", None)
os.environ.pop("MLFLOW_RUN_ID", None)

from pathlib import Path  # noqa: E402

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
    root = os.environ.get(REFDATA_ENV)

    def path(relative: str) -> Path:
        if not root:
            pytest.skip(f"reference data: set {REFDATA_ENV} to the reference-data folder to run this test")
        p = Path(root) / relative
        if not p.is_file():
            pytest.skip(f"reference data: {relative} not found under {REFDATA_ENV}={root}")
        return p

    return path


@pytest.fixture(scope="session")
def cpt_project(tmp_path_factory) -> Path:
    """A project root with corpora, tokenizer, base model `xs` and medical scores (shared, read-only)."""
    from tests.helpers.cpt_project import write_base, write_corpora, write_scores

    root = tmp_path_factory.mktemp("cptproj")
    (root / "conf").mkdir()  # project_root() finds dvc.yaml + conf/
    (root / "dvc.yaml").write_text("stages: {}\n")
    write_corpora(root)
    write_base(root)
    write_scores(root)
    return root


@pytest.fixture(scope="session")
def lm_project(tmp_path_factory) -> Path:
    """A project root with data/corpora/{general,medical,code} and data/tokenizer (read-only for tests)."""
    from tests.helpers.lm_project import write_corpora, write_tokenizer

    root = tmp_path_factory.mktemp("lm_project")
    write_corpora(root)
    write_tokenizer(root / "data" / "tokenizer")
    return root

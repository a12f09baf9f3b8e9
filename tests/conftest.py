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
    from tests.helpers.lm_project import write_corpora, write_tokenizer, write_tokens

    root = tmp_path_factory.mktemp("lm_project")
    write_corpora(root)
    write_tokenizer(root / "data" / "tokenizer")
    write_tokens(root)
    return root


# ------------------------------------------------------------------ services (scripts/services/*.sh)
# Session fixtures that install (once, idempotent; root + apt only), start and stop the services of the
# scale-out tests, all on 127.0.0.1 with state in a private temp folder. A service that cannot be had here
# skips its tests with a one-line reason.

import shutil  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import urllib.request  # noqa: E402
from pathlib import Path  # noqa: E402

SERVICES = Path(__file__).resolve().parents[1] / "scripts" / "services"


def _service(name: str, up: str, down: str, tmp_prefix: str, timeout: int = 300):
    """Install service `name`, start it with `up DIR`; yields DIR; stops it with `down DIR`."""
    inst = subprocess.run(["bash", str(SERVICES / "install.sh"), name], capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip
    if inst.returncode != 0:
        pytest.skip(f"{name}: install.sh failed: {(inst.stderr.strip().splitlines() or ['?'])[-1]}")
    d = Path(tempfile.mkdtemp(prefix=tmp_prefix))  # under /tmp: reachable by the postgres user as root
    started = subprocess.run(["bash", str(SERVICES / up), str(d)], capture_output=True, text=True,
                             timeout=timeout)  # fmt: skip
    try:
        if started.returncode != 0:
            subprocess.run(["bash", str(SERVICES / down), str(d)], capture_output=True, timeout=120)
            lines = (started.stderr.strip() or inst.stderr.strip() or "no output").splitlines()
            pytest.skip(f"{name}: cannot start ({lines[0]})")
        yield d
    finally:
        subprocess.run(["bash", str(SERVICES / down), str(d)], capture_output=True, timeout=120)
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def slurm_cluster():
    """A one-node SLURM cluster on 127.0.0.1 (slurmctld, slurmd, munge, slurmdbd for sacct); returns the
    environment its clients need ({'SLURM_CONF': ...})."""
    for d in _service("slurm", "slurm_up.sh", "slurm_down.sh", "cptlaw-slurm-"):
        yield {"SLURM_CONF": str(d / "slurm.conf")}


@pytest.fixture(scope="session")
def postgres_server():
    """A PostgreSQL server on 127.0.0.1 with a password generated for this session; returns its admin URI."""
    for d in _service("postgres", "pg_up.sh", "pg_down.sh", "cptlaw-pg-"):
        yield (d / "uri").read_text().strip()


@pytest.fixture
def postgres_uri(postgres_server):
    """A fresh database on the session's PostgreSQL server for one test, as an MLflow backend-store URI
    (`postgresql+psycopg2://...`)."""
    import uuid

    import psycopg2

    name = f"t_{uuid.uuid4().hex[:12]}"
    conn = psycopg2.connect(postgres_server)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE {name}")
    conn.close()
    # SQLAlchemy's plain `postgresql://` means psycopg 3 here; the project pins psycopg2-binary
    return postgres_server.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg2://") + "/" + name


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MlflowServer:
    """A real `mlflow server` on 127.0.0.1 (served artifacts, one worker) that a test can stop and restart on
    the same port; always stopped by its process group id."""

    def __init__(self, backend_uri: str, workdir: Path):
        self.backend_uri, self.workdir, self.port = backend_uri, Path(workdir), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 90) -> "MlflowServer":
        self.workdir.mkdir(parents=True, exist_ok=True)
        log = open(self.workdir / "server.log", "a")
        cmd = [str(Path(sys.executable).with_name("mlflow")), "server", "--backend-store-uri", self.backend_uri,
               "--artifacts-destination", str(self.workdir / "artifacts"), "--host", "127.0.0.1",
               "--port", str(self.port), "--workers", "1"]  # fmt: skip
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            try:
                urllib.request.urlopen(self.url + "/health", timeout=2).read()
                return self
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError((self.workdir / "server.log").read_text()[-2000:]) from None
                time.sleep(0.5)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:  # uvicorn waits for open keep-alive connections on SIGTERM; a few seconds is all a test needs
            self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=20)


@pytest.fixture
def mlflow_server_factory(tmp_path):
    """`make(backend_uri)` → a started `MlflowServer`; every server made is stopped after the test."""
    made: list[MlflowServer] = []

    def make(backend_uri: str) -> MlflowServer:
        server = MlflowServer(backend_uri, tmp_path / f"mlflow-server-{len(made)}")
        made.append(server)
        return server.start()

    yield make
    for server in made:
        server.stop()
        server.stop()


# ------------------------------------------------------------------ order (pytest-xdist, `make test`)
# `make test` runs two workers, one module at a time each (--dist loadscope: a module's fixtures are built once).
# The two finish together when the longest modules (1-3 min each) start first; the rest keep their order.
LONGEST_FIRST = ("test_pipeline_smoke.py", "test_cpt_slurm.py", "test_cpt_faults.py", "test_cpt_sweep.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))

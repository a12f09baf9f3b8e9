# The two commands of the README: `make demo` (main job, demo profile) and `make test` (the test suite).
# Both run scripts/setup.sh first, which is idempotent.
export DVC_NO_ANALYTICS := 1
export OPENBLAS_NUM_THREADS := 1
VENV := .venv/bin
export PATH := $(CURDIR)/.venv/bin:$(PATH)

.PHONY: setup demo cpu smoke test test-fast lint bench
setup:
	@bash scripts/setup.sh

demo: setup
	$(VENV)/dvc repro

# The laws at CPU scale (<= 2 h on 2 cores): the `cpu` profile in the workspace (params.yaml's profile becomes
# cpu; `dvc exp run -S profile=demo` or `git checkout params.yaml && dvc repro` goes back to the demo).
cpu: setup
	$(VENV)/dvc exp run -S profile=cpu

smoke: setup
	$(VENV)/dvc exp run --temp -S profile=smoke

# The scale-out tests' services (SLURM, PostgreSQL): installed when root with apt (idempotent, a no-op when
# present); the tests start and stop private instances on 127.0.0.1 and skip, saying why, when they cannot.
# Two pytest-xdist workers, one per core of CI's 2-core machine; a module's tests stay on one worker
# (--dist loadscope), so its fixtures (the smoke pipeline, a SLURM cluster) are built once.
XDIST := -n 2 --dist loadscope

test: setup  # everything, slow end-to-end tests included: what CI runs
	@bash scripts/services/install.sh
	$(VENV)/python -m pytest -q $(XDIST)

test-fast: setup  # the inner loop: no `slow` (end-to-end) tests
	$(VENV)/python -m pytest -q -m "not slow" $(XDIST)

lint: setup
	$(VENV)/ruff check src tests benchmarks && $(VENV)/ruff format --check src tests benchmarks

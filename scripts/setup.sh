#!/usr/bin/env bash
# Idempotent set-up for a fresh machine: a venv in .venv with every pinned dependency, DVC initialised.
# The second call takes a second: it re-installs only when pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")/.."
export DVC_NO_ANALYTICS=1 PIP_DISABLE_PIP_VERSION_CHECK=1
PY=${PYTHON:-python3.11}
stamp=.venv/.cptlaw-installed
want=$( (cat pyproject.toml scripts/setup.sh scripts/install_torch.sh; echo "${CPTLAW_TORCH:-auto}") | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  command -v "$PY" >/dev/null || { echo "setup: $PY not found: install Python 3.11 (or set PYTHON=/path/to/python3.11)" >&2; exit 1; }
  [ -x .venv/bin/python ] || "$PY" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip
  bash scripts/install_torch.sh .venv/bin/python
  .venv/bin/python -m pip install -q -e '.[dev]'
  echo "$want" > "$stamp"
fi
# DVC needs a git repository with a commit (dvc exp); a source tarball gets one here.
if [ ! -e .git ]; then git init -q && git add -A && git -c user.name=cptlaw -c user.email=cptlaw@localhost commit -qm "initial"; fi
if [ ! -d .dvc ]; then .venv/bin/dvc init -q; fi
.venv/bin/dvc config core.analytics false >/dev/null 2>&1 || true

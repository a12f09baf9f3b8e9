#!/usr/bin/env bash
# Install torch 2.13.0 into the venv whose python is $1, as an explicit choice of build:
#   CPTLAW_TORCH=auto (default)  cuda when `nvidia-smi -L` lists a GPU, else cpu
#   CPTLAW_TORCH=cpu             the CPU wheel (~200 MB) from PyTorch's CPU index; when that index is unreachable
#                                (an offline or registry-only machine), a local wheelhouse: CPTLAW_TORCH_WHEELS or
#                                pip's own find-links. Never PyPI's default Linux build, which is CUDA (several GB).
#   CPTLAW_TORCH=cuda            PyPI's default build (CUDA), for a GPU box.
# After installing, the build is checked against the choice: a CUDA build on a cpu choice is an error.
set -euo pipefail
py=$1
version=2.13.0
cpu_index=${CPTLAW_TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}
choice=${CPTLAW_TORCH:-auto}
if [ "$choice" = auto ]; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q GPU; then choice=cuda; else choice=cpu; fi
fi
pip=("$py" -m pip install -q)
case "$choice" in
  cuda) "${pip[@]}" "torch==$version" ;;
  cpu)
    if ! "${pip[@]}" --retries 0 --timeout 15 --no-deps --index-url "$cpu_index" "torch==$version" 2>/dev/null; then
      echo "setup: PyTorch's CPU index ($cpu_index) is unreachable; taking torch $version from a local wheelhouse" >&2
      links=()
      [ -n "${CPTLAW_TORCH_WHEELS:-}" ] && links=(--find-links "$CPTLAW_TORCH_WHEELS")
      "${pip[@]}" --no-index --no-deps "${links[@]}" "torch==$version" || {
        echo "setup: no CPU wheel of torch $version: set CPTLAW_TORCH_WHEELS=<folder with the wheel>, or CPTLAW_TORCH=cuda for the CUDA build" >&2
        exit 1
      }
    fi
    "${pip[@]}" "torch==$version" ;;  # torch's own dependencies, from the ordinary index
  *) echo "setup: CPTLAW_TORCH must be cpu, cuda or auto, got '$choice'" >&2; exit 1 ;;
esac
"$py" - "$choice" <<'PY'
import sys
import torch
if sys.argv[1] == "cpu" and torch.version.cuda is not None:
    sys.exit(f"setup: a CUDA build of torch ({torch.__version__}) was installed on a cpu choice: "
             "uninstall it (.venv/bin/pip uninstall torch) and re-run with a reachable CPU index or wheelhouse")
print(f"setup: torch {torch.__version__} ({'CUDA ' + torch.version.cuda if torch.version.cuda else 'CPU'} build)")
PY

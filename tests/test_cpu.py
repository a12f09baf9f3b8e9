"""Process set-up: the allocator keeps freed memory (no page faults for re-allocated blocks), and child
processes inherit the setting through the environment."""

import os
import subprocess
import sys

import pytest

from cptlaw.cpu import ALLOCATOR_ENV

# 40 MB blocks: above glibc's largest dynamic mmap threshold (32 MiB), like the logits of a big batch.
FAULTS = """
import ctypes, resource, sys
import numpy as np
ctypes.CDLL(None).prctl(41, 1, 0, 0, 0)  # PR_SET_THP_DISABLE: count 4 KiB page faults, not huge pages
if sys.argv[1] == "tuned":
    from cptlaw.cpu import setup_cpu
    setup_cpu(1)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    block = np.ones(10 << 20, dtype=np.float32)
    del block
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str, **extra_env: str) -> int:
    env = {k: v for k, v in os.environ.items() if k not in ALLOCATOR_ENV} | extra_env
    out = subprocess.run(
        [sys.executable, "-c", FAULTS, mode], env=env, capture_output=True, text=True, check=True
    )
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_reallocated_blocks_are_not_faulted_in_again():
    pages = (40 << 20) // 4096
    untuned, tuned, off = _faults("plain"), _faults("tuned"), _faults("tuned", CPTLAW_KEEP_FREED_MEMORY="0")
    assert untuned > 10 * pages  # every block a fresh mmap: faulted in page by page, 20 times
    assert tuned < 3 * pages  # the first block's pages, then reused from the heap
    assert off > 10 * pages  # the opt-out leaves glibc's defaults


def test_children_inherit_the_setting_and_user_values_win(monkeypatch):
    from cptlaw.cpu import setup_cpu

    for var in ALLOCATOR_ENV:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "12345")
    setup_cpu(1)
    child = subprocess.run([sys.executable, "-c", "import os; print(os.environ['MALLOC_MMAP_THRESHOLD_'], "
                            "os.environ['MALLOC_TRIM_THRESHOLD_'], os.environ['OMP_NUM_THREADS'])"],
                           capture_output=True, text=True, check=True)  # fmt: skip
    assert child.stdout.split() == [str(ALLOCATOR_ENV["MALLOC_MMAP_THRESHOLD_"]), "12345", "1"]


def test_set_threads_limits_the_blas_already_loaded():
    """numpy's BLAS reads OPENBLAS_NUM_THREADS once, at import: the stage's limit must reach it at run time
    (a fresh process that imports numpy first, as the stages do through their imports)."""
    code = (
        "import numpy\nfrom threadpoolctl import threadpool_info\nfrom cptlaw.cpu import set_threads\n"
        "set_threads(1)\nprint(sorted({p['num_threads'] for p in threadpool_info()}))"
    )
    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[1]", out.stdout

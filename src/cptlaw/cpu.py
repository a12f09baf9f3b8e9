"""CPU process set-up every stage runs first: pinned thread counts and a glibc allocator that keeps memory.

Why the allocator: glibc serves blocks above a dynamic threshold (128 KiB at start) with fresh `mmap`s and
returns them on free, so every activation, gradient and logits tensor of a tiny model is page-faulted in
anew, step after step. Measured here once freed memory stays in the heap: training +37%
(`benchmarks/train_overhead.py`, kernel time from a third of the run to ~1%), the per-sample scoring loop
+38% (`benchmarks/scoring.py`; the batched scorer allocates little and barely changes). PyTorch's CPU tuning guide gets the same effect by preloading jemalloc/tcmalloc;
`mallopt` needs no extra library. Values the user already set in the environment win;
`CPTLAW_KEEP_FREED_MEMORY=0` turns it off (glibc's defaults, e.g. to compare or on a memory-tight box).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

MMAP_THRESHOLD = 64 << 20  # blocks below this come from the heap, not from a fresh mmap
TRIM_THRESHOLD = 1 << 30  # freed heap memory kept for reuse before it is returned to the OS
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (glibc malloc.h)
ALLOCATOR_ENV = {"MALLOC_MMAP_THRESHOLD_": MMAP_THRESHOLD, "MALLOC_TRIM_THRESHOLD_": TRIM_THRESHOLD}


def set_threads(n: int) -> None:
    """Pin torch and BLAS threads: two jobs × two threads on two cores trained 14× slower than one thread each."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # for child processes
        os.environ[var] = str(n)
    # this process's BLAS read those variables when numpy was imported: without a runtime limit, the fit
    # stage's small least-squares problems ran on 2 OpenBLAS threads, 2x slower on a busy 2-core machine
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=n)
    try:
        import torch

        torch.set_num_threads(n)
    except ImportError:  # the fit stage does not need torch
        pass


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds in this process and, via the environment, in its children
    (ddp_spawn workers, joblib jobs). False when turned off or where the C library has no `mallopt`."""
    if os.environ.get("CPTLAW_KEEP_FREED_MEMORY") == "0":
        return False
    for var, value in ALLOCATOR_ENV.items():
        os.environ.setdefault(var, str(value))
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    ok = mallopt(_M_MMAP_THRESHOLD, int(os.environ["MALLOC_MMAP_THRESHOLD_"]))
    return bool(ok and mallopt(_M_TRIM_THRESHOLD, int(os.environ["MALLOC_TRIM_THRESHOLD_"])))


def setup_cpu(threads: int) -> None:
    """What every stage and benchmark does before any tensor work: pin threads, keep freed memory."""
    set_threads(threads)
    keep_freed_memory()

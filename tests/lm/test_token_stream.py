"""The CPT data path streams from the token stores: memory does not grow with D (peak RSS of a subprocess
at D = 1M and D = 1B tokens, same stores), and the Lightning data module serves the mixture's rows."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cptlaw.data import token_store as ts
from cptlaw.data.mixture import CPTData, build_mixture, eval_rows
from cptlaw.lm.datamodule import CPTDataModule, PackedDataset

SEQ = 1024

PROBE = r"""
import resource, sys
import numpy as np, torch
from cptlaw.data.mixture import build_mixture
from cptlaw.data.token_store import open_store
from cptlaw.lm.datamodule import PackedDataset

root, n_tokens = sys.argv[1], int(sys.argv[2])
dom, gen = open_store(root + "/medical"), open_store(root + "/general")
mix = build_mixture(domain_store=dom, domain_pos=np.arange(dom.n_docs), domain_ppl=None, general_store=gen,
                    n_tokens=n_tokens, r=0.4, seq_len=1024, seed=0)
ds = PackedDataset(mix)
n = len(ds)
picks = [*range(min(n, 256)), *range(max(0, n // 2 - 128), min(n, n // 2 + 128)), *range(max(0, n - 256), n)]
loader = torch.utils.data.DataLoader(torch.utils.data.Subset(ds, picks), batch_size=32)
total = sum(int(b.numel()) for b in loader)
print(total, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def _synthetic_store(path: Path, n_tokens: int, seed: int) -> ts.TokenStore:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(50, 2000, size=n_tokens // 1000)
    flat = rng.integers(2, 4000, size=int(lengths.sum())).astype(np.uint16)
    flat[np.cumsum(lengths) - 1] = 1  # EOS closes every document
    w = ts.StoreWriter(path, np.uint16, {"eos_id": 1})
    w.add(flat, lengths, [f"d{i}" for i in range(len(lengths))])
    w.finish()
    return ts.open_store(path)


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    root = tmp_path_factory.mktemp("stream")
    _synthetic_store(root / "medical", 2_000_000, 0)
    _synthetic_store(root / "general", 4_000_000, 1)
    return root


def _peak_rss_kb(root: Path, n_tokens: int) -> tuple[int, int]:
    out = subprocess.run([sys.executable, "-c", PROBE, str(root), str(n_tokens)], capture_output=True, text=True,
                         check=True).stdout.split()  # fmt: skip
    return int(out[0]), int(out[1])


def test_peak_memory_does_not_grow_with_d(stores):
    """D = 1B tokens held as int32 rows would take 4 GB; streamed, the run's memory is that of D = 1M."""
    small_tokens, small = _peak_rss_kb(stores, 1_000_000)
    large_tokens, large = _peak_rss_kb(stores, 1_000_000_000)
    assert small_tokens == large_tokens == 768 * (SEQ + 1)  # both read rows at the start, middle and end
    assert large / small <= 1.2, f"peak RSS {large} kB at D=1B vs {small} kB at D=1M"


def test_cpt_data_module_serves_the_mixture_rows_in_order(stores):
    dom, gen = ts.open_store(stores / "medical"), ts.open_store(stores / "general")
    mix = build_mixture(domain_store=dom, domain_pos=np.arange(dom.n_docs), domain_ppl=None, general_store=gen,
                        n_tokens=64 * SEQ, r=0.25, seq_len=SEQ, seed=0)  # fmt: skip
    test = eval_rows(dom, SEQ, 4, what="t")
    data = CPTDataModule(CPTData(mix, test, test), batch_size=8)
    batches = list(data.train_dataloader())
    assert len(batches) == 8 and batches[0].dtype == torch.int64 and batches[0].shape == (8, SEQ + 1)
    assert (torch.cat(batches).numpy() == mix.rows()).all()
    assert len(PackedDataset(mix)) == 64 and PackedDataset(mix).n_tokens == 64 * SEQ

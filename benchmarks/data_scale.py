"""Benchmark: CPT data at paper scale from memory-mapped token stores (`cptlaw.data.token_store`).

1. Writes synthetic token stores (uint16 ids, documents of 50-2,000 tokens) of 10M, 100M and 1B tokens.
2. CPT data start-up (stores opened and checked, mixture built, test rows, first batch) and peak RSS, each in
   a fresh process: at D = 1M, 10M, 100M, 1B (general = the 1B store, domain = the 100M store, r = 0.5), and
   at D = 10M over general stores of 10M / 100M / 1B tokens (start-up against corpus size). Every process
   reads batches at the start, middle and end of its run. Ratios are against D = 10M (the baseline).
   Beside the peak RSS (VmHWM): anonymous and file-backed RSS at the end (`RssAnon`, `RssFile` of
   /proc/self/status; Linux has no peak of either).
3. Streaming throughput, one process, one thread: rows through `PackedDataset` + a torch `DataLoader`
   (batch 32), from the D = 1B mixture vs from the same rows as an in-memory int32 array (the old path).
4. Tokenization throughput of the tokenize stage on the real general train split (`data/corpora`, when
   present): 1 worker vs 2 workers.

    nice .venv/bin/python benchmarks/data_scale.py [--workdir outputs/bench_data_scale] [--sizes 10M,100M,1B]
        [--data data]

The stores take 2.2 GB of disk under --workdir (kept for re-runs; delete it afterwards).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cpu_model  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SEQ = 1024

PROBE = r"""
import json, resource, sys, time
t0 = time.perf_counter()
import numpy as np, torch
torch.set_num_threads(1)
from cptlaw.data.mixture import build_mixture, eval_rows
from cptlaw.data.token_store import open_store
from cptlaw.lm.datamodule import PackedDataset
t_import = time.perf_counter()
general, domain, n_tokens = sys.argv[1], sys.argv[2], int(sys.argv[3])
gen, dom = open_store(general), open_store(domain)
mix = build_mixture(domain_store=dom, domain_pos=np.arange(dom.n_docs), domain_ppl=None, general_store=gen,
                    n_tokens=n_tokens, r=0.5, seq_len=1024, seed=0)
tests = [eval_rows(s, 1024, 64, what="test") for s in (dom, gen)]
ds = PackedDataset(mix)
first = next(iter(torch.utils.data.DataLoader(ds, batch_size=32)))
startup = time.perf_counter() - t_import
n = len(ds)
for start in (0, n // 2, max(0, n - 32 * 8)):
    idx = list(range(start, min(n, start + 32 * 8)))
    for b in torch.utils.data.DataLoader(torch.utils.data.Subset(ds, idx), batch_size=32):
        pass
status = {l.split(":")[0]: int(l.split()[1]) / 1024 for l in open("/proc/self/status") if l.split(":")[0] in
          ("VmHWM", "RssAnon", "RssFile")}
print(json.dumps({"startup_s": startup, "import_s": t_import - t0, "rows": n,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "anon_mb": status["RssAnon"], "file_mb": status["RssFile"]}))
"""


def parse_size(text: str) -> int:
    mult = {"K": 10**3, "M": 10**6, "B": 10**9}
    return int(float(text[:-1]) * mult[text[-1]]) if text[-1] in mult else int(text)


def write_store(path: Path, n_tokens: int, seed: int) -> None:
    """A synthetic store written directly (no tokenizer): random ids, EOS (1) closing each document."""
    from cptlaw.data.token_store import META, StoreWriter

    if (path / META).is_file() and json.loads((path / META).read_text())["n_tokens"] >= n_tokens * 0.99:
        return
    rng, w, written, k = np.random.default_rng(seed), StoreWriter(path, np.uint16, {"eos_id": 1}), 0, 0
    while written < n_tokens:
        lengths = rng.integers(50, 2000, size=max(1, min(10_000, (n_tokens - written) // 1025)))
        flat = rng.integers(2, 32000, size=int(lengths.sum()), dtype=np.uint16)
        flat[np.cumsum(lengths) - 1] = 1
        w.add(flat, lengths, [f"d{k + i}" for i in range(len(lengths))])
        written, k = written + len(flat), k + len(lengths)
    w.finish()


def probe(general: Path, domain: Path, n_tokens: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    out = subprocess.run([sys.executable, "-c", PROBE, str(general), str(domain), str(n_tokens)], env=env,
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    return json.loads(out.strip().splitlines()[-1])


def streaming(general: Path, domain: Path, n_rows: int) -> tuple[float, float]:
    """Tokens/s through PackedDataset + DataLoader: streamed from the stores vs from an in-memory array."""
    import torch

    from cptlaw.data.mixture import build_mixture
    from cptlaw.data.token_store import open_store
    from cptlaw.lm.datamodule import PackedDataset

    torch.set_num_threads(1)
    gen, dom = open_store(general), open_store(domain)
    mix = build_mixture(domain_store=dom, domain_pos=np.arange(dom.n_docs), domain_ppl=None, general_store=gen,
                        n_tokens=10**9, r=0.5, seq_len=SEQ, seed=0)  # fmt: skip
    rates = []
    for source in (mix, np.stack([mix[i] for i in range(n_rows)])):
        sub = torch.utils.data.Subset(PackedDataset(source), range(n_rows))
        t0, tokens = time.perf_counter(), 0
        for batch in torch.utils.data.DataLoader(sub, batch_size=32):
            tokens += batch.shape[0] * SEQ
        rates.append(tokens / (time.perf_counter() - t0))
    return rates[0], rates[1]


def tokenization(workdir: Path, data: Path) -> list[tuple[int, float, int]]:
    from cptlaw.data.token_store import parquet_shards, source_record, tokenize_split, worker_pool
    from cptlaw.data.tokenizer import load_tokenizer

    corpus, tok_dir = data / "corpora" / "general" / "train.parquet", data / "tokenizer"
    if not corpus.is_file() or not tok_dir.is_dir():
        print(
            "tokenization: skipped (no data/corpora/general/train.parquet; run the corpora and tokenizer stages)"
        )
        return []
    tok, out = load_tokenizer(tok_dir), []
    for workers in (1, 2):
        pool = worker_pool(tok, workers) if workers > 1 else None
        if pool is not None:
            pool.submit(int, 0).result()  # workers up before the clock starts
        with tempfile.TemporaryDirectory(dir=workdir) as tmp:
            res = tokenize_split(parquet_shards(corpus, 500), Path(tmp) / "general", tok, source=source_record(corpus),
                                 workers=workers, executor=pool)  # fmt: skip
        if pool is not None:
            pool.shutdown()
        out.append((workers, res.meta["n_tokens"] / res.seconds, res.meta["n_tokens"]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", default=str(ROOT / "outputs" / "bench_data_scale"))
    ap.add_argument(
        "--sizes", default="10M,100M,1B", help="general store sizes (the largest is the general corpus)"
    )
    ap.add_argument("--d", default="1M,10M,100M,1B", help="CPT D values")
    ap.add_argument("--stream-rows", type=int, default=20_000)
    ap.add_argument(
        "--data", default=str(ROOT / "data"), help="project data dir with corpora/ and tokenizer/"
    )
    args = ap.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    print(f"CPU: {cpu_model()}")
    sizes = [parse_size(s) for s in args.sizes.split(",")]
    t0 = time.perf_counter()
    for s in sizes:
        write_store(work / f"general_{s}", s, seed=s % 997)
    domain = work / f"general_{sizes[min(1, len(sizes) - 1)]}"  # the 100M store doubles as the domain corpus
    print(f"stores written ({', '.join(f'{s:,}' for s in sizes)} tokens) in {time.perf_counter() - t0:.0f} s")

    general, rows = work / f"general_{sizes[-1]}", {}
    print(
        f"\nCPT data start-up and peak RSS vs D (general {sizes[-1]:,} tokens, domain {domain.name}, r = 0.5):"
    )
    for d in [parse_size(x) for x in args.d.split(",")]:
        rows[d] = probe(general, domain, d)
    base = rows.get(10**7) or next(iter(rows.values()))
    print("| D | rows | start-up s | × D=10M | peak RSS MB | × D=10M | RssAnon MB | RssFile MB |\n"
          "|---|---|---|---|---|---|---|---|")  # fmt: skip
    for d, r in rows.items():
        print(f"| {d:,} | {r['rows']:,} | {r['startup_s']:.2f} | {r['startup_s'] / base['startup_s']:.2f} | "
              f"{r['peak_rss_mb']:.0f} | {r['peak_rss_mb'] / base['peak_rss_mb']:.2f} | {r['anon_mb']:.0f} | "
              f"{r['file_mb']:.0f} |")  # fmt: skip

    print("\nCPT data start-up vs corpus size (D = 10M):")
    by_size = {s: probe(work / f"general_{s}", domain, 10**7) for s in sizes}
    first = by_size[sizes[0]]
    print("| general tokens | start-up s | × smallest | peak RSS MB | × smallest | RssAnon MB | RssFile MB |\n"
          "|---|---|---|---|---|---|---|")  # fmt: skip
    for s, r in by_size.items():
        print(f"| {s:,} | {r['startup_s']:.2f} | {r['startup_s'] / first['startup_s']:.2f} | {r['peak_rss_mb']:.0f} | "
              f"{r['peak_rss_mb'] / first['peak_rss_mb']:.2f} | {r['anon_mb']:.0f} | {r['file_mb']:.0f} |")  # fmt: skip

    streamed, in_memory = streaming(general, domain, args.stream_rows)
    print(f"\nstreaming (1 process, 1 thread, DataLoader batch 32, {args.stream_rows:,} rows of {SEQ + 1}): "
          f"{streamed / 1e6:.1f}M tokens/s from the stores vs {in_memory / 1e6:.1f}M tokens/s from an in-memory "
          f"array ({streamed / in_memory:.2f}×)")  # fmt: skip

    tok = tokenization(work, Path(args.data))
    for workers, rate, n in tok:
        print(f"tokenization of general/train ({n:,} tokens, shards of 500 documents), {workers} worker(s): "
              f"{rate / 1e6:.2f}M tokens/s ({rate / tok[0][1]:.2f}× 1 worker)")  # fmt: skip


if __name__ == "__main__":
    main()

"""The corpora stage's streamed build (`cptlaw.data.corpus_stream`): the same rows as the in-memory
`build_domain`, and a user corpus of tens of MB split and deduplicated exactly with memory far below its size."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from cptlaw.data.corpora import SPLITS, build_domain, split_counts, to_samples, unit_hash
from cptlaw.data.corpus_stream import Budget, stream_domain
from cptlaw.data.extract import LONG, PACKED, Doc
from cptlaw.errors import CorpusError
from tests.helpers.big_corpus import write_corpus

ROOT = Path(__file__).resolve().parents[2]


def _mixed_docs(n: int = 400) -> list[Doc]:
    """Short, long (chunked) and packed documents, exact duplicates, too-short ones, shared boilerplate."""
    rng = random.Random(0)
    words = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu".split()
    boiler = "THE SOFTWARE IS PROVIDED AS IS. " * 20
    docs: list[Doc] = []
    for i in range(n):
        text = " ".join(rng.choice(words) for _ in range(rng.choice([5, 30, 200, 900])))
        if i % 7 == 0:
            text += "\n\n" + boiler
        if i % 11 == 0 and docs:
            text = docs[rng.randrange(len(docs))].text
        docs.append(Doc(f"s{i % 3}/{i}", f"s{i % 3}", text, PACKED if i % 5 == 0 else LONG))
    return docs


@pytest.mark.parametrize("max_chars", [None, 300_000])
def test_stream_domain_gives_the_rows_and_stats_of_build_domain(tmp_path, max_chars):
    docs = _mixed_docs()
    kw = {
        "seed": 3,
        "sample_chars": 500,
        "min_chars": 64,
        "val_frac": 0.1,
        "test_frac": 0.1,
        "max_chars": max_chars,
    }
    frames, stats = build_domain("x", docs, **kw)
    tiny = Budget(batch_docs=17, bucket_chars=20_000, buffer_chars=5_000)  # many batches, buckets, flushes
    got = stream_domain("x", [("g", lambda: iter(docs))], tmp_path, budget=tiny, **kw)
    assert got == stats and stats["clean"]["duplicates"] > 0 and stats["clean"]["too_short"] > 0
    for split in SPLITS:
        pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "x" / f"{split}.parquet"), frames[split])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x"]  # no spill or bucket file left


def test_stream_domain_errors_name_the_problem(tmp_path):
    kw = {
        "seed": 0,
        "sample_chars": 500,
        "min_chars": 10,
        "val_frac": 0.1,
        "test_frac": 0.1,
        "max_chars": None,
    }
    twins = [Doc("s/1", "s", "first text here"), Doc("s/1", "s", "other text here")]
    with pytest.raises(CorpusError, match=r"^source 's': duplicate document id 's/1'$"):
        stream_domain("x", [("s", lambda: iter(twins))], tmp_path, **kw)
    with pytest.raises(CorpusError, match=r"^source 'e' \(domain 'x'\) is empty after cleaning"):
        stream_domain("x", [("e", lambda: iter([Doc("e/1", "e", "x")]))], tmp_path, **kw)
    assert not list(tmp_path.iterdir())  # nothing half-written


PROBE = """
import json, sys, tracemalloc
from cptlaw.data.corpus_stream import Budget, make_domain

def status(key):
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith(key + ":")) * 1024

def run(root, out):
    c = {"sample_chars": 2000, "min_chars": 64, "val_frac": 0.05, "test_frac": 0.05, "max_chars": None,
         "out_dir": out}
    user = [("local", {"name": "mine", "domain": "legal", "glob": root + "/*"})]
    budget = Budget(batch_docs=256, bucket_chars=2**21, buffer_chars=2**21)
    return make_domain("legal", [], None, user, c, seed=7, budget=budget)

run(sys.argv[1], sys.argv[3] + "-warm")  # imports, allocator pools: paid before the baseline
open("/proc/self/clear_refs", "w").write("5")  # reset the peak RSS (VmHWM) to the current RSS
before = status("VmRSS")
tracemalloc.start()
stats = run(sys.argv[2], sys.argv[3])
print(json.dumps({"stats": stats, "traced_peak": tracemalloc.get_traced_memory()[1],
                  "rss_growth": status("VmHWM") - before}))
"""


@pytest.mark.slow  # ~11 s: a 20 MB corpus through the stage under tracemalloc
def test_local_corpus_streams_with_memory_far_below_its_size(tmp_path):
    warm = write_corpus(tmp_path / "warm", "mine", 2**20, seed=1)
    corpus = write_corpus(tmp_path / "mine", "mine", 20 * 2**20)
    out = tmp_path / "corpora"
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT / "src"), "OPENBLAS_NUM_THREADS": "1"}
    args = [sys.executable, "-c", textwrap.dedent(PROBE), str(warm.root), str(corpus.root), str(out)]
    proc = subprocess.run(args, capture_output=True, text=True, env=env, timeout=300, check=True)
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    # memory: the Python heap grows by less than half the 20 MB corpus, peak RSS by less than the corpus (what is
    # left: ~100-300 bytes of digests and ranks per 1 kB document); the in-memory build needed ~25x it
    assert res["traced_peak"] < corpus.bytes / 2, res | {"stats": None}
    assert res["rss_growth"] < corpus.bytes, res | {"stats": None}  # RSS: allocator pools vary with load
    # exact counts: every unique document once, the copies and the too-short ones dropped
    stats = res["stats"]
    assert stats["clean"] | {"by_source": None} == {"kept": corpus.unique, "too_short": corpus.too_short,
        "duplicates": corpus.duplicates, "by_source": None, "capped_docs": corpus.unique}  # fmt: skip
    u = sorted(unit_hash(7, i, "split") for i in corpus.texts)
    assert [stats[s]["documents"] for s in SPLITS] == list(split_counts(u, 0.05, 0.05))
    samples = [s for i, t in corpus.texts.items() for s in to_samples([Doc(i, "mine", t)], 2000, 64)]
    assert sum(stats[s]["samples"] for s in SPLITS) == len(samples) > corpus.unique  # books were chunked
    frames = {s: pd.read_parquet(out / "legal" / f"{s}.parquet") for s in SPLITS}
    assert len(frames["train"]) == stats["train"]["samples"]
    for s in SPLITS:  # every split's documents are those its hash puts there
        docs = {i.split("#")[0] if i.endswith(".txt") or ".txt#" in i else i for i in frames[s]["id"]}
        lo, hi = {"train": (0, 0.9), "val": (0.9, 0.95), "test": (0.95, 1)}[s]
        assert all(lo <= unit_hash(7, d, "split") < hi for d in docs)
    texts = pd.concat(frames.values())["text"]
    assert texts.is_unique and set(texts) == {t for *_, t in samples}

"""The corpora stage's build of one domain, streamed: memory is bounded by batch and bucket sizes plus a few
numbers per document and per sample, never by the text of the corpus.

Same output as the in-memory `cptlaw.data.corpora.build_domain`, row for row (tested), in three passes:
1. spill: documents are normalised, too-short ones dropped, and appended in row groups to a spill file;
   per document only numbers stay: 16-byte digests of content and id, length, the seeded cap and split
   hashes. Exact dedup (first occurrence), the cap and the document-level split are computed from them;
2. chunk: the spill is read back in batches, kept documents are chunked into samples, and each sample goes
   to one of `n` bucket files on disk by its seeded order hash (u in [b/n, (b+1)/n) → bucket b); in memory
   per sample: its 16-byte digest and priority (document rank, chunk);
3. write: of identical samples the first in (train, val, test; document rank; chunk) order is kept, as in
   `build_domain`; bucket after bucket is loaded, sorted and appended to `<split>.parquet`, which gives the
   order of one global sort by the seeded hash.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import shutil
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cptlaw.data.corpora import (
    SPLITS,
    CorpusError,
    doc_groups,
    empty_source,
    max_chars_for,
    normalize,
    split_counts,
    to_samples,
    unit_hash,
)
from cptlaw.data.extract import Doc


@dataclass(frozen=True)
class Budget:
    """Memory knobs: documents per batch, characters per sort bucket, characters buffered before a flush."""

    batch_docs: int = 2048
    bucket_chars: int = 64 * 2**20
    buffer_chars: int = 32 * 2**20


def digest(text: str) -> tuple[int, int]:
    """A 16-byte content digest as two unsigned 64-bit halves."""
    d = hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest()
    return int.from_bytes(d[:8], "little"), int.from_bytes(d[8:], "little")


def _columns(spec: str) -> dict[str, array]:
    """Growing typed columns, 8 bytes or fewer per value (no Python object per document)."""
    return {name: array(code) for name, code in (x.split(":") for x in spec.split())}


def _np(col: array) -> np.ndarray:
    return np.frombuffer(col, dtype=col.typecode) if len(col) else np.zeros(0, col.typecode)


def first_occurrences(hi: np.ndarray, lo: np.ndarray) -> np.ndarray:
    """Bool mask: the first of each run of equal (hi, lo) digests, in index order."""
    order = np.lexsort((np.arange(len(hi)), lo, hi))
    h, low = hi[order], lo[order]
    new = np.ones(len(order), bool)
    new[1:] = (h[1:] != h[:-1]) | (low[1:] != low[:-1])
    keep = np.zeros(len(order), bool)
    keep[order[new]] = True
    return keep


# ------------------------------------------------------------------------------------------ pass 1: spill


def _spill_schema() -> Any:
    import pyarrow as pa

    return pa.schema([(c, pa.string()) for c in ("id", "source", "text", "kind")])


def _batches(docs: Iterable[Doc], n: int) -> Iterator[list[Doc]]:
    batch: list[Doc] = []
    for doc in docs:
        batch.append(doc)
        if len(batch) >= n:
            yield batch
            batch = []
    if batch:
        yield batch


def _record(cols: dict[str, array], docs: list[Doc], sources: dict[str, int], seed: int) -> None:
    for d in docs:
        for k, v in zip(("hi", "lo"), digest(d.text), strict=True):
            cols[k].append(v)
        for k, v in zip(("id_hi", "id_lo"), digest(d.id), strict=True):
            cols[k].append(v)
        cols["chars"].append(len(d.text))
        cols["src"].append(sources.setdefault(d.source, len(sources)))
        cols["u_cap"].append(unit_hash(seed, d.id, "cap"))
        cols["u_split"].append(unit_hash(seed, d.id, "split"))


def spill(
    groups: Iterable[tuple[str, Callable[[], Iterable[Doc]]]], path: Path, *, domain: str, seed: int,
    min_chars: int, budget: Budget, progress: Any = None,
) -> tuple[dict[str, np.ndarray], list[str], int]:  # fmt: skip
    """Normalised documents of at least `min_chars` → the spill file; returns their per-document numbers,
    the source names (by code) and the number of documents too short."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    cols = _columns("hi:Q lo:Q id_hi:Q id_lo:Q chars:q src:H u_cap:d u_split:d")
    sources: dict[str, int] = {}
    seen = 0
    with pq.ParquetWriter(path, _spill_schema()) as writer:
        for name, make in groups:
            if progress is not None:
                progress(f"extract {domain}/{name}")
            n0 = len(cols["hi"])
            for batch in _batches(make(), budget.batch_docs):
                seen += len(batch)
                docs = [
                    Doc(d.id, d.source, t, d.kind) for d in batch if len(t := normalize(d.text)) >= min_chars
                ]
                _record(cols, docs, sources, seed)
                writer.write_table(pa.table({k: [getattr(d, k) for d in docs] for k in ("id", "source", "text", "kind")},
                                            schema=_spill_schema()))  # fmt: skip
            if len(cols["hi"]) == n0:
                raise empty_source(name, domain, min_chars)
    return {k: _np(v) for k, v in cols.items()}, list(sources), seen - len(cols["hi"])


# ------------------------------------------------------------------------------------------ the plan


def cap_order(
    candidates: np.ndarray, chars: np.ndarray, u_cap: np.ndarray, max_chars: int | None
) -> np.ndarray:
    """`corpora.cap` on numbers: the documents (indices, in cap order) of a seeded subset of ≤ ~max_chars."""
    if max_chars is None:
        return candidates
    out, total = [], 0
    for i in candidates[np.argsort(u_cap[candidates], kind="stable")]:
        n = int(chars[i])
        if total + n > max_chars and out:
            if total >= 0.98 * max_chars:
                break
            continue  # a smaller document may still fit
        out.append(i)
        total += n
    return np.asarray(out, np.int64)


@dataclass
class Plan:
    """Per spilled document: its split (-1 dropped, else an index into SPLITS) and rank in split order."""

    split: np.ndarray
    rank: np.ndarray
    clean: dict[str, Any]


def plan(cols: Mapping[str, np.ndarray], sources: list[str], too_short: int, *, max_chars: int | None,
         val_frac: float, test_frac: float, spill_path: Path, domain: str, min_chars: int) -> Plan:  # fmt: skip
    """Dedup (first of exact duplicates), cap and split the spilled documents from their numbers alone."""
    n = len(cols["hi"])
    kept = np.flatnonzero(first_occurrences(cols["hi"], cols["lo"]))
    if not len(kept):
        raise CorpusError(f"domain '{domain}': no document left after cleaning (min_chars={min_chars})")
    ids_unique = first_occurrences(cols["id_hi"][kept], cols["id_lo"][kept])
    if not ids_unique.all():
        row = int(kept[np.flatnonzero(~ids_unique)[0]])
        raise CorpusError(f"source '{_spilled(spill_path, row, 'source')}': duplicate document id "
                          f"{_spilled(spill_path, row, 'id')!r}")  # fmt: skip
    capped = cap_order(kept, cols["chars"], cols["u_cap"], max_chars)
    ranked = capped[np.argsort(cols["u_split"][capped], kind="stable")]
    counts = split_counts(cols["u_split"][ranked], val_frac, test_frac)
    split, rank = np.full(n, -1, np.int8), np.full(n, -1, np.int64)
    split[ranked] = np.repeat(np.arange(3, dtype=np.int8), counts)
    rank[ranked] = np.arange(len(ranked))
    codes, first = np.unique(cols["src"][kept], return_index=True)
    per_source = Counter(cols["src"][kept].tolist())
    by_source = {sources[int(c)]: per_source[int(c)] for c in codes[np.argsort(first)]}
    clean = {"kept": len(kept), "too_short": too_short, "duplicates": n - len(kept), "by_source": by_source,
             "capped_docs": len(capped)}  # fmt: skip
    return Plan(split, rank, clean)


def _spilled(path: Path, row: int, column: str) -> str:
    import pyarrow.parquet as pq

    return str(pq.read_table(path, columns=[column]).column(column)[row])


# ------------------------------------------------------------------------------------------ pass 2: chunk


class Buckets:
    """`n` append-only bucket files of sample rows; rows are buffered up to `buffer_chars` characters, then
    every buffer is appended to its file as one pickled list."""

    def __init__(self, work: Path, n: int, buffer_chars: int):
        self.paths = [work / f"bucket-{b:05d}.pkl" for b in range(n)]
        self.buffers: list[list[tuple]] = [[] for _ in range(n)]
        self.chars, self.limit = 0, int(buffer_chars)

    def add(self, u: float, row: tuple) -> None:
        self.buffers[min(int(u * len(self.paths)), len(self.paths) - 1)].append(row)
        self.chars += len(row[-1])
        if self.chars >= self.limit:
            self.flush()

    def flush(self) -> None:
        for path, buf in zip(self.paths, self.buffers, strict=True):
            if buf:
                with open(path, "ab") as f:
                    pickle.dump(buf, f, protocol=pickle.HIGHEST_PROTOCOL)
                buf.clear()
        self.chars = 0

    def read(self, b: int) -> list[tuple]:
        rows: list[tuple] = []
        if self.paths[b].is_file():
            with open(self.paths[b], "rb") as f:
                while f.peek(1):
                    rows.extend(pickle.load(f))
        return rows


def chunk(spill_path: Path, p: Plan, buckets: Buckets, *, seed: int, sample_chars: int, min_chars: int,
          budget: Budget) -> dict[str, np.ndarray]:  # fmt: skip
    """Samples of the kept documents → buckets (row: seq, split, u, rank, chunk, id, source, text); returns
    each sample's digest and priority, indexed by seq."""
    import pyarrow.parquet as pq

    cols, row = _columns("hi:Q lo:Q rank:q k:l"), 0
    for batch in pq.ParquetFile(spill_path).iter_batches(batch_size=budget.batch_docs, use_threads=False):
        d = batch.to_pydict()
        for doc in map(Doc, d["id"], d["source"], d["text"], d["kind"]):
            s, rank, row = int(p.split[row]), int(p.rank[row]), row + 1
            if s < 0:
                continue
            for k, (sid, source, text) in enumerate(to_samples([doc], sample_chars, min_chars)):
                seq = len(cols["hi"])
                for key, v in zip(("hi", "lo", "rank", "k"), (*digest(text), rank, k), strict=True):
                    cols[key].append(v)
                u = unit_hash(seed, sid, f"order:{SPLITS[s]}")
                buckets.add(u, (seq, s, u, rank, k, sid, source, text))
    buckets.flush()
    return {k: _np(v) for k, v in cols.items()}


def winners(samples: Mapping[str, np.ndarray]) -> np.ndarray:
    """Bool per sample: the first of identical texts in (document rank, chunk) order — train before val
    before test, as `build_domain` keeps them."""
    n = len(samples["hi"])
    order = np.lexsort((samples["k"], samples["rank"], samples["lo"], samples["hi"]))
    h, lo = samples["hi"][order], samples["lo"][order]
    new = np.ones(n, bool)
    new[1:] = (h[1:] != h[:-1]) | (lo[1:] != lo[:-1])
    keep = np.zeros(n, bool)
    keep[order[new]] = True
    return keep


# ------------------------------------------------------------------------------------------ pass 3: write


def _split_stats(documents: int) -> dict[str, Any]:
    return {"documents": documents, "samples": 0, "chars": 0, "words": 0, "sources": Counter()}


def write_splits(buckets: Buckets, keep: np.ndarray, out: Path, documents: list[int]) -> dict[str, Any]:
    """Bucket after bucket: winners sorted by (u, rank, chunk) and appended to `out/<split>.parquet`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([(c, pa.string()) for c in ("id", "source", "text")])
    stats = {s: _split_stats(n) for s, n in zip(SPLITS, documents, strict=True)}
    writers = {s: pq.ParquetWriter(out / f"{s}.parquet", schema) for s in SPLITS}
    try:
        for b in range(len(buckets.paths)):
            rows = sorted((r for r in buckets.read(b) if keep[r[0]]), key=lambda r: (r[2], r[3], r[4]))
            for s, split in enumerate(SPLITS):
                part = [r for r in rows if r[1] == s]
                if part:
                    writers[split].write_table(
                        pa.table([[r[c] for r in part] for c in (5, 6, 7)], schema=schema)
                    )
                    _count(stats[split], part)
    finally:
        for w in writers.values():
            w.close()
    return {s: st | {"sources": dict(sorted(st["sources"].items()))} for s, st in stats.items()}


def _count(stats: dict[str, Any], rows: list[tuple]) -> None:
    stats["samples"] += len(rows)
    stats["chars"] += sum(len(r[7]) for r in rows)
    stats["words"] += sum(len(r[7].split()) for r in rows)
    stats["sources"].update(r[6] for r in rows)


# ------------------------------------------------------------------------------------------ the domain


def stream_domain(
    domain: str, groups: Iterable[tuple[str, Callable[[], Iterable[Doc]]]], out_dir: Path, *, seed: int,
    sample_chars: int, min_chars: int, val_frac: float, test_frac: float, max_chars: int | None,
    budget: Budget = Budget(), progress: Any = None,
) -> dict[str, Any]:  # fmt: skip
    """Documents of `groups` → `<out_dir>/<domain>/{train,val,test}.parquet` (written whole or not at all,
    via a temp dir and a rename); returns the stats `build_domain` gives."""
    work = Path(out_dir) / f".tmp-{domain}-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    (work / "out").mkdir(parents=True)
    try:
        cols, sources, short = spill(groups, work / "spill.parquet", domain=domain, seed=seed, min_chars=min_chars,
                                     budget=budget, progress=progress)  # fmt: skip
        p = plan(cols, sources, short, max_chars=max_chars, val_frac=val_frac, test_frac=test_frac,
                 spill_path=work / "spill.parquet", domain=domain, min_chars=min_chars)  # fmt: skip
        if progress is not None:
            progress(f"split {domain}")
        n_buckets = max(1, -(-int(cols["chars"][p.split >= 0].sum()) // budget.bucket_chars))
        buckets = Buckets(work, n_buckets, budget.buffer_chars)
        samples = chunk(work / "spill.parquet", p, buckets, seed=seed, sample_chars=sample_chars,
                        min_chars=min_chars, budget=budget)  # fmt: skip
        documents = [int(np.count_nonzero(p.split == s)) for s in range(3)]
        stats = write_splits(buckets, winners(samples), work / "out", documents)
        target = Path(out_dir) / domain
        if target.exists():
            shutil.rmtree(target)
        os.replace(work / "out", target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"clean": p.clean, **stats}


def make_domain(
    domain: str, sources: Iterable[Any], raw_dir: Path, user: Iterable[tuple[str, Mapping[str, Any]]],
    c: Mapping[str, Any], seed: int, progress: Any = None, budget: Budget = Budget(),
) -> dict[str, Any]:  # fmt: skip
    """The corpora stage for one domain: its sources → `<c.out_dir>/<domain>/*.parquet`; returns the stats.

    `c`: the `corpora` config (sample_chars, min_chars, val_frac, test_frac, max_chars, out_dir)."""
    groups = doc_groups(domain, sources, raw_dir, user, sample_chars=c["sample_chars"])
    return stream_domain(domain, groups, Path(c["out_dir"]), seed=seed, sample_chars=c["sample_chars"],
                         min_chars=c["min_chars"], val_frac=c["val_frac"], test_frac=c["test_frac"],
                         max_chars=max_chars_for(domain, c["max_chars"]), budget=budget, progress=progress)  # fmt: skip

"""Tokenized corpora on disk: one memory-mapped token store per domain split (stage `tokenize`).

Layout of `data/tokens/<domain>/<split>/` (the flat numpy-memmap layout of nanoGPT's `train.bin` and OLMo's
token files, with a Megatron-style document index beside it):

    tokens.bin    every document's token ids followed by the EOS id, concatenated; raw little-endian
                  uint16 when the vocabulary fits in 16 bits, else uint32 (`np.memmap`)
    offsets.npy   int64, n_docs + 1: document i is `tokens[offsets[i]:offsets[i+1]]` (its EOS included)
    ids.parquet   one column `id`: the corpus sample id of every document, in corpus-split order
    meta.json     written last: format, dtype, counts, EOS id, the tokenizer's fingerprint and the corpus
                  split it was built from (size, mtime, md5); without it the store is incomplete

Documents keep the order of the corpus split, so position i in a store is row i of the split and of the
score file. Packing, mixtures and scoring read slices of `tokens.bin` by document offsets: nothing is
re-tokenized and nothing is held in memory beyond the offsets of the documents a run selects.

Tokenization (`tokenize_split`) streams the corpus split in shards of `shard_docs` documents (pyarrow
record batches), encodes shards in parallel worker processes (HF `tokenizers`, one thread each) and writes
each shard atomically under `<split>/../.shards/<split>/`; a re-run with the same tokenizer and corpus
skips the finished shards, then the shards are concatenated into the store. `open_store` checks a store
before anything reads it (one-line `StoreError`: missing, incomplete, truncated, another tokenizer, out of
date with its corpus), so a bad store stops a run before any training.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cptlaw.data.version import file_md5
from cptlaw.errors import StoreError

FORMAT = "cptlaw-tokens/1"
TOKENS, OFFSETS, IDS, META = "tokens.bin", "offsets.npy", "ids.parquet", "meta.json"
RERUN = "re-run the tokenize stage (`dvc repro tokenize` or `python -m cptlaw.stages.tokenize`)"


def dtype_for(vocab_size: int) -> np.dtype:
    """uint16 when every id fits (vocab ≤ 65,536), else uint32."""
    return np.dtype(np.uint16 if int(vocab_size) <= 2**16 else np.uint32)


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """A short hash of a fast tokenizer's full definition (vocab, merges, normalizer, ...) and its EOS id."""
    spec = tokenizer.backend_tokenizer.to_str() + f"|eos={tokenizer.eos_token_id}"
    return hashlib.sha256(spec.encode()).hexdigest()[:16]


def source_record(path: str | Path) -> dict[str, Any]:
    """What a store remembers of the corpus split it was built from."""
    path = Path(path)
    st = path.stat()
    return {"file": path.name, "size": st.st_size, "mtime_ns": st.st_mtime_ns, "md5": file_md5(path)}


def source_current(record: dict[str, Any], path: str | Path) -> bool:
    """Is `path` still the file of `record`? Size and mtime first; the md5 only when they moved (a DVC
    checkout or an identical rebuild changes the mtime, not the content)."""
    st = Path(path).stat()
    if st.st_size != record.get("size"):
        return False
    return st.st_mtime_ns == record.get("mtime_ns") or file_md5(Path(path)) == record.get("md5")


# ------------------------------------------------------------------------------------------ reading


@dataclass
class TokenStore:
    """An opened store: `tokens` (memmap), `offsets` (memmap), `meta`; documents by position. Training
    and scoring read ids with `read` / `doc` (positioned reads, see `read`)."""

    path: Path
    meta: dict[str, Any]
    tokens: np.ndarray = field(repr=False)
    offsets: np.ndarray = field(repr=False)

    @property
    def n_docs(self) -> int:
        return int(self.meta["n_docs"])

    @property
    def n_tokens(self) -> int:
        return int(self.meta["n_tokens"])

    @property
    def eos_id(self) -> int:
        return int(self.meta["eos_id"])

    @functools.cached_property
    def lengths(self) -> np.ndarray:
        """Tokens of each document, EOS included (int64, n_docs; computed once per opened store)."""
        return np.diff(self.offsets)

    def doc(self, i: int) -> np.ndarray:
        """Document i's ids with its trailing EOS (read, `read`)."""
        return self.read(int(self.offsets[i]), int(self.offsets[i + 1]))

    def read(self, a: int, b: int) -> np.ndarray:
        """Ids at [a, b) of `tokens.bin` by positioned reads (`os.preadv`) instead of the memory map: a
        mapped read of a few kB maps whole page-cache folios (up to MBs) into the process, so random rows of
        a large store grew RSS with the store's size; read, the process holds only what it asked for."""
        out = np.empty(max(0, int(b) - int(a)), np.dtype(self.meta["dtype"]))
        view, pos = memoryview(out).cast("B"), int(a) * out.itemsize
        while len(view):
            n = os.preadv(self._fd(), [view], pos)
            if n == 0:
                raise StoreError(
                    f"token store {self.path} is truncated ({TOKENS} ends at byte {pos:,}): {RERUN}"
                )
            view, pos = view[n:], pos + n
        return out

    def _fd(self) -> int:
        if self.__dict__.get("fd") is None:  # opened on first read, in the process that reads (fork-safe)
            self.__dict__["fd"] = os.open(self.path / TOKENS, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        return self.__dict__["fd"]

    def __del__(self) -> None:
        fd = self.__dict__.pop("fd", None)
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    def ids(self) -> list[str]:
        """The corpus sample ids, in store order (read on demand: only id regimes and scores need them)."""
        import pyarrow.parquet as pq

        return [str(x) for x in pq.read_table(self.path / IDS, columns=["id"]).column("id").to_pylist()]

    def __getstate__(self) -> dict[str, Any]:  # a spawned worker re-opens the files instead of copying them
        return {"path": self.path, "meta": self.meta}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.path, self.meta = state["path"], state["meta"]
        self.tokens, self.offsets = _maps(self.path, self.meta)


def _maps(path: Path, meta: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    n = int(meta["n_tokens"])
    tokens = (
        np.memmap(path / TOKENS, dtype=np.dtype(meta["dtype"]), mode="r", shape=(n,)) if n else np.zeros(0)
    )
    return tokens, np.load(path / OFFSETS, mmap_mode="r")


def open_store(
    path: str | Path, *, tokenizer_fp: str | None = None, corpus: str | Path | None = None
) -> TokenStore:
    """Open and check a store: complete, not truncated, built with tokenizer `tokenizer_fp` and from the
    current `corpus` split (each check only when given). Every failure is one `StoreError` line naming the
    store and the stage to re-run."""
    path = Path(path)
    meta_file = path / META
    if not meta_file.is_file():
        shards = path.parent / ".shards" / path.name
        if path.is_dir() or shards.is_dir():
            raise StoreError(f"token store {path} is incomplete (tokenization was interrupted): {RERUN}; "
                             f"finished shards are kept")  # fmt: skip
        raise StoreError(f"token store {path} does not exist: {RERUN}")
    try:
        meta = json.loads(meta_file.read_text())
        dtype, n_docs, n_tokens = np.dtype(meta["dtype"]), int(meta["n_docs"]), int(meta["n_tokens"])
    except (ValueError, KeyError, TypeError):
        raise StoreError(f"token store {path} has an unreadable {META}: {RERUN}") from None
    if meta.get("format") != FORMAT:
        raise StoreError(f"token store {path} has format {meta.get('format')!r}, not {FORMAT!r}: {RERUN}")
    want = {TOKENS: n_tokens * dtype.itemsize, IDS: None, OFFSETS: None}
    for name, size in want.items():
        f = path / name
        if not f.is_file():
            raise StoreError(f"token store {path} is truncated ({name} is missing): {RERUN}")
        if size is not None and f.stat().st_size != size:
            raise StoreError(
                f"token store {path} is truncated ({name} holds {f.stat().st_size:,} of {size:,} bytes): {RERUN}"
            )
    try:
        tokens, offsets = _maps(path, meta)
    except (ValueError, OSError) as exc:
        raise StoreError(f"token store {path} is truncated ({OFFSETS}: {exc}): {RERUN}") from None
    if offsets.shape != (n_docs + 1,) or (n_docs and int(offsets[-1]) != n_tokens):
        raise StoreError(f"token store {path} is truncated ({OFFSETS} does not match {META}): {RERUN}")
    if tokenizer_fp is not None and meta.get("tokenizer") != tokenizer_fp:
        raise StoreError(
            f"token store {path} was built with another tokenizer ({meta.get('tokenizer')}, this run's is "
            f"{tokenizer_fp}): {RERUN} with the base model's tokenizer (`tokenizer.path`)"
        )
    if corpus is not None:
        if not Path(corpus).is_file():
            raise StoreError(
                f"token store {path}: its corpus split {corpus} does not exist (run the corpora stage)"
            )
        if not source_current(meta.get("source", {}), corpus):
            raise StoreError(f"token store {path} is out of date with its corpus {corpus}: {RERUN}")
    return TokenStore(path, meta, tokens, offsets)


# ------------------------------------------------------------------------------------------ writing


class StoreWriter:
    """Appends documents (flat ids + lengths + sample ids) and finishes a store atomically: everything is
    written into `<out>.tmp-<pid>` and renamed over `out` after `meta.json`, so a store is whole or absent."""

    def __init__(self, out_dir: str | Path, dtype: np.dtype | str, meta: dict[str, Any]):
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.out = Path(out_dir)
        self.tmp = self.out.with_name(f".{self.out.name}.tmp-{os.getpid()}")
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp.mkdir(parents=True)
        self.dtype, self.meta = np.dtype(dtype), dict(meta)
        self._tokens = open(self.tmp / TOKENS, "wb")  # noqa: SIM115 - closed in finish()
        self._ids = pq.ParquetWriter(self.tmp / IDS, pa.schema([("id", pa.string())]))
        self._lengths: list[np.ndarray] = []
        self.n_tokens = 0

    def add(self, flat: np.ndarray, lengths: np.ndarray, ids: list[str]) -> None:
        import pyarrow as pa

        if len(lengths) != len(ids) or int(np.sum(lengths)) != len(flat):
            raise ValueError("StoreWriter.add: flat ids, lengths and sample ids disagree")
        self._tokens.write(np.ascontiguousarray(flat, dtype=self.dtype).tobytes())
        self._ids.write_table(pa.table({"id": pa.array(ids, pa.string())}))
        self._lengths.append(np.asarray(lengths, np.int64))
        self.n_tokens += len(flat)

    def add_file(self, bin_path: Path, lengths: np.ndarray, ids: list[str]) -> None:
        """Append a shard's raw token file (streamed, never loaded whole)."""
        import pyarrow as pa

        with open(bin_path, "rb") as f:
            shutil.copyfileobj(f, self._tokens, 2**24)
        self._ids.write_table(pa.table({"id": pa.array(ids, pa.string())}))
        self._lengths.append(np.asarray(lengths, np.int64))
        self.n_tokens += int(np.sum(lengths))

    def finish(self) -> dict[str, Any]:
        self._tokens.close()
        self._ids.close()
        lengths = np.concatenate(self._lengths) if self._lengths else np.zeros(0, np.int64)
        offsets = np.zeros(len(lengths) + 1, np.int64)
        np.cumsum(lengths, out=offsets[1:])
        np.save(self.tmp / OFFSETS, offsets)
        meta = {"format": FORMAT, "dtype": self.dtype.name, "n_docs": len(lengths), "n_tokens": self.n_tokens,
                **self.meta}  # fmt: skip
        (self.tmp / META).write_text(json.dumps(meta, indent=1) + "\n")
        if self.out.exists():
            shutil.rmtree(self.out)
        os.replace(self.tmp, self.out)
        return meta


def encode(tok: Any, texts: list[str], eos: int, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """Flat ids of `texts` (each followed by `eos`) and per-document lengths; `tok` is a `tokenizers.Tokenizer`."""
    encs = tok.encode_batch(texts, add_special_tokens=False)
    lengths = np.fromiter((len(e.ids) + 1 for e in encs), np.int64, len(encs))
    flat = np.empty(int(lengths.sum()), dtype)
    pos = 0
    for e, n in zip(encs, lengths, strict=True):
        flat[pos : pos + n - 1] = e.ids
        flat[pos + n - 1] = eos
        pos += int(n)
    return flat, lengths


_WORKER: dict[str, Any] = {}


def _init_worker(tokenizer_json: str, eos: int, dtype: str) -> None:
    os.environ["RAYON_NUM_THREADS"] = "1"  # one core per worker process
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    from tokenizers import Tokenizer

    tok = Tokenizer.from_str(tokenizer_json)
    tok.no_truncation()
    tok.no_padding()
    _WORKER.update(tok=tok, eos=eos, dtype=np.dtype(dtype))


def _shard_paths(shard_dir: Path, k: int) -> dict[str, Path]:
    return {x: shard_dir / f"{k:06d}.{x}" for x in ("bin", "len.npy", "ids.json", "done")}


def _tokenize_shard(shard_dir: Path, k: int, ids: list[str], texts: list[str]) -> tuple[int, int, int]:
    """Encode one shard and write it atomically (the `.done` marker last); runs in a worker."""
    flat, lengths = encode(_WORKER["tok"], texts, _WORKER["eos"], _WORKER["dtype"])
    paths = _shard_paths(shard_dir, k)
    for name, write in (("bin", lambda f: f.write(flat.tobytes())), ("len.npy", lambda f: np.save(f, lengths)),
                        ("ids.json", lambda f: f.write(json.dumps(ids).encode()))):  # fmt: skip
        tmp = paths[name].with_name(paths[name].name + ".tmp")
        with open(tmp, "wb") as f:
            write(f)
        os.replace(tmp, paths[name])
    paths["done"].write_text(json.dumps({"docs": len(ids), "tokens": len(flat)}))
    return k, len(ids), len(flat)


def parquet_shards(
    path: str | Path, shard_docs: int, text_field: str = "text"
) -> Iterator[tuple[list[str], list[str]]]:
    """(ids, texts) of consecutive `shard_docs`-document shards of a corpus split, streamed with pyarrow."""
    import pyarrow.parquet as pq

    ids: list[str] = []
    texts: list[str] = []
    for batch in pq.ParquetFile(path).iter_batches(
        batch_size=min(shard_docs, 8192), columns=["id", text_field]
    ):
        ids += [str(x) for x in batch.column(0).to_pylist()]
        texts += [str(x) for x in batch.column(1).to_pylist()]
        while len(ids) >= shard_docs:
            yield ids[:shard_docs], texts[:shard_docs]
            ids, texts = ids[shard_docs:], texts[shard_docs:]
    if ids:
        yield ids, texts


def n_rows(path: str | Path) -> int:
    import pyarrow.parquet as pq

    return int(pq.ParquetFile(path).metadata.num_rows)


@dataclass
class Tokenized:
    """What `tokenize_split` did: the store's meta and the shards it encoded / found finished."""

    meta: dict[str, Any]
    encoded: int
    resumed: int
    seconds: float
    up_to_date: bool = False


def tokenize_split(
    shards: Iterable[tuple[list[str], list[str]]],
    out_dir: str | Path,
    tokenizer: Any,
    *,
    source: dict[str, Any],
    n_shards: int | None = None,
    workers: int = 1,
    progress: Callable[[int], Any] | None = None,
    executor: ProcessPoolExecutor | None = None,
) -> Tokenized:
    """Tokenize a stream of (ids, texts) shards into the store `out_dir`, resumably (module docstring).

    `source` identifies the input (e.g. `source_record(corpus split)`); shards left by an interrupted run
    with the same tokenizer, source and shard sizes are kept, others are discarded. `workers` > 1 encodes
    shards in that many processes, at most 2 × workers shards in flight (the input is never held whole);
    pass `executor` (from `worker_pool`) to reuse one pool over several splits.
    """
    out_dir = Path(out_dir)
    start = time.perf_counter()
    eos = tokenizer.eos_token_id
    if eos is None:
        raise StoreError("the tokenizer has no eos_token: documents cannot be separated in a token store")
    dtype = dtype_for(len(tokenizer))
    key = {"format": FORMAT, "tokenizer": tokenizer_fingerprint(tokenizer), "dtype": dtype.name,
           "source_md5": source.get("md5")}  # fmt: skip
    shard_dir = out_dir.parent / ".shards" / out_dir.name
    key_file = shard_dir / "key.json"
    if shard_dir.exists() and (not key_file.is_file() or json.loads(key_file.read_text()) != key):
        shutil.rmtree(shard_dir)  # shards of another tokenizer or corpus
    shard_dir.mkdir(parents=True, exist_ok=True)
    key_file.write_text(json.dumps(key) + "\n")
    tok_json = tokenizer.backend_tokenizer.to_str()
    done: dict[int, int] = {}
    resumed = encoded = 0
    own = executor is None and workers > 1
    pool = worker_pool(tokenizer, workers) if own else executor
    if pool is None:
        _init_worker(tok_json, eos, dtype.name)
    try:
        pending: set[Future] = set()
        for k, (ids, texts) in enumerate(shards):
            if _shard_paths(shard_dir, k)["done"].is_file():
                resumed += 1
                done[k] = len(ids)
                if progress:
                    progress(1)
                continue
            if pool is None:
                _tokenize_shard(shard_dir, k, ids, texts)
                done[k], encoded = len(ids), encoded + 1
                if progress:
                    progress(1)
                continue
            pending.add(pool.submit(_tokenize_shard, shard_dir, k, ids, texts))
            while len(pending) >= 2 * workers:
                encoded += _collect(pending, done, progress, FIRST_COMPLETED)
        encoded += _collect(pending, done, progress, None)
    finally:
        if own and pool is not None:
            pool.shutdown(cancel_futures=True)
    meta = _assemble(out_dir, shard_dir, sorted(done), dtype, {
        "eos_id": int(eos), "vocab_size": len(tokenizer), "tokenizer": key["tokenizer"], "source": source,
    })  # fmt: skip
    shutil.rmtree(shard_dir)
    seconds = time.perf_counter() - start
    return Tokenized(meta, encoded, resumed, seconds)


def _collect(pending: set[Future], done: dict[int, int], progress: Any, mode: Any) -> int:
    finished, rest = wait(pending, return_when=mode or "ALL_COMPLETED")
    pending.clear()
    pending.update(rest)
    for fut in finished:
        k, n_docs, _ = fut.result()
        done[k] = n_docs
        if progress:
            progress(1)
    return len(finished)


def worker_pool(tokenizer: Any, workers: int) -> ProcessPoolExecutor:
    """`workers` spawned processes, each holding `tokenizer`'s backend (one thread each)."""
    import multiprocessing

    init = (tokenizer.backend_tokenizer.to_str(), tokenizer.eos_token_id, dtype_for(len(tokenizer)).name)
    return ProcessPoolExecutor(int(workers), initializer=_init_worker, initargs=init,
                               mp_context=multiprocessing.get_context("spawn"))  # fmt: skip


def _assemble(out_dir: Path, shard_dir: Path, ks: list[int], dtype: np.dtype, meta: dict) -> dict[str, Any]:
    if ks != list(range(len(ks))):
        raise StoreError(f"token store {out_dir}: shards {ks} are not consecutive: {RERUN}")
    writer = StoreWriter(out_dir, dtype, meta)
    for k in ks:
        p = _shard_paths(shard_dir, k)
        writer.add_file(p["bin"], np.load(p["len.npy"]), json.loads(p["ids.json"].read_text()))
    return writer.finish()


def store_current(out_dir: str | Path, tokenizer_fp: str, corpus: str | Path) -> bool:
    """Is the store at `out_dir` complete, whole and built from `corpus` with this tokenizer?"""
    try:
        open_store(out_dir, tokenizer_fp=tokenizer_fp, corpus=corpus)
    except StoreError:
        return False
    return True


def tokenize_corpora(
    corpora_dir: str | Path,
    tokens_dir: str | Path,
    tokenizer: Any,
    domains: Iterable[str],
    splits: Iterable[str],
    *,
    shard_docs: int,
    workers: int,
    progress: bool = True,
) -> dict[str, Any]:
    """The tokenize stage's driver: every `<domain>/<split>` corpus split → `<tokens_dir>/<domain>/<split>/`,
    skipping stores that are current; returns per-split metrics (documents, tokens, tokens/s, resumed)."""
    if int(shard_docs) < 1 or int(workers) < 1:
        raise StoreError(
            f"`tokenize.shard_docs` and `tokenize.workers` must be >= 1, got {shard_docs}, {workers}"
        )
    fp, out = tokenizer_fingerprint(tokenizer), {}
    pool = worker_pool(tokenizer, int(workers)) if int(workers) > 1 else None
    try:
        _tokenize_all(corpora_dir, tokens_dir, tokenizer, fp, domains, splits, int(shard_docs), int(workers), pool,
                      progress, out)  # fmt: skip
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    return out


def _tokenize_all(
    corpora_dir, tokens_dir, tokenizer, fp, domains, splits, shard_docs, workers, pool, progress, out
):  # noqa: ANN001, ANN202
    from tqdm.auto import tqdm

    for domain in domains:
        for split in splits:
            corpus = Path(corpora_dir) / domain / f"{split}.parquet"
            store_dir = Path(tokens_dir) / domain / split
            if not corpus.is_file():
                raise StoreError(f"corpus split {corpus} does not exist: run the corpora stage")
            if store_current(store_dir, fp, corpus):
                meta = json.loads((store_dir / META).read_text())
                out.setdefault(domain, {})[split] = _metrics(meta, None)
                print(f"[tokenize] {domain}/{split}: up to date ({meta['n_tokens']:,} tokens)")
                continue
            total = -(-n_rows(corpus) // shard_docs)
            with tqdm(
                total=total, desc=f"tokenize {domain}/{split}", unit="shard", disable=not progress
            ) as bar:
                res = tokenize_split(parquet_shards(corpus, shard_docs), store_dir, tokenizer, source=source_record(corpus),
                                     workers=workers, progress=bar.update, executor=pool)  # fmt: skip
            out.setdefault(domain, {})[split] = _metrics(res.meta, res)
            print(f"[tokenize] {domain}/{split}: {res.meta['n_docs']:,} documents, {res.meta['n_tokens']:,} "
                  f"{res.meta['dtype']} tokens in {res.seconds:.1f}s ({res.encoded} shards encoded, "
                  f"{res.resumed} resumed)")  # fmt: skip
    return out


def _metrics(meta: dict[str, Any], res: Tokenized | None) -> dict[str, Any]:
    m = {"documents": meta["n_docs"], "tokens": meta["n_tokens"], "dtype": meta["dtype"]}
    if res is not None:
        m |= {"seconds": round(res.seconds, 2), "tokens_per_s": round(meta["n_tokens"] / max(res.seconds, 1e-9)),
              "shards_encoded": res.encoded, "shards_resumed": res.resumed}  # fmt: skip
    return m

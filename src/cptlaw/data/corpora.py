"""Corpora: documents → cleaned, deduplicated, capped, document-level train/val/test splits of samples.

Order of operations. Documents are shuffled, because sources left in file order would each land whole in
one split; whole documents are held out, so no text of a val/test document is trained on:
1. clean: normalise whitespace, drop empty / near-empty documents, exact dedup by content hash;
2. cap: keep a seeded random subset of documents up to `max_chars` per domain (profiles keep the demo fast);
3. split by document id — a hash of (seed, id) — so no document (and no chunk of a book) is in two splits;
4. chunk long documents into samples of about `sample_chars` (ontology entries were packed on extraction);
   drop a sample whose exact text already sits in an earlier split (train before val before test);
5. shuffle the samples of each split (seeded) and write `<domain>/{train,val,test}.parquet` (id, source, text).

The pure pieces are here, with `build_domain` doing it all in memory; the corpora stage streams the same
steps with memory bounded independently of corpus size (`cptlaw.data.corpus_stream`, same rows, tested).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cptlaw.data.extract import LONG, Doc
from cptlaw.errors import CorpusError, first_line

SPLITS = ("train", "val", "test")
COLUMNS = ["id", "source", "text"]


# ---------------------------------------------------------------- cleaning


_CTRL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_INNER_WS = re.compile(r"(?<=\S)[ \t\u00a0\u2000-\u200a\u3000]{2,}")
_BLANKS = re.compile(r"\n{3,}")


def normalize(text: str) -> str:
    """NFC, unix newlines, no control chars, runs of inner spaces → one (indentation kept: code), lines
    right-stripped, at most one blank line in a row, no leading/trailing blank lines."""
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")
    text = _CTRL.sub("", text)
    lines = [_INNER_WS.sub(" ", ln).rstrip() for ln in text.split("\n")]
    return _BLANKS.sub("\n\n", "\n".join(lines)).strip("\n").strip() if lines else ""


def content_hash(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


@dataclass
class CleanStats:
    kept: int = 0
    too_short: int = 0
    duplicates: int = 0
    by_source: dict[str, int] = field(default_factory=dict)


def clean(docs: Iterable[Doc], min_chars: int, normalized: bool = False) -> tuple[list[Doc], CleanStats]:
    """Normalise; drop documents shorter than `min_chars` after normalising; keep the first of exact duplicates."""
    out, seen, stats = [], set(), CleanStats()
    ids: set[str] = set()
    for doc in docs:
        text = doc.text if normalized else normalize(doc.text)
        if len(text) < min_chars:
            stats.too_short += 1
            continue
        h = content_hash(text)
        if h in seen:
            stats.duplicates += 1
            continue
        if doc.id in ids:
            raise CorpusError(f"source '{doc.source}': duplicate document id {doc.id!r}")
        seen.add(h)
        ids.add(doc.id)
        out.append(Doc(doc.id, doc.source, text, doc.kind))
        stats.by_source[doc.source] = stats.by_source.get(doc.source, 0) + 1
    stats.kept = len(out)
    return out, stats


# ---------------------------------------------------------------- seeded hashing, cap, split


def unit_hash(seed: int, key: str, salt: str = "") -> float:
    """A uniform number in [0, 1) from (seed, salt, key): the same on every machine and run."""
    digest = hashlib.sha256(f"{seed}:{salt}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def shuffled(items: list, seed: int, key=lambda x: x.id, salt: str = "shuffle") -> list:
    return sorted(items, key=lambda x: unit_hash(seed, key(x), salt))


def cap(docs: list[Doc], max_chars: int | None, seed: int) -> list[Doc]:
    """A seeded random subset of whole documents with at most about `max_chars` characters (None: all)."""
    if max_chars is None:
        return docs
    out, total = [], 0
    for doc in shuffled(docs, seed, salt="cap"):
        if total + len(doc.text) > max_chars and out:
            if total >= 0.98 * max_chars:
                break
            continue  # a smaller document may still fit
        out.append(doc)
        total += len(doc.text)
    return out


def split_counts(u_sorted: Sequence[float], val_frac: float, test_frac: float) -> tuple[int, int, int]:
    """(train, val, test) document counts from the sorted split hashes: u < 1-val-test → train, then val,
    then test; with ≥ 3 documents val and test each get at least one (the documents with the highest u)."""
    for key, frac in (("val_frac", val_frac), ("test_frac", test_frac)):
        if not 0 <= frac < 1:
            raise CorpusError(f"`corpora.{key}` must be in [0, 1), got {frac}")
    if val_frac + test_frac >= 1:
        raise CorpusError(f"`corpora.val_frac` + `corpora.test_frac` must be < 1, got {val_frac + test_frac}")
    u, lo, hi = np.asarray(u_sorted, float), 1 - val_frac - test_frac, 1 - test_frac
    n_train = int(np.count_nonzero(u < lo))
    n_val = int(np.count_nonzero((u >= lo) & (u < hi)))
    n_test = len(u) - n_train - n_val
    if len(u_sorted) >= 3:
        if val_frac > 0 and n_test > 0 and n_val == 0:
            n_val, n_train = 1, n_train - 1
        if test_frac > 0 and n_test == 0:
            n_test, n_train = 1, n_train - 1
        if val_frac > 0 and n_val == 0:
            n_val, n_train = 1, n_train - 1
    return n_train, n_val, n_test


def split_docs(docs: list[Doc], seed: int, val_frac: float, test_frac: float) -> dict[str, list[Doc]]:
    """Document-level split from a hash of (seed, id): u < 1-val-test → train, then val, then test.

    With ≥ 3 documents val and test each get at least one (the documents with the highest u), so small
    (smoke) corpora still have held-out data; the choice is still a pure function of seed and ids.
    """
    ranked = sorted(docs, key=lambda d: unit_hash(seed, d.id, "split"))
    n_train, n_val, _ = split_counts([unit_hash(seed, d.id, "split") for d in ranked], val_frac, test_frac)
    n_val_end = n_train + n_val
    return {"train": ranked[:n_train], "val": ranked[n_train:n_val_end], "test": ranked[n_val_end:]}


# ---------------------------------------------------------------- chunking


def _pieces(text: str, size: int) -> list[tuple[str, str]]:
    """(separator, piece) pairs: paragraphs, then lines, then sentences/words of at most `size` characters
    (a hard cut as the last resort); joining them with their separators gives the text back."""
    out: list[tuple[str, str]] = []
    for para in text.split("\n\n"):
        sep = "\n\n"
        if len(para) <= size:
            out.append((sep, para))
            continue
        for line in para.split("\n"):
            while len(line) > size:
                cut = max(line.rfind(". ", 0, size), line.rfind(" ", 0, size))
                cut = cut + 1 if cut > size // 4 else size
                out.append((sep, line[:cut]))
                line, sep = line[cut:], ""
            out.append((sep, line))
            sep = "\n"
    return out


def chunk_text(text: str, sample_chars: int, min_chars: int = 0) -> list[str]:
    """Greedy chunks of about `sample_chars` on paragraph/line boundaries; a short tail joins the last chunk."""
    if len(text) <= sample_chars:
        return [text]
    chunks: list[str] = []
    buf = ""
    for sep, piece in _pieces(text, sample_chars):
        if buf and len(buf) + len(sep) + len(piece) > sample_chars:
            chunks.append(buf)
            buf = piece
        else:
            buf = buf + sep + piece if buf else piece
    if chunks and len(buf.strip()) < max(min_chars, sample_chars // 4):
        chunks[-1] = chunks[-1] + "\n" + buf
    elif buf.strip():
        chunks.append(buf)
    return [c.strip("\n").rstrip() for c in chunks if c.strip()]


def to_samples(docs: list[Doc], sample_chars: int, min_chars: int) -> list[tuple[str, str, str]]:
    """(id, source, text) samples: long documents chunked (`<doc id>#<k>`), packed ones as they are."""
    rows = []
    for doc in docs:
        if doc.kind != LONG or len(doc.text) <= sample_chars:
            rows.append((doc.id, doc.source, doc.text))
            continue
        for k, chunk in enumerate(chunk_text(doc.text, sample_chars, min_chars)):
            rows.append((f"{doc.id}#{k}", doc.source, chunk))
    return rows


# ---------------------------------------------------------------- build / write / read


def build_domain(
    domain: str,
    docs: Iterable[Doc],
    *,
    seed: int,
    sample_chars: int,
    min_chars: int,
    val_frac: float,
    test_frac: float,
    max_chars: int | None,
    normalized: bool = False,
) -> tuple[dict[str, pd.DataFrame], dict[str, Any]]:
    """One domain's documents → shuffled sample frames per split, plus stats, all in memory: the reference
    the stage's streaming build (`cptlaw.data.corpus_stream.stream_domain`) matches row for row (tested)."""
    cleaned, cstats = clean(docs, min_chars, normalized)
    if not cleaned:
        raise CorpusError(f"domain '{domain}': no document left after cleaning (min_chars={min_chars})")
    kept = cap(cleaned, max_chars, seed)
    parts = split_docs(kept, seed, val_frac, test_frac)
    seen: set[str] = set()
    frames, stats = {}, {"clean": cstats.__dict__ | {"capped_docs": len(kept)}}
    for split in SPLITS:
        rows = []
        for row in to_samples(parts[split], sample_chars, min_chars):
            h = content_hash(row[2])
            if h not in seen:  # identical boilerplate chunks of different documents: keep the first
                seen.add(h)
                rows.append(row)
        rows = shuffled(rows, seed, key=lambda r: r[0], salt=f"order:{split}")
        frame = pd.DataFrame(rows, columns=COLUMNS).astype({c: str for c in COLUMNS})
        frames[split] = frame
        stats[split] = {
            "documents": len(parts[split]),
            "samples": len(frame),
            "chars": int(frame["text"].str.len().sum()),
            "words": int(frame["text"].str.split().str.len().sum()) if len(frame) else 0,
            "sources": {k: int(v) for k, v in frame["source"].value_counts().sort_index().items()},
        }
    return frames, stats


def write_domain(corpora_dir: Path, domain: str, frames: Mapping[str, pd.DataFrame]) -> Path:
    """Write `<corpora_dir>/<domain>/{train,val,test}.parquet` via a temp dir + rename (never half-written)."""
    target = Path(corpora_dir) / domain
    tmp = Path(corpora_dir) / f".tmp-{domain}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for split in SPLITS:
        frames[split].to_parquet(tmp / f"{split}.parquet", index=False)
    if target.exists():
        shutil.rmtree(target)
    os.replace(tmp, target)
    return target


def read_split(corpora_dir: str | Path, domain: str, split: str) -> pd.DataFrame:
    """The samples of one domain and split: columns `id, source, text` in the (shuffled) file order."""
    if split not in SPLITS:
        raise CorpusError(f"split must be one of {SPLITS}, got {split!r}")
    path = Path(corpora_dir) / domain / f"{split}.parquet"
    if not path.is_file():
        have = (
            sorted(p.name for p in Path(corpora_dir).iterdir() if p.is_dir())
            if Path(corpora_dir).is_dir()
            else []
        )
        raise CorpusError(
            f"unknown domain '{domain}': no corpus {path} (domains built: {have}); run the corpora stage"
        )
    try:
        return pd.read_parquet(path, columns=COLUMNS).reset_index(drop=True)
    except (OSError, ValueError, KeyError) as exc:  # truncated file, or written by something else
        raise CorpusError(
            f"corrupt corpus split {path} ({first_line(exc)}): re-run the corpora stage"
        ) from None


# ---------------------------------------------------------------- sources → domain documents


def doc_groups(
    domain: str,
    sources: Iterable[Any],
    raw_dir: Path,
    user: Iterable[tuple[str, Mapping[str, Any]]] = (),
    *,
    sample_chars: int,
) -> list[tuple[str, Callable[[], Iterable[Doc]]]]:
    """(source name, documents factory) of every source of `domain`: its fetched registry sources
    (cptlaw.data.sources.Source) and user specs; the factories extract lazily (a user corpus streams)."""
    from cptlaw.data.extract import extract
    from cptlaw.data.user_sources import docs_of

    groups: list[tuple[str, Callable[[], Iterable[Doc]]]] = []
    for src in sources:
        if src.domain == domain:
            opts = {"sample_chars": sample_chars, **dict(src.options)}
            groups.append(
                (src.name, lambda s=src, o=opts: extract(s.extractor, Path(raw_dir) / s.name, s.name, **o))
            )
    for kind, spec in user:
        if spec["domain"] == domain:
            groups.append((str(spec["name"]), lambda k=kind, s=spec: docs_of(k, s)))
    if not groups:
        raise CorpusError(
            f"domain '{domain}' has no source (define one in `fetch.sources` or `corpora.local`/`hf`)"
        )
    return groups


def empty_source(name: str, domain: str, min_chars: int) -> CorpusError:
    return CorpusError(f"source '{name}' (domain '{domain}') is empty after cleaning (min_chars={min_chars})")


def domain_docs(
    domain: str,
    sources: Iterable[Any],
    raw_dir: Path,
    user: Iterable[tuple[str, Mapping[str, Any]]] = (),
    *,
    sample_chars: int,
    min_chars: int,
    progress: Any = None,
) -> list[Doc]:
    """All documents of `domain` in memory (small corpora; the stage streams them, `corpus_stream`).

    Texts come back normalised (`normalize`). A source that yields nothing usable (no document of at least `min_chars`) is an error naming it.
    """
    out: list[Doc] = []
    for name, make in doc_groups(domain, sources, raw_dir, user, sample_chars=sample_chars):
        if progress is not None:
            progress(f"extract {domain}/{name}")
        docs = [Doc(d.id, d.source, t, d.kind) for d in make() if len(t := normalize(d.text)) >= min_chars]
        if not docs:
            raise empty_source(name, domain, min_chars)
        out.extend(docs)
    return out


def max_chars_for(domain: str, caps: Mapping[str, Any] | None) -> int | None:
    """`corpora.max_chars.<domain>`, else `.default`, else no cap (None)."""
    if not caps:
        return None
    value = caps.get(domain, caps.get("default"))
    if value is None:
        return None
    if float(value) <= 0:
        raise CorpusError(f"`corpora.max_chars.{domain}` must be > 0 or null, got {value}")
    return int(float(value))


def split_metrics(stats: Mapping[str, Any]) -> dict[str, Any]:
    """A domain's DVC metrics: documents/samples/chars/words per split and duplicates dropped."""
    m: dict[str, Any] = {s: {k: v for k, v in stats[s].items() if k != "sources"} for s in SPLITS}
    return m | {"duplicates_dropped": stats["clean"]["duplicates"]}

"""A generated local corpus (jsonl + parquet + txt) of a chosen size with known duplicates and too-short
documents, and the counts the corpora stage must give for it (for the streaming-memory tests)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

WORDS = np.array("alpha beta gamma delta epsilon zeta theta kappa lambda sigma omega rho".split())


@dataclass
class Corpus:
    root: Path
    bytes: int
    unique: int  # distinct documents long enough to keep
    duplicates: int  # exact copies of earlier documents
    too_short: int
    texts: dict[str, str]  # document id (as the local source names it) → text, the unique ones


def _text(rng: np.random.Generator, i: int, words: int) -> str:
    return f"doc {i}: " + " ".join(WORDS[rng.integers(0, len(WORDS), words)])


def write_corpus(root: Path, name: str, target_bytes: int, seed: int = 0) -> Corpus:
    """jsonl files of about 4 MB (1 in 10 lines a copy of an earlier line, 1 in 50 too short), one parquet
    file and a few .txt files, until `target_bytes` is written."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng, root = np.random.default_rng(seed), Path(root)
    root.mkdir(parents=True, exist_ok=True)
    texts, size, i, dup, short, f = {}, 0, 0, 0, 0, 0
    pool: list[str] = []
    while size < target_bytes:
        path, lines = root / f"part-{f:03d}.jsonl", []
        while len(lines) < 3000:
            k = len(lines)
            if k % 10 == 9:
                lines.append(pool[int(rng.integers(0, len(pool)))])
                dup += 1
            elif k % 50 == 7:
                lines.append("tiny")
                short += 1
            else:
                lines.append(_text(rng, i, int(rng.integers(60, 250))))
                texts[f"{name}/{path.as_posix()}#{k}"] = lines[-1]
                pool.append(lines[-1])
                i += 1
        path.write_text("".join(json.dumps({"text": t}) + "\n" for t in lines))
        size, f = size + path.stat().st_size, f + 1
    rows = [_text(rng, i + k, 200) for k in range(500)]
    pq.write_table(pa.table({"text": rows}), root / "rows.parquet")
    texts |= {f"{name}/{(root / 'rows.parquet').as_posix()}#{k}": t for k, t in enumerate(rows)}
    for k in range(3):
        t = _text(rng, i + 500 + k, 3000)  # long: chunked into several samples
        (root / f"book{k}.txt").write_text(t)
        texts[f"{name}/{(root / f'book{k}.txt').as_posix()}"] = t
    total = sum(p.stat().st_size for p in root.iterdir())
    return Corpus(root, total, len(texts), dup, short, texts)

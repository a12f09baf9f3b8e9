"""Bring-your-own corpora: a `local` glob of .txt/.jsonl/.parquet files or a Hugging Face `datasets` dataset.

Configured under `corpora.local` / `corpora.hf` as lists of specs; each spec names its `domain` (a new name
or an existing one, e.g. `general`), and its documents join that domain's pool like any registry source.
Both are generators that hold one record batch at a time (a .txt file is one document, read whole), so the
corpora stage (`cptlaw.data.corpus_stream`) streams a corpus of any size.
"""

from __future__ import annotations

import glob
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from cptlaw.data.extract import Doc, ExtractError
from cptlaw.errors import first_line


def _specs(corpora_cfg: Mapping[str, Any] | None, key: str) -> list[Mapping[str, Any]]:
    if not corpora_cfg:
        return []
    specs = corpora_cfg.get(key) or []
    for i, spec in enumerate(specs):
        for req in ("name", "domain"):
            if not spec.get(req):
                raise ExtractError(f"`corpora.{key}[{i}].{req}` is required")
    return list(specs)


def user_domains(corpora_cfg: Mapping[str, Any] | None) -> set[str]:
    """Domains defined by `corpora.local` and `corpora.hf` specs."""
    return {str(s["domain"]) for key in ("local", "hf") for s in _specs(corpora_cfg, key)}


def user_specs(corpora_cfg: Mapping[str, Any] | None) -> list[tuple[str, Mapping[str, Any]]]:
    """[(kind, spec)] with kind "local" or "hf"."""
    return [(key, s) for key in ("local", "hf") for s in _specs(corpora_cfg, key)]


def local_docs(spec: Mapping[str, Any]) -> Iterator[Doc]:
    """Files matching `spec.glob` (relative to the cwd or absolute): .txt → one document per file;
    .jsonl → one per line (field `spec.text_field`, default "text"); .parquet → one per row (same field)."""
    name, pattern = str(spec["name"]), spec.get("glob")
    if not pattern:
        raise ExtractError(f"`corpora.local` source '{name}': `glob` is required")
    field = str(spec.get("text_field") or "text")
    paths = sorted(Path(p) for p in glob.glob(str(pattern), recursive=True) if Path(p).is_file())
    if not paths:
        raise ExtractError(f"`corpora.local` source '{name}': no file matches glob {pattern!r}")
    for path in paths:
        suffix = path.suffix.lower()
        if suffix == ".txt":
            yield Doc(f"{name}/{path.as_posix()}", name, path.read_text(encoding="utf-8", errors="replace"))
        elif suffix == ".jsonl":
            with open(path, encoding="utf-8") as f:
                for k, line in enumerate(f):
                    if not line.strip():
                        continue
                    try:
                        rec = json.loads(line)
                    except json.JSONDecodeError:
                        raise ExtractError(
                            f"`corpora.local` source '{name}': {path}:{k + 1} is not JSON"
                        ) from None
                    if field not in rec:
                        raise ExtractError(
                            f"`corpora.local` source '{name}': {path}:{k + 1} has no field {field!r}"
                        )
                    yield Doc(f"{name}/{path.as_posix()}#{rec.get('id', k)}", name, str(rec[field]))
        elif suffix == ".parquet":
            yield from _parquet_docs(path, name, field)
        else:
            raise ExtractError(
                f"`corpora.local` source '{name}': unsupported file type {path.name} (.txt/.jsonl/.parquet)"
            )


def _parquet_docs(path: Path, name: str, field: str) -> Iterator[Doc]:
    """One document per row, read in record batches (a large file is never loaded whole)."""
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    columns = pf.schema_arrow.names
    if field not in columns:
        raise ExtractError(
            f"`corpora.local` source '{name}': {path} has no column {field!r} (columns: {columns})"
        )
    k = 0
    for batch in pf.iter_batches(batch_size=1024, columns=[field, *(["id"] if "id" in columns else [])]):
        texts = batch.column(field).to_pylist()
        ids = batch.column("id").to_pylist() if "id" in columns else range(k, k + len(texts))
        for i, text in zip(ids, texts, strict=True):
            yield Doc(f"{name}/{path.as_posix()}#{i}", name, str(text))
        k += len(texts)


def hf_docs(spec: Mapping[str, Any]) -> Iterator[Doc]:
    """A Hugging Face dataset (`spec.path`, optional `config`, `split` default train, `text_field`, `max_docs`,
    `streaming`: true reads records as they arrive, without downloading the whole dataset first).

    Needs the optional `datasets` package (`pip install -e '.[hf]'`) and the dataset in the local HF cache
    or hub access; the error says which is missing.
    """
    name = str(spec["name"])
    try:
        import datasets
    except ImportError:
        raise ExtractError(
            f"`corpora.hf` source '{name}' needs the `datasets` package: pip install -e '.[hf]'"
        ) from None
    path = spec.get("path")
    if not path:
        raise ExtractError(f"`corpora.hf` source '{name}': `path` is required")
    field, streaming = str(spec.get("text_field") or "text"), bool(spec.get("streaming", False))
    try:
        ds = datasets.load_dataset(
            str(path), spec.get("config"), split=str(spec.get("split") or "train"), streaming=streaming
        )
    except Exception as exc:  # offline, unknown dataset, bad config: one line, no traceback
        first = first_line(exc)
        raise ExtractError(
            f"`corpora.hf` source '{name}': cannot load dataset {path!r} (offline?): {first}"
        ) from None
    columns = ds.column_names  # None for some streamed datasets: checked on each record instead
    if columns is not None and field not in columns:
        raise ExtractError(f"`corpora.hf` source '{name}': dataset has no column {field!r} ({columns})")
    limit = spec.get("max_docs")
    for k, rec in enumerate(ds):
        if limit is not None and k >= int(limit):
            break
        if field not in rec:
            raise ExtractError(
                f"`corpora.hf` source '{name}': record {k} has no field {field!r} ({list(rec)})"
            )
        yield Doc(f"{name}/{k}", name, str(rec[field]))


def docs_of(kind: str, spec: Mapping[str, Any]) -> Iterator[Doc]:
    return local_docs(spec) if kind == "local" else hf_docs(spec)

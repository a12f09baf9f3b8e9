"""Content versions of the files a run reads: DVC's md5 when DVC tracks them, else a hash of the bytes.

`content_version(files, root)` is a short hash over `(relative path, md5)` pairs. A file inside a DVC-tracked
directory out gets its own md5 from the directory manifest in the DVC cache (`<md5>.dir`), so adding a new
domain to `data/corpora` does not change the version of runs that never read it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

import yaml

_BIG = 256 * 2**20  # files above this are hashed by size + first and last MiB (multi-GB external weights)


def file_md5(path: Path) -> str:
    h = hashlib.md5()
    size = path.stat().st_size
    with path.open("rb") as f:
        if size > _BIG:
            h.update(str(size).encode())
            h.update(f.read(2**20))
            f.seek(-(2**20), 2)
            h.update(f.read())
        else:
            for block in iter(lambda: f.read(2**22), b""):
                h.update(block)
    return h.hexdigest()


def _dvc_outs(root: Path) -> dict[str, str]:
    """`{out path: md5}` of every stage out in `<root>/dvc.lock` (empty without DVC)."""
    lock = root / "dvc.lock"
    if not lock.is_file():
        return {}
    try:
        stages = (yaml.safe_load(lock.read_text()) or {}).get("stages", {})
    except yaml.YAMLError:
        return {}
    outs = {}
    for stage in stages.values():
        for out in stage.get("outs", []) or []:
            if "path" in out and "md5" in out:
                outs[str(out["path"]).rstrip("/")] = str(out["md5"])
    return outs


def _dir_manifest(root: Path, md5: str) -> dict[str, str]:
    """`{relpath: md5}` of a DVC directory out, from the `.dir` manifest in the cache (empty if absent)."""
    name = md5 if md5.endswith(".dir") else md5 + ".dir"
    for cache in (root / ".dvc" / "cache" / "files" / "md5", root / ".dvc" / "cache"):
        path = cache / name[:2] / name[2:]
        if path.is_file():
            try:
                return {e["relpath"]: e["md5"] for e in json.loads(path.read_text())}
            except (ValueError, KeyError, TypeError):
                return {}
    return {}


def file_versions(files: Iterable[str | Path], root: str | Path) -> dict[str, str]:
    """`{path relative to root: md5}` per file: DVC's record (dvc.lock + cache manifest) for files not modified
    since dvc.lock was written, else the md5 of the bytes."""
    root = Path(root).resolve()
    outs = _dvc_outs(root)
    lock_mtime = (root / "dvc.lock").stat().st_mtime if outs else 0.0
    versions = {}
    for f in files:
        path = Path(f).resolve()
        try:
            rel = path.relative_to(root).as_posix()
        except ValueError:
            rel = path.as_posix()
        digest = None
        # DVC's record only while it can be current: a file changed after dvc.lock was written is hashed
        for out, md5 in outs.items() if path.stat().st_mtime <= lock_mtime else ():
            if rel == out and not md5.endswith(".dir"):
                digest = md5
            elif rel.startswith(out + "/"):
                digest = _dir_manifest(root, md5).get(rel[len(out) + 1 :])
            if digest:
                break
        versions[rel] = digest or file_md5(path)
    return versions


def content_version(files: Iterable[str | Path], root: str | Path, *, length: int = 12) -> str:
    """Short hash of the contents of `files` (order-independent)."""
    blob = json.dumps(sorted(file_versions(files, root).items()))
    return hashlib.sha256(blob.encode()).hexdigest()[:length]

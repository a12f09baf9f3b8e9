"""`cptlaw.fit_csv` end to end through a subprocess: JSON out, hold-out predictions, exit code 2 on bad CSVs."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from _synth import points

from cptlaw.fit_csv import main


def _run(*args):
    return subprocess.run(
        [sys.executable, "-m", "cptlaw.fit_csv", *map(str, args)], capture_output=True, text=True
    )


def _csv(tmp_path, law, name="points.csv", rows=None):
    x, y, truth = points(law)
    df = pd.DataFrame(x | {"loss": y})
    if law == "dcpt_cross":
        df["domain"] = df["domain"].map(lambda d: f"dom{int(d)}")
    df = df.iloc[rows] if rows is not None else df
    path = tmp_path / name
    df.to_csv(path, index=False)
    return path, df, truth


@pytest.mark.parametrize("law", ["chinchilla", "dcpt", "ppl"])
def test_fit_csv_with_holdout(tmp_path, law):
    path, df, _ = _csv(tmp_path, law)
    n = len(df)
    train, _, _ = _csv(tmp_path, law, "train.csv", rows=np.arange(n) % 5 != 2)
    hold, hdf, _ = _csv(tmp_path, law, "hold.csv", rows=np.arange(n) % 5 == 2)
    p = _run("--law", law, train, "--holdout", hold, "--n-starts", 16)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["r2"] > 0.99 and out["huber"] > 0 and "alpha" in out["params"] or "alpha_D" in out["params"]
    pred = np.array(out["holdout"]["predictions"])
    assert pred.size == len(hdf) and np.max(np.abs(pred / hdf["loss"].to_numpy() - 1)) < 0.01


def test_fit_csv_cross_domain(tmp_path, capsys):
    path, _, truth = _csv(tmp_path, "dcpt_cross")
    assert main(["--law", "dcpt_cross", str(path), "--n-starts", "8"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["params"]["w1"] == 1.0 and out["params"]["beta"] == pytest.approx(truth["beta"], rel=0.05)


@pytest.mark.parametrize(
    ("content", "law", "match"),
    [
        ("N,D,loss\n1e5,1e4,3.0\n", "dcpt", "missing column(s) r"),
        ("N,D,r,loss\n1e5,1e4,0.5,abc\n", "dcpt", "column `loss` row 2 is not a number: 'abc'"),
        ("N,D,r,loss\n" + "1e5,1e4,1.5,3.0\n" * 10, "dcpt", "`r` must be in [0, 1], got 1.5"),
        ("N,D,r,loss\n1e5,1e4,0.5,3.0\n", "dcpt", "fewer than the 8 parameters"),
        ("N,D,loss\n" + "-1,1e4,3.0\n" * 5, "chinchilla", "`N` must be > 0"),
        ("", "chinchilla", "not a readable CSV"),
    ],
)
def test_fit_csv_bad_input_exit_2(tmp_path, capsys, content, law, match):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    assert main(["--law", law, str(path)]) == 2
    err = capsys.readouterr().err
    assert match in err and len(err.strip().splitlines()) == 1, err


def test_fit_csv_missing_file_subprocess(tmp_path):
    p = _run("--law", "chinchilla", tmp_path / "nope.csv")
    assert p.returncode == 2 and "no such file" in p.stderr and not p.stdout

"""`cptlaw.fit_csv` end to end through a subprocess: JSON out, hold-out predictions, exit code 2 on bad CSVs."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from cptlaw.fit_csv import main
from tests.helpers.synth import points


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


def test_formula_cli_with_bounds_fixed_bootstrap_and_holdout(tmp_path, capsys):
    path, df, truth = _csv(tmp_path, "dcpt")
    n = len(df)
    last = df["D"].to_numpy() == df["D"].max()  # hold out every run's last checkpoint
    train, _, _ = _csv(tmp_path, "dcpt", "train.csv", rows=~last)
    hold, hdf, _ = _csv(tmp_path, "dcpt", "hold.csv", rows=last)
    formula = "E + A/N**alpha + B*r**eta/D**beta + C/(r+eps)**gamma"
    args = ["--formula", formula, str(train), "--holdout", str(hold), "--fixed", "eps=1e-3", "--bounds",
            "alpha=0:2", "--bootstrap", "30", "--level", "0.9", "--n-starts", "8"]  # fmt: skip
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["success"] and out["params"]["eps"] == 1e-3 and out["linear"] == ["E", "A", "B", "C"]
    assert out["params"]["beta"] == pytest.approx(truth["beta"], rel=0.05) and n == len(df)
    lo, hi = out["params_ci"]["beta"]
    assert lo < out["params"]["beta"] < hi
    h = out["holdout"]
    assert (
        len(h["intervals"]) == len(hdf)
        and h["calibrated_along"] == "D"
        and h["interval_method"] == "calibrated"
    )
    iv = np.array(h["intervals"])
    assert np.all(iv[:, 0] < np.array(h["predictions"])) and np.all(np.array(h["predictions"]) < iv[:, 1])
    assert 0 <= h["coverage"] <= 1 and h["naive"]["along"] == "D" and h["naive"]["n_predicted"] == len(hdf)
    assert h["skill"] == pytest.approx(h["mape"] / h["naive"]["mape"])


def test_formula_cli_mixing_law_example(tmp_path, capsys):
    rng = np.random.default_rng(0)
    p1, d = np.meshgrid([0.1, 0.3, 0.5, 0.7, 0.9], np.geomspace(1e8, 1e10, 6), indexing="ij")
    loss = 2.0 + 300 / d.ravel() ** 0.3 + 0.5 * np.exp(-1.5 * p1.ravel())
    path = tmp_path / "mix.csv"
    pd.DataFrame(
        {"D": d.ravel(), "p1": p1.ravel(), "loss": loss * np.exp(rng.normal(0, 1e-4, loss.size))}
    ).to_csv(path, index=False)
    assert main(["--formula", "E + B/D**beta + K*exp(t*p1)", str(path), "--bounds", "beta=0:3,t=-10:10"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (
        out["success"]
        and out["inputs"] == ["D", "p1"]
        and out["params"]["t"] == pytest.approx(-1.5, rel=0.02)
    )


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--formula", "E + A/N**"], "`formula` does not parse"),
        (["--formula", "E + A*gamma(N)"], "uses function `gamma`"),
        (["--formula", "E + A/N**alpha + B*r**eta"], "missing column(s) r"),
        (["--formula", "N*D"], "has no parameter to fit"),
        (["--formula", "E + A/N**alpha", "--bounds", "alpha=0"], "`--bounds` items must be name=lo:hi"),
        (["--formula", "E + A/N**alpha", "--fixed", "zeta=1"], "`fixed` names zeta"),
        (["--law", "chinchilla", "--bounds", "alpha=0:1"], "apply to `--formula` laws"),
        (["--law", "chinchilla", "--level", "1.5"], "`--level` must be in (0, 1)"),
    ],
)
def test_formula_cli_bad_input_exit_2(tmp_path, capsys, args, match):
    path, _, _ = _csv(tmp_path, "chinchilla")
    assert main([*args, str(path)]) == 2
    err = capsys.readouterr().err
    assert match in err and len(err.strip().splitlines()) == 1, err


def test_unidentified_formula_reports_success_false(tmp_path, capsys):
    path, df, _ = _csv(tmp_path, "chinchilla", rows=np.arange(42) < 7)  # one model size only
    assert main(["--formula", "E + A/N**alpha + B/D**beta", str(path), "--n-starts", "8"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["success"] is False and "not identified" in out["message"]

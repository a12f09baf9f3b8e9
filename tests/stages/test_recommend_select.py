"""recommend / select / report stages on synthetic fit outputs with known laws; bad inputs."""

import importlib
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

from cptlaw.config import CONF_DIR
from cptlaw.decide.inputs import DecisionError
from cptlaw.laws import get_law, max_domain_share, optimal_share_limited_data, ppl_optimum
from cptlaw.stages import exit_on_bad_input
from tests.helpers.decide_synth import DOMAIN, GENERAL, PPL, fit_table, fits_json, write


def cfg(root, *extra):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=[f"paths.root={root}", "profile=smoke", "domains=[medical,code]",
                                            "cpt.sweeps.ppl_regimes.domains=[medical]", *extra])  # fmt: skip


@pytest.fixture(scope="module")
def synth():
    table = fit_table()
    return table, fits_json(table)


def write_pool(root, n=2000, seed=0):
    rng = np.random.default_rng(seed)
    ppl = np.exp(rng.normal(3.3, 0.5, n))
    tok = rng.integers(50, 300, n)
    ids = [f"m{i}" for i in range(n)]
    for sub, df in (("corpora/medical/train.parquet", pd.DataFrame({"id": ids, "source": "x", "text": "t"})),
                    ("scores/medical/s.parquet", pd.DataFrame({"id": ids, "nll": np.log(ppl) * tok, "ppl": ppl, "tokens": tok}))):  # fmt: skip
        (root / "data" / sub).parent.mkdir(parents=True, exist_ok=True)
        df.to_parquet(root / "data" / sub)
    return ppl, tok


def test_recommend_recovers_known_usages(project, synth):
    from cptlaw.stages.recommend import run

    write(project / "reports", *synth)
    out = run(cfg(project, "recommend.bootstrap=6"))
    rec = out["domains"]["medical"]
    n, d = 8e5, 320000.0
    lg0 = get_law("dcpt").predict(GENERAL, {"N": [n], "D": [d], "r": [1.0]})[0]
    true1 = max_domain_share(get_law("dcpt"), GENERAL, n, d, lg0, 0.03)
    assert true1.status == "binding"
    u1 = rec["tradeoff"]
    assert u1["status"] == "binding" and u1["r_domain"] == pytest.approx(true1.r_domain, abs=0.03)
    assert u1["ci"][0] <= u1["r_domain"] + 1e-9 and u1["ci"][1] >= u1["r_domain"] - 1e-9
    true2 = optimal_share_limited_data(get_law("dcpt"), DOMAIN, n, 0.5 * d, r_min=0.01)
    assert not true2.on_boundary
    assert rec["limited_data"]["r_domain"] == pytest.approx(true2.r_domain, rel=0.1)
    assert rec["compute"]["n_params"] > 0 and rec["compute"]["ci"]["n_params"] is not None
    assert "no cross-domain law" in out["cross_domain"]["message"]
    written = json.loads((project / "reports" / "recommend.json").read_text())
    assert set(written["domains"]) == {"medical", "code"}
    assert (
        json.loads((project / "reports" / "metrics" / "recommend.json").read_text())["code"][
            "limited_r_domain"
        ]
        > 0
    )
    assert (project / "reports" / "plots" / "recommend" / "medical_usages.png").is_file()
    from cptlaw import tracking

    assert len(tracking.runs_frame(["recommend"])) == 1


def test_domains_decided_in_two_processes_are_the_answers_of_one(project, synth):
    """`recommend.n_jobs`: worker processes give the same answers bit for bit, in the configured domain order,
    and a domain without runs is still kept with its reason."""
    from cptlaw.decide.usages import recommend_domains

    table, fits = synth
    c = cfg(project, "recommend.bootstrap=6", "recommend.domains=[code,math,medical]").recommend
    one, two = (recommend_domains(fits, table, c, 0, {"n_starts": 4}, n_jobs=n) for n in (1, 2))
    assert list(two["domains"]) == ["code", "medical"] and "math" in two["errors"]
    for key in ("domains", "errors"):
        assert json.dumps(one[key], sort_keys=True) == json.dumps(two[key], sort_keys=True)


def test_recommend_infeasible_tolerance_is_recorded(project, synth):
    from cptlaw.stages.recommend import run

    write(project / "reports", *synth)
    out = run(cfg(project, "recommend.bootstrap=0", "recommend.tolerance=-0.5"))
    u1 = out["domains"]["medical"]["tradeoff"]
    assert u1["status"] == "infeasible" and u1["r_domain"] is None
    assert "no domain share satisfies" in u1["message"]


def test_select_hits_the_known_optimum(project, synth):
    from cptlaw.stages.select import run

    write(project / "reports", *synth)
    ppl, tok = write_pool(project)
    out = run(cfg(project, "select.n_tokens=60000"))["domains"]["medical"]
    box = ((10.0, 60.0), (5.0, 25.0))
    truth = ppl_optimum(get_law("ppl"), PPL, 60000, *box)
    assert truth.interior and out["optimum"]["interior"]
    assert out["optimum"]["mu"] == pytest.approx(truth.mu, rel=0.02)
    assert out["optimum"]["sigma"] == pytest.approx(truth.sigma, rel=0.02)
    a = out["achieved"]
    assert a["n_tokens"] >= 60000 and a["mu"] == pytest.approx(truth.mu, rel=0.02)
    assert a["sigma"] == pytest.approx(truth.sigma, rel=0.05)
    ids = (project / "data" / "selected" / "medical" / "ids.txt").read_text().split()
    assert len(ids) == a["n_samples"] and len(set(ids)) == len(ids)
    chosen = np.array([int(i[1:]) for i in ids])
    assert ppl[chosen].mean() == pytest.approx(a["mu"]) and tok[chosen].sum() == a["n_tokens"]
    from cptlaw.data.subsets import parse_regime, select

    train = pd.read_parquet(project / "data" / "corpora" / "medical" / "train.parquet")
    pos = select(parse_regime(f"ids:{project}/data/selected/medical/ids.txt"), train["id"], None)
    assert sorted(pos) == sorted(chosen)  # the CPT stage accepts the ids file
    sel = json.loads((project / "data" / "selected" / "medical" / "selection.json").read_text())
    assert sel["budget_tokens"] == 60000 and "message" not in sel
    assert (
        json.loads((project / "reports" / "metrics" / "select.json").read_text())["medical"]["interior"] == 1
    )


def test_select_boundary_optimum_is_soft(project, synth, capsys):
    from cptlaw.stages.select import run

    table, fits = synth
    fits = json.loads(json.dumps(fits, default=float))
    fits["targets"]["ppl_medical"]["fits"]["ppl"]["params"] |= {
        "alpha1": 0.0,
        "beta1": 0.0,
        "alpha0": 0.5,
        "beta0": 0.2,
    }
    write(project / "reports", table, fits)
    write_pool(project)
    out = run(cfg(project, "select.n_tokens=60000"))["domains"]["medical"]
    assert not out["optimum"]["interior"] and "boundary optimum" in out["message"]
    assert "boundary optimum" in capsys.readouterr().out


# the command line, once per stage (stage, message); the other cases call the stage in this process
CLI_CASES = {("recommend", "fits.json does not exist"), ("select", "fits.json does not exist"),
             ("validate", "selection.json does not exist"), ("report", "fits.json does not exist")}  # fmt: skip


@pytest.mark.parametrize(
    ("stage", "setup", "extra", "message"),
    [
        ("recommend", "none", [], "fits.json does not exist: run the fit stage"),
        ("select", "none", [], "fits.json does not exist: run the fit stage"),
        ("select", "fits", ["select.n_tokens=10000000"], "exceeds the candidate pool"),
        ("select", "noppl", [], "no usable law for `ppl_medical`"),
        ("recommend", "nodomain", ["domains=[medical]"], "fits.json has no target `general_medical`"),
        (
            "validate",
            "fits",
            ["validate.ratio.domains=[]"],
            "selection.json does not exist: run the select stage",
        ),
        (
            "validate",
            "fits",
            ["validate.domains=[]"],
            "recommend.json does not exist: run the recommend stage",
        ),
        ("report", "none", [], "fits.json does not exist: run the fit stage"),
    ],
)
def test_bad_inputs_exit_with_one_line(project, synth, stage, setup, extra, message, capsys):
    table, fits = synth
    fits = json.loads(json.dumps(fits, default=float))
    if setup != "none":
        if setup == "noppl":
            fits["targets"]["ppl_medical"] = {
                "fits": {},
                "skipped": {"ppl": "fewer than 3 distinct (mu, sigma) regimes"},
            }
        if setup == "nodomain":
            fits["targets"] = {}
        write(project / "reports", table, fits)
        write_pool(project)
    if any(stage == st and message.startswith(m) for st, m in CLI_CASES):  # Hydra's main: exit 2, one line
        args = [f"paths.root={project}", "profile=smoke", "domains=[medical,code]",
                "cpt.sweeps.ppl_regimes.domains=[medical]", f"hydra.run.dir={project}/outputs", *extra]  # fmt: skip
        proc = subprocess.run([sys.executable, "-m", f"cptlaw.stages.{stage}", *args], capture_output=True,
                              text=True, cwd=project)  # fmt: skip
        returncode, stderr = proc.returncode, proc.stderr
    else:  # the same contract in this process (a new interpreter per case costs ~5 s)
        module = importlib.import_module(f"cptlaw.stages.{stage}")
        with pytest.raises(SystemExit) as exit_, exit_on_bad_input(stage):
            module.run(cfg(project, *extra))
        returncode, stderr = exit_.value.code, capsys.readouterr().err
    assert returncode == 2, stderr[-2000:]
    err = stderr.strip().splitlines()
    assert len(err) == 1 and message in err[0] and "Traceback" not in stderr


def test_decision_error_is_a_value_error():
    assert issubclass(DecisionError, ValueError)


def test_report_renders_after_recommend_and_select(project, synth):
    from cptlaw.stages.recommend import run as recommend
    from cptlaw.stages.report import run as report
    from cptlaw.stages.select import run as select

    write(project / "reports", *synth)
    write_pool(project)
    md_only_fits = report(cfg(project)).read_text()
    assert "run the recommend stage" in md_only_fits and "run the select stage" in md_only_fits
    recommend(cfg(project, "recommend.bootstrap=3"))
    select(cfg(project, "select.n_tokens=60000"))
    md = report(cfg(project)).read_text()
    assert "## Fits" in md and "| domain_medical | dcpt" in md
    assert "## Decisions" in md and "| medical |" in md and "binding" in md
    assert "plots/recommend/medical_usages.png" in md and "plots/select/medical_landscape.png" in md
    assert "DOS selected" in md and "not run" in md and "## Diagnostics" in md
    from cptlaw import tracking

    assert len(tracking.runs_frame(["report"])) == 2


def test_usage3_refuses_a_single_model_size():
    from types import SimpleNamespace

    from cptlaw.decide.usages import Setting, usage_compute

    law = SimpleNamespace(name="dcpt", choice="best", form=get_law("dcpt"), params=DOMAIN)
    s = Setting(n_params=1e5, n_tokens=8e4, domain_tokens=4e4, compute=6 * 1e5 * 8e4, lg0=3.0, notes=[])
    one = pd.DataFrame({"domain": "code", "N": [1e5] * 3, "D": [2e4, 4e4, 8e4], "r": [0.2, 0.5, 1.0]})
    out = usage_compute(law, one, s, 0.5, None)
    assert "n_params" not in out and out["error"].startswith("needs runs at >= 2 model sizes, have N=1e+05")
    assert "dcpt-code" in out["error"]
    two = one.assign(N=[1e5, 3e5, 1e5])
    assert usage_compute(law, two, s, 0.5, None)["n_params"] > 0

"""The validate stage on the CPT fixture project (tests/helpers/cpt_project.py): a DOS selection from a synthetic ppl law,
in-process CPT runs (DOS, random, low, middle, high) over two seeds, the paired comparison, data saving and
idempotency; and the usage-2 check (runs at r* and r* +- delta at one domain budget) against a D-CPT grid run."""

import json

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

from cptlaw.config import CONF_DIR
from tests.helpers.cpt_project import overrides, write_base, write_corpora, write_scores


@pytest.fixture
def fixture_project(project):
    write_corpora(project)
    write_base(project)
    scores = pd.read_parquet(write_scores(project))
    # a fitting table and fits.json whose ppl law has its optimum inside the fixture landscape
    q = np.quantile(scores["ppl"], [0.2, 0.8])
    rows = [{"run_id": f"p{i}", "domain": "medical", "N": 1e4, "D": d, "r": 1.0, "regime": f"g{i}", "mu": mu,
             "sigma": sg, "log_mu": np.log(mu), "log_sigma": 0.3, "domain_loss": 3.0, "general_loss": 3.0,
             "general_loss_base": 3.0, "study": "ppl_regimes"}
            for i, (mu, sg) in enumerate([(q[0], 1.0), (q[1], 1.0), (q[0], 3.0), (q[1], 3.0)]) for d in (640, 1280)]  # fmt: skip
    reports = project / "reports"
    reports.mkdir()
    pd.DataFrame(rows).to_csv(reports / "fit_table.csv", index=False)
    params = dict(E=1.8, D_c=40.0, alpha0=0.5, alpha1=0.0, beta0=0.2, beta1=0.0, alpha_D=0.3)
    fits = {"targets": {"ppl_medical": {"kind": "ppl", "n_runs": 4, "fits": {"ppl": {"params": params, "r2": 0.9,
            "huber": 1e-4, "at_bounds": []}}, "skipped": {}}}, "config_hash": "fixture", "n_source_runs": 4}  # fmt: skip
    (reports / "fits.json").write_text(json.dumps(fits))
    return project


def compose_cfg(root, *extra):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        over = [o for o in overrides(root) if not o.startswith(("cpt.n_tokens", "cpt.eval_points"))]
        return compose("config", overrides=[*over, "cpt.sweeps.ppl_regimes.domains=[medical]", "cpt.base=xs", "select.base=xs",
                                            "select.n_tokens=640", "validate.eval_points=3", "validate.seeds=[0,1]", *extra])  # fmt: skip


NO_RATIO = "validate.ratio.domains=[]"  # the DOS arms alone (the smoke profile also re-runs usage 2)


@pytest.mark.slow
def test_validate_compares_arms_and_is_idempotent(fixture_project, capsys):
    from cptlaw import tracking
    from cptlaw.lm.cpt_run import run_cell
    from cptlaw.stages.report import run as report
    from cptlaw.stages.select import run as select
    from cptlaw.stages.validate import run as validate

    swept = "cpt.sweeps.ppl_regimes.n_tokens=[650,1280]"  # 650 trains the rows of 640: the same run
    select(compose_cfg(fixture_project, NO_RATIO))
    # the perplexity-regime sweep already ran the random arm's seed-0 cell (set as 650 tokens, trained 640):
    # validate reads that run; its seed-1 cell at 1280 tokens is another cell, and the arm is trained
    regime = ["cpt.study=ppl_regimes", "cpt.regime=random", "cpt.eval_points=3", "cpt.scores_base=xs", swept]
    done = run_cell(compose_cfg(fixture_project, *regime, "cpt.n_tokens=650", "seed=0"))
    run_cell(compose_cfg(fixture_project, *regime, "cpt.n_tokens=1280", "seed=1"))
    out = validate(compose_cfg(fixture_project, NO_RATIO, swept))["domains"]["medical"]
    assert "[cpt] 10 cells: 9 trained, 1 skipped (finished earlier)" in capsys.readouterr().out
    arms = {r["arm"]: r for r in out["arms"]}
    assert set(arms) == {"dos", "random", "low", "middle", "high"}
    for r in arms.values():
        assert r["n_seeds"] == 2 and np.isfinite(r["domain_loss"]) and np.isfinite(r["general_loss"])
    assert arms["low"]["ppl_mean"] < arms["middle"]["ppl_mean"] < arms["high"]["ppl_mean"]
    assert arms["random"]["domain_loss_vs_random"]["mean"] == 0.0
    assert done["run_id"] in arms["random"]["run_ids"] and out["arm_experiments"] == sorted(
        ["validate-medical", "ppl-regimes-medical"]
    )
    vs = arms["dos"]["domain_loss_vs_random"]
    assert vs["n_seeds"] == 2 and vs["ci"][0] <= vs["mean"] <= vs["ci"][1]
    assert vs["finding"] == (not vs["ci"][0] <= 0 <= vs["ci"][1])
    assert arms["dos"]["predicted_domain_loss"] > 0
    sv = out["saving"]
    assert "verdict" in sv and sv["law"]["fraction"] > 0 and "reached" in sv["curve"]
    runs = tracking.runs_frame(["validate-medical"])
    cpt_runs = runs[runs["tags.cptlaw.stage"] == "cpt"]
    assert len(cpt_runs) == 9 and set(cpt_runs["tags.cptlaw.study"]) == {"validate"}
    assert (
        json.loads((fixture_project / "reports" / "metrics" / "validate.json").read_text())["medical"]["dos"][
            "domain_loss"
        ]
        > 0
    )
    # a second run trains nothing new (config hash), and the report renders the table
    validate(compose_cfg(fixture_project, NO_RATIO, swept))
    assert "[cpt] 10 cells: 0 trained, 10 skipped (finished earlier)" in capsys.readouterr().out
    runs = tracking.runs_frame(["validate-medical"])
    assert (runs["tags.cptlaw.stage"] == "cpt").sum() == 9
    md = report(compose_cfg(fixture_project, NO_RATIO)).read_text()
    assert "validation runs at D = 640" in md and "| dos | 2 |" in md and "Data saving" in md


@pytest.mark.slow
def test_validate_checks_usage2_by_new_runs(fixture_project, capsys):
    from cptlaw import tracking
    from cptlaw.decide.report import usage2_check_section
    from cptlaw.lm.cpt_run import run_cell
    from cptlaw.stages.validate import run as validate

    grid = run_cell(compose_cfg(fixture_project, "cpt.study=dcpt", "cpt.r=0.5", "cpt.n_tokens=640"))
    n_params = float(tracking.runs_frame(["dcpt-medical"]).iloc[0]["metrics.n_params"])
    reports = fixture_project / "reports"
    table = pd.read_csv(reports / "fit_table.csv")  # the grid run is among the fitted ones
    pd.concat(
        [table, pd.DataFrame([{"run_id": grid["run_id"], "domain": "medical", "study": "dcpt"}])]
    ).to_csv(reports / "fit_table.csv", index=False)
    fits = json.loads((reports / "fits.json").read_text())
    dcpt = dict(E=1.0, A=50.0, B=20.0, C=0.5, alpha=0.3, beta=0.4, eta=0.2, gamma=0.3, epsilon=1e-3)
    fit = {"params": dcpt, "r2": 0.9, "huber": 1e-4, "at_bounds": []}
    fits["targets"]["domain_medical"] = {"kind": "domain", "n_runs": 1, "fits": {"dcpt": fit}, "skipped": {}}
    (reports / "fits.json").write_text(json.dumps(fits))
    u2 = {"law": "dcpt", "r_domain": 0.5, "n_params": n_params, "domain_tokens": 320.0}
    (reports / "recommend.json").write_text(json.dumps({"domains": {"medical": {"limited_data": u2}}}))
    over = ["validate.domains=[]", "validate.ratio.domains=[medical]", "validate.ratio.seeds=[0,1]"]
    out = validate(compose_cfg(fixture_project, *over))["usage2"]["medical"]
    assert sorted({r["r"] for r in out["runs"]}) == [0.3, 0.5, 0.7] and len(out["runs"]) == 6
    for r in out["runs"]:  # the same domain budget at every share: D = D_d / r, to one step of 64 tokens
        assert abs(r["D"] - 320 / r["r"]) <= 64 and r["N"] == n_params
        assert np.isfinite(r["domain_loss"]) and r["predicted"]["dcpt"] > 1.0
    assert out["confirmed"] in (True, False) and out["best_run"] in (0.3, 0.5, 0.7) and out["verdict"]
    runs = tracking.runs_frame(["validate-medical"])
    assert set(runs["params.base_model"]) == {grid["base"]} and len(runs) == 6
    md = "\n".join(
        usage2_check_section(
            "medical", json.loads((reports / "validate.json").read_text())["usage2"]["medical"]
        )
    )
    assert "usage 2 checked by new runs" in md and "predicted: dcpt" in md and out["verdict"] in md
    metrics = json.loads((reports / "metrics" / "validate.json").read_text())
    assert metrics["medical"]["usage2"]["r_star"] == 0.5

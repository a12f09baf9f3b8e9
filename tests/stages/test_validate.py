"""The validate stage on the CPT fixture project (tests/helpers/cpt_project.py): a DOS selection from a synthetic ppl law, five
in-process CPT runs (DOS, random, low, middle, high), the comparison table, data saving and idempotency."""

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
                                            "select.n_tokens=640", "validate.eval_points=3", *extra])  # fmt: skip


@pytest.mark.slow
def test_validate_compares_arms_and_is_idempotent(fixture_project, capsys):
    from cptlaw import tracking
    from cptlaw.stages.report import run as report
    from cptlaw.stages.select import run as select
    from cptlaw.stages.validate import run as validate

    select(compose_cfg(fixture_project))
    out = validate(compose_cfg(fixture_project))["domains"]["medical"]
    arms = {r["arm"]: r for r in out["arms"]}
    assert set(arms) == {"dos", "random", "low", "middle", "high"}
    for r in arms.values():
        assert r["n_seeds"] == 1 and np.isfinite(r["domain_loss"]) and np.isfinite(r["general_loss"])
    assert arms["low"]["ppl_mean"] < arms["middle"]["ppl_mean"] < arms["high"]["ppl_mean"]
    assert arms["random"]["domain_loss_vs_random"] == 0.0
    sv = out["saving"]
    assert "verdict" in sv and sv["law"]["fraction"] > 0 and "reached" in sv["curve"]
    runs = tracking.runs_frame(["validate-medical"])
    cpt_runs = runs[runs["tags.cptlaw.stage"] == "cpt"]
    assert len(cpt_runs) == 5 and set(cpt_runs["tags.cptlaw.study"]) == {"validate"}
    assert (
        json.loads((fixture_project / "reports" / "metrics" / "validate.json").read_text())["medical"]["dos"][
            "domain_loss"
        ]
        > 0
    )
    # a second run trains nothing new (config hash), and the report renders the table
    validate(compose_cfg(fixture_project))
    assert capsys.readouterr().out.count("skip: finished as run") == 5
    runs = tracking.runs_frame(["validate-medical"])
    assert (runs["tags.cptlaw.stage"] == "cpt").sum() == 5
    md = report(compose_cfg(fixture_project)).read_text()
    assert "validation runs at D = 640" in md and "| dos | 1 |" in md and "Data saving" in md

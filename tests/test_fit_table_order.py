"""The fitting table does not depend on the order the store lists its runs in (start time: a race between
parallel jobs), so the same runs give the same fits, digit for digit."""

import numpy as np

from cptlaw import tracking
from cptlaw.fit_table import fit_table_from_experiments

CELLS = [(n, r) for n in (1e5, 3e5) for r in (0.2, 1.0)]


def _log(uri: str, cells) -> None:
    tracking.configure(uri)
    for n, r in cells:
        with tracking.run("dcpt-medical", tags={"cptlaw.stage": "cpt", "cptlaw.study": "dcpt"},
                          params={"domain": "medical", "regime": "all", "r": r, "n_params": int(n), "seed": 0}):  # fmt: skip
            tracking.log_metrics({"n_params": n, "r": r, "k1": 4.0, "k2": 0.3})
            for d in (1000, 2000):
                loss = 3.0 + 1e4 / n + 0.1 * r + 100 / d
                tracking.log_metrics({"domain_loss": loss, "general_loss": 3.0 + r}, step=d)


def test_same_runs_in_another_order_give_the_same_table(tmp_path):
    tables = []
    for name, cells in (("a", CELLS), ("b", CELLS[::-1])):
        _log(f"sqlite:///{tmp_path}/{name}/mlflow.db", cells)
        table, ids = fit_table_from_experiments(["dcpt-medical"])
        assert len(ids) == len(CELLS) and list(dict.fromkeys(table["run_id"])) == ids
        tables.append(table.drop(columns="run_id"))
    assert len(tables[0]) == 2 * len(CELLS)
    assert tables[0].equals(tables[1])
    assert np.all(np.diff(tables[0]["N"].to_numpy()) >= 0)

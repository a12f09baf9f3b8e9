"""The cross-domain law's alternatives: K from k1 alone (no probe), and the pooled D-CPT law (no K)."""

import numpy as np

from cptlaw.laws import fit, get_law


def _points(seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for k1 in (4.0, 5.0, 6.0, 7.0):
        for n in (1e5, 3e5, 1e6):
            for r in (0.2, 0.5, 1.0):
                for d in (2e4, 8e4, 3.2e5):
                    rows.append((n, d, r, k1))
    n, d, r, k1 = map(np.array, zip(*rows, strict=True))
    return {"N": n, "D": d, "r": r, "k1": k1}, rng


def test_k1_only_form_recovers_its_truth_and_beats_the_pooled_law():
    X, rng = _points()
    form = get_law("dcpt_cross_k1")
    truth = {"E": 1.5, "A": 40.0, "B": 300.0, "C": 0.05, "F": 0.5, "alpha": 0.3, "beta": 0.4, "eta": 0.3,
             "gamma": 0.3, "mu": 1.0} | form.fixed  # fmt: skip
    y = form.predict(truth, X) * np.exp(rng.normal(0, 0.002, X["N"].size))
    res = fit(form, X, y, n_starts=32)
    assert np.max(np.abs(res.predict(X) / y - 1)) < 0.01
    assert abs(res.params["mu"] - 1.0) < 0.25
    pooled = fit(get_law("dcpt"), X, y, n_starts=32)  # ignores the domain: cannot explain the k1 term
    assert res.huber < pooled.huber

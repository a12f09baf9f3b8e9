"""Synthetic CPT runs from the known laws of synth.py, logged into an MLflow store as the cpt stage logs them:
the input of the fit-stage and MLproject tests."""

import time

import numpy as np
import pytest

from cptlaw import tracking
from cptlaw.laws import get_law
from tests.helpers.synth import TRUTH

STEPS = [20000, 40000, 80000, 160000, 320000]


def _log_history(by_step: dict[int, dict[str, float]]) -> None:
    """A run's whole evaluation history in one request (one per step is slow against an HTTP server)."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    metrics = [Metric(k, float(v), now, s) for s, row in by_step.items() for k, v in row.items()]
    tracking.MlflowClient().log_batch(tracking.active_run_id(), metrics=metrics)


def log_runs(uri: str) -> int:
    """Synthetic CPT runs from known laws logged through cptlaw.tracking into `uri` (plus one FAILED run that the fit
    stage must ignore); returns the number of FINISHED runs."""
    tracking.configure(uri)
    rng = np.random.default_rng(0)
    dom, gen, ppl = get_law("dcpt"), get_law("dcpt_forgetting"), get_law("ppl")
    n = 0
    for k, domain in enumerate(["medical", "code"]):
        k1, k2 = 4.0 + k, 0.3 + 0.2 * k
        for n_params in (1e5, 3e5, 8e5):
            for r in (0.0, 0.2, 0.5, 1.0):
                x = {"N": np.full(5, n_params), "D": np.array(STEPS, float), "r": np.full(5, r)}
                ld = dom.predict(TRUTH["dcpt"] | dom.fixed, x) + 0.3 * k
                lg = gen.predict(TRUTH["dcpt_forgetting"] | gen.fixed, x | {"r": 1 - x["r"]})
                ld, lg = ld * np.exp(rng.normal(0, 0.002, 5)), lg * np.exp(rng.normal(0, 0.002, 5))
                with tracking.run(f"dcpt-{domain}", tags={"cptlaw.stage": "cpt", "cptlaw.study": "dcpt"},
                                  params={"domain": domain, "regime": "all", "r": r, "n_params": int(n_params),
                                          "seed": 0}):  # fmt: skip
                    tracking.log_metrics({"n_params": n_params, "r": r, "k1": k1, "k2": k2})
                    _log_history({0: {"domain_loss": k1, "general_loss": 3.0}}
                                 | {s: {"domain_loss": a, "general_loss": b} for s, a, b in zip(STEPS, ld, lg, strict=True)})  # fmt: skip
                n += 1
    for mu in (10.0, 30.0, 60.0):
        for sigma in (5.0, 20.0):
            x = {"mu": np.full(5, mu), "sigma": np.full(5, sigma), "D": np.array(STEPS, float)}
            ld = ppl.predict(TRUTH["ppl"], x) * np.exp(rng.normal(0, 0.002, 5))
            with tracking.run("ppl-regimes-medical", params={"domain": "medical", "regime": f"m{mu}s{sigma}",
                                                             "r": 1.0, "n_params": 100000, "seed": 0}):  # fmt: skip
                tracking.log_metrics({"n_params": 1e5, "r": 1.0, "ppl_mean": mu, "ppl_std": sigma,
                                      "log_ppl_mean": np.log(mu), "log_ppl_std": sigma / mu})  # fmt: skip
                _log_history(
                    {s: {"domain_loss": a, "general_loss": 3.0} for s, a in zip(STEPS, ld, strict=True)}
                )
            n += 1
    with pytest.raises(RuntimeError):  # a FAILED run must be ignored by the fit stage
        with tracking.run("dcpt-medical", params={"domain": "medical", "r": 0.3, "n_params": 1}):
            tracking.log_metrics({"domain_loss": 99.0}, step=20000)
            raise RuntimeError("boom")
    return n

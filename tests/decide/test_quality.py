"""The law-quality verdict: a fit at zero E, on a bound or below the held-out R² target is reported as missing."""

from cptlaw.decide.quality import law_quality
from cptlaw.decide.report import quality_section


def _target(kind, e, e_ci, bounds, r2):
    summary = [{"form": "dcpt", "split": s, "r2": v} for s, v in r2.items()]
    return {"kind": kind, "fits": {"dcpt": {"params": {"E": e}, "at_bounds": bounds}},
            "comparison": {"best_overall": "dcpt", "summary": summary},
            "bootstrap": {"law": "dcpt", "ci": {"E": e_ci}}}  # fmt: skip


def test_law_quality_meets_only_when_every_check_passes():
    good = {"N": 0.95, "D": 0.93, "r": 0.97}
    fits = {"targets": {
        "domain_a": _target("domain", 1.2, [0.9, 1.4], [], good),
        "domain_b": _target("domain", 1e-8, [0.0, 0.2], [], good),          # E reaches zero
        "domain_c": _target("domain", 1.2, [0.9, 1.4], ["beta"], good),     # exponent on its bound
        "domain_d": _target("domain", 1.2, [0.9, 1.4], [], good | {"r": 0.5}),
        "general_a": _target("general", 1e-8, [0.0, 0.1], [], good),        # E is no target of the general law
        "domain_e": _target("domain", 1.2, [0.9, 1.4], [], {"D": 0.99, "r": 0.99}),  # one size: not judged
    }}  # fmt: skip
    verdict = {r["target"]: r["meets"] for r in law_quality(fits, 0.9)}
    assert verdict == {
        "domain_a": True,
        "domain_b": False,
        "domain_c": False,
        "domain_d": False,
        "general_a": True,
    }
    text = "\n".join(quality_section(fits, 0.9))
    assert (
        "| domain_b | dcpt (best held-out) | 1e-08 [0, 0.2] | none | 0.950 / 0.930 / 0.970 | misses |" in text
    )


def test_deceleration_tells_a_power_law_with_a_floor_from_a_straight_line_in_log_d():
    import numpy as np
    import pandas as pd

    from cptlaw.decide.quality import deceleration

    d = np.geomspace(8192, 819200, 10)
    runs = {"floor": 2.0 + 40.0 / d**0.4, "line": 6.0 - 0.3 * np.log(d), "general": 5.0 + 0 * d}
    table = pd.concat(
        pd.DataFrame(
            {
                "run_id": k,
                "domain": "medical",
                "N": 1e5,
                "D": d,
                "r": 0.0 if k == "general" else 1.0,
                "domain_loss": y,
                "study": "dcpt",
            }
        )  # fmt: skip
        for k, y in runs.items()
    )
    ratio = deceleration(table, min_d=10000).set_index("run_id")["ratio"]
    assert set(ratio.index) == {"floor", "line"}  # r = 0 runs do not train on the domain
    assert ratio["floor"] < 0.8 and abs(ratio["line"] - 1.0) < 1e-9

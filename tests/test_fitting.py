"""The cross-domain law's K is one number per domain: k1, k2 from the domain's probe runs (else its r = 1 runs)."""

import numpy as np
import pandas as pd

from cptlaw.fitting import domain_coefficients, domain_pairs


def _rows(run_id, domain, n, r, k1, k2, steps=(1000, 2000)):
    return [
        {"run_id": run_id, "domain": domain, "N": n, "r": r, "k1": k1, "k2": k2, "D": float(s)} for s in steps
    ]


def test_probe_values_replace_per_run_values():
    dcpt = pd.DataFrame(
        _rows("a", "med", 1e5, 0.2, 5.0, -0.01) + _rows("b", "med", 3e5, 1.0, 5.1, 0.4)
        + _rows("c", "code", 1e5, 1.0, 6.0, 0.3) + _rows("d", "code", 1e5, 0.5, 6.0, 0.1)
    )  # fmt: skip
    probe = pd.DataFrame(_rows("p1", "med", 1e5, 1.0, 4.9, 0.5) + _rows("p2", "med", 3e5, 1.0, 4.0, 0.9))
    out = domain_coefficients(dcpt, probe)
    med, code = out[out["domain"] == "med"], out[out["domain"] == "code"]
    assert np.allclose(med["k1"], 4.9) and np.allclose(med["k2"], 0.5)  # the probe at the smallest base
    assert np.allclose(code[["k1", "k2"]].to_numpy(), [6.0, 0.3])  # no probe: the r = 1 grid run
    assert list(out["k2_run"]) == list(dcpt["k2"])  # per-run values kept


def test_domain_pairs_hold_out_two_domains_at_a_time():
    d = np.array(["music", "code", "medical", "law", "math", "chemistry", "code"])
    pairs = domain_pairs(d)
    assert list(pairs) == ["medical+music", "chemistry+code", "medical+music", "law+math", "law+math",
                           "chemistry+code", "chemistry+code"]  # fmt: skip
    assert set(domain_pairs(np.array(["medical", "code", "math"]))) == {"code+math", "medical"}

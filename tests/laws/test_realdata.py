"""Laws on published runs (skipped without the reference data; set CPTLAW_REFDATA): anchors that can fail."""

import numpy as np
import pandas as pd
import pytest

from cptlaw.laws import bootstrap, calibrate, fit, formula_law, noise_scale, prediction_intervals
from cptlaw.laws.baselines import split_skill
from cptlaw.laws.evaluate import take

DCPT_RD = "E + B*r**eta/D**beta + C/(r+eps)**gamma"  # D-CPT at one model size: no N term


def _olmo_final(refdata):
    o = pd.read_csv(refdata("realdata/olmo_ladder_bhagia2024_curves.csv"))
    o = o[o["run"].str.match(r"^\d+[MB]-\d+(\.\d+)?xC$")]  # the ladder's 25 runs, no reruns / 7B / 13B
    return o.sort_values("step").groupby("run").tail(1)


def test_olmo_ladder_chinchilla_fit_and_3b_extrapolation(refdata):
    fin = _olmo_final(refdata)
    assert len(fin) == 25
    res = fit("chinchilla", fin, fin["loss_c4_en"].to_numpy())
    # the reference README's fit of the same 25 final C4 losses: E 1.86, A 124, B 33.8, alpha 0.272, beta 0.157
    for k, v in {"E": 1.86, "A": 124.0, "B": 33.8, "alpha": 0.272, "beta": 0.157}.items():
        assert res.params[k] == pytest.approx(v, rel=0.02), k
    small, big = fin[fin["N"] < 2e9], fin[fin["N"] > 2e9]  # fit <= 1.3B, predict the five 3B runs
    res = fit("chinchilla", small, small["loss_c4_en"].to_numpy())
    err = res.predict(big) / big["loss_c4_en"].to_numpy() - 1
    assert np.mean(np.abs(err)) < 0.02 and np.all(err < 0.005)  # measured: -2.6% .. -0.4%, under-predicts


@pytest.mark.parametrize(
    ("dataset", "param_count", "split"),
    [("rw", "standard", "val"), ("owt2", "standard", "val"), ("rw", "attention", "train")],
)
def test_porian_cosine_decay_compute_optimal_exponent(refdata, dataset, param_count, split):
    pts = pd.read_csv(refdata("realdata/porian2024_isoflop_points.csv"))
    pub = pd.read_csv(refdata("realdata/porian2024_published_fits.csv"))

    def sel(d):
        keep = (d["dataset"] == dataset) & (d["param_count"] == param_count) & (d["loss_split"] == split)
        return d[keep & (d["decay"] == "chinchilla")]

    g, anchor = sel(pts), float(sel(pub)["n_exponent"].iloc[0])
    res = fit("chinchilla", g, g["loss"].to_numpy())
    a = res.params["beta"] / (res.params["alpha"] + res.params["beta"])  # N* ~ C^a (Hoffmann et al., eq. 4)
    assert res.success and a == pytest.approx(anchor, abs=0.03)


def _ye_cpt(refdata):
    d = pd.read_csv(refdata("realdata/dml_ye2024_cpt_pythia70m_pile_python.csv"))
    return d[d["run_id"] == "base"], d[d["run_id"] != "base"]


def test_ye_cpt_dcpt_formula_and_naive_interpolation(refdata):
    _, d = _ye_cpt(refdata)
    X = {"r": d["r_domain_python"].to_numpy(float), "D": d["cpt_step"].to_numpy(float)}
    y = d["loss_domain_python"].to_numpy(float)
    law = formula_law(DCPT_RD, fixed={"eps": 1e-3})
    assert fit(law, X, y).r2 > 0.99
    held = X["r"] == 0.71484375  # the "critical" run: interpolating its neighbours beats the law here
    tr, te = np.flatnonzero(~held), np.flatnonzero(held)
    res = fit(law, take(X, tr, ("r", "D")), y[tr], n_starts=32)
    sk = split_skill(res.predict(take(X, te, ("r", "D"))), take(X, tr, ("r", "D")), y[tr], take(X, te, ("r", "D")),
                     y[te], "r", ("r", "D"))  # fmt: skip
    assert sk.law_mape == pytest.approx(0.0020, abs=0.0004) and sk.naive_mape == pytest.approx(
        0.0011, abs=0.0002
    )
    assert sk.ratio > 1.3 and sk.n_naive == 10
    # extremes have one neighbour only: there the law wins (naive carries the nearest ratio)
    for edge in (0.5, 0.875):
        out = np.flatnonzero(X["r"] == edge)
        keep = np.flatnonzero(X["r"] != edge)
        xt, xo = take(X, keep, ("r", "D")), take(X, out, ("r", "D"))
        pred = fit(law, xt, y[keep], n_starts=16).predict(xo)
        assert split_skill(pred, xt, y[keep], xo, y[out], "r", ("r", "D")).ratio < 1, edge


def test_ye_cpt_general_law_critical_proportion(refdata):
    base, d = _ye_cpt(refdata)
    X = {"r": d["r_general_pile"].to_numpy(float), "D": d["cpt_step"].to_numpy(float)}
    law = formula_law(DCPT_RD, fixed={"eps": 1e-3})
    res = fit(law, X, d["loss_general_pile_weighted"].to_numpy(float))
    r = np.linspace(0.1, 0.6, 5001)
    pred = law.predict(res.params, {"r": r, "D": np.full_like(r, 10000.0)})
    critical = r[np.argmax(pred <= float(base["loss_general_pile_weighted"].iloc[0]))]
    assert critical == pytest.approx(0.28515625, abs=0.015)  # the notebook's critical Pile share


def test_ye_mixing_law_two_domains(refdata):
    m = pd.read_csv(refdata("realdata/dml_ye2024_2mix_losses.csv"))
    for (model, dom), g in m.groupby(["model", "valid_domain"]):
        law = formula_law("E + B/D**beta + K*exp(t*p1)", columns=list(g.columns))
        assert law.linear == ("E", "B", "K") and law.nonlinear == ("beta", "t")
        res = fit(law, g, g["loss"].to_numpy())
        assert res.success and res.mape < 0.01, (model, dom)
        # p1 is the Github share: it lowers Github loss and raises Pile-CC loss
        assert (res.params["t"] < 0) == (dom == "Github"), (model, dom, res.params["t"])
        mid = sorted(g["mixture"].unique())[2]
        tr, te = g[g["mixture"] != mid], g[g["mixture"] == mid]
        pred = fit(law, tr, tr["loss"].to_numpy()).predict(te)
        assert np.mean(np.abs(pred / te["loss"].to_numpy() - 1)) < 0.01, (model, dom)


def test_ye_mixing_law_three_domains(refdata):
    m = pd.read_csv(refdata("realdata/dml_ye2024_3mix_losses.csv"))
    g0 = m[m["model"] == "160M"]
    for dom, g in g0.groupby("valid_domain"):
        law = formula_law("E + B/D**beta + K*exp(t1*p1 + t2*p2)", columns=list(g.columns))
        res = fit(law, g, g["loss"].to_numpy(), n_starts=32)
        assert res.success and res.mape < 0.03, dom
        # p1 = Github, p2 = Books3 (p3 = Pile-CC): a domain's own share lowers its loss
        t1, t2 = res.params["t1"], res.params["t2"]
        expect = {
            "Github": (t1 < 0 and t2 > 0),
            "Books3": (t1 > 0 and t2 < 0),
            "Pile-CC": (t1 > 0 and t2 > 0),
        }
        assert expect[dom], (dom, t1, t2)
    few = m[(m["model"] == "70M") & (m["valid_domain"] == "Github")]  # 3 mixtures for K, t1, t2 and E
    res = fit(formula_law("E + B/D**beta + K*exp(t1*p1 + t2*p2)", columns=list(few.columns)), few, few["loss"].to_numpy(),
              n_starts=16)  # fmt: skip
    assert res.mape < 0.05


def _interval_coverage(form, xtr, ytr, xte, yte, along, groups=None):
    """(calibrated coverage, its mean width, bootstrap + noise coverage) of 90% intervals on a held-out
    extrapolation; the calibration sees the training rows only (and how far the target lies: `horizon`)."""
    res = fit(form, xtr, ytr)
    g = np.arange(ytr.size) if groups is None else groups
    bs = bootstrap(form, xtr, ytr, g, n_boot=100, base=res)
    noise = noise_scale(res, xtr, ytr)
    horizon = float(np.log10(np.max(xte[along]) / np.max(xtr[along])))
    cal = calibrate(form, xtr, ytr, along, groups=groups, horizon=horizon)
    iv = prediction_intervals(res, bs, xte, level=0.9, noise=noise, calibration=cal)
    plain = prediction_intervals(res, bs, xte, level=0.9, noise=noise)
    return iv.coverage(yte), iv.mean_width(), plain.coverage(yte)


def test_intervals_cover_hoffmann_largest_n(refdata):
    d = (
        pd.read_csv(refdata("data/chinchilla_hoffmann2022_fig4.csv"))
        .sort_values("loss")
        .iloc[:-5]
        .sort_values("N")
    )
    tr, te = d.iloc[:-17], d.iloc[-17:]
    cols = lambda g: {"N": g["N"].to_numpy(float), "D": g["D"].to_numpy(float)}  # noqa: E731
    cover, width, plain = _interval_coverage("chinchilla", cols(tr), tr["loss"].to_numpy(), cols(te),
                                             te["loss"].to_numpy(), "N")  # fmt: skip
    assert cover >= 0.8 and plain <= 0.3 and width < 0.05  # measured: 0.88 (15 of 17) at 4.0% width; 0.18


@pytest.mark.parametrize(
    ("target", "share", "least", "most_width"),
    [
        ("loss_domain_python", "r_domain_python", 0.65, 0.013),
        ("loss_general_pile_weighted", "r_general_pile", 0.9, 0.012),
    ],
)
def test_intervals_cover_ye_cpt_later_checkpoints(refdata, target, share, least, most_width):
    _, d = _ye_cpt(refdata)
    tr, te = d[d["cpt_step"] <= 7000], d[d["cpt_step"] > 7000]
    cols = lambda g: {"r": g[share].to_numpy(float), "D": g["cpt_step"].to_numpy(float)}  # noqa: E731
    law = formula_law(DCPT_RD, fixed={"eps": 1e-3})
    cover, width, _ = _interval_coverage(law, cols(tr), tr[target].to_numpy(), cols(te), te[target].to_numpy(), "D",
                                         tr["run_id"].to_numpy(str))  # fmt: skip
    # measured: domain 0.73 (11 of 15) at 1.07% (short of 0.9: the folds' drift underestimates the last
    # checkpoints'), general 1.00 at 0.96%
    assert cover >= least and width < most_width


def test_intervals_cover_olmo_ladder_3b(refdata):
    fin = _olmo_final(refdata)
    tr, te = fin[fin["N"] < 2e9], fin[fin["N"] > 2e9]
    cols = lambda g: {"N": g["N"].to_numpy(float), "D": g["D"].to_numpy(float)}  # noqa: E731
    cover, width, _ = _interval_coverage("chinchilla", cols(tr), tr["loss_c4_en"].to_numpy(), cols(te),
                                         te["loss_c4_en"].to_numpy(), "N")  # fmt: skip
    # measured: 0.80 (4 of 5) at 3.7% width, one fold (three sizes); the two-size fold is not identified in N
    assert cover >= 0.8 and width < 0.07

"""User-defined laws: safe parsing, linear/nonlinear split, default boxes, equivalence with the built-in forms."""

import pickle

import numpy as np
import pytest

from cptlaw.laws import FormulaError, LawInputError, bootstrap, fit, formula_law, get_law, law_from_spec
from tests.helpers.synth import TRUTH, points

# every built-in form as a formula (D-CPT's r + epsilon: eps fixed; cross-domain w1 = 1, w2 = exp(log_w2))
AS_FORMULA = {
    "chinchilla": ("E + A/N**alpha + B/D**beta", {}),
    "dcpt": ("E + A/N**alpha + B*r**eta/D**beta + C/(r+eps)**gamma", {"eps": 1e-3}),
    "dcpt_nocoupling": ("E + A/N**alpha + B/D**beta + C/(r+eps)**gamma", {"eps": 1e-3}),
    "dcpt_forgetting": (
        "E + A/N**alpha + B*r**eta/D**beta + C/(r+eps)**gamma + F*((1-r)*D)**kappa",
        {"eps": 1e-3},
    ),
    "dcpt_cross": (
        "E + A/N**alpha + B*r**eta/D**beta + C/(r+eps)**gamma + F/(1/k1 + exp(log_w2)*k2)**mu",
        {"eps": 1e-3},
    ),  # fmt: skip
    "ppl": ("E + D_c/(mu**(alpha0 + alpha1*sigma) * sigma**(beta0 + beta1*mu) * D**alpha_D)", {}),
    "ppl_nointeraction": ("E + D_c/(mu**alpha0 * sigma**beta0 * D**alpha_D)", {}),
}


def _as_formula(law):
    text, fixed = AS_FORMULA[law]
    builtin = get_law(law)
    box = dict(zip(builtin.nonlinear, builtin.bounds, strict=True))
    # explicit inputs: `mu` is a parameter of the cross-domain law but an input column name by default
    return builtin, formula_law(text, inputs=builtin.columns, fixed=fixed, bounds=box)


@pytest.mark.parametrize("law", list(AS_FORMULA))
def test_builtin_forms_equal_their_formulas(law):
    x, _, truth = points(law)
    builtin, form = _as_formula(law)
    assert set(form.linear) == set(builtin.linear) and set(form.nonlinear) == set(builtin.nonlinear)
    p = truth | ({"eps": 1e-3} if "eps" in form.fixed else {})
    np.testing.assert_allclose(form.predict(p, x), builtin.predict(truth, x), rtol=1e-12)
    # exact gradients: the sympy Jacobian equals the built-in's complex-step one
    th = np.array([truth[k] for k in form.nonlinear])
    order = [builtin.nonlinear.index(k) for k in form.nonlinear]
    lin = [builtin.linear.index(k) for k in form.linear]
    phi_f, jac_f = form.design_jac(form.features(x), th)
    phi_b, jac_b = builtin.design_jac(builtin.features(x), np.array([truth[k] for k in builtin.nonlinear]))
    np.testing.assert_allclose(phi_f, phi_b[:, lin], rtol=1e-12)
    np.testing.assert_allclose(jac_f, jac_b[:, lin][:, :, order], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("law", ["chinchilla", "dcpt", "ppl_nointeraction"])
def test_formula_reaches_the_builtin_optimum(law):
    x, y, _ = points(law, seed=5)
    builtin, form = _as_formula(law)
    a, b = fit(builtin, x, y, n_starts=16), fit(form, x, y, n_starts=16)
    assert b.success and b.huber == pytest.approx(a.huber, rel=1e-7)
    for k in builtin.nonlinear:
        assert b.params[k] == pytest.approx(a.params[k], rel=1e-4, abs=1e-6), k


def test_linear_parameters_and_default_boxes():
    law = formula_law("E + B/D**beta + K*exp(t*p1) + G*log(D)", columns=["D", "p1"])
    assert (
        law.columns == ("D", "p1") and law.linear == ("E", "B", "K", "G") and law.nonlinear == ("beta", "t")
    )
    box = dict(zip(law.linear, law.constant_box, strict=True))
    assert box["K"] == (0.0, np.inf) and box["G"] == (-np.inf, np.inf)  # log(D) may be either sign
    assert dict(zip(law.nonlinear, law.bounds, strict=True)) == {"beta": (0.0, 3.0), "t": (-10.0, 10.0)}
    law = formula_law("E + K*exp(t*p1)", columns=["p1"], bounds={"K": (-np.inf, np.inf), "t": (-3, 0)})
    assert law.constant_box == ((0.0, np.inf), (-np.inf, np.inf)) and law.bounds == ((-3.0, 0.0),)
    kaplan = formula_law("(Nc/N)**aN", bounds={"Nc": (1.0, 1e15)})  # no linear constant at all
    assert kaplan.linear == () and kaplan.nonlinear == ("Nc", "aN")


def test_signed_constant_and_offset_term_fit():
    rng = np.random.default_rng(0)
    x = {"D": np.geomspace(1e4, 1e7, 40), "p1": rng.uniform(0, 1, 40)}
    law = formula_law("E + K*exp(t*p1) + 1/D**beta", columns=["D", "p1"], bounds={"K": (-10, 10)})
    truth = {"E": 2.0, "K": -0.3, "t": 1.5, "beta": 0.2}
    y = law.predict(truth, x) * np.exp(rng.normal(0, 1e-4, 40))
    res = fit(law, x, y, n_starts=16)
    assert res.success and res.params["K"] == pytest.approx(-0.3, rel=0.02)
    assert res.params["t"] == pytest.approx(1.5, rel=0.02) and res.params["beta"] == pytest.approx(
        0.2, rel=0.02
    )


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("E + A/N**", "does not parse"),
        ("E + A*foo(N)", "uses function `foo`; allowed functions: exp, log, sqrt, tanh"),
        ("E + __import__('os').system('x')", "uses function"),
        ("E + A.real", "may only use numbers"),
        ("E + A[0]", "may only use numbers"),
        ("E + exp", "`exp` is a function"),
        ("E + exp(A, N)", "exactly one argument"),
        ("N*D", "has no parameter to fit"),
        ("loss - E", "uses `loss`"),
        ("", "non-empty"),
    ],
)
def test_bad_formulas_are_one_line_errors(text, match):
    with pytest.raises(FormulaError, match=match) as err:
        formula_law(text)
    assert isinstance(err.value, LawInputError) and "\n" not in str(err.value)


def test_bad_bounds_fixed_and_missing_column():
    with pytest.raises(FormulaError, match="`bounds` names zeta"):
        formula_law("E + A/N**alpha", bounds={"zeta": (0, 1)})
    with pytest.raises(FormulaError, match=r"`bounds.alpha` must have lo < hi"):
        formula_law("E + A/N**alpha", bounds={"alpha": (2, 1)})
    with pytest.raises(FormulaError, match="`fixed` names eps, not in the formula"):
        formula_law("E + A/N**alpha", fixed={"eps": 1e-3})
    law = formula_law("E + A/N**alpha + B/D**beta")
    with pytest.raises(LawInputError, match="missing column `D`"):
        fit(law, {"N": np.arange(1.0, 10.0)}, np.ones(9))
    with pytest.raises(LawInputError, match="`N` must be >= 0"):
        law.features({"N": np.array([-1.0, 2.0]), "D": np.array([1.0, 2.0])})


def test_unidentified_formula_term_is_not_success():
    x, y, _ = points("chinchilla")
    one_n = x["N"] == x["N"][0]
    res = fit(
        formula_law("E + A/N**alpha + B/D**beta"), {k: v[one_n] for k, v in x.items()}, y[one_n], n_starts=8
    )
    assert not res.success and "not identified" in res.message and "alpha" in res.diagnostics["unidentified"]


def test_law_from_spec_builtin_formula_and_mapping():
    assert law_from_spec("dcpt").name == "dcpt"
    assert law_from_spec({"law": "dcpt", "epsilon": 0.01}).fixed["epsilon"] == 0.01
    f = law_from_spec({"formula": "E + A/N**alpha", "name": "mine", "bounds": {"alpha": [0, 1]}})
    assert f.name == "mine" and f.bounds == ((0.0, 1.0),) and f.equation == "L = E + A/N**alpha"
    assert law_from_spec("L = E + B*exp(t*p1)", columns=["p1"]).columns == ("p1",)
    with pytest.raises(LawInputError, match="unknown key"):
        law_from_spec({"formula": "E + A/N**alpha", "bound": {}})
    with pytest.raises(LawInputError, match="needs `law` or `formula`"):
        law_from_spec({})


def test_formula_law_pickles_and_bootstraps():
    x, y, truth = points("chinchilla", noise=0.005, seed=3)
    law = pickle.loads(pickle.dumps(formula_law("E + A/N**alpha + B/D**beta", bounds={"alpha": (0, 2)})))
    assert law.bounds[0] == (0.0, 2.0)
    bs = bootstrap(law, x, y, np.arange(y.size), n_boot=40)
    assert bs.n_failed == 0 and bs.ci["beta"][0] <= truth["beta"] <= bs.ci["beta"][1]
    assert set(TRUTH["chinchilla"]) <= set(bs.ci)

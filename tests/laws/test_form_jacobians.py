"""The built-in forms' closed-form Jacobians (used by every polish and projection step) equal the complex-step
Jacobian of their design, on rows at the edges of the data (r = 0, r = 1) included."""

import numpy as np
import pytest

from cptlaw.laws import REGISTRY, LawForm, get_law


def _points(rng, n=40):
    r = rng.uniform(0, 1, n)
    r[:4] = [0.0, 1.0, 0.0, 1.0]  # zero columns (r^eta at r = 0, ((1-r) D)^kappa at r = 1)
    return {"N": rng.uniform(1e4, 1e7, n), "D": rng.uniform(1e3, 1e8, n), "r": r,
            "k1": rng.uniform(2, 8, n), "k2": rng.uniform(1e-3, 0.1, n),
            "mu": rng.uniform(5, 90, n), "sigma": rng.uniform(1, 30, n)}  # fmt: skip


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_closed_form_jacobian_is_the_complex_step_one(name):
    form = get_law(name)
    rng = np.random.default_rng(0)
    f = form.features({c: v for c, v in _points(rng).items() if c in form.columns})
    for theta in rng.uniform(*np.array(form.bounds).T, size=(5, len(form.bounds))):
        phi, jac = form.design_jac(f, theta)
        ref_phi, ref_jac = LawForm.design_jac(form, f, theta)
        assert type(form).design_jac is not LawForm.design_jac, f"{name} has no closed-form Jacobian"
        assert jac.shape == ref_jac.shape and np.array_equal(phi, np.real(form.design(f, theta)))
        np.testing.assert_allclose(jac, ref_jac, rtol=1e-10, atol=1e-300)


@pytest.mark.parametrize(
    "law, weighted",
    [("dcpt_forgetting", False), ("dcpt", True), ("E + A/N**alpha + B*r**eta/D**beta + 0.5/D**kappa", False)],
)
def test_projection_gradient_is_the_finite_difference_one(law, weighted):
    """The variable-projection step's gradient (envelope theorem, NNLS constants) against central differences,
    with bootstrap-like weights and with a formula law that has an offset (a term without a constant)."""
    from scipy.optimize import approx_fprime

    from cptlaw.laws import formula_law
    from cptlaw.laws.fit import FitProblem

    rng = np.random.default_rng(1)
    X = {c: v for c, v in _points(rng).items() if c in ("N", "D", "r")}
    form = get_law(law) if law in REGISTRY else formula_law(law, columns=["N", "D", "r"])
    y = 2.0 + 30 * X["N"] ** -0.3 + 200 * X["D"] ** -0.35 * X["r"] ** 0.4 + 0.1 * rng.random(len(X["r"]))
    weights = rng.integers(0, 3, len(y)).astype(float) if weighted else None
    problem = FitProblem(form, form.features(X), y, weights=weights)
    for theta in rng.uniform(problem.lo + 0.1, np.minimum(problem.hi, 2.0) - 0.1, size=(4, problem.p)):
        value, grad = problem.project_grad(theta)
        assert value == pytest.approx(problem.project(theta)[1], rel=1e-12)
        fd = approx_fprime(theta, lambda t: problem.project(t)[1], 1e-7)
        np.testing.assert_allclose(grad, fd, rtol=1e-4, atol=1e-7 * max(1.0, np.abs(fd).max()))

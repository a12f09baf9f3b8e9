"""User-defined laws: a formula over named input columns, fitted at variable-projection speed.

    law = formula_law("E + A/N**alpha + B*r**eta/D**beta + C/(r+eps)**gamma", fixed={"eps": 1e-3})
    fit(law, points, loss)

Parsing never evaluates the text: Python's `ast` parses it (syntax only) and a whitelist walk turns numbers,
names, `+ - * / **` (`^` is read as a power, as in the papers) and calls of `exp, log, sqrt, tanh` into a
sympy expression. Anything else (attributes, subscripts, keywords, other functions) is a one-line error.

Names that are input columns are inputs; every other name is a parameter. A parameter the law is affine in
(no square, no product with another such parameter, e.g. E, A, B, C above) is *linear*: the fitter solves it
exactly for each value of the others (variable projection, `cptlaw.laws.fit`). Its default box is [0, inf)
when sympy proves its term non-negative for positive inputs (powers of inputs, exp, constants: the papers'
positive constants, solved by NNLS), else unbounded (least squares). The other parameters are *nonlinear*:
searched within a box, by default [0, 3] for an exponent of an input (a power law's exponent, written
positive as in the papers: `A/N**alpha`, `r**eta`) and [-10, 10] otherwise; both are overridable per
parameter. Gradients are exact: sympy derivatives, compiled with common-subexpression elimination.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import sympy as sp

from cptlaw.laws.forms import REGISTRY, Features, LawForm, LawInputError, get_law

FUNCTIONS: dict[str, Callable[..., sp.Expr]] = {
    "exp": sp.exp,
    "log": sp.log,
    "sqrt": sp.sqrt,
    "tanh": sp.tanh,
}
# the fitting table's input columns: always inputs when a formula names them (a missing one is an error)
INPUT_COLUMNS = ("N", "D", "r", "k1", "k2", "mu", "sigma")
EXPONENT_BOUNDS = (0.0, 3.0)
OTHER_BOUNDS = (-10.0, 10.0)
_OPS = {ast.Add: sp.Add, ast.Sub: lambda a, b: a - b, ast.Mult: sp.Mul, ast.Div: lambda a, b: a / b,
        ast.Pow: sp.Pow, ast.BitXor: sp.Pow}  # fmt: skip


class FormulaError(LawInputError):
    """A formula that cannot be used as a law; the message names the problem in one line."""


def parse_formula(text: str) -> sp.Expr:
    """The sympy expression of `text`, built by a whitelist walk of its syntax tree (no eval)."""
    if not isinstance(text, str) or not text.strip():
        raise FormulaError("`formula` must be a non-empty string")
    src = re.sub(r"^\s*L\s*=", "", text).strip()
    try:
        tree = ast.parse(src, mode="eval")
    except SyntaxError as exc:
        raise FormulaError(
            f"`formula` does not parse: {exc.msg} at column {exc.offset} in {text!r}"
        ) from None
    symbols: dict[str, sp.Symbol] = {}

    def walk(node: ast.AST) -> sp.Expr:
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, int | float)
            and not isinstance(node.value, bool)
        ):
            return sp.Integer(node.value) if isinstance(node.value, int) else sp.Float(node.value)
        if isinstance(node, ast.Name):
            if node.id in FUNCTIONS:
                raise FormulaError(f"`formula`: `{node.id}` is a function, call it as {node.id}(...)")
            return symbols.setdefault(node.id, sp.Symbol(node.id, real=True))
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](walk(node.left), walk(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            v = walk(node.operand)
            return -v if isinstance(node.op, ast.USub) else v
        if isinstance(node, ast.Call):
            name = node.func.id if isinstance(node.func, ast.Name) else ast.unparse(node.func)
            if name not in FUNCTIONS:
                raise FormulaError(
                    f"`formula` uses function `{name}`; allowed functions: {', '.join(FUNCTIONS)}"
                )
            if node.keywords or len(node.args) != 1:
                raise FormulaError(f"`formula`: {name}() takes exactly one argument")
            return FUNCTIONS[name](walk(node.args[0]))
        what = ast.unparse(node) if hasattr(ast, "unparse") else type(node).__name__
        raise FormulaError(
            f"`formula` may only use numbers, names, + - * / ** and {', '.join(FUNCTIONS)}(); got `{what}`"
        )

    return walk(tree)


def _split_linear(expr: sp.Expr, params: list[sp.Symbol]) -> list[sp.Symbol]:
    """Parameters the expression is jointly affine in (no square, no product of two of them)."""
    lin = [p for p in params if sp.diff(expr, p, 2) == 0]
    for p in list(lin):
        if p in lin and any(q is not p and sp.simplify(sp.diff(expr, p, q)) != 0 for q in lin):
            lin.remove(p)  # keep the later ones; `A*B/N` leaves B linear, A nonlinear
    return lin


def _exponent_params(expr: sp.Expr, inputs: set[sp.Symbol]) -> set[sp.Symbol]:
    """Parameters in the exponent of a power whose base depends on an input (power-law exponents)."""
    out: set[sp.Symbol] = set()
    for pw in expr.atoms(sp.Pow):
        if pw.base.free_symbols & inputs:
            out |= pw.exp.free_symbols - inputs
    return out


@dataclass(frozen=True, eq=False)
class FormulaLaw(LawForm):
    """A law from a formula (see the module docstring); fits, bootstraps and decides like the built-in forms."""

    formula: str = ""
    inputs: tuple[str, ...] = ()
    constant_box: tuple[tuple[float, float], ...] = ()
    nonneg_inputs: tuple[str, ...] = ()
    _fn: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def constant_bounds(self):
        return self.constant_box

    def __reduce__(self):  # compiled functions do not pickle: rebuild from the text
        box = dict(zip(self.linear, self.constant_box, strict=True)) | dict(
            zip(self.nonlinear, self.bounds, strict=True)
        )
        return (formula_law, (self.formula, self.inputs, box, dict(self.fixed), self.name))

    def validate(self, X):
        cols = super().validate(X)
        for c in self.nonneg_inputs:
            if np.any(cols[c] < 0):
                bad = int(np.flatnonzero(cols[c] < 0)[0])
                raise LawInputError(
                    f"`{c}` must be >= 0 (the formula takes its power or log), got {cols[c][bad]} at row {bad}"
                )
        return cols

    def features(self, X):
        return self.validate(X)

    def _args(self, f: Features, theta: Any) -> list[Any]:
        return [f[c] for c in self.inputs] + list(theta)

    def _cols(self, vals: Sequence[Any], n: int, dtype: Any) -> np.ndarray:
        return np.stack([np.broadcast_to(np.asarray(v, dtype=dtype), (n,)) for v in vals], axis=1) if vals else (
            np.zeros((n, 0), dtype=dtype)
        )  # fmt: skip

    def design(self, f, theta):
        n = self.n_rows(f)
        dtype = np.result_type(np.asarray(theta), float)
        return self._cols(self._fn["design"](*self._args(f, theta)), n, dtype)

    def offset(self, f, theta):
        if self._fn["offset"] is None:
            return None
        return np.broadcast_to(
            np.asarray(self._fn["offset"](*self._args(f, theta)), dtype=float), (self.n_rows(f),)
        )

    def design_jac(self, f, theta):
        n, k, p = self.n_rows(f), len(self.linear), len(self.nonlinear)
        with np.errstate(all="ignore"):
            out = self._fn["jac"](*self._args(f, theta))
        vals = [np.broadcast_to(np.asarray(v, dtype=float), (n,)) for v in out]
        phi = np.stack(vals[:k], axis=1) if k else np.zeros((n, 0))
        jac = np.stack(vals[k:], axis=1).reshape(n, k, p) if k and p else np.zeros((n, k, p))
        with np.errstate(invalid="ignore"):
            # 0 * log(0) (a power of an input that is 0, e.g. r**eta at r = 0) is the limit 0
            jac = np.where(np.isnan(jac) & np.isfinite(phi)[:, :, None], 0.0, jac)
        return phi, jac

    def offset_jac(self, f, theta):
        if self._fn["offset"] is None:
            return None
        n = self.n_rows(f)
        with np.errstate(all="ignore"):
            raw = self._fn["offset_jac"](*self._args(f, theta))
        vals = [np.broadcast_to(np.asarray(v, dtype=float), (n,)) for v in raw]
        off = vals[0]
        jac = np.stack(vals[1:], axis=1) if len(vals) > 1 else np.zeros((n, 0))
        with np.errstate(invalid="ignore"):
            jac = np.where(np.isnan(jac) & np.isfinite(off)[:, None], 0.0, jac)
        return off, jac


def _box(name: str, value: Any) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise FormulaError(f"`bounds.{name}` must be a pair (lo, hi), got {value!r}") from None
    if not lo < hi:
        raise FormulaError(f"`bounds.{name}` must have lo < hi, got ({lo}, {hi})")
    return lo, hi


def formula_law(
    formula: str, inputs: Sequence[str] | None = None, bounds: Mapping[str, Any] | None = None,
    fixed: Mapping[str, float] | None = None, name: str | None = None, columns: Sequence[str] = (),
) -> FormulaLaw:  # fmt: skip
    """A `FormulaLaw` from its text.

    `inputs`: the names that are input columns (default: the names in `INPUT_COLUMNS` or in `columns`, e.g.
    a CSV's header, that the formula uses); `bounds`: name -> (lo, hi) for any parameter (linear ones too:
    `K=(-inf, inf)` frees a sign); `fixed`: name -> value, substituted before fitting and reported in the
    params (e.g. `eps=1e-3`).
    """
    expr = parse_formula(formula)
    names = sorted((s.name for s in expr.free_symbols), key=lambda s: re.search(rf"\b{s}\b", formula).start())
    fixed = {str(k): float(v) for k, v in (fixed or {}).items()}
    if inputs is None:
        pool = set(INPUT_COLUMNS) | set(columns)
        inputs = tuple(s for s in names if s in pool and s not in fixed)
    inputs = tuple(inputs)
    if "loss" in names:
        raise FormulaError("`formula` uses `loss`, the observed value; a law predicts it from the inputs")
    unknown_fixed = sorted(set(fixed) - set(names))
    if unknown_fixed:
        raise FormulaError(
            f"`fixed` names {', '.join(unknown_fixed)}, not in the formula ({', '.join(names)})"
        )
    if set(fixed) & set(inputs):
        raise FormulaError(f"`fixed` names input column(s) {', '.join(sorted(set(fixed) & set(inputs)))}")
    sym = {s.name: s for s in expr.free_symbols}
    expr = expr.subs({sym[k]: sp.Float(v) for k, v in fixed.items()})
    in_syms = [sym[c] for c in inputs if c in sym]
    params = [sym[s] for s in names if s not in inputs and s not in fixed]
    if not params:
        raise FormulaError(
            f"`formula` has no parameter to fit: every name ({', '.join(names) or 'none'}) is an input column "
            "or fixed"
        )
    unknown_b = sorted(set(bounds or {}) - {p.name for p in params})
    if unknown_b:
        raise FormulaError(
            f"`bounds` names {', '.join(unknown_b)}, not a parameter of the formula ({', '.join(p.name for p in params)})"
        )
    lin = _split_linear(expr, params)
    nonlin = [p for p in params if p not in lin]
    basis = [sp.diff(expr, c) for c in lin]
    offset = sp.simplify(expr.subs({c: 0 for c in lin}))
    # signs for the default constant boxes: inputs positive, nonlinear parameters real
    pos = {s: sp.Symbol(s.name, positive=True) for s in in_syms}
    cbox = []
    for c, b in zip(lin, basis, strict=True):
        default = (0.0, np.inf) if b.subs(pos).is_nonnegative else (-np.inf, np.inf)
        cbox.append(_box(c.name, bounds[c.name]) if bounds and c.name in bounds else default)
    expo = _exponent_params(expr, set(in_syms))
    nbox = []
    for p in nonlin:
        default = EXPONENT_BOUNDS if p in expo else OTHER_BOUNDS
        nbox.append(_box(p.name, bounds[p.name]) if bounds and p.name in bounds else default)
    nonneg = sorted(
        {pw.base.name for pw in expr.atoms(sp.Pow) if pw.base in in_syms and not pw.exp.is_integer}
        | {lg.args[0].name for lg in expr.atoms(sp.log) if lg.args[0] in in_syms}
    )
    args = in_syms + nonlin
    has_off = offset != 0
    jac_exprs = basis + [sp.diff(b, t) for b in basis for t in nonlin]
    fn = {
        "design": sp.lambdify(args, basis, modules="numpy", cse=True, dummify=True),
        "jac": sp.lambdify(args, jac_exprs, modules="numpy", cse=True, dummify=True),
        "offset": sp.lambdify(args, offset, modules="numpy", cse=True, dummify=True) if has_off else None,
        "offset_jac": sp.lambdify(args, [offset] + [sp.diff(offset, t) for t in nonlin], modules="numpy",
                                  cse=True, dummify=True) if has_off else None,
    }  # fmt: skip
    equation = "L = " + re.sub(r"^\s*L\s*=", "", formula).strip()
    return FormulaLaw(
        name or "formula", equation, inputs, tuple(c.name for c in lin), tuple(p.name for p in nonlin),
        tuple(nbox), fixed=fixed, formula=formula, inputs=inputs, constant_box=tuple(cbox),
        nonneg_inputs=tuple(nonneg), _fn=fn,
    )  # fmt: skip


def law_from_spec(spec: str | Mapping[str, Any], columns: Sequence[str] = (), **options: Any) -> LawForm:
    """A law from config: a built-in name (`"dcpt"`), a formula string, or a mapping.

    Mapping keys: `law` (a built-in name, plus its options such as `epsilon`) or `formula` (with optional
    `inputs`, `bounds`, `fixed`, `name`). `columns`: the data's column names (inputs a formula may use);
    `options`: passed to a built-in law (e.g. `epsilon`).
    """
    if isinstance(spec, str):
        if spec in REGISTRY:
            return get_law(spec, **options)
        return formula_law(spec, columns=columns)
    if not isinstance(spec, Mapping):
        raise LawInputError(f"`law` must be a name, a formula or a mapping, got {type(spec).__name__}")
    spec = dict(spec)
    if "law" in spec and "formula" in spec:
        raise LawInputError("`law` spec must have `law` or `formula`, not both")
    if "law" in spec:
        return get_law(str(spec.pop("law")), **(options | spec))
    if "formula" not in spec:
        raise LawInputError(f"`law` spec needs `law` or `formula`, got keys {', '.join(spec) or 'none'}")
    extra = sorted(set(spec) - {"formula", "inputs", "bounds", "fixed", "name"})
    if extra:
        raise LawInputError(
            f"`law` spec has unknown key(s) {', '.join(extra)} (formula, inputs, bounds, fixed, name)"
        )
    inputs = spec.get("inputs")
    return formula_law(
        str(spec["formula"]), tuple(inputs) if inputs is not None else None, spec.get("bounds"),
        spec.get("fixed"), spec.get("name"), columns,
    )  # fmt: skip

"""Distance-to-optimum selection (DOS; Liu et al. 2025): greedy subset whose perplexity landscape sits at
the fitted optimum (mu_hat, sigma_hat).

Greedy rule (the paper's): add, one sample at a time, the candidate minimising
`J(S) = w_mu (mu(S) - mu_hat)^2 + w_sigma (sigma^2(S) - sigma_hat^2)^2` until the token budget is met
(mu, sigma^2: sample mean and population variance of the per-sample perplexities).

Fast exact greedy: given S's moments (m, sum x, sum x^2), `J(S + {x})` is a quartic polynomial in the
candidate value x alone. Between its critical points (roots of a cubic) it is monotone, so the best available
candidate is the nearest available value left or right of a critical point (or an extreme of the pool).
With the pool sorted once and removals tracked by two path-compressed "next available" pointer arrays,
each step is O(log n) instead of O(n): the same selection as re-evaluating J for every candidate.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

import numpy as np

from cptlaw.laws.forms import LawInputError


@dataclass
class Selection:
    indices: np.ndarray  # indices into the pool, in the order chosen
    n_tokens: float
    mu: float
    sigma: float
    objective: float  # J(S) at the end
    budget_met: bool


def _weights(
    mu_hat: float, sigma_hat: float, w_mu: float | None, w_sigma: float | None
) -> tuple[float, float]:
    # default: scale-free weights, so J is a sum of squared relative errors of mean and variance
    return (1.0 / mu_hat**2 if w_mu is None else w_mu, 1.0 / sigma_hat**4 if w_sigma is None else w_sigma)


def _check(values: np.ndarray, tokens: np.ndarray, budget: float, mu_hat: float, sigma_hat: float) -> None:
    if values.ndim != 1 or values.size == 0:
        raise LawInputError(f"`values` must be a non-empty 1-D array, got shape {values.shape}")
    if tokens.shape != values.shape:
        raise LawInputError(f"`tokens` must have the shape of `values` {values.shape}, got {tokens.shape}")
    if not np.all(np.isfinite(values)):
        raise LawInputError("`values` must be finite")
    if np.any(tokens <= 0):
        raise LawInputError("`tokens` must be > 0")
    if budget <= 0:
        raise LawInputError(f"`budget` must be > 0, got {budget}")
    if sigma_hat < 0 or not np.isfinite(mu_hat):
        raise LawInputError(
            f"`mu_hat`, `sigma_hat` must be finite with sigma_hat >= 0, got {mu_hat}, {sigma_hat}"
        )


def _objective(m: int, s1: float, s2: float, mu_hat: float, var_hat: float, wm: float, ws: float) -> float:
    mu = s1 / m
    return wm * (mu - mu_hat) ** 2 + ws * (s2 / m - mu * mu - var_hat) ** 2


def _real_roots(c3: float, c2: float, c1: float, c0: float) -> list[float]:
    """Real roots of c3 x^3 + c2 x^2 + c1 x + c0 (degenerate leading terms handled)."""
    scale = max(abs(c3), abs(c2), abs(c1), abs(c0), 1e-300)
    if abs(c3) > 1e-12 * scale:
        a, b, c = c2 / c3, c1 / c3, c0 / c3
        q = (a * a - 3 * b) / 9
        r = (2 * a**3 - 9 * a * b + 27 * c) / 54
        if r * r < q**3:  # three real roots (trigonometric form)
            t = math.acos(max(-1.0, min(1.0, r / math.sqrt(q**3))))
            sq = -2 * math.sqrt(q)
            return [sq * math.cos(t / 3) - a / 3, sq * math.cos((t + 2 * math.pi) / 3) - a / 3,
                    sq * math.cos((t - 2 * math.pi) / 3) - a / 3]  # fmt: skip
        big = -math.copysign((abs(r) + math.sqrt(max(r * r - q**3, 0.0))) ** (1 / 3), r)
        small = q / big if big != 0 else 0.0
        return [big + small - a / 3]
    if abs(c2) > 1e-12 * scale:
        disc = c1 * c1 - 4 * c2 * c0
        if disc < 0:
            return [-c1 / (2 * c2)]
        s = math.sqrt(disc)
        return [(-c1 + s) / (2 * c2), (-c1 - s) / (2 * c2)]
    if abs(c1) > 1e-12 * scale:
        return [-c0 / c1]
    return []


def dos_select(
    values: np.ndarray, tokens: np.ndarray, budget: float, mu_hat: float, sigma_hat: float,
    w_mu: float | None = None, w_sigma: float | None = None,
) -> Selection:  # fmt: skip
    """Greedy DOS over a pool of per-sample `values` (perplexities) with `tokens` per sample (see module doc).

    Default weights are scale-free: `w_mu = 1/mu_hat^2`, `w_sigma = 1/sigma_hat^4`.
    """
    values, tokens = np.asarray(values, dtype=float), np.asarray(tokens, dtype=float)
    _check(values, tokens, budget, mu_hat, sigma_hat)
    wm, ws = _weights(mu_hat, sigma_hat, w_mu, w_sigma)
    var_hat = sigma_hat**2
    order = np.argsort(values, kind="stable")
    xs = values[order].tolist()
    tk = tokens[order].tolist()
    n = len(xs)
    # pointer arrays in positions shifted by one: 0 and n+1 are sentinels ("none left/right")
    nxt = list(range(n + 2))
    prv = list(range(n + 2))

    def find(ptr: list[int], i: int) -> int:
        root = i
        while ptr[root] != root:
            root = ptr[root]
        while ptr[i] != root:
            ptr[i], i = root, ptr[i]
        return root

    chosen: list[int] = []
    m, s1, s2, used = 0, 0.0, 0.0, 0.0
    while used < budget and len(chosen) < n:
        a = 1.0 / (m + 1)
        # dJ/dx * (m+1)/2 = w_mu (mu' - mu_hat) + 2 w_sigma (var' - var_hat)(x - mu')
        q2, q1, q0 = a - a * a, -2 * a * a * s1, a * s2 - a * a * s1 * s1 - var_hat
        l1, l0 = 1 - a, -a * s1
        c3 = 2 * ws * q2 * l1
        c2 = 2 * ws * (q2 * l0 + q1 * l1)
        c1 = 2 * ws * (q1 * l0 + q0 * l1) + wm * a
        c0 = 2 * ws * q0 * l0 + wm * (a * s1 - mu_hat)
        cand = {find(nxt, 1), find(prv, n)}
        for root in _real_roots(c3, c2, c1, c0):
            p = bisect.bisect_left(xs, root) + 1  # first position with x >= root (shifted)
            cand.add(find(nxt, min(p, n + 1)))
            cand.add(find(prv, p - 1))
        best, best_j = -1, math.inf
        for p in cand:
            if 1 <= p <= n:
                x = xs[p - 1]
                j = _objective(m + 1, s1 + x, s2 + x * x, mu_hat, var_hat, wm, ws)
                if j < best_j or (j == best_j and p < best):
                    best, best_j = p, j
        x = xs[best - 1]
        m, s1, s2, used = m + 1, s1 + x, s2 + x * x, used + tk[best - 1]
        chosen.append(best - 1)
        nxt[best], prv[best] = best + 1, best - 1
    idx = order[np.asarray(chosen, dtype=int)]
    mu = s1 / m
    return Selection(idx, used, mu, math.sqrt(max(s2 / m - mu * mu, 0.0)),
                     _objective(m, s1, s2, mu_hat, var_hat, wm, ws), used >= budget)  # fmt: skip


def dos_select_naive(
    values: np.ndarray, tokens: np.ndarray, budget: float, mu_hat: float, sigma_hat: float,
    w_mu: float | None = None, w_sigma: float | None = None, max_steps: int | None = None,
) -> Selection:  # fmt: skip
    """Reference greedy: re-evaluates J for every remaining candidate at every step (O(n) per step)."""
    values, tokens = np.asarray(values, dtype=float), np.asarray(tokens, dtype=float)
    _check(values, tokens, budget, mu_hat, sigma_hat)
    wm, ws = _weights(mu_hat, sigma_hat, w_mu, w_sigma)
    var_hat = sigma_hat**2
    avail = np.ones(values.size, dtype=bool)
    chosen: list[int] = []
    m, s1, s2, used = 0, 0.0, 0.0, 0.0
    while used < budget and len(chosen) < values.size and (max_steps is None or len(chosen) < max_steps):
        mu = (s1 + values) / (m + 1)
        var = (s2 + values**2) / (m + 1) - mu**2
        j = wm * (mu - mu_hat) ** 2 + ws * (var - var_hat) ** 2
        j[~avail] = np.inf
        i = int(np.argmin(j))
        avail[i] = False
        chosen.append(i)
        m, s1, s2, used = m + 1, s1 + values[i], s2 + values[i] ** 2, used + tokens[i]
    mu = s1 / m
    return Selection(np.asarray(chosen), used, mu, math.sqrt(max(s2 / m - mu * mu, 0.0)),
                     _objective(m, s1, s2, mu_hat, var_hat, wm, ws), used >= budget)  # fmt: skip

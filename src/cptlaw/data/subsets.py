"""Domain subsets for CPT: perplexity regimes (quantile windows of the landscape), explicit id lists, random.

The landscape of a domain is the per-sample perplexity of its train split under a frozen base model
(`data/scores/<domain>/<base>.parquet`: `id, nll, ppl, tokens`, in train-split order). A regime is a window
`[q_lo, q_hi]` of perplexity *quantiles*: sample i with rank k (0-based, ascending ppl) of n has quantile
`(k + 0.5) / n` and is in the window when `q_lo <= q <= q_hi`.

Regime names (one string, so a sweep lists regimes without duplicates):
- `random`           — the whole domain, `[0, 1]` (width 1.0).
- `c<C>w<W>`         — window centre C and width W in percent, e.g. `c10w20`; the window keeps its width and
  is shifted inside `[0, 1]` (`c10w50` → `[0, .5]`), so μ and σ vary independently over a centre × width
  grid (quantile windows alone barely vary σ, so the law's μ-σ interaction is not identified).
- `q<LO>-<HI>`       — explicit window in percent, e.g. `q00-20`.
- `ids:<path>`       — the samples whose ids are listed in a file (`.txt` one per line, `.json` list or
  `{"ids": [...]}`, `.parquet`/`.csv` with an `id` column), e.g. a DOS selection from `data/selected/`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cptlaw.data.landscape import PplStats, ppl_stats  # noqa: F401 - the statistics of a subset, re-exported
from cptlaw.errors import SubsetError, first_line

SCORE_COLUMNS = ("id", "nll", "ppl", "tokens")


@dataclass(frozen=True)
class Regime:
    """A parsed regime: a quantile window, or an id file (`ids_path`, with the window left at [0, 1])."""

    name: str
    q_lo: float = 0.0
    q_hi: float = 1.0
    ids_path: str | None = None

    @property
    def is_random(self) -> bool:
        return self.ids_path is None and self.q_lo <= 0.0 and self.q_hi >= 1.0


_CW = re.compile(r"^c(\d{1,3})w(\d{1,3})$")
_Q = re.compile(r"^q(\d{1,3})-(\d{1,3})$")


def window(centre: float, width: float) -> tuple[float, float]:
    """`[q_lo, q_hi]` of width `width` centred at `centre`, shifted to lie inside [0, 1]."""
    if not 0 < width <= 1 or not 0 <= centre <= 1:
        raise SubsetError(f"regime window needs 0 <= centre <= 1 and 0 < width <= 1, got {centre}, {width}")
    lo = min(max(centre - width / 2, 0.0), 1.0 - width)
    return round(lo, 6), round(lo + width, 6)


def parse_regime(spec: str, root: str | Path | None = None) -> Regime:
    """Parse a regime name (see the module docstring); one-line `SubsetError` for anything else. A relative
    `ids:<path>` is taken from the project `root` when given (select writes it so: the name, which enters the
    runs' config hashes, stays the same when the project moves)."""
    spec = str(spec).strip()
    if spec == "random":
        return Regime("random")
    if spec.startswith("ids:"):
        path = spec[4:]
        if not path:
            raise SubsetError("`cpt.regime` ids:<path> needs a path, got 'ids:'")
        return Regime(
            spec, ids_path=str(Path(root) / path) if root and not Path(path).is_absolute() else path
        )
    if m := _CW.match(spec):
        lo, hi = window(int(m[1]) / 100, int(m[2]) / 100)
        return Regime("random" if (lo, hi) == (0.0, 1.0) else spec, lo, hi)
    if m := _Q.match(spec):
        lo, hi = int(m[1]) / 100, int(m[2]) / 100
        if not 0 <= lo < hi <= 1:
            raise SubsetError(f"`cpt.regime` {spec}: need 0 <= lo < hi <= 100")
        return Regime("random" if (lo, hi) == (0.0, 1.0) else spec, lo, hi)
    raise SubsetError(
        f"unknown `cpt.regime` '{spec}': use random, c<centre%>w<width%> (e.g. c50w20), q<lo%>-<hi%> "
        f"(e.g. q00-20) or ids:<path>"
    )


def regime_grid(centres: Iterable[float], widths: Iterable[float]) -> list[str]:
    """Regime names of a centre × width grid, without duplicate windows (every width-1.0 cell is `random`)."""
    names: dict[tuple[float, float], str] = {}
    for w in widths:
        for c in centres:
            lo, hi = window(float(c), float(w))
            names.setdefault(
                (lo, hi), "random" if (lo, hi) == (0.0, 1.0) else f"c{round(c * 100)}w{round(w * 100)}"
            )
    return list(names.values())


def read_scores(path: str | Path) -> pd.DataFrame:
    """A score file (`id, nll, ppl, tokens`); one-line `SubsetError` if missing or malformed."""
    path = Path(path)
    if not path.is_file():
        raise SubsetError(
            f"perplexity scores {path} do not exist (run the score stage for this domain and base)"
        )
    try:
        df = pd.read_parquet(path)
    except (OSError, ValueError) as exc:  # truncated or not parquet (pyarrow's ArrowInvalid is a ValueError)
        raise SubsetError(
            f"corrupt perplexity scores {path} ({first_line(exc)}): re-run the score stage"
        ) from None
    missing = [c for c in SCORE_COLUMNS if c not in df.columns]
    if missing:
        raise SubsetError(f"perplexity scores {path} lack columns {missing}")
    if not np.all(np.isfinite(df["ppl"].to_numpy(float))) or (df["ppl"] <= 0).any():
        raise SubsetError(f"perplexity scores {path} hold non-finite or non-positive ppl values")
    return df.reset_index(drop=True)


def read_ids(path: str | Path) -> list[str]:
    """Sample ids from a `.txt` / `.json` / `.parquet` / `.csv` file."""
    path = Path(path)
    if not path.is_file():
        raise SubsetError(f"id file {path} does not exist")
    if path.suffix == ".json":
        obj = json.loads(path.read_text())
        ids = obj["ids"] if isinstance(obj, dict) else obj
    elif path.suffix in (".parquet", ".csv"):
        df = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path, dtype={"id": str})
        if "id" not in df.columns:
            raise SubsetError(f"id file {path} has no `id` column")
        ids = df["id"].tolist()
    else:
        ids = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    return [str(i) for i in ids]


def quantiles(ppl: np.ndarray) -> np.ndarray:
    """Quantile `(rank + 0.5) / n` of each sample's ppl (ties broken by position, stable)."""
    ranks = np.empty(len(ppl), dtype=np.int64)
    ranks[np.argsort(ppl, kind="stable")] = np.arange(len(ppl))
    return (ranks + 0.5) / max(len(ppl), 1)


def select(regime: Regime, train_ids: pd.Series, scores: pd.DataFrame | None) -> np.ndarray:
    """Positions (into the train split) of the samples of `regime`."""
    n = len(train_ids)
    if regime.ids_path is not None:
        wanted = read_ids(regime.ids_path)
        pos = pd.Index(train_ids.astype(str)).get_indexer(wanted)
        unknown = int((pos < 0).sum())
        if unknown:
            raise SubsetError(
                f"id file {regime.ids_path}: {unknown} of {len(wanted)} ids are not in the train split"
            )
        return np.unique(pos)
    if regime.is_random:
        return np.arange(n)
    if scores is None:
        raise SubsetError(f"regime {regime.name} needs perplexity scores")
    q = quantiles(scores["ppl"].to_numpy(float))
    pos = np.flatnonzero((q >= regime.q_lo) & (q <= regime.q_hi))
    if len(pos) == 0:
        raise SubsetError(f"regime {regime.name} selects no samples from {n}")
    return pos


def check_aligned(scores: pd.DataFrame, train_ids: pd.Series, path: str | Path) -> None:
    """Scores must be in train-split order (the contract of the score stage)."""
    if (
        len(scores) != len(train_ids)
        or not (scores["id"].astype(str).to_numpy() == train_ids.astype(str).to_numpy()).all()
    ):
        raise SubsetError(
            f"perplexity scores {path} are not aligned with the train split (re-run the score stage)"
        )

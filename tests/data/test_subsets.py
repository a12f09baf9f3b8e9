"""Perplexity regimes: names, windows, the centre x width grid, selection and landscape statistics."""

import json

import numpy as np
import pandas as pd
import pytest

from cptlaw.data.subsets import (
    SubsetError,
    parse_regime,
    ppl_stats,
    quantiles,
    read_scores,
    regime_grid,
    select,
    window,
)


def test_window_keeps_width_inside_unit_interval():
    assert window(0.5, 0.2) == (0.4, 0.6)
    assert window(0.1, 0.5) == (0.0, 0.5)
    assert window(0.9, 0.5) == (0.5, 1.0)
    assert window(0.3, 1.0) == (0.0, 1.0)


def test_parse_regime_names():
    assert parse_regime("random").is_random
    r = parse_regime("c50w20")
    assert (r.q_lo, r.q_hi) == (0.4, 0.6) and not r.is_random
    assert (parse_regime("q00-20").q_lo, parse_regime("q00-20").q_hi) == (0.0, 0.2)
    assert parse_regime("c30w100").name == "random"
    assert parse_regime("ids:/x/y.txt").ids_path == "/x/y.txt"
    for bad in ("hot", "c50", "q30-10", "c50w0", "ids:"):
        with pytest.raises(SubsetError, match="regime"):
            parse_regime(bad)


def test_regime_grid_is_two_dimensional_without_duplicates():
    grid = regime_grid([0.1, 0.3, 0.5, 0.7, 0.9], [0.2, 0.5, 1.0])
    assert grid.count("random") == 1
    assert len(grid) == len(set(grid)) == 5 + 5 + 1
    windows = {(parse_regime(g).q_lo, parse_regime(g).q_hi) for g in grid}
    assert len(windows) == len(grid)


def test_select_window_and_stats():
    ppl = np.arange(1.0, 101.0)
    ids = pd.Series([f"d{i}" for i in range(100)])
    scores = pd.DataFrame({"id": ids, "nll": 0.0, "ppl": ppl[::-1], "tokens": 10})
    pos = select(parse_regime("q00-20"), ids, scores)
    assert len(pos) == 20 and set(scores["ppl"][pos]) == set(range(1, 21))
    assert len(select(parse_regime("random"), ids, None)) == 100
    s = ppl_stats(scores["ppl"][pos].to_numpy())
    assert s.ppl_mean == pytest.approx(10.5) and s.log_ppl_mean == pytest.approx(
        np.log(np.arange(1, 21)).mean()
    )
    assert np.isnan(ppl_stats(np.zeros(0)).ppl_mean)
    q = quantiles(np.array([3.0, 1.0, 2.0]))
    assert list(q) == pytest.approx([5 / 6, 1 / 6, 0.5])


def test_select_ids_file(tmp_path):
    ids = pd.Series(["a", "b", "c", "d"])
    (tmp_path / "sel.json").write_text(json.dumps({"ids": ["d", "b"]}))
    assert list(select(parse_regime(f"ids:{tmp_path}/sel.json"), ids, None)) == [1, 3]
    assert list(select(parse_regime("ids:sel.json", tmp_path), ids, None)) == [1, 3]  # from the project root
    assert parse_regime(f"ids:{tmp_path}/sel.json", "/elsewhere").ids_path == f"{tmp_path}/sel.json"
    (tmp_path / "bad.txt").write_text("a\nzzz\n")
    with pytest.raises(SubsetError, match="not in the train split"):
        select(parse_regime(f"ids:{tmp_path}/bad.txt"), ids, None)


def test_read_scores_errors(tmp_path):
    with pytest.raises(SubsetError, match="do not exist"):
        read_scores(tmp_path / "none.parquet")
    pd.DataFrame({"id": ["a"], "ppl": [1.0]}).to_parquet(tmp_path / "s.parquet")
    with pytest.raises(SubsetError, match="lack columns"):
        read_scores(tmp_path / "s.parquet")

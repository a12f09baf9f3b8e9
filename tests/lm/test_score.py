"""Scoring: rolling windows against hand-written lists, batched == naive reference, resumable shards,
the score stage end to end, and every bad-input error."""

import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from hydra import compose, initialize_config_dir

from cptlaw.config import CONF_DIR
from cptlaw.data.landscape import aggregate, per_sample_ppl, ppl_stats
from cptlaw.data.token_store import open_store
from cptlaw.errors import StoreError
from cptlaw.lm.model import ModelError, build_model, load_causal_lm
from cptlaw.lm.score import (
    prefix_token_id,
    rolling_windows,
    score_groups,
    score_naive,
    score_token_ids,
    window_settings,
)

SIZE = {"d_model": 32, "n_layers": 2, "n_heads": 4, "d_ff": 64}


def test_rolling_windows_hand_written():
    assert rolling_windows(0, 4, 2) == []
    assert rolling_windows(3, 4, 2) == [(0, 3, 3)]
    assert rolling_windows(4, 4, 2) == [(0, 4, 4)]
    assert rolling_windows(10, 4, 2) == [(0, 4, 4), (2, 6, 2), (4, 8, 2), (6, 10, 2)]
    assert rolling_windows(9, 4, 2) == [(0, 4, 4), (2, 6, 2), (4, 8, 2), (5, 9, 1)]
    assert rolling_windows(9, 4, 4) == [(0, 4, 4), (4, 8, 4), (5, 9, 1)]
    for n, w, s in [(1, 1, 1), (50, 8, 3), (17, 16, 16), (100, 7, 1)]:
        wins = rolling_windows(n, w, s)
        assert sum(m for _, _, m in wins) == n  # every target scored once
        assert all(b - a <= w for a, b, _ in wins)
    with pytest.raises(ValueError):
        rolling_windows(5, 4, 5)


@pytest.fixture(scope="module")
def model_and_samples():
    torch.manual_seed(0)
    model = build_model(SIZE, vocab_size=64, seq_len=16, seed=3).eval()
    rng = np.random.default_rng(0)
    samples = [rng.integers(1, 64, size=n) for n in [1, 5, 16, 3, 40, 17, 9, 33, 2, 70]]
    return model, samples


@pytest.mark.parametrize("max_length,stride", [(16, 16), (16, 8), (8, 3)])
def test_batched_equals_naive_reference(model_and_samples, max_length, stride):
    model, samples = model_and_samples
    ref = score_naive(model, samples, prefix_id=0, max_length=max_length, stride=stride)
    for batch_tokens in (16, 64, 4096):  # batch size 1 .. everything in one batch
        nll, tokens = score_token_ids(model, samples, prefix_id=0, max_length=max_length, stride=stride,
                                      batch_tokens=batch_tokens)  # fmt: skip
        np.testing.assert_allclose(nll / tokens, ref / tokens, rtol=0, atol=1e-5)
        assert tokens.tolist() == [len(x) for x in samples]


def test_chunked_output_projection_equals_reference(model_and_samples, monkeypatch):
    """Chunks of 16 scored positions (and a ragged last chunk) give the unchunked NLL."""
    from cptlaw.lm import score

    model, samples = model_and_samples
    assert score.head_chunk_rows(64, torch.device("cpu")) > 200  # unchunked at this vocab by default
    monkeypatch.setattr(score, "CPU_LOGITS_CHUNK_BYTES", 1)
    assert score.head_chunk_rows(64, torch.device("cpu")) == 16
    assert score.head_chunk_rows(128_256, torch.device("cuda")) == 2092  # 1 GiB of logits on a GPU
    ref = score_naive(model, samples, prefix_id=0, max_length=16, stride=8)
    nll, tokens = score_token_ids(model, samples, prefix_id=0, max_length=16, stride=8, batch_tokens=4096)
    np.testing.assert_allclose(nll / tokens, ref / tokens, rtol=0, atol=1e-5)


def test_precision_is_lightnings(model_and_samples):
    """`precision="bf16-mixed"` really runs in bfloat16 (the NLL moves) and stays close to float32."""
    model, samples = model_and_samples
    kw = dict(prefix_id=0, max_length=16, stride=8, batch_tokens=4096)
    ref, tokens = score_token_ids(model, samples, **kw)
    bf16, _ = score_token_ids(model, samples, precision="bf16-mixed", **kw)
    diff = np.abs(bf16 - ref) / tokens
    assert diff.max() > 1e-5 and diff.max() < 0.05
    assert next(model.parameters()).dtype == torch.float32  # the caller's model is left as it was


def test_joined_groups_keep_their_own_batches(model_and_samples):
    """Groups scored in one launch are batched as each would be alone (the same matmuls, the same round-off)."""
    from cptlaw.lm.score import join_windows, make_windows, window_batches

    _, samples = model_and_samples
    parts = (
        samples[:4] + [np.zeros(0, dtype=np.int64)],
        samples[4:],
        samples[2:9],
    )  # an empty sample ends one
    groups, sizes = [make_windows(g, 0, 16, 8) for g in parts], [len(g) for g in parts]
    joined, batches = join_windows(groups, sizes, batch_tokens=64)
    row_at, sample_at = np.cumsum([0] + [len(g.ids) for g in groups[:-1]]), np.cumsum([0, *sizes[:-1]])
    own = [b + a for g, a in zip(groups, row_at, strict=True) for b in window_batches(g, 64)]
    assert [b.tolist() for b in batches] == [b.tolist() for b in own]
    offsets = zip(groups, row_at, sample_at, strict=True)
    assert [(joined.sample[r], joined.ids[r].tolist()) for r in range(len(joined.ids))] == [
        (i + s, w.tolist()) for g, _, s in offsets for i, w in zip(g.sample, g.ids, strict=True)
    ]


@pytest.mark.slow
def test_two_spawned_processes_give_the_single_process_result(model_and_samples):
    """`devices=2` on CPU: Lightning's ddp_spawn deals the batches out; the per-sample NLL is unchanged."""
    model, samples = model_and_samples
    kw = dict(prefix_id=0, max_length=16, stride=8, batch_tokens=64)  # many batches, uneven between ranks
    one, tokens = score_token_ids(model, samples, **kw)
    two, tokens2 = score_token_ids(model, samples, devices=2, **kw)
    assert tokens2.tolist() == tokens.tolist()
    np.testing.assert_allclose(two, one, rtol=0, atol=1e-9)
    # groups in one launch (one spawn) score as each does alone, an empty sample at a group's end included
    groups = [samples[:7] + [np.zeros(0, dtype=np.int64)], samples[7:]]
    joined = score_groups(model, groups, devices=2, **kw)
    for (nll, n), g in zip(joined, groups, strict=True):
        alone, n_alone = score_token_ids(model, g, devices=2, **kw)
        assert n.tolist() == n_alone.tolist() and nll.tolist() == alone.tolist()


def test_several_devices_need_a_spawning_strategy():
    from cptlaw.lm.score import score_strategy

    assert score_strategy(1, "auto") == "auto" and score_strategy(2, "auto") == "ddp_spawn"
    with pytest.raises(ModelError, match="needs a spawning strategy.*score.trainer.strategy=ddp_spawn"):
        score_strategy(2, "ddp")


def test_bfloat16_weights_score_close_to_float32(project, tmp_path):
    """`load_causal_lm(dtype="bfloat16")` really holds bfloat16 weights; scored with `bf16-true` the NLL stays
    close to the float32 one."""
    a = project / "models" / "base" / "a"
    m32, m16 = load_causal_lm(a), load_causal_lm(a, "bfloat16")
    assert {p.dtype for p in m16.parameters()} == {torch.bfloat16}
    rng = np.random.default_rng(1)
    samples = [rng.integers(1, 64, size=n) for n in (5, 30, 17)]
    kw = dict(prefix_id=0, max_length=16, stride=8)
    ref, tokens = score_token_ids(m32, samples, **kw)
    got, _ = score_token_ids(m16, samples, precision="bf16-true", **kw)
    assert np.abs(got - ref).max() / tokens.min() < 0.05
    with pytest.raises(ModelError, match="model.dtype must be one of"):
        load_causal_lm(a, "int4")


def test_single_window_matches_hf_loss(model_and_samples):
    model, samples = model_and_samples
    x = samples[2]  # 16 tokens: one window of 16 with the prefix
    nll, tokens = score_token_ids(model, [x], prefix_id=0, max_length=16, stride=16)
    t = torch.as_tensor(np.concatenate([[0], x]))
    with torch.no_grad():
        logits = model(input_ids=t[:-1].unsqueeze(0)).logits[0]
    ref = torch.nn.functional.cross_entropy(logits, t[1:], reduction="sum")
    assert nll[0] == pytest.approx(float(ref), abs=1e-4)


def test_aggregate_keeps_sums_until_the_end():
    stats = aggregate(np.array([2.0, 6.0, 0.0]), np.array([1, 2, 0]))
    assert stats["n_empty"] == 1 and stats["n_tokens"] == 3
    assert stats["log_ppl_mean"] == pytest.approx((2 + 3) / 2)
    assert stats["ppl_mean"] == pytest.approx((np.e**2 + np.e**3) / 2)
    assert stats["corpus_log_ppl"] == pytest.approx(8 / 3)


def test_landscape_statistics_by_hand():
    """Per-sample log-ppl 1, 2, 4 (nll / tokens) and an empty sample: every statistic written out by hand."""
    nll, tokens = np.array([2.0, 2.0, 12.0, 0.0]), np.array([2, 1, 3, 0])
    ppl = per_sample_ppl(nll, tokens)
    np.testing.assert_allclose(ppl[:3], [np.e, np.e**2, np.e**4])
    assert np.isnan(ppl[3])
    stats = aggregate(nll, tokens, quantiles=(0.5,))
    assert (stats["n_samples"], stats["n_empty"], stats["n_tokens"]) == (4, 1, 6)
    assert stats["corpus_log_ppl"] == pytest.approx(16 / 6)
    assert stats["corpus_ppl"] == pytest.approx(np.exp(16 / 6))
    assert stats["log_ppl_mean"] == pytest.approx(7 / 3)
    assert stats["log_ppl_std"] == pytest.approx(
        np.sqrt(((1 - 7 / 3) ** 2 + (2 - 7 / 3) ** 2 + (4 - 7 / 3) ** 2) / 3)
    )
    mean = (np.e + np.e**2 + np.e**4) / 3
    assert stats["ppl_mean"] == pytest.approx(mean)
    assert stats["ppl_std"] == pytest.approx(
        np.sqrt(((np.e - mean) ** 2 + (np.e**2 - mean) ** 2 + (np.e**4 - mean) ** 2) / 3)
    )
    assert stats["log_ppl_q50"] == pytest.approx(2.0) and stats["ppl_q50"] == pytest.approx(np.e**2)
    # the subset statistics of a CPT run (from a score file's ppl column) are the same numbers
    subset = ppl_stats(ppl[:3])
    assert subset.n_samples == 3
    for key, value in subset.as_metrics().items():
        assert value == pytest.approx(stats[key], rel=1e-12), key
    assert np.isnan(aggregate(np.zeros(1), np.zeros(1, dtype=int))["ppl_mean"])


def test_ppl_statistics_have_one_home():
    from cptlaw.data import landscape, subsets

    assert subsets.ppl_stats is landscape.ppl_stats and subsets.PplStats is landscape.PplStats


def test_prefix_token_and_window_rules():
    class Tok:
        eos_token_id, bos_token_id = 7, 3

    class NoBos:
        eos_token_id, bos_token_id = 7, None

    assert prefix_token_id(Tok(), pretrained_here=True) == 7  # our models saw EOS as document start
    assert prefix_token_id(Tok(), pretrained_here=False) == 3  # a foreign HF model: BOS
    assert prefix_token_id(NoBos(), pretrained_here=False) == 7  # ... falling back to EOS
    assert window_settings(None, None, 64) == (64, 32)
    assert window_settings(16, 16, 64) == (16, 16)
    assert window_settings(1, None, 64) == (1, 1)
    with pytest.raises(ModelError, match=r"^score.stride must be in \[1, 16\] \(score.max_length\), got 17"):
        window_settings(16, 17, 64)


# --- pool scoring and the stage ---------------------------------------------------------------------------


def compose_cfg(root, overrides=()):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=[
            "profile=smoke", f"paths.root={root}", "domains=[medical, code]", "score.base=a",
            "score.max_length=16", "score.stride=8", "score.batch_tokens=256", "score.shard_size=25",
            "score.progress_bar=false", "score.max_samples=null", *overrides,
        ])  # fmt: skip


@pytest.fixture
def project(lm_project, tmp_path):
    """Fixture corpora + tokenizer + an untrained base model `a` saved like the pretrain stage saves it."""
    from cptlaw.lm.base import load_tokenizer, write_base_model_info

    root = tmp_path / "proj"
    shutil.copytree(lm_project, root)
    tok = load_tokenizer(root / "data" / "tokenizer")
    model = build_model(SIZE, vocab_size=len(tok), seq_len=16, seed=0)
    out = root / "models" / "base" / "a"
    model.save_pretrained(out)
    tok.save_pretrained(out)
    write_base_model_info(out, {"size": "a", "final_lr": 1e-4})
    return root


def test_score_stage_end_to_end(project, mlflow_uri):
    import json

    from cptlaw import tracking
    from cptlaw.stages.score import run

    summary = run(compose_cfg(project))
    for domain in ("medical", "code"):
        out = pd.read_parquet(project / "data" / "scores" / domain / "a.parquet")
        pool = pd.read_parquet(project / "data" / "corpora" / domain / "train.parquet")
        assert out["id"].tolist() == pool["id"].tolist()
        assert list(out.columns) == ["id", "nll", "ppl", "tokens"]
        np.testing.assert_allclose(out["ppl"], np.exp(out["nll"] / out["tokens"]))
        assert not (project / "data" / "scores" / domain / ".a.shards").exists()
    metrics = json.loads((project / "reports" / "metrics" / "score.json").read_text())
    assert metrics == json.loads(json.dumps(summary))
    assert {"ppl_mean", "ppl_std", "log_ppl_q50"} <= set(metrics["domains"]["medical"])
    assert (project / "reports" / "plots" / "score" / "log_ppl_hist.png").is_file()
    assert (project / "reports" / "plots" / "score" / "log_ppl_hist_code.csv").is_file()
    tracking.configure(mlflow_uri)
    runs = tracking.runs_frame(["score"])
    assert len(runs) == 3 and runs["metrics.ppl_mean"].notna().sum() == 2
    # the statistics of the score file are those of the summary
    medical = pd.read_parquet(project / "data" / "scores" / "medical" / "a.parquet")
    assert metrics["domains"]["medical"]["ppl_mean"] == pytest.approx(medical["ppl"].mean(), rel=1e-12)


def test_score_files_carry_provenance(project, mlflow_uri):
    import json

    from cptlaw import tracking
    from cptlaw.config import to_dict
    from cptlaw.data.version import content_version
    from cptlaw.provenance import git_revision, relative_paths
    from cptlaw.stages.score import run

    cfg = compose_cfg(project, ["domains=[medical]"])
    run(cfg)
    record = json.loads((project / "data" / "scores" / "medical" / "a.provenance.json").read_text())
    tracking.configure(mlflow_uri)
    runs = tracking.runs_frame(["score"])
    scored = runs[runs["params.domain"] == "medical"].iloc[0]
    assert record["config_hash"] == scored["tags.cptlaw.config_hash"]
    assert record["run_id"] == scored["run_id"] and record["base_model"] == "a"
    split = project / "data" / "corpora" / "medical" / "train.parquet"
    assert record["data_version"] == content_version([split], project)
    model_files = sorted(p for p in (project / "models" / "base" / "a").iterdir() if p.is_file())
    assert record["base_model_version"] == content_version(model_files, project)
    assert record["git_rev"] == git_revision() and record["config"] == json.loads(
        json.dumps(relative_paths(to_dict(cfg), str(project)))
    )
    assert str(project) not in json.dumps(record)  # the project's own paths are recorded relative to it
    assert sorted(p.name for p in (project / "data" / "scores" / "medical").iterdir()) == [
        "a.parquet",
        "a.provenance.json",
    ]


@pytest.fixture
def medical_pool(project):
    """The fixture base model, its tokenizer, medical's pool (5 shards of 25) and `score_pool`'s settings."""
    from cptlaw.lm import pool
    from cptlaw.lm.base import load_tokenizer

    tok = load_tokenizer(project / "models" / "base" / "a")
    model = load_causal_lm(project / "models" / "base" / "a")
    store = open_store(project / "data" / "tokens" / "medical" / "train")
    kw = dict(model_dir=project / "models" / "base" / "a", prefix_id=tok.eos_token_id, max_length=16, stride=8,
              batch_tokens=256, shard_size=25)  # fmt: skip
    return model, tok, pool.Pool(store.ids(), store), kw


def test_interrupted_then_resumed_is_identical(project, medical_pool, monkeypatch):
    from cptlaw.lm import pool

    model, tok, frame, kw = medical_pool
    pool.score_pool(model, tok, frame, project / "full.parquet", **kw)

    real, calls = pool.score_shards, []

    def crash_on_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt("simulated crash")
        return real(*args, **kwargs)

    monkeypatch.setattr(pool, "score_shards", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        pool.score_pool(model, tok, frame, project / "resumed.parquet", **kw)
    assert len(list((project / ".resumed.shards").glob("*.parquet"))) == 2
    monkeypatch.setattr(pool, "score_shards", real)
    scored = []
    monkeypatch.setattr(pool, "score_shards", lambda *a, **k: scored.append(1) or real(*a, **k))
    pool.score_pool(model, tok, frame, project / "resumed.parquet", **kw)
    assert len(scored) == 3  # 5 shards of 25, 2 kept
    assert (project / "full.parquet").read_bytes() == (project / "resumed.parquet").read_bytes()


def test_shards_launched_together_score_as_alone_and_a_crash_keeps_finished_launches(
    project, medical_pool, monkeypatch
):
    from cptlaw.lm import pool

    model, tok, frame, kw = medical_pool
    pool.score_pool(model, tok, frame, project / "alone.parquet", **kw)
    real, spans = pool.score_shards, []

    def crash_on_second_launch(model, frame, launch, settings):
        spans.append(launch)
        if len(spans) == 2:
            raise KeyboardInterrupt("simulated crash")
        return real(model, frame, launch, settings)

    monkeypatch.setattr(pool, "score_shards", crash_on_second_launch)
    with pytest.raises(KeyboardInterrupt):
        pool.score_pool(model, tok, frame, project / "together.parquet", launch_shards=3, **kw)
    assert [len(s) for s in spans] == [3, 2]  # 5 shards of 25: launches of 3 and 2
    assert len(list((project / ".together.shards").glob("*.parquet"))) == 3  # the first launch is kept
    monkeypatch.setattr(pool, "score_shards", real)
    pool.score_pool(model, tok, frame, project / "together.parquet", launch_shards=3, **kw)
    assert (project / "alone.parquet").read_bytes() == (project / "together.parquet").read_bytes()


# --- bad input: one-line errors before any work ----------------------------------------------------------


def test_bad_inputs(project, mlflow_uri):
    from cptlaw.stages.score import run

    with pytest.raises(ModelError, match="does not exist"):
        run(compose_cfg(project, ["score.base=nope"]))
    bert = project / "models" / "base" / "vit"
    bert.mkdir()
    (bert / "config.json").write_text('{"model_type": "vit"}')
    with pytest.raises(ModelError, match="not a causal LM"):
        run(compose_cfg(project, ["score.base=vit"]))
    with pytest.raises(ModelError, match="not a causal LM"):
        run(compose_cfg(project, ["model=hf_local", f"model.name_or_path={bert}"]))
    small = build_model(SIZE, vocab_size=50, seq_len=16, seed=0)
    small.save_pretrained(project / "models" / "base" / "small")
    with pytest.raises(ModelError, match="do not match"):
        run(compose_cfg(project, ["score.base=small"]))
    pd.DataFrame({"id": [], "source": [], "text": []}).astype(str).to_parquet(
        project / "data" / "corpora" / "code" / "train.parquet"
    )
    with pytest.raises(
        StoreError, match=r"^token store .*code/train is out of date with its corpus .*tokenize stage"
    ):
        run(compose_cfg(project))
    from cptlaw.data.token_store import tokenize_corpora
    from cptlaw.lm.base import load_tokenizer

    tokenize_corpora(project / "data" / "corpora", project / "data" / "tokens", load_tokenizer(project / "data" / "tokenizer"),
                     ["code"], ["train"], shard_docs=100, workers=1, progress=False)  # fmt: skip
    with pytest.raises(ModelError, match="empty"):
        run(compose_cfg(project))
    with pytest.raises(ModelError, match=r"^score.trainer .* cannot run on this machine.*accelerator=cpu"):
        run(compose_cfg(project, ["score.trainer.accelerator=cuda"]))
    with pytest.raises(ModelError, match="score.trainer.devices must be a whole number >= 1"):
        run(compose_cfg(project, ["score.trainer.devices=auto"]))
    with pytest.raises(ModelError, match="needs a spawning strategy"):
        run(compose_cfg(project, ["score.trainer.devices=2", "score.trainer.strategy=ddp"]))
    assert not (project / "data" / "scores").exists()  # nothing was scored before the error


def test_hf_local_base(project, mlflow_uri):
    from cptlaw.stages.score import run

    local = project / "elsewhere" / "my-lm"
    shutil.copytree(project / "models" / "base" / "a", local)
    (local / "cptlaw.json").unlink()
    summary = run(compose_cfg(project, ["model=hf_local", f"model.name_or_path={local}", "model.label=mine"]))
    assert summary["base_model"] == "mine"
    assert (project / "data" / "scores" / "medical" / "mine.parquet").is_file()


def test_stage_exits_2_with_one_line(project, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "cptlaw.stages.score", "profile=smoke", f"paths.root={project}",
         "score.base=missing", f"tracking.uri=sqlite:///{tmp_path}/m.db", f"hydra.run.dir={tmp_path}/h"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("score: error: base model dir") and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1

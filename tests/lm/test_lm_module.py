"""cptlaw.lm model/packing/module: N counting, packing shapes, a few training steps lower the loss."""

import lightning as L
import numpy as np
import pytest
import torch

from cptlaw.data.packing import pack
from cptlaw.lm.datamodule import PackedDataset
from cptlaw.lm.model import ModelError, build_model, llama_config, non_embedding_params
from cptlaw.lm.module import CausalLMModule, lr_at, mean_token_loss

SIZE = {"d_model": 32, "n_layers": 2, "n_heads": 4, "d_ff": 64}


def test_non_embedding_params_excludes_embedding_and_head():
    model = build_model(SIZE, vocab_size=100, seq_len=16, seed=0)
    total = sum(p.numel() for p in model.parameters())
    assert non_embedding_params(model) == total - 2 * 100 * 32
    # per layer: 4 d² attention + 3 d·d_ff MLP + 2 d norms; plus the final norm
    assert non_embedding_params(model) == 2 * (4 * 32 * 32 + 3 * 32 * 64 + 2 * 32) + 32
    assert not model.config.tie_word_embeddings


def test_build_model_is_seeded():
    a = build_model(SIZE, 50, 16, seed=1).state_dict()
    b = build_model(SIZE, 50, 16, seed=1).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_bad_size_is_one_line_error():
    with pytest.raises(ModelError, match="divisible"):
        llama_config({"d_model": 30, "n_layers": 1, "n_heads": 4, "d_ff": 8}, 10, 8)
    with pytest.raises(ModelError, match="missing"):
        llama_config({"d_model": 32}, 10, 8)


def test_pack_shapes_and_order():
    arrays = [np.arange(5, dtype=np.int32), np.arange(5, 12, dtype=np.int32)]
    packed = pack(arrays, seq_len=3)
    assert packed.dtype == np.int32 and packed.shape == (3, 4)
    assert packed.ravel().tolist() == list(range(12))
    ds = PackedDataset(packed)
    assert ds[0].dtype == torch.long and ds.n_tokens == 9


def test_lr_schedule():
    kw = dict(lr=1.0, min_lr=0.1, warmup_steps=10, max_steps=100)
    assert lr_at(0, **kw) == pytest.approx(0.1)
    assert lr_at(9, **kw) == pytest.approx(1.0)
    assert lr_at(10, **kw) == pytest.approx(1.0)
    assert lr_at(55, **kw) == pytest.approx(0.55)
    assert lr_at(100, **kw) == pytest.approx(0.1)


def test_few_steps_lower_loss():
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    # a learnable stream: short repeating motifs of a 40-token vocabulary
    motifs = [rng.integers(0, 40, size=8, dtype=np.int32) for _ in range(4)]
    stream = [motifs[i] for i in rng.integers(0, 4, size=200)]
    packed = pack(stream, seq_len=32)
    loader = torch.utils.data.DataLoader(PackedDataset(packed), batch_size=8, shuffle=True)
    val = [torch.from_numpy(packed[:16].astype(np.int64))]
    model = build_model(SIZE, vocab_size=40, seq_len=32, seed=0)
    before = mean_token_loss(model, val)
    module = CausalLMModule(model, lr=3e-3, min_lr=3e-4, warmup_steps=2, max_steps=30, val_names=["fixture"])
    trainer = L.Trainer(
        max_steps=30, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, gradient_clip_val=1.0,
        limit_val_batches=2, val_check_interval=30, check_val_every_n_epoch=None,
    )  # fmt: skip
    val_loader = torch.utils.data.DataLoader(PackedDataset(packed[:16]), batch_size=8)
    trainer.fit(module, loader, val_dataloaders=[val_loader])
    after = mean_token_loss(model, val)
    assert after < before - 0.5
    assert module.tokens_seen == 30 * 8 * 32
    assert "val_loss_fixture" in trainer.callback_metrics
    assert module.final_lr() == pytest.approx(3e-4)

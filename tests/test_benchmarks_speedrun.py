"""The unit conversions of `benchmarks/speedrun.py` (vocabularies are compared per character, not per token)."""

import importlib.util
import math
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "speedrun.py"


@pytest.fixture(scope="module")
def speedrun():
    spec = importlib.util.spec_from_file_location("speedrun", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_per_char_and_per_byte(speedrun):
    # 100 tokens of 3 nats over 250 chars / 300 bytes
    assert speedrun.nats_per_char(3.0, 100, 250) == pytest.approx(1.2)
    assert speedrun.bits_per_byte(3.0, 100, 300) == pytest.approx(1.0 / math.log(2))


def test_a_lower_loss_per_token_is_not_a_lower_loss_per_char(speedrun):
    big = speedrun.nats_per_char(6.0, 100, 375)  # 3.75 chars/token: 1.6 nats/char
    assert speedrun.nats_per_char(4.5, 180, 375) > big  # 2.08 chars/token: lower per token, higher per char
    assert speedrun.nats_per_char(3.0, 180, 375) < big


def test_shapes_and_first_docs(speedrun):
    assert speedrun.parse_shape("96x3") == (96, 3)
    assert speedrun.Run("x", d_model=64).shape == {"d_model": 64, "n_layers": 2, "n_heads": 4, "d_ff": 256}
    assert speedrun.Run("x", d_model=256).shape["n_heads"] == 8
    assert speedrun.first_docs(["ab", "cd", "ef"], 3) == ["ab", "cd"]

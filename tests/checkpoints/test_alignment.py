"""An exported path's layer alignment: saved and loaded beside the weights, applied on
load, fingerprinted for the cache."""

import pytest
import torch
from transformers import LlamaForCausalLM

from _models import small_llama
from hm3.checkpoints.alignment import (
    ALIGNMENT_FILE,
    ALIGNMENT_META,
    alignment_fingerprint,
    apply_alignment,
    load_alignment,
    save_alignment,
)
from hm3.checkpoints.layers import PathLayer, decoder
from hm3.core.errors import HM3Error

HIDDEN = 32


def tiny_llama(layers: int, seed: int) -> LlamaForCausalLM:
    return small_llama(
        seed,
        hidden_size=HIDDEN,
        intermediate_size=64,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        tie_word_embeddings=False,
    )


def alignment(seed: int = 0) -> dict:
    generator = torch.Generator().manual_seed(seed)
    return {
        1: (
            1 + 0.1 * torch.randn(HIDDEN, generator=generator),
            0.1 * torch.randn(HIDDEN, generator=generator),
        )
    }


def test_alignment_round_trips_and_keeps_its_fingerprint(tmp_path):
    fitted = alignment()
    save_alignment(fitted, tmp_path)
    assert (tmp_path / ALIGNMENT_FILE).is_file() and (tmp_path / ALIGNMENT_META).is_file()
    loaded = load_alignment(tmp_path)
    assert sorted(loaded) == [1] and all(torch.equal(a, b) for a, b in zip(loaded[1], fitted[1]))
    assert (
        alignment_fingerprint(loaded)
        == alignment_fingerprint(fitted)
        != alignment_fingerprint(alignment(1))
    )
    assert load_alignment(tmp_path / "elsewhere") == {}


def test_apply_alignment_wraps_the_aligned_layers():
    model = tiny_llama(2, 0)
    tokens = torch.tensor([[1, 5, 9, 2]])
    with torch.no_grad():
        before = model(tokens).logits
    apply_alignment(model, alignment())
    layers = decoder(model).layers
    assert (
        isinstance(layers[1], PathLayer)
        and layers[1].position == 1
        and not isinstance(layers[0], PathLayer)
    )
    with torch.no_grad():
        assert not torch.allclose(model(tokens).logits, before)


def test_apply_alignment_rejects_layers_the_model_lacks():
    with pytest.raises(HM3Error, match="alignment for layer 7"):
        apply_alignment(tiny_llama(2, 0), {7: (torch.ones(32), torch.zeros(32))})


def test_decoder_names_a_model_without_the_llama_layout():
    with pytest.raises(HM3Error, match="not a decoder of the Llama layout"):
        decoder(torch.nn.Linear(2, 2))

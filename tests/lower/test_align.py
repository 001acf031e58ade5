"""Layer alignment: foreign positions, identity start, the fit reduces the loss,
export then reload through hm3 applies the scales."""

import torch

from hm3.checkpoints.alignment import load_alignment
from hm3.checkpoints.causal_lm import load_causal_lm
from hm3.checkpoints.layers import decoder
from hm3.lower.align import _layer_inputs, _statistics, coral_loss, fit_alignment, foreign_positions
from hm3.lower.inference_path import LayerPool, as_path
from hm3.lower.settings import AlignmentSettings

from test_inference_path import logits, tiny_llama

BATCH = {
    "input_ids": torch.tensor([[1, 5, 9, 2, 33, 7, 8, 9], [3, 3, 8, 60, 1, 0, 0, 0]]),
    "attention_mask": torch.tensor([[1] * 8, [1] * 5 + [0] * 3]),
}


def make_pool():
    return LayerPool(
        {"math": tiny_llama(3, 1), "code": tiny_llama(3, 2), "M": tiny_llama(3, 3)}, anchor="M"
    )


def test_foreign_positions():
    path = as_path([(2, 0), (2, 1), (0, 2), (0, 0), (2, 2)])
    assert foreign_positions(path, anchor_index=2) == [2, 3, 4]
    assert foreign_positions(as_path([(0, 0), (0, 1)]), anchor_index=2) == [0]
    assert foreign_positions(as_path([(2, 0), (2, 1), (2, 2)]), anchor_index=2) == []


def alignment_loss(pool, path, alignment):
    """The fit's objective, measured from scratch."""
    model = pool.assemble(path, alignment)
    total = 0.0
    for i in foreign_positions(path, pool.anchor_index):
        home = pool.models[path[i].model]
        mean, cov = _statistics(
            _layer_inputs(home, {0: decoder(home).layers[path[i].layer]}, BATCH)[0]
        )
        x = _layer_inputs(model, {0: decoder(model).layers[i]}, BATCH)[0]
        if i in alignment:
            x = x * alignment[i][0] + alignment[i][1]
        total += float(coral_loss(x, cov) + ((x.mean(0) - mean) ** 2).mean())
    return total


def test_fit_reduces_the_alignment_loss_and_is_deterministic():
    """At the default learning rate (0.01) 40 steps leave 0.16 to 0.63 of the loss at
    each of 120 seeds; at 0.05 the fit overshot at 10 of 60 seeds (0.75 to 2.6 of the
    loss), and which seeds do can depend on the CPU's arithmetic."""
    pool = make_pool()
    path = as_path([(2, 0), (0, 2), (1, 0), (2, 2)])
    settings = AlignmentSettings(steps=40, learning_rate=0.01, seed=3)
    fitted = fit_alignment(pool, path, BATCH, settings)
    assert sorted(fitted) == [1, 2, 3]
    assert alignment_loss(pool, path, fitted) < 0.7 * alignment_loss(pool, path, {})
    again = fit_alignment(pool, path, BATCH, settings)
    assert all(torch.equal(fitted[i][0], again[i][0]) for i in fitted)
    assert fit_alignment(pool, pool.identity_path(), BATCH, settings) == {}


def test_zero_steps_is_the_identity():
    pool = make_pool()
    path = as_path([(2, 0), (0, 1), (2, 2)])
    fitted = fit_alignment(pool, path, BATCH, AlignmentSettings(steps=0))
    assert torch.allclose(logits(pool.assemble(path, fitted)), logits(pool.assemble(path)))


def test_aligned_export_reloads_through_hm3_with_the_same_logits(tmp_path):
    pool = make_pool()
    path = as_path([(2, 0), (1, 1), (0, 2), (2, 2)])
    fitted = fit_alignment(pool, path, BATCH, AlignmentSettings(steps=10, learning_rate=0.05))
    live = logits(pool.assemble(path, fitted))
    assert not torch.allclose(live, logits(pool.assemble(path)))
    pool.export(path, tmp_path / "aligned", alignment=fitted)
    assert sorted(load_alignment(tmp_path / "aligned")) == sorted(fitted)
    reloaded = load_causal_lm(tmp_path / "aligned")
    assert torch.allclose(logits(reloaded), live, atol=1e-5)
    # without hm3 the same folder is the unaligned path
    from transformers import AutoModelForCausalLM

    plain = AutoModelForCausalLM.from_pretrained(tmp_path / "aligned", dtype=torch.float32).eval()
    assert torch.allclose(logits(plain), logits(pool.assemble(path)), atol=1e-5)

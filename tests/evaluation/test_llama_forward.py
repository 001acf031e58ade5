"""hm3's own Llama forward gives bitwise transformers' logits (hm3.evaluation.llama_forward)."""

import copy

import pytest
import torch

from _models import small_llama
from hm3.checkpoints.layers import PathLayer
from hm3.evaluation import llama_forward
from hm3.evaluation.generation import _TransformersForward


def _llama(**overrides):
    settings = dict(
        vocab_size=97,
        hidden_size=32,
        intermediate_size=80,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=128,
        attn_implementation="sdpa",
    )
    return small_llama(0, **{**settings, **overrides})


def _batch(rows=6, width=9, padded=True):
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(3, 97, (rows, width), generator=generator)
    mask = torch.ones(rows, width, dtype=torch.long)
    if padded:  # left padding of different lengths, one row unpadded
        for row in range(1, rows):
            mask[row, : row % width] = 0
            ids[row, : row % width] = 0
    return ids, mask


def _run(forward, ids, mask, steps=6, drop_at=3):
    """Prefill, then greedy steps; at step ``drop_at`` the odd rows leave the batch."""
    positions = (mask.cumsum(-1) - 1).clamp_min(0)
    out = []
    with torch.inference_mode():
        logits = forward(ids, mask, positions, last_only=True)
        for step in range(steps):
            out.append(logits[:, -1, :].clone())
            chosen = logits[:, -1, :].argmax(-1)
            if step == drop_at:
                keep = torch.arange(0, len(chosen), 2)
                forward.select(keep)
                mask, positions, chosen = mask[keep], positions[keep], chosen[keep]
            mask = torch.cat([mask, mask.new_ones((len(chosen), 1))], dim=1)
            positions = positions[:, -1:] + 1
            logits = forward(chosen[:, None], mask, positions)
    return out


@pytest.mark.parametrize(
    "padded, overrides, dtype",
    [
        (True, {}, torch.float32),
        (False, {}, torch.float32),
        (True, {"head_dim": 16}, torch.float32),
        (True, {}, torch.bfloat16),  # evaluation.dtype: bfloat16
    ],
)
def test_prefill_and_decoding_steps_are_bitwise_transformers(padded, overrides, dtype):
    model = _llama(**overrides).to(dtype)  # head_dim 16: heads wider than hidden_size / heads
    assert llama_forward.supports(model)
    ids, mask = _batch(padded=padded)
    theirs = _run(_TransformersForward(model, 32), ids, mask)
    ours = _run(llama_forward.LlamaForward(model, 32), ids, mask)
    assert len(theirs) == len(ours)
    for a, b in zip(theirs, ours):
        assert torch.equal(a, b)


def test_a_path_that_repeats_and_aligns_layers_is_bitwise_transformers():
    model = _llama()
    layers = list(model.model.layers)
    path = copy.copy(model)
    path.model = copy.copy(model.model)
    path.config = copy.deepcopy(model.config)
    path.config.num_hidden_layers = 4
    path.model.config = path.config
    path.model.layers = torch.nn.ModuleList(
        [
            PathLayer(layers[0], 0),
            PathLayer(layers[1], 1, (torch.full((32,), 0.9), torch.full((32,), 0.01))),
            PathLayer(layers[1], 2),
            PathLayer(layers[2], 3),
        ]
    )
    assert llama_forward.supports(path)
    ids, mask = _batch()
    theirs = _run(_TransformersForward(path, 32), ids, mask)
    ours = _run(llama_forward.LlamaForward(path, 32), ids, mask)
    for a, b in zip(theirs, ours):
        assert torch.equal(a, b)


def test_buffers_grow_past_the_planned_length():
    model = _llama()
    ids, mask = _batch()
    theirs = _run(_TransformersForward(model, 32), ids, mask, steps=8)
    ours = _run(llama_forward.LlamaForward(model, 10), ids, mask, steps=8)
    for a, b in zip(theirs, ours):
        assert torch.equal(a, b)


@pytest.mark.parametrize(
    "overrides",
    [
        {"num_key_value_heads": 2},
        {"attn_implementation": "eager"},
        {"attention_bias": True},
        {"hidden_act": "gelu"},
        {"rope_parameters": {"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0}},
    ],
)
def test_other_models_keep_transformers_forward(overrides):
    assert not llama_forward.supports(_llama(**overrides))
    assert not llama_forward.supports(torch.nn.Linear(2, 2))
    assert not llama_forward.supports(_llama().to("meta"))  # CPU only: tested there


def test_rms_norm_keeps_transformers_promotion_when_the_weight_is_wider():
    # LlamaRMSNorm returns weight * x: a float32 weight makes a bfloat16 input's output
    # float32, which writing into the input in place could not
    norm = torch.nn.Module()
    norm.weight, norm.variance_epsilon = torch.rand(8) + 0.5, 1e-5
    hidden = torch.randn(2, 3, 8).to(torch.bfloat16)
    variance = hidden.float().pow(2).mean(-1, keepdim=True)
    expected = norm.weight * (hidden.float() * torch.rsqrt(variance + 1e-5)).to(torch.bfloat16)
    out = llama_forward._rms_norm(norm, hidden)
    assert out.dtype == torch.float32 and torch.equal(out, expected)


def test_prompts_read_in_parts_then_decoded_together():
    """`place`: parts prefilled at their own widths, then decoded as one batch, give
    each row the logits of a batch of all rows prefilled at the full width (the
    padding differs, so to rounding), and the positions left of a part are zeros."""
    model = _llama()
    ids, mask = _batch(rows=6, width=9)
    parts = [(0, 3), (3, 6)]
    with torch.inference_mode():
        whole = llama_forward.LlamaForward(model, 20)
        positions = (mask.cumsum(-1) - 1).clamp_min(0)
        expected = whole(ids, mask, positions, last_only=True)
        joined, logits = llama_forward.LlamaForward(model, 20), []
        for start, stop in parts:
            part_mask = mask[start:stop]
            cut = int((part_mask.sum(0) == 0).sum())  # the columns padding in every row
            part_ids, part_mask = ids[start:stop, cut:], part_mask[:, cut:]
            part = llama_forward.LlamaForward(model, part_ids.shape[1])
            part_positions = (part_mask.cumsum(-1) - 1).clamp_min(0)
            logits.append(part(part_ids, part_mask, part_positions, last_only=True))
            joined.place(part, start, 6, 9)
            if cut:
                assert not joined.keys[0][start:stop, :, :cut].any()
        assert joined.length == whole.length == 9
        assert torch.allclose(torch.cat(logits), expected, atol=1e-5)
        for keys_whole, keys_joined in zip(whole.keys, joined.keys):
            real = mask.bool()[:, None, :, None].expand(-1, 4, -1, 8)
            assert torch.allclose(
                keys_whole[:, :, :9][real], keys_joined[:, :, :9][real], atol=1e-5
            )
        step_mask = torch.cat([mask, mask.new_ones(6, 1)], dim=1)
        step_positions = positions[:, -1:] + 1
        token = expected[:, -1].argmax(-1)[:, None]
        assert torch.allclose(
            joined(token, step_mask, step_positions),
            whole(token, step_mask, step_positions),
            atol=1e-5,
        )

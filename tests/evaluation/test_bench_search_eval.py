"""benchmarks/bench_search_eval.py: what an --engines entry asks for."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from bench_search_eval import engine_settings  # noqa: E402

EVALUATION = {"engine": "prepared", "batch_size": 64, "decode_batch_size": 256, "device": "cpu"}


@pytest.mark.parametrize(
    ("name", "engine", "batch_size", "decode_rows"),
    [
        ("prepared", "prepared", 64, 256),
        ("lm-eval", "lm-eval", 64, 256),
        ("prepared+hf", "prepared", 64, 256),
        ("prepared@192", "prepared", 192, None),
        ("prepared+hf@8", "prepared", 8, None),
        ("prepared@64/180", "prepared", 64, 180),
    ],
)
def test_engine_entries_name_engine_and_batch_sizes(name, engine, batch_size, decode_rows):
    settings = engine_settings(name, EVALUATION)
    assert (settings["engine"], settings["batch_size"]) == (engine, batch_size)
    assert settings["decode_batch_size"] == decode_rows
    assert settings["device"] == "cpu"
    assert EVALUATION["batch_size"] == 64  # the run's settings stay as they were


def test_a_batch_size_that_is_not_a_number_is_refused():
    with pytest.raises(ValueError):
        engine_settings("prepared@many", EVALUATION)


def test_an_explicit_attention_entry_names_the_engine_it_runs():
    settings = engine_settings("prepared+explicit@64/256", EVALUATION)
    assert (settings["engine"], settings["batch_size"], settings["decode_batch_size"]) == (
        "prepared",
        64,
        256,
    )


@pytest.mark.parametrize("shape", ["decoding", "causal", "padded prefill"])
def test_the_explicit_attention_gives_the_kernel_result_to_rounding(shape):
    import torch
    import torch.nn.functional as F
    from bench_search_eval import explicit_attention

    generator = torch.Generator().manual_seed(0)
    rows, heads, new, length, dim = 5, 4, {"decoding": 1}.get(shape, 9), 9, 24
    query = torch.randn(rows, heads, new, dim, generator=generator)
    keys = torch.randn(rows, heads, length, dim, generator=generator)
    values = torch.randn(rows, heads, length, dim, generator=generator)
    options = {"scale": dim**-0.5}
    if shape == "causal":
        options["is_causal"] = True
    else:  # rows 1 and 3 left-padded by 3 positions, as the forward's additive mask has it
        padding = torch.ones(rows, length, dtype=torch.bool)
        padding[1::2, :3] = False
        causal = torch.ones(new, length, dtype=torch.bool).tril_(length - new)
        allowed = (causal[None] & padding[:, None, :])[:, None]
        options["attn_mask"] = torch.where(allowed, 0.0, float("-inf"))
    expected = F.scaled_dot_product_attention(query, keys, values, **options)
    found = explicit_attention(query, keys, values, **options)
    assert torch.isfinite(found).all()  # a padding position's query: no NaN to spread
    real = slice(None) if shape != "padded prefill" else slice(3, None)
    torch.testing.assert_close(found[..., real, :], expected[..., real, :])

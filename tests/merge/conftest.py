"""Tiny random Llama checkpoints for the merge engine's tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from _models import llama_config as small_config


def llama_config(vocab: int = 96, hidden: int = 16, layers: int = 3, tie: bool = False):
    return small_config(
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_key_value_heads=1,
        vocab_size=vocab,
        tie_word_embeddings=tie,
        max_position_embeddings=64,
    )


def save_family(
    root: Path, count: int = 3, seed: int = 0, **config_kwargs
) -> tuple[str, list[str]]:
    """A random base and ``count`` experts (base + independent noise), as safetensors."""
    from transformers import LlamaForCausalLM

    torch.manual_seed(seed)
    config = llama_config(**config_kwargs)
    base = LlamaForCausalLM(config).float()
    base.save_pretrained(root / "base")
    (root / "base" / "tokenizer.json").write_text('{"fake": "tokenizer"}')
    (root / "base" / "tokenizer_config.json").write_text("{}")
    experts = []
    for i in range(count):
        expert = LlamaForCausalLM(config).float()
        expert.load_state_dict(base.state_dict())
        with torch.no_grad():
            for param in expert.parameters():
                param.add_(torch.randn_like(param) * 0.05)
        expert.save_pretrained(root / f"expert{i}")
        experts.append(str(root / f"expert{i}"))
    return str(root / "base"), experts


def load_checkpoint(directory: str | Path) -> dict[str, torch.Tensor]:
    tensors = {}
    for path in sorted(Path(directory).glob("*.safetensors")):
        tensors.update(load_file(path))
    return tensors


@pytest.fixture(scope="session")
def family(tmp_path_factory) -> tuple[str, list[str]]:
    """Base and three experts, shared by the tests that only read them."""
    return save_family(tmp_path_factory.mktemp("family"))

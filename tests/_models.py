"""Small Llama models for tests: one set of defaults, each test overriding what it is about."""

from __future__ import annotations

# A Llama small enough to build in milliseconds: two layers of width 16. LlamaConfig's own
# defaults are Llama 2 7B's, so every field a test leaves out would otherwise be 7B-sized.
SMALL = {
    "vocab_size": 64,
    "hidden_size": 16,
    "intermediate_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "max_position_embeddings": 32,
}


def llama_config(**fields):
    """A LlamaConfig of `SMALL`'s sizes, with ``fields`` in their place."""
    from transformers import LlamaConfig

    return LlamaConfig(**{**SMALL, **fields})


def small_llama(seed: int | None = None, **fields):
    """A freshly initialised LlamaForCausalLM of `llama_config(**fields)`, in eval mode;
    ``seed``: torch's global seed before its weights are drawn."""
    import torch
    from transformers import LlamaForCausalLM

    if seed is not None:
        torch.manual_seed(seed)
    return LlamaForCausalLM(llama_config(**fields)).eval()

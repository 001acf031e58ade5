"""Decoder-layer access in causal LMs of the Llama layout, and a layer run at a chosen
position of another model's stack (what inference paths and their alignment need)."""

from __future__ import annotations

from torch import nn

from hm3.core.errors import HM3Error


def decoder(model: nn.Module) -> nn.Module:
    """The inner decoder of a causal LM (``model.model``: its layers, embeddings and norm)."""
    inner = getattr(model, "model", None)
    if inner is None or not hasattr(inner, "layers") or not hasattr(model, "lm_head"):
        raise HM3Error(
            f"{type(model).__name__} is not a decoder of the Llama layout "
            "(model.layers, model.embed_tokens, model.norm, lm_head): paths cannot be assembled from it"
        )
    return inner


class PathLayer(nn.Module):
    """A pool layer run at ``position`` of a path.

    HF attention layers write their key/value cache at their own ``layer_idx``; a
    path may place a layer anywhere, or twice, so the index is set to the position
    just before each call (calls are sequential within a forward pass).
    ``alignment``: an optional (scale, shift) applied to the entering hidden state
    (`hm3.lower.align`).
    """

    def __init__(self, layer: nn.Module, position: int, alignment=None):
        super().__init__()
        self.layer = layer
        self.position = position
        self.alignment = alignment

    def forward(self, *args, **kwargs):
        attention = getattr(self.layer, "self_attn", None)
        if attention is not None:
            attention.layer_idx = self.position
        if self.alignment is not None:
            scale, shift = self.alignment
            if args:
                args = ((args[0] * scale + shift).to(args[0].dtype), *args[1:])
            else:
                kwargs["hidden_states"] = (kwargs["hidden_states"] * scale + shift).to(
                    kwargs["hidden_states"].dtype
                )
        return self.layer(*args, **kwargs)

"""Tensor names of Hugging Face checkpoints: which decoder layer a tensor belongs to.
Torch-free, so the merge parameters and the checkpoint reader share it cheaply."""

from __future__ import annotations

import re

# Tensor names of decoder layers in HF checkpoints: model.layers.3., transformer.h.3., ...
LAYER_PATTERN = re.compile(r"(?:^|\.)(?:layers|layer|h|blocks|block)\.(\d+)\.")


def layer_index(tensor_name: str) -> int | None:
    """The decoder layer a tensor belongs to, or None for embeddings, norms, head."""
    match = LAYER_PATTERN.search(tensor_name)
    return int(match.group(1)) if match else None

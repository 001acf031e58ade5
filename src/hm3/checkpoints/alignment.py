"""The layer alignment an exported inference path carries beside its weights.

`hm3_alignment.safetensors` holds, per aligned position i, a per-channel scale and
shift applied to the hidden state entering ``model.layers[i]``; `hm3_alignment.json`
says so in words. hm3's loader (`hm3.checkpoints.causal_lm.load_causal_lm`) applies
them; plain transformers loads the unaligned path. Fitting an alignment is
`hm3.lower.align`'s job.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Mapping

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from hm3.checkpoints.layers import PathLayer, decoder
from hm3.core.errors import HM3Error

ALIGNMENT_FILE = "hm3_alignment.safetensors"
ALIGNMENT_META = "hm3_alignment.json"


def alignment_fingerprint(alignment: Mapping[int, tuple[torch.Tensor, torch.Tensor]]) -> str:
    """A stable text of the exact scales and shifts (part of the cache key)."""
    digest = hashlib.sha256()
    for i in sorted(alignment):
        for t in alignment[i]:
            digest.update(str(i).encode())
            digest.update(t.detach().float().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def save_alignment(
    alignment: Mapping[int, tuple[torch.Tensor, torch.Tensor]], folder: Path
) -> None:
    tensors = {}
    for i, (scale, shift) in alignment.items():
        tensors[f"layers.{i}.scale"] = scale.detach().float().contiguous()
        tensors[f"layers.{i}.shift"] = shift.detach().float().contiguous()
    save_file(tensors, str(Path(folder) / ALIGNMENT_FILE))
    (Path(folder) / ALIGNMENT_META).write_text(
        json.dumps(
            {
                "positions": sorted(int(i) for i in alignment),
                "applies": "hidden <- hidden * scale + shift, entering model.layers[i]",
            },
            indent=2,
        ),
        encoding="utf-8",
    )


def load_alignment(folder: Path) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    file = Path(folder) / ALIGNMENT_FILE
    if not file.exists():
        return {}
    tensors = load_file(str(file))
    positions = sorted({int(k.split(".")[1]) for k in tensors})
    return {i: (tensors[f"layers.{i}.scale"], tensors[f"layers.{i}.shift"]) for i in positions}


def apply_alignment(
    model: nn.Module, alignment: Mapping[int, tuple[torch.Tensor, torch.Tensor]]
) -> nn.Module:
    """Wrap the aligned layers of a loaded path checkpoint (in place)."""
    layers = decoder(model).layers
    for i, (scale, shift) in alignment.items():
        if not 0 <= i < len(layers):
            raise HM3Error(f"alignment for layer {i}, but the model has {len(layers)} layers")
        device = next(model.parameters()).device
        layers[i] = PathLayer(layers[i], i, (scale.to(device), shift.to(device)))
    return model

"""Optional layer alignment for inference paths (DESIGN.md §1, config `rl.alignment`).

A layer taken out of its home model receives a hidden state with other statistics
than the one it was trained on. A small MLP W(m, l, t), fed one-hot codes of the
layer's model m, its index l and its position t in the path, outputs a per-channel
scale and shift applied to the hidden state entering that layer. It is fitted on
search-split prompts with a CORAL loss (match the covariance of the aligned input to
that of the layer's input in its home model) plus mean matching, and starts at the
identity (last layer zero), so a fit can only move away from "no alignment" when the
statistics disagree.

An aligned path is exported as a plain checkpoint plus `hm3_alignment.safetensors`
(the per-position scales and shifts, evaluated from the MLP); `hm3.evaluation.scorer.load_causal_lm`
applies them when present (plain transformers loads the unaligned path). Written by
hand: no library aligns the inputs of transplanted transformer layers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path as FilePath
from typing import Mapping, Sequence

import torch
from torch import nn

from hm3.core.errors import HM3Error

ALIGNMENT_FILE = "hm3_alignment.safetensors"
ALIGNMENT_META = "hm3_alignment.json"


@dataclass(frozen=True)
class AlignmentSettings:
    steps: int = 60
    learning_rate: float = 0.01
    width: int = 32
    mean_weight: float = 1.0
    prompts: int = 32          # per task, from the search split
    max_tokens: int = 96
    seed: int = 0


def foreign_positions(path, anchor_index: int) -> list[int]:
    """Positions whose input is not what the layer's home model would feed it:
    any step that does not follow the previous layer of its own model (the first
    step is at home only as layer 0 of the anchor, whose embeddings the path uses)."""
    out = []
    for i, step in enumerate(path):
        if i == 0:
            home = step.layer == 0 and step.model == anchor_index
        else:
            prev = path[i - 1]
            home = prev.model == step.model and prev.layer == step.layer - 1
        if not home:
            out.append(i)
    return out


class AlignmentNet(nn.Module):
    """W(m, l, t): one-hot (model, layer, position) -> per-channel (scale, shift)."""

    def __init__(self, n_models: int, max_layers: int, max_positions: int, hidden_size: int, width: int):
        super().__init__()
        self.sizes = (n_models, max_layers, max_positions)
        self.mlp = nn.Sequential(nn.Linear(sum(self.sizes), width), nn.Tanh(), nn.Linear(width, 2 * hidden_size))
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def code(self, model: int, layer: int, position: int) -> torch.Tensor:
        n_models, max_layers, _ = self.sizes
        code = torch.zeros(sum(self.sizes))
        code[model] = code[n_models + layer] = code[n_models + max_layers + position] = 1.0
        return code

    def forward(self, codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        log_scale, shift = self.mlp(codes).chunk(2, dim=-1)
        return torch.exp(log_scale), shift


def coral_loss(x: torch.Tensor, target_cov: torch.Tensor) -> torch.Tensor:
    """CORAL: squared Frobenius distance of covariances, / 4d² (Sun & Saenko, 2016)."""
    d = x.shape[-1]
    centred = x - x.mean(0, keepdim=True)
    cov = centred.T @ centred / max(1, len(x) - 1)
    return ((cov - target_cov) ** 2).sum() / (4 * d * d)


def _statistics(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    centred = x - x.mean(0, keepdim=True)
    return x.mean(0), centred.T @ centred / max(1, len(x) - 1)


def encode_prompts(tokenizer, prompts: Sequence[str], max_tokens: int) -> dict:
    if not prompts:
        raise HM3Error("layer alignment needs prompts from the search split, and there are none")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    rows = [tokenizer(p, add_special_tokens=True)["input_ids"][:max_tokens] for p in prompts]
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad if pad is not None else 0, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):  # right padding: positions of real tokens stay 0..n-1
        ids[i, :len(r)] = torch.tensor(r)
        mask[i, :len(r)] = 1
    return {"input_ids": ids, "attention_mask": mask}


def _layer_inputs(model: nn.Module, layers: Mapping[int, nn.Module], batch: dict) -> dict[int, torch.Tensor]:
    """The hidden states entering the given layer modules (real tokens only)."""
    seen: dict[int, torch.Tensor] = {}
    handles = []
    for key, module in layers.items():
        def hook(mod, args, kwargs, key=key):
            hidden = args[0] if args else kwargs["hidden_states"]
            seen.setdefault(key, hidden.detach())
        handles.append(module.register_forward_pre_hook(hook, with_kwargs=True))
    try:
        with torch.no_grad():
            model(**batch, use_cache=False)
    finally:
        for h in handles:
            h.remove()
    keep = batch["attention_mask"].bool()
    return {k: v[keep] for k, v in seen.items()}


def fit_alignment(pool, path, batch: dict, settings: AlignmentSettings) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    """Per foreign position of ``path``: the fitted (scale, shift). Empty when the
    path has no foreign position (it runs every layer at home)."""
    from hm3.lower.inference_path import _decoder, as_path

    path = as_path(path)
    foreign = foreign_positions(path, pool.anchor_index)
    if not foreign:
        return {}
    torch.manual_seed(settings.seed)
    targets = {}
    for i in foreign:  # the layer's input in its home model
        step = path[i]
        home = pool.models[step.model]
        x = _layer_inputs(home, {i: _decoder(home).layers[step.layer]}, batch)[i]
        targets[i] = _statistics(x.float())
    hidden = pool.anchor.config.hidden_size
    net = AlignmentNet(len(pool.models), max(pool.depths), len(path), hidden, settings.width)
    codes = torch.stack([net.code(path[i].model, path[i].layer, i) for i in foreign])
    optimizer = torch.optim.Adam(net.parameters(), lr=settings.learning_rate)
    model = pool.assemble(path)  # once: each step only swaps the foreign layers' (scale, shift)
    wrappers = {i: _decoder(model).layers[i] for i in foreign}
    for _ in range(settings.steps):
        with torch.no_grad():
            scale, shift = net(codes)
        for k, i in enumerate(foreign):
            wrappers[i].alignment = (scale[k], shift[k])
        inputs = _layer_inputs(model, wrappers, batch)
        scale, shift = net(codes)
        loss = torch.zeros(())
        for k, i in enumerate(foreign):
            # the recorded input is before position i's own alignment, which applies here
            aligned = inputs[i].float() * scale[k] + shift[k]
            mean, cov = targets[i]
            loss = loss + coral_loss(aligned, cov) + settings.mean_weight * ((aligned.mean(0) - mean) ** 2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        scale, shift = net(codes)
    return {i: (scale[k].detach().clone(), shift[k].detach().clone()) for k, i in enumerate(foreign)}


def alignment_fingerprint(alignment: Mapping[int, tuple[torch.Tensor, torch.Tensor]]) -> str:
    """A stable text of the exact scales and shifts (part of the cache key)."""
    import hashlib

    digest = hashlib.sha256()
    for i in sorted(alignment):
        for t in alignment[i]:
            digest.update(str(i).encode())
            digest.update(t.detach().float().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def save_alignment(alignment: Mapping[int, tuple[torch.Tensor, torch.Tensor]], folder: FilePath) -> None:
    from safetensors.torch import save_file

    tensors = {}
    for i, (scale, shift) in alignment.items():
        tensors[f"layers.{i}.scale"] = scale.detach().float().contiguous()
        tensors[f"layers.{i}.shift"] = shift.detach().float().contiguous()
    save_file(tensors, str(FilePath(folder) / ALIGNMENT_FILE))
    (FilePath(folder) / ALIGNMENT_META).write_text(json.dumps(
        {"positions": sorted(int(i) for i in alignment), "applies": "hidden <- hidden * scale + shift, "
         "entering model.layers[i]"}, indent=2), encoding="utf-8")


def load_alignment(folder: FilePath) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    from safetensors.torch import load_file

    file = FilePath(folder) / ALIGNMENT_FILE
    if not file.exists():
        return {}
    tensors = load_file(str(file))
    positions = sorted({int(k.split(".")[1]) for k in tensors})
    return {i: (tensors[f"layers.{i}.scale"], tensors[f"layers.{i}.shift"]) for i in positions}


def apply_alignment(model: nn.Module, alignment: Mapping[int, tuple[torch.Tensor, torch.Tensor]]) -> nn.Module:
    """Wrap the aligned layers of a loaded path checkpoint (in place)."""
    from hm3.lower.inference_path import _decoder, _PathLayer

    layers = _decoder(model).layers
    for i, (scale, shift) in alignment.items():
        if not 0 <= i < len(layers):
            raise HM3Error(f"alignment for layer {i}, but the model has {len(layers)} layers")
        device = next(model.parameters()).device
        layers[i] = _PathLayer(layers[i], i, (scale.to(device), shift.to(device)))
    return model

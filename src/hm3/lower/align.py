"""Optional layer alignment for inference paths (docs/method.md §5.6, config `rl.alignment`).

A layer taken out of its home model receives a hidden state with other statistics
than the one it was trained on. A small MLP W(m, l, t), fed one-hot codes of the
layer's model m, its index l and its position t in the path, outputs a per-channel
scale and shift applied to the hidden state entering that layer. It is fitted on
search-split prompts with a CORAL loss (match the covariance of the aligned input to
that of the layer's input in its home model) plus mean matching, and starts at the
identity (last layer zero), so a fit can only move away from "no alignment" when the
statistics disagree.

An aligned path is exported as a plain checkpoint plus `hm3_alignment.safetensors`
(the per-position scales and shifts, evaluated from the MLP; the file is
`hm3.checkpoints.alignment`'s): `hm3.checkpoints.causal_lm.load_causal_lm` applies them
when present (plain transformers loads the unaligned path). Written by hand: no library
aligns the inputs of transplanted transformer layers.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import nn

from hm3.checkpoints.layers import decoder
from hm3.core.errors import HM3Error
from hm3.lower.inference_path import as_path
from hm3.lower.settings import AlignmentSettings


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

    def __init__(
        self, n_models: int, max_layers: int, max_positions: int, hidden_size: int, width: int
    ):
        super().__init__()
        self.sizes = (n_models, max_layers, max_positions)
        self.mlp = nn.Sequential(
            nn.Linear(sum(self.sizes), width), nn.Tanh(), nn.Linear(width, 2 * hidden_size)
        )
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
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
    return {"input_ids": ids, "attention_mask": mask}


def _layer_inputs(
    model: nn.Module, layers: Mapping[int, nn.Module], batch: dict
) -> dict[int, torch.Tensor]:
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


def fit_alignment(
    pool, path, batch: dict, settings: AlignmentSettings
) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    """Per foreign position of ``path``: the fitted (scale, shift). Empty when the
    path has no foreign position (it runs every layer at home)."""
    path = as_path(path)
    foreign = foreign_positions(path, pool.anchor_index)
    if not foreign:
        return {}
    torch.manual_seed(settings.seed)
    targets = {}
    for i in foreign:  # the layer's input in its home model
        step = path[i]
        home = pool.models[step.model]
        x = _layer_inputs(home, {i: decoder(home).layers[step.layer]}, batch)[i]
        targets[i] = _statistics(x.float())
    hidden = pool.anchor.config.hidden_size
    net = AlignmentNet(len(pool.models), max(pool.depths), len(path), hidden, settings.width)
    codes = torch.stack([net.code(path[i].model, path[i].layer, i) for i in foreign])
    optimizer = torch.optim.Adam(net.parameters(), lr=settings.learning_rate)
    model = pool.assemble(path)  # once: each step only swaps the foreign layers' (scale, shift)
    wrappers = {i: decoder(model).layers[i] for i in foreign}
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
            loss = (
                loss
                + coral_loss(aligned, cov)
                + settings.mean_weight * ((aligned.mean(0) - mean) ** 2).mean()
            )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        scale, shift = net(codes)
    return {
        i: (scale[k].detach().clone(), shift[k].detach().clone()) for k, i in enumerate(foreign)
    }

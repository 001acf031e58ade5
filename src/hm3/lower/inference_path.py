"""Inference paths: models assembled from decoder layers of a pool of models.

A path is a sequence of steps (model, layer) over a pool (the K experts and M_λ);
the assembled model runs those layers in order between the embeddings, final norm
and head of the pool's anchor model (M_λ). Assembly shares the pool's layer modules
(no copies), so a search can score thousands of paths on the pool's memory alone;
export writes a plain Hugging Face checkpoint of the base architecture with
`num_hidden_layers = T`, that any transformers user can load.

This is written by hand because no library assembles layer paths live: mergekit's
`passthrough` merge does the same on disk (and `passthrough_yaml` writes such a
config when a path can be expressed as one).
"""

from __future__ import annotations

import copy
import functools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import torch
import yaml
from torch import nn

from hm3.checkpoints.alignment import alignment_fingerprint, save_alignment
from hm3.checkpoints.causal_lm import load_causal_lm, save_checkpoint
from hm3.checkpoints.layers import PathLayer, decoder
from hm3.core.errors import HM3Error

log = logging.getLogger(__name__)

# config fields that must agree for a layer to run inside another model's stream
LAYER_FIELDS = (
    "hidden_size",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "hidden_act",
    "attention_bias",
    "mlp_bias",
)
# Rotary settings may differ (CodeLlama-7B was trained with rope_theta 1e6, Llama-2-7B
# with 1e4, and the paper pools them): the positions' rotation is computed once per
# forward pass by the anchor's model and handed to every layer, so a path runs every
# layer under the anchor's settings, as a parameter merge of those models does (the
# merged checkpoint keeps the base's config) and as the exported path's config says.
# A difference is logged, never silent.
ROTARY_FIELDS = ("rope_theta", "rope_scaling", "rope_parameters", "partial_rotary_factor")


@dataclass(frozen=True)
class Step:
    """Layer ``layer`` of pool model number ``model``."""

    model: int
    layer: int


InferencePath = tuple[Step, ...]


def as_path(steps: Sequence) -> InferencePath:
    """A path from Steps or (model, layer) pairs."""
    return tuple(s if isinstance(s, Step) else Step(int(s[0]), int(s[1])) for s in steps)


def describe(path: InferencePath, names: Sequence[str]) -> str:
    """A readable, stable text of a path (also its evaluation-cache key): math:0 math:1 M:2 ..."""
    return " ".join(f"{names[s.model]}:{s.layer}" for s in path)


def parse_path(text: str, names: Sequence[str]) -> InferencePath:
    """The inverse of `describe`: "math:0 M:1" -> path over ``names``."""
    steps = []
    for token in text.split():
        name, _, layer = token.rpartition(":")
        if name not in names or not layer.isdigit():
            raise HM3Error(
                f"bad path step {token!r}: expected MODEL:LAYER with MODEL in {', '.join(names)}"
            )
        steps.append((names.index(name), int(layer)))
    return as_path(steps)


class LayerPool:
    """K+1 live models whose decoder layers paths are assembled from.

    ``models``: name -> transformers causal LM (eval mode, same device); ``anchor``:
    the name of the model giving embeddings, final norm and head (M_λ).
    Depths may differ; layers must agree on the fields in LAYER_FIELDS.
    """

    def __init__(self, models: Mapping[str, nn.Module], anchor: str):
        if anchor not in models:
            raise HM3Error(f"anchor {anchor!r} is not in the pool ({', '.join(models)})")
        self.names = list(models)
        self.models = [models[n] for n in self.names]
        self.anchor_index = self.names.index(anchor)
        self.depths = [len(decoder(m).layers) for m in self.models]
        # the anchor last: rotary differences are reported against it
        order = [*(n for n in self.names if n != anchor), anchor]
        self.rotary_notes = check_compatible({n: models[n].config for n in order})

    @property
    def anchor(self) -> nn.Module:
        return self.models[self.anchor_index]

    def identity_path(self) -> InferencePath:
        """The anchor's own layers in order: the assembled model is the anchor itself."""
        return tuple(Step(self.anchor_index, i) for i in range(self.depths[self.anchor_index]))

    def check_path(self, path: InferencePath, max_length: int | None = None) -> None:
        if not path:
            raise HM3Error("a path needs at least one layer")
        if max_length is not None and len(path) > max_length:
            raise HM3Error(f"path of {len(path)} layers is longer than T_max = {max_length}")
        for position, step in enumerate(path):
            if not 0 <= step.model < len(self.models):
                raise HM3Error(
                    f"step {position}: model {step.model} is not in the pool (0..{len(self.models) - 1})"
                )
            if not 0 <= step.layer < self.depths[step.model]:
                raise HM3Error(
                    f"step {position}: {self.names[step.model]} has layers 0..{self.depths[step.model] - 1}, "
                    f"not {step.layer}"
                )

    def assemble(self, path: InferencePath, alignment=None) -> nn.Module:
        """A live model running ``path``; it shares every module with the pool.
        ``alignment``: {position: (scale, shift)} from `hm3.lower.align.fit_alignment`."""
        path = as_path(path)
        self.check_path(path)
        anchor = self.anchor
        config = copy.deepcopy(anchor.config)
        config.num_hidden_layers = len(path)
        if getattr(config, "layer_types", None):
            config.layer_types = [self.models[s.model].config.layer_types[s.layer] for s in path]
        with torch.device("meta"):
            shell = type(anchor)(config)
        inner, source = decoder(shell), decoder(anchor)
        for name, module in source.named_children():
            if name != "layers":
                setattr(inner, name, module)
        shell.lm_head = anchor.lm_head
        alignment = alignment or {}
        inner.layers = nn.ModuleList(
            PathLayer(decoder(self.models[s.model]).layers[s.layer], i, alignment.get(i))
            for i, s in enumerate(path)
        )
        shell.generation_config = copy.deepcopy(anchor.generation_config)
        left = [n for n, t in [*shell.named_parameters(), *shell.named_buffers()] if t.is_meta]
        if left:
            raise HM3Error(f"assembled model still has unset tensors: {left[:3]}")
        return shell.eval()

    def state_dict_for(self, path: InferencePath) -> dict[str, torch.Tensor]:
        """The tensors of the path as a plain checkpoint of the anchor's architecture."""
        path = as_path(path)
        self.check_path(path)
        state = {
            name: t
            for name, t in self.anchor.state_dict().items()
            if not name.startswith("model.layers.")
        }
        for i, step in enumerate(path):
            for name, tensor in (
                decoder(self.models[step.model]).layers[step.layer].state_dict().items()
            ):
                state[f"model.layers.{i}.{name}"] = tensor
        return state

    def export(
        self,
        path: InferencePath,
        out_dir: str | Path,
        tokenizer=None,
        card: str = "",
        max_shard_size: str = "2GB",
        alignment=None,
        overwrite: bool = False,
    ) -> None:
        """Write the path as a Hugging Face checkpoint (num_hidden_layers = T), atomically;
        with ``alignment``, its scales go beside the weights (`hm3.checkpoints.alignment`)."""
        path = as_path(path)
        sizes = {getattr(self.models[s.model].config, "intermediate_size", None) for s in path}
        if len(sizes) > 1:
            raise HM3Error(
                f"the path mixes MLP widths {sorted(sizes)}: it runs live but has no plain "
                "checkpoint form (one intermediate_size per config)"
            )
        config = copy.deepcopy(self.anchor.config)
        config.num_hidden_layers = len(path)
        config.intermediate_size = sizes.pop()
        if getattr(config, "layer_types", None):
            config.layer_types = [self.models[s.model].config.layer_types[s.layer] for s in path]
        with torch.device("meta"):
            model = type(self.anchor)(config)
        model.load_state_dict(
            {k: v.detach().clone() for k, v in self.state_dict_for(path).items()},
            strict=True,
            assign=True,
        )
        # assign=True gave the tied head its own clone of the embedding: tie them again,
        # or the checkpoint carries the embedding twice (found on SmolLM2's tied 49k head)
        model.tie_weights()
        extra = functools.partial(save_alignment, alignment) if alignment else None
        save_checkpoint(
            model,
            tokenizer,
            out_dir,
            card,
            max_shard_size=max_shard_size,
            extra=extra,
            overwrite=overwrite,
        )

    def passthrough_yaml(
        self, path: InferencePath, references: Sequence[str], dtype: str = "float32"
    ) -> str | None:
        """The path as a mergekit `passthrough` config, or None when it has no such form.

        mergekit takes the embeddings from the first slice's model and the final
        norm and head from the last slice's, so the form exists when the path starts
        and ends in the anchor.
        """
        path = as_path(path)
        if path[0].model != self.anchor_index or path[-1].model != self.anchor_index:
            return None
        slices = []
        for step in path:  # consecutive layers of one model make one slice
            last = slices[-1] if slices else None
            if last and last["model"] == step.model and last["end"] == step.layer:
                last["end"] += 1
            else:
                slices.append({"model": step.model, "start": step.layer, "end": step.layer + 1})
        config = {
            "slices": [
                {
                    "sources": [
                        {"model": references[s["model"]], "layer_range": [s["start"], s["end"]]}
                    ]
                }
                for s in slices
            ],
            "merge_method": "passthrough",
            "dtype": dtype,
        }
        return yaml.safe_dump(config, sort_keys=False, default_flow_style=None)


def check_compatible(configs: Mapping[str, object]) -> list[str]:
    """Every model's layers must run in every other model's hidden stream. Returns (and
    logs) the rotary settings that differ from the last model's (the anchor's, in a
    pool): layers of those models run under the anchor's rotary settings in a path."""
    names = list(configs)
    first = configs[names[0]]
    for name in names[1:]:
        for field in LAYER_FIELDS:
            a, b = getattr(first, field, None), getattr(configs[name], field, None)
            if a != b:
                raise HM3Error(
                    f"incompatible pool: {names[0]} has {field} = {a!r}, {name} has {b!r}; "
                    "layers of one cannot run in the other's hidden stream"
                )
    anchor = names[-1]
    notes = []
    for name in names[:-1]:
        theirs, ours = _rotary(configs[name]), _rotary(configs[anchor])
        if theirs != ours:
            notes.append(
                f"{name}'s layers were trained with rotary settings {theirs}; in a path they "
                f"run under {anchor}'s {ours} (as in any merge of them: one config)"
            )
    for note in notes:
        log.warning("layer pool: %s", note)
    return notes


def _rotary(config) -> dict:
    """A config's rotary settings that are set (transformers 5 keeps rope_theta inside
    rope_parameters, and rope_scaling is the same dict under its old name)."""
    found = {f: getattr(config, f, None) for f in ROTARY_FIELDS}
    if found.get("rope_scaling") == found.get("rope_parameters"):
        found.pop("rope_scaling")
    return {f: v for f, v in found.items() if v is not None}


def load_pool(
    model_dirs: Mapping[str, str | Path],
    anchor: str,
    device: str = "cpu",
    trust_remote_code: bool = False,
    dtype=None,
) -> LayerPool:
    """A pool from checkpoint folders (safetensors only), in ``dtype`` (default float32;
    `evaluation.dtype` names and ``auto`` accepted) on ``device``."""
    models = {
        name: load_causal_lm(path, device, trust_remote_code, dtype)
        for name, path in model_dirs.items()
    }
    return LayerPool(models, anchor)


class PathEvaluator:
    """Scores paths of one pool through the evaluation cache.

    The candidate text is the path (`describe`); the evaluator's context must
    fingerprint the pool's checkpoints (`hm3.evaluation.scorer.evaluation_context`), so the
    same path over another M_λ is another candidate.
    """

    def __init__(self, pool: LayerPool, evaluator):
        self.pool, self.evaluator = pool, evaluator

    def evaluate(self, path, alignment=None, stop=None) -> dict:
        """The path's scores (CachedEvaluator.evaluate; ``stop``: racing's rule)."""
        path = as_path(path)
        self.pool.check_path(path)
        text = "path: " + describe(path, self.pool.names)
        if alignment:
            text += f" | aligned {alignment_fingerprint(alignment)}"
        return self.evaluator.evaluate(text, lambda: self.pool.assemble(path, alignment), stop)

"""Streaming export: merge tensor by tensor from safetensors to sharded safetensors.

Memory holds one tensor per input (as float32) plus scratch of the same size,
never a whole model: inputs are read one tensor at a time, output shards are
written as a stream (their headers are planned up front). Everything that can
be checked without reading weights (recipe, files, tensor names and shapes,
parameters for every tensor) is checked before the output directory is
created; the output appears under its final name only when complete.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import torch

from hm3.checkpoints.files import read_json_object
from hm3.checkpoints.sharded import (
    CheckpointReader,
    ShardedWriter,
    StateDictReader,
    TensorInfo,
    copy_tokenizer_files,
    num_hidden_layers,
    parse_size,
    resolve_model_dir,
)
from hm3.core.errors import ConfigError, HM3Error
from hm3.core.io import atomic_dir, check_output_dir, write_json, write_text
from hm3.merge import DEFAULT_SHARD_SIZE
from hm3.merge.card import card_title, merge_card
from hm3.merge.checks import check_finite, check_merged, check_same_tensors
from hm3.merge.config import MergeRecipe, recipe_to_yaml
from hm3.merge.kernels import Workspace
from hm3.merge.plan import MergePlan, ParameterResolver, check_parameters, make_plan
from hm3.merge.sparsify import ComputedMasks

log = logging.getLogger("hm3.merge")

RECIPE_FILE = "mergekit_config.yml"  # the name mergekit gives the recipe it embeds


@dataclass
class MergeSummary:
    out_dir: str
    tensors: int
    shards: int
    bytes_read: int
    bytes_written: int
    seconds: float
    files: list[str] = field(default_factory=list)


class _Inputs:
    """Readers of every input model, checked against each other before merging."""

    def __init__(self, plan: MergePlan, readers: dict | None = None):
        if readers is None:
            allow_pickle = plan.recipe.allow_pickle
            self.dirs = {ref: resolve_model_dir(ref) for ref in plan.inputs}
            readers = {
                ref: CheckpointReader(self.dirs[ref], allow_pickle=allow_pickle, label=ref)
                for ref in plan.inputs
            }
        self.readers = readers
        self.anchor = self.readers[plan.anchor]
        shapes = {
            ref: {n: info.shape for n, info in r.tensors.items()} for ref, r in self.readers.items()
        }
        check_same_tensors(
            plan.anchor, shapes[plan.anchor], [(ref, shapes[ref]) for ref in plan.rows]
        )

    def bytes_total(self) -> int:
        return sum(info.nbytes for r in self.readers.values() for info in r.tensors.values())

    def close(self) -> None:
        for reader in self.readers.values():
            reader.close()


def run_merge(
    recipe: MergeRecipe,
    out_dir: str | Path,
    *,
    max_shard_size: str | int = DEFAULT_SHARD_SIZE,
    check_outputs: bool = True,
    overwrite: bool = False,
    extra_inputs: Sequence[str | Path] = (),
) -> MergeSummary:
    """Merge the recipe's models into a Hugging Face checkpoint at ``out_dir``.

    ``overwrite``: an existing folder may be replaced, but never one the merge reads (the
    recipe's local models, its tokenizer source, ``extra_inputs`` such as the config file)."""
    start = time.perf_counter()
    max_shard_size = parse_size(max_shard_size)  # a bad size fails before any work
    protected = [*recipe_inputs(recipe), *extra_inputs]
    target = check_output_dir(
        out_dir, overwrite=overwrite, inputs=protected
    )  # before any tensor is read
    plan = make_plan(recipe)
    inputs = _Inputs(plan)
    try:
        names = inputs.anchor.names
        resolver = ParameterResolver(plan, num_hidden_layers(inputs.anchor.config(), names))
        check_parameters(plan, resolver, names)  # every parameter error surfaces before writing
        outputs = _output_infos(inputs.anchor, recipe)
        tokenizer_dir = _tokenizer_dir(recipe, plan, inputs)
        log.info(
            "merging %d tensors of %d models (%s) into %s",
            len(outputs),
            len(plan.inputs),
            recipe.merge_method,
            out_dir,
        )
        protected += [
            *inputs.dirs.values(),
            *([tokenizer_dir] if tokenizer_dir else []),
        ]  # hub models too
        with atomic_dir(target, overwrite=overwrite, inputs=protected) as tmp:
            writer = ShardedWriter(tmp, outputs, parse_size(max_shard_size))
            merger = _TensorMerger(plan, inputs, resolver, check_outputs)
            try:
                for info in outputs:
                    writer.write(info.name, merger.merge(info))
                writer.finish()
            finally:
                writer.abort()
            _write_metadata(tmp, recipe, plan, inputs, tokenizer_dir, card_title(target))
        files = sorted(p.name for p in target.iterdir())
    finally:
        inputs.close()
    return MergeSummary(
        out_dir=str(out_dir),
        tensors=len(outputs),
        shards=len(writer.shards),
        bytes_read=inputs.bytes_total(),
        bytes_written=sum(i.nbytes for i in outputs),
        seconds=time.perf_counter() - start,
        files=files,
    )


def recipe_inputs(recipe: MergeRecipe) -> list[Path]:
    """The recipe's models and tokenizer source that are paths on this machine (hub ids are not)."""
    refs = [recipe.base_model, *recipe.model_refs(), recipe.tokenizer_source]
    return [Path(ref).expanduser() for ref in refs if ref and Path(ref).expanduser().exists()]


def merge_state_dicts(
    recipe: MergeRecipe,
    models: Mapping[str, Mapping[str, torch.Tensor]],
    *,
    num_layers: int | None = None,
    check_outputs: bool = True,
) -> dict[str, torch.Tensor]:
    """Merge tensors held in memory, by the streaming engine's code path.

    ``models`` maps each model reference of the recipe to its state dict.
    ``num_layers`` sets the layer count for gradients (default: from the names).
    """
    plan = make_plan(recipe)
    missing = [ref for ref in plan.inputs if ref not in models]
    if missing:
        raise HM3Error(f"no tensors given for model {missing[0]!r}")
    config = {"num_hidden_layers": num_layers} if num_layers else {}
    readers = {ref: StateDictReader(dict(models[ref]), ref, config) for ref in plan.inputs}
    inputs = _Inputs(plan, readers)
    names = inputs.anchor.names
    resolver = ParameterResolver(plan, num_hidden_layers(inputs.anchor.config(), names))
    check_parameters(plan, resolver, names)
    merger = _TensorMerger(plan, inputs, resolver, check_outputs)
    # results may live in reused buffers: copy each one out
    return {info.name: merger.merge(info).clone() for info in _output_infos(inputs.anchor, recipe)}


def _output_infos(anchor: CheckpointReader, recipe: MergeRecipe) -> list[TensorInfo]:
    dtype = recipe.output_dtype()
    return [
        TensorInfo(
            info.name,
            info.shape,
            dtype if (dtype is not None and info.dtype.is_floating_point) else info.dtype,
            "",
        )
        for info in anchor.tensors.values()
    ]


class _TensorMerger:
    """Loads one tensor of every input and merges it; buffers are reused across tensors."""

    def __init__(
        self, plan: MergePlan, inputs: _Inputs, resolver: ParameterResolver, check_outputs: bool
    ):
        self.plan = plan
        self.inputs = inputs
        self.resolver = resolver
        self.check_outputs = check_outputs
        self.ws = Workspace()

    def _read(self, reader, name: str) -> torch.Tensor:
        return reader.get(name, self.ws.get("io", reader.tensors[name].nbytes, torch.uint8))

    def merge(self, info: TensorInfo) -> torch.Tensor:
        anchor_tensor = self._read(self.inputs.anchor, info.name)
        if not anchor_tensor.is_floating_point():
            return anchor_tensor.clone()  # integer buffers are copied from the anchor
        n = anchor_tensor.numel()
        anchor = self.ws.get("anchor", n)
        anchor.copy_(anchor_tensor.reshape(-1))
        del anchor_tensor
        check_finite(anchor, info.name, self.plan.anchor)
        deltas, stats = self._load_rows(info.name, anchor)
        tensor = _Tensor(info, deltas, stats, self.ws, self.plan)
        # the method may write its result over the anchor
        merged = self.plan.method.merge(anchor, deltas, self.resolver(info.name), tensor, anchor)
        result = self.ws.get("output", n, info.dtype).view(info.shape)
        result.copy_(merged.view(info.shape))
        if self.check_outputs:  # after the cast: float16 overflows to inf
            check_merged(result, info.name)
        return result

    def _load_rows(self, name: str, anchor: torch.Tensor):
        """Task vectors of the other inputs as float32 rows, and the method's statistics
        of each input's own weights (slerp's cosines) when it takes them."""
        rows = self.plan.rows
        method = self.plan.method
        n = anchor.numel()
        deltas = self.ws.get("deltas", len(rows) * n).view(len(rows), n)
        stats = []
        for i, ref in enumerate(rows):
            tensor = self._read(self.inputs.readers[ref], name)
            deltas[i].copy_(tensor.reshape(-1))
            del tensor
            check_finite(deltas[i], name, ref)
            if method.needs_input_stats:
                stats.append(method.input_stats(anchor, deltas[i]))
            deltas[i].sub_(anchor)
        return deltas, stats


class _Tensor:
    """The tensor being merged, as the export gives it to a method (a TensorContext):
    its rows are the export's own, so the method may prune them in place."""

    writable = True

    def __init__(
        self, info: TensorInfo, deltas: torch.Tensor, stats: list, ws: Workspace, plan: MergePlan
    ):
        self.name, self.shape = info.name, info.shape
        self.deltas, self._stats, self.ws = deltas, stats, ws
        self.who = plan.rows
        self._seed = plan.recipe.seed

    def stats(self, row: int):
        return self._stats[row]

    def masks(self) -> ComputedMasks:
        return ComputedMasks(self.deltas, self.shape, self.name, self._seed, self.ws)

    def derived(self, key, compute):
        return compute(self.deltas, self.shape)


def _tokenizer_dir(recipe: MergeRecipe, plan: MergePlan, inputs: _Inputs) -> Path | None:
    """Where tokenizer files come from: tokenizer_source, else the base (as mergekit)."""
    source = recipe.tokenizer_source
    if source is None:
        return inputs.dirs[plan.anchor]
    if source == "base":
        if not recipe.base_model:
            raise ConfigError("tokenizer_source: base needs a base_model")
        return inputs.dirs[recipe.base_model]
    if source == "union":
        raise ConfigError(
            "tokenizer_source: union (merging vocabularies) is not supported by hm3 merge; "
            "name the model whose tokenizer to copy"
        )
    directory = inputs.dirs.get(source) or resolve_model_dir(source)
    if not any(directory.glob("tokenizer*")) and not (directory / "vocab.json").exists():
        raise HM3Error(f"tokenizer_source {source!r} has no tokenizer files in {directory}")
    return directory


def _write_metadata(
    tmp: Path,
    recipe: MergeRecipe,
    plan: MergePlan,
    inputs: _Inputs,
    tokenizer_dir: Path | None,
    title: str,
) -> None:
    config = inputs.anchor.config()
    if config:
        dtype = recipe.output_dtype()
        if dtype is not None:
            name = str(dtype).removeprefix("torch.")
            config["dtype"] = name
            if "torch_dtype" in config:
                config["torch_dtype"] = name
        write_json(tmp / "config.json", config)
    generation = inputs.dirs[plan.anchor] / "generation_config.json"
    if generation.exists():
        # read_json_object: no link out of the folder (checked on input too)
        write_json(tmp / "generation_config.json", read_json_object(generation, generation.parent))
    if tokenizer_dir is not None:
        copy_tokenizer_files(tokenizer_dir, tmp)
    write_text(tmp / RECIPE_FILE, recipe_to_yaml(recipe))
    write_text(tmp / "README.md", merge_card(recipe, title))

"""The upper level's merger: the in-memory merger, or the streaming fall-back, by the memory plan.

:func:`open_merger` plans the memory (`hm3.merge.memory_plan`) and opens the
merger of the mode chosen; :class:`StreamingMerger` is the ``streaming`` mode,
the in-memory merger's interface over the streaming export.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import Mapping, Sequence

import torch
from transformers import AutoModelForCausalLM

from hm3.checkpoints.sharded import CheckpointReader, num_hidden_layers, resolve_model_dir
from hm3.core.device import dtype_name, evaluation_dtype
from hm3.core.errors import HM3Error
from hm3.core.settings import DEFAULT_MEMORY_MODE
from hm3.merge.checks import check_same_tensors
from hm3.merge.inmemory import InMemoryMerger
from hm3.merge.memory_plan import checkpoint_shapes, plan_memory
from hm3.merge.streaming import run_merge

log = logging.getLogger(__name__)


class StreamingMerger:
    """The ``streaming`` mode: the interface of `hm3.merge.InMemoryMerger` (recipe,
    apply, target), each candidate merged by the streaming export into a
    temporary folder and read into one live model, tensor by tensor.

    The candidate is written in the live model's dtype (the in-memory merger
    casts to it too), so both modes give the live model the same weights, to
    float32 rounding of the sums.
    """

    def __init__(
        self,
        base_dir: str | Path,
        expert_dirs: Sequence[str | Path],
        *,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu",
        allow_pickle: bool = False,
        trust_remote_code: bool = False,
        workdir: str | Path | None = None,
        target: torch.nn.Module | None = None,
    ):
        self.base_name, self.expert_names = str(base_dir), [str(e) for e in expert_dirs]
        self.allow_pickle, self.workdir = allow_pickle, workdir
        readers = [
            CheckpointReader(resolve_model_dir(ref), allow_pickle=allow_pickle, label=ref)
            for ref in [self.base_name, *self.expert_names]
        ]
        try:
            shapes = [{n: i.shape for n, i in r.tensors.items()} for r in readers]
            check_same_tensors(self.base_name, shapes[0], list(zip(self.expert_names, shapes[1:])))
            self.num_layers = num_hidden_layers(readers[0].config(), shapes[0])
            directory = readers[0].directory
        finally:
            for reader in readers:
                reader.close()
        if target is None:
            target = AutoModelForCausalLM.from_pretrained(
                directory, dtype=dtype, trust_remote_code=trust_remote_code
            ).to(device)
        self.target = target
        named = dict(target.named_parameters(remove_duplicate=False))
        named.update(dict(target.named_buffers()))
        missing = [n for n in shapes[0] if n not in named]
        if missing:
            raise HM3Error(
                f"tensor {missing[0]} of the checkpoints is not a parameter of the target model"
            )
        self.params = {n: named[n] for n in shapes[0]}
        self.dtype = next(iter(self.params.values())).dtype
        self.merges = 0
        self.seconds = 0.0

    def recipe(self, *args, **kwargs):
        """As `InMemoryMerger.recipe`: the same recipes over the same model references."""
        return InMemoryMerger.recipe(self, *args, **kwargs)

    def apply(self, recipe, *, check_outputs: bool = False) -> torch.nn.Module:
        """Merge the recipe to a temporary folder and read it into the live model."""
        started = time.perf_counter()
        folder = Path(tempfile.mkdtemp(prefix="hm3-candidate-", dir=self.workdir))
        try:
            out = folder / "model"
            run_merge(
                recipe.with_updates(
                    out_dtype=dtype_name(self.dtype), allow_pickle=self.allow_pickle
                ),
                out,
                check_outputs=check_outputs,
            )
            reader = CheckpointReader(out, label="the merged candidate")
            try:
                largest = max(info.nbytes for info in reader.tensors.values())
                buffer = torch.empty(largest, dtype=torch.uint8)
                with torch.no_grad():
                    for name, param in self.params.items():
                        param.copy_(reader.get(name, buffer).reshape(param.shape))
            finally:
                reader.close()
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        self.merges += 1
        self.seconds += time.perf_counter() - started
        return self.target

    def memory_bytes(self) -> dict:
        return {"output": sum(p.numel() * p.element_size() for p in self.params.values())}

    def release_caches(self) -> None:
        pass


def open_merger(
    base_dir: str | Path,
    expert_dirs: Sequence[str | Path],
    evaluation: Mapping,
    security: Mapping,
    search: Mapping | None = None,
    *,
    free_device: int | None = None,
    free_host: int | None = None,
    free_disk: int | None = None,
):
    """(merger, plan): the upper level's merger for ``evaluation.device`` and
    ``evaluation.dtype``, in the mode `plan_memory` picks (or `search.memory`
    forces), with a log line saying which and why."""
    search = search or {}
    device = torch.device(evaluation.get("device", "cpu"))
    dtype = evaluation_dtype(evaluation)
    allow_pickle, trust = (
        security.get("allow_pickle", False),
        security.get("trust_remote_code", False),
    )
    shapes = checkpoint_shapes(base_dir, allow_pickle)
    plan = plan_memory(
        shapes,
        len(expert_dirs),
        dtype,
        device,
        method=search.get("method"),
        batch_size=max(evaluation.get("batch_size", 64), evaluation.get("decode_batch_size") or 0),
        mode=search.get("memory", DEFAULT_MEMORY_MODE),
        free_device=free_device,
        free_host=free_host,
        free_disk=free_disk,
    )
    log.info(plan.describe())
    for note in plan.notes:
        (log.info if plan.fits else log.warning)("memory plan: %s", note)
    if plan.mode == "streaming":
        merger = StreamingMerger(
            base_dir,
            expert_dirs,
            dtype=dtype,
            device=device,
            allow_pickle=allow_pickle,
            trust_remote_code=trust,
        )
    else:
        host = plan.mode == "host" and device.type == "cuda"
        merger = InMemoryMerger.from_pretrained(
            base_dir,
            expert_dirs,
            allow_pickle=allow_pickle,
            trust_remote_code=trust,
            dtype=dtype,
            device=device,
            storage_dtype=dtype,
            storage_device="cpu" if host else None,
            cache_masks=plan.cache_masks,
        )
    return merger, plan

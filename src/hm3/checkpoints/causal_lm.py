"""Causal LM checkpoints: loading one from a folder (checked first; safetensors only; no
remote code unless allowed), saving one (sharded safetensors, with a model card)."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

from hm3.checkpoints.files import check_config, check_links, check_safetensors_complete
from hm3.core.errors import HM3Error
from hm3.core.io import atomic_dir


@contextlib.contextmanager
def remote_code_refused(model_dir: str | Path):
    """transformers refuses a checkpoint that brings its own Python code (``auto_map``)
    unless trust_remote_code is set; say so in hm3's terms, naming the folder and the key."""
    try:
        yield
    except ValueError as err:
        if "trust_remote_code" not in str(err):
            raise
        raise HM3Error(
            f"{model_dir}: this checkpoint needs its own Python code (auto_map in config.json); "
            "hm3 runs a model's code only with security.trust_remote_code: true"
        ) from None


def load_causal_lm(
    model_dir: str | Path, device: str = "cpu", trust_remote_code: bool = False, dtype=None
):
    """A checkpoint's model in ``dtype`` (`evaluation.dtype`: a name, ``auto`` or a torch
    dtype; default float32), eval mode, on ``device``: safetensors only, no remote code
    unless allowed. An inference path exported with layer alignment gets its scales
    applied (`hm3.checkpoints.alignment`)."""
    # hm3.evaluation.scorer imports this module, and hm3 evaluate refuses a bad model file
    # before torch or transformers is imported
    # lazy: keeps transformers off the scorer's import
    from transformers import AutoModelForCausalLM

    # lazy: imports torch (as above)
    from hm3.checkpoints.alignment import apply_alignment, load_alignment
    from hm3.core.device import resolve_dtype

    model_dir = Path(model_dir)
    shards = sorted(model_dir.glob("*.safetensors"))
    if not shards:
        raise HM3Error(f"{model_dir}: no *.safetensors weights (pickled weights are not loaded)")
    check_links(model_dir)
    shapes = {}
    for shard in shards:  # a clear message, not safetensors' own
        shapes.update(
            {name: entry["shape"] for name, entry in check_safetensors_complete(shard).items()}
        )
    # from_pretrained allocates what config.json says before it reads a weight: the sizes
    # must be sane and match the headers first
    check_config(model_dir, shapes)
    with remote_code_refused(model_dir):
        model = AutoModelForCausalLM.from_pretrained(
            model_dir,
            dtype=resolve_dtype(dtype, device),
            use_safetensors=True,
            trust_remote_code=trust_remote_code,
        )
    alignment = load_alignment(model_dir)
    model = model.to(device)
    if alignment:
        apply_alignment(model, alignment)
    return model.eval()


def save_checkpoint(
    model,
    tokenizer,
    out_dir: str | Path,
    card: str,
    max_shard_size: str = "2GB",
    extra=None,
    overwrite: bool = False,
) -> None:
    """Write model + tokenizer + README.md atomically; weights are safetensors only.
    ``extra(folder)`` may add files before the folder is moved into place; ``overwrite``:
    an existing folder may be replaced (`hm3.core.io.check_output_dir`)."""
    with atomic_dir(out_dir, overwrite=overwrite) as tmp:
        model.save_pretrained(tmp, safe_serialization=True, max_shard_size=max_shard_size)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        (tmp / "README.md").write_text(card, encoding="utf-8")
        if extra is not None:
            extra(tmp)


def read_config(model_dir: str | Path) -> dict:
    return json.loads((Path(model_dir) / "config.json").read_text())

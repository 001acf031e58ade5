"""Saving and describing Hugging Face checkpoints (safetensors, sharded, with a model card)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from hm3 import __version__
from hm3.core.io import atomic_dir


def save_checkpoint(model, tokenizer, out_dir: str | Path, card: str, max_shard_size: str = "2GB",
                    extra=None, overwrite: bool = False) -> None:
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


def model_card(title: str, summary: str, details: dict, tags: list[str] | None = None,
               base_model: str | None = None) -> str:
    """A model card: HF metadata front matter, a summary, and the recipe as YAML."""
    front = {"library_name": "transformers", "tags": ["hm3", *(tags or [])]}
    if base_model:
        front["base_model"] = base_model
    recipe = yaml.safe_dump(details, sort_keys=False, allow_unicode=True, default_flow_style=None, width=100)
    return (
        f"---\n{yaml.safe_dump(front, sort_keys=False)}---\n\n"
        f"# {title}\n\n{summary}\n\n"
        f"Made by hm3 {__version__}.\n\n"
        f"## How it was made\n\n```yaml\n{recipe}```\n"
    )


def read_config(model_dir: str | Path) -> dict:
    return json.loads((Path(model_dir) / "config.json").read_text())

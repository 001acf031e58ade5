"""README.md model cards: Hugging Face metadata front matter, then markdown."""

from __future__ import annotations

from typing import Mapping

import yaml

from hm3 import __version__


def model_card(metadata: Mapping, markdown: str) -> str:
    """A model card: ``metadata`` as the YAML front matter (in its order), then ``markdown``."""
    return f"---\n{yaml.safe_dump(metadata, sort_keys=False)}---\n{markdown}"


def recipe_card(
    title: str,
    summary: str,
    details: dict,
    tags: list[str] | None = None,
    base_model: str | None = None,
) -> str:
    """The card of a checkpoint hm3 made: a summary, and the recipe as YAML."""
    front = {"library_name": "transformers", "tags": ["hm3", *(tags or [])]}
    if base_model:
        front["base_model"] = base_model
    recipe = yaml.safe_dump(
        details, sort_keys=False, allow_unicode=True, default_flow_style=None, width=100
    )
    return model_card(
        front,
        (
            f"\n# {title}\n\n{summary}\n\n"
            f"Made by hm3 {__version__}.\n\n"
            f"## How it was made\n\n```yaml\n{recipe}```\n"
        ),
    )

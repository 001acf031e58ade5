"""The README.md model card of a merged checkpoint, embedding its YAML recipe."""

from __future__ import annotations

from pathlib import Path

from hm3.checkpoints.card import model_card
from hm3.merge.config import MergeRecipe, recipe_to_yaml
from hm3.merge.methods.registry import get_method

CARD = """# {title}

This is a merge of pre-trained language models made with hm3's merge engine, which
implements mergekit's merge methods with mergekit's configuration format.

## Merge Details

### Merge Method

This model was merged using the [{pretty}]({reference}) merge method{base_text}.

### Models Merged

The following models were included in the merge:
{model_list}

### Configuration

The following YAML configuration was used to produce this model. It runs unchanged with
`hm3 merge CONFIG.yaml OUT_DIR` and with `mergekit-yaml CONFIG.yaml OUT_DIR`
(mergekit ignores the `hm3` key).{random_note}

```yaml
{config_yaml}```
"""

RANDOM_NOTE = """ This method drops parameters at random:
hm3 seeds its masks per tensor from `hm3.seed`, so `hm3 merge` reproduces this checkpoint
exactly; mergekit draws different (equally distributed) masks."""


def merge_card(recipe: MergeRecipe, title: str) -> str:
    method = get_method(recipe.merge_method)
    models = [ref for ref in recipe.model_refs() if ref != recipe.base_model]
    front = {
        "base_model": ([recipe.base_model] if recipe.base_model else []) + models,
        "library_name": "transformers",
        "tags": ["hm3", "merge", "mergekit"],
    }
    return model_card(
        front,
        CARD.format(
            title=title,
            pretty=method.pretty_name,
            reference=method.reference,
            base_text=f" using {recipe.base_model} as a base" if recipe.base_model else "",
            model_list="\n".join(f"* {ref}" for ref in models),
            random_note=RANDOM_NOTE if method.random else "",
            config_yaml=recipe_to_yaml(recipe),
        ),
    )


def card_title(out_dir: str | Path) -> str:
    return Path(out_dir).name or "merged-model"

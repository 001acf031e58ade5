"""hm3's merge engine: mergekit's merge methods behind one interface, two modes.

- :func:`run_merge` (``hm3 merge CONFIG.yaml OUT_DIR``): streaming export of a
  recipe from (sharded) safetensors to a sharded safetensors checkpoint.
- :class:`InMemoryMerger`: build once from base + experts, then write any
  candidate merge into a live model in place (search loops).
- Recipes use mergekit's YAML dialect (:func:`load_recipe`,
  :func:`recipe_to_yaml`, :func:`render_yaml`), so every merge can be
  reproduced with mergekit itself.
"""

import importlib

# Exported names and the module defining each. They are imported on first use,
# so that `hm3 --help` (which imports hm3.cli.merge) does not load torch.
_EXPORTS = {
    "MergeRecipe": "config", "ModelEntry": "config", "load_recipe": "config",
    "loads_recipe": "config", "make_recipe": "config", "recipe_from_dict": "config",
    "recipe_to_dict": "config", "recipe_to_yaml": "config", "render_yaml": "config",
    "InMemoryMerger": "inmemory",
    "METHODS": "methods", "MergeMethod": "methods", "get_method": "methods",
    "MergeSummary": "streaming", "run_merge": "streaming", "merge_state_dicts": "streaming",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'hm3.merge' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"hm3.merge.{module}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))

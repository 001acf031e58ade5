"""hm3's merge engine: mergekit's merge methods behind one interface, two modes.

- :func:`run_merge` (``hm3 merge CONFIG.yaml OUT_DIR``): streaming export of a
  recipe from (sharded) safetensors to a sharded safetensors checkpoint.
- :class:`InMemoryMerger`: build once from base + experts, then write any
  candidate merge into a live model in place (search loops); :func:`open_merger`
  picks it, or the streaming fall-back, by the memory plan.
- Recipes use mergekit's YAML dialect (:func:`load_recipe`,
  :func:`recipe_to_yaml`, :func:`render_yaml`), so every merge can be
  reproduced with mergekit itself.
- The methods are objects in one registry (`hm3.merge.methods`).
"""

import importlib

DEFAULT_SHARD_SIZE = (
    "5GB"  # mergekit's default; here (no torch) so that `hm3 merge --help` can show it
)

# Exported names and the module defining each. Justified lazy re-export: the names are
# imported on first use, so that `hm3 --help` (which imports hm3.cli.merge, and so this
# package) does not load torch.
_EXPORTS = {
    "MergeRecipe": "config",
    "ModelEntry": "config",
    "load_recipe": "config",
    "loads_recipe": "config",
    "make_recipe": "config",
    "recipe_from_dict": "config",
    "recipe_to_dict": "config",
    "recipe_to_yaml": "config",
    "render_yaml": "config",
    "InMemoryMerger": "inmemory",
    "METHODS": "methods.registry",
    "get_method": "methods.registry",
    "MergeMethod": "methods.base",
    "StreamingMerger": "merger",
    "open_merger": "merger",
    "MemoryPlan": "memory_plan",
    "plan_memory": "memory_plan",
    "MergeSummary": "streaming",
    "run_merge": "streaming",
    "merge_state_dicts": "streaming",
}

__all__ = sorted([*_EXPORTS, "DEFAULT_SHARD_SIZE"])


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'hm3.merge' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"hm3.merge.{module}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))

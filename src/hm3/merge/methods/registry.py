"""Every merge method hm3 knows, under its mergekit name: the one list to extend.

A new method is a module in this package (a :class:`MergeMethod` subclass) and
an entry below; workflow/schemas/config.schema.yaml names the methods the
pipeline may search (tests/merge/test_method_registry.py keeps the two equal).
"""

from __future__ import annotations

from hm3.core.errors import ConfigError
from hm3.merge.methods.base import MergeMethod
from hm3.merge.methods.generalized_task_arithmetic import GeneralizedTaskArithmetic as GTA
from hm3.merge.methods.linear import LinearMerge
from hm3.merge.methods.model_stock import ModelStockMerge
from hm3.merge.methods.slerp import SlerpMerge

_TIES = "https://arxiv.org/abs/2306.01708"
_DARE = "https://arxiv.org/abs/2311.03099"
_BREADCRUMBS = "https://arxiv.org/abs/2312.06795"
_DELLA = "https://arxiv.org/abs/2406.11617"

METHODS: dict[str, MergeMethod] = {
    m.name: m
    for m in [
        LinearMerge(),
        GTA(
            "task_arithmetic",
            "Task Arithmetic",
            "https://arxiv.org/abs/2212.04089",
            sparsification=None,
            consensus=False,
            normalize=False,
            rescale=False,
        ),
        GTA(
            "ties",
            "TIES",
            _TIES,
            sparsification="magnitude",
            consensus=True,
            normalize=True,
            rescale=False,
        ),
        GTA(
            "dare_ties",
            "DARE TIES",
            _DARE,
            sparsification="random",
            consensus=True,
            normalize=False,
            rescale=True,
        ),
        GTA(
            "dare_linear",
            "Linear DARE",
            _DARE,
            sparsification="random",
            consensus=False,
            normalize=False,
            rescale=True,
        ),
        GTA(
            "breadcrumbs",
            "Model Breadcrumbs",
            _BREADCRUMBS,
            sparsification="magnitude_outliers",
            consensus=False,
            normalize=False,
            rescale=False,
        ),
        GTA(
            "breadcrumbs_ties",
            "Model Breadcrumbs with TIES",
            _BREADCRUMBS,
            sparsification="magnitude_outliers",
            consensus=True,
            normalize=False,
            rescale=False,
        ),
        GTA(
            "della",
            "DELLA",
            _DELLA,
            sparsification="della",
            consensus=True,
            normalize=True,
            rescale=True,
        ),
        GTA(
            "della_linear",
            "Linear DELLA",
            _DELLA,
            sparsification="della",
            consensus=False,
            normalize=False,
            rescale=True,
        ),
        SlerpMerge(),
        ModelStockMerge(),
    ]
}


def get_method(name: str) -> MergeMethod:
    try:
        return METHODS[name]
    except KeyError:
        known = ", ".join(sorted(METHODS))
        raise ConfigError(f"unknown merge_method {name!r}; hm3 knows: {known}") from None

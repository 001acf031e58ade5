"""The merge methods: one interface (`base.py`), one module per method or family, one registry.

Linear, the task-arithmetic family (task_arithmetic, ties, dare_*, breadcrumbs*,
della*), slerp and model_stock, with mergekit's names, parameters and semantics.
"""

from hm3.merge.methods.base import MergeMethod, TensorParams
from hm3.merge.methods.registry import METHODS, get_method

__all__ = ["METHODS", "MergeMethod", "TensorParams", "get_method"]

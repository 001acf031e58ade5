"""HM3: hierarchical multi-objective model merging."""

__version__ = "0.1.0"

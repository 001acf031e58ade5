"""lm-eval task definitions shipped with hm3 (use as an lm-eval `include_path`)."""

from __future__ import annotations

from pathlib import Path

TINY_TASKS_DIR = Path(__file__).parent / "tiny"
HUB_TASKS_DIR = Path(__file__).parent / "hub"  # search/test splits of hub datasets


def include_paths(evaluation: dict) -> list[str]:
    """Task folders lm-eval should index: hm3's tiny and hub tasks plus any the config adds."""
    extra = evaluation.get("include_path") or []
    return [str(TINY_TASKS_DIR), str(HUB_TASKS_DIR), *[str(Path(p)) for p in extra]]

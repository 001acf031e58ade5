"""The process environment every hm3 job and command starts from."""

from __future__ import annotations

import os


def offline_environment() -> None:
    """The default run never reaches a hub: scores must come from local files only."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

"""Shared test set-up: offline, and paths into the repository."""

import os
from pathlib import Path
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from _paths import REPO


@pytest.fixture
def repo() -> Path:
    return REPO


@pytest.fixture
def default_config() -> dict:
    import yaml

    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())

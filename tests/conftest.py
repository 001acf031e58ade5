"""Shared test set-up: offline, and paths into the repository."""

import json
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


@pytest.fixture
def reliability(request):
    """Record a row of docs/reliability.md: what was tried, what the user saw, what was lost.

    The row is kept in the test's junit properties; `scripts/reliability_report.py` runs
    the reliability tests and builds the table from the rows of the tests that passed.
    """
    def record(area: str, case: str, saw: str, done: str, lost: str = "nothing", count: int = 1) -> None:
        row = {"area": area, "case": case, "saw": " ".join(str(saw).split())[:300], "done": done,
               "lost": lost, "count": count}
        request.node.user_properties.append(("reliability", json.dumps(row)))

    return record

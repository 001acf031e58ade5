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

    def record(
        area: str, case: str, saw: str, done: str, lost: str = "nothing", count: int = 1
    ) -> None:
        row = {
            "area": area,
            "case": case,
            "saw": " ".join(str(saw).split())[:300],
            "done": done,
            "lost": lost,
            "count": count,
        }
        request.node.user_properties.append(("reliability", json.dumps(row)))

    return record


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory):
    """The whole workflow on the small CI config, from an empty directory (about 2.5 min)."""
    from _snakemake import run_snakemake

    workdir = tmp_path_factory.mktemp("workflow")
    proc = run_snakemake(workdir, "--cores", "2")
    assert proc.returncode == 0, proc.stderr[-4000:]
    return workdir


@pytest.fixture(scope="session")
def prepared_run(tmp_path_factory):
    """The CI config's suite built and scored, preferences and ideal point set, the training
    preferences' merges exported: the common start of the interruption and concurrency tests."""
    from _snakemake import run_snakemake

    workdir = tmp_path_factory.mktemp("prepared")
    targets = [
        "results/moo/preferences.csv",
        "results/moo/ideal.json",
        "results/param/t00/model",
        "results/param/t01/model",
    ]
    proc = run_snakemake(workdir, "--cores", "2", *targets)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return workdir

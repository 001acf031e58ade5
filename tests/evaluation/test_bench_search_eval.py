"""benchmarks/bench_search_eval.py: what an --engines entry asks for."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from bench_search_eval import engine_settings  # noqa: E402

EVALUATION = {"engine": "prepared", "batch_size": 64, "device": "cpu"}


@pytest.mark.parametrize(
    ("name", "engine", "batch_size"),
    [
        ("prepared", "prepared", 64),
        ("lm-eval", "lm-eval", 64),
        ("prepared+hf", "prepared", 64),
        ("prepared@192", "prepared", 192),
        ("prepared+hf@8", "prepared", 8),
    ],
)
def test_engine_entries_name_engine_and_batch_size(name, engine, batch_size):
    settings = engine_settings(name, EVALUATION)
    assert (settings["engine"], settings["batch_size"]) == (engine, batch_size)
    assert settings["device"] == "cpu"
    assert EVALUATION["batch_size"] == 64  # the run's settings stay as they were


def test_a_batch_size_that_is_not_a_number_is_refused():
    with pytest.raises(ValueError):
        engine_settings("prepared@many", EVALUATION)

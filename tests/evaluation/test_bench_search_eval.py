"""benchmarks/bench_search_eval.py: what an --engines entry asks for."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from bench_search_eval import engine_settings  # noqa: E402

EVALUATION = {"engine": "prepared", "batch_size": 64, "decode_batch_size": 256, "device": "cpu"}


@pytest.mark.parametrize(
    ("name", "engine", "batch_size", "decode_rows"),
    [
        ("prepared", "prepared", 64, 256),
        ("lm-eval", "lm-eval", 64, 256),
        ("prepared+hf", "prepared", 64, 256),
        ("prepared@192", "prepared", 192, None),
        ("prepared+hf@8", "prepared", 8, None),
        ("prepared@64/180", "prepared", 64, 180),
    ],
)
def test_engine_entries_name_engine_and_batch_sizes(name, engine, batch_size, decode_rows):
    settings = engine_settings(name, EVALUATION)
    assert (settings["engine"], settings["batch_size"]) == (engine, batch_size)
    assert settings["decode_batch_size"] == decode_rows
    assert settings["device"] == "cpu"
    assert EVALUATION["batch_size"] == 64  # the run's settings stay as they were


def test_a_batch_size_that_is_not_a_number_is_refused():
    with pytest.raises(ValueError):
        engine_settings("prepared@many", EVALUATION)

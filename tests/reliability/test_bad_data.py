"""Bad task data and weight vectors fail at once, naming the file and line or the
offending entry."""

import numpy as np
import pytest

from hm3.core.errors import ConfigError, HM3Error
from hm3.core.io import read_jsonl
from hm3.upper.moo import check_weights

TASKS = ["math", "code", "translation"]


@pytest.mark.parametrize(
    "text,message",
    [
        ('{"question": "1+1"}\n{"question": \n', r"test.jsonl:2: not valid JSON"),
        ('{"a": 1}\n\n[1, 2]\n', r"test.jsonl:3: expected one JSON object per line, got a list"),
        ('"just a string"\n', r"test.jsonl:1: expected one JSON object"),
    ],
)
def test_malformed_jsonl_names_file_and_line(tmp_path, text, message, reliability):
    path = tmp_path / "test.jsonl"
    path.write_text(text)
    with pytest.raises(HM3Error, match=message) as caught:
        read_jsonl(path)
    reliability(
        "bad input",
        "malformed JSONL task file",
        saw=caught.value,
        done="broken JSON, non-object lines",
    )


def test_empty_split_is_refused_naming_the_file(tmp_path, reliability):
    from hm3.evaluation.tasks.tiny.utils import load_math

    (tmp_path / "math").mkdir()
    (tmp_path / "math" / "test.jsonl").write_text("\n\n")
    with pytest.raises(ValueError, match=r"task 'math': no records in .*math/test.jsonl") as caught:
        load_math(data_dir=str(tmp_path))
    reliability(
        "bad input", "empty JSONL split", saw=caught.value, done="test.jsonl with blank lines only"
    )


def test_missing_splits_are_named(tmp_path, reliability):
    from hm3.evaluation.tasks.tiny.utils import load_code

    with pytest.raises(FileNotFoundError, match=r"no JSONL splits for task 'code'") as caught:
        load_code(data_dir=str(tmp_path))
    reliability("bad input", "task data folder missing", saw=caught.value, done="no code/ folder")


def test_unknown_lm_eval_task_is_named(reliability):
    from hm3.evaluation.scorer import Scorer, task_specs

    tasks = {
        "math": {
            "lm_eval_task": {"search": "tiny_math_typo", "test": "tiny_math"},
            "metric": "exact_match,none",
        }
    }
    with pytest.raises(HM3Error, match="lm-eval task.*not found: tiny_math_typo") as caught:
        Scorer(task_specs(tasks), "search", "results/data")
    reliability(
        "bad input",
        "lm-eval task name that does not exist",
        saw=caught.value,
        done="tiny_math_typo",
    )


@pytest.mark.parametrize(
    "weights,message",
    [
        ([0.5, 0.6, -0.1], "negative entry"),
        ([0.5, 0.6, 0.1], "sums to 1.2, not 1"),
        ([0.0, 0.0, 0.0], "sums to 0"),
        ([np.nan, 0.5, 0.5], "non-finite"),
        ([0.5, 0.5], "one entry per task"),
    ],
)
def test_weights_off_the_simplex_are_refused_with_the_task_names(weights, message, reliability):
    with pytest.raises(ConfigError, match=message) as caught:
        check_weights(weights, TASKS)
    reliability(
        "bad input",
        "weight vector off the simplex",
        saw=caught.value,
        done="negative, sum ≠ 1, all zero, NaN, wrong length",
    )

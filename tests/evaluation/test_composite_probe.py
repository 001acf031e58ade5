"""Word problems as code (hm3.models.tiny.data.math_task.as_code) and the composite
probe's parsing of generated code (benchmarks/composite_probe.py)."""

import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from composite_probe import evaluate, solved  # noqa: E402

from hm3.models.tiny.data import composite_text, generate_records
from hm3.models.tiny.data.math_task import as_code, expression


def test_steps_become_one_expression_with_the_answer():
    answer = "They picked 11 + 15 = 26 stamps.\nThey have 26 - 20 = 6 stamps left.\n#### 6"
    assert expression(answer) == "11 + 15 - 20"


@pytest.mark.parametrize(
    "answer, expected",
    [
        ("4 * 2 = 8 jars.\n8 + 6 = 14 in all.\n#### 14", "4 * 2 + 6"),
        ("3 + 4 = 7 boxes.\n7 * 5 = 35.\n#### 35", "(3 + 4) * 5"),
        ("2 * 3 = 6.\n20 - 6 = 14.\n#### 14", "20 - (2 * 3)"),
        ("18 / 3 = 6.\n#### 6", "18 // 3"),
    ],
)
def test_brackets_keep_the_order_of_the_steps(answer, expected):
    assert expression(answer) == expected
    assert evaluate(expected) == int(answer.rsplit("####", 1)[1])


def test_every_generated_problem_converts_to_its_answer():
    for record in generate_records("math", 300, seed=7):
        body = expression(record["answer"])
        assert evaluate(body) == int(record["answer"].rsplit("####", 1)[1]), record


@pytest.mark.parametrize(
    "text", ["__import__('os').system('true')", "2 ** 99999", "1 // 0", "x + 1", "return"]
)
def test_generated_text_is_parsed_not_run(text):
    assert evaluate(text) is None


def test_solved_compares_the_first_returned_line_at_several_arguments():
    assert solved("    return 3 + 4\n    return 9", "    return 7\n")
    assert not solved("    return 3 + 5", "    return 7\n")
    assert not solved("    print(7)", "    return 7\n")
    assert solved("    return n * 2 + 1", "    return 1 + 2 * n\n")
    assert not solved("    return 7", "    return n + 2\n")  # right at n = 5 only
    assert not solved("    return m + 2", "    return n + 2\n")


def test_a_problem_as_code_leaves_one_number_as_the_argument():
    record = {"question": "Ava has 3 jars of 4.", "answer": "Ava has 3 * 4 = 12.\n#### 12"}
    prompt, reference = as_code(record)
    assert prompt == 'def solve(n):\n    """Ava has n jars of 4."""\n'
    assert reference == "    return n * 4\n"
    assert composite_text("math", record) == prompt + reference
    assert as_code({"question": "?", "answer": "#### 7"}) is None
    # a number that occurs twice in the question cannot be the argument: the next one is
    twice = {"question": "Ava has 3 jars of 3 and 5.", "answer": "3 * 3 = 9.\n9 + 5 = 14.\n#### 14"}
    assert as_code(twice)[1] == "    return 3 * 3 + n\n"


def test_most_generated_problems_have_an_argument_and_keep_their_value():
    records = generate_records("math", 300, seed=7)
    pairs = [as_code(record) for record in records]
    assert sum(pair is None for pair in pairs) < 30
    for record, pair in zip(records, pairs):
        if pair is None:
            continue
        body = pair[1].removeprefix("    return ").strip()
        original = expression(record["answer"])
        # the argument stands for one number of the story: that number gives the answer
        (value,) = {
            a for a, b in zip(re.findall(r"\w+", original), re.findall(r"\w+", body)) if b == "n"
        }
        assert evaluate(body, int(value)) == int(record["answer"].rsplit("####", 1)[1]), record
        assert pair[0].startswith("def solve(n):")

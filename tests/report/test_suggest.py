"""`hm3 suggest` on a synthetic results tree: the choice, its scores, every error case."""

import pytest

from hm3.cli.main import main
from hm3.core.errors import HM3Error
from hm3.report.suggest import materialize, suggest

from _suggest_results import TASKS, write_results


@pytest.fixture
def results(tmp_path):
    return write_results(tmp_path / "results")


def test_suggest_picks_the_best_candidate_on_the_search_split(results):
    math_lover = suggest(results, "math=0.9,code=0.1")
    assert (math_lover["method"], math_lover["preference"]) == ("hm3-param", "w00")
    assert math_lover["scores_test"] == {
        "math": 0.44,
        "code": 0.18,
    }  # the test scores of that model
    assert list(math_lover["weights"]) == TASKS
    code_lover = suggest(results, "code=1")
    assert (code_lover["method"], code_lover["preference"]) == ("hm3-path", "w01")
    assert (
        code_lover["checkpoint"].endswith("paths/w01/model")
        and "M:0 code:1" in code_lover["recipe"]
    )
    assert code_lover["candidates"] == 3


@pytest.mark.parametrize(
    "weights, message",
    [
        ("physics=1", "unknown task 'physics'"),
        ("math=-0.5,code=1", ">= 0"),
        ("math=0,code=0", "all zero"),
        ("math=x", "not a number"),
    ],
)
def test_bad_weights_are_named(results, weights, message):
    with pytest.raises(HM3Error, match=message):
        suggest(results, weights)


def test_missing_results_say_what_to_run(tmp_path):
    with pytest.raises(HM3Error, match="run `snakemake --cores all` first"):
        suggest(tmp_path / "nothing", "math=1")


def test_materialize_copies_the_checkpoint_and_refuses_to_overwrite(results, tmp_path, capsys):
    out = tmp_path / "chosen"
    assert (
        main(
            ["suggest", "--weights", "math=1", "--results", str(results), "--materialize", str(out)]
        )
        == 0
    )
    assert (out / "model.safetensors").read_bytes() == b"weights"
    assert "recommended: hm3-param from preference w00" in capsys.readouterr().out
    with pytest.raises(HM3Error, match="exists"):
        materialize(suggest(results, "math=1"), out)
    assert main(["suggest", "--weights", "chemistry=1", "--results", str(results)]) == 1
    assert "unknown task 'chemistry'" in capsys.readouterr().err

"""hm3.core.layout, through which the report and `hm3 suggest` find a run's files:
templates filled in, placed under another results folder, listed with `glob`."""

from pathlib import Path

from hm3.core import layout


def test_fill_keeps_the_wildcards_it_is_not_given():
    assert (
        layout.fill(layout.PARAM_MODEL, pref="{report_pref}") == "results/param/{report_pref}/model"
    )
    assert layout.fill(layout.SCORES, split="test") == "results/scores/test/{model}.json"
    assert (
        layout.fill(layout.PATH_SUMMARY, pref="w00", report_pref="w01")
        == "results/paths/w01/search.json"
    )


def test_at_places_a_template_under_another_results_folder(tmp_path):
    assert layout.at("results", layout.PARAM_RECIPE, pref="w03") == Path(
        "results/param/w03/best.yaml"
    )
    assert layout.at(tmp_path / "run", layout.POLICY) == tmp_path / "run" / "rl" / "policy"
    assert str(layout.at(Path("results"), layout.MODEL, model="math")) == "results/models/math"


def test_glob_lists_the_files_of_a_template_sorted(tmp_path):
    for pid in ("w01", "w00", "t00"):
        (tmp_path / "param" / pid).mkdir(parents=True)
        (tmp_path / "param" / pid / "search.json").write_text("{}")
    (tmp_path / "param" / "w02").mkdir()  # no summary: not listed
    found = layout.glob(tmp_path, layout.PARAM_SUMMARY)
    assert found == [tmp_path / "param" / p / "search.json" for p in ("t00", "w00", "w01")]
    assert layout.glob(tmp_path, layout.benchmark("{name}")) == []


def test_tables_plots_logs_and_benchmarks_keep_their_names():
    assert layout.table("hv", "tex") == "results/tables/hv.tex"
    assert layout.plot("front_3d") == "results/plots/front_3d.png"
    assert layout.log("param/{pref}/search") == "logs/param/{pref}/search.log"
    assert (
        layout.benchmark("score_{split}_{model}") == "results/benchmarks/score_{split}_{model}.tsv"
    )
    assert (
        layout.compare_file("random-search", "best.yaml")
        == "results/compare/random-search/{report_pref}/best.yaml"
    )

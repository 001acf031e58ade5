"""The interactive Pareto explorer: its data, its self-containment, and the page in
headless Chromium (loads with no console error, one mark per front point, hovering
a point shows its method, λ, scores, recipe and checkpoint)."""

import html
import json

import pandas as pd
import pytest

from _browser import console_errors, render
from hm3.report.explorer import explorer_data, write_explorer

TASKS = ["math", "code", "translation"]
CONFIG = {"tasks": dict.fromkeys(TASKS, {})}


def front(methods=("hm3", "hm3-param", "hm3-path", "ties", "nsga2")) -> pd.DataFrame:
    rows = []
    for m, method in enumerate(methods):
        for i in range(3):
            row = {
                "method": method,
                "preference": f"w0{i}",
                "path": "M:0 math:1 M:2 M:3" if method == "hm3-path" else "",
            }
            for k, task in enumerate(TASKS):
                row |= {
                    f"weight.{task}": [0.8, 0.1, 0.1][(k + i) % 3],
                    f"score.{task}": 0.1 * (i + k),
                    f"norm.{task}": 0.1 + 0.07 * m + 0.2 * i * (k + 1) / 3,
                }
            rows.append(row | {"g": 0.5 - 0.1 * i, "nondominated": i != 1})
    frame = pd.DataFrame(rows)
    # nsga2 at w02 lands exactly where ties at w02 does (points of methods often coincide)
    norms = [f"norm.{t}" for t in TASKS]
    ties = frame[(frame["method"] == "ties") & (frame["preference"] == "w02")][norms].to_numpy()
    frame.loc[(frame["method"] == "nsga2") & (frame["preference"] == "w02"), norms] = ties
    return frame


@pytest.fixture
def results(tmp_path):
    results = tmp_path / "results"
    for i in range(3):
        (results / "param" / f"w0{i}").mkdir(parents=True)
        (results / "param" / f"w0{i}" / "best.yaml").write_text(
            f"merge_method: dare_ties  # w0{i} </script>\n"
        )
    (results / "baselines").mkdir()
    pd.DataFrame(
        {
            "method": "ties",
            "preference": ["w00", "w01", "w02"],
            "recipe": ["merge_method: ties\n"] * 3,
        }
    ).to_csv(results / "baselines" / "ties.csv", index=False)
    (results / "compare" / "nsga2").mkdir(parents=True)
    (results / "compare" / "nsga2" / "search.json").write_text(
        json.dumps({"picks": {f"w0{i}": {"recipe": "merge_method: dare_ties\n"} for i in range(3)}})
    )
    return results


def test_data_carries_every_point_but_the_combined_front_with_its_recipe(results):
    data = explorer_data(front(), CONFIG, results)
    assert data["tasks"] == TASKS and list(data["methods"]) == [
        "hm3-param",
        "hm3-path",
        "ties",
        "nsga2",
    ]
    param = data["methods"]["hm3-param"][1]
    assert param["recipe"].startswith("merge_method: dare_ties  # w01")
    assert param["checkpoint"].endswith("param/w01/model") and param["nondominated"] is False
    assert (
        data["methods"]["hm3-path"][0]["recipe"] == "M:0 math:1 M:2 M:3"
    )  # no path.yaml: the path itself
    assert data["methods"]["ties"][2]["recipe"] == "merge_method: ties\n"
    assert data["methods"]["nsga2"][0]["checkpoint"].startswith("not exported")


def test_page_is_self_contained(results, tmp_path):
    out = tmp_path / "explorer.html"
    summary = write_explorer(front(), CONFIG, results, out)
    text = out.read_text()
    assert summary["points"] == 12 and summary["methods"] == 4
    from plotly.offline import get_plotlyjs

    assert get_plotlyjs() in text  # plotly.js is inline ...
    ours = text.replace(get_plotlyjs(), "")
    assert "src=" not in ours and "http" not in ours  # ... and nothing else is fetched
    assert "</script>\\n" not in text.split('id="hm3-data">', 1)[1].split("</script>", 1)[0]


@pytest.mark.browser
def test_page_in_headless_chromium_draws_one_mark_per_point_and_shows_a_hovered_point(
    results, tmp_path
):
    out = tmp_path / "explorer.html"
    points = write_explorer(front(), CONFIG, results, out)["points"]
    attrs, dom, stderr = render(out, "hover=0,1")  # hm3-param at w01
    assert attrs.get("ready") == "1", dom[:2000]
    assert json.loads(html.unescape(attrs["errors"])) == [] and not console_errors(stderr)
    assert int(attrs["points"]) == points and int(attrs["marks"]) == points
    details = dom.split('id="details"', 1)[1].split("</div>", 1)[0]
    assert 'data-method="hm3-param"' in details and 'data-preference="w01"' in details
    assert 'data-x="0.2366' in details  # where it is drawn: norm.math of hm3-param (curve 0) at w01
    assert (
        "merge_method: dare_ties  # w01" in html.unescape(details) and "param/w01/model" in details
    )
    assert "math 0.100, code 0.100, translation 0.800" in details  # λ of w01


@pytest.mark.browser
def test_a_hovered_point_names_the_points_drawn_at_the_same_place(results, tmp_path):
    out = tmp_path / "explorer.html"
    write_explorer(front(), CONFIG, results, out)
    attrs, dom, _ = render(out, "hover=2,2")  # ties at w02, with nsga2 at w02 on the same spot
    details = html.unescape(dom.split('id="details"', 1)[1].split("</div>", 1)[0])
    assert 'data-preference="w02"' in details and "drawn at the same place" in details
    assert ("nsga2 w02" in details) != ('data-method="nsga2"' in details)  # the other one is named

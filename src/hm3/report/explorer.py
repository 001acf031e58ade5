"""The interactive Pareto explorer: one self-contained HTML page (plotly.js is
inlined from the plotly pip package, so it opens with no network) showing every
method's test-split points per preference. Hovering or clicking a point shows its
method, λ, scores, recipe (mergekit YAML or inference path) and checkpoint.

Why not plotly's Python figure API: the page needs our own side panel and a task
pair selector driven by a few lines of JavaScript; writing the page ourselves keeps
it one file with no template engine.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Mapping

import pandas as pd
from plotly.offline import get_plotlyjs

from hm3.compare import registry
from hm3.compare.registry import COMBINED, FAMILY, PATHS, SEARCHED
from hm3.core import layout
from hm3.core.io import write_text


def _read(path: Path) -> str | None:
    return path.read_text() if path.exists() else None


def _not_exported(hint: str) -> str:
    return f"not exported ({hint})"


def point_details(results: Path, method: str, preference: str, path_text: str) -> tuple[str, str]:
    """(recipe, checkpoint) of one front point, from the files its stage wrote."""
    if method == SEARCHED:
        recipe = layout.at(results, layout.PARAM_RECIPE, pref=preference)
        return _read(recipe) or "", str(layout.at(results, layout.PARAM_MODEL, pref=preference))
    if method == PATHS:
        return (
            _read(layout.at(results, layout.PATH_RECIPE, report_pref=preference)) or path_text,
            str(layout.at(results, layout.PATH_MODEL, report_pref=preference)),
        )
    if method == FAMILY:
        return f"the unmerged model {path_text}", str(
            layout.at(results, layout.MODEL, model=path_text)
        )
    compared = registry.BY_NAME.get(method)
    if compared is not None and compared.point != registry.POINT_PATH_ONLY:
        return _compared_details(results, compared, preference, path_text)
    table = layout.at(results, layout.BASELINE, baseline=method)
    if table.exists():
        frame = pd.read_csv(table)
        recipe = frame.loc[frame["preference"] == preference, "recipe"]
        return (recipe.iloc[0] if len(recipe) else ""), _not_exported(
            "hm3 merge on this recipe writes it"
        )
    return f"inference path: {path_text}", _not_exported("a path over the pool of this preference")


def _compared_details(
    results: Path, method: registry.Method, preference: str, path_text: str
) -> tuple[str, str]:
    """(recipe, checkpoint) of a comparison method's point, by how its registry entry says
    it records them."""

    def file(name: str) -> Path:
        return layout.at(results, method.file(name), report_pref=preference)

    if method.point == registry.POINT_EXPORTED_PATH:
        return _read(file(layout.PATH_FILE)) or path_text, str(file(layout.MODEL_DIR))
    if method.point == registry.POINT_RECIPE_FILE:
        recipe = file(layout.RECIPE_FILE)
        return _read(recipe) or "", _not_exported(f"hm3 merge {recipe} OUT_DIR writes it")
    # registry.POINT_PICKS: the one run's summary holds every λ's recipe
    summary = json.loads(_read(file(layout.SUMMARY_FILE)) or "{}")
    recipe = summary.get("picks", {}).get(preference, {}).get("recipe", "")
    return recipe, _not_exported("hm3 merge on this recipe writes it")


def explorer_data(front: pd.DataFrame, config: Mapping, results: str | Path) -> dict:
    """What the page draws: per method, its points with everything the panel shows."""
    results = Path(results)
    tasks = list(config["tasks"])
    methods = {}
    # the combined front is drawn through its parts (hm3-param, hm3-path)
    for method, group in front[front["method"] != COMBINED].groupby("method", sort=False):
        points = []
        for _, row in group.iterrows():
            path_text = row["path"] if "path" in row and isinstance(row["path"], str) else ""
            recipe, checkpoint = point_details(results, method, row["preference"], path_text)
            points.append(
                {
                    "preference": row["preference"],
                    "weights": [float(row[f"weight.{t}"]) for t in tasks],
                    "scores": [float(row[f"score.{t}"]) for t in tasks],
                    "normalized": [float(row[f"norm.{t}"]) for t in tasks],
                    "g": float(row["g"]),
                    "nondominated": bool(row["nondominated"]),
                    "recipe": recipe,
                    "checkpoint": checkpoint,
                }
            )
        methods[method] = points
    return {"tasks": tasks, "methods": methods}


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1em; }}
#layout {{ display: flex; gap: 1em; }} #plot {{ flex: 3; min-height: 560px; }}
#details {{ flex: 2; border-left: 1px solid #ccc; padding-left: 1em; font-size: 14px; }}
pre {{ background: #f6f6f6; padding: .5em; white-space: pre-wrap; max-height: 340px; overflow: auto; }}
</style>
<script>
// errors are recorded in the page itself, so a headless browser's DOM dump shows them
window.hm3Errors = [];
window.addEventListener("error", function (e) {{ window.hm3Errors.push(String(e.message)); }});
(function () {{ var original = console.error; console.error = function () {{
  window.hm3Errors.push(Array.prototype.join.call(arguments, " ")); original.apply(console, arguments); }}; }})();
</script>
<script>{plotly_js}</script>
</head><body>
<h2>{title}</h2>
<p>Normalised test-split scores of every method, one point per preference λ (outlined: non-dominated
within its method). Hover or click a point for its recipe and checkpoint.
Axes: <select id="pair"></select></p>
<div id="layout"><div id="plot"></div><div id="details"><p>No point selected.</p></div></div>
<script type="application/json" id="hm3-data">{data}</script>
<script>
(function () {{
  var data = JSON.parse(document.getElementById("hm3-data").textContent);
  var tasks = data.tasks, names = Object.keys(data.methods), gd = document.getElementById("plot");
  var pairs = [];
  for (var a = 0; a < tasks.length; a++) for (var b = a + 1; b < tasks.length; b++) pairs.push([a, b]);
  if (!pairs.length) pairs.push([0, 0]);
  var select = document.getElementById("pair");
  pairs.forEach(function (p, i) {{
    var option = document.createElement("option"); option.value = i;
    option.textContent = tasks[p[0]] + " vs " + tasks[p[1]]; select.appendChild(option); }});
  function fmt(values) {{ return tasks.map(function (t, k) {{ return t + " " + values[k].toFixed(3); }}).join(", "); }}
  function traces(pair) {{
    return names.map(function (name) {{
      var pts = data.methods[name], hm3 = name.indexOf("hm3") === 0;
      return {{ type: "scatter", mode: "markers", name: name,
        x: pts.map(function (p) {{ return p.normalized[pair[0]]; }}),
        y: pts.map(function (p) {{ return p.normalized[pair[1]]; }}),
        text: pts.map(function (p) {{ return name + " " + p.preference + "<br>λ: " + fmt(p.weights) +
          "<br>test: " + fmt(p.scores) + "<br>g: " + p.g.toFixed(4); }}),
        hoverinfo: "text",
        marker: {{ size: hm3 ? 11 : 8, opacity: hm3 ? 0.95 : 0.6,
          line: {{ width: pts.map(function (p) {{ return p.nondominated ? 1.5 : 0; }}), color: "#222" }} }} }};
    }});
  }}
  function layout(pair) {{
    return {{ xaxis: {{ title: {{ text: tasks[pair[0]] + " (normalised)" }} }},
      yaxis: {{ title: {{ text: tasks[pair[1]] + " (normalised)" }} }},
      hovermode: "closest", margin: {{ t: 20 }}, legend: {{ font: {{ size: 11 }} }} }};
  }}
  function row(label, value) {{
    var tr = document.createElement("tr"), th = document.createElement("th"), td = document.createElement("td");
    th.textContent = label; th.style.textAlign = "left"; td.textContent = value;
    tr.appendChild(th); tr.appendChild(td); return tr; }}
  // points of other methods (or preferences) with the same scores in this view:
  // the mark on top hides them, the panel names them
  function coinciding(name, p) {{
    var pair = pairs[current], out = [];
    names.forEach(function (other) {{ data.methods[other].forEach(function (q) {{
      if (q !== p && q.normalized[pair[0]] === p.normalized[pair[0]] && q.normalized[pair[1]] === p.normalized[pair[1]])
        out.push(other + " " + q.preference); }}); }});
    return out;
  }}
  function show(curve, index) {{
    var name = names[curve], p = data.methods[name][index], panel = document.getElementById("details");
    panel.innerHTML = ""; var h = document.createElement("h3"); h.textContent = name + " at " + p.preference;
    var table = document.createElement("table");
    table.appendChild(row("λ", fmt(p.weights))); table.appendChild(row("test scores", fmt(p.scores)));
    table.appendChild(row("normalised", fmt(p.normalized))); table.appendChild(row("g(·|λ)", p.g.toFixed(4)));
    table.appendChild(row("non-dominated", p.nondominated ? "yes" : "no"));
    table.appendChild(row("checkpoint", p.checkpoint));
    var same = coinciding(name, p);
    if (same.length) table.appendChild(row("drawn at the same place", same.join(", ")));
    var pre = document.createElement("pre"); pre.id = "recipe"; pre.textContent = p.recipe || "(none)";
    panel.appendChild(h); panel.appendChild(table); panel.appendChild(document.createTextNode("Recipe:"));
    panel.appendChild(pre); panel.dataset.method = name; panel.dataset.preference = p.preference;
    // where the shown point is drawn (points of several methods may coincide)
    panel.dataset.x = p.normalized[pairs[current][0]]; panel.dataset.y = p.normalized[pairs[current][1]];
  }}
  var current = 0;
  function draw(i) {{
    current = i;
    return Plotly.react(gd, traces(pairs[i]), layout(pairs[i]), {{ responsive: true, displaylogo: false }});
  }}
  select.addEventListener("change", function () {{ draw(+select.value); }});
  draw(0).then(function () {{
    gd.on("plotly_hover", function (e) {{ show(e.points[0].curveNumber, e.points[0].pointNumber); }});
    gd.on("plotly_click", function (e) {{ show(e.points[0].curveNumber, e.points[0].pointNumber); }});
    // "#hover=CURVE,POINT" moves a synthetic mouse onto that point, as a user would
    // (plotly emits plotly_hover for mouse events only): it lets a headless test hover
    var wanted = /hover=(\\d+),(\\d+)/.exec(location.hash);
    if (wanted) {{
      var mark = gd.querySelectorAll(".scatterlayer .trace")[+wanted[1]].querySelectorAll(".point")[+wanted[2]];
      var box = mark.getBoundingClientRect();
      gd.querySelector(".nsewdrag").dispatchEvent(new MouseEvent("mousemove", {{ bubbles: true,
        clientX: box.left + box.width / 2, clientY: box.top + box.height / 2 }}));
    }}
    document.body.dataset.points = names.reduce(function (n, m) {{ return n + data.methods[m].length; }}, 0);
    document.body.dataset.marks = gd.querySelectorAll(".scatterlayer .point").length;
    document.body.dataset.errors = JSON.stringify(window.hm3Errors);
    document.body.dataset.ready = "1";
  }}).catch(function (err) {{
    window.hm3Errors.push(String(err)); document.body.dataset.errors = JSON.stringify(window.hm3Errors); }});
}})();
</script>
</body></html>
"""


def write_explorer(
    front: pd.DataFrame,
    config: Mapping,
    results: str | Path,
    out_html: str | Path,
    title: str = "hm3 Pareto explorer",
) -> dict:
    """Write the page atomically; returns how many points it draws."""
    data = explorer_data(front, config, results)
    # JSON inside a <script> element: "</" would end it early
    payload = json.dumps(data, ensure_ascii=False).replace("</", "<\\/")
    page = _PAGE.format(title=html.escape(title), plotly_js=get_plotlyjs(), data=payload)
    write_text(out_html, page)
    return {
        "points": sum(len(p) for p in data["methods"].values()),
        "methods": len(data["methods"]),
        "bytes": len(page.encode()),
    }

"""HM3's two levels against the upper level alone at the same budget, across two runs.

In one run hm3-param gets the upper level's budget (`search.budget` candidates per λ)
while hm3-path spends that, its online path search and a share of the offline RL: the
run's own hv.md compares them at unequal budgets (its `candidates_per_λ` column). This
script compares a run's hm3-path with another run's hm3-param whose `search.budget`
was raised to what hm3-path spent: the same family, config and seed otherwise, so the
other run's search is the same CMA-ES carried further (its evaluation cache can be
shared: its first candidates are this run's). Test split, paired bootstrap intervals
over test items (hm3.report.intervals: every model rescored on the same draw), and per
λ a sign test of the two models' g.

    python benchmarks/matched_budget.py --workdir PATHS_RUN --reference PARAM_RUN \
        --configfile config/suites/smollm2-135m.yaml ... --out matched.json

Both runs must have finished `results/param/*/test_scores.json`; PATHS_RUN also its
path searches. --configfile: PATHS_RUN's overlays (they define tasks, λ and `moo`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from _search_session import add_configfile_argument, bench_config

LOWER_IS_BETTER = "g: lower is better"
OWN_PARAM = "hm3-param (this run)"  # the paths run's own M_λ, at its smaller budget


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, required=True, help="the run with hm3-path")
    parser.add_argument(
        "--reference", type=Path, required=True, help="the run whose hm3-param is matched"
    )
    add_configfile_argument(parser)
    parser.add_argument("--iterations", type=int, default=None, help="bootstrap draws")
    parser.add_argument("--out", type=Path, default=None, help="JSON of the figures")
    parser.add_argument(
        "--finished-only",
        action="store_true",
        help="only the λ both runs have finished (runs in progress; HV then over those λ)",
    )
    args = parser.parse_args()
    reference = args.reference.resolve()
    out = args.out.resolve() if args.out else None
    config = bench_config(args.workdir, 1, args.configfile)  # cwd: the paths run
    report = compare(config, Path("."), reference, args.iterations, args.finished_only)
    print(render(report))
    if out:
        out.write_text(json.dumps(report, indent=1, default=float) + "\n")


def compare(
    config, paths_run: Path, reference: Path, iterations: int | None = None, finished_only=False
) -> dict:
    """The figures: intervals per method, g per λ, the sign test and the budgets;
    ``finished_only``: over the λ whose files both runs have."""
    # lazy: hm3 after bench_config has set the environment
    from hm3.compare.registry import PATHS, SEARCHED
    from hm3.core import layout
    from hm3.upper.preferences import preferences

    ideal = _read(paths_run / layout.IDEAL)
    if _read(reference / layout.IDEAL) != ideal:
        sys.exit("the two runs' ideal points differ: not the same family or tasks")
    by_id = preferences(config)
    if finished_only:
        by_id = {p: w for p, w in by_id.items() if _finished(paths_run, reference, p)}
        if not by_id:
            sys.exit("no λ is finished in both runs yet")
    rows, values, per_lambda = _points(paths_run, reference, by_id, list(config["tasks"]), ideal)
    table = intervals_on_test(config, rows, values, ideal, iterations)
    budgets = _budgets(paths_run, reference, preferences(config))
    return {
        "preferences": list(by_id),
        "paths_run": str(paths_run.resolve()),
        "reference_run": str(reference),
        "intervals": table.to_dict(orient="records"),
        "level": table.attrs["level"],
        "budgets": budgets,
        "per_lambda": per_lambda,
        "sign_test": sign_test([r[PATHS] for r in per_lambda], [r[SEARCHED] for r in per_lambda]),
    }


def intervals_on_test(config, rows, values, ideal, iterations: int | None) -> pd.DataFrame:
    """hm3.report.intervals' table of ``rows`` (method, preference) with their per-item
    test ``values``: differences to hm3-param, the config's bootstrap settings."""
    # lazy: hm3 after bench_config has set the environment
    from hm3.core import layout
    from hm3.evaluation.scorer import configured_scorer
    from hm3.report.intervals import bootstrap_settings, interval_table, rescorers_for

    settings = bootstrap_settings(config)
    scorer = configured_scorer(config["tasks"], config["evaluation"], "test", layout.DATA)
    return interval_table(
        pd.DataFrame(rows),
        values,
        rescorers_for(scorer),
        config,
        ideal,
        iterations=iterations or settings.iterations,
        seed=int(config["seed"]),
        level=settings.level,
    )


def _points(paths_run: Path, reference: Path, by_id, tasks, ideal) -> tuple:
    """Per λ the three models (B's M_λ, A's M_λ, A's chosen path): the front's rows,
    their per-item test values and each λ's g."""
    # lazy: hm3 after bench_config has set the environment
    from hm3.compare.registry import PATHS, SEARCHED
    from hm3.core import layout
    from hm3.upper.preferences import scalarizer

    scalar = scalarizer(ideal)
    rows, values, per_lambda = [], [], []
    for pid, weights in by_id.items():
        matched = _read(reference / layout.PARAM_TEST_SCORES.format(pref=pid))
        own = _read(paths_run / layout.PARAM_TEST_SCORES.format(pref=pid))
        best = _read(paths_run / layout.PATH_SUMMARY.format(report_pref=pid))["best"]
        models = {
            SEARCHED: (matched["scores"], matched["item_values"]),
            OWN_PARAM: (own["scores"], own["item_values"]),
            PATHS: (best["scores_test"], best["item_values_test"]),
        }
        for method, (_, items) in models.items():
            rows.append({"method": method, "preference": pid})
            values.append(items)
        g = {
            m: float(scalar(np.array([s[t] for t in tasks]), weights))
            for m, (s, _) in models.items()
        }
        per_lambda.append({"preference": pid, "path": best["path"], "origin": best["origin"], **g})
    return rows, values, per_lambda


def _budgets(paths_run: Path, reference: Path, every) -> dict:
    """Candidates per λ of the whole reporting set, as hv.md counts them (a run in
    progress: its unfinished λ count 0, so the figures understate)."""
    # lazy: hm3 after bench_config has set the environment
    from hm3.compare.registry import PATHS, SEARCHED
    from hm3.report.budget import method_budgets

    own, other = (method_budgets(run / "results", every) for run in (paths_run, reference))
    return {
        PATHS: _budget(own, PATHS),
        OWN_PARAM: _budget(own, SEARCHED),
        SEARCHED: _budget(other, SEARCHED),
    }


def _finished(paths_run: Path, reference: Path, pid: str) -> bool:
    # lazy: hm3 after bench_config has set the environment
    from hm3.core import layout

    files = [
        reference / layout.PARAM_TEST_SCORES.format(pref=pid),
        paths_run / layout.PARAM_TEST_SCORES.format(pref=pid),
        paths_run / layout.PATH_SUMMARY.format(report_pref=pid),
    ]
    return all(f.is_file() for f in files)


def sign_test(ours, theirs) -> dict:
    """Two-sided sign test of ours < theirs (g, lower is better), ties dropped."""
    # lazy: scipy is slow to import
    from scipy.stats import binomtest

    wins = sum(a < b for a, b in zip(ours, theirs))
    losses = sum(a > b for a, b in zip(ours, theirs))
    p = binomtest(wins, wins + losses).pvalue if wins + losses else 1.0
    return {"lower": wins, "higher": losses, "ties": len(ours) - wins - losses, "p": float(p)}


def _budget(table: pd.DataFrame, method: str) -> dict:
    row = table.set_index("method").loc[method]
    return {
        "candidates_per_λ": float(row["candidates_per_λ"]),
        "amortised_per_λ": float(row["amortised_per_λ"]),
    }


def _read(path: Path) -> dict:
    if not path.is_file():
        sys.exit(f"{path} is missing: finish that run first")
    return json.loads(path.read_text())


def render(report: dict) -> str:
    """The figures as Markdown."""
    level = f"{report['level']:.0%}"
    lines = [
        f"Over {len(report['preferences'])} λ.",
        "",
        f"| method | HV test | mean g test | ΔHV [{level}] | Δ mean g [{level}] | candidates/λ |",
        "|---|---|---|---|---|---|",
    ]
    for row in report["intervals"]:
        budget = report["budgets"].get(row["method"], {})
        lines.append(
            f"| {row['method']} | {row['hv_test']:.4f} | {row['mean_g_test']:.4f} "
            f"| {_interval(row, 'delta_hv')} | {_interval(row, 'delta_mean_g')} "
            f"| {budget.get('candidates_per_λ', float('nan')):.1f} |"
        )
    lines += ["", f"Per λ ({LOWER_IS_BETTER}):", ""]
    methods = [r["method"] for r in report["intervals"]]
    lines.append("| λ | " + " | ".join(methods) + " | path's origin |")
    lines.append("|---" * (len(methods) + 2) + "|")
    for row in report["per_lambda"]:
        cells = " | ".join(f"{row[m]:.4f}" for m in methods)
        lines.append(f"| {row['preference']} | {cells} | {row['origin']} |")
    sign = report["sign_test"]
    lines += [
        "",
        f"hm3-path's g below the matched hm3-param's at {sign['lower']} λ, above at "
        f"{sign['higher']}, tied at {sign['ties']} (two-sided sign test p = {sign['p']:.3f}).",
    ]
    return "\n".join(lines)


def _interval(row, key: str) -> str:
    return f"{row[key]:+.4f} [{row[key + '_low']:+.4f}, {row[key + '_high']:+.4f}]"


if __name__ == "__main__":
    main()

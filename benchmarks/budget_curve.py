"""The upper level at several budgets: does M_λ still improve when its search goes on?

Issue 15 asks to spend the budget where it pays. Before a lower level can be credited
with a gain over M_λ, the upper level has to be near what more of its own candidates
would give. Runs of one build that differ only in `search.budget` (the same CMA-ES
carried further: its first candidates are the smaller run's, and a shared evaluation
cache serves them) answer that: per λ, M_λ's g on the search split (what the search
optimised) and on the test split, and over all λ the HV and mean g on test with paired
bootstrap intervals over test items (hm3.report.intervals) of each run's difference to
the largest budget, and a sign test of each run's per-λ test g against it.

    python benchmarks/budget_curve.py --runs RUN_7 RUN_19 RUN_31 ... \
        --configfile config/suites/smollm2-135m.yaml ... [--out curve.json]

Every run must have finished `results/param/*/test_scores.json` for the config's λ.
--configfile: the runs' shared overlays (they define tasks, λ and `moo`), relative to the
first run.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from _search_session import add_configfile_argument, bench_config
from matched_budget import LOWER_IS_BETTER, _interval, _read, sign_test, intervals_on_test


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=Path, nargs="+", required=True, help="one run per budget")
    add_configfile_argument(parser)
    parser.add_argument("--iterations", type=int, default=None, help="bootstrap draws")
    parser.add_argument("--out", type=Path, default=None, help="JSON of the figures")
    args = parser.parse_args()
    runs = [run.resolve() for run in args.runs]
    out = args.out.resolve() if args.out else None
    config = bench_config(runs[0], 1, args.configfile)
    report = curve(config, runs, args.iterations)
    print(render(report))
    if out:
        out.write_text(json.dumps(report, indent=1, default=float) + "\n")


def curve(config, runs: list[Path], iterations: int | None = None) -> dict:
    """Per run its budget, per λ its M_λ's g on search and test, and the intervals of
    every run's HV and mean g to the largest budget's."""
    # lazy: hm3 after bench_config has set the environment
    from hm3.core import layout
    from hm3.report.intervals import REFERENCE
    from hm3.upper.preferences import preferences, scalarizer

    ideal = _read(runs[0] / layout.IDEAL)
    if any(_read(run / layout.IDEAL) != ideal for run in runs[1:]):
        raise SystemExit("the runs' ideal points differ: not the same family or tasks")
    by_id, tasks, scalar = preferences(config), list(config["tasks"]), scalarizer(ideal)
    budgets = {run: _budget(run, by_id) for run in runs}
    labels = {run: f"M_λ at {budget}" for run, budget in budgets.items()}
    if len(set(labels.values())) < len(runs):
        raise SystemExit(f"two runs share a budget: {sorted(labels.values())}")
    largest = max(runs, key=budgets.get)
    method = {run: REFERENCE if run == largest else labels[run] for run in runs}
    rows, values, per_lambda = [], [], []
    for pid, weights in by_id.items():
        entry = {"preference": pid}
        for run in runs:
            test = _read(run / layout.PARAM_TEST_SCORES.format(pref=pid))
            best = _read(run / layout.PARAM_SUMMARY.format(pref=pid))["best"]
            rows.append({"method": method[run], "preference": pid})
            values.append(test["item_values"])
            entry[f"{labels[run]}.search"] = float(best["g"])
            entry[f"{labels[run]}.test"] = _g(scalar, test["scores"], tasks, weights)
        per_lambda.append(entry)
    table = intervals_on_test(config, rows, values, ideal, iterations)
    table["method"] = table["method"].replace(REFERENCE, labels[largest])
    reference = f"{labels[largest]}.test"
    return {
        "runs": [str(run) for run in runs],
        "labels": [labels[run] for run in runs],
        "largest": labels[largest],
        "level": table.attrs["level"],
        "intervals": table.to_dict(orient="records"),
        "per_lambda": per_lambda,
        "sign_tests": {
            labels[run]: sign_test(
                [r[f"{labels[run]}.test"] for r in per_lambda], [r[reference] for r in per_lambda]
            )
            for run in runs
            if run != largest
        },
    }


def _budget(run: Path, by_id) -> int:
    """The run's `search.budget`, read from its summaries (one per λ, all alike)."""
    from hm3.core import layout  # lazy: hm3 after bench_config has set the environment

    budgets = {_read(run / layout.PARAM_SUMMARY.format(pref=pid))["budget"] for pid in by_id}
    if len(budgets) != 1:
        raise SystemExit(f"{run}: the λ were searched at different budgets {sorted(budgets)}")
    return int(budgets.pop())


def _g(scalar, scores, tasks, weights) -> float:
    return float(scalar(np.array([scores[t] for t in tasks]), weights))


def render(report: dict) -> str:
    """The figures as Markdown."""
    level = f"{report['level']:.0%}"
    to = report["largest"]
    lines = [
        f"Over {len(report['per_lambda'])} λ; differences to {to} (test, paired bootstrap).",
        "",
        f"| upper level | HV test | mean g test | ΔHV [{level}] | Δ mean g [{level}] | g test lower / higher / tied than {to} (p) |",
        "|---|---|---|---|---|---|",
    ]
    by_label = {row["method"]: row for row in report["intervals"]}
    for label in report["labels"]:
        row, sign = by_label[label], report["sign_tests"].get(label)
        signs = (
            f"{sign['lower']} / {sign['higher']} / {sign['ties']} ({sign['p']:.2f})" if sign else ""
        )
        lines.append(
            f"| {label} | {row['hv_test']:.4f} | {row['mean_g_test']:.4f} | "
            f"{_interval(row, 'delta_hv')} | {_interval(row, 'delta_mean_g')} | {signs} |"
        )
    lines += ["", f"g of M_λ per λ, search → test ({LOWER_IS_BETTER}):", ""]
    lines.append("| λ | " + " | ".join(report["labels"]) + " |")
    lines.append("|---" * (len(report["labels"]) + 1) + "|")
    for entry in report["per_lambda"]:
        cells = [f"{entry[f'{b}.search']:.4f} → {entry[f'{b}.test']:.4f}" for b in report["labels"]]
        lines.append(f"| {entry['preference']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()

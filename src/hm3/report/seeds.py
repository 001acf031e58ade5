"""The seeds protocol: the whole run repeated over method seeds and a second family, and
the headline figures as mean ± sd with every run's value.

One run is an anecdote: a method's HV moves with its own random choices (`seed`) and
with the family it merges (`tiny.seed`). The `seeds` target (workflow/rules/seeds.smk)
runs the workflow once per entry of `seed_runs` in its own folder, `results/seeds/{run}/`
(except the run with the parent's own seeds, which is the parent's run: `is_parent_run`),
then `seeds_tables` reads their `hv.csv` and `paths_vs_param.csv` (`run_tables`).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from hm3.compare.registry import PATHS, SEARCHED
from hm3.core.layout import seed_result

METRICS = ("hv_test", "igd_plus_test", "mean_g_test")


def suite_seed(config: Mapping) -> int:
    """The family's seed: `tiny.seed`, or `seed` where it is null."""
    tiny = config.get("tiny", {}).get("seed")
    return int(tiny if tiny is not None else config["seed"])


def seed_runs(config: Mapping) -> dict[str, dict]:
    """Run id -> the overrides of that run: one run per method seed on the configured
    family, then one per extra family seed (at the first method seed)."""
    protocol = config.get("protocol", {})
    method_seeds = [int(s) for s in protocol.get("method_seeds", [config["seed"]])]
    family = suite_seed(config)
    runs = {f"seed-{s}": {"seed": s, "tiny_seed": family} for s in method_seeds}
    for other in protocol.get("family_seeds", []):
        runs[f"family-{int(other)}"] = {"seed": method_seeds[0], "tiny_seed": int(other)}
    return runs


def shares_family(config: Mapping, overrides: Mapping) -> bool:
    """Whether a run merges the parent's own family (the method seeds' runs): its data,
    tokenizer and models are then the parent's files, linked, not built again (the same
    config and seed build the same files: tests/reliability/test_determinism.py)."""
    return int(overrides["tiny_seed"]) == suite_seed(config)


def is_parent_run(config: Mapping, overrides: Mapping) -> bool:
    """Whether a run has the parent's own seeds: its config is the parent's (less the
    protocol section), so the parent's results are that run's (the same config gives the
    same results on one machine: tests/reliability/test_determinism.py), and the seeds
    target reads them instead of running the whole workflow a second time."""
    return int(overrides["seed"]) == int(config["seed"]) and shares_family(config, overrides)


def run_tables(config: Mapping, template: str) -> list[str]:
    """Per run of `seed_runs`, in order, where its ``template`` table (results/...) is:
    the parent's own for the parent's seeds, else inside the run's folder."""
    return [
        template if is_parent_run(config, overrides) else seed_result(run, template)
        for run, overrides in seed_runs(config).items()
    ]


def run_config(config: Mapping, overrides: Mapping) -> dict:
    """The whole config of one run: the parent's, with its seeds set (and without the
    protocol section, so that a run does not plan runs of its own)."""
    out = copy.deepcopy(dict(config))
    out["seed"] = overrides["seed"]
    out.setdefault("tiny", {})["seed"] = overrides["tiny_seed"]
    out.pop("protocol", None)
    return out


def mean_interval(values: np.ndarray, level: float = 0.95) -> dict:
    """Mean, sample sd and Student's t interval of the mean over the runs (none for one)."""
    # lazy: scipy is slow to import and only the seeds tables need it
    from scipy import stats

    mean = float(np.mean(values))
    if len(values) < 2:
        return {"mean": mean, "sd": 0.0, "ci_low": float("nan"), "ci_high": float("nan")}
    sd = float(np.std(values, ddof=1))
    half = float(stats.t.ppf(0.5 + level / 2, len(values) - 1)) * sd / np.sqrt(len(values))
    return {"mean": mean, "sd": sd, "ci_low": mean - half, "ci_high": mean + half}


def seeds_table(hv_files: Mapping[str, str | Path]) -> pd.DataFrame:
    """Per method and metric: every run's value, their mean, sample sd and 95% t interval;
    then per method the same for its difference to hm3-param in the same run
    (``delta_<metric>``: paired over runs, so a family's difficulty cancels)."""
    frames = {run: pd.read_csv(path).set_index("method") for run, path in hv_files.items()}
    methods = list(dict.fromkeys(m for f in frames.values() for m in f.index))
    rows = []
    for difference in (False, True):
        for method in methods:
            if difference and method == SEARCHED:
                continue
            for metric in METRICS:
                values = _run_values(frames, method, metric, difference)
                if values:
                    rows.append(
                        {
                            "method": method,
                            "metric": f"delta_{metric}" if difference else metric,
                            **mean_interval(np.array(list(values.values()))),
                            **values,
                        }
                    )
    return pd.DataFrame(rows)


def _run_values(frames: Mapping, method: str, metric: str, difference: bool) -> dict:
    """Each run's value of the metric (minus hm3-param's, for a difference)."""
    values = {}
    for run, frame in frames.items():
        if method not in frame.index or metric not in frame.columns:
            continue
        if difference and SEARCHED not in frame.index:
            continue
        value = float(frame.loc[method, metric])
        values[run] = value - float(frame.loc[SEARCHED, metric]) if difference else value
    return values


def path_claims(
    hv_files: Mapping[str, str | Path], path_files: Mapping[str, str | Path]
) -> pd.DataFrame:
    """Per run, the architecture level's figures the testbed issue asks for: HV of
    hm3-path over hm3-param, the λ whose path is not the identity, and the λ where the
    path's test g is lower / higher than M_λ's; a last row pools them with a one-sided
    sign test (is the path's g lower more often than chance?)."""
    # lazy: scipy is slow to import and only this table needs it
    from scipy.stats import binomtest

    rows = []
    for run, hv_file in hv_files.items():
        hv = pd.read_csv(hv_file).set_index("method")["hv_test"]
        table = pd.read_csv(path_files[run])
        table = table[table["preference"] != "mean"]
        path_g, anchor_g = table["g_test.hm3_path"], table["g_test.M_lambda"]
        rows.append(
            {
                "run": run,
                "hv_ratio_path_over_param": float(hv[PATHS] / hv[SEARCHED])
                if hv[SEARCHED] > 0
                else float("nan"),
                "preferences": len(table),
                "path_not_identity": int((table["found_by"] != "identity").sum()),
                "path_lower_g": int((path_g < anchor_g - 1e-12).sum()),
                "path_higher_g": int((path_g > anchor_g + 1e-12).sum()),
            }
        )
    frame = pd.DataFrame(rows)
    lower, higher = int(frame["path_lower_g"].sum()), int(frame["path_higher_g"].sum())
    p = (
        binomtest(lower, lower + higher, 0.5, alternative="greater").pvalue
        if lower + higher
        else 1.0
    )
    pooled = {
        "run": "pooled",
        "hv_ratio_path_over_param": float(frame["hv_ratio_path_over_param"].mean()),
        "preferences": int(frame["preferences"].sum()),
        "path_not_identity": int(frame["path_not_identity"].sum()),
        "path_lower_g": lower,
        "path_higher_g": higher,
        "sign_test_p": float(p),
    }
    return pd.concat([frame, pd.DataFrame([pooled])], ignore_index=True)

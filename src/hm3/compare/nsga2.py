"""``nsga2``: one pymoo NSGA-II run over the merge method's hyper-parameters with the
task scores as objectives, ``search.budget`` × (number of reporting λ) candidates in
all; each λ then takes the candidate with the best search objective."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd
from pymoo.algorithms.moo.nsga2 import NSGA2 as NSGA2Algorithm
from pymoo.core.population import Population
from pymoo.core.problem import Problem
from pymoo.core.termination import NoTermination

from hm3.compare.common import param_space, progress, tested, write_outputs
from hm3.compare.settings import compare_budget
from hm3.core import layout
from hm3.core.seeds import derive_seed
from hm3.evaluation.racing import DominanceRule, PicksRule
from hm3.merge.config import recipe_to_yaml
from hm3.upper.param_search import MergeSession
from hm3.upper.preferences import preferences, scalarizer
from hm3.upper.search import ask_tell
from hm3.upper.settings import augmentation, search_settings

NAME = "nsga2"  # also its seed label: never rename


STOP_RULES = ("picks", "dominance")


def nsga2_front(
    config: Mapping, ideal_file: str | Path, out_dir: str | Path, stop_rule: str = "picks"
) -> dict:
    """One multi-objective NSGA-II run over the merge hyper-parameters (objectives:
    the normalised search-split scores), `compare.budget` per reporting λ in all;
    each λ then picks its best candidate by the searches' objective.

    With racing on, ``stop_rule`` "picks" stops a candidate once it cannot become any
    λ's pick (`PicksRule`, the per-λ searches' rule over all λ at once); "dominance"
    (the rule before it, kept for `benchmarks/bench_nsga2_racing.py`) only once a fully
    scored candidate dominates it, which stopped almost nothing."""
    if stop_rule not in STOP_RULES:
        raise ValueError(f"stop_rule must be one of {STOP_RULES}, got {stop_rule!r}")
    started = time.time()
    ideal = json.loads(Path(ideal_file).read_text())
    prefs = preferences(config)
    section = search_settings(config)
    budget = compare_budget(config) * len(prefs)
    seed = derive_seed(config["seed"], NAME)
    objective, plain = scalarizer(ideal, augmentation(config)), scalarizer(ideal)
    session = MergeSession(config, "search", layout.MODELS, section.method)
    space = param_space(config, session)
    # the first population is the naive merge of every reporting λ, as HM3's searches start from it
    starts = np.stack([space.start(w, section.start) for w in prefs.values()])
    problem = Problem(
        n_var=len(space.lower), n_obj=len(session.tasks), xl=space.lower, xu=space.upper
    )
    algorithm = NSGA2Algorithm(
        pop_size=len(starts), sampling=Population.new(X=starts), eliminate_duplicates=True
    )
    algorithm.setup(problem, termination=NoTermination(), seed=seed, verbose=False)
    rows, recipes = [], []
    objectives = [
        (lambda scores, w=weights: float(objective(scores, w))) for weights in prefs.values()
    ]
    incumbents: list[float | None] = [None] * len(objectives)  # each λ's best full score

    def stop_rule_now():
        if stop_rule == "picks":
            return PicksRule(objectives, list(incumbents), targets=objective.best_scores)
        front = [
            {t: row[f"score.{t}"] for t in session.tasks} for row in rows if row["fidelity"] >= 1.0
        ]
        return DominanceRule(front)

    def evaluate(x, generation):
        recipe = session.recipe(space.method, space.decode(x), space.fixed, seed)
        result = session.evaluate(recipe, stop_rule_now())
        if float(result.get("fidelity", 1.0)) >= 1.0:
            for k, value in enumerate(f(result["scores"]) for f in objectives):
                if incumbents[k] is None or value < incumbents[k]:
                    incumbents[k] = value
        recipes.append(recipe)
        rows.append(
            {
                "candidate": len(rows),
                "generation": generation,
                **{f"score.{t}": v for t, v in result["scores"].items()},
                "cached": result["cached"],
                "fidelity": float(result.get("fidelity", 1.0)),
                "recipe": recipe_to_yaml(recipe),
            }
        )
        bar.update(1)
        return -objective.normalizer.vector(result["scores"])

    bar = progress(budget, NAME)
    try:
        ask_tell(algorithm, problem, budget, lambda: len(rows), evaluate)
    finally:
        bar.close()
        session.close()
    frame = pd.DataFrame(rows)
    raw = frame[[f"score.{t}" for t in session.tasks]].to_numpy(float)
    picks = {}
    partial = frame["fidelity"].to_numpy() < 1.0  # racing's partial scores are never picked
    for pid, weights in prefs.items():
        values = np.where(partial, np.inf, objective(raw, weights))
        index = int(np.argmin(values))  # the first of equals
        scores = dict(zip(session.tasks, raw[index].tolist()))
        picks[pid] = {
            "candidate": index,
            "objective": float(values[index]),
            "g_search": float(plain(scores, weights)),
            "scores_search": scores,
            "recipe": rows[index]["recipe"],
        }
    on_test = tested(
        config, {i: recipes[i] for i in sorted({p["candidate"] for p in picks.values()})}
    )
    for pid, pick in picks.items():
        test = on_test[pick["candidate"]]
        pick.update(**test, g_test=float(plain(test["scores_test"], prefs[pid])))
    summary = {
        "method": NAME,
        "budget": budget,
        "population": len(starts),
        "generations": int(frame["generation"].max()) + 1,
        "evaluated": session.evaluator.evaluations,
        "raced_out": session.evaluator.raced_out,
        "stop_rule": stop_rule,
        "item_evaluations": session.evaluator.items,
        "test_evaluations": len(on_test),
        "seed": seed,
        "wall_seconds": round(time.time() - started, 1),
        "picks": picks,
    }
    write_outputs(frame, summary, out_dir)
    return summary


def rule_job(
    config: Mapping, preference: None, inputs: Mapping, out_dir: str, params: Mapping
) -> dict:
    """The summary without the per-λ picks (the log's line)."""
    return {k: v for k, v in nsga2_front(config, inputs["ideal"], out_dir).items() if k != "picks"}

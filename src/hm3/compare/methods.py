"""The comparison methods of the paper's tables, on HM3's preferences, splits and
evaluation budget (every candidate counts, cached or not, as in HM3's searches):

* ``random-search``: per λ, uniform random dare_ties hyper-parameters (the naive
  merge first, as HM3's CMA-ES), ``search.budget`` candidates;
* ``nsga2``: one pymoo NSGA-II run over the same dare_ties hyper-parameters with the
  task scores as objectives, ``search.budget`` × (number of reporting λ) candidates
  in all; each λ then takes the candidate with the best search objective;
* ``evo-dataflow``: per λ, CMA-ES over a layer-indicator array in the style of
  Akiba et al.'s data-flow-space merging (layer t of the model sequence is run when
  its indicator is positive), ``search.budget`` candidates;
* ``hm3-no-param``: HM3 without its parameter level, the online path search of
  `hm3.lower.level` with the unmerged base in M_λ's place (see `workflow/rules/compare.smk`).

HM3 without its architecture level is ``hm3-param`` (the M_λ alone), already on the
front. Each function writes candidates.csv and search.json (with the chosen
candidate's test scores) for one method, atomically.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Mapping

import numpy as np

from hm3.core.io import atomic_file, write_json
from hm3.upper.moo import check_weights
from hm3.core.seeds import derive_seed
from hm3.upper.level import MergeSession, experts_by_task, preference_weights, preferences, scalarizer

RANDOM_SEARCH = "random-search"
NSGA2 = "nsga2"
DATAFLOW = "evo-dataflow"


def _progress(total: int, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, mininterval=2.0)


def _space(config: Mapping, session: MergeSession):
    from hm3.upper.search import ParamSpace

    section = config["search"]
    return ParamSpace(section["method"], tuple(session.tasks), {k: tuple(v) for k, v in section["space"].items()},
                      dict(section.get("parameters", {})))


def _write(frame, summary: Mapping, out_dir: str | Path) -> None:
    out_dir = Path(out_dir)
    with atomic_file(out_dir / "candidates.csv") as handle:
        frame.to_csv(handle, index=False, float_format="%.6f")
    write_json(out_dir / "search.json", summary)


def _test_scores(config: Mapping, recipes: Mapping[str, object]) -> dict[str, dict]:
    """Test-split scores of merge recipes (by key), through the evaluation cache."""
    session = MergeSession(config, "test")
    try:
        return {key: session.evaluate(recipe)["scores"] for key, recipe in recipes.items()}
    finally:
        session.close()


# ------------------------------------------------------------------ random search
def random_search(config: Mapping, preference: str, ideal_file: str | Path, out_dir: str | Path) -> dict:
    """Per-λ random search over the merge method's hyper-parameters, HM3's budget."""
    from hm3.merge import load_recipe
    from hm3.upper.level import run_param_search

    out_dir = Path(out_dir)
    summary = run_param_search(config, preference, ideal_file, out_dir / "candidates.csv", out_dir / "best.yaml",
                               out_dir / "search.json", algorithm="random", label=RANDOM_SEARCH)
    recipe = load_recipe(out_dir / "best.yaml")
    scores = _test_scores(config, {"best": recipe})["best"]
    weights = np.array(list(summary["weights"].values()))
    plain = scalarizer(json.loads(Path(ideal_file).read_text()))
    summary["best"].update(scores_test=scores, g_test=float(plain(scores, weights)))
    summary["test_evaluations"] = 1
    write_json(out_dir / "search.json", summary)
    return summary


# ------------------------------------------------------------------ NSGA-II
def nsga2_front(config: Mapping, ideal_file: str | Path, out_dir: str | Path) -> dict:
    """One multi-objective NSGA-II run over the merge hyper-parameters (objectives:
    the normalised search-split scores), HM3's total budget over the reporting λ;
    each λ then picks its best candidate by the searches' objective."""
    import pandas as pd
    from pymoo.algorithms.moo.nsga2 import NSGA2 as NSGA2Algorithm
    from pymoo.core.population import Population
    from pymoo.core.problem import Problem
    from pymoo.core.termination import NoTermination

    from hm3.merge import recipe_to_yaml
    from hm3.upper.search import ask_tell

    started = time.time()
    ideal = json.loads(Path(ideal_file).read_text())
    prefs = preferences(config)
    section = config["search"]
    budget = int(section["budget"]) * len(prefs)
    seed = derive_seed(config["seed"], "nsga2")
    objective, plain = scalarizer(ideal, config["moo"].get("augmentation", 0.0)), scalarizer(ideal)
    session = MergeSession(config, "search")
    space = _space(config, session)
    # the first population is the naive merge of every reporting λ, as HM3's searches start from it
    starts = np.stack([space.start(w, section.get("start", {})) for w in prefs.values()])
    problem = Problem(n_var=len(space.lower), n_obj=len(session.tasks), xl=space.lower, xu=space.upper)
    algorithm = NSGA2Algorithm(pop_size=len(starts), sampling=Population.new(X=starts), eliminate_duplicates=True)
    algorithm.setup(problem, termination=NoTermination(), seed=seed, verbose=False)
    rows, recipes = [], []

    def evaluate(x, generation):
        recipe = session.recipe(space.method, space.decode(x), space.fixed, seed)
        result = session.evaluate(recipe)
        recipes.append(recipe)
        rows.append({"candidate": len(rows), "generation": generation,
                     **{f"score.{t}": v for t, v in result["scores"].items()}, "cached": result["cached"],
                     "recipe": recipe_to_yaml(recipe)})
        bar.update(1)
        return -objective.normalizer.vector(result["scores"])

    bar = _progress(budget, "nsga2")
    try:
        ask_tell(algorithm, problem, budget, lambda: len(rows), evaluate)
    finally:
        bar.close()
        session.close()
    frame = pd.DataFrame(rows)
    raw = frame[[f"score.{t}" for t in session.tasks]].to_numpy(float)
    picks = {}
    for pid, weights in prefs.items():
        values = objective(raw, weights)
        index = int(np.argmin(values))  # the first of equals
        scores = dict(zip(session.tasks, raw[index].tolist()))
        picks[pid] = {"candidate": index, "objective": float(values[index]), "g_search": float(plain(scores, weights)),
                      "scores_search": scores, "recipe": rows[index]["recipe"]}
    tested = _test_scores(config, {i: recipes[i] for i in sorted({p["candidate"] for p in picks.values()})})
    for pid, pick in picks.items():
        pick.update(scores_test=tested[pick["candidate"]], g_test=float(plain(tested[pick["candidate"]], prefs[pid])))
    summary = {"method": NSGA2, "budget": budget, "population": len(starts),
               "generations": int(frame["generation"].max()) + 1,
               "evaluated": session.evaluator.evaluations, "test_evaluations": len(tested), "seed": seed,
               "wall_seconds": round(time.time() - started, 1), "picks": picks}
    _write(frame, summary, out_dir)
    return summary


# ------------------------------------------------------------------ evolutionary data-flow merging
def layer_sequence(depths, repeats: int) -> list[tuple[int, int]]:
    """Akiba et al.'s layer sequence: every model's layers in order, model after
    model, the whole repeated ``repeats`` times; an indicator array selects from it."""
    return [(m, layer) for _ in range(repeats) for m, depth in enumerate(depths) for layer in range(depth)]


def indicator_path(x: np.ndarray, sequence, max_length: int | None = None):
    """The layers whose indicator is positive, in sequence order; the strongest one
    when none is (a path needs a layer); the ``max_length`` strongest at most."""
    from hm3.lower.inference_path import as_path

    chosen = [i for i in range(len(sequence)) if x[i] > 0] or [int(np.argmax(x))]
    if max_length and len(chosen) > max_length:
        chosen = sorted(sorted(chosen, key=lambda i: -x[i])[:max_length])
    return as_path([sequence[i] for i in chosen])


def dataflow_search(config: Mapping, preference: str, ideal_file: str | Path, base_dir: str | Path,
                    out_dir: str | Path) -> dict:
    """Per-λ CMA-ES over a layer-indicator array across the experts and the base (the
    base's embeddings and head frame every path), HM3's per-λ budget. It starts from
    the stack of the expert λ leans to most."""
    from pymoo.algorithms.soo.nonconvex.cmaes import CMAES
    from pymoo.core.problem import Problem
    from pymoo.core.termination import NoTermination

    from hm3.lower.level import CandidateLog, PoolFactory, parse_path, rl_settings
    from hm3.upper.search import ask_tell

    started = time.time()
    tasks = list(config["tasks"])
    weights = check_weights(preference_weights(config, preference), tasks)
    ideal = json.loads(Path(ideal_file).read_text())
    settings = config.get("compare", {}).get("dataflow", {})
    budget = int(config["search"]["budget"])
    seed = derive_seed(config["seed"], DATAFLOW, preference)
    factory = PoolFactory(config)
    try:
        pool = factory.pool(base_dir)
        sequence = layer_sequence(pool.depths, int(settings.get("repeats", 1)))
        max_length = settings.get("max_length") or rl_settings(config).t_max  # as long as HM3's paths
        favourite = factory.names.index(experts_by_task(config)[int(np.argmax(weights))][1])
        x0 = np.array([0.5 if m == favourite else -0.5 for m, _ in sequence])
        problem = Problem(n_var=len(sequence), n_obj=1, xl=-np.ones(len(sequence)), xu=np.ones(len(sequence)))

        def cmaes(start: np.ndarray, algorithm_seed: int):
            algorithm = CMAES(x0=start, sigma=float(settings.get("sigma", 0.3)),
                              popsize=config["search"].get("popsize", 8), restarts=0)
            algorithm.setup(problem, termination=NoTermination(), seed=algorithm_seed, verbose=False)
            return algorithm

        def restart(count: int):  # CMA-ES stopped on flat scores: again from the best point
            best = min(range(len(points)), key=lambda i: (candidates.rows[i]["objective"], i))
            return cmaes(points[best], derive_seed(seed, "restart", str(count)))

        points: list[np.ndarray] = []
        plain = scalarizer(ideal)
        candidates = CandidateLog(factory.evaluator(pool, base_dir, "search"), pool.names, weights,
                                  scalarizer(ideal, config["moo"].get("augmentation", 0.0)), plain)

        def evaluate(x, _generation):
            points.append(np.asarray(x, dtype=float))
            candidates.score("cma-es", indicator_path(x, sequence, max_length))
            bar.update(1)
            return candidates.rows[-1]["objective"]

        bar = _progress(budget, f"{DATAFLOW} {preference}")
        try:
            ask_tell(cmaes(x0, seed), problem, budget, lambda: len(candidates.rows), evaluate, restart)
        finally:
            bar.close()
        best = candidates.best()
        on_test = factory.evaluator(pool, base_dir, "test")
        test = on_test.evaluate(parse_path(best["path"], pool.names))
    finally:
        factory.close()
    summary = {"method": DATAFLOW, "preference": preference, "weights": dict(zip(tasks, weights.tolist())),
               "budget": budget, "sequence_length": len(sequence), "max_length": max_length, "seed": seed,
               "evaluations": candidates.evaluator.evaluator.evaluations,
               "test_evaluations": on_test.evaluator.evaluations,
               "wall_seconds": round(time.time() - started, 1),
               "best": {"path": best["path"], "objective_search": float(best["objective"]),
                        "g_search": float(best["g"]),
                        "scores_test": test["scores"], "g_test": float(plain(test["scores"], weights))}}
    _write(candidates.frame(), summary, out_dir)
    return summary

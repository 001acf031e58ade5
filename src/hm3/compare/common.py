"""What the comparison methods share: the merge search space, the progress bar, the
test-split scores of chosen recipes, and writing candidates.csv and search.json."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

from tqdm import tqdm

from hm3.core import layout
from hm3.core.io import atomic_file, write_json
from hm3.upper.param_search import MergeSession
from hm3.upper.search import ParamSpace
from hm3.upper.settings import search_settings


def progress(total: int, desc: str):
    return tqdm(total=total, desc=desc, mininterval=2.0)


def param_space(config: Mapping, session: MergeSession) -> ParamSpace:
    """The upper level's search space (`search`): the same hyper-parameters as HM3's searches."""
    section = search_settings(config)
    return ParamSpace(
        section.method,
        tuple(session.tasks),
        {k: tuple(v) for k, v in section.space.items()},
        dict(section.parameters),
    )


def write_outputs(frame, summary: Mapping, out_dir: str | Path) -> None:
    """candidates.csv and search.json of one method, atomically."""
    out_dir = Path(out_dir)
    with atomic_file(out_dir / layout.CANDIDATES_FILE) as handle:
        frame.to_csv(handle, index=False, float_format="%.6f")
    write_json(out_dir / layout.SUMMARY_FILE, summary)


def tested(config: Mapping, recipes: Mapping[str, object]) -> dict[str, dict]:
    """Merge recipes (by key) of the search's method on the test split, through the
    evaluation cache: per key, the {scores_test, item_values_test} a summary records."""
    session = MergeSession(config, "test", layout.MODELS, search_settings(config).method)
    try:
        results = {key: session.evaluate(recipe) for key, recipe in recipes.items()}
    finally:
        session.close()
    return {
        key: {"scores_test": r["scores"], "item_values_test": r.get("item_values")}
        for key, r in results.items()
    }

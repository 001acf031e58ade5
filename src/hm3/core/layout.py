"""Where a run's files live: every `results/...` and `logs/...` path, in one place.

The templates keep Snakemake's wildcards (``{model}``, ``{pref}``, ...): the rules
(workflow/rules/*.smk, through common.smk) use them as they are, the library and the
report fill them in. `fill` substitutes some wildcards and keeps the others; `at`
places a template under another results folder (``hm3 suggest --results DIR``);
`glob` lists a finished run's files of one template.
"""

from __future__ import annotations

import re
from pathlib import Path

RESULTS = "results"
LOGS = "logs"
BENCHMARKS = "results/benchmarks"  # Snakemake's `benchmark:` files, one per job (hm3.report.cost)
# the default evaluation cache (config `evaluation.cache`)
CACHE = "results/cache/evaluations.sqlite"

# ------------------------------------------------------------------ data and the model family
DATA = "results/data"
TASK_SPLIT = "results/data/{task}/{split}.jsonl"
TOKENIZER = "results/tiny/tokenizer"
TINY_MODEL = "results/tiny/models/{model}"
MODELS = "results/models"
MODEL = "results/models/{model}"
SCORES = "results/scores/{split}/{model}.json"

# ------------------------------------------------------------------ upper level
PREFERENCES = "results/moo/preferences.csv"
IDEAL = "results/moo/ideal.json"
PARAM = "results/param"
PARAM_CANDIDATES = "results/param/{pref}/candidates.csv"
PARAM_RECIPE = "results/param/{pref}/best.yaml"
PARAM_SUMMARY = "results/param/{pref}/search.json"
PARAM_MODEL = "results/param/{pref}/model"
PARAM_TEST_SCORES = "results/param/{pref}/test_scores.json"
BASELINE = "results/baselines/{baseline}.csv"
BASELINE_ITEMS = "results/baselines/{baseline}_items.json"  # per-item test values

# ------------------------------------------------------------------ lower level
POLICY = "results/rl/policy"
RL_LOG = "results/rl/train_log.csv"
RL_SUMMARY = "results/rl/training.json"
PATH_MODEL = "results/paths/{report_pref}/model"
PATH_CANDIDATES = "results/paths/{report_pref}/candidates.csv"
PATH_RECIPE = "results/paths/{report_pref}/path.yaml"
PATH_SUMMARY = "results/paths/{report_pref}/search.json"
# the ablation without the parameter level trains its own policy, on pools anchored on
# the base (hm3.compare.no_param); its folder is beside the method's per-λ folders
NO_PARAM_RL = "results/compare/hm3-no-param/rl"
NO_PARAM_POLICY = f"{NO_PARAM_RL}/policy"
NO_PARAM_RL_LOG = f"{NO_PARAM_RL}/train_log.csv"
NO_PARAM_RL_SUMMARY = f"{NO_PARAM_RL}/training.json"
NO_PARAM_RL_PLOT = f"{NO_PARAM_RL}/rl_training.png"

# ------------------------------------------------------------------ the report
PARAM_FRONT = "results/pareto/param_front.csv"
PARAM_HV = "results/pareto/param_hv.csv"
PARAM_HV_MD = "results/pareto/param_hv.md"
FRONT = "results/pareto/front.csv"
EXPLORER = "results/report/explorer.html"


def table(name: str, ext: str = "csv") -> str:
    """A results table (CSV, Markdown or LaTeX) by name: results/tables/{name}.{ext}."""
    return f"{RESULTS}/tables/{name}.{ext}"


def plot(name: str) -> str:
    return f"{RESULTS}/plots/{name}.png"


# ------------------------------------------------------------------ the seeds protocol
# each run of `snakemake seeds` is a whole workflow in its own folder (hm3.report.seeds)
SEEDS = "results/seeds"
SEED_CONFIG = "results/seeds/{run}/config.yaml"
# written once a run's folder holds the parent's model family (hard links): the list of it
SEED_FAMILY = "results/seeds/{run}/shared_family.txt"


def seed_folder(run: str) -> str:
    """The working directory of one run of the seeds protocol."""
    return f"{SEEDS}/{run}"


def seed_result(run: str, template: str) -> str:
    """A file of that run: ``template`` (results/...) inside its folder."""
    return f"{seed_folder(run)}/{template}"


# ------------------------------------------------------------------ comparison methods
# a comparison method's folder is results/compare/{method}/{report_pref} for a method run
# per λ, results/compare/{method} for one run over every λ; the files it may write there
CANDIDATES_FILE = "candidates.csv"
SUMMARY_FILE = "search.json"
RECIPE_FILE = "best.yaml"
PATH_FILE = "path.yaml"
MODEL_DIR = "model"


def compare_file(method: str, name: str, per_preference: bool = True) -> str:
    return (
        f"{RESULTS}/compare/{method}/{{report_pref}}/{name}"
        if per_preference
        else f"{RESULTS}/compare/{method}/{name}"
    )


def compare_log(method: str, per_preference: bool = True) -> str:
    return (
        f"{LOGS}/compare/{method}/{{report_pref}}.log"
        if per_preference
        else f"{LOGS}/compare/{method}.log"
    )


def compare_benchmark(stem: str, per_preference: bool = True) -> str:
    return benchmark(f"{stem}_{{report_pref}}" if per_preference else stem)


# ------------------------------------------------------------------ logs and benchmarks of the rules
def log(name: str) -> str:
    """A rule's log: logs/{name}.log (``name`` may hold wildcards)."""
    return f"{LOGS}/{name}.log"


def benchmark(stem: str) -> str:
    """A rule's benchmark file: results/benchmarks/{stem}.tsv; hm3.report.cost reads the
    stage from ``stem``."""
    return f"{BENCHMARKS}/{stem}.tsv"


# ------------------------------------------------------------------ helpers
_WILDCARD = re.compile(r"\{(\w+)\}")


def fill(template: str, **values) -> str:
    """The template with the named wildcards filled in; the other wildcards are kept."""
    return _WILDCARD.sub(
        lambda m: str(values[m.group(1)]) if m.group(1) in values else m.group(0), template
    )


def at(results: str | Path, template: str, **values) -> Path:
    """A file of the run whose results folder is ``results``: the template (which starts
    at results/) filled in and placed there."""
    relative = Path(fill(template, **values)).relative_to(RESULTS)
    return Path(results) / relative


def glob(results: str | Path, template: str) -> list[Path]:
    """A finished run's files of one template (every wildcard left matches one name), sorted."""
    pattern = _WILDCARD.sub("*", str(Path(template).relative_to(RESULTS)))
    return sorted(Path(results).glob(pattern))

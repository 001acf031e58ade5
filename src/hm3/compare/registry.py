"""Every method of the report, in one place: the comparison methods run beside HM3
(`METHODS`, one entry each) and HM3's own points and references (the names below).

An entry says everything the pipeline and the report need of a comparison method:
its code (``hm3.compare.<module>``, whose ``rule_job`` its Snakemake rule runs), its
rule, the files it writes, its benchmark file and cost-table stage, its row label
in the HV table, its anytime-HV curve and how the explorer shows its points. Adding
a method is a module, an entry here and its config keys (the schema's
`compare.methods` enum lists exactly these names: tests/compare).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Mapping

from hm3.core import layout

# ------------------------------------------------------------------ HM3's own points and the references
COMBINED = "hm3"  # every upper- and lower-level point: HM3's front
SEARCHED = "hm3-param"  # the per-λ searched merges M_λ
PATHS = "hm3-path"  # the best inference path per λ (architecture level over M_λ)
# per λ, the base or expert with the best g on the search split (front.csv's `path`
# column names the model picked)
FAMILY = "best single model"
RANDOM_PATHS = "random-paths"  # a comparison method (below) that works over M_λ
NAIVE_MERGES = ("task_arithmetic", "ties", "dare_ties")  # the `baselines` of the default config

# what each of them is, for the HV table (the paper's ablation table)
OWN_KINDS = {
    # one model per λ, as every other row: what HM3 answers for λ (the path, or M_λ where
    # no path beat it by the margin); the union has two points per λ and is >= hm3-param
    # by construction, so it is an extra row, labelled as such
    COMBINED: "extra row: union of hm3-param and hm3-path points",
    SEARCHED: "ablation: no architecture level",
    PATHS: "HM3 (one model per λ)",
    FAMILY: "baseline: one of the family",
    **dict.fromkeys(NAIVE_MERGES, "naive merge"),
}

# ------------------------------------------------------------------ how the explorer shows a method's points
POINT_RECIPE_FILE = "recipe file"  # best.yaml in the method's folder; no checkpoint written
POINT_PICKS = "picks"  # each λ's recipe in search.json's picks; no checkpoint written
POINT_EXPORTED_PATH = "exported path"  # path.yaml and the exported model in the method's folder
POINT_PATH_ONLY = "path only"  # the inference path of the front's `path` column; nothing written


@dataclass(frozen=True)
class Method:
    name: str  # the `method` of the front and of every table
    kind: str  # what it is: the HV table's `kind`
    module: str  # hm3.compare.<module>: its `rule_job` is what the rule runs
    rule: str  # its Snakemake rule, also its key in config `resources`
    benchmark: str  # its benchmark file stem (+ "_{report_pref}" per λ)
    stage: str  # its row of the cost table
    outputs: Mapping[
        str, str
    ]  # rule output name -> file in its folder (layout.MODEL_DIR: a folder)
    per_preference: bool = True  # one job per reporting λ, or one run for every λ (per-λ picks)
    inputs: tuple[
        str, ...
    ] = ()  # read beside the models, the data and the ideal point: "base", "base_policy",
    # "anchor" (this λ's searched merge M_λ), "path_budget" (this λ's online path search)
    anytime: str | None = None  # its curve in the anytime-HV table
    point: str = POINT_PATH_ONLY  # how the explorer finds a point's recipe and checkpoint

    def file(self, name: str) -> str:
        """A file of its folder, as a layout template (``{report_pref}`` per λ)."""
        return layout.compare_file(self.name, name, self.per_preference)

    @property
    def log(self) -> str:
        return layout.compare_log(self.name, self.per_preference)

    @property
    def benchmark_file(self) -> str:
        return layout.compare_benchmark(self.benchmark, self.per_preference)

    @property
    def benchmark_pattern(self) -> str:
        """The regular expression of its benchmark file stems (hm3.report.cost)."""
        return rf"{self.benchmark}_[\w-]+$" if self.per_preference else rf"{self.benchmark}$"

    @property
    def exports(self) -> bool:
        """Whether it writes a checkpoint (its rule then takes `max_shard_size`)."""
        return layout.MODEL_DIR in self.outputs.values()

    def run(
        self,
        config: Mapping,
        preference: str | None,
        inputs: Mapping,
        out_dir: str,
        params: Mapping,
    ):
        """What its rule runs: its module's ``rule_job`` (imported by name, so that reading
        the registry loads none of the methods' code); returns what the rule's log prints."""
        return importlib.import_module(f"hm3.compare.{self.module}").rule_job(
            config, preference, inputs, out_dir, params
        )


METHODS = (
    Method(
        "random-search",
        "baseline: random search",
        module="random_search",
        rule="random_search",
        benchmark="compare_random_search",
        stage="baseline: random search",
        outputs={
            "candidates": layout.CANDIDATES_FILE,
            "recipe": layout.RECIPE_FILE,
            "summary": layout.SUMMARY_FILE,
        },
        anytime="random search",
        point=POINT_RECIPE_FILE,
    ),
    Method(
        "nsga2",
        "baseline: NSGA-II",
        module="nsga2",
        rule="nsga2",
        benchmark="compare_nsga2",
        stage="baseline: NSGA-II",
        outputs={"candidates": layout.CANDIDATES_FILE, "summary": layout.SUMMARY_FILE},
        per_preference=False,
        anytime="NSGA-II (one run for all λ)",
        point=POINT_PICKS,
    ),
    Method(
        "evo-dataflow",
        "baseline: evolutionary data-flow",
        module="dataflow",
        rule="dataflow_search",
        benchmark="compare_dataflow",
        stage="baseline: evolutionary data-flow",
        outputs={"candidates": layout.CANDIDATES_FILE, "summary": layout.SUMMARY_FILE},
        inputs=("base",),
        anytime="evolutionary data-flow (CMA-ES)",
        point=POINT_PATH_ONLY,
    ),
    Method(
        "hm3-no-param",
        "ablation: no parameter level",
        module="no_param",
        rule="no_param_paths",
        benchmark="compare_no_param",
        stage="ablation: HM3 without parameter level",
        outputs={
            "model": layout.MODEL_DIR,
            "candidates": layout.CANDIDATES_FILE,
            "recipe": layout.PATH_FILE,
            "summary": layout.SUMMARY_FILE,
        },
        inputs=("base_policy", "base"),
        anytime="HM3 without parameter level",
        point=POINT_EXPORTED_PATH,
    ),
    # the architecture level's own baseline: as many distinct random valid paths over
    # {experts, M_λ} as HM3's online search scored for that λ (its budget counts M_λ's
    # search too); its anytime curve continues the upper level's (hm3.report.paper)
    Method(
        RANDOM_PATHS,
        "baseline: random paths over M_λ",
        module="random_paths",
        rule="random_paths",
        benchmark="random_paths",
        stage="random-path baseline",
        outputs={"candidates": layout.CANDIDATES_FILE, "summary": layout.SUMMARY_FILE},
        inputs=("anchor", "path_budget"),
        point=POINT_PATH_ONLY,
    ),
)
BY_NAME = {m.name: m for m in METHODS}
BY_RULE = {m.rule: m for m in METHODS}

# every method of the report and what it is (the HV table's `kind`; "" for any other)
KINDS = {**OWN_KINDS, **{m.name: m.kind for m in METHODS}}


def names() -> list[str]:
    """The comparison methods' names, in the registry's order (the schema's enum)."""
    return [m.name for m in METHODS]


def cost_order() -> list[Method]:
    """The comparison methods as the cost table lists them: HM3's ablations, then the baselines."""
    return sorted(METHODS, key=lambda m: not m.kind.startswith("ablation"))

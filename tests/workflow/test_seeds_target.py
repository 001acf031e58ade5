"""The seeds target plans one whole workflow per run, each with its own seeds."""

import pytest
import yaml
from _snakemake import job_stats, run_snakemake

FAMILY_JOBS = {
    "generate_task_data",
    "train_tokenizer",
    "train_base",
    "train_expert",
    "acquire_model",
}


def test_the_seeds_target_plans_its_runs_and_writes_their_configs(tmp_path):
    work = tmp_path / "work"
    plan = run_snakemake(work, "-n", "seeds", timeout=300)
    assert plan.returncode == 0, plan.stderr[-3000:]
    jobs = job_stats(plan.stdout)
    # the run with the parent's seeds (1234) is the default run itself, planned here;
    # the other two method seeds' runs start from the parent's family, built here once;
    # the second family's run builds its own
    assert {k: v for k, v in jobs.items() if k.startswith("seed")} == {
        "seed_config": 3,
        "seed_family": 2,
        "seed_run": 3,
        "seeds_table": 1,
        "seeds": 1,
    }
    assert {"search_params", "search_path", "front"} <= set(jobs), jobs
    # the default target runs none of it
    assert "seed_run" not in job_stats(run_snakemake(work, "-n", timeout=300).stdout)

    configs = [f"results/seeds/{run}/config.yaml" for run in ("seed-2345", "family-4321")]
    made = run_snakemake(work, "--cores", "1", *configs, timeout=300)
    assert made.returncode == 0, made.stderr[-3000:]
    method, family = (yaml.safe_load((work / c).read_text()) for c in configs)
    assert (method["seed"], method["tiny"]["seed"]) == (2345, 1234)
    assert (family["seed"], family["tiny"]["seed"]) == (1234, 4321)
    assert "protocol" not in method
    # each run's config plans a whole workflow of its own, in its folder
    child = run_snakemake(work / "results/seeds/seed-2345", "-n", configfile=work / configs[0])
    assert child.returncode == 0, child.stderr[-3000:]
    assert {"search_params", "search_path", "front"} <= set(job_stats(child.stdout))


@pytest.mark.slow
def test_a_method_seeds_run_reuses_the_parents_family_instead_of_training_it(tmp_path):
    work = tmp_path / "work"
    run = "results/seeds/seed-2345"
    made = run_snakemake(work, "--cores", "2", f"{run}/shared_family.txt", f"{run}/config.yaml")
    assert made.returncode == 0, made.stderr[-3000:]
    # the same files (hard links), not copies, as old as the parent's
    for path in ("results/models/base/config.json", "results/data/math/test.jsonl"):
        mine, parents = (work / run / path).stat(), (work / path).stat()
        assert mine.st_ino == parents.st_ino and mine.st_mtime_ns == parents.st_mtime_ns
    child = run_snakemake(work / run, "-n", configfile=work / run / "config.yaml")
    assert child.returncode == 0, child.stderr[-3000:]
    planned = job_stats(child.stdout)
    assert not FAMILY_JOBS & set(planned), planned
    assert {"score_model", "search_params", "search_path", "front"} <= set(planned)

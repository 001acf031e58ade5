"""The seeds target plans one whole workflow per run, each with its own seeds."""

import yaml
from _snakemake import job_stats, run_snakemake


def test_the_seeds_target_plans_its_runs_and_writes_their_configs(tmp_path):
    work = tmp_path / "work"
    plan = run_snakemake(work, "-n", "seeds", timeout=300)
    assert plan.returncode == 0, plan.stderr[-3000:]
    jobs = job_stats(plan.stdout)
    assert jobs == {"seed_config": 4, "seed_run": 4, "seeds_table": 1, "seeds": 1}
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

"""Train the path policy again on a finished run's pools, with agent settings changed.

The offline training of `rule train_policy` (hm3.lower.training.train_policy) over the
run's training preferences and their M_λ, with `--set KEY=VALUE` overrides of the
run's config (YAML values: `--set rl.agent.actions=free --set rl.agent.imitation_steps=0`),
written to `--out`. It prints what says whether the policy learns: the reward's first
and last quarter (mean, sd), the distinct greedy paths over 200 unseen λ, the
evaluations and the wall time. The run's evaluation cache serves paths it has scored.

    python benchmarks/rl_variants.py --workdir RUN --out DIR [--set KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import yaml


def override(config: dict, assignment: str) -> None:
    key, _, value = assignment.partition("=")
    if not value:
        raise SystemExit(f"--set wants KEY=VALUE, not {assignment!r}")
    *parents, leaf = key.split(".")
    section = config
    for name in parents:
        section = section.setdefault(name, {})
    section[leaf] = yaml.safe_load(value)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True, help="a finished run's folder")
    parser.add_argument("--out", required=True, help="folder for the policy, log and summary")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--config", default="config/config.yaml", help="relative to --workdir")
    args = parser.parse_args()
    out = Path(args.out).resolve()
    os.chdir(args.workdir)

    # lazy: hm3 and torch after the arguments are checked (`--help` stays instant)
    from hm3.core.config import validate_config
    from hm3.lower.training import train_policy
    from hm3.upper.preferences import training_preferences

    config = yaml.safe_load(Path(args.config).read_text())
    for assignment in args.set:
        override(config, assignment)
    validate_config(config, "workflow/schemas/config.schema.yaml")
    anchors = {pid: f"results/param/{pid}/model" for pid in training_preferences(config)}
    missing = [d for d in anchors.values() if not Path(d).is_dir()]
    if missing:
        raise SystemExit(f"not a finished run: missing {', '.join(missing)}")
    out.mkdir(parents=True, exist_ok=True)
    summary = train_policy(
        config,
        "results/moo/ideal.json",
        anchors,
        out / "policy",
        out / "train_log.csv",
        out / "rl_training.png",
        out / "training.json",
        overwrite=True,
    )
    shown = ("reward_", "distinct_", "evaluations", "wall_seconds", "episodes")
    print(json.dumps({k: v for k, v in summary.items() if k.startswith(shown)}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

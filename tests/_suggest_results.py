"""A synthetic finished results tree for `hm3 suggest` (tests/report, tests/reliability)."""

import json

from hm3.upper.moo import Normalizer

TASKS = ["math", "code"]


def write_results(root):
    """Two reporting preferences; w00 leans to math, w01 to code; w01 also has a path;
    one RL training preference t00 with a searched merge only."""
    (root / "moo").mkdir(parents=True)
    (root / "moo" / "preferences.csv").write_text(
        "preference,math,code,set\nw00,0.8,0.2,reporting\nw01,0.2,0.8,reporting\n"
        "t00,0.9,0.1,training\n"
    )
    normalizer = Normalizer.build("ideal", TASKS, {"math": 0.5, "code": 0.8})
    ideal = {
        "ideal": {"code": 0.8, "math": 0.5},
        "scalarization": "tchebycheff",
        "normalizer": normalizer.to_dict(),
    }
    (root / "moo" / "ideal.json").write_text(json.dumps(ideal))
    for pid, search, test in [
        ("w00", {"math": 0.45, "code": 0.2}, {"math": 0.44, "code": 0.18}),
        ("w01", {"math": 0.1, "code": 0.6}, {"math": 0.12, "code": 0.62}),
    ]:
        folder = root / "param" / pid
        (folder / "model").mkdir(parents=True)
        (folder / "model" / "config.json").write_text("{}")
        (folder / "model" / "model.safetensors").write_bytes(b"weights")
        (folder / "search.json").write_text(json.dumps({"best": {"scores": search}}))
        (folder / "test_scores.json").write_text(json.dumps({"scores": test}))
        (folder / "best.yaml").write_text(f"merge_method: dare_ties\n# {pid}\n")
    # an RL training λ's merge: searched, never exported, never scored on test; it scores
    # best of all on the search split, so a suggestion that offered it would show here
    training = root / "param" / "t00"
    training.mkdir(parents=True)
    (training / "search.json").write_text(
        json.dumps({"best": {"scores": {"math": 0.5, "code": 0.8}}})
    )
    paths = root / "paths" / "w01"
    (paths / "model").mkdir(parents=True)
    (paths / "model" / "config.json").write_text("{}")
    (paths / "search.json").write_text(
        json.dumps(
            {
                "best": {
                    "path": "M:0 code:1",
                    "scores_search": {"math": 0.1, "code": 0.7},
                    "scores_test": {"math": 0.1, "code": 0.66},
                }
            }
        )
    )
    return root

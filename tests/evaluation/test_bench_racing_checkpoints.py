"""bench_racing's checkpoints (benchmarks/bench_racing.py): the picks a search had after
its first N candidates per λ, compared with its final ones."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import bench_racing  # noqa: E402


def _run(seed, racing, checkpoints):
    kept = {
        str(count): {"trace": [[count * 10, {"a": score}, {}]], "test_items": {"a": [score]}}
        for count, score in checkpoints.items()
    }
    return {
        "seed": seed,
        "racing": racing,
        "preferences": {
            "w1": {
                "weights": [1.0],
                "trace": [[5, {"a": 0.1}, {}], [90, {"a": 0.5}, {}]],
                "test_items": {"a": [0.5]},
                "checkpoints": kept,
            }
        },
    }


def test_at_checkpoint_takes_the_pick_kept_then():
    run = _run(1, False, {4: 0.3})
    early = bench_racing.at_checkpoint(run, "4")
    assert early["preferences"]["w1"]["trace"][-1][1] == {"a": 0.3}
    assert early["preferences"]["w1"]["weights"] == [1.0]
    assert run["preferences"]["w1"]["trace"][-1][1] == {"a": 0.5}  # the run is not changed
    assert bench_racing.at_checkpoint(run, "9") is None  # no such checkpoint


def test_checkpoint_summary_pairs_each_seed_with_its_own_checkpoint(monkeypatch):
    monkeypatch.setattr(
        bench_racing, "paired_interval", lambda pairs, *a: {"hv": [0.0, 0.1], "g": [-0.1, 0.0]}
    )

    def final(run):
        (score,) = (p["trace"][-1][1]["a"] for p in run["preferences"].values())
        return score, 1.0 - score

    runs = [_run(1, False, {4: 0.3}), _run(2, False, {4: 0.4}), _run(1, True, {})]
    (entry,) = bench_racing.checkpoint_summary(runs, ["a"], None, None, 10, final)
    assert entry["racing"] is False and entry["candidates"] == 4
    assert [s["hv"] for s in entry["seeds"]] == [[0.3, 0.5], [0.4, 0.5]]
    assert abs(entry["t_hv"]["mean"] - 0.15) < 1e-12

"""Compare hm3's merges with mergekit's on the same configs and the same checkpoints.

Needs mergekit installed in a separate virtual environment (never in hm3's):

    python -m venv /tmp/mkvenv
    /tmp/mkvenv/bin/pip install torch==2.13.0 mergekit
    python benchmarks/compare_mergekit.py --mergekit-venv /tmp/mkvenv

It builds small random Llama checkpoints (float32) in a temporary directory,
runs every config through ``mergekit-yaml`` and through ``hm3.merge.run_merge``
and prints a table:

- deterministic methods: the largest absolute difference over all tensors
  (pass: <= 1e-5);
- random methods (dare, della): mergekit's RNG differs from hm3's, so single-
  expert merges are compared by statistics: the kept fraction (pass: within
  1% of the density, for both tools), and the rescale exactness (the output
  equals base + s * (tau * mask) with s the L1 ratio |tau|_1 / |tau * mask|_1,
  mergekit's RescaleNorm.l1; pass: max abs difference <= 1e-5).
  For della, the kept fraction among the largest and the smallest magnitudes
  is printed for both tools (larger magnitudes must be kept more often).

``--real BASE EXPERT...`` also merges real checkpoints cast to bfloat16 (task_arithmetic,
ties at densities 0.4 and 0.7) and splits the elements where the tools differ by cause:
a tie at the top-k threshold, one bfloat16 step of arithmetic, or neither (docs/merge.md).

Not part of the test suite: it needs a mergekit install.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from hm3.merge import make_recipe, recipe_to_yaml, run_merge  # noqa: E402

EXPERTS = ["expert_a", "expert_b", "expert_c"]
DETERMINISTIC_TOLERANCE = 1e-5


def build_models(root: Path, hidden: int, layers: int, vocab: int) -> None:
    """A random Llama base and three experts: base + noise of different sizes."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=vocab,
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    base = LlamaForCausalLM(config).float()
    base.save_pretrained(root / "base")
    for i, name in enumerate(EXPERTS):
        expert = LlamaForCausalLM(config).float()
        expert.load_state_dict(base.state_dict())
        with torch.no_grad():
            for param in expert.parameters():
                param.add_(torch.randn_like(param) * 0.02 * (i + 1))
        expert.save_pretrained(root / name)


def model(root: Path, name: str) -> str:
    return str(root / name)


def deterministic_configs(root: Path) -> dict[str, dict]:
    """Configs exercising every deterministic method and the parameter forms."""
    b = model(root, "base")
    a, e2, e3 = (model(root, n) for n in EXPERTS)
    return {
        "linear": dict(
            merge_method="linear",
            models=[(a, {"weight": 0.5}), (e2, {"weight": 0.3}), (e3, {"weight": 0.2})],
        ),
        "linear (base, no normalize)": dict(
            merge_method="linear",
            base_model=b,
            models=[(b, {"weight": 0.4}), (a, {"weight": 0.7}), (e2, {"weight": [0.1, 0.9]})],
            parameters={"normalize": False},
        ),
        "task_arithmetic": dict(
            merge_method="task_arithmetic",
            base_model=b,
            models=[
                (a, {"weight": 0.5}),
                (e2, {"weight": [0.2, 0.8]}),
                (e3, {"weight": [{"filter": "mlp", "value": 0.9}, {"value": 0.1}]}),
            ],
        ),
        "task_arithmetic (normalize, lambda)": dict(
            merge_method="task_arithmetic",
            base_model=b,
            models=[(a, {"weight": 0.5}), (e2, {"weight": 0.3}), (e3, {"weight": -0.2})],
            parameters={"normalize": True, "lambda": 0.7},
        ),
        "ties": dict(
            merge_method="ties",
            base_model=b,
            models=[
                (a, {"weight": 0.5, "density": 0.3}),
                (e2, {"weight": 0.3, "density": [0.2, 0.9]}),
                (e3, {"weight": 0.4, "density": 0.6}),
            ],
        ),
        "ties (no normalize, int8_mask, neg weight)": dict(
            merge_method="ties",
            base_model=b,
            models=[
                (a, {"weight": 1.0, "density": 0.5}),
                (e2, {"weight": -0.5, "density": 0.5}),
                (e3, {"weight": 0.7, "density": 0.1}),
            ],
            parameters={"normalize": False, "int8_mask": True, "lambda": 1.3},
        ),
        "breadcrumbs": dict(
            merge_method="breadcrumbs",
            base_model=b,
            models=[
                (a, {"weight": 0.5, "density": 0.4, "gamma": 0.05}),
                (e2, {"weight": 0.3, "density": 0.8, "gamma": 0.1}),
                (e3, {"weight": 0.4, "density": 0.5}),
            ],
        ),
        "breadcrumbs_ties": dict(
            merge_method="breadcrumbs_ties",
            base_model=b,
            models=[
                (a, {"weight": 0.5, "density": 0.4, "gamma": 0.05}),
                (e2, {"weight": 0.3, "density": 0.8, "gamma": 0.1}),
                (e3, {"weight": 0.4, "density": 0.5}),
            ],
            parameters={"normalize": True},
        ),
        "breadcrumbs (rescale)": dict(
            merge_method="breadcrumbs",
            base_model=b,
            models=[
                (a, {"weight": 0.5, "density": 0.4, "gamma": 0.05}),
                (e2, {"weight": 0.3, "density": 0.6}),
            ],
            parameters={"rescale": True},
        ),
        "slerp": dict(
            merge_method="slerp",
            base_model=b,
            models=[(a, {})],
            parameters={
                "t": [
                    {"filter": "self_attn", "value": [0, 0.5, 0.3, 0.7, 1]},
                    {"filter": "mlp", "value": [1, 0.5, 0.7, 0.3, 0]},
                    {"value": 0.5},
                ]
            },
        ),
        "model_stock": dict(
            merge_method="model_stock", base_model=b, models=[(a, {}), (e2, {}), (e3, {})]
        ),
        "model_stock (filter_wise)": dict(
            merge_method="model_stock",
            base_model=b,
            models=[(a, {}), (e2, {}), (e3, {})],
            parameters={"filter_wise": True},
        ),
    }


def random_configs(root: Path) -> dict[str, dict]:
    """Single-expert merges: the output's delta is the kept, rescaled task vector."""
    b, a = model(root, "base"), model(root, "expert_a")
    return {
        "dare_linear": dict(
            merge_method="dare_linear", base_model=b, models=[(a, {"weight": 1.0, "density": 0.3})]
        ),
        "dare_ties": dict(
            merge_method="dare_ties", base_model=b, models=[(a, {"weight": 1.0, "density": 0.3})]
        ),
        "della": dict(
            merge_method="della",
            base_model=b,
            models=[(a, {"weight": 1.0, "density": 0.3, "epsilon": 0.2})],
        ),
        "della_linear": dict(
            merge_method="della_linear",
            base_model=b,
            models=[(a, {"weight": 1.0, "density": 0.3, "epsilon": 0.2})],
        ),
    }


def load_dir(directory: Path) -> dict[str, torch.Tensor]:
    tensors = {}
    for path in sorted(directory.glob("*.safetensors")):
        tensors.update(load_file(path))
    return tensors


def run_mergekit(venv: Path, config_path: Path, out: Path, seed: int) -> float:
    start = time.perf_counter()
    command = [
        str(venv / "bin" / "mergekit-yaml"),
        str(config_path),
        str(out),
        "--random-seed",
        str(seed),
        "--no-copy-tokenizer",
        "--quiet",
        "--no-write-model-card",
    ]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"mergekit failed on {config_path}:\n{result.stderr[-3000:]}")
    return time.perf_counter() - start


def run_both(venv: Path, root: Path, label: str, spec: dict):
    recipe = make_recipe(dtype="float32", seed=1, **spec)
    slug = "".join(c if c.isalnum() else "_" for c in label)
    config_path = root / f"{slug}.yaml"
    config_path.write_text(recipe_to_yaml(recipe))
    run_mergekit(venv, config_path, root / f"mk_{slug}", seed=1)
    run_merge(recipe, root / f"hm3_{slug}")
    return load_dir(root / f"mk_{slug}"), load_dir(root / f"hm3_{slug}")


def compare_deterministic(venv: Path, root: Path) -> list[tuple[str, float, bool]]:
    rows = []
    for label, spec in deterministic_configs(root).items():
        theirs, ours = run_both(venv, root, label, spec)
        if set(theirs) != set(ours):
            raise RuntimeError(
                f"{label}: tensor names differ: {sorted(set(theirs) ^ set(ours))[:5]}"
            )
        worst = max(float((theirs[n].float() - ours[n].float()).abs().max()) for n in ours)
        rows.append((label, worst, worst <= DETERMINISTIC_TOLERANCE))
    return rows


def random_statistics(merged: dict, base: dict, expert: dict, density: float) -> dict:
    kept_total = count_total = 0
    worst_rescale = 0.0
    top_kept = top_count = bottom_kept = bottom_count = 0
    for name, out in merged.items():
        tau = (expert[name] - base[name]).reshape(-1)
        delta = (out - base[name]).reshape(-1)
        kept = delta != 0
        kept_total += int(kept.sum())
        count_total += tau.numel()
        if kept.any():
            # the output must be base + s * (tau * mask) with s the L1 ratio, to float32 rounding
            scale = tau.abs().sum() / (tau * kept).abs().sum()
            expected = base[name].reshape(-1) + scale * (tau * kept)
            worst_rescale = max(worst_rescale, float((out.reshape(-1) - expected).abs().max()))
        if tau.numel() >= 100:
            order = torch.argsort(tau.abs())
            tenth = tau.numel() // 10
            bottom_kept += int(kept[order[:tenth]].sum())
            bottom_count += tenth
            top_kept += int(kept[order[-tenth:]].sum())
            top_count += tenth
    fraction = kept_total / count_total
    return {
        "kept": fraction,
        "kept_ok": abs(fraction - density) <= 0.01,
        "rescale_err": worst_rescale,
        "rescale_ok": worst_rescale <= DETERMINISTIC_TOLERANCE,
        "top10": top_kept / max(top_count, 1),
        "bottom10": bottom_kept / max(bottom_count, 1),
    }


def compare_random(venv: Path, root: Path) -> list[tuple[str, dict, dict]]:
    base = load_dir(root / "base")
    expert = load_dir(root / "expert_a")
    rows = []
    for label, spec in random_configs(root).items():
        theirs, ours = run_both(venv, root, label, spec)
        density = spec["models"][0][1]["density"]
        rows.append(
            (
                label,
                random_statistics(theirs, base, expert, density),
                random_statistics(ours, base, expert, density),
            )
        )
    return rows


# --- bf16 merges of a real checkpoint (--real): where hm3 and mergekit part, and why


def write_bf16_copies(sources: list[Path], root: Path) -> list[str]:
    """Every checkpoint cast to bfloat16 (as real checkpoints are stored), beside the
    others, so the task vectors are differences of bfloat16 weights."""
    from transformers import AutoModelForCausalLM

    names = []
    for index, source in enumerate(sources):
        name = "real_base" if index == 0 else f"real_expert_{index}"
        model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.bfloat16)
        model.save_pretrained(root / name)
        names.append(str(root / name))
    return names


def bf16_configs(names: list[str]) -> dict[str, dict]:
    base, experts = names[0], names[1:]
    weights = [round(1 / len(experts), 4)] * len(experts)
    configs = {
        "task_arithmetic": dict(
            merge_method="task_arithmetic",
            base_model=base,
            models=[(e, {"weight": w}) for e, w in zip(experts, weights)],
        )
    }
    for density in (0.4, 0.7):
        configs[f"ties d={density}"] = dict(
            merge_method="ties",
            base_model=base,
            models=[(e, {"weight": w, "density": density}) for e, w in zip(experts, weights)],
        )
    return configs


def threshold_ties(deltas: list[torch.Tensor], density: float | None) -> torch.Tensor:
    """Positions where some expert's |delta| equals its k-th largest magnitude: the only
    places where two correct top-k masks (same k, other tie order) can disagree."""
    tied = torch.zeros(deltas[0].numel(), dtype=torch.bool)
    if density is None:
        return tied
    for delta in deltas:
        magnitudes = delta.abs().reshape(-1).float()
        k = max(1, int(density * magnitudes.numel()))
        if k >= magnitudes.numel():
            continue
        threshold = torch.topk(magnitudes, k).values[-1]
        tied |= magnitudes == threshold
    return tied


def explain_bf16(theirs: dict, ours: dict, base: dict, experts: list[dict], density) -> dict:
    """Differing elements split by cause: at a threshold tie (which equal magnitude a
    top-k keeps), one bfloat16 step apart elsewhere (arithmetic order), or neither."""
    total = differ = at_ties = one_ulp = other = tied_total = 0
    worst = 0.0
    for name, mine in ours.items():
        a, b = theirs[name].float().reshape(-1), mine.float().reshape(-1)
        total += a.numel()
        gap = (a - b).abs()
        worst = max(worst, float(gap.max()))
        deltas = [(e[name].float() - base[name].float()).reshape(-1) for e in experts]
        tied = threshold_ties(deltas, density)
        tied_total += int(tied.sum())
        apart = gap > 0
        differ += int(apart.sum())
        at_ties += int((apart & tied).sum())
        # one bfloat16 step at the value: 8 significant bits, so 2^(frexp exponent - 8)
        step = torch.ldexp(torch.ones_like(b), torch.frexp(b.abs().clamp_min(1e-30)).exponent - 8)
        rounding = apart & ~tied & (gap <= step)
        one_ulp += int(rounding.sum())
        other += int((apart & ~tied & ~rounding).sum())
    return {
        "differ": differ / total,
        "max_abs": worst,
        "at_ties": at_ties,
        "one_step": one_ulp,
        "other": other,
        "differ_count": differ,
        "tied": tied_total / total,
    }


def compare_bf16(venv: Path, root: Path, sources: list[Path]) -> list[tuple[str, str, dict]]:
    names = write_bf16_copies(sources, root)
    base = load_dir(Path(names[0]))
    experts = [load_dir(Path(n)) for n in names[1:]]
    rows = []
    for label, spec in bf16_configs(names).items():
        density = spec["models"][0][1].get("density")
        recipe = make_recipe(dtype="bfloat16", seed=1, **spec)
        slug = "".join(c if c.isalnum() else "_" for c in label)
        run_merge(recipe, root / f"hm3_{slug}")
        ours = load_dir(root / f"hm3_{slug}")
        # mergekit computing in bfloat16, and in float32 with a bfloat16 output
        for mode, extra in (("bf16", ""), ("fp32->bf16", "out_dtype: bfloat16\n")):
            text = recipe_to_yaml(recipe)
            if extra:
                text = text.replace("dtype: bfloat16", "dtype: float32") + extra
            config_path = root / f"{slug}_{mode.replace('>', '').replace('-', '')}.yaml"
            config_path.write_text(text)
            out = root / f"mk_{config_path.stem}"
            run_mergekit(venv, config_path, out, seed=1)
            rows.append((label, mode, explain_bf16(load_dir(out), ours, base, experts, density)))
    return rows


def print_bf16(rows) -> None:
    print(
        "\n| method (bf16 real checkpoint) | mergekit computes in | elements differing "
        "| max abs | of them at a top-k threshold tie | one bf16 step elsewhere | other "
        "| elements at a threshold tie |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for label, mode, r in rows:
        print(
            f"| {label} | {mode} | {r['differ']:.2%} ({r['differ_count']}) | {r['max_abs']:.3g} "
            f"| {r['at_ties']} | {r['one_step']} | {r['other']} | {r['tied']:.2%} |"
        )


def print_agreement(deterministic, random_rows) -> bool:
    """The random-checkpoint tables; True when every row passes."""
    print("\n| method (config) | max abs diff hm3 vs mergekit (float32) | pass (<= 1e-5) |")
    print("|---|---|---|")
    for label, worst, ok in deterministic:
        print(f"| {label} | {worst:.2e} | {'yes' if ok else 'NO'} |")
    print(
        "\n| method (1 expert, density 0.3) | kept: mergekit / hm3 | rescale: max abs err vs base + s*(tau*mask), mergekit / hm3 "
        "| kept among top 10% / bottom 10% magnitudes: mergekit ; hm3 | pass |"
    )
    print("|---|---|---|---|---|")
    all_ok = all(ok for _, _, ok in deterministic)
    for label, mk, ours in random_rows:
        ok = mk["kept_ok"] and ours["kept_ok"] and mk["rescale_ok"] and ours["rescale_ok"]
        all_ok &= ok
        print(
            f"| {label} | {mk['kept']:.4f} / {ours['kept']:.4f} | {mk['rescale_err']:.1e} / "
            f"{ours['rescale_err']:.1e} | {mk['top10']:.3f}, {mk['bottom10']:.3f} ; "
            f"{ours['top10']:.3f}, {ours['bottom10']:.3f} | {'yes' if ok else 'NO'} |"
        )
    return all_ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--mergekit-venv",
        required=True,
        type=Path,
        help="virtual environment with mergekit installed (has bin/mergekit-yaml)",
    )
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--vocab", type=int, default=512)
    parser.add_argument("--keep", type=Path, help="work in this directory and keep it")
    parser.add_argument(
        "--real",
        nargs="+",
        type=Path,
        metavar="CHECKPOINT",
        help="a base and its experts (e.g. a smollm2-135m run's results/models/{base,math,"
        "code,translation}): also compare bfloat16 merges of them",
    )
    parser.add_argument(
        "--real-only", action="store_true", help="skip the random-checkpoint comparisons"
    )
    args = parser.parse_args()
    if not (args.mergekit_venv / "bin" / "mergekit-yaml").exists():
        parser.error(f"no bin/mergekit-yaml in {args.mergekit_venv}")
    with tempfile.TemporaryDirectory(prefix="hm3-vs-mergekit-") as tmp:
        root = args.keep or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        deterministic, random_rows, bf16_rows = [], [], []
        if not args.real_only:
            build_models(root, args.hidden, args.layers, args.vocab)
            deterministic = compare_deterministic(args.mergekit_venv, root)
            random_rows = compare_random(args.mergekit_venv, root)
        if args.real:
            bf16_rows = compare_bf16(args.mergekit_venv, root, args.real)
    if bf16_rows:
        print_bf16(bf16_rows)
    # --real-only: the bf16 table is a finding, not a pass/fail check
    return 0 if args.real_only else (0 if print_agreement(deterministic, random_rows) else 1)


if __name__ == "__main__":
    sys.exit(main())

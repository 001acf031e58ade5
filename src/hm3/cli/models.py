"""`hm3 acquire`, `hm3 pin` and `hm3 check-config`: models and configuration from the command line."""

from __future__ import annotations

from pathlib import Path

from hm3.core.errors import HM3Error

DEFAULT_SCHEMA = Path("workflow/schemas/config.schema.yaml")


def register(subparsers) -> None:
    acquire = subparsers.add_parser("acquire", help="download (pinned) or link a model checkpoint")
    source = acquire.add_mutually_exclusive_group(required=True)
    source.add_argument("--repo-id", help="hub repository, e.g. Qwen/Qwen2.5-1.5B")
    source.add_argument("--path", help="a local checkpoint folder")
    source.add_argument(
        "--gguf", help="a llama.cpp GGUF file, dequantised to a float32 safetensors checkpoint"
    )
    acquire.add_argument("--revision", help="full commit hash (required with --repo-id)")
    acquire.add_argument("--sha256", help="with --gguf: the file's expected SHA-256")
    acquire.add_argument("--allow-pickle", action="store_true", help="accept pickled .bin weights")
    acquire.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing OUT_DIR (never the current folder, an ancestor of it, or --path)",
    )
    acquire.add_argument(
        "out_dir", type=Path, help="where the checkpoint goes: new or empty unless --overwrite"
    )
    acquire.set_defaults(func=run_acquire)

    pin = subparsers.add_parser(
        "pin",
        help="write the hub's current commits into a config's unpinned hub models and the "
        "hub datasets its tasks read (evaluation.dataset_revisions)",
    )
    pin.add_argument("config", type=Path)
    pin.add_argument(
        "--all",
        action="store_true",
        help="re-pin every hub model and dataset, not only those at null",
    )
    pin.set_defaults(func=run_pin)

    check = subparsers.add_parser("check-config", help="validate a workflow config file")
    check.add_argument("config", type=Path)
    check.add_argument("--schema", type=Path, default=DEFAULT_SCHEMA)
    check.set_defaults(func=run_check_config)


def run_acquire(args) -> int:
    # lazy: yaml; keeps it off hm3 --help
    from hm3.models.acquire import acquire

    if args.repo_id:
        if not args.revision:
            raise HM3Error(
                "--revision is required with --repo-id (a full commit hash pins the download)"
            )
        spec = {"source": "hub", "repo_id": args.repo_id, "revision": args.revision}
    elif args.gguf:
        spec = {"source": "gguf", "path": args.gguf, "sha256": args.sha256}
    else:
        spec = {"source": "local", "path": args.path}
    print(
        acquire(
            args.out_dir.name,
            spec,
            args.out_dir,
            allow_pickle=args.allow_pickle,
            overwrite=args.overwrite,
        )
    )
    return 0


def run_pin(args) -> int:
    # lazy: yaml and lm-eval's task index; keeps them off hm3 --help
    from hm3.evaluation.dataset_revisions import pin_datasets
    from hm3.models.acquire import pin_revisions

    pinned = {
        f"models.{name}": sha
        for name, sha in pin_revisions(args.config, update_all=args.all).items()
    }
    datasets = pin_datasets(args.config, update_all=args.all)
    pinned.update({f"evaluation.dataset_revisions.{n}": sha for n, sha in datasets.items()})
    for key, sha in pinned.items():
        print(f"{key}: revision {sha}")
    print(
        f"{args.config}: {len(pinned)} revision(s) written"
        if pinned
        else f"{args.config}: nothing to pin"
    )
    return 0


def run_check_config(args) -> int:
    # lazy: yaml and jsonschema; keeps them off hm3 --help
    from hm3.core.config import load_config

    load_config(args.config, args.schema)
    print(f"{args.config}: valid")
    return 0

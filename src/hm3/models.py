"""Model acquisition: every model of a suite ends up as a checked HF checkpoint folder.

Three sources behind one interface (`acquire`):
- ``build``: a checkpoint the tiny suite trained inside the DAG;
- ``hub``: `huggingface_hub.snapshot_download` at a pinned commit, weights as safetensors;
- ``local``: a checkpoint folder already on disk.
The result is written atomically, with a `SOURCE.json` saying where it came from.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from hm3.errors import HM3Error
from hm3.io import atomic_dir, write_json

# What a hub download fetches: weights as safetensors, configs, tokenizer files, card.
HUB_ALLOW_PATTERNS = [
    "*.safetensors", "model.safetensors.index.json", "config.json", "generation_config.json",
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
    "vocab.json", "merges.txt", "added_tokens.json", "README.md",
]
PICKLE_PATTERNS = ["*.bin", "pytorch_model.bin.index.json", "*.pt", "*.pth"]


def check_checkpoint(model_dir: str | Path, allow_pickle: bool = False) -> dict:
    """Verify a checkpoint folder is complete; returns a short description."""
    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise HM3Error(f"{model_dir}: not a model checkpoint (no config.json)")
    weights = _weight_files(model_dir, allow_pickle)
    has_tokenizer = any((model_dir / f).exists() for f in ("tokenizer.json", "tokenizer.model", "vocab.json"))
    if not has_tokenizer:
        raise HM3Error(f"{model_dir}: no tokenizer files (tokenizer.json, tokenizer.model or vocab.json)")
    for weight in weights:
        if weight.suffix == ".safetensors":
            check_safetensors_complete(weight)
    config = json.loads((model_dir / "config.json").read_text())
    return {"architectures": config.get("architectures"), "weight_files": [w.name for w in weights],
            "bytes": sum(w.stat().st_size for w in weights)}


def check_safetensors_complete(path: Path) -> None:
    """Refuse a truncated safetensors file (an interrupted download or copy), from its
    header alone: the tensors' byte ranges must fit in the file."""
    from hm3.merge.checkpoint import read_safetensors_header

    header, data_start = read_safetensors_header(path, with_data_start=True)
    needed = data_start + max((entry["data_offsets"][1] for entry in header.values()), default=0)
    size = path.stat().st_size
    if size < needed:
        raise HM3Error(f"{path}: truncated safetensors file ({size} bytes, its header needs {needed}); "
                       "download or copy it again")


def _weight_files(model_dir: Path, allow_pickle: bool) -> list[Path]:
    from hm3.merge.checkpoint import indexed_shards

    indexed = indexed_shards(model_dir, str(model_dir))
    if indexed:
        return sorted(indexed[0])
    single = model_dir / "model.safetensors"
    if single.is_file():
        return [single]
    pickled = [p for pattern in PICKLE_PATTERNS for p in model_dir.glob(pattern)]
    if pickled and not allow_pickle:
        raise HM3Error(f"{model_dir}: weights are pickled ({pickled[0].name}); pickles can run code "
                       "when loaded, so hm3 refuses them unless security.allow_pickle is true")
    if pickled:
        return pickled
    raise HM3Error(f"{model_dir}: no weights (model.safetensors or model.safetensors.index.json)")


def _link_or_copy(src: Path, dst: Path) -> None:
    """Hard-link when on the same filesystem (no extra disk for multi-GB weights)."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _materialise(source_dir: Path, out_dir: Path, provenance: dict, allow_pickle: bool) -> dict:
    description = check_checkpoint(source_dir, allow_pickle)
    with atomic_dir(out_dir) as tmp:
        for item in source_dir.iterdir():
            if item.is_file() and not item.name.startswith("."):
                _link_or_copy(item, tmp / item.name)
        write_json(tmp / "SOURCE.json", {**provenance, **description})
    return description


def acquire_hub(repo_id: str, revision: str, out_dir: str | Path, allow_pickle: bool = False,
                download=None) -> dict:
    """Download ``repo_id`` at ``revision`` into ``out_dir`` (atomically)."""
    if download is None:
        from huggingface_hub import snapshot_download as download
    out_dir = Path(out_dir)
    staging = out_dir.parent / f".{out_dir.name}.download"
    patterns = HUB_ALLOW_PATTERNS + (PICKLE_PATTERNS if allow_pickle else [])
    try:
        download(repo_id=repo_id, revision=revision, allow_patterns=patterns, local_dir=str(staging))
    except Exception as err:  # the hub client raises many kinds; the user needs the repo and why
        raise HM3Error(f"could not download {repo_id}@{revision}: {type(err).__name__}: {err}") from err
    try:
        return _materialise(staging, out_dir, {"source": "hub", "repo_id": repo_id, "revision": revision},
                            allow_pickle)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def acquire(name: str, spec: dict, out_dir: str | Path, built_dir: str | Path | None = None,
            allow_pickle: bool = False, download=None) -> dict:
    """Put model ``name`` (a `models:` entry of the config) at ``out_dir``."""
    source = spec["source"]
    if source == "hub":
        return acquire_hub(spec["repo_id"], spec["revision"], out_dir, allow_pickle, download)
    if source == "local":
        path = Path(spec["path"]).expanduser()
        if not path.is_dir():
            raise HM3Error(f"models.{name}.path: {path} is not a directory")
        return _materialise(path, Path(out_dir), {"source": "local", "path": str(path.resolve())}, allow_pickle)
    if source == "build":
        if built_dir is None:
            raise HM3Error(f"models.{name}: source 'build' needs the built checkpoint folder")
        return _materialise(Path(built_dir), Path(out_dir), {"source": "build", "path": str(built_dir)},
                            allow_pickle)
    raise HM3Error(f"models.{name}.source: unknown source {source!r} (build, hub or local)")

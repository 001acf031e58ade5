"""Model acquisition: every model of a suite ends up as a checked HF checkpoint folder.

Three sources behind one interface (`acquire`):
- ``build``: a checkpoint the tiny suite trained inside the DAG;
- ``hub``: `huggingface_hub.snapshot_download` at a pinned commit, weights as safetensors;
- ``local``: a checkpoint folder already on disk;
- ``gguf``: a llama.cpp GGUF file (on disk or shipped in a Python package), dequantised
  once to safetensors (`hm3.models.gguf`).
The result is written atomically, with a `SOURCE.json` saying where it came from.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import yaml

from hm3.checkpoints.files import (
    check_config,
    check_links,
    check_safetensors_complete,
    check_tokenizer,
    read_json_object,
    real_file,
)
from hm3.checkpoints.card import recipe_card
from hm3.core.errors import HM3Error
from hm3.core.io import atomic_dir, check_output_dir, write_json, write_text
from hm3.models import gguf
from hm3.models.vocabulary import adapt_rows, adapted_config, is_vocabulary_tensor, plan_vocabulary

# What a hub download fetches: weights as safetensors, configs, tokenizer files, card.
HUB_ALLOW_PATTERNS = [
    "*.safetensors",
    "model.safetensors.index.json",
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
    "added_tokens.json",
    "README.md",
]
PICKLE_PATTERNS = ["*.bin", "pytorch_model.bin.index.json", "*.pt", "*.pth"]
PICKLE_SUFFIXES = (".bin", ".pt", ".pth")
REWRITE_SHARD_SIZE = (
    "5GB"  # shards of a checkpoint hm3 writes again (pickles converted, vocabulary adapted)
)


def check_checkpoint(model_dir: str | Path, allow_pickle: bool = False) -> dict:
    """Verify a checkpoint folder is complete and sane (no link out of it; config,
    tokenizer and safetensors headers parse and agree: `hm3.checkpoints.files`), from its
    JSON files and headers alone; returns a short description."""
    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise HM3Error(f"{model_dir}: not a model checkpoint (no config.json)")
    check_links(model_dir)
    check_config(
        model_dir
    )  # its bounds first, before torch is even imported; against the weights below
    weights = _weight_files(model_dir, allow_pickle)
    has_tokenizer = any(
        (model_dir / f).exists() for f in ("tokenizer.json", "tokenizer.model", "vocab.json")
    )
    if not has_tokenizer:
        raise HM3Error(
            f"{model_dir}: no tokenizer files (tokenizer.json, tokenizer.model or vocab.json)"
        )
    check_tokenizer(model_dir)
    shapes = {}
    for weight in weights:
        if weight.suffix == ".safetensors":
            shapes.update(
                {name: entry["shape"] for name, entry in check_safetensors_complete(weight).items()}
            )
    config = check_config(model_dir, shapes)
    return {
        "architectures": config.get("architectures"),
        "weight_files": [w.name for w in weights],
        "bytes": sum(w.stat().st_size for w in weights),
    }


def _weight_files(model_dir: Path, allow_pickle: bool) -> list[Path]:
    # lazy: imports torch; keeps it off hm3 pin
    from hm3.checkpoints.sharded import indexed_shards

    indexed = indexed_shards(model_dir, str(model_dir))
    if indexed:
        return sorted(indexed[0])
    single = model_dir / "model.safetensors"
    if single.is_file():
        return [single]
    pickled = [p for pattern in PICKLE_PATTERNS for p in model_dir.glob(pattern)]
    if pickled and not allow_pickle:
        raise HM3Error(
            f"{model_dir}: weights are pickled ({pickled[0].name}); pickles can run code "
            "when loaded, so hm3 refuses them unless security.allow_pickle is true"
        )
    if pickled:
        return pickled
    raise HM3Error(f"{model_dir}: no weights (model.safetensors or model.safetensors.index.json)")


def _link_or_copy(src: Path, dst: Path) -> None:
    """Hard-link when on the same filesystem (no extra disk for multi-GB weights). A
    symlink is followed (once checked to stay in its folder): the output gets the regular
    file, never a link that could be pointed elsewhere later."""
    src = real_file(src)
    try:
        os.link(src, dst, follow_symlinks=False)
    except OSError:
        shutil.copy2(src, dst)


@dataclass(frozen=True)
class FamilyCheck:
    """An expert's place in the family: the base it must match and the tokenizer policy."""

    name: str
    base_dir: Path
    vocabulary: str = "reject"
    trust_remote_code: bool = False

    def plan(self, expert_dir: Path):
        return plan_vocabulary(
            self.name, self.base_dir, expert_dir, self.vocabulary, self.trust_remote_code
        )


def _materialise(
    source_dir: Path,
    out_dir: Path,
    provenance: dict,
    allow_pickle: bool,
    family: FamilyCheck | None = None,
    plan=None,
    overwrite: bool = False,
) -> dict:
    """Check ``source_dir`` and place it at ``out_dir``; ``plan``: the expert's vocabulary
    plan when the caller already made it (else made here from ``family``)."""
    description = check_checkpoint(source_dir, allow_pickle)
    if plan is None and family is not None:
        plan = family.plan(source_dir)
    pickled = not any(name.endswith(".safetensors") for name in description["weight_files"])
    with atomic_dir(out_dir, overwrite=overwrite, inputs=[source_dir]) as tmp:
        if pickled or (plan and plan.changes_rows):
            description = _rewrite(
                source_dir, tmp, allow_pickle, plan, family.base_dir if family else None
            )
            provenance = {
                **provenance,
                "rewritten": "pickled weights converted to safetensors"
                if pickled
                else "vocabulary adapted to the base's",
            }
        else:
            for item in source_dir.iterdir():
                if item.is_file() and not item.name.startswith("."):
                    _link_or_copy(item, tmp / item.name)
        if plan is not None and plan.changes_rows:
            provenance = {**provenance, "vocabulary": plan.describe()}
        write_json(tmp / "SOURCE.json", {**provenance, **description})
    return description


def _rewrite(source_dir: Path, tmp: Path, allow_pickle: bool, plan, base_dir: Path | None) -> dict:
    """Write the checkpoint again, tensor by tensor, as sharded safetensors: pickled
    weights are read once here (``torch.load(weights_only=True)``, only when allowed) so
    nothing downstream ever unpickles; vocabulary-sized tensors get the base's rows."""
    # lazy: imports torch (off hm3 pin)
    from hm3.checkpoints.sharded import (
        SAFETENSORS_INDEX,
        TOKENIZER_FILES,
        CheckpointReader,
        ShardedWriter,
        TensorInfo,
        copy_tokenizer_files,
        parse_size,
    )

    adapt = plan is not None and plan.changes_rows
    weights = {*PICKLE_SUFFIXES, ".safetensors"}
    skipped = {
        SAFETENSORS_INDEX,
        "pytorch_model.bin.index.json",
        "config.json",
        *(TOKENIZER_FILES if adapt else ()),
    }
    for item in source_dir.iterdir():
        if (
            item.is_file()
            and not item.name.startswith(".")
            and item.suffix not in weights
            and item.name not in skipped
        ):
            shutil.copy2(
                real_file(item, source_dir), tmp / item.name
            )  # the checked file, not a link
    config = read_json_object(source_dir / "config.json", source_dir)
    with CheckpointReader(source_dir, allow_pickle=allow_pickle) as reader:
        base = CheckpointReader(base_dir) if adapt else None
        try:

            def converted(info):
                base_info = base.tensors.get(info.name) if base else None
                if adapt and is_vocabulary_tensor(info.shape, base_info and base_info.shape, plan):
                    return TensorInfo(info.name, (plan.base_rows, *info.shape[1:]), info.dtype, "")
                return TensorInfo(info.name, info.shape, info.dtype, "")

            infos = [converted(reader.tensors[name]) for name in reader.names]
            writer = ShardedWriter(tmp, infos, parse_size(REWRITE_SHARD_SIZE))
            for info in infos:
                tensor = reader.get(info.name)
                if tuple(tensor.shape) != info.shape:
                    tensor = adapt_rows(tensor, plan, base.get(info.name))
                writer.write(info.name, tensor.to(info.dtype))
            writer.finish()
        finally:
            if base is not None:
                base.close()
    if adapt:
        base_config = read_json_object(base_dir / "config.json", base_dir)
        config = adapted_config(config, base_config, plan)
        copy_tokenizer_files(base_dir, tmp)
    write_json(tmp / "config.json", config)
    return check_checkpoint(tmp)


def acquire_hub(
    repo_id: str,
    revision: str | None,
    out_dir: str | Path,
    allow_pickle: bool = False,
    download=None,
    family: FamilyCheck | None = None,
    overwrite: bool = False,
) -> dict:
    """Download ``repo_id`` at ``revision`` into ``out_dir`` (atomically; an existing folder
    only with ``overwrite``, see `hm3.core.io.check_output_dir`).

    An expert's config and tokenizer come first, so a vocabulary the policy refuses
    stops the job before gigabytes of weights are fetched."""
    if not revision:
        raise HM3Error(
            f"{repo_id}: no pinned revision; run `hm3 pin CONFIG` on a machine with hub access "
            "to write the current commit into the config (branches move, so hm3 needs the commit)"
        )
    if download is None:
        # lazy: only a hub download needs it
        from huggingface_hub import snapshot_download as download
    out_dir = check_output_dir(out_dir, overwrite=overwrite)  # before gigabytes are downloaded
    staging = out_dir.parent / f".{out_dir.name}.download"
    patterns = HUB_ALLOW_PATTERNS + (PICKLE_PATTERNS if allow_pickle else [])
    try:
        plan = None
        if family is not None:  # configs and tokenizer first: the plan needs nothing else
            _download(download, repo_id, revision, staging, [p for p in patterns if "*" not in p])
            plan = family.plan(staging)
        _download(download, repo_id, revision, staging, patterns)
        return _materialise(
            staging,
            out_dir,
            {"source": "hub", "repo_id": repo_id, "revision": revision},
            allow_pickle,
            family,
            plan,
            overwrite,
        )
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _download(download, repo_id: str, revision: str, staging: Path, patterns: list[str]) -> None:
    try:
        download(
            repo_id=repo_id, revision=revision, allow_patterns=patterns, local_dir=str(staging)
        )
    except Exception as err:  # the hub client raises many kinds; the user needs the repo and why
        raise HM3Error(
            f"could not download {repo_id}@{revision}: {type(err).__name__}: {err}{_offline_hint()}"
        ) from err


def _offline_hint() -> str:
    if os.environ.get("HF_HUB_OFFLINE", "0") in ("", "0"):
        return ""
    return " (HF_HUB_OFFLINE is set: export HF_HUB_OFFLINE=0 to reach the hub)"


def acquire(
    name: str,
    spec: dict,
    out_dir: str | Path,
    built_dir: str | Path | None = None,
    allow_pickle: bool = False,
    download=None,
    family: FamilyCheck | None = None,
    overwrite: bool = False,
) -> dict:
    """Put model ``name`` (a `models:` entry of the config) at ``out_dir``.

    ``family``: for an expert, the base to check it against (tokenizer, vocabulary);
    ``overwrite``: an existing ``out_dir`` may be replaced (never the source itself)."""
    source = spec["source"]
    if source == "hub":
        return acquire_hub(
            spec["repo_id"],
            spec.get("revision"),
            out_dir,
            allow_pickle,
            download,
            family,
            overwrite,
        )
    if source == "local":
        path = Path(spec["path"]).expanduser()
        if not path.is_dir():
            raise HM3Error(f"models.{name}.path: {path} is not a directory")
        out_dir = check_output_dir(
            out_dir, overwrite=overwrite, inputs=[path]
        )  # before the source is read
        return _materialise(
            path,
            out_dir,
            {"source": "local", "path": str(path.resolve())},
            allow_pickle,
            family,
            overwrite=overwrite,
        )
    if source == "build":
        if built_dir is None:
            raise HM3Error(f"models.{name}: source 'build' needs the built checkpoint folder")
        out_dir = check_output_dir(out_dir, overwrite=overwrite, inputs=[built_dir])
        return _materialise(
            Path(built_dir),
            out_dir,
            {"source": "build", "path": str(built_dir)},
            allow_pickle,
            family,
            overwrite=overwrite,
        )
    if source == "gguf":
        return acquire_gguf(name, spec, out_dir, family, overwrite)
    raise HM3Error(f"models.{name}.source: unknown source {source!r} (build, hub, local or gguf)")


def acquire_gguf(
    name: str,
    spec: dict,
    out_dir: str | Path,
    family: FamilyCheck | None = None,
    overwrite: bool = False,
) -> dict:
    """Convert model ``name``'s GGUF file (`hm3.models.gguf`) into a staging folder, then
    check and place it like any other checkpoint."""
    path = gguf.locate(name, spec)
    out_dir = check_output_dir(out_dir, overwrite=overwrite, inputs=[path])
    described = gguf.provenance(name, spec, path)  # the pin first, before minutes of work
    staging = out_dir.parent / f".{out_dir.name}.gguf"
    card = recipe_card(
        f"hm3 {name} (from GGUF)",
        f"`{path.name}` dequantised to float32 by hm3 (transformers' GGUF loader), "
        "weights and tokenizer unchanged otherwise.",
        described,
        tags=["gguf"],
    )
    try:
        shape = gguf.convert(path, staging, card)
        return _materialise(
            staging, out_dir, {**described, **shape}, False, family, overwrite=overwrite
        )
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def pin_revisions(
    config_path: str | Path, resolve=None, update_all: bool = False
) -> dict[str, str]:
    """Write the current commit of each hub model whose `revision` is null (every hub
    model with ``update_all``) into the config file, in place, comments kept.

    ``resolve(repo_id)`` returns the commit of the repository's default branch; by
    default it asks the hub (`huggingface_hub.HfApi.model_info`), so this needs hub access.
    """
    path = Path(config_path)
    text = path.read_text()
    models = (yaml.safe_load(text) or {}).get("models") or {}
    if resolve is None:
        # lazy: only hm3 pin asks the hub
        from huggingface_hub import HfApi

        api = HfApi()

        def resolve(repo_id):
            try:
                return api.model_info(repo_id).sha
            except Exception as err:  # offline, gated, missing: say which repository and why
                raise HM3Error(
                    f"could not ask the hub for {repo_id}'s commit: {type(err).__name__}: {err}"
                    f"{_offline_hint()}"
                ) from err

    pinned = {}
    for name, spec in models.items():
        if (spec or {}).get("source") != "hub" or (spec.get("revision") and not update_all):
            continue
        sha = resolve(spec["repo_id"])
        if not re.fullmatch(r"[0-9a-f]{40}", str(sha)):
            raise HM3Error(f"models.{name}: the hub gave no commit for {spec['repo_id']} ({sha!r})")
        # the `revision:` after this model's `repo_id:` (flow or block style), before the next model's
        start = re.search(rf"repo_id:\s*['\"]?{re.escape(spec['repo_id'])}['\"]?", text)
        end = text.find("repo_id:", start.end()) if start else -1
        window = slice(start.end(), end if end >= 0 else len(text)) if start else None
        found = re.search(r"(revision:[ \t]*)([^,}\s#]*)", text[window]) if window else None
        if found is None:
            raise HM3Error(
                f"models.{name}: no `revision:` key after `repo_id: {spec['repo_id']}` in {path}; "
                f"add `revision: {sha}` by hand"
            )
        at = window.start + found.start(2)
        text = text[:at] + sha + text[window.start + found.end(2) :]
        pinned[name] = sha
    if pinned:
        written = (yaml.safe_load(text) or {}).get("models") or {}
        if any(written[name].get("revision") != sha for name, sha in pinned.items()):
            raise HM3Error(f"{path}: could not write the revisions in place ({pinned})")
        write_text(path, text)
    return pinned

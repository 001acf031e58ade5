"""Seed derivation: every random choice takes a seed derived from the config's one."""

import zlib


def derive_seed(seed: int, *names: str) -> int:
    """A stable per-purpose seed (Python's hash() is salted per process, so not that)."""
    tag = "/".join(names).encode()
    return (seed * 1_000_003 + zlib.crc32(tag)) % (2**31 - 1)

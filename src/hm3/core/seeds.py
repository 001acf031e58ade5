"""Seed derivation: every random choice takes a seed derived from the config's one."""

import zlib


def derive_seed(seed: int, *names: str) -> int:
    """A stable per-purpose seed (Python's hash() is salted per process, so not that)."""
    tag = "/".join(names).encode()
    return (seed * 1_000_003 + zlib.crc32(tag)) % (2**31 - 1)


# derive_seed's results stay below this, so no derived seed becomes it
CMA_SEED_FOR_ZERO = 2**31 - 1


def cma_seed(seed: int) -> int:
    """The seed to give pymoo's CMA-ES: the `cma` package under it reads 0 as "seed
    from the clock", so a search given seed 0 would differ between runs; 0 becomes a
    seed of its own that `derive_seed` never returns, every other seed stays itself."""
    return seed if seed else CMA_SEED_FOR_ZERO

"""A bare read pass over a score array: the speed floor of any counting kernel.

:func:`read_pass` touches every byte of the array once, with the same resources as
fastseg's kernels (Numba ``parallel=True``: all of Numba's threads, here both cores), and
with the least work per element: the elements' bits are OR-ed together as unsigned
integers of their width, a reduction LLVM vectorises at full register width. It is a
timing floor, not a result.

Why bits and not a float sum: float16 has no arithmetic on the CPU, and widening it to a
float or a 64-bit sum made the old floor compute-bound (on a 2-core Sapphire Rapids,
2026-12-02: 19.6 GB/s summed, 36.7 GB/s OR-ed, the float32 sum 35 GB/s), so fastseg's
channels-first float16 kernels ran faster than their "floor".
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

#: Elements reduced per task (4 MiB of float32); many more tasks than threads, so the
#: threads finish together.
CHUNK = 2**20

#: The unsigned integer of each score dtype's width.
_BITS = {2: np.uint16, 4: np.uint32, 8: np.uint64}


@njit(parallel=True, nogil=True, cache=True)
def _or_bits(flat, chunk):  # pragma: no cover - compiled
    n = flat.size
    n_chunks = (n + chunk - 1) // chunk
    partial = np.zeros(n_chunks, flat.dtype)
    for c in prange(n_chunks):
        lo = c * chunk
        hi = min(lo + chunk, n)
        # Loop over a slice view, from 0: indices LLVM can prove non-negative, so no
        # wraparound check blocks vectorisation (range(lo, hi) on `flat` runs 6x slower).
        part = flat[lo:hi]
        acc = partial[c]
        for i in range(part.size):
            acc |= part[i]
        partial[c] = acc
    acc = partial[0]
    for c in range(n_chunks):
        acc |= partial[c]
    return acc


def read_pass(scores: np.ndarray) -> int:
    """Read every element of a C-contiguous float score array; return its bits OR-ed."""
    if not scores.flags.c_contiguous:
        raise ValueError("read_pass needs a C-contiguous array")
    if scores.dtype.kind != "f":
        raise TypeError(f"read_pass reads float scores, got {scores.dtype}")
    return int(_or_bits(scores.reshape(-1).view(_BITS[scores.dtype.itemsize]), CHUNK))

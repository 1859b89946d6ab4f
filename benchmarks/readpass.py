"""A bare read pass over a score array: the speed floor of any counting kernel.

:func:`read_pass` reduces every element of the array once, with the same resources as
fastseg's kernels (Numba ``parallel=True``: all of Numba's threads, here both cores), and
as fast as the hardware allows (``fastmath`` lets LLVM vectorise and reassociate the
float sum). It is a timing floor, not a result: only its finiteness is checked.

Float16 arrays are read as their ``uint16`` bit patterns and summed as integers (Numba
has no float16 on the CPU), exactly the bytes fastseg's kernels read.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

#: Elements reduced per task (4 MiB of float32); many more tasks than threads, so the
#: threads finish together.
CHUNK = 2**20


@njit(parallel=True, nogil=True, cache=True, fastmath=True)
def _sum_float(flat, chunk):  # pragma: no cover - compiled
    n = flat.size
    n_chunks = (n + chunk - 1) // chunk
    partial = np.zeros(n_chunks, np.float64)
    for c in prange(n_chunks):
        lo = c * chunk
        hi = min(lo + chunk, n)
        # Loop over a slice view, from 0: indices LLVM can prove non-negative, so no
        # wraparound check blocks vectorisation (range(lo, hi) on `flat` runs 6x slower).
        part = flat[lo:hi]
        acc = np.float32(0.0)
        for i in range(part.size):
            acc += part[i]
        partial[c] = acc
    return partial.sum()


@njit(parallel=True, nogil=True, cache=True)
def _sum_uint16(flat, chunk):  # pragma: no cover - compiled
    n = flat.size
    n_chunks = (n + chunk - 1) // chunk
    partial = np.zeros(n_chunks, np.uint64)
    for c in prange(n_chunks):
        lo = c * chunk
        hi = min(lo + chunk, n)
        part = flat[lo:hi]
        acc = np.uint64(0)
        for i in range(part.size):
            acc += np.uint64(part[i])
        partial[c] = acc
    return partial.sum()


def read_pass(scores: np.ndarray) -> float:
    """Reduce every element of a C-contiguous score array; return the (finite) sum."""
    if not scores.flags.c_contiguous:
        raise ValueError("read_pass needs a C-contiguous array")
    flat = scores.reshape(-1)
    if scores.dtype == np.float16:
        return float(_sum_uint16(flat.view(np.uint16), CHUNK))
    if scores.dtype.kind != "f":
        raise TypeError(f"read_pass reads float scores, got {scores.dtype}")
    return float(_sum_float(flat, CHUNK))

"""The one place that owns fastseg's Numba options.

Every kernel in :mod:`fastseg.kernels` is compiled with :data:`KERNEL` and every
helper it calls with :data:`HELPER`; nothing else in the package passes options to
Numba. The reason for each option is written beside it.
"""

from __future__ import annotations

from typing import Any

HELPER: Any = {
    # Helpers are called from kernels only; they are compiled into the caller, so the
    # caller's cache entry holds them too.
    "nogil": True,
    "cache": True,
    # Exact counting: a float comparison must not be reordered or assume "no NaN", and the
    # soft sums must not be reassociated (results must not depend on the thread count).
    "fastmath": False,
    # NumPy's error model: no Python exception checks (e.g. for division) in hot loops.
    "error_model": "numpy",
    # Indices are computed from the array's own shape; a bounds check per access would
    # cost ~20 % for nothing.
    "boundscheck": False,
}

KERNEL: Any = {
    **HELPER,
    # Kernels release the GIL so that Dask's threaded scheduler (or any thread pool) can
    # run several of them at once.
    "nogil": True,
    # Kernels split work over images or pixel blocks with `prange`; each thread writes only
    # into buffers it owns, so results are identical for any thread count.
    "parallel": True,
    # The on-disk cache makes the second process start in well under a second instead of
    # recompiling (scripts/compile_time.py: 12.4 s cold, 0.6 s warm). It is keyed by the
    # source file's timestamp and the CPU; Numba writes it atomically, so several processes
    # may share it.
    "cache": True,
}

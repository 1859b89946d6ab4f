"""Time from ``import fastseg`` to the first result of fastseg.counts, cold and warm cache.

Each measurement runs in a fresh Python process with ``NUMBA_CACHE_DIR`` pointing to one
temporary directory: (a) while it is empty, so every kernel the call needs is compiled,
then (b) again with the cache (a) left behind, so kernels are loaded from disk. The
input is small (float32, channels-last, 2 x 64 x 64 x 21), so the times are almost all
import, compilation / cache loading and thread-pool start-up. NumPy is imported before
the clock starts (it is not fastseg's cost); Numba is imported by fastseg, inside it.

With ``--layouts`` the process counts the same input five times, as C-contiguous,
readonly, Fortran-order, batch-strided and byte-swapped arrays: what it costs on top
depends on how many kernel specialisations those layouts need (it prints the number).

Usage::

    python scripts/compile_time.py [--warm-runs 3] [--layouts]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

CHILD = """
import json, time
import numpy as np
rng = np.random.default_rng(0)
truth = rng.integers(0, 21, (2, 64, 64)).astype(np.uint8)
scores = rng.random((2, 64, 64, 21), dtype=np.float32)
t0 = time.perf_counter()
import fastseg
t1 = time.perf_counter()
c = fastseg.counts(truth, scores)
if LAYOUTS:
    def readonly(a):
        a = a.copy()
        a.flags.writeable = False
        return a

    for make in (readonly, np.asfortranarray, lambda a: np.repeat(a, 2, axis=0)[::2],
                 lambda a: a.astype(a.dtype.newbyteorder())):
        assert fastseg.counts(make(truth), make(scores)) == c
t2 = time.perf_counter()
assert int(c.confusion.sum()) == truth.size
compiled = {name: len(getattr(f, "signatures", ())) for name, f in fastseg.kernels.COMPILED.items()}
print(json.dumps({"import": t1 - t0, "first_call": t2 - t1, "total": t2 - t0,
                  "specialisations": sum(compiled.values())}))
"""


def run(cache_dir: str, layouts: bool = False) -> dict[str, float]:
    """One fresh process; its timings in seconds."""
    env = {**os.environ, "NUMBA_CACHE_DIR": cache_dir}
    code = f"LAYOUTS = {layouts}\n{CHILD}"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def _fmt(r: dict[str, float]) -> str:
    return (
        f"{r['total']:7.2f} s  (import fastseg {r['import']:.2f} s + first counts "
        f"{r['first_call']:.2f} s)"
    )


def main(argv: list[str] | None = None) -> int:
    """Print the cold and warm figures."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--warm-runs", type=int, default=3, help="warm-cache runs (median shown)")
    p.add_argument(
        "--layouts",
        action="store_true",
        help="also count the input as readonly, F-order, strided and byte-swapped arrays",
    )
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="fastseg-numba-cache-") as cache:
        cold = run(cache, args.layouts)
        warm = [run(cache, args.layouts) for _ in range(max(1, args.warm_runs))]
        n_files = sum(len(files) for _, _, files in os.walk(cache))
    median = {k: statistics.median(r[k] for r in warm) for k in warm[0]}
    what = " in 5 layouts" if args.layouts else ""
    print(f"import fastseg -> fastseg.counts results{what} (float32 channels-last 2x64x64x21)")
    print(f"(a) empty Numba cache: {_fmt(cold)}; kernel specialisations: "
          f"{cold['specialisations']:.0f}")  # fmt: skip
    print(f"(b) warm Numba cache:  {_fmt(median)}  median of {len(warm)} runs")
    totals = ", ".join(f"{r['total']:.2f}" for r in warm)
    print(f"    warm runs total: {totals} s; cache files written by (a): {n_files}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

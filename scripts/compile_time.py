"""Time from ``import fastseg`` to the first result of fastseg.counts, cold and warm cache.

Each measurement runs in a fresh Python process with ``NUMBA_CACHE_DIR`` pointing to one
temporary directory: (a) while it is empty, so every kernel the call needs is compiled,
then (b) again with the cache (a) left behind, so kernels are loaded from disk. The
input is small (float32, channels-last, 2 x 64 x 64 x 21), so the times are almost all
import, compilation / cache loading and thread-pool start-up. NumPy is imported before
the clock starts (it is not fastseg's cost); Numba is imported by fastseg, inside it.

Usage::

    python scripts/compile_time.py [--warm-runs 3]
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
t2 = time.perf_counter()
assert int(c.confusion.sum()) == truth.size
print(json.dumps({"import": t1 - t0, "first_call": t2 - t1, "total": t2 - t0}))
"""


def run(cache_dir: str) -> dict[str, float]:
    """One fresh process; its timings in seconds."""
    env = {**os.environ, "NUMBA_CACHE_DIR": cache_dir}
    out = subprocess.run(
        [sys.executable, "-c", CHILD], env=env, check=True, capture_output=True, text=True
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
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="fastseg-numba-cache-") as cache:
        cold = run(cache)
        warm = [run(cache) for _ in range(max(1, args.warm_runs))]
        n_files = sum(len(files) for _, _, files in os.walk(cache))
    median = {k: statistics.median(r[k] for r in warm) for k in warm[0]}
    print("import fastseg -> first fastseg.counts result (float32 channels-last 2x64x64x21)")
    print(f"(a) empty Numba cache: {_fmt(cold)}")
    print(f"(b) warm Numba cache:  {_fmt(median)}  median of {len(warm)} runs")
    totals = ", ".join(f"{r['total']:.2f}" for r in warm)
    print(f"    warm runs total: {totals} s; cache files written by (a): {n_files}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Time the ``fastseg`` command from process start to the printed report.

Writes a tiny synthetic store, then runs ``fastseg evaluate`` on it in fresh processes:
the first run may compile the Numba kernels (unless the on-disk cache already holds
them), the next ones load them from the cache: that is the cold start a CLI user feels.

Usage::

    python scripts/cli_cold_start.py [--runs 5] [--dtype float16]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fastseg.synth import write_dataset


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="warm runs (default 5)")
    parser.add_argument("--dtype", default="float16", help="score dtype (default float16)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "tiny.zarr"
        write_dataset(store, images=2, size=(64, 64), classes=5, dtype=args.dtype)
        command = [sys.executable, "-m", "fastseg.cli", "evaluate", "--true", str(store),
                   "--pred", str(store),
                   "--no-progress", "--format", "json"]  # fmt: skip
        times = []
        for _ in range(args.runs + 1):
            started = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True)
            times.append(time.perf_counter() - started)
    first, warm = times[0], times[1:]
    figures = {"first_s": round(first, 2), "warm_median_s": round(statistics.median(warm), 2),
               "warm_min_s": round(min(warm), 2), "runs": args.runs}  # fmt: skip
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())

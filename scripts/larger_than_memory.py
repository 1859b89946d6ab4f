"""The larger-than-memory run: write a float16 data set about twice the RAM, evaluate it.

Not run in CI (it writes tens of GB and takes a while). Steps:

1. ``fastseg synth`` writes ``--images`` images of ``--size`` x ``--classes`` float16
   scores (default sized to twice this machine's RAM) and their labels, unless the store
   is already there;
2. ``fastseg evaluate`` scores it in a child process, measured: wall time, throughput of
   scores (uncompressed GB/s) and the child's peak resident memory.

Usage::

    python scripts/larger_than_memory.py /path/with/space/big.zarr [--images N] [--keep]

Prints one JSON line with the figures (the README quotes them).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def _ram_bytes() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _disk_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("store", type=Path, help="where to write the data set")
    parser.add_argument("--images", type=int, help="images (default: scores = 2 x RAM)")
    parser.add_argument("--size", type=int, nargs=2, default=(1024, 1024), metavar=("H", "W"))
    parser.add_argument("--classes", type=int, default=19)
    parser.add_argument("--workers", type=int, help="evaluation threads (default: all cores)")
    parser.add_argument("--keep", action="store_true", help="keep the store afterwards")
    args = parser.parse_args()

    h, w = args.size
    per_image = h * w * args.classes * 2
    images = args.images or -(-2 * _ram_bytes() // per_image)
    figures: dict[str, object] = {
        "images": images, "size": [h, w], "classes": args.classes,
        "scores_gb": round(images * per_image / 1e9, 2), "ram_gb": round(_ram_bytes() / 1e9, 2),
    }  # fmt: skip
    fastseg = [sys.executable, "-m", "fastseg.cli"]
    if not (args.store / "zarr.json").exists():
        started = time.perf_counter()
        subprocess.run([*fastseg, "synth", str(args.store), "--images", str(images), "--size",
                        str(h), str(w), "--classes", str(args.classes)], check=True)  # fmt: skip
        figures["write_s"] = round(time.perf_counter() - started, 1)
    figures["disk_gb"] = round(_disk_bytes(args.store) / 1e9, 2)
    import zarr

    shape = zarr.open_group(args.store, mode="r")["pred"].shape  # the store may predate us
    images, per_image = shape[0], 2 * int(np.prod(shape[1:]))
    figures.update(images=images, scores_gb=round(images * per_image / 1e9, 2))

    command = [*fastseg, "evaluate", "--true", str(args.store),
               "--pred", str(args.store), "--format", "json",
               "--output", str(args.store.with_suffix(".report.json"))]  # fmt: skip
    if args.workers:
        command += ["--workers", str(args.workers)]
    # A fresh parent process runs the evaluation, so the peak RSS it reports for its
    # children is the evaluation's alone (not the writer's).
    probe = (
        "import resource, subprocess, sys, time; t = time.perf_counter(); "
        "subprocess.run(sys.argv[1:], check=True); "
        "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    run = subprocess.run([sys.executable, "-c", probe, *command], check=True,
                         stdout=subprocess.PIPE, text=True)  # fmt: skip
    seconds_text, peak_text = run.stdout.split()[-2:]
    seconds, peak_kib = float(seconds_text), int(peak_text)
    figures.update(
        evaluate_s=round(seconds, 1),
        scores_gb_per_s=round(images * per_image / 1e9 / seconds, 3),
        images_per_s=round(images / seconds, 2),
        peak_rss_mib=round(peak_kib / 1024, 1),
    )
    print(json.dumps(figures))
    if not args.keep:
        shutil.rmtree(args.store)
    return 0


if __name__ == "__main__":
    sys.exit(main())

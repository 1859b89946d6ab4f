"""Write a synthetic Zarr data set with fastseg.synth and report throughput and peak RSS.

The generator behind ``fastseg synth``; this script adds the measurements used for the
README (generation speed, memory bound) and works before the CLI does.

Usage: python scripts/make_dataset.py OUT [--images 64] [--size 512 512] [--classes 19]
       [--dtype float16] [--chunks 1 512 512] [--class-axis -1] [--zarr-format 3]
       [--workers N] [--seed 0] [--overwrite] [--remove]
"""

from __future__ import annotations

import argparse
import resource
import shutil
import sys
import time
from pathlib import Path

from fastseg import synth


def du(path: Path) -> int:
    """Bytes on disk under `path` (file sizes)."""
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="directory of the new Zarr group")
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--size", type=int, nargs="+", default=[512, 512], help="H W or D H W")
    parser.add_argument("--classes", type=int, default=19)
    parser.add_argument("--dtype", default="float16", choices=synth.SCORE_DTYPES)
    parser.add_argument("--chunks", type=int, nargs="+", default=None)
    parser.add_argument("--class-axis", type=int, default=-1, choices=[-1, 1])
    parser.add_argument("--zarr-format", type=int, default=3, choices=[2, 3])
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--remove", action="store_true", help="delete OUT when done")
    args = parser.parse_args()

    started = time.perf_counter()

    def progress(done: int, total: int) -> None:
        elapsed = time.perf_counter() - started
        print(f"\r{done}/{total} images, {done / elapsed:.1f} img/s", end="", file=sys.stderr)

    try:
        group = synth.write_dataset(
            args.out, images=args.images, size=args.size, classes=args.classes,
            dtype=args.dtype, chunks=args.chunks, class_axis=args.class_axis,
            zarr_format=args.zarr_format, workers=args.workers, seed=args.seed,
            overwrite=args.overwrite, progress=progress,
        )  # fmt: skip
    except (ValueError, FileExistsError) as error:
        sys.exit(f"make_dataset: {error}")
    seconds = time.perf_counter() - started
    print(file=sys.stderr)
    raw = group["pred"].nbytes + group["true"].nbytes
    disk = du(args.out)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"pred {group['pred'].shape} {group['pred'].dtype} chunks {group['pred'].chunks}")
    print(f"true {group['true'].shape} {group['true'].dtype} chunks {group['true'].chunks}")
    print(f"{seconds:.2f} s, {args.images / seconds:.1f} images/s, "
          f"{raw / seconds / 1e6:.0f} MB/s uncompressed ({raw / 1e6:.0f} MB), "
          f"{disk / seconds / 1e6:.0f} MB/s to disk ({disk / 1e6:.0f} MB), "
          f"peak RSS {peak_mib:.0f} MiB")  # fmt: skip
    if args.remove:
        shutil.rmtree(args.out)


if __name__ == "__main__":
    main()

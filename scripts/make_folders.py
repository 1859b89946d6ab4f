"""Write Cityscapes-like and nnU-Net-like folders of files from fastseg.synth label maps.

Cityscapes-like (``cityscapes OUT``)::

    OUT/gtFine/val/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png     truth, uint8 0..33
    OUT/gtFine/val/<city>/<city>_<seq>_<frame>_gtFine_instanceIds.png  (--instances) uint16
    OUT/gtFine/val/<city>/<city>_<seq>_<frame>_gtFine_color.png        (--color) RGB
    OUT/results/<city>_<seq>_<frame>_leftImg8bit.png                   prediction, uint8

Predictions are flat (the official evaluator finds them by name anywhere under its
results folder); truth is in city sub-folders. 34 label ids in the truth, the 19
evaluated ones in the predictions (``--all-ids`` keeps void ids there too), 2048 x 1024
by default (``--size H W``; ``--ragged`` varies the size from image to image).

nnU-Net-like (``nnunet OUT``)::

    OUT/labelsTs/case_0000.nii.gz       truth volume, uint8, with voxel spacing
    OUT/pred/case_0000.nii.gz           prediction, same geometry, same name
    OUT/pred/case_0000.npz              (--probabilities) key 'probabilities', (C, Z, Y, X)
    OUT/dataset.json                    nnU-Net's labels and file ending

Volumes are written as nnU-Net (SimpleITK) writes them: the NumPy volume ``(Z, Y, X)``
is the NIfTI's ``(X, Y, Z)`` data, so fastseg (which reads NIfTI in ``(Z, Y, X)``
order) and the ``.npz`` probabilities line up. Sizes vary from case to case
(``--size D H W`` is the largest).

The images are ``fastseg.synth.labels(spec, i)``: truth shapes and the prediction made
around them with realistic errors; the same seed gives the same files. The writers are
``fastseg.synth.write_cityscapes`` and ``fastseg.synth.write_nnunet`` (also used by
``fastseg demo --folders``); this script is their command line.

Usage: python scripts/make_folders.py cityscapes OUT [--images 100] [--size 1024 2048]
       [--ragged] [--instances] [--color] [--cities 3] [--all-ids] [--background ID]
       [--workers N] [--seed 0]
       python scripts/make_folders.py nnunet OUT [--cases 10] [--size 64 128 128]
       [--classes 4] [--probabilities] [--workers N] [--seed 0]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

# The writers live in the package (``fastseg demo --folders`` uses them too); this script
# is their command line, and tests and benchmarks import them from here or from synth.
from fastseg.synth import write_cityscapes, write_nnunet

__all__ = ["main", "write_cityscapes", "write_nnunet"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="kind", required=True)
    cs = sub.add_parser("cityscapes", help="PNG label ids in city sub-folders")
    cs.add_argument("out", type=Path)
    cs.add_argument("--images", type=int, default=100)
    cs.add_argument("--size", type=int, nargs=2, default=[1024, 2048], metavar=("H", "W"))
    cs.add_argument("--ragged", action="store_true", help="vary the size per image")
    cs.add_argument("--instances", action="store_true", help="also *_gtFine_instanceIds.png")
    cs.add_argument("--color", action="store_true", help="also *_gtFine_color.png (RGB)")
    cs.add_argument("--cities", type=int, default=3)
    cs.add_argument("--all-ids", action="store_true", help="void ids in predictions too")
    cs.add_argument("--background", type=int, default=0,
                    help="label id of the scene behind the objects (0 unlabeled, 7 road)")
    nn = sub.add_parser("nnunet", help="NIfTI volumes with spacing, identical names")
    nn.add_argument("out", type=Path)
    nn.add_argument("--cases", type=int, default=10)
    nn.add_argument("--size", type=int, nargs=3, default=[64, 128, 128], metavar=("D", "H", "W"))
    nn.add_argument("--classes", type=int, default=4)
    nn.add_argument("--probabilities", action="store_true", help="also .npz probabilities")
    nn.add_argument("--same-size", action="store_true", help="every case of --size")
    for p in (cs, nn):
        p.add_argument("--workers", type=int, default=None)
        p.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    if args.kind == "cityscapes":
        names = write_cityscapes(args.out, args.images, args.size, ragged=args.ragged,
                                 instances=args.instances, color=args.color,
                                 cities=args.cities, evaluated_only=not args.all_ids,
                                 background=args.background, seed=args.seed,
                                 workers=args.workers)  # fmt: skip
    else:
        names = write_nnunet(args.out, args.cases, args.size, classes=args.classes,
                             probabilities=args.probabilities, ragged=not args.same_size,
                             seed=args.seed, workers=args.workers)  # fmt: skip
    elapsed = time.perf_counter() - started
    print(f"wrote {len(names)} {args.kind} images to {args.out} in {elapsed:.1f} s",
          file=sys.stderr)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

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
around them with realistic errors; the same seed gives the same files.

Usage: python scripts/make_folders.py cityscapes OUT [--images 100] [--size 1024 2048]
       [--ragged] [--instances] [--color] [--cities 3] [--all-ids] [--workers N] [--seed 0]
       python scripts/make_folders.py nnunet OUT [--cases 10] [--size 64 128 128]
       [--classes 4] [--probabilities] [--workers N] [--seed 0]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fastseg import synth

#: Cityscapes label ids 0..33, those evaluated (the 19 with a trainId), and those with
#: instances (24-33).
CITYSCAPES_IDS = 34
EVALUATED_IDS = (7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33)
INSTANCE_IDS = range(24, 34)
CITIES = ("frankfurt", "lindau", "munster", "aachen", "bochum")


def _sizes(size: Sequence[int], n: int, ragged: bool, seed: int) -> list[tuple[int, ...]]:
    """`n` sizes: all `size`, or (`ragged`) each side drawn in [size / 2, size]."""
    if not ragged:
        return [tuple(size)] * n
    rng = np.random.default_rng([seed, 99])
    return [tuple(int(rng.integers(max(s // 2, 2), s + 1)) for s in size) for _ in range(n)]


def _map(fn, items, workers: int | None) -> list:
    if workers == 1:
        return [fn(i) for i in items]
    with concurrent.futures.ThreadPoolExecutor(workers or os.cpu_count()) as pool:
        return list(pool.map(fn, items))


def _instances(labels: np.ndarray) -> np.ndarray:
    """Cityscapes instanceIds: ``id * 1000 + k`` on instance classes, else the label id."""
    from scipy import ndimage

    out = labels.astype(np.uint16)
    for label in INSTANCE_IDS:
        mask = labels == label
        if mask.any():
            components, _ = ndimage.label(mask)
            out[mask] = label * 1000 + components[mask] - 1
    return out


#: Label id -> itself when evaluated, else an evaluated id (for predictions).
_EVALUATED_LUT = np.array(
    [i if i in EVALUATED_IDS else EVALUATED_IDS[i % len(EVALUATED_IDS)] for i in range(256)],
    np.uint8,
)


def _colour(labels: np.ndarray) -> np.ndarray:
    palette = np.random.default_rng(7).integers(0, 256, (256, 3), dtype=np.uint8)
    return palette[labels]


def write_cityscapes(
    out: str | os.PathLike[str],
    images: int = 100,
    size: Sequence[int] = (1024, 2048),
    *,
    ragged: bool = False,
    instances: bool = False,
    color: bool = False,
    cities: int = 3,
    evaluated_only: bool = True,
    seed: int = 0,
    workers: int | None = None,
) -> list[str]:
    """Write a Cityscapes-like folder (see the module); return the image names (ids).

    With `evaluated_only` the predictions hold only the 19 evaluated label ids (a void
    id predicted by the generator becomes an evaluated one); the truth keeps every id.
    """
    from PIL import Image

    out = Path(out)
    sizes = _sizes(size, images, ragged, seed)
    names = []
    for i in range(images):
        city = CITIES[i % max(1, min(cities, len(CITIES)))]
        names.append((city, f"{city}_{i // len(CITIES):06d}_{19 + i:06d}"))
    for city in {c for c, _ in names}:
        (out / "gtFine" / "val" / city).mkdir(parents=True, exist_ok=True)
    (out / "results").mkdir(parents=True, exist_ok=True)

    def one(i: int) -> None:
        spec = synth.make_spec(sizes[i], CITYSCAPES_IDS, ignore_index=None, seed=seed)
        true, guess = synth.labels(spec, i)
        if evaluated_only:  # a model trained on the 19 classes predicts only their ids
            guess = _EVALUATED_LUT[guess]
        city, name = names[i]
        gt = out / "gtFine" / "val" / city
        Image.fromarray(true).save(gt / f"{name}_gtFine_labelIds.png")
        Image.fromarray(guess).save(out / "results" / f"{name}_leftImg8bit.png")
        if instances:
            Image.fromarray(_instances(true)).save(gt / f"{name}_gtFine_instanceIds.png")
        if color:
            Image.fromarray(_colour(true)).save(gt / f"{name}_gtFine_color.png")

    _map(one, range(images), workers)
    return [name for _, name in names]


def write_nnunet(
    out: str | os.PathLike[str],
    cases: int = 10,
    size: Sequence[int] = (64, 128, 128),
    *,
    classes: int = 4,
    probabilities: bool = False,
    ragged: bool = True,
    seed: int = 0,
    workers: int | None = None,
) -> list[str]:
    """Write an nnU-Net-like folder (see the module); return the case names (ids)."""
    import nibabel

    out = Path(out)
    for sub in ("labelsTs", "pred"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    sizes = _sizes(size, cases, ragged, seed)
    rng = np.random.default_rng([seed, 7])
    spacings = [tuple(np.round(rng.uniform(0.5, 3.0, 3), 3)) for _ in range(cases)]
    names = [f"case_{i:04d}" for i in range(cases)]

    def one(i: int) -> None:
        spec = synth.make_spec(sizes[i], classes, ignore_index=None, absent_class=False,
                               seed=seed, dtype="float32")  # fmt: skip
        true, guess = synth.labels(spec, i)
        sz, sy, sx = spacings[i]
        affine = np.diag([sx, sy, sz, 1.0])
        affine[:3, 3] = (-10.0 * i, 20.0, -30.0)
        for folder, vol in (("labelsTs", true), ("pred", guess)):
            image = nibabel.Nifti1Image(vol.T, affine)  # (Z, Y, X) -> NIfTI (X, Y, Z)
            image.header.set_data_dtype(np.uint8)
            nibabel.save(image, out / folder / f"{names[i]}.nii.gz")
        if probabilities:
            p = synth.scores(spec, i, guess)  # (Z, Y, X, C) float32
            np.savez_compressed(out / "pred" / f"{names[i]}.npz",
                                probabilities=np.moveaxis(p, -1, 0))  # fmt: skip

    _map(one, range(cases), workers)
    labels = {"background": 0, **{f"class{k}": k for k in range(1, classes)}}
    dataset = {"labels": labels, "file_ending": ".nii.gz", "numTraining": 0,
               "channel_names": {"0": "CT"}}  # fmt: skip
    (out / "dataset.json").write_text(json.dumps(dataset, indent=1) + "\n")
    return names


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
                                 seed=args.seed,
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

"""Time 8-bit PNG label-map decoders: Pillow, OpenCV, imagecodecs (libpng, libspng), fastseg.png.

Writes a 2048 x 1024 8-bit grayscale PNG of Cityscapes-like label ids
(``fastseg.synth.labels``, Pillow's default compression), checks that every decoder gives
Pillow's array, then times each on one core (the process is pinned to one CPU; OpenCV
told to use one thread) in two orders:

``blocks``       each decoder ``--runs`` times in a row (a warm loop);
``interleaved``  all decoders' runs shuffled together, as when a worker decodes files
                 between kernel calls.

Median and minimum per decoder, in milliseconds. Decoders that are not installed are
skipped. A palette PNG (VOC's format) is checked too: a decoder that returns colours
rather than the palette indices cannot read such label maps.

Usage: python scripts/png_decoders.py [--runs 300] [--size 1024 2048] [--png FILE]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np


def decoders() -> dict[str, Callable[[str], np.ndarray]]:
    from PIL import Image

    def pillow(path: str) -> np.ndarray:
        with Image.open(path) as image:
            return np.asarray(image)

    found: dict[str, Callable[[str], np.ndarray]] = {"pillow": pillow}
    try:
        import cv2

        cv2.setNumThreads(1)
        found["opencv"] = lambda path: cv2.imread(path, cv2.IMREAD_UNCHANGED)
    except ImportError:
        pass
    try:
        import imagecodecs

        def codec(fn: Callable[[bytes], np.ndarray]) -> Callable[[str], np.ndarray]:
            def decode(path: str) -> np.ndarray:
                with open(path, "rb") as f:
                    return fn(f.read())

            return decode

        found["imagecodecs png (libpng)"] = codec(imagecodecs.png_decode)
        found["imagecodecs spng"] = codec(imagecodecs.spng_decode)
        from fastseg.png import decode_gray

        found["fastseg.png (libdeflate + Numba unfilter)"] = codec(decode_gray)
    except ImportError:
        pass
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--size", type=int, nargs=2, default=[1024, 2048], metavar=("H", "W"))
    parser.add_argument("--png", type=Path, help="time this PNG instead of a synthetic one")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[-1]})
    from PIL import Image

    from fastseg import synth

    tmp = Path(tempfile.mkdtemp(prefix="fastseg-png-"))
    labels = synth.labels(synth.make_spec(args.size, 34, ignore_index=None), 0)[0]
    path = args.png or tmp / "labelIds.png"
    if args.png is None:
        Image.fromarray(labels).save(path)
    palette = tmp / "palette.png"
    image = Image.fromarray(labels).convert("P")
    image.putpalette([v for k in range(256) for v in (k, 255 - k, k * 7 % 256)])
    image.save(palette)

    found = decoders()
    reference = found["pillow"](str(path))
    usable = {}
    for name, fn in found.items():
        try:
            same = np.array_equal(fn(str(path)), reference)
            indices = np.array_equal(fn(str(palette)), found["pillow"](str(palette)))
        except Exception as exc:
            print(f"{name}: fails ({exc})")
            continue
        print(f"{name}: same array {same}; palette PNG read as indices {indices}")
        if same:
            usable[name] = fn
    print(f"{path} ({os.path.getsize(path)} bytes, {reference.shape} {reference.dtype}), "
          f"one core, {args.runs} runs each")  # fmt: skip
    for order in ("blocks", "interleaved"):
        times: dict[str, list[float]] = {name: [] for name in usable}
        for fn in usable.values():
            for _ in range(5):
                fn(str(path))
        plan = [n for n in usable for _ in range(args.runs)]
        if order == "interleaved":
            random.Random(0).shuffle(plan)
        for name in plan:
            start = time.perf_counter()
            usable[name](str(path))
            times[name].append(time.perf_counter() - start)
        for name, ts in times.items():
            print(f"  {order:11s} {name:26s} median {1e3 * statistics.median(ts):6.2f} ms"
                  f"   min {1e3 * min(ts):6.2f} ms")  # fmt: skip
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()

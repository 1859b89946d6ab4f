"""Score a synthetic batch with the post's NumPy reference and with fastseg.

Prints both results for every metric and metric_type, and both times. This is the
README's first command until ``fastseg demo`` exists.

Usage: python scripts/compare_reference.py [--images 4] [--size 256] [--classes 21]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import fastseg
from fastseg import reference


def synthetic_batch(images: int, size: int, classes: int, seed: int = 0):
    """Truth label maps of discs and diamonds, and noisy softmax scores that mostly agree."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    truth = np.full((images, size, size), classes - 1, np.uint8)  # last class: background
    for b in range(images):
        for _ in range(6):
            c = int(rng.integers(0, classes - 1))
            cy, cx = rng.integers(0, size, 2).tolist()
            r = int(rng.integers(size // 16, size // 5))
            disc = (yy - cy) ** 2 + (xx - cx) ** 2 < r**2
            diamond = np.abs(yy - cy) + np.abs(xx - cx) < r
            truth[b][disc if rng.random() < 0.5 else diamond] = c
    logits = rng.normal(0.0, 1.0, (images, size, size, classes)).astype(np.float32)
    logits += 2.5 * np.eye(classes, dtype=np.float32)[np.roll(truth, 3, axis=2)]
    scores = np.exp(logits - logits.max(-1, keepdims=True))
    scores /= scores.sum(-1, keepdims=True)
    return truth, scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--classes", type=int, default=21)
    args = parser.parse_args()

    truth, scores = synthetic_batch(args.images, args.size, args.classes)
    onehot = np.eye(args.classes, dtype=np.float32)[truth]  # the reference needs one-hot truth
    print(f"batch: {scores.shape} {scores.dtype} scores, {truth.shape} {truth.dtype} labels\n")

    t0 = time.perf_counter()
    fastseg.counts(truth[:1, :8, :8], scores[:1, :8, :8])  # compile (or load from cache)
    fastseg.counts(truth[:1, :8, :8], scores[:1, :8, :8], soft=True)
    print(f"fastseg first call (Numba compile or cache load): {time.perf_counter() - t0:.2f} s\n")

    print(f"{'metric':>6} {'type':>9} {'reference':>12} {'fastseg':>12} {'ref ms':>9} "
          f"{'fastseg ms':>10} {'speed-up':>9}")  # fmt: skip
    for name in ("iou", "dice"):
        for kind in ("standard", "naive", "soft"):
            t0 = time.perf_counter()
            ref = reference.metrics_np(onehot, scores, name, kind)
            t_ref = time.perf_counter() - t0
            t0 = time.perf_counter()
            ours = fastseg.metrics(truth, scores, name, kind)
            t_ours = time.perf_counter() - t0
            assert np.isclose(ref, ours, rtol=1e-6), (name, kind, ref, ours)
            print(f"{name:>6} {kind:>9} {ref:12.6f} {ours:12.6f} {t_ref * 1e3:9.1f} "
                  f"{t_ours * 1e3:10.1f} {t_ref / t_ours:8.0f}x")  # fmt: skip


if __name__ == "__main__":
    main()

"""Boundary IoU benchmarks: boundary counts of uint8 label-map pairs against region counts.

Workload (group ``boundary``): 2 images of 1024 x 2048, 19 classes, Cityscapes-like maps
drawn as a few hundred random rectangles and ellipses over a background class; the
prediction is the truth shifted by a few pixels, with a tenth of the shapes redrawn in
another class. The width is the paper's default, 0.02 of the diagonal (46 pixels).

Methods:

``boundary``  ``fastseg.boundary.boundary_counts(truth, pred, 19, 46)``, JIT warmed first;
``counts``    ``fastseg.counts(truth, pred, num_classes=19)``: region counting of the same
              pair, the yardstick (the target: boundary <= ~3 x counts).

Under ``--benchmark-disable`` (the README's test command) the maps are 2 images of
128 x 256 (width 6) and each benchmark runs once, untimed, as a correctness test: the
boundary counts against a SciPy reference (``minimum_filter`` over a (2d + 1)^2 box with
zeros outside: the paper's erosion), the region counts against ``np.bincount``.
"""

from __future__ import annotations

import numpy as np
import pytest
import workloads
from scipy import ndimage

import fastseg
from fastseg.boundary import boundary_counts, boundary_width

CLASSES = 19
FULL = (2, 1024, 2048)
SMALL = (2, 128, 256)
SHAPES = 300
ROUNDS = 20


def draw_shapes(rng: np.random.Generator, shape: tuple[int, int], n: int) -> np.ndarray:
    """A uint8 map of `n` random rectangles and ellipses of random classes."""
    h, w = shape
    out = np.full(shape, rng.integers(0, CLASSES), np.uint8)
    for _ in range(n):
        c = rng.integers(0, CLASSES)
        y, x = int(rng.integers(0, h)), int(rng.integers(0, w))
        a, b = int(rng.integers(2, max(3, h // 6))), int(rng.integers(2, max(3, w // 6)))
        ys, xs = slice(max(0, y - a), y + a), slice(max(0, x - b), x + b)
        if rng.random() < 0.5:
            out[ys, xs] = c
        else:
            yy, xx = np.ogrid[ys.start : min(h, y + a), xs.start : min(w, x + b)]
            out[ys, xs][((yy - y) / a) ** 2 + ((xx - x) / b) ** 2 <= 1] = c
    return out


def label_maps(shape: tuple[int, int, int], seed: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """(truth, pred) uint8 maps of `shape`, as the module docstring describes."""
    rng = np.random.default_rng(seed)
    b, h, w = shape
    truth = np.stack([draw_shapes(rng, (h, w), SHAPES * h // 1024 or SHAPES // 8)
                      for _ in range(b)])  # fmt: skip
    pred = np.roll(truth, (h // 256 + 1, -(w // 512) - 1), axis=(1, 2))
    for image in pred:
        redrawn = draw_shapes(rng, (h, w), SHAPES // 10)
        moved = draw_shapes(rng, (h, w), SHAPES // 10) % 2 == 1
        image[moved] = redrawn[moved]
    return truth, np.ascontiguousarray(pred)


def reference(truth: np.ndarray, pred: np.ndarray, d: int) -> np.ndarray:
    """(B, 3, N) true / pred / both boundary pixels, class by class with SciPy."""
    out = np.zeros((truth.shape[0], 3, CLASSES), np.int64)
    for b in range(truth.shape[0]):
        for c in range(CLASSES):
            regions = []
            for x in (truth[b], pred[b]):
                mask = (x == c).astype(np.uint8)
                core = ndimage.minimum_filter(mask, size=2 * d + 1, mode="constant", cval=0)
                regions.append(mask.astype(bool) & ~core.astype(bool))
            gb, pb = regions
            out[b, :, c] = np.count_nonzero(gb), np.count_nonzero(pb), np.count_nonzero(gb & pb)
    return out


@pytest.fixture(scope="module")
def maps(bench_size: str) -> dict:
    shape = FULL if bench_size == "full" else SMALL
    truth, pred = label_maps(shape)
    d = boundary_width(shape[1:], 0.02)
    return {"truth": truth, "pred": pred, "d": d}


def _tag(benchmark, maps: dict, method: str) -> None:
    benchmark.group = "boundary"
    benchmark.extra_info.update(workload="boundary", layout="labels", method=method,
                                pixels=int(maps["truth"].size), width=maps["d"])  # fmt: skip


def test_boundary(benchmark, maps: dict) -> None:
    _tag(benchmark, maps, "boundary")
    truth, pred, d = maps["truth"], maps["pred"], maps["d"]

    def run() -> np.ndarray:
        c = boundary_counts(truth, pred, CLASSES, d)
        return np.stack([c.true, c.pred, c.both], axis=1)

    run()
    counts = benchmark.pedantic(run, rounds=ROUNDS, iterations=1)
    np.testing.assert_array_equal(counts, reference(truth, pred, d))
    # Blocky maps: some pixels are interior at this width, and the boundaries overlap.
    assert 0 < counts[:, 2].sum() < counts[:, 0].sum() < truth.size


def test_counts(benchmark, maps: dict) -> None:
    _tag(benchmark, maps, "counts")
    truth, pred = maps["truth"], maps["pred"]

    def run() -> np.ndarray:
        return fastseg.counts(truth, pred, num_classes=CLASSES).confusion

    run()
    confusion = benchmark.pedantic(run, rounds=ROUNDS, iterations=1)
    flat = truth.astype(np.int64).ravel() * CLASSES + pred.ravel()
    expected = np.bincount(flat, minlength=CLASSES**2).reshape(CLASSES, CLASSES)
    np.testing.assert_array_equal(confusion, expected)


def test_counts_with_boundary(benchmark, maps: dict) -> None:
    """The whole call a user makes: region and boundary counts of the pair."""
    _tag(benchmark, maps, "counts+boundary")
    truth, pred, d = maps["truth"], maps["pred"], maps["d"]

    def run() -> fastseg.Counts:
        return fastseg.counts(truth, pred, num_classes=CLASSES, boundary=0.02)

    run()
    counts = benchmark.pedantic(run, rounds=ROUNDS, iterations=1)
    found = counts.boundary
    np.testing.assert_array_equal(np.stack([found.true, found.pred, found.both], axis=1),
                                  reference(truth, pred, d))  # fmt: skip


@pytest.fixture(scope="module")
def cityscapes(bench_size: str) -> dict:
    """The Cityscapes score workload (2 x 1024 x 2048 x 19 float32) in both layouts."""
    truth, scores = workloads.build("cityscapes", bench_size)
    return {"truth": truth, "channels_last": scores,
            "channels_first": workloads.channels_first(scores)}  # fmt: skip


@pytest.mark.parametrize("layout", workloads.LAYOUTS)
@pytest.mark.parametrize("method", ["counts", "counts+boundary"])
def test_scores(benchmark, cityscapes: dict, layout: str, method: str) -> None:
    """Region counts of scores, alone and with boundary counts (width 0.02 of the
    diagonal): what the boundary adds on the Cityscapes workload."""
    benchmark.group = f"cityscapes-{layout}-boundary"
    benchmark.extra_info.update(workload="cityscapes", layout=layout, method=method)
    truth, scores = cityscapes["truth"], cityscapes[layout]
    axis = workloads.class_axis(layout)
    width = 0.02 if method == "counts+boundary" else None

    def run() -> fastseg.Counts:
        return fastseg.counts(truth, scores, class_axis=axis, boundary=width)

    run()
    counts = benchmark.pedantic(run, rounds=ROUNDS // 2, iterations=1)
    if width is not None:
        labels = np.argmax(scores, axis=axis).astype(np.uint8)
        d = boundary_width(truth.shape[1:], width)
        found = counts.boundary
        np.testing.assert_array_equal(
            np.stack([found.true, found.pred, found.both], axis=1)[:, :, :CLASSES],
            reference(truth, labels, d),
        )

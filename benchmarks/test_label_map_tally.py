"""Label-map benchmarks (issue 11): two uint8 label maps counted, random and blocky.

For each pattern (group ``labels-<pattern>``), 16 images of 1024 x 2048, 19 classes:

``random``  every pixel of both maps an independent uniform class;
``blocky``  realistic maps: 32 x 32 blocks of one class (neighbouring pixels agree), the
            prediction equal to the truth except 10 % of the blocks and 2 % of the pixels.

Methods, all on every core:

``fastseg``   ``fastseg.confusion_matrix(truth, pred, num_classes=19)``, JIT warmed first;
``read``      a parallel read of both maps (every byte OR-ed), the memory floor;
``hist``      a parallel 256-bin histogram of the truth map alone: one counter increment
              per pixel, the least work any tally of the pairs must do;
``bincount``  ``np.bincount(truth * 19 + pred)``, NumPy's idiom (same counts).

The issue's targets: fastseg <= 2 x (read + hist), and >= 10x bincount. Under
``--benchmark-disable`` (the README's test command) the maps are 2 images of 128 x 256
and each benchmark runs once, untimed, as a correctness test. ``extra_info`` tags each
entry (workload ``labels``, layout = pattern, method) for ``scripts/bench_table.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
from numba import njit, prange

import fastseg

CLASSES = 19
FULL = (16, 1024, 2048)
SMALL = (2, 128, 256)
BLOCK = 32
PATTERNS = ("random", "blocky")
ROUNDS = {"fastseg": 20, "read": 20, "hist": 20, "bincount": 3}
#: Pixels per parallel task of the floors (1 MiB of each map).
CHUNK = 2**20


def label_maps(pattern: str, shape: tuple[int, int, int], seed: int = 11) -> tuple:
    """(truth, pred) uint8 label maps of `shape` in `pattern`."""
    rng = np.random.default_rng([seed, PATTERNS.index(pattern)])
    if pattern == "random":
        truth = rng.integers(0, CLASSES, shape, dtype=np.uint8)
        return truth, rng.integers(0, CLASSES, shape, dtype=np.uint8)
    b, h, w = shape
    blocks = rng.integers(0, CLASSES, (b, h // BLOCK, w // BLOCK), dtype=np.uint8)
    changed = np.where(rng.random(blocks.shape) < 0.1,
                       rng.integers(0, CLASSES, blocks.shape, dtype=np.uint8), blocks)  # fmt: skip
    grow = np.ones((1, BLOCK, BLOCK), np.uint8)
    truth = np.ascontiguousarray(np.kron(blocks, grow))
    pred = np.kron(changed, grow)
    noise = rng.random(shape) < 0.02
    pred[noise] = rng.integers(0, CLASSES, int(noise.sum()), dtype=np.uint8)
    return truth, np.ascontiguousarray(pred)


@njit(parallel=True, nogil=True, cache=True)
def _read_both(a, b, chunk):  # pragma: no cover - compiled
    n = a.size
    n_chunks = (n + chunk - 1) // chunk
    partial = np.zeros(n_chunks, a.dtype)
    for c in prange(n_chunks):
        lo = c * chunk
        x = a[lo : min(lo + chunk, n)]
        y = b[lo : min(lo + chunk, n)]
        # The bits OR-ed: the least work per byte (a widening sum is compute-bound).
        acc = partial[c]
        for i in range(x.size):
            acc |= x[i] | y[i]
        partial[c] = acc
    acc = partial[0]
    for c in range(n_chunks):
        acc |= partial[c]
    return acc


@njit(parallel=True, nogil=True, cache=True)
def _histogram(a, chunk):  # pragma: no cover - compiled
    n = a.size
    n_chunks = (n + chunk - 1) // chunk
    tables = np.zeros((n_chunks, 256), np.int64)
    for c in prange(n_chunks):
        lo = c * chunk
        x = a[lo : min(lo + chunk, n)]
        table = tables[c]
        for i in range(x.size):
            table[x[i]] += 1
    return tables.sum(axis=0)


@pytest.fixture(scope="module", params=PATTERNS)
def maps(request: pytest.FixtureRequest, bench_size: str) -> dict:
    shape = FULL if bench_size == "full" else SMALL
    truth, pred = label_maps(request.param, shape)
    flat = truth.astype(np.int64).ravel() * CLASSES + pred.ravel()
    expected = np.bincount(flat, minlength=CLASSES**2).reshape(CLASSES, CLASSES)
    return {"pattern": request.param, "truth": truth, "pred": pred, "expected": expected}


def _tag(benchmark, maps: dict, method: str) -> None:
    benchmark.group = f"labels-{maps['pattern']}"
    benchmark.extra_info.update(workload="labels", layout=maps["pattern"], method=method,
                                pixels=int(maps["truth"].size))  # fmt: skip


def test_fastseg(benchmark, maps: dict) -> None:
    _tag(benchmark, maps, "fastseg")

    def run() -> np.ndarray:
        return fastseg.confusion_matrix(maps["truth"], maps["pred"], num_classes=CLASSES)

    run()
    confusion = benchmark.pedantic(run, rounds=ROUNDS["fastseg"], iterations=1)
    np.testing.assert_array_equal(confusion, maps["expected"])


def test_read(benchmark, maps: dict) -> None:
    _tag(benchmark, maps, "read")
    truth, pred = maps["truth"].ravel(), maps["pred"].ravel()
    total = benchmark.pedantic(_read_both, args=(truth, pred, CHUNK), rounds=ROUNDS["read"],
                               iterations=1, warmup_rounds=1)  # fmt: skip
    assert total == np.bitwise_or.reduce(truth, axis=None) | np.bitwise_or.reduce(pred, axis=None)


def test_hist(benchmark, maps: dict) -> None:
    _tag(benchmark, maps, "hist")
    truth = maps["truth"].ravel()
    table = benchmark.pedantic(_histogram, args=(truth, CHUNK), rounds=ROUNDS["hist"],
                               iterations=1, warmup_rounds=1)  # fmt: skip
    np.testing.assert_array_equal(table[:CLASSES], maps["expected"].sum(axis=1))


def test_bincount(benchmark, maps: dict) -> None:
    _tag(benchmark, maps, "bincount")
    truth, pred = maps["truth"], maps["pred"]

    def run() -> np.ndarray:
        flat = truth.astype(np.int64).ravel() * CLASSES + pred.ravel()
        return np.bincount(flat, minlength=CLASSES**2).reshape(CLASSES, CLASSES)

    confusion = benchmark.pedantic(run, rounds=ROUNDS["bincount"], iterations=1)
    np.testing.assert_array_equal(confusion, maps["expected"])

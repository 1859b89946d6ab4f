"""Deterministic benchmark workloads (issue 2): softmax scores and correlated truth.

Every workload is a batch of softmax scores in a given dtype and a ``uint8`` truth label
map whose classes agree with the scores' argmax on most pixels, so IoU and the confusion
matrix are non-trivial. Data are generated chunk by chunk (one image, a few rows at a
time) from ``numpy.random.default_rng`` seeded with the workload, image and row, so

* the same workload is bit-identical in every process (benchmarks, memory.py);
* the first ``k`` images of a batch do not depend on the batch size (``build(...,
  batch=2)`` is the 2-image sub-batch of the full workload);
* generation never holds more than a few MiB of temporaries beside the result.

Sizes: ``"full"`` are the issue's shapes; ``"small"`` divides every spatial size by 8
and keeps 1-2 images, for the untimed ``--benchmark-disable`` pass of the test suite.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import numpy as np

SEED = 20240602
LAYOUTS = ("channels_last", "channels_first")
#: Fraction of pixels whose scores are boosted at the true class (the rest is noise).
AGREEMENT = 0.7
#: Logit boost at the true class of those pixels.
BOOST = 3.0
#: Elements of score generated at once (bounds the temporaries: 4 Mi float32 = 16 MiB).
CHUNK_ELEMENTS = 4 * 2**20


@dataclass(frozen=True)
class Spec:
    """Shape of a workload: batch, spatial shape, classes, dtype."""

    batch: int
    spatial: tuple[int, ...]
    num_classes: int
    dtype: type


WORKLOADS: dict[str, Spec] = {
    "voc": Spec(8, (512, 512), 21, np.float32),
    "ade": Spec(4, (512, 512), 150, np.float32),
    "ade16": Spec(4, (512, 512), 150, np.float16),
    "cityscapes": Spec(2, (1024, 2048), 19, np.float32),
    "volume": Spec(1, (256, 256, 256), 14, np.float16),
}
NAMES = tuple(WORKLOADS)
#: Small shapes: spatial sizes / 8, at most 2 images.
SMALL_DIVISOR = 8
SMALL_BATCH = 2


def spec(name: str, size: str = "full") -> Spec:
    """The Spec of a workload at size ``"full"`` or ``"small"``."""
    s = WORKLOADS[name]
    if size == "full":
        return s
    if size != "small":
        raise ValueError(f"size must be 'full' or 'small', got {size!r}")
    spatial = tuple(max(1, d // SMALL_DIVISOR) for d in s.spatial)
    return Spec(min(s.batch, SMALL_BATCH), spatial, s.num_classes, s.dtype)


def size_from_env(default: str) -> str:
    """``FASTSEG_BENCH_SIZE`` (full/small) or ``FASTSEG_BENCH_SMALL`` (1/0), else default."""
    size = os.environ.get("FASTSEG_BENCH_SIZE", "").strip().lower()
    if size in ("full", "small"):
        return size
    small = os.environ.get("FASTSEG_BENCH_SMALL", "").strip().lower()
    if small in ("1", "true", "yes"):
        return "small"
    if small in ("0", "false", "no"):
        return "full"
    return default


def _class_prior(name: str, n: int) -> np.ndarray:
    # Dirichlet-distributed class frequencies: a few frequent classes, a long tail.
    rng = np.random.default_rng([SEED, NAMES.index(name), 2**31])
    return rng.dirichlet(np.full(n, 0.5))


def _fill_chunk(rng: np.random.Generator, prior: np.ndarray, out_s: np.ndarray,
                out_t: np.ndarray) -> None:  # fmt: skip
    """Fill scores ``out_s`` (..., N) and truth ``out_t`` (...) of one chunk in place."""
    n = prior.size
    shape = out_t.shape
    m = out_t.size
    truth = rng.choice(n, size=m, p=prior).astype(np.uint8)
    logits = rng.standard_normal((m, n), dtype=np.float32)
    # A per-pixel temperature makes the softmax anything from flat to nearly one-hot.
    logits *= rng.uniform(0.5, 2.0, size=(m, 1)).astype(np.float32)
    hit = rng.random(m, dtype=np.float32) < AGREEMENT
    rows = np.flatnonzero(hit)
    logits[rows, truth[rows]] += np.float32(BOOST)
    logits -= logits.max(axis=1, keepdims=True)
    np.exp(logits, out=logits)
    logits /= logits.sum(axis=1, keepdims=True)
    out_s[...] = logits.reshape(*shape, n)
    out_t[...] = truth.reshape(shape)


def build(name: str, size: str = "full", batch: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(truth, scores)``: uint8 (B, *spatial) and channels-last (B, *spatial, N)."""
    s = spec(name, size)
    b = s.batch if batch is None else batch
    n = s.num_classes
    truth = np.empty((b, *s.spatial), np.uint8)
    scores = np.empty((b, *s.spatial, n), s.dtype)
    prior = _class_prior(name, n)
    row_elems = math.prod(s.spatial[1:]) * n
    rows = max(1, CHUNK_ELEMENTS // row_elems)
    wid = NAMES.index(name)
    for i in range(b):
        for r0 in range(0, s.spatial[0], rows):
            rng = np.random.default_rng([SEED, wid, i, r0])
            sl = (i, slice(r0, r0 + rows))
            _fill_chunk(rng, prior, scores[sl], truth[sl])
    return truth, scores


def channels_first(scores: np.ndarray) -> np.ndarray:
    """C-contiguous copy with the class axis moved from last to 1."""
    return np.ascontiguousarray(np.moveaxis(scores, -1, 1))


def class_axis(layout: str) -> int:
    """``class_axis`` argument of fastseg for a layout."""
    return -1 if layout == "channels_last" else 1


def bincount_counts(truth: np.ndarray, scores: np.ndarray, axis: int, n: int) -> tuple[
        np.ndarray, np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """The best NumPy idiom: argmax + one bincount; per-image tp, pred, true and confusion.

    Returns ``(tp, pred, true, confusion)`` with shapes (B, N) x 3 and (N, N), the same
    counts as ``fastseg.counts``.
    """
    b = truth.shape[0]
    a = scores.argmax(axis=axis).reshape(b, -1)
    idx = truth.reshape(b, -1).astype(np.int64) * n + a
    idx += (np.arange(b, dtype=np.int64) * (n * n))[:, None]
    per_image = np.bincount(idx.ravel(), minlength=b * n * n).reshape(b, n, n)
    tp = np.diagonal(per_image, axis1=1, axis2=2).copy()
    return tp, per_image.sum(axis=1), per_image.sum(axis=2), per_image.sum(axis=0)


@dataclass
class Workload:
    """A built workload: truth, channels-last scores, the channels-first copy on demand."""

    name: str
    size: str
    truth: np.ndarray
    scores_cl: np.ndarray
    _cf: np.ndarray | None = field(default=None, repr=False)
    _expected: tuple[np.ndarray, ...] | None = field(default=None, repr=False)

    @classmethod
    def create(cls, name: str, size: str = "full") -> Workload:
        """Build the named workload."""
        truth, scores = build(name, size)
        return cls(name, size, truth, scores)

    @property
    def num_classes(self) -> int:
        """N."""
        return int(self.scores_cl.shape[-1])

    def scores(self, layout: str) -> np.ndarray:
        """Scores in ``layout`` (the channels-first copy is made once, then kept)."""
        if layout == "channels_last":
            return self.scores_cl
        if self._cf is None:
            self._cf = channels_first(self.scores_cl)
        return self._cf

    def expected(self) -> tuple[np.ndarray, ...]:
        """(tp, pred, true, confusion) from the NumPy idiom on channels-last scores."""
        if self._expected is None:
            self._expected = bincount_counts(self.truth, self.scores_cl, -1, self.num_classes)
        return self._expected

"""Benchmarks of issue 2: fastseg.counts against a bare read pass and NumPy's bincount.

For every workload x layout (group ``<workload>-<layout>``):

``fastseg``   ``fastseg.counts(truth, scores, class_axis=...)``, JIT warmed first;
``read``      a parallel read of every score (:mod:`readpass`), the physical floor;
``bincount``  argmax + one ``np.bincount``, NumPy's best idiom (same counts).

Group ``voc-channels_last-sub2`` compares, on the first 2 voc images only, the post's
NumPy code (:func:`fastseg.reference.mean_iou_np`, one round: slow and memory hungry)
with ``fastseg.mean_iou`` on the same inputs (float32 one-hot truth and scores) and with
``fastseg.counts`` on the label map.

Every benchmark also checks its result, so ``--benchmark-disable`` (small workloads, one
untimed call each) makes this module a correctness test. ``benchmark.extra_info`` tags
each entry with workload, layout and method for ``scripts/bench_table.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
import workloads
from readpass import read_pass

import fastseg
from fastseg.reference import mean_iou_np

#: Timed rounds per method (the JSON reports min, median, ...); each round is one call.
ROUNDS = {"fastseg": 20, "read": 20, "bincount": 5, "sub2": 20}

LAYOUTS = pytest.mark.parametrize("layout", workloads.LAYOUTS)


def _tag(benchmark, workload: str, layout: str, method: str) -> None:
    benchmark.group = f"{workload}-{layout}"
    benchmark.extra_info.update(workload=workload, layout=layout, method=method)


@LAYOUTS
def test_fastseg(benchmark, workload: workloads.Workload, layout: str) -> None:
    scores = workload.scores(layout)
    axis = workloads.class_axis(layout)
    _tag(benchmark, workload.name, layout, "fastseg")

    def run() -> fastseg.Counts:
        return fastseg.counts(workload.truth, scores, class_axis=axis)

    run()  # compile (or load from the cache) and warm the thread pool, untimed
    c = benchmark.pedantic(run, rounds=ROUNDS["fastseg"], iterations=1)
    tp, pred, true, confusion = workload.expected()
    np.testing.assert_array_equal(c.confusion, confusion)
    np.testing.assert_array_equal(c.tp, tp)
    np.testing.assert_array_equal(c.pred, pred)
    np.testing.assert_array_equal(c.true, true)


@LAYOUTS
def test_read(benchmark, workload: workloads.Workload, layout: str) -> None:
    scores = workload.scores(layout)
    _tag(benchmark, workload.name, layout, "read")
    read_pass(scores)  # compile / load, untimed
    bits = benchmark.pedantic(read_pass, (scores,), rounds=ROUNDS["read"], iterations=1)
    as_bits = scores.reshape(-1).view(f"u{scores.dtype.itemsize}")
    assert bits == int(np.bitwise_or.reduce(as_bits))


@LAYOUTS
def test_bincount(benchmark, workload: workloads.Workload, layout: str) -> None:
    scores = workload.scores(layout)
    axis = workloads.class_axis(layout)
    n = workload.num_classes
    _tag(benchmark, workload.name, layout, "bincount")
    tp, pred, true, confusion = benchmark.pedantic(
        workloads.bincount_counts,
        (workload.truth, scores, axis, n),
        rounds=ROUNDS["bincount"],
        iterations=1,
    )
    assert confusion.sum() == workload.truth.size
    # Same counts in both layouts (and as fastseg's, checked in test_fastseg).
    for got, want in zip((tp, pred, true, confusion), workload.expected(), strict=True):
        np.testing.assert_array_equal(got, want)


SUB2 = "voc-channels_last-sub2"


def test_sub2_reference(benchmark, voc_sub2) -> None:
    _, one_hot, scores = voc_sub2
    benchmark.group = SUB2
    benchmark.extra_info.update(workload="voc", layout="channels_last", method="reference")
    value = benchmark.pedantic(mean_iou_np, (one_hot, scores), rounds=1, iterations=1)
    assert float(value) == pytest.approx(float(fastseg.mean_iou(one_hot, scores)), rel=1e-6)
    assert 0.0 < value < 1.0


def test_sub2_fastseg_mean_iou(benchmark, voc_sub2) -> None:
    truth, one_hot, scores = voc_sub2
    benchmark.group = SUB2
    benchmark.extra_info.update(workload="voc", layout="channels_last", method="fastseg_mean_iou")
    fastseg.mean_iou(one_hot, scores)  # warm, untimed
    value = benchmark.pedantic(
        fastseg.mean_iou, (one_hot, scores), rounds=ROUNDS["sub2"], iterations=1
    )
    # Same inputs as the reference; the label-map truth gives the same metric.
    assert value == pytest.approx(float(fastseg.mean_iou(truth, scores)), rel=1e-6)


def test_sub2_fastseg(benchmark, voc_sub2) -> None:
    truth, _, scores = voc_sub2
    benchmark.group = SUB2
    benchmark.extra_info.update(workload="voc", layout="channels_last", method="fastseg")
    fastseg.counts(truth, scores)  # warm, untimed
    c = benchmark.pedantic(fastseg.counts, (truth, scores), rounds=ROUNDS["sub2"], iterations=1)
    want = workloads.bincount_counts(truth, scores, -1, scores.shape[-1])
    np.testing.assert_array_equal(c.confusion, want[3])
    np.testing.assert_array_equal(c.tp, want[0])

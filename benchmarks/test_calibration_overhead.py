"""What the confidence histograms add to the counts (issue 12): calibration in the same pass.

For each workload (``workloads.WORKLOADS``: VOC, ADE20K float32 and float16, Cityscapes,
the float16 volume) and both layouts, group ``<workload>-<layout>-calibration``:

``counts``        ``fastseg.counts(truth, scores)``, the region counts alone;
``calibration``   the same call with ``calibration=15`` (torchmetrics' default bins).

``scripts/bench_table.py``-style ratio: calibration / counts, the cost of the histograms
(target: at most 1.15). The histograms are checked against an argmax / max + bincount
oracle; the counts against the workload's expected confusion matrix.
"""

from __future__ import annotations

import numpy as np
import pytest
import workloads

import fastseg

BINS = 15
ROUNDS = 10


def oracle_pixels(truth: np.ndarray, scores: np.ndarray, axis: int) -> np.ndarray:
    """Pixels per confidence bin over the batch (float32 edges, confidence 1 its own bin)."""
    conf = np.max(scores, axis=axis).astype(np.float32).astype(np.float64)
    edges = (np.arange(BINS + 1) / BINS).astype(np.float32).astype(np.float64)
    k = np.searchsorted(edges, conf, side="right") - 1
    return np.bincount(k.ravel(), minlength=BINS + 1)


@pytest.mark.parametrize("layout", workloads.LAYOUTS)
@pytest.mark.parametrize("method", ["counts", "calibration"])
def test_calibration_overhead(benchmark, workload, layout: str, method: str) -> None:
    benchmark.group = f"{workload.name}-{layout}-calibration"
    benchmark.extra_info.update(workload=workload.name, layout=layout, method=method)
    scores = workload.scores(layout)
    axis = workloads.class_axis(layout)
    bins = BINS if method == "calibration" else None

    def run() -> fastseg.Counts:
        return fastseg.counts(workload.truth, scores, class_axis=axis, calibration=bins)

    run()
    counts = benchmark.pedantic(run, rounds=ROUNDS, iterations=1)
    assert counts.confusion is not None
    np.testing.assert_array_equal(counts.confusion, workload.expected()[3])
    if bins is not None:
        histogram = counts.calibration.pixels.sum(axis=0)
        np.testing.assert_array_equal(histogram, oracle_pixels(workload.truth, scores, axis))

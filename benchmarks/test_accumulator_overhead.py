"""Benchmark of issue 3: the Accumulator's bookkeeping over a stream of VOC-like batches.

Group ``stream-voc``, both on the same stream (the voc workload, 8 images of 512 x 512 x 21
float32, fed as 4 batches of 2):

``kernel``        ``fastseg.counts`` on each batch, results dropped: the core alone;
``accumulator``   ``Accumulator.update`` on each batch, then the per-image counts read
                  back (``acc.counts``): validation + kernel + bookkeeping.

``scripts/bench_table.py`` reports the overhead ``accumulator / kernel - 1`` (target
< 5 %). Under ``--benchmark-disable`` the small workload runs once, as a correctness test.
"""

from __future__ import annotations

import numpy as np
import workloads

import fastseg

BATCH = 2
ROUNDS = 20


def _stream(bench_size: str) -> list[tuple[np.ndarray, np.ndarray]]:
    truth, scores = workloads.build("voc", bench_size)
    return [(truth[i : i + BATCH], scores[i : i + BATCH]) for i in range(0, len(truth), BATCH)]


def _tag(benchmark, method: str) -> None:
    benchmark.group = "stream-voc"
    benchmark.extra_info.update(workload="stream-voc", layout="channels_last", method=method)


def test_kernel(benchmark, bench_size):
    stream = _stream(bench_size)
    _tag(benchmark, "kernel")

    def run() -> int:
        total = 0
        for truth, scores in stream:
            total += int(fastseg.counts(truth, scores).true.sum())
        return total

    run()
    assert benchmark.pedantic(run, rounds=ROUNDS, iterations=1) == sum(t.size for t, _ in stream)


def test_accumulator(benchmark, bench_size):
    stream = _stream(bench_size)
    _tag(benchmark, "accumulator")

    def run() -> fastseg.Counts:
        acc = fastseg.Accumulator(21)
        for truth, scores in stream:
            acc.update(truth, scores)
        return acc.counts

    run()
    counts = benchmark.pedantic(run, rounds=ROUNDS, iterations=1)
    truth = np.concatenate([t for t, _ in stream])
    scores = np.concatenate([s for _, s in stream])
    assert counts == fastseg.counts(truth, scores)

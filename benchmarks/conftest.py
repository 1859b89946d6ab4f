"""Fixtures of the benchmark suite: workloads at full size, or small when not timing.

Size: full when benchmarks are timed; small (spatial sizes / 8, 1-2 images) under
``--benchmark-disable``, the README's test command, where every benchmark runs once
untimed as a correctness test. ``FASTSEG_BENCH_SIZE=full|small`` (or
``FASTSEG_BENCH_SMALL=1|0``) overrides the choice.

Workloads are session fixtures parametrized by name: pytest groups the tests of one
workload together, builds it once and frees it before building the next, so the
session never holds more than one workload (at most ~1.3 GB with its channels-first copy).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator

import numpy as np
import pytest
import workloads


def _size(config: pytest.Config) -> str:
    disabled = bool(config.getoption("benchmark_disable", default=False)) and not bool(
        config.getoption("benchmark_enable", default=False)
    )
    return workloads.size_from_env("small" if disabled else "full")


@pytest.fixture(scope="session")
def bench_size(pytestconfig: pytest.Config) -> str:
    """'full' or 'small'."""
    return _size(pytestconfig)


@pytest.fixture(scope="session", params=workloads.NAMES)
def workload(request: pytest.FixtureRequest, bench_size: str) -> Iterator[workloads.Workload]:
    """One workload (truth, scores in both layouts), built once per session."""
    w = workloads.Workload.create(request.param, bench_size)
    yield w
    del w
    gc.collect()


@pytest.fixture(scope="session")
def voc_sub2(bench_size: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """First 2 images of the voc workload: (truth labels, float32 one-hot truth, scores)."""
    truth, scores = workloads.build("voc", bench_size, batch=2)
    one_hot = np.eye(scores.shape[-1], dtype=np.float32)[truth]
    return truth, one_hot, scores

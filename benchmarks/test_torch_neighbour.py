"""fastseg next to PyTorch (issue 11): the VOC channels-last count after a torch CPU op.

Most users score a model in the process that ran it. Group ``voc-after-torch``:

``standalone``   ``fastseg.confusion_matrix`` on VOC channels-last scores, torch idle;
``after-torch``  the same call right after a parallel torch op (a 512 x 512 matmul), in
                 every round: torch's OpenMP threads may still be spinning when fastseg's
                 kernel threads start.

Skipped when torch is not installed (it is not a dependency). Torch is imported by this
module only, which sorts after the other benchmark modules. Measured (2 cores, min of 40
calls, best of 3 processes, ``/tmp``-style scripts doing the same): standalone 22.7 ms,
after each torch op 32.0 ms (1.41x); with ``OMP_WAIT_POLICY=PASSIVE`` in the environment
before torch starts, 21.4 ms. After a single torch op then fastseg alone: 21.1 ms
against 19.9 ms standalone (1.06x). See the README, "Next to PyTorch".
"""

from __future__ import annotations

import numpy as np
import pytest
import workloads

import fastseg

ROUNDS = 30


@pytest.fixture(scope="module")
def voc(bench_size: str) -> workloads.Workload:
    return workloads.Workload.create("voc", bench_size)


@pytest.fixture(scope="module")
def torch_op():
    torch = pytest.importorskip("torch")
    a = torch.randn(512, 512)

    def op() -> None:
        (a @ a).sum().item()

    op()
    return op


@pytest.mark.parametrize("method", ["standalone", "after-torch"])
def test_voc_channels_last_next_to_torch(benchmark, voc, torch_op, method: str) -> None:
    benchmark.group = "voc-after-torch"
    benchmark.extra_info.update(workload="voc", layout="channels_last", method=method)
    scores = voc.scores("channels_last")

    def run() -> np.ndarray:
        return fastseg.confusion_matrix(voc.truth, scores, num_classes=21)

    run()
    setup = torch_op if method == "after-torch" else None
    confusion = benchmark.pedantic(run, setup=setup, rounds=ROUNDS, iterations=1)
    np.testing.assert_array_equal(confusion, voc.expected()[3])

"""Whether the argmax's speed depends on the scores (issue 11): peaky, uniform, tied.

VOC-sized float32 scores (8 x 512 x 512 x 21; under ``--benchmark-disable`` 2 x 64 x 64),
both layouts, group ``voc-<layout>-scores``:

``peaky``    softmax-like: one class far above the rest, at a random class per pixel;
``uniform``  independent uniform scores (the running maximum changes often);
``ties``     scores on 4 levels, so most pixels hold several equal maxima (the first
             one wins, as ``np.argmax``).

Every method counts ``fastseg.confusion_matrix`` against the truth; the result is checked
against argmax + ``np.bincount``. ``extra_info`` tags workload ``voc-<distribution>``.
"""

from __future__ import annotations

import numpy as np
import pytest
import workloads

import fastseg

FULL = (8, 512, 512)
SMALL = (2, 64, 64)
CLASSES = 21
ROUNDS = 15
DISTRIBUTIONS = ("peaky", "uniform", "ties")


def scores_of(distribution: str, shape: tuple[int, int, int], seed: int = 5) -> np.ndarray:
    """Channels-last float32 scores (B, H, W, N) of `distribution`."""
    rng = np.random.default_rng([seed, DISTRIBUTIONS.index(distribution)])
    x = rng.random((*shape, CLASSES), dtype=np.float32)
    if distribution == "peaky":
        top = rng.integers(0, CLASSES, shape)
        np.put_along_axis(x, top[..., None], 50.0, axis=-1)
    elif distribution == "ties":
        x = np.floor(x * 4) / 4
    return x


@pytest.fixture(scope="module", params=DISTRIBUTIONS)
def case(request: pytest.FixtureRequest, bench_size: str) -> dict:
    shape = FULL if bench_size == "full" else SMALL
    scores = scores_of(request.param, shape)
    truth = np.random.default_rng(6).integers(0, CLASSES, shape).astype(np.uint8)
    expected = workloads.bincount_counts(truth, scores, -1, CLASSES)[3]
    return {"name": request.param, "truth": truth, "channels_last": scores,
            "channels_first": np.ascontiguousarray(np.moveaxis(scores, -1, 1)),
            "expected": expected}  # fmt: skip


@pytest.mark.parametrize("layout", workloads.LAYOUTS)
def test_fastseg(benchmark, case: dict, layout: str) -> None:
    benchmark.group = f"voc-{layout}-scores"
    benchmark.extra_info.update(workload=f"voc-{case['name']}", layout=layout, method="fastseg")
    scores, axis = case[layout], workloads.class_axis(layout)

    def run() -> np.ndarray:
        return fastseg.confusion_matrix(case["truth"], scores, class_axis=axis)

    run()
    confusion = benchmark.pedantic(run, rounds=ROUNDS, iterations=1)
    np.testing.assert_array_equal(confusion, case["expected"])

"""Whether the argmax's speed depends on the scores (issue 11): peaky, uniform, tied.

VOC-sized float32 scores (8 x 512 x 512 x 21; under ``--benchmark-disable`` 2 x 64 x 64),
both layouts, group ``voc-<layout>-scores``:

``peaky``    softmax-like: one class far above the rest, at a random class per pixel;
``uniform``  independent uniform scores (the running maximum changes often);
``ties``     scores on 4 levels, so most pixels hold several equal maxima (the first
             one wins, as ``np.argmax``);
``regions``  maps as real ones are: the truth in 32 x 32 regions, 60 % of them class 0
             (background), the prediction the truth with 5 % of pixels changed, peaky
             scores at it. Neighbouring pixels share their (truth, prediction) pair, so
             the tally's increments of one cell follow each other (the other
             distributions draw the truth independently per pixel).

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
DISTRIBUTIONS = ("peaky", "uniform", "ties", "regions")
#: Side of the square regions of the ``regions`` maps, in pixels.
REGION = 32


def region_truth(shape: tuple[int, int, int], seed: int = 6) -> np.ndarray:
    """A uint8 label map of REGION x REGION regions, 60 % of them class 0."""
    rng = np.random.default_rng(seed)
    b, h, w = shape
    grid = (b, -(-h // REGION), -(-w // REGION))
    classes = np.where(rng.random(grid) < 0.6, 0, rng.integers(1, CLASSES, grid))
    big = classes.repeat(REGION, axis=1).repeat(REGION, axis=2)
    return np.ascontiguousarray(big[:, :h, :w]).astype(np.uint8)


def scores_of(distribution: str, shape: tuple[int, int, int], seed: int = 5) -> np.ndarray:
    """Channels-last float32 scores (B, H, W, N) of `distribution`."""
    rng = np.random.default_rng([seed, DISTRIBUTIONS.index(distribution)])
    x = rng.random((*shape, CLASSES), dtype=np.float32)
    if distribution in ("peaky", "regions"):
        if distribution == "peaky":
            top = rng.integers(0, CLASSES, shape)
        else:
            top = region_truth(shape).astype(np.int64)
            changed = rng.random(shape) < 0.05
            top[changed] = rng.integers(0, CLASSES, int(changed.sum()))
        np.put_along_axis(x, top[..., None], 50.0, axis=-1)
    elif distribution == "ties":
        x = np.floor(x * 4) / 4
    return x


@pytest.fixture(scope="module", params=DISTRIBUTIONS)
def case(request: pytest.FixtureRequest, bench_size: str) -> dict:
    shape = FULL if bench_size == "full" else SMALL
    scores = scores_of(request.param, shape)
    if request.param == "regions":
        truth = region_truth(shape)
    else:
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

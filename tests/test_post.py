"""Parity of the post-compatible metrics with fastseg.reference (the post's semantics)."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastseg
from fastseg import reference

COMBOS = list(
    itertools.product(("iou", "dice"), ("standard", "naive", "soft"), (True, False), (True, False))
)


def _reference(*args, **kwargs):
    # The reference warns (NumPy's "mean of empty slice") where fastseg returns NaN quietly.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return reference.metrics_np(*args, **kwargs)


def _batch(rng, shape, n, dtype=np.float32, absent=()):
    labels = rng.integers(0, n, shape)
    for c in absent:
        labels[labels == c] = (c + 1) % n
    logits = rng.normal(size=(*shape, n)) + 2.0 * np.eye(n)[labels]
    for c in absent:
        logits[..., c] = -10.0
    scores = np.exp(logits)
    scores /= scores.sum(-1, keepdims=True)
    return labels, scores.astype(dtype)


@pytest.mark.parametrize("n", [1, 2, 3, 21, 150])
@pytest.mark.parametrize(("metric_name", "metric_type", "drop_last", "mean_per_class"), COMBOS)
def test_parity_with_reference(n, metric_name, metric_type, drop_last, mean_per_class):
    rng = np.random.default_rng(n)
    labels, scores = _batch(rng, (3, 12, 10), n, absent=(0,) if n > 2 else ())
    onehot = np.eye(n, dtype=np.float32)[labels]
    if n == 1:  # the post thresholds one class at > 0: give it something to threshold
        scores = rng.normal(size=scores.shape).astype(np.float32)
        onehot = (rng.random(onehot.shape) > 0.5).astype(np.float32)
    args = (metric_name, metric_type, drop_last, mean_per_class)
    expected = _reference(onehot, scores, *args)
    got = fastseg.metrics(onehot, scores, *args)
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    if n > 1:  # a label map is the same truth as its one-hot encoding
        np.testing.assert_allclose(fastseg.metrics(labels, scores, *args), expected, rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("metric_type", ["standard", "naive"])
def test_parity_across_dtypes_and_layouts(dtype, metric_type):
    rng = np.random.default_rng(7)
    labels, scores = _batch(rng, (2, 9, 11), 5, dtype=dtype)
    onehot = np.eye(5)[labels]
    expected = _reference(onehot, scores, "iou", metric_type)
    first = np.ascontiguousarray(np.moveaxis(scores, -1, 1))
    assert fastseg.mean_iou(onehot, scores, metric_type=metric_type) == pytest.approx(expected)
    assert fastseg.mean_iou(labels, first, metric_type=metric_type, class_axis=1) == pytest.approx(
        expected
    )


def test_soft_float16_accumulates_in_float64():
    rng = np.random.default_rng(3)
    labels, scores = _batch(rng, (2, 16, 16), 4, dtype=np.float16)
    onehot = np.eye(4)[labels]
    # The reference sums float16 in float16; fastseg's float64 sums equal the reference's
    # result on the same values held in float64.
    expected = _reference(onehot, scores.astype(np.float64), "dice", "soft")
    assert fastseg.mean_dice(onehot, scores, metric_type="soft") == pytest.approx(
        expected, rel=1e-12
    )


def test_post_example_absent_classes_raise_the_naive_mean():
    # One 2x2 image, 4 classes; classes 2 and 3 absent from truth and prediction.
    truth = np.array([[[0, 0], [1, 1]]])
    pred = np.eye(4)[np.array([[[0, 1], [1, 1]]])]
    # class 0: I=1, U=2 -> 0.5; class 1: I=2, U=3 -> 2/3; absent classes: 1 under naive.
    standard = fastseg.mean_iou(truth, pred, drop_last=False)
    naive = fastseg.mean_iou(truth, pred, metric_type="naive", drop_last=False)
    s = 0.001
    iou0, iou1 = (1 + s) / (2 + s), (2 + s) / (3 + s)
    assert standard == pytest.approx((iou0 + iou1) / 2)
    assert naive == pytest.approx((iou0 + iou1 + 2) / 4)
    assert naive > standard
    # The post's Dice quirk: an absent class scores 2(0+s)/(0+s) = 2 under naive.
    per_class = fastseg.mean_dice(truth, pred, metric_type="naive", drop_last=False,
                                  mean_per_class=True)  # fmt: skip
    assert per_class[2:] == pytest.approx([2.0, 2.0])


def test_all_classes_absent_is_nan_without_warning():
    truth = np.zeros((1, 2, 2), np.int64)
    pred = np.eye(2)[truth]
    # Only class 0 is present and drop_last keeps class 0 -> defined; drop class 0 instead:
    value = fastseg.mean_iou(truth, pred[..., ::-1].copy(), drop_last=True)
    assert value == pytest.approx(0.0 + 0.001 / (4 + 0.001))
    assert np.isnan(fastseg.mean_iou(np.ones((1, 2, 2), np.int64), np.eye(2)[[[[1, 1], [1, 1]]]]))


def test_ignore_index_and_label_map_prediction():
    truth = np.array([[[0, 1], [255, 1]]], np.uint8)
    pred = np.array([[[0, 0], [1, 1]]], np.uint8)
    # the ignored pixel leaves class 0: I=1,U=2 ; class 1: I=1,U=2
    got = fastseg.mean_iou(truth, pred, num_classes=2, ignore_index=255, drop_last=False)
    assert got == pytest.approx((1 + 0.001) / (2 + 0.001))


def test_verbose_prints_intersection_and_union(capsys):
    truth = np.array([[[0, 1]]])
    fastseg.mean_iou(truth, np.eye(2)[truth], verbose=True)
    out = capsys.readouterr().out
    assert "intersection" in out
    assert "[[1 1]]" in out


@pytest.mark.parametrize("bad", [{"metric_name": "jaccard"}, {"metric_type": "hard"}])
def test_unknown_metric_raises(bad):
    truth = np.array([[[0, 1]]])
    kwargs = {"metric_name": "iou", "metric_type": "standard", **bad}
    with pytest.raises(ValueError, match="must be one of"):
        fastseg.metrics(truth, np.eye(2)[truth], **kwargs)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    b=st.integers(1, 3),
    h=st.integers(1, 12),
    w=st.integers(1, 12),
    n=st.sampled_from([2, 3, 5]),
    absent=st.booleans(),
    combo=st.sampled_from(COMBOS),
)
def test_parity_property(seed, b, h, w, n, absent, combo):
    rng = np.random.default_rng(seed)
    labels, scores = _batch(rng, (b, h, w), n, absent=(n - 2,) if absent else ())
    onehot = np.eye(n)[labels]
    expected = _reference(onehot, scores, *combo)
    np.testing.assert_allclose(fastseg.metrics(labels, scores, *combo), expected, rtol=1e-6)

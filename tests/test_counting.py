"""fastseg.counts / fastseg.confusion_matrix against independent NumPy counts.

The reference takes labels from ``np.argmax`` (or the post's ``> 0`` rule when N == 1)
and counts them with ``np.bincount``, image by image; the confusion matrix is also
checked against scikit-learn. Every hard count must be equal exactly.

Numba compiles one kernel per combination of argument types; the inputs below reuse a
small set of dtypes and layouts (float16/32/64 scores, int64 label maps, ...).
"""

from __future__ import annotations

import concurrent.futures
import math
import re

import numba
import numpy as np
import pytest
import sklearn.metrics
from hypothesis import given, settings
from hypothesis import strategies as st

import fastseg
import fastseg.inputs
from fastseg import Counts, kernels
from fastseg.counting import check_num_classes, check_stats, count_prepared
from fastseg.inputs import prepare

# --------------------------------------------------------------------------------------
# Reference
# --------------------------------------------------------------------------------------


def argmax_labels(scores, axis=-1):
    """Class labels of a score / one-hot array: first maximum, or the post's N == 1 rule.

    With one class the label is 0 when the value is > 0, else 1 ("no class").
    """
    scores = np.asarray(scores)
    if scores.shape[axis] == 1:
        return np.where(np.take(scores, 0, axis=axis) > 0, 0, 1)
    return np.argmax(scores, axis=axis)


def reference(true_labels, pred_labels, n, keep=None):
    """Per-image tp / pred / true and the confusion matrix, by np.bincount.

    Labels lie in [0, n] (n is "no class"); `keep` marks the pixels not ignored.
    """
    true_labels = np.asarray(true_labels)
    b = true_labels.shape[0]
    t = np.asarray(true_labels, np.int64).reshape(b, -1)
    p = np.asarray(pred_labels, np.int64).reshape(b, -1)
    k = np.ones(t.shape, bool) if keep is None else np.asarray(keep).reshape(b, -1)
    tp, pred, true = (np.zeros((b, n), np.int64) for _ in range(3))
    for i in range(b):
        ti, pi = t[i][k[i]], p[i][k[i]]
        true[i] = np.bincount(ti[ti < n], minlength=n)
        pred[i] = np.bincount(pi[pi < n], minlength=n)
        tp[i] = np.bincount(ti[(ti == pi) & (ti < n)], minlength=n)
    both = k & (t < n) & (p < n)
    confusion = np.bincount(t[both] * n + p[both], minlength=n * n).reshape(n, n)
    return tp, pred, true, confusion, int((~k).sum())


def assert_counts(got, true_labels, pred_labels, n, keep=None):
    tp, pred, true, confusion, ignored = reference(true_labels, pred_labels, n, keep)
    assert isinstance(got, Counts)
    assert not got.soft
    for name, value, expected in (
        ("tp", got.tp, tp),
        ("pred", got.pred, pred),
        ("true", got.true, true),
        ("confusion", got.confusion, confusion),
    ):
        assert value.dtype == np.int64, name
        np.testing.assert_array_equal(value, expected, err_msg=name)
    assert got.ignored == ignored


def assert_sklearn(confusion, true_labels, pred_labels, n, keep=None):
    t = np.asarray(true_labels).ravel()
    p = np.asarray(pred_labels).ravel()
    if keep is not None:
        t, p = t[np.asarray(keep).ravel()], p[np.asarray(keep).ravel()]
    expected = sklearn.metrics.confusion_matrix(t, p, labels=np.arange(n))
    np.testing.assert_array_equal(confusion, expected)


def one_hot(labels, n, axis=-1, dtype=np.float32):
    """One-hot masks of `labels` with the class axis at `axis`."""
    hot = (np.asarray(labels)[..., None] == np.arange(n)).astype(dtype)
    return np.ascontiguousarray(np.moveaxis(hot, -1, axis))


def rng_for(*key):
    return np.random.default_rng([int(k) % 1000 for k in key])


# --------------------------------------------------------------------------------------
# Layouts
# --------------------------------------------------------------------------------------

N = 4
LAYOUTS = {
    # name: (scores shape, class_axis passed, class axis position)
    "channels_last": ((2, 7, 9, N), None, -1),
    "channels_last_explicit": ((2, 7, 9, N), -1, -1),
    "channels_first": ((2, N, 7, 9), 1, 1),
    "volume": ((2, 3, 5, 4, N), None, -1),
    "volume_channels_first": ((2, N, 3, 5, 4), 1, 1),
    "class_axis_middle": ((2, 7, N, 9), 2, 2),
    "class_axis_middle_negative": ((2, 7, N, 9), -2, 2),
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_layouts_label_truth(layout):
    shape, class_axis, axis = LAYOUTS[layout]
    rng = rng_for(1, len(shape), axis)
    scores = rng.standard_normal(shape).astype(np.float32)
    pred = argmax_labels(scores, axis)
    truth = rng.integers(0, N, pred.shape)
    c = fastseg.counts(truth, scores, class_axis=class_axis)
    assert_counts(c, truth, pred, N)
    cm = fastseg.confusion_matrix(truth, scores, class_axis=class_axis)
    np.testing.assert_array_equal(cm, c.confusion)
    assert_sklearn(cm, truth, pred, N)


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_layouts_one_hot_truth(layout):
    shape, class_axis, axis = LAYOUTS[layout]
    rng = rng_for(2, len(shape), axis)
    scores = rng.standard_normal(shape).astype(np.float32)
    labels = rng.integers(0, N, argmax_labels(scores, axis).shape)
    truth = one_hot(labels, N, axis)
    c = fastseg.counts(truth, scores, class_axis=class_axis)
    assert_counts(c, labels, argmax_labels(scores, axis), N)


def test_hand_worked_channels_first():
    # 1 image 2x2, 2 classes, channels-first:
    #   truth 0 1    scores class 0: .9 .2   class 1: .1 .8   -> pred 0 1
    #         1 1                    .6 .3            .4 .7           0 1
    # confusion t0: [1, 0]; t1: [1, 2]
    truth = np.array([[[0, 1], [1, 1]]])
    scores = np.array([[[[0.9, 0.2], [0.6, 0.3]], [[0.1, 0.8], [0.4, 0.7]]]], np.float32)
    c = fastseg.counts(truth, scores, class_axis=1)
    np.testing.assert_array_equal(c.confusion, [[1, 0], [1, 2]])
    np.testing.assert_array_equal(c.tp, [[1, 2]])
    np.testing.assert_array_equal(c.pred, [[2, 2]])
    np.testing.assert_array_equal(c.true, [[1, 3]])
    np.testing.assert_array_equal(c.union, [[2, 3]])
    assert c.ignored == 0


@pytest.mark.parametrize(
    ("dtype", "channels_first"),
    [
        ("float16", False),
        ("float32", False),
        ("float64", False),
        ("float16", True),
    ],
)
def test_score_dtypes(dtype, channels_first):
    rng = rng_for(3, len(dtype))
    scores = rng.standard_normal((3, 11, 13, 5)).astype(dtype)
    truth = rng.integers(0, 5, (3, 11, 13))
    pred = np.argmax(scores, -1)
    if channels_first:
        c = fastseg.counts(truth, np.ascontiguousarray(np.moveaxis(scores, -1, 1)), class_axis=1)
    else:
        c = fastseg.counts(truth, scores)
    assert_counts(c, truth, pred, 5)
    assert_sklearn(c.confusion, truth, pred, 5)


@pytest.mark.parametrize("dtype", ["uint8", "int16", "int32", "int64", "uint64"])
def test_truth_label_dtypes(dtype):
    rng = rng_for(4)
    scores = rng.standard_normal((2, 10, 12, 6)).astype(np.float32)
    truth = rng.integers(0, 6, (2, 10, 12)).astype(dtype)
    pred = np.argmax(scores, -1)
    c = fastseg.counts(truth, scores)
    assert_counts(c, truth, pred, 6)
    assert_sklearn(c.confusion, truth, pred, 6)


@pytest.mark.parametrize(
    ("score_dtype", "label_dtype", "class_axis"),
    [
        (">f4", "int64", None),
        ("float32", ">i4", None),
        (">f4", ">i8", None),
        (">f2", "int64", None),
        (">f8", ">u8", None),
        (">f4", "int64", 1),
    ],
)
def test_big_endian(score_dtype, label_dtype, class_axis):
    rng = rng_for(5)
    scores = rng.standard_normal((3, 8, 9, 4)).astype(np.float32)
    truth = rng.integers(0, 4, (3, 8, 9))
    pred = np.argmax(scores.astype(score_dtype), -1)
    if class_axis == 1:
        scores = np.moveaxis(scores, -1, 1)
    big_scores = np.ascontiguousarray(scores.astype(score_dtype))
    big_truth = truth.astype(label_dtype)
    assert not big_scores.dtype.isnative or not big_truth.dtype.isnative
    c = fastseg.counts(big_truth, big_scores, class_axis=class_axis)
    assert_counts(c, truth, pred, 4)


def test_big_endian_in_several_slabs(monkeypatch):
    # Converted inputs are processed slab by slab; force one image per slab.
    monkeypatch.setattr(fastseg.inputs, "SLAB_BYTES", 1)
    rng = rng_for(6)
    scores = rng.standard_normal((5, 6, 7, 3)).astype(">f4")
    truth = rng.integers(0, 4, (5, 6, 7)).astype(">i2")
    keep = truth != 3
    c = fastseg.counts(truth, scores, ignore_index=3)
    assert_counts(c, truth, np.argmax(scores, -1), 3, keep)


@pytest.mark.parametrize("convert", [False, True])
def test_readonly_inputs(convert):
    rng = rng_for(7)
    scores = rng.standard_normal((2, 9, 10, 3)).astype(">f4" if convert else "float32")
    truth = rng.integers(0, 3, (2, 9, 10)).astype(">i8" if convert else "int64")
    scores.setflags(write=False)
    truth.setflags(write=False)
    c = fastseg.counts(truth, scores)
    assert_counts(c, truth, np.argmax(scores, -1), 3)


@pytest.mark.parametrize(
    "take",
    [
        pytest.param(lambda s, t: (s[:, ::2], t[:, ::2], None), id="strided_rows"),
        pytest.param(lambda s, t: (s[::2], t[::2], None), id="strided_batch"),
        pytest.param(lambda s, t: (s[::2, ..., ::2], t[::2], None), id="strided_classes"),
        pytest.param(
            lambda s, t: (np.asfortranarray(s), np.asfortranarray(t), None), id="fortran_order"
        ),
        pytest.param(
            lambda s, t: (s.transpose(0, 2, 1, 3), t.transpose(0, 2, 1), None), id="transposed"
        ),
        pytest.param(
            lambda s, t: (np.moveaxis(s, -1, 1)[:, :, ::2], t[:, ::2], 1),
            id="channels_first_strided",
        ),
        pytest.param(lambda s, t: (np.moveaxis(s, -1, 1), t, 1), id="channels_first_view"),
    ],
)
def test_non_contiguous_inputs(take):
    rng = rng_for(8)
    scores = rng.standard_normal((4, 10, 11, 6)).astype(np.float32)
    truth = rng.integers(0, 3, (4, 10, 11))  # valid for 6 classes and for the 3 of ::2
    s, t, class_axis = take(scores, truth)
    axis = -1 if class_axis is None else class_axis
    n = s.shape[axis]
    c = fastseg.counts(t, s, class_axis=class_axis)
    assert_counts(c, t, np.argmax(s, axis), n)


def test_label_map_prediction():
    rng = rng_for(9)
    pred = rng.integers(0, 5, (3, 12, 10))
    truth = rng.integers(0, 5, (3, 12, 10))
    c = fastseg.counts(truth, pred, num_classes=5)
    assert_counts(c, truth, pred, 5)
    cm = fastseg.confusion_matrix(truth, pred, num_classes=5)
    assert_sklearn(cm, truth, pred, 5)
    # A class that appears in neither map still gets its row and column.
    c = fastseg.counts(truth, pred, num_classes=7)
    assert_counts(c, truth, pred, 7)


def test_label_map_prediction_with_one_hot_truth():
    rng = rng_for(10)
    pred = rng.integers(0, 4, (2, 8, 9))
    labels = rng.integers(0, 4, (2, 8, 9))
    c = fastseg.counts(one_hot(labels, 4), pred)
    assert_counts(c, labels, pred, 4)


def test_label_map_docstring_example():
    cm = fastseg.confusion_matrix(np.array([[[0, 1, 1]]]), np.array([[[0, 0, 1]]]), num_classes=2)
    np.testing.assert_array_equal(cm, [[1, 0], [1, 1]])


def test_one_hot_truth_all_zero_pixel_is_class_0():
    rng = rng_for(11)
    scores = rng.standard_normal((2, 9, 8, 3)).astype(np.float32)
    labels = rng.integers(0, 3, (2, 9, 8))
    truth = one_hot(labels, 3)
    zero = rng.random((2, 9, 8)) < 0.3
    truth[zero] = 0
    effective = np.where(zero, 0, labels)
    assert (effective != labels).any()
    c = fastseg.counts(truth, scores)
    assert_counts(c, effective, np.argmax(scores, -1), 3)
    # Bool one-hot masks (the same pixels).
    c = fastseg.counts(truth.astype(bool), scores)
    assert_counts(c, effective, np.argmax(scores, -1), 3)


def test_soft_one_hot_truth_is_argmaxed():
    # A "soft" truth (probabilities) is argmax-ed like the prediction.
    rng = rng_for(12)
    scores = rng.standard_normal((2, 7, 6, 4)).astype(np.float32)
    truth = rng.random((2, 7, 6, 4)).astype(np.float32)
    c = fastseg.counts(truth, scores)
    assert_counts(c, np.argmax(truth, -1), np.argmax(scores, -1), 4)


def test_infinite_scores():
    scores = np.array(
        [[[-np.inf, np.inf, np.inf], [-np.inf, -np.inf, -np.inf], [1, np.inf, 0]]], np.float32
    )
    truth = np.array([[1, 0, 2]])
    c = fastseg.counts(truth[:, None], scores[:, None])
    assert_counts(c, truth, [[1, 0, 1]], 3)


# --------------------------------------------------------------------------------------
# Ties
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float16", "float32"])
@pytest.mark.parametrize("channels_first", [False, True])
def test_ties_go_to_the_first_maximum(dtype, channels_first):
    rng = rng_for(13, len(dtype), channels_first)
    values = np.array([-0.0, 0.0, -1.0, 1.0, 2.0, -2.0, 2.0], dtype)
    scores = values[rng.integers(0, len(values), (3, 12, 10, 5))]
    truth = rng.integers(0, 5, (3, 12, 10))
    pred = np.argmax(scores, -1)
    # Many exact ties, and ties between -0.0 and +0.0 as the maximum.
    top = scores.max(-1, keepdims=True)
    assert ((scores == top).sum(-1) > 1).mean() > 0.2
    assert (np.signbit(scores[(scores == 0) & (top == 0)])).any()
    if channels_first:
        c = fastseg.counts(truth, np.ascontiguousarray(np.moveaxis(scores, -1, 1)), class_axis=1)
    else:
        c = fastseg.counts(truth, scores)
    assert_counts(c, truth, pred, 5)


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_signed_zero_ties(dtype):
    # -0.0 == +0.0: each row's maximum is tied; np.argmax takes the first.
    scores = np.array(
        [[[-0.0, 0.0, -1.0], [0.0, -0.0, -1.0], [-1.0, -0.0, 0.0], [-1.0, 0.0, -0.0]]], dtype
    )
    np.testing.assert_array_equal(np.argmax(scores, -1), [[0, 0, 1, 1]])
    c = fastseg.counts(np.array([[[0, 1, 1, 2]]]), scores[:, None])
    np.testing.assert_array_equal(c.pred, [[2, 2, 0]])
    np.testing.assert_array_equal(c.confusion, [[1, 0, 0], [1, 1, 0], [0, 1, 0]])
    c = fastseg.counts(
        np.array([[[0, 1, 1, 2]]]),
        np.ascontiguousarray(np.moveaxis(scores, -1, 1))[:, :, None],
        class_axis=1,
    )
    np.testing.assert_array_equal(c.pred, [[2, 2, 0]])


def test_negative_float16_order():
    # Float16 is compared through its bit pattern: negative values must order correctly.
    scores = np.array(
        [[[-3.0, -2.0, -2.5], [-0.001, -65504.0, -1e-7], [-np.inf, -65504, -1]]], np.float16
    )
    pred = np.argmax(scores, -1)
    np.testing.assert_array_equal(pred, [[1, 2, 2]])
    c = fastseg.counts(np.array([[[0, 1, 2]]]), scores[:, None])
    assert_counts(c, [[0, 1, 2]], pred, 3)


# --------------------------------------------------------------------------------------
# ignore_index
# --------------------------------------------------------------------------------------


def test_ignore_index_255_with_uint8_labels():
    rng = rng_for(14)
    scores = rng.standard_normal((3, 15, 11, 4)).astype(np.float32)
    truth = rng.integers(0, 4, (3, 15, 11)).astype(np.uint8)
    ignored = rng.random(truth.shape) < 0.25
    truth[ignored] = 255
    c = fastseg.counts(truth, scores, ignore_index=255)
    assert c.ignored == ignored.sum() > 0
    assert_counts(c, truth, np.argmax(scores, -1), 4, ~ignored)
    cm = fastseg.confusion_matrix(truth, scores, ignore_index=255)
    assert_sklearn(cm, truth, np.argmax(scores, -1), 4, ~ignored)


def test_ignore_index_0():
    # Label 0 is skipped in the truth; predictions of class 0 elsewhere still count.
    rng = rng_for(15)
    scores = rng.standard_normal((2, 13, 9, 3)).astype(np.float32)
    truth = rng.integers(0, 3, (2, 13, 9))
    pred = np.argmax(scores, -1)
    c = fastseg.counts(truth, scores, ignore_index=0)
    assert_counts(c, truth, pred, 3, truth != 0)
    assert not c.true[:, 0].any()
    assert c.pred[:, 0].sum() == ((pred == 0) & (truth != 0)).sum() > 0
    assert not c.confusion[0].any()


def test_ignore_index_with_label_map_prediction():
    rng = rng_for(16)
    truth = rng.integers(0, 4, (2, 10, 10))
    pred = rng.integers(0, 3, (2, 10, 10))
    c = fastseg.counts(truth, pred, num_classes=3, ignore_index=3)
    assert_counts(c, truth, pred, 3, truth != 3)


def test_ignore_index_with_one_hot_truth():
    # The ignore index applies to the truth's argmax (an all-zero pixel is class 0).
    rng = rng_for(17)
    scores = rng.standard_normal((2, 8, 7, 3)).astype(np.float32)
    labels = rng.integers(0, 3, (2, 8, 7))
    truth = one_hot(labels, 3)
    truth[0, 0, :3] = 0
    effective = np.argmax(truth, -1)
    c = fastseg.counts(truth, scores, ignore_index=0)
    assert_counts(c, effective, np.argmax(scores, -1), 3, effective != 0)
    # An ignore index no pixel has changes nothing.
    assert fastseg.counts(truth, scores, ignore_index=7) == fastseg.counts(truth, scores)


def test_ignore_index_numpy_integer_and_negative():
    rng = rng_for(18)
    scores = rng.standard_normal((2, 6, 6, 3)).astype(np.float32)
    truth = rng.integers(-1, 3, (2, 6, 6))
    c = fastseg.counts(truth, scores, ignore_index=np.int64(-1))
    assert_counts(c, truth, np.argmax(scores, -1), 3, truth != -1)


def test_prediction_at_ignored_pixels_is_not_read():
    # Ignored pixels are "skipped entirely" (Counts / counts docstrings): whatever the
    # prediction holds there must not matter, as in the soft sums, which skip them.
    truth = np.array([[[0, 1, 255, 2, 255]]])
    scores = one_hot([[[0, 1, 1, 2, 0]]], 3)
    scores[0, 0, 2, :] = np.nan  # NaN prediction under an ignored truth pixel
    soft = fastseg.counts(truth, scores, ignore_index=255, soft=True)
    np.testing.assert_array_equal(soft.tp, [[1.0, 1.0, 1.0]])
    hard = fastseg.counts(truth, scores, ignore_index=255)
    assert_counts(hard, truth, [[[0, 1, 1, 2, 0]]], 3, truth != 255)


def test_predicted_label_at_ignored_pixels_is_not_read():
    # A predicted label map often carries the ignore value where the truth has it.
    truth = np.array([[[0, 1, 255, 2, 255]]])
    pred = np.array([[[0, 1, 255, 2, 255]]])
    c = fastseg.counts(truth, pred, num_classes=3, ignore_index=255)
    assert_counts(c, truth, np.where(pred == 255, 0, pred), 3, truth != 255)


def test_everything_ignored():
    scores = rng_for(19).standard_normal((2, 4, 5, 3)).astype(np.float32)
    truth = np.full((2, 4, 5), 9)
    c = fastseg.counts(truth, scores, ignore_index=9)
    assert c.ignored == 40
    for a in (c.tp, c.pred, c.true, c.confusion):
        assert not a.any()


# --------------------------------------------------------------------------------------
# One class: the post's "> 0" rule (the post-compatible API only; elsewhere one channel
# needs threshold=, tests/test_kind_rules.py)
# --------------------------------------------------------------------------------------


def post_counts(y_true, y_pred, **kwargs):
    return count_prepared(prepare(y_true, y_pred, post=True, **kwargs))


@pytest.mark.parametrize("layout", ["channels_last", "channels_first", "float16"])
def test_one_class_threshold(layout):
    rng = rng_for(20, len(layout))
    values = np.array([-1.0, -0.0, 0.0, 0.25, 2.0, -3.0])
    scores = values[rng.integers(0, 6, (3, 9, 7, 1))]
    truth = values[rng.integers(0, 6, (3, 9, 7, 1))]
    pred_labels = np.where(scores[..., 0] > 0, 0, 1)
    true_labels = np.where(truth[..., 0] > 0, 0, 1)
    if layout == "channels_last":
        c = post_counts(truth.astype(np.float32), scores.astype(np.float32))
    elif layout == "channels_first":
        c = post_counts(
            np.ascontiguousarray(np.moveaxis(truth, -1, 1), np.float32),
            np.ascontiguousarray(np.moveaxis(scores, -1, 1), np.float32),
            class_axis=1,
        )
    else:
        c = post_counts(truth.astype(np.float16), scores.astype(np.float16))
    assert_counts(c, true_labels, pred_labels, 1)
    assert c.tp.sum() == ((scores > 0) & (truth > 0)).sum()
    assert c.pred.sum() == (scores > 0).sum()
    assert c.true.sum() == (truth > 0).sum()


def test_one_class_label_map_truth():
    # With one class the only valid truth label is 0: every pixel is the class.
    scores = np.array([[[[1.0], [-1.0]], [[0.0], [3.0]]]], np.float32)
    c = post_counts(np.zeros((1, 2, 2), np.int64), scores)
    np.testing.assert_array_equal(c.tp, [[2]])
    np.testing.assert_array_equal(c.pred, [[2]])
    np.testing.assert_array_equal(c.true, [[4]])
    np.testing.assert_array_equal(c.confusion, [[2]])


# --------------------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------------------

SCORE_DTYPES = ["float32", "float16"]


def random_case(seed, b, spatial, n, dtype, channels_first, ignore_frac):
    rng = np.random.default_rng(seed)
    scores = rng.standard_normal((b, *spatial, n)).astype(dtype)
    truth = rng.integers(0, n, (b, *spatial))
    ignored = rng.random(truth.shape) < ignore_frac
    truth[ignored] = 255
    pred = np.argmax(scores, -1)
    if channels_first:
        scores = np.ascontiguousarray(np.moveaxis(scores, -1, 1))
    return scores, truth, pred, ~ignored, (1 if channels_first else None)


case_args = {
    "seed": st.integers(0, 2**32 - 1),
    "spatial": st.lists(st.integers(1, 40), min_size=2, max_size=3),
    "n": st.sampled_from([2, 3, 5, 21]),
    "dtype": st.sampled_from(SCORE_DTYPES),
    "channels_first": st.booleans(),
    "ignore_frac": st.sampled_from([0.0, 0.1, 0.5, 1.0]),
}


@settings(max_examples=60, deadline=None)
@given(b=st.integers(1, 3), **case_args)
def test_property_counts_equal_bincount(seed, b, spatial, n, dtype, channels_first, ignore_frac):
    scores, truth, pred, keep, class_axis = random_case(
        seed, b, spatial, n, dtype, channels_first, ignore_frac
    )
    c = fastseg.counts(truth, scores, class_axis=class_axis, ignore_index=255)
    assert_counts(c, truth, pred, n, keep)


@settings(max_examples=30, deadline=None)
@given(b=st.integers(2, 3), split=st.integers(1, 2), **case_args)
def test_property_batch_split(seed, b, split, spatial, n, dtype, channels_first, ignore_frac):
    k = min(split, b - 1)
    scores, truth, _, _, class_axis = random_case(
        seed, b, spatial, n, dtype, channels_first, ignore_frac
    )
    kw = {"class_axis": class_axis, "ignore_index": 255}
    whole = fastseg.counts(truth, scores, **kw)
    parts = fastseg.counts(truth[:k], scores[:k], **kw) + fastseg.counts(
        truth[k:], scores[k:], **kw
    )
    assert parts == whole
    assert parts.ignored == whole.ignored


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    b=st.integers(1, 3),
    spatial=st.lists(st.integers(1, 30), min_size=2, max_size=3),
    n=st.sampled_from([2, 3, 5, 21]),
    channels_first=st.booleans(),
)
def test_property_class_permutation(seed, b, spatial, n, channels_first):
    rng = np.random.default_rng(seed)
    # Distinct values per pixel: no ties, so the argmax moves with the permutation.
    scores = rng.random((b, *spatial, n)).argsort(-1).astype(np.float32)
    truth = rng.integers(0, n, (b, *spatial))
    perm = rng.permutation(n)
    inverse = np.argsort(perm)
    permuted_scores = scores[..., perm]  # new class j is old class perm[j]
    permuted_truth = inverse[truth]  # old label l becomes inverse[l]
    class_axis = None
    if channels_first:
        class_axis = 1
        scores = np.ascontiguousarray(np.moveaxis(scores, -1, 1))
        permuted_scores = np.ascontiguousarray(np.moveaxis(permuted_scores, -1, 1))
    c = fastseg.counts(truth, scores, class_axis=class_axis)
    cp = fastseg.counts(permuted_truth, permuted_scores, class_axis=class_axis)
    np.testing.assert_array_equal(cp.confusion, c.confusion[np.ix_(perm, perm)])
    np.testing.assert_array_equal(cp.tp, c.tp[:, perm])
    np.testing.assert_array_equal(cp.pred, c.pred[:, perm])
    np.testing.assert_array_equal(cp.true, c.true[:, perm])


# --------------------------------------------------------------------------------------
# Threads
# --------------------------------------------------------------------------------------


def big_case(seed, b, layout, n=4):
    """Images of 3 blocks of pixels (76800 > 2 * BLOCK), with ignored pixels."""
    rng = np.random.default_rng(seed)
    h, w = 256, 300
    assert h * w > 2 * kernels.BLOCK
    scores = rng.random((b, h, w, n)).astype(np.float32)
    truth = rng.integers(0, n, (b, h, w))
    truth[rng.random(truth.shape) < 0.05] = 255
    pred = np.argmax(scores, -1)
    if layout == "channels_first":
        return np.ascontiguousarray(np.moveaxis(scores, -1, 1)), truth, pred, 1
    if layout == "float16":
        scores = scores.astype(np.float16)
        return scores, truth, np.argmax(scores, -1), None
    return scores, truth, pred, None


@pytest.mark.parametrize("layout", ["channels_last", "channels_first", "float16"])
@pytest.mark.parametrize("b", [1, 3])
def test_thread_count_invariance(layout, b):
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs 2 Numba threads")
    scores, truth, pred, class_axis = big_case(21, b, layout)
    kw = {"class_axis": class_axis, "ignore_index": 255}
    saved = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        hard1 = fastseg.counts(truth, scores, **kw)
        soft1 = fastseg.counts(truth, scores, soft=True, **kw)
        numba.set_num_threads(2)
        hard2 = fastseg.counts(truth, scores, **kw)
        soft2 = fastseg.counts(truth, scores, soft=True, **kw)
    finally:
        numba.set_num_threads(saved)
    assert hard1 == hard2
    assert_counts(hard2, truth, pred, 4, truth != 255)
    for a1, a2 in ((soft1.tp, soft2.tp), (soft1.pred, soft2.pred), (soft1.true, soft2.true)):
        assert a1.dtype == a2.dtype == np.float64
        assert np.array_equal(a1, a2)  # bit-identical
    assert soft1.ignored == soft2.ignored == (truth == 255).sum()


def test_concurrent_calls_in_a_thread_pool():
    cases = [
        big_case(30 + i, 1 + i % 3, layout)
        for i, layout in enumerate(["channels_last", "channels_first", "float16", "channels_last"])
    ]

    def run(case):
        scores, truth, _, class_axis = case
        kw = {"class_axis": class_axis, "ignore_index": 255}
        return fastseg.counts(truth, scores, **kw), fastseg.counts(truth, scores, soft=True, **kw)

    serial = [run(case) for case in cases]
    for _ in range(2):
        with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
            parallel = list(pool.map(run, cases))
        for (h1, s1), (h2, s2), case in zip(serial, parallel, cases, strict=True):
            assert h1 == h2
            assert s1 == s2
            assert_counts(h2, case[1], case[2], 4, case[1] != 255)


# --------------------------------------------------------------------------------------
# Soft sums
# --------------------------------------------------------------------------------------


def soft_reference(scores, truth, axis=-1, keep=None):
    """float64 sums of |p t|, |p|, |t| over the spatial axes (classes last)."""
    p = np.moveaxis(np.asarray(scores), axis, -1).astype(np.float64)
    t = np.asarray(truth)
    t = (
        one_hot(t, p.shape[-1], dtype=np.float64)
        if t.ndim == p.ndim - 1
        else np.moveaxis(t, axis, -1).astype(np.float64)
    )
    if keep is not None:
        p = p * keep[..., None]
        t = t * keep[..., None]
    spatial = tuple(range(1, p.ndim - 1))
    return (
        np.abs(p * t).sum(axis=spatial),
        np.abs(p).sum(axis=spatial),
        np.abs(t).sum(axis=spatial),
    )


def assert_soft(c, expected, exact=False):
    assert c.soft
    assert c.confusion is None
    for name, value, ref in zip(
        ("tp", "pred", "true"), (c.tp, c.pred, c.true), expected, strict=True
    ):
        assert value.dtype == np.float64, name
        if exact:
            np.testing.assert_array_equal(value, ref, err_msg=name)
        else:
            np.testing.assert_allclose(value, ref, rtol=1e-12, atol=0, err_msg=name)


@pytest.mark.parametrize(
    ("dtype", "channels_first"),
    [("float32", False), ("float64", False), ("float16", False), ("float32", True)],
)
@pytest.mark.parametrize("truth_kind", ["labels", "one_hot"])
def test_soft_sums(dtype, channels_first, truth_kind):
    rng = rng_for(40, len(dtype), channels_first, len(truth_kind))
    scores = rng.random((3, 14, 11, 5)).astype(dtype)
    labels = rng.integers(0, 5, (3, 14, 11))
    if dtype == "float16" and truth_kind == "one_hot":
        truth = rng.random((3, 14, 11, 5)).astype(np.float32)  # soft truth values
    else:
        truth = labels if truth_kind == "labels" else one_hot(labels, 5)
    expected = soft_reference(scores, truth)
    class_axis = None
    if channels_first:
        class_axis = 1
        scores = np.ascontiguousarray(np.moveaxis(scores, -1, 1))
        if truth.ndim == 4:
            truth = np.ascontiguousarray(np.moveaxis(truth, -1, 1))
    c = fastseg.counts(truth, scores, class_axis=class_axis, soft=True)
    assert_soft(c, expected)
    assert c.ignored == 0
    if dtype == "float16":
        # float16 scores are summed as their (exact) float32 values.
        assert c == fastseg.counts(truth, scores.astype(np.float32), soft=True)


@pytest.mark.parametrize("truth_kind", ["labels", "one_hot"])
def test_soft_sums_exact_with_dyadic_values(truth_kind):
    # Multiples of 1/8 in [0, 1] (soft metrics refuse other values): every partial sum
    # is exact, in any order.
    rng = rng_for(41, len(truth_kind))
    scores = (rng.integers(0, 9, (2, 20, 17, 3)) / 8).astype(np.float32)
    labels = rng.integers(0, 3, (2, 20, 17))
    truth = labels if truth_kind == "labels" else one_hot(labels, 3)
    c = fastseg.counts(truth, scores, soft=True)
    assert_soft(c, soft_reference(scores, truth), exact=True)


@pytest.mark.parametrize("truth_kind", ["labels", "one_hot"])
def test_soft_sums_ignore_index(truth_kind):
    rng = rng_for(42, len(truth_kind))
    scores = rng.random((2, 12, 13, 4)).astype(np.float32)
    labels = rng.integers(0, 4, (2, 12, 13))
    if truth_kind == "labels":
        ignored = rng.random(labels.shape) < 0.3
        labels[ignored] = 255
        truth, ignore_index = labels, 255
        ref_truth = np.where(ignored, 0, labels)  # any valid label: masked out below
    else:
        # Ignoring class 3 of a one-hot truth skips the pixels whose argmax is 3.
        ignored = labels == 3
        truth, ignore_index = one_hot(labels, 4), 3
        ref_truth = truth
    c = fastseg.counts(truth, scores, soft=True, ignore_index=ignore_index)
    assert c.ignored == ignored.sum() > 0
    assert_soft(c, soft_reference(scores, ref_truth, keep=~ignored))


def test_soft_sums_of_one_hot_prediction_equal_hard_counts():
    rng = rng_for(43)
    labels = rng.integers(0, 4, (2, 9, 9))
    pred = rng.integers(0, 4, (2, 9, 9))
    hard = fastseg.counts(labels, one_hot(pred, 4))
    soft = fastseg.counts(labels, one_hot(pred, 4), soft=True)
    np.testing.assert_array_equal(soft.tp, hard.tp)
    np.testing.assert_array_equal(soft.pred, hard.pred)
    np.testing.assert_array_equal(soft.true, hard.true)


# --------------------------------------------------------------------------------------
# Many classes: the shared-table kernel, and the number of classes a machine can hold
# --------------------------------------------------------------------------------------


@pytest.fixture
def chosen_kernels(monkeypatch):
    """The hard kernel count_prepared picks (kernels.hard_kernel), call by call."""
    picked = []
    real = kernels.hard_kernel

    def spy(*args, **kwargs):
        picked.append(real(*args, **kwargs))
        return picked[-1]

    monkeypatch.setattr(kernels, "hard_kernel", spy)
    return picked


@pytest.mark.parametrize("layout", ["channels_last", "channels_first", "float16"])
@pytest.mark.parametrize("b", [1, 3])
def test_shared_table_path_equals_bincount(layout, b, monkeypatch, chosen_kernels):
    """TABLE_SLACK = 0 sends even 4 classes to hard_counts_shared: at 1 and 2 threads its
    counts equal the per-thread path's and bincount's (B = 1: one image over 3 blocks)."""
    scores, truth, pred, class_axis = big_case(70, b, layout)
    kw = {"class_axis": class_axis, "ignore_index": 255}
    per_thread = fastseg.counts(truth, scores, **kw)
    assert chosen_kernels == [kernels.hard_counts]
    assert_counts(per_thread, truth, pred, 4, truth != 255)
    monkeypatch.setattr(kernels, "TABLE_SLACK", 0)
    saved = numba.get_num_threads()
    thread_counts = sorted({1, min(2, numba.config.NUMBA_NUM_THREADS)})
    try:
        for threads in thread_counts:
            numba.set_num_threads(threads)
            assert fastseg.counts(truth, scores, **kw) == per_thread
    finally:
        numba.set_num_threads(saved)
    assert chosen_kernels[1:] == [kernels.hard_counts_shared] * len(thread_counts)


@pytest.mark.parametrize("kind", ["labels", "channels_first"])
def test_many_classes_take_the_shared_table(kind, chosen_kernels):
    """3000 classes: per-thread tables would be 2T times the confusion matrix."""
    n = 3000
    rng = rng_for(71, len(kind))
    truth = rng.integers(0, n, (3, 20, 30))
    truth[rng.random(truth.shape) < 0.1] = n + 1
    keep = truth != n + 1
    if kind == "labels":
        pred = rng.integers(0, n, truth.shape)
        c = fastseg.counts(truth, pred, num_classes=n, ignore_index=n + 1)
    else:
        scores = rng.random((3, n, 20, 30), np.float32)
        pred = scores.argmax(1)
        c = fastseg.counts(truth, scores, class_axis=1, ignore_index=n + 1)
    assert chosen_kernels == [kernels.hard_counts_shared]
    assert_counts(c, np.where(keep, truth, 0), pred, n, keep)


def test_num_classes_beyond_any_confusion_matrix():
    message = ("num_classes=2147483648 needs a 2147483648 x 2147483648 int64 confusion matrix "
               "(3.7e+19 bytes)")  # fmt: skip
    with pytest.raises(ValueError, match=re.escape(message)):
        check_num_classes(2**31)
    with pytest.raises(ValueError, match=re.escape(message)):
        fastseg.counts(np.zeros((1, 2), np.int64), np.zeros((1, 2), np.int64),
                       num_classes=2**31)  # fmt: skip
    with pytest.raises(ValueError, match=r"num_classes=2147483648 needs three float64 rows"):
        check_num_classes(2**31, soft=True)
    check_num_classes(4000)
    check_num_classes(4000, soft=True)
    memory = fastseg.inputs._memory_bytes()
    if memory is not None:
        n = math.isqrt(memory // 8) + 1
        with pytest.raises(ValueError, match="bytes of memory: is num_classes right"):
            check_num_classes(n)


# --------------------------------------------------------------------------------------
# Soft values outside [0, 1]
# --------------------------------------------------------------------------------------

RANGE_MESSAGE = "soft metrics need probabilities: apply a softmax/sigmoid first"


def test_soft_scores_outside_unit_range_are_refused():
    rng = rng_for(72)
    probs = rng.random((2, 6, 7, 3)).astype(np.float32)
    labels = rng.integers(0, 3, (2, 6, 7))
    logits = probs.copy()
    out = rng.random(logits.shape) < 0.2
    logits[out] = 5.3
    prep = fastseg.inputs.prepare(labels, logits, soft=True)
    counted = count_prepared(prep, soft=True, check_range=False)  # counted when not asked
    assert_soft(counted, soft_reference(logits, labels))
    message = f"y_pred has {out.sum()} soft scores outside [0, 1] (e.g. 5.3); {RANGE_MESSAGE}"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        count_prepared(prep, soft=True, check_range=True)
    # Probabilities pass; so do the hard counts of the logits.
    count_prepared(fastseg.inputs.prepare(labels, probs, soft=True), soft=True, check_range=True)
    count_prepared(fastseg.inputs.prepare(labels, logits), check_range=True)


def test_soft_infinity_and_truth_outside_unit_range():
    rng = rng_for(73)
    probs = rng.random((1, 4, 5, 3)).astype(np.float32)
    truth = one_hot(rng.integers(0, 3, (1, 4, 5)), 3)
    probs[0, 1, 1, 2] = np.inf
    truth[0, 2, 3, 0] = 2.0
    truth[0, 2, 4, 1] = -1.0
    prep = fastseg.inputs.prepare(truth, probs, soft=True)
    with pytest.raises(ValueError, match=r"y_true has 2 soft values outside \[0, 1\]") as info:
        count_prepared(prep, soft=True, check_range=True)
    text = str(info.value)
    assert "(e.g. 2)" in text or "(e.g. -1)" in text
    assert "soft metrics need a one-hot or probability truth" in text
    assert f"y_pred has 1 soft scores outside [0, 1] (e.g. inf); {RANGE_MESSAGE}" in text
    # NaN keeps its own message and is not counted as out of range.
    probs[0, 1, 1, 2] = np.nan
    truth = one_hot(rng.integers(0, 3, (1, 4, 5)), 3)
    with pytest.raises(ValueError, match=r"^y_pred has NaN scores at 1 pixels$"):
        count_prepared(fastseg.inputs.prepare(truth, probs, soft=True), soft=True,
                       check_range=True)  # fmt: skip


def test_check_stats_soft_range_flag():
    stats = np.zeros(kernels.N_STATS, np.int64)
    stats[kernels.PRED_RANGE] = 1234
    stats[kernels.PRED_RANGE_VALUE : kernels.PRED_RANGE_VALUE + 1] = np.array([5.3]).view(np.int64)
    check_stats(stats, 3, None)  # not asked: accepted
    message = f"y_pred has 1234 soft scores outside [0, 1] (e.g. 5.3); {RANGE_MESSAGE}"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        check_stats(stats, 3, None, soft_range=True)

"""Tests of the plain-NumPy oracle :mod:`fastseg.reference`.

The expected values are worked out by hand in the comments (``s`` is the smoothing
``SMOOTH = 0.001``; ``IoU = (I + s) / (U + s)``, ``Dice = 2 (I + s) / (|T| + |P| + s)``
per image and class). The last tests recompute the per-image counts with explicit
loops, independently of the module's vectorised code.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fastseg.reference import SMOOTH, mean_dice_np, mean_iou_np, metrics_np

s = SMOOTH
REL = 1e-12


def one_hot(labels, num_classes):
    """(B, W, H) integer labels -> (B, W, H, N) float one-hot masks."""
    return np.eye(num_classes)[np.asarray(labels)]


def test_smooth_constant():
    assert SMOOTH == 0.001
    assert type(SMOOTH) is float  # a NumPy scalar would change float16/32 promotion


# --------------------------------------------------------------------------------------
# 1 image, 2x2 pixels, 2 classes
#
#   truth labels  0 0      pred labels  0 1
#                 1 1                   1 1
#
# class 0: |T| = 2, |P| = 1, I = 1, U = 2  -> IoU (1+s)/(2+s),  Dice 2(1+s)/(3+s)
# class 1: |T| = 2, |P| = 3, I = 2, U = 3  -> IoU (2+s)/(3+s),  Dice 2(2+s)/(5+s)
# --------------------------------------------------------------------------------------
T_2X2 = [[[0, 0], [1, 1]]]
P_2X2 = [[[0, 1], [1, 1]]]


def test_hand_worked_two_classes():
    y_true, y_pred = one_hot(T_2X2, 2), one_hot(P_2X2, 2)
    iou0, iou1 = (1 + s) / (2 + s), (2 + s) / (3 + s)  # 0.50025, 0.66678
    dice0, dice1 = 2 * (1 + s) / (3 + s), 2 * (2 + s) / (5 + s)  # 0.66711, 0.80024

    # Both classes kept: mean of the two (each class is present in the single image).
    assert metrics_np(y_true, y_pred, "iou", drop_last=False) == pytest.approx(
        (iou0 + iou1) / 2, rel=REL
    )
    assert metrics_np(y_true, y_pred, "dice", drop_last=False) == pytest.approx(
        (dice0 + dice1) / 2, rel=REL
    )
    # drop_last (the default) keeps class 0 only.
    assert metrics_np(y_true, y_pred, "iou") == pytest.approx(iou0, rel=REL)
    assert metrics_np(y_true, y_pred, "dice") == pytest.approx(dice0, rel=REL)
    # Every class is present, so 'naive' agrees with 'standard'.
    assert metrics_np(y_true, y_pred, "iou", "naive", drop_last=False) == pytest.approx(
        (iou0 + iou1) / 2, rel=REL
    )
    # Per class, one image: naive is the metric itself; the non-naive form is smoothed,
    # (x + s) / (1 + s), slightly different from x.
    np.testing.assert_allclose(
        metrics_np(y_true, y_pred, "iou", "naive", drop_last=False, mean_per_class=True),
        [iou0, iou1],
        rtol=REL,
    )
    np.testing.assert_allclose(
        metrics_np(y_true, y_pred, "iou", drop_last=False, mean_per_class=True),
        [(iou0 + s) / (1 + s), (iou1 + s) / (1 + s)],
        rtol=REL,
    )
    # drop_last also applies to the per-class output: one class left.
    assert metrics_np(y_true, y_pred, "iou", "naive", mean_per_class=True).shape == (1,)


def test_wrappers():
    y_true, y_pred = one_hot(T_2X2, 2), one_hot(P_2X2, 2)
    for kwargs in ({}, {"metric_type": "naive", "drop_last": False, "mean_per_class": True}):
        np.testing.assert_array_equal(
            mean_iou_np(y_true, y_pred, **kwargs), metrics_np(y_true, y_pred, "iou", **kwargs)
        )
        np.testing.assert_array_equal(
            mean_dice_np(y_true, y_pred, **kwargs), metrics_np(y_true, y_pred, "dice", **kwargs)
        )


# --------------------------------------------------------------------------------------
# The same image with a third class that appears in neither mask.
# class 2: I = 0, U = 0, |T| + |P| = 0 -> IoU (0+s)/(0+s) = 1.0, Dice 2(0+s)/(0+s) = 2.0
# --------------------------------------------------------------------------------------
def test_absent_class_raises_the_naive_mean():
    y_true, y_pred = one_hot(T_2X2, 3), one_hot(P_2X2, 3)
    iou0, iou1 = (1 + s) / (2 + s), (2 + s) / (3 + s)

    standard = metrics_np(y_true, y_pred, "iou", drop_last=False)
    naive = metrics_np(y_true, y_pred, "iou", "naive", drop_last=False)
    # standard: class 2 is masked out -> (0.50025 + 0.66678) / 2 = 0.58351
    assert standard == pytest.approx((iou0 + iou1) / 2, rel=REL)
    # naive: class 2 counts as IoU 1 -> (0.50025 + 0.66678 + 1) / 3 = 0.72234
    assert naive == pytest.approx((iou0 + iou1 + 1.0) / 3, rel=REL)
    assert naive > standard  # the post's point: absent classes inflate the naive mean

    per_class = metrics_np(y_true, y_pred, "iou", "naive", drop_last=False, mean_per_class=True)
    assert per_class[2] == 1.0  # s / s, exactly


def test_dice_of_an_absent_class_is_two_under_naive():
    y_true, y_pred = one_hot(T_2X2, 3), one_hot(P_2X2, 3)
    dice0, dice1 = 2 * (1 + s) / (3 + s), 2 * (2 + s) / (5 + s)

    per_class = metrics_np(y_true, y_pred, "dice", "naive", drop_last=False, mean_per_class=True)
    assert per_class[2] == 2.0  # 2 (0 + s) / (0 + s), exactly
    # The naive mean Dice exceeds 1: (0.66711 + 0.80024 + 2) / 3 = 1.15578
    naive = metrics_np(y_true, y_pred, "dice", "naive", drop_last=False)
    assert naive == pytest.approx((dice0 + dice1 + 2.0) / 3, rel=REL)
    assert naive > 1
    # 'standard' masks the class out.
    assert metrics_np(y_true, y_pred, "dice", drop_last=False) == pytest.approx(
        (dice0 + dice1) / 2, rel=REL
    )


# --------------------------------------------------------------------------------------
# Hard encoding: argmax of both masks (all-zero truth pixel -> class 0, ties -> first).
# 1 image of 1x2 pixels, 3 classes:
#   truth  p0 = [0, 0, 0]        -> class 0      p1 = [0, 0, 1]       -> class 2
#   pred   p0 = [0.2, 0.2, 0.1]  -> class 0 (tie) p1 = [0.1, 0.3, 0.3] -> class 1 (tie)
# class 0: I = 1, U = 1 -> 1.0;  class 1: I = 0, U = 1 -> s/(1+s);  class 2: idem
# --------------------------------------------------------------------------------------
def test_argmax_encoding_zero_truth_pixel_and_ties():
    y_true = np.array([[[[0, 0, 0], [0, 0, 1]]]], dtype=float)
    y_pred = np.array([[[[0.2, 0.2, 0.1], [0.1, 0.3, 0.3]]]])
    for metric_type in ("standard", "naive"):
        per_class = metrics_np(
            y_true, y_pred, "iou", metric_type, drop_last=False, mean_per_class=True
        )
        if metric_type == "naive":
            expected = [1.0, s / (1 + s), s / (1 + s)]
        else:  # smoothed per-class mean: (x + s) / (1 + s)
            expected = [1.0, (s / (1 + s) + s) / (1 + s), (s / (1 + s) + s) / (1 + s)]
        np.testing.assert_allclose(per_class, expected, rtol=REL)


# --------------------------------------------------------------------------------------
# One class: both masks thresholded at > 0; drop_last is ignored.
#   truth  1 0        pred  0.2  0.0    -> pred > 0:  1 0
#          0 0              0.01 -0.3                 1 0
# I = 1, |T| = 1, |P| = 2, U = 2 -> IoU (1+s)/(2+s), Dice 2(1+s)/(3+s)
# soft: I = 0.2, |T| = 1, |P| = 0.2 + 0.01 + 0.3 = 0.51 (abs!), U = 1.31
#       -> IoU (0.2+s)/(1.31+s), Dice 2(0.2+s)/(1.51+s)
# --------------------------------------------------------------------------------------
def test_single_class_is_thresholded_and_never_dropped():
    y_true = np.array([[[[1.0], [0.0]], [[0.0], [0.0]]]])
    y_pred = np.array([[[[0.2], [0.0]], [[0.01], [-0.3]]]])

    assert metrics_np(y_true, y_pred, "iou") == pytest.approx((1 + s) / (2 + s), rel=REL)
    assert metrics_np(y_true, y_pred, "dice") == pytest.approx(2 * (1 + s) / (3 + s), rel=REL)
    assert metrics_np(y_true, y_pred, "iou", "naive") == pytest.approx((1 + s) / (2 + s), rel=REL)
    assert metrics_np(y_true, y_pred, "iou", mean_per_class=True).shape == (1,)
    # Any positive value is a predicted pixel, however small.
    tiny = np.where(y_pred > 0, 1e-300, y_pred)
    assert metrics_np(y_true, tiny, "iou") == metrics_np(y_true, y_pred, "iou")

    assert metrics_np(y_true, y_pred, "iou", "soft") == pytest.approx(
        (0.2 + s) / (1.31 + s), rel=REL
    )
    assert metrics_np(y_true, y_pred, "dice", "soft") == pytest.approx(
        2 * (0.2 + s) / (1.51 + s), rel=REL
    )


# --------------------------------------------------------------------------------------
# mean_per_class and the per-batch mean. 2 images of 2x2 pixels, 3 classes (class 2
# absent everywhere), drop_last=False.
#   image A: truth 0 0  pred 0 0     image B: truth 0 1  pred 1 1
#                  0 0       0 0                    1 1       1 1
# A: c0 I=4 U=4 -> 1.0;  c1 absent -> 1.0;  c2 absent -> 1.0
# B: c0 I=0 U=1 -> s/(1+s) = 0.000999;  c1 I=3 U=4 -> (3+s)/(4+s) = 0.75006;  c2 -> 1.0
# mask:  A [1, 0, 0]   B [1, 1, 0]
# --------------------------------------------------------------------------------------
T_BATCH = [[[0, 0], [0, 0]], [[0, 1], [1, 1]]]
P_BATCH = [[[0, 0], [0, 0]], [[1, 1], [1, 1]]]


def test_mean_per_class_naive_and_masked():
    y_true, y_pred = one_hot(T_BATCH, 3), one_hot(P_BATCH, 3)
    b0, b1 = s / (1 + s), (3 + s) / (4 + s)

    naive = metrics_np(y_true, y_pred, "iou", "naive", drop_last=False, mean_per_class=True)
    # plain mean over the 2 images, absent classes included as 1.0
    np.testing.assert_allclose(naive, [(1 + b0) / 2, (1 + b1) / 2, 1.0], rtol=REL)

    masked = metrics_np(y_true, y_pred, "iou", drop_last=False, mean_per_class=True)
    # (sum over images where present + s) / (number of such images + s)
    np.testing.assert_allclose(masked, [(1 + b0 + s) / (2 + s), (b1 + s) / (1 + s), 1.0], rtol=REL)
    assert masked[2] == 1.0  # absent from every image: (0 + s) / (0 + s)


def test_scalar_mean_is_per_image_not_pooled():
    y_true, y_pred = one_hot(T_BATCH, 3), one_hot(P_BATCH, 3)
    b0, b1 = s / (1 + s), (3 + s) / (4 + s)

    # class 0 present in 2 images: (1 + 0.000999) / 2 = 0.50050; class 1 in 1 image: 0.75006;
    # class 2 never present: left out. Mean = 0.62528.
    standard = metrics_np(y_true, y_pred, "iou", drop_last=False)
    assert standard == pytest.approx(((1 + b0) / 2 + b1) / 2, rel=REL)
    # Pooling the counts over the batch would give c0: 4/5, c1: 3/4 -> about 0.775.
    pooled = ((4 + s) / (5 + s) + (3 + s) / (4 + s)) / 2
    assert abs(standard - pooled) > 0.1

    # naive: all 6 (image, class) values, absent ones as 1.0 -> (1+1+1 + b0+b1+1) / 6
    naive = metrics_np(y_true, y_pred, "iou", "naive", drop_last=False)
    assert naive == pytest.approx((4 + b0 + b1) / 6, rel=REL)


# --------------------------------------------------------------------------------------
# Soft metrics. 1 image of 1x2 pixels, 2 classes:
#   truth p0 = [1, 0], p1 = [0, 1];   pred p0 = [0.75, 0.25], p1 = [0.5, 0.5]
# class 0: I = 0.75, |T| = 1, |P| = 1.25, S = 2.25, U = 1.5
# class 1: I = 0.5,  |T| = 1, |P| = 0.75, S = 1.75, U = 1.25
# --------------------------------------------------------------------------------------
Y_TRUE_SOFT = np.array([[[[1.0, 0.0], [0.0, 1.0]]]])
Y_PRED_SOFT = np.array([[[[0.75, 0.25], [0.5, 0.5]]]])


def test_soft_metrics_hand_worked():
    iou = [(0.75 + s) / (1.5 + s), (0.5 + s) / (1.25 + s)]  # 0.50033, 0.40048
    dice = [2 * (0.75 + s) / (2.25 + s), 2 * (0.5 + s) / (1.75 + s)]  # 0.66696, 0.57167
    assert metrics_np(Y_TRUE_SOFT, Y_PRED_SOFT, "iou", "soft", drop_last=False) == pytest.approx(
        sum(iou) / 2, rel=REL
    )
    assert metrics_np(Y_TRUE_SOFT, Y_PRED_SOFT, "dice", "soft", drop_last=False) == pytest.approx(
        sum(dice) / 2, rel=REL
    )
    assert metrics_np(Y_TRUE_SOFT, Y_PRED_SOFT, "iou", "soft") == pytest.approx(iou[0], rel=REL)
    # Hard metrics on the same data: p1 is a tie -> class 0. c0: I=1, U=2; c1: I=0, U=1.
    assert metrics_np(Y_TRUE_SOFT, Y_PRED_SOFT, "iou", drop_last=False) == pytest.approx(
        ((1 + s) / (2 + s) + s / (1 + s)) / 2, rel=REL
    )


def test_soft_metrics_take_absolute_values():
    for name in ("iou", "dice"):
        for y_pred in (-Y_PRED_SOFT, Y_PRED_SOFT * [[[[1.0, -1.0]]]]):
            assert metrics_np(Y_TRUE_SOFT, y_pred, name, "soft", drop_last=False) == metrics_np(
                Y_TRUE_SOFT, Y_PRED_SOFT, name, "soft", drop_last=False
            )


def test_soft_float16_is_computed_in_float16():
    y_true, y_pred = Y_TRUE_SOFT.astype(np.float16), Y_PRED_SOFT.astype(np.float16)
    result = metrics_np(y_true, y_pred, "iou", "soft", mean_per_class=True)
    # class 0: (0.75 + s) / (1.5 + s) with every step rounded to float16, then the mask
    # (an int array) promotes to float64 for the smoothed per-class mean.
    iou0_f16 = (np.float16(0.75) + s) / (np.float16(1.5) + s)
    assert iou0_f16.dtype == np.float16
    assert result.dtype == np.float64
    assert result[0] == (np.float64(iou0_f16) + s) / (1 + s)
    # ... which is visibly off the float64 value (float16 has ~3 significant digits).
    exact = ((0.75 + s) / (1.5 + s) + s) / (1 + s)
    assert abs(result[0] - exact) > 1e-4


# --------------------------------------------------------------------------------------
# Every kept class absent -> the non-naive scalar mean is np.mean([]) = NaN (+ warning).
# 1 image, all pixels of class 1 (the last, "background"), drop_last=True: class 0 is
# absent from both masks.
# --------------------------------------------------------------------------------------
def test_all_classes_absent_gives_nan_with_runtime_warning():
    y = one_hot([[[1, 1], [1, 1]]], 2)
    for name in ("iou", "dice"):
        for metric_type in ("standard", "soft"):
            with pytest.warns(RuntimeWarning):
                result = metrics_np(y, y, name, metric_type)
            assert math.isnan(result)
    # naive: the smoothed score of the absent class; per-class masked form: 1.0.
    assert metrics_np(y, y, "iou", "naive") == 1.0
    assert metrics_np(y, y, "dice", "naive") == 2.0
    np.testing.assert_array_equal(metrics_np(y, y, "iou", mean_per_class=True), [1.0])
    np.testing.assert_array_equal(metrics_np(y, y, "dice", mean_per_class=True), [1.0])


# --------------------------------------------------------------------------------------
# Errors and other behaviour
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("y_true", "y_pred", "metric_name", "metric_type", "match"),
    [
        (np.zeros((1, 2, 2, 2)), np.zeros((1, 2, 2, 3)), "iou", "standard", "same shape"),
        (np.zeros((2, 2, 2)), np.zeros((2, 2, 2)), "iou", "standard", r"B\*W\*H\*N"),
        (np.zeros((1, 1, 2, 2, 2)), np.zeros((1, 1, 2, 2, 2)), "iou", "naive", r"B\*W\*H\*N"),
        (np.zeros((1, 2, 2, 2)), np.zeros((1, 2, 2, 2)), "jaccard", "standard", "metric_name"),
        (np.zeros((1, 2, 2, 2)), np.zeros((1, 2, 2, 2)), "iou", "Soft", "metric_type"),
        (np.zeros((1, 2, 2, 2)), np.zeros((1, 2, 2, 2)), "iou", "hard", "metric_type"),
    ],
)
def test_value_errors(y_true, y_pred, metric_name, metric_type, match):
    with pytest.raises(ValueError, match=match):
        metrics_np(y_true, y_pred, metric_name, metric_type)


def test_verbose_prints_intersection_and_union(capsys):
    metrics_np(one_hot(T_2X2, 2), one_hot(P_2X2, 2), "iou", verbose=True)
    out = capsys.readouterr().out
    assert out.startswith(
        "intersection (pred*true), intersection (pred&true), "
        "union (pred+true-inters), union (pred|true)\n"
    )
    # intersection [[1 2]] twice (product and logical_and), union [[2 3]] twice
    assert out.splitlines()[1] == "[[1 2]] [[1 2]] [[2 3]] [[2 3]]"


def test_nested_lists_are_accepted():
    y_true, y_pred = one_hot(T_2X2, 2), one_hot(P_2X2, 2)
    assert metrics_np(y_true.tolist(), y_pred.tolist(), "iou") == metrics_np(y_true, y_pred, "iou")


# --------------------------------------------------------------------------------------
# Independent check: per-image counts recomputed with explicit loops.
# --------------------------------------------------------------------------------------
def loop_argmax(values):
    """Index of the first maximum of a 1-D sequence."""
    best = 0
    for k in range(1, len(values)):
        if values[k] > values[best]:
            best = k
    return best


def loop_metric_matrix(y_true, y_pred, metric_name, metric_type):
    """Per-image, per-class metric and presence, as (B, N) nested lists."""
    n_images, width, height, n_classes = y_true.shape
    metric = [[0.0] * n_classes for _ in range(n_images)]
    present = [[0] * n_classes for _ in range(n_images)]
    for b in range(n_images):
        for c in range(n_classes):
            inter = size_true = size_pred = 0.0
            for i in range(width):
                for j in range(height):
                    t, p = y_true[b, i, j], y_pred[b, i, j]
                    if metric_type == "soft":
                        tc, pc = abs(float(t[c])), abs(float(p[c]))
                    elif n_classes > 1:
                        tc = float(loop_argmax(t) == c)
                        pc = float(loop_argmax(p) == c)
                    else:
                        tc, pc = float(t[0] > 0), float(p[0] > 0)
                    inter += tc * pc
                    size_true += tc
                    size_pred += pc
            union = size_true + size_pred - inter
            if metric_name == "iou":
                metric[b][c] = (inter + s) / (union + s)
            else:
                metric[b][c] = 2 * (inter + s) / (size_true + size_pred + s)
            present[b][c] = int(union != 0)
    return metric, present


def loop_reduce(metric, present, metric_type, drop_last, mean_per_class):
    n_classes = len(metric[0])
    classes = range(n_classes - 1) if drop_last and n_classes > 1 else range(n_classes)
    n_images = len(metric)
    if mean_per_class:
        out = []
        for c in classes:
            if metric_type == "naive":
                out.append(sum(metric[b][c] for b in range(n_images)) / n_images)
            else:
                total = sum(metric[b][c] * present[b][c] for b in range(n_images))
                count = sum(present[b][c] for b in range(n_images))
                out.append((total + s) / (count + s))
        return np.array(out)
    if metric_type == "naive":
        values = [metric[b][c] for b in range(n_images) for c in classes]
        return sum(values) / len(values)
    per_class = []
    for c in classes:
        count = sum(present[b][c] for b in range(n_images))
        if count:
            per_class.append(sum(metric[b][c] * present[b][c] for b in range(n_images)) / count)
    return sum(per_class) / len(per_class)


def random_inputs(seed, shape):
    rng = np.random.default_rng(seed)
    n_classes = shape[-1]
    # Truth: one-hot with ~20 % all-zero pixels (class 0 for hard metrics).
    y_true = one_hot(rng.integers(0, n_classes, shape[:-1]), n_classes)
    y_true[rng.random(shape[:-1]) < 0.2] = 0.0
    # Prediction: softmax-like probabilities.
    logits = rng.normal(size=shape)
    y_pred = np.exp(logits) / np.exp(logits).sum(axis=-1, keepdims=True)
    if n_classes == 1:  # centred so that both signs occur
        y_pred = logits
        y_true = (rng.random(shape) < 0.5).astype(float)
    return y_true, y_pred


@pytest.mark.parametrize(
    ("seed", "shape"), [(0, (3, 4, 5, 4)), (1, (2, 3, 3, 1)), (2, (5, 2, 6, 3))]
)
@pytest.mark.parametrize("metric_name", ["iou", "dice"])
@pytest.mark.parametrize("metric_type", ["standard", "soft", "naive"])
def test_against_explicit_loops(seed, shape, metric_name, metric_type):
    y_true, y_pred = random_inputs(seed, shape)
    metric, present = loop_metric_matrix(y_true, y_pred, metric_name, metric_type)
    for drop_last, mean_per_class in itertools.product([True, False], [True, False]):
        expected = loop_reduce(metric, present, metric_type, drop_last, mean_per_class)
        result = metrics_np(
            y_true,
            y_pred,
            metric_name,
            metric_type,
            drop_last=drop_last,
            mean_per_class=mean_per_class,
        )
        np.testing.assert_allclose(result, expected, rtol=REL, atol=0)


def test_naive_mean_adds_in_class_major_order():
    # The hard one-hot masks are class-major in memory (as in the post), so the naive
    # scalar mean adds the (B, N) metric matrix class by class. Its last bits are those
    # of the mean of the transposed matrix in C order.
    y_true, y_pred = random_inputs(3, (7, 3, 4, 5))
    for metric_name in ("iou", "dice"):
        metric, _ = loop_metric_matrix(y_true, y_pred, metric_name, "naive")
        class_major = np.ascontiguousarray(np.array(metric).T)
        assert metrics_np(y_true, y_pred, metric_name, "naive", drop_last=False) == np.mean(
            class_major
        )


# --------------------------------------------------------------------------------------
# Property: permuting the class axis permutes the per-class result and leaves the scalar
# mean unchanged (up to the order of the final float additions). Inputs have no argmax
# ties: each pixel's maximum is 2 + noise, the other classes have noise < 1.
# --------------------------------------------------------------------------------------
@st.composite
def permuted_inputs(draw):
    n_classes = draw(st.integers(2, 4))
    shape = (draw(st.integers(1, 3)), draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    labels = st.integers(0, n_classes - 1)
    true_labels = draw(hnp.arrays(np.int64, shape, elements=labels))
    pred_labels = draw(hnp.arrays(np.int64, shape, elements=labels))
    noise = draw(
        hnp.arrays(
            np.float64,
            (*shape, n_classes),
            elements=st.floats(0, 1, exclude_max=True, allow_subnormal=False),
        )
    )
    y_true = one_hot(true_labels, n_classes)
    y_pred = 2 * one_hot(pred_labels, n_classes) + noise
    perm = np.array(draw(st.permutations(range(n_classes))))
    return y_true, y_pred, perm


@settings(max_examples=60, deadline=None)
@given(
    data=permuted_inputs(),
    metric_name=st.sampled_from(["iou", "dice"]),
    metric_type=st.sampled_from(["standard", "naive", "soft"]),
)
def test_class_permutation_invariance(data, metric_name, metric_type):
    y_true, y_pred, perm = data
    kwargs = {"metric_name": metric_name, "metric_type": metric_type, "drop_last": False}
    # C-contiguous copies: y[..., perm] alone is class-major in memory, and the soft sums
    # (like the post's) add pixels in memory order, which can change the last bit.
    permuted_true = np.ascontiguousarray(y_true[..., perm])
    permuted_pred = np.ascontiguousarray(y_pred[..., perm])

    per_class = metrics_np(y_true, y_pred, mean_per_class=True, **kwargs)
    permuted = metrics_np(permuted_true, permuted_pred, mean_per_class=True, **kwargs)
    np.testing.assert_array_equal(permuted, per_class[perm])

    scalar = metrics_np(y_true, y_pred, **kwargs)
    assert metrics_np(permuted_true, permuted_pred, **kwargs) == pytest.approx(scalar, rel=REL)

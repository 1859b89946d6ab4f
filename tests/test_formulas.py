"""The formulas of fastseg.formulas: hand-worked rows, and properties against direct NumPy.

The hand-worked row (four classes) is the one the policy tests used; the property tests
count random label maps with ``np.bincount`` (no kernel) and compare each formula with
scikit-learn where the two coincide (``jaccard_score``, ``f1_score``, ``precision_score``,
``recall_score``, ``accuracy_score`` with ``zero_division=np.nan``), with the usual
confusion-matrix NumPy (fwIoU, mAcc), with ``np.nanmean`` on explicitly repeated rows
(weighted means, the 'image' and 'sample' aggregations), and with the post's own code
(:func:`fastseg.reference.metrics_np`) for :func:`~fastseg.formulas.post_mean`.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import accuracy_score, f1_score, jaccard_score, precision_score, recall_score

from fastseg.formulas import (
    POST_SMOOTH,
    check_post_options,
    class_mean,
    dice,
    frequency_weighted_iou,
    image_aggregation_mean,
    image_class_means,
    image_mean,
    iou,
    mean_accuracy,
    metric_values,
    nanmean,
    pixel_accuracy,
    post_mean,
    precision,
    prepare_image_aggregation,
    present,
    ratio,
    recall,
    totals_summary,
)
from fastseg.reference import metrics_np

nan = math.nan

# One row, four classes:             c0  c1  c2  c3
TP = np.array([[3, 0, 0, 0]])  #      3   0   0   0
PRED = np.array([[4, 2, 0, 0]])  #    4   2   0   0   (c1 predicted only)
TRUE = np.array([[5, 0, 1, 0]])  #    5   0   1   0   (c2 missed, c3 absent)
# union = pred + true - tp            6   2   1   0


def approx(values):
    return pytest.approx(values, rel=1e-12, nan_ok=True)


# ------------------------------------------------- moved from tests/test_policy.py


def test_ratio_and_nanmean_give_nan_without_warning():
    assert ratio(np.array([1.0, 0.0]), np.array([2.0, 0.0])).tolist()[0] == 0.5
    assert math.isnan(ratio(np.array([1.0, 0.0]), np.array([2.0, 0.0]))[1])
    values = np.array([[1.0, nan, 3.0], [nan, nan, nan]])
    assert nanmean(values, axis=1) == approx([2.0, nan])
    assert nanmean(values, axis=0) == approx([1.0, nan, 3.0])


def test_presence_rules():
    assert present(TP, PRED, TRUE, "truth_or_pred").tolist() == [[True, True, True, False]]
    assert present(TP, PRED, TRUE, "truth").tolist() == [[True, False, True, False]]
    assert present(TP, PRED, TRUE, "all").tolist() == [[True, True, True, True]]


def test_metric_values_default():
    # iou = tp / union = 3/6, 0/2, 0/1, (absent) nan; dice = 2 tp / (pred + true) = 6/9, 0, 0
    assert metric_values("iou", TP, PRED, TRUE)[0] == approx([1 / 2, 0, 0, nan])
    assert metric_values("dice", TP, PRED, TRUE)[0] == approx([2 / 3, 0, 0, nan])


@pytest.mark.parametrize("empty", [0, 1])
def test_metric_values_empty_value(empty):
    assert metric_values("iou", TP, PRED, TRUE, empty=empty)[0] == approx([1 / 2, 0, 0, empty])


def test_metric_values_truth_presence_drops_false_positive_only_classes():
    # c1 has prediction but no truth: not present, so it takes the empty value.
    assert metric_values("iou", TP, PRED, TRUE, presence="truth")[0] == approx([1 / 2, nan, 0, nan])
    assert metric_values("dice", TP, PRED, TRUE, presence="truth", empty=1)[0] == approx(
        [2 / 3, 1, 0, 1]
    )


def test_metric_values_smoothed_like_the_post():
    s = 0.001
    rules = {"presence": "all", "smooth": s}
    # iou = (tp + s) / (union + s); the absent class scores s / s = 1
    assert metric_values("iou", TP, PRED, TRUE, **rules)[0] == approx(
        [(3 + s) / (6 + s), s / (2 + s), s / (1 + s), 1.0]
    )
    # dice = 2 (tp + s) / (pred + true + s); the absent class scores 2 s / s = 2
    assert metric_values("dice", TP, PRED, TRUE, **rules)[0] == approx(
        [2 * (3 + s) / (9 + s), 2 * s / (2 + s), 2 * s / (1 + s), 2.0]
    )


def test_metric_values_all_present_without_smoothing_is_nan_for_empty_union():
    assert math.isnan(metric_values("iou", TP, PRED, TRUE, presence="all")[0, 3])


def test_metric_values_rejects_unknown_metric():
    with pytest.raises(ValueError, match="metric must be one of"):
        metric_values("f1", TP, PRED, TRUE)


def test_totals_summary_by_hand():
    kept = np.ones(4, bool)
    s = totals_summary(TP, PRED, TRUE, kept)
    assert s["miou"] == approx([(1 / 2 + 0 + 0) / 3])  # c3 NaN, left out
    assert s["mdice"] == approx([(2 / 3 + 0 + 0) / 3])
    assert s["aacc"] == approx([3 / 6])  # sum tp / sum true
    assert s["macc"] == approx([(3 / 5 + 0) / 2])  # recall 3/5, nan (c1), 0/1, nan (c3)
    # fwIoU = (5 * 1/2 + 0 * 0 + 1 * 0) / (5 + 0 + 1)
    assert s["fwiou"] == approx([5 / 2 / 6])


def test_totals_summary_excluding_classes():
    kept = np.array([False, True, True, True])
    s = totals_summary(TP, PRED, TRUE, kept)
    assert s["miou"] == approx([0.0])  # c1 0, c2 0, c3 nan
    assert s["aacc"] == approx([3 / 6])  # pixel accuracy counts every class
    assert s["macc"] == approx([0.0])  # only c2 has truth: 0/1
    assert s["fwiou"] == approx([0.0])  # only c2 weighs


def test_totals_summary_is_vectorised_over_rows():
    tp = np.vstack([TP, 2 * TP])
    pred = np.vstack([PRED, 2 * PRED])
    true = np.vstack([TRUE, 2 * TRUE])
    s = totals_summary(tp, pred, true, np.ones(4, bool))
    for values in s.values():
        assert values.shape == (2,)
        assert values[0] == approx(values[1])  # doubling every count changes no ratio


def test_totals_summary_of_nothing_is_nan():
    zeros = np.zeros((1, 3))
    s = totals_summary(zeros, zeros, zeros, np.ones(3, bool))
    assert all(math.isnan(v[0]) for v in s.values())


def test_weighted_image_means():
    values = np.array([[1.0, nan], [0.5, 0.25], [0.0, nan]])
    # plain means: class 0 (1 + 0.5 + 0) / 3, class 1 0.25 / 1
    assert image_class_means(values, np.ones((1, 3)))[0] == approx([0.5, 0.25])
    # image 1 twice, image 2 not at all: class 0 (1 + 2 * 0.5) / 3, class 1 2 * 0.25 / 2
    assert image_class_means(values, np.array([[1.0, 2.0, 0.0]]))[0] == approx([2 / 3, 0.25])
    scores = np.array([0.2, nan, 0.6])
    assert image_mean(scores, np.array([[1.0, 5.0, 3.0], [0.0, 1.0, 0.0]])) == approx([0.5, nan])


# ------------------------------------------------------------------ hand-worked


def test_per_class_values_by_hand():
    # iou = tp / union: 3/6, 0/2, 0/1, 0/0; dice = 2 tp / (pred + true): 6/9, 0/2, 0/1, 0/0
    assert iou(TP, PRED, TRUE)[0] == approx([1 / 2, 0, 0, nan])
    assert dice(TP, PRED, TRUE)[0] == approx([2 / 3, 0, 0, nan])
    # precision = tp / pred: 3/4, 0/2, 0/0, 0/0; recall = tp / true: 3/5, 0/0, 0/1, 0/0
    assert precision(TP, PRED)[0] == approx([3 / 4, 0, nan, nan])
    assert recall(TP, TRUE)[0] == approx([3 / 5, nan, 0, nan])


def test_smoothing_by_hand():
    s = 0.5
    assert iou(TP, PRED, TRUE, s)[0] == approx([3.5 / 6.5, 0.5 / 2.5, 0.5 / 1.5, 1.0])
    assert dice(TP, PRED, TRUE, s)[0] == approx([7 / 9.5, 1 / 2.5, 1 / 1.5, 2.0])


def test_formulas_keep_any_shape():
    tp, pred, true = (np.broadcast_to(a, (2, 3, 4)) for a in (TP, PRED, TRUE))
    assert iou(tp, pred, true).shape == (2, 3, 4)
    assert present(tp, pred, true, "all").shape == (2, 3, 4)
    assert iou(TP[0], PRED[0], TRUE[0]) == approx([1 / 2, 0, 0, nan])  # one row, 1-D


def test_summaries_one_by_one_by_hand():
    kept = np.ones(4, bool)
    assert pixel_accuracy(TP, TRUE) == approx([3 / 6])
    assert mean_accuracy(TP, TRUE, kept) == approx([(3 / 5 + 0) / 2])
    assert frequency_weighted_iou(TP, PRED, TRUE, kept) == approx([5 / 2 / 6])
    # only c3 kept: no truth pixel, no recall, no weight
    only_c3 = np.array([False, False, False, True])
    assert math.isnan(mean_accuracy(TP, TRUE, only_c3)[0])
    assert math.isnan(frequency_weighted_iou(TP, PRED, TRUE, only_c3)[0])
    assert pixel_accuracy(TP, TRUE) == approx([3 / 6])  # aAcc never excludes


def test_class_mean_by_hand():
    values = np.array([[0.5, nan, 0.1], [nan, nan, nan]])
    assert class_mean(values, np.ones(3, bool)) == approx([0.3, nan])
    assert class_mean(values, np.array([False, True, True])) == approx([0.1, nan])


def test_image_aggregations_by_hand():
    # three images, two classes
    values = np.array([[1.0, nan], [0.5, 0.25], [0.0, nan]])
    ones = np.ones((1, 3))
    both, first = np.ones(2, bool), np.array([True, False])

    def mean(kept, aggregation, weights=ones):
        prepared = prepare_image_aggregation(values, kept, aggregation)
        return image_aggregation_mean(prepared, kept, weights, aggregation)

    # image: class means 0.5 and 0.25, then their mean
    assert mean(both, "image") == approx([0.375])
    # sample: image means 1, 0.375, 0, then their mean
    assert mean(both, "sample") == approx([(1 + 0.375 + 0) / 3])
    assert mean(first, "image") == approx([0.5])
    assert mean(first, "sample") == approx([0.5])
    # image 1 twice, image 2 not at all: image (1 + 1) / 3 and 0.25; sample (1 + 2 * .375) / 3
    weights = np.array([[1.0, 2.0, 0.0]])
    assert mean(both, "image", weights) == approx([(2 / 3 + 0.25) / 2])
    assert mean(both, "sample", weights) == approx([(1 + 2 * 0.375) / 3])


def test_post_mean_by_hand():
    s = POST_SMOOTH
    # the post.metrics example: truth [[0, 1], [1, 1]], prediction [[0, 1], [0, 1]]
    tp, pred, true = np.array([[1, 2]]), np.array([[2, 2]]), np.array([[1, 3]])
    iou0, iou1 = (1 + s) / (2 + s), (2 + s) / (3 + s)
    assert post_mean(tp, pred, true, "iou", drop_last=False) == approx((iou0 + iou1) / 2)
    assert post_mean(tp, pred, true, "iou") == approx(iou0)  # the last class dropped
    dice0 = 2 * (1 + s) / (3 + s)
    assert post_mean(tp, pred, true, "dice") == approx(dice0)
    per_class = post_mean(tp, pred, true, "iou", drop_last=False, mean_per_class=True)
    assert per_class == approx([(iou0 + s) / (1 + s), (iou1 + s) / (1 + s)])


def test_post_mean_absent_classes_by_hand():
    s = POST_SMOOTH
    # two images, three classes; class 1 only in image 0, class 2 in none
    tp, pred, true = np.array([[1, 1, 0], [2, 0, 0]]), np.array([[1, 2, 0], [2, 0, 0]]), \
        np.array([[1, 1, 0], [2, 0, 0]])  # fmt: skip
    v01 = (1 + s) / (2 + s)  # image 0, class 1; the other present ones score 1
    # standard: class means over the images where the class is present, then their mean
    assert post_mean(tp, pred, true, "iou", drop_last=False) == approx((1.0 + v01) / 2)
    # naive: every (image, class) enters; absent ones score s / s = 1 (IoU), 2 (Dice)
    assert post_mean(tp, pred, true, "iou", naive=True, drop_last=False) == approx(
        (1 + v01 + 1 + 1 + 1 + 1) / 6
    )
    assert post_mean(tp, pred, true, "dice", naive=True, drop_last=False) == approx(
        (2 * (1 + s) / (2 + s) + 2 * (1 + s) / (3 + s) + 2 + 2 * (2 + s) / (4 + s) + 2 + 2) / 6
    )
    # per class, standard: (sum over present images + s) / (images present + s)
    assert post_mean(tp, pred, true, "iou", drop_last=False, mean_per_class=True) == approx(
        [(2 + s) / (2 + s), (v01 + s) / (1 + s), s / s]
    )
    assert post_mean(tp, pred, true, "iou", naive=True, mean_per_class=True) == approx(
        [1.0, (v01 + 1) / 2]
    )


def test_post_mean_over_no_present_class_is_nan():
    zeros = np.zeros((2, 3), np.int64)
    assert math.isnan(post_mean(zeros, zeros, zeros, "iou"))
    assert post_mean(zeros, zeros, zeros, "iou", naive=True) == 1.0
    assert post_mean(zeros, zeros, zeros, "dice", naive=True) == 2.0
    # one class is never dropped
    one = np.array([[1]]), np.array([[2]]), np.array([[1]])
    assert post_mean(*one, "iou") == approx((1 + POST_SMOOTH) / (2 + POST_SMOOTH))


def test_check_post_options():
    assert check_post_options("dice", "soft") == "dice"
    with pytest.raises(ValueError, match=r"metric_name must be one of \('iou', 'dice'\); got 'f1'"):
        check_post_options("f1", "standard")
    with pytest.raises(ValueError, match="metric_type must be one of"):
        check_post_options("iou", "hard")
    with pytest.raises(ValueError, match="metric_name must be one of"):  # the name first
        check_post_options("f1", "hard")


def test_nanmean_adds_in_index_order_whatever_the_rows():
    # why nanmean exists: a row's mean does not depend on the rows reduced beside it
    rng = np.random.default_rng(0)
    values = rng.random((300, 151))
    values[rng.random(values.shape) < 0.3] = nan
    block = nanmean(values, axis=1)
    for r in range(300):
        np.testing.assert_array_equal(nanmean(values[r : r + 1], axis=1), block[r : r + 1])
    # so a bootstrap block of totals gives each resample the bits of its own report
    tp = rng.integers(0, 9, (50, 7))
    pred, true = tp + rng.integers(0, 9, (50, 7)), tp + rng.integers(0, 9, (50, 7))
    kept = rng.random(7) < 0.8
    summary = totals_summary(tp, pred, true, kept)
    for r in range(50):
        row = totals_summary(tp[r : r + 1], pred[r : r + 1], true[r : r + 1], kept)
        for key, value in row.items():
            np.testing.assert_array_equal(value, summary[key][r : r + 1])


# ------------------------------------------------------------------ properties


@st.composite
def label_maps(draw, max_classes=6, max_pixels=60):
    """Truth and prediction label maps of one image, and the number of classes."""
    n = draw(st.integers(1, max_classes))
    size = draw(st.integers(1, max_pixels))
    labels = st.lists(st.integers(0, n - 1), min_size=size, max_size=size)
    return np.array(draw(labels)), np.array(draw(labels)), n


def bincounts(truth, pred, n):
    """tp, pred, true of one image, shape (1, n), by np.bincount."""
    tp = np.bincount(truth[truth == pred], minlength=n)
    return tp[None], np.bincount(pred, minlength=n)[None], np.bincount(truth, minlength=n)[None]


def confusion(truth, pred, n):
    return np.bincount(n * truth + pred, minlength=n * n).reshape(n, n)


SKLEARN = {"labels": None, "average": None, "zero_division": np.nan}


@settings(max_examples=60, deadline=None)
@given(label_maps())
def test_per_class_formulas_equal_sklearn(maps):
    truth, pred, n = maps
    tp, predicted, true = bincounts(truth, pred, n)
    options = SKLEARN | {"labels": np.arange(n)}
    # jaccard_score takes no zero_division=nan: 0 / 0 is 0 there, NaN here
    union = (predicted + true - tp)[0]
    jaccard = jaccard_score(truth, pred, **options | {"zero_division": 0})
    expected = np.where(union > 0, jaccard, nan)
    np.testing.assert_allclose(iou(tp, predicted, true)[0], expected, rtol=1e-12)
    np.testing.assert_allclose(dice(tp, predicted, true)[0],
                               f1_score(truth, pred, **options), rtol=1e-12)  # fmt: skip
    np.testing.assert_allclose(precision(tp, predicted)[0],
                               precision_score(truth, pred, **options), rtol=1e-12)  # fmt: skip
    np.testing.assert_allclose(recall(tp, true)[0],
                               recall_score(truth, pred, **options), rtol=1e-12)  # fmt: skip
    assert pixel_accuracy(tp, true)[0] == pytest.approx(accuracy_score(truth, pred), rel=1e-12)


@settings(max_examples=60, deadline=None)
@given(label_maps())
def test_macro_means_equal_sklearn(maps):
    # sklearn's macro average with zero_division=nan leaves the 0 / 0 classes out, as the
    # data-set convention does (presence 'truth_or_pred', empty NaN, nothing excluded)
    truth, pred, n = maps
    tp, predicted, true = bincounts(truth, pred, n)
    options = SKLEARN | {"labels": np.arange(n), "average": "macro"}
    s = totals_summary(tp, predicted, true, np.ones(n, bool))
    # jaccard_score takes no zero_division=nan: give it only the classes with a union
    with_union = np.flatnonzero((predicted + true - tp)[0] > 0)
    jaccard = jaccard_score(truth, pred, labels=with_union, average="macro", zero_division=0)
    assert s["miou"][0] == pytest.approx(jaccard, rel=1e-12)
    assert s["mdice"][0] == pytest.approx(f1_score(truth, pred, **options), rel=1e-12)
    assert s["macc"][0] == pytest.approx(recall_score(truth, pred, **options), rel=1e-12)


@settings(max_examples=60, deadline=None)
@given(label_maps(), st.data())
def test_accuracies_and_fwiou_equal_the_confusion_matrix_numpy(maps, data):
    # the semantic-segmentation codebases' NumPy (FCN's fwavacc, mmseg's mAcc) on the
    # confusion matrix, restricted to the kept classes
    truth, pred, n = maps
    kept = np.array(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    tp, predicted, true = bincounts(truth, pred, n)
    hist = confusion(truth, pred, n)
    diag, rows, cols = np.diag(hist), hist.sum(axis=1), hist.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # nanmean of nothing
        class_iou = diag / (rows + cols - diag)
        acc = diag / rows
        freq = np.where(kept, rows, 0) / np.where(kept, rows, 0).sum()
        fwiou = (freq[freq > 0] * class_iou[freq > 0]).sum() if freq.sum() > 0 else nan
        macc = np.nanmean(acc[kept]) if kept.any() else nan
    assert pixel_accuracy(tp, true)[0] == pytest.approx(diag.sum() / hist.sum(), rel=1e-12)
    assert mean_accuracy(tp, true, kept)[0] == pytest.approx(macc, rel=1e-12, nan_ok=True)
    assert frequency_weighted_iou(tp, predicted, true, kept)[0] == pytest.approx(
        fwiou, rel=1e-12, nan_ok=True
    )


@st.composite
def image_counts(draw):
    """Per-image counts (B, N), soft or hard, some classes absent from some images."""
    b, n = draw(st.integers(1, 6)), draw(st.integers(1, 5))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    true = np.where(rng.random((b, n)) < 0.6, rng.integers(0, 20, (b, n)), 0)
    tp = rng.binomial(true, 0.6)
    pred = tp + np.where(rng.random((b, n)) < 0.4, rng.integers(0, 10, (b, n)), 0)
    if draw(st.booleans()):  # soft sums: any non-negative floats with tp <= pred, true
        return tp * 0.7, pred * 0.9 + 0.0, true * 0.8 + 0.0, rng
    return tp, pred, true, rng


@settings(max_examples=80, deadline=None)
@given(image_counts(), st.sampled_from(["iou", "dice"]),
       st.sampled_from(["truth_or_pred", "truth", "all"]), st.sampled_from([nan, 0.0, 1.0]),
       st.sampled_from([0.0, POST_SMOOTH]))  # fmt: skip
def test_metric_values_follow_their_definition(counts, metric, presence, empty, smooth):
    tp, pred, true, _ = counts
    values = metric_values(metric, tp, pred, true, smooth=smooth, presence=presence, empty=empty)
    tp, pred, true = (np.asarray(a, np.float64) for a in (tp, pred, true))
    is_present = {"truth_or_pred": pred + true - tp > 0, "truth": true > 0,
                  "all": np.ones(tp.shape, bool)}[presence]  # fmt: skip
    with np.errstate(invalid="ignore", divide="ignore"):
        if metric == "iou":
            direct = (tp + smooth) / (pred + true - tp + smooth)
        else:
            direct = 2 * (tp + smooth) / (pred + true + smooth)
    np.testing.assert_allclose(values, np.where(is_present, direct, empty), rtol=1e-12)


@settings(max_examples=80, deadline=None)
@given(image_counts(), st.data())
def test_weighted_means_equal_means_of_repeated_images(counts, data):
    # weights are bootstrap draws: image b taken w[b] times
    tp, pred, true, rng = counts
    b, n = tp.shape
    values = metric_values("iou", tp, pred, true)
    kept = np.array(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    weights = rng.integers(0, 3, (4, b))
    weights[:, 0] += 1  # at least one image per resample
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # np.nanmean of nothing
        for r, w in enumerate(weights):
            repeated = np.repeat(values, w, axis=0)
            np.testing.assert_allclose(image_class_means(values, weights)[r],
                                       np.nanmean(repeated, axis=0), rtol=1e-12)  # fmt: skip
            image = np.nanmean(np.nanmean(repeated[:, kept], axis=0)) if kept.any() else nan
            sample = np.nanmean(np.nanmean(repeated[:, kept], axis=1)) if kept.any() else nan
            for aggregation, direct in (("image", image), ("sample", sample)):
                prepared = prepare_image_aggregation(values, kept, aggregation)
                got = image_aggregation_mean(prepared, kept, weights, aggregation)[r]
                assert got == pytest.approx(direct, rel=1e-12, nan_ok=True)
            scores = class_mean(values, kept)
            assert image_mean(scores, weights)[r] == pytest.approx(
                np.nanmean(np.repeat(scores, w)), rel=1e-12, nan_ok=True
            )


@settings(max_examples=80, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6, allow_subnormal=False) | st.just(nan), min_size=1,
                max_size=40), st.data())  # fmt: skip
def test_nanmean_and_ratio_equal_numpy(items, data):
    values = np.array(items).reshape(-1, 1 if len(items) % 2 else 2)
    axis = data.draw(st.sampled_from([0, 1]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        expected = np.nanmean(values, axis=axis)
    np.testing.assert_allclose(nanmean(values, axis=axis), expected, rtol=1e-9, atol=1e-6)
    den = np.where(np.isnan(values), 0.0, values)
    with np.errstate(invalid="ignore", divide="ignore"):
        direct = np.where(den != 0, 1.5 / den, nan)
    np.testing.assert_array_equal(ratio(1.5, den), direct)


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 5), st.integers(1, 3), st.integers(1, 12), st.integers(0, 2**32 - 1),
       st.sampled_from(["iou", "dice"]), st.sampled_from(["standard", "naive"]),
       st.booleans(), st.booleans())  # fmt: skip
def test_post_mean_equals_the_posts_numpy(n, b, pixels, seed, metric, kind, drop_last, per_class):
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, n, (b, pixels))
    pred = np.where(rng.random((b, pixels)) < 0.5, truth, rng.integers(0, n, (b, pixels)))
    counts = [bincounts(t, p, n) for t, p in zip(truth, pred, strict=True)]
    tp, predicted, true = (np.vstack(rows) for rows in zip(*counts, strict=True))
    one_hot = np.eye(n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the post's mean of nothing
        expected = metrics_np(one_hot[truth][:, None], one_hot[pred][:, None], metric, kind,
                              drop_last, per_class)  # fmt: skip
    got = post_mean(tp, predicted, true, metric, naive=kind == "naive", drop_last=drop_last,
                    mean_per_class=per_class)  # fmt: skip
    np.testing.assert_allclose(got, expected, rtol=1e-12)

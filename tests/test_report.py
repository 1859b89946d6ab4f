"""The Report: every metric, policy and preset on hand-worked data, and its outputs.

The worked example (two images of five pixels, five classes) is counted by
``fastseg.counts``; every expected value below is worked out by hand, in comments, from
the convention's written definition (the peers' source code is cited in the README).

    image A (id "a.png")                 image B (id "b.png")
    truth [0, 0, 1, 1, 1]                truth [0, 0, 0, 2, 0]
    pred  [0, 1, 1, 1, 3]                pred  [0, 0, 1, 0, 0]

             tp pred true union                  tp pred true union
    class 0   1    1    2     2                   3    4    4     5
    class 1   2    3    3     4                   0    1    0     1
    class 2   0    0    0     0  (absent)         0    0    1     1
    class 3   0    1    0     1                   0    0    0     0  (absent)
    class 4   0    0    0     0  (absent)         0    0    0     0  (absent)

    totals:  tp [4, 2, 0, 0, 0]  pred [5, 4, 0, 1, 0]  true [6, 3, 1, 0, 0]
             union [7, 5, 1, 1, 0]; 10 pixels

    confusion (rows truth, columns prediction): [0,0]=4 [0,1]=2 [1,1]=2 [1,3]=1 [2,0]=1
"""

from __future__ import annotations

import csv
import json
import math
import pickle
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import accuracy_score, confusion_matrix

import fastseg
from fastseg import Counts
from fastseg.bootstrap import BOOT_BLOCK, resample_weights
from fastseg.reference import metrics_np
from fastseg.report import PRESETS, ImageScore, Report

nan = math.nan
S = 0.001  # the post's smoothing
TRUTH = np.array([[0, 0, 1, 1, 1], [0, 0, 0, 2, 0]])
PRED = np.array([[0, 1, 1, 1, 3], [0, 0, 1, 0, 0]])
IDS = ["a.png", "b.png"]
NAMES = ["background", "road", "car", "tree", "sky"]


def approx(values):
    return pytest.approx(values, rel=1e-12, abs=1e-15, nan_ok=True)


@pytest.fixture(scope="module")
def counts() -> Counts:
    return fastseg.counts(TRUTH, PRED, num_classes=5, spatial_dims=1)  # 1-D worked example


def report(counts: Counts, **kwargs) -> Report:
    return Report(counts, ids=IDS, class_names=NAMES, **kwargs)


def test_worked_example_counts(counts):
    assert counts.tp.tolist() == [[1, 2, 0, 0, 0], [3, 0, 0, 0, 0]]
    assert counts.pred.tolist() == [[1, 3, 0, 1, 0], [4, 1, 0, 0, 0]]
    assert counts.true.tolist() == [[2, 3, 0, 0, 0], [4, 0, 1, 0, 0]]


# ------------------------------------------------------------- the default convention


def test_dataset_default_per_class(counts):
    r = report(counts)
    assert r.iou == approx([4 / 7, 2 / 5, 0, 0, nan])  # tp / union of the totals
    assert r.dice == approx([8 / 11, 4 / 7, 0, 0, nan])  # 2 tp / (pred + true)
    assert r.precision == approx([4 / 5, 2 / 4, nan, 0, nan])  # tp / pred
    assert r.recall == approx([4 / 6, 2 / 3, 0, nan, nan])  # tp / true
    assert r.support.tolist() == [6, 3, 1, 0, 0]
    assert r.predicted.tolist() == [5, 4, 0, 1, 0]
    expected = np.zeros((5, 5), int)
    expected[0, 0], expected[0, 1], expected[1, 1], expected[1, 3], expected[2, 0] = 4, 2, 2, 1, 1
    np.testing.assert_array_equal(r.confusion_matrix, expected)


def test_dataset_default_summaries(counts):
    r = report(counts)
    assert r.miou == approx((4 / 7 + 2 / 5 + 0 + 0) / 4)  # 17/70; class 4 NaN, left out
    assert r.mdice == approx((8 / 11 + 4 / 7 + 0 + 0) / 4)  # 25/77
    assert r.aacc == approx(6 / 10)  # (4 + 2) correct of 10 pixels
    assert r.macc == approx((4 / 6 + 2 / 3 + 0) / 3)  # recall of classes with truth
    assert r.fwiou == approx((6 * 4 / 7 + 3 * 2 / 5 + 1 * 0) / 10)  # 81/175
    assert r.summary == {"miou": r.miou, "mdice": r.mdice, "aacc": r.aacc, "macc": r.macc,
                         "fwiou": r.fwiou}  # fmt: skip


# ----------------------------------------------------------------------- policies


@pytest.mark.parametrize(
    ("empty", "miou"),
    [
        ("nan", (4 / 7 + 2 / 5 + 0 + 0) / 4),  # class 4 left out
        (0, (4 / 7 + 2 / 5 + 0 + 0 + 0) / 5),  # class 4 scores 0
        (1, (4 / 7 + 2 / 5 + 0 + 0 + 1) / 5),  # class 4 scores 1
    ],
)
def test_empty_policy(counts, empty, miou):
    r = report(counts, empty=empty)
    assert r.miou == approx(miou)
    assert r.iou[4] == approx(float(empty))


def test_presence_truth_leaves_out_false_positive_only_classes(counts):
    r = report(counts, presence="truth")
    # class 3 is predicted once but never in the truth: no longer present
    assert r.iou == approx([4 / 7, 2 / 5, 0, nan, nan])
    assert r.miou == approx((4 / 7 + 2 / 5 + 0) / 3)
    # with empty=0 it scores 0 again, as does class 4
    assert report(counts, presence="truth", empty=0).miou == approx((4 / 7 + 2 / 5) / 5)


def test_exclude_background(counts):
    r = report(counts, exclude=[0])
    assert r.iou[0] == approx(4 / 7)  # still reported
    assert r.miou == approx((2 / 5 + 0 + 0) / 3)
    assert r.mdice == approx((4 / 7 + 0 + 0) / 3)
    assert r.macc == approx((2 / 3 + 0) / 2)  # recall of classes 1 and 2
    assert r.fwiou == approx((3 * 2 / 5 + 1 * 0) / 4)  # truth weights 3 and 1
    assert r.aacc == approx(6 / 10)  # pixel accuracy keeps every pixel
    assert r.kept.tolist() == [False, True, True, True, True]


@pytest.mark.parametrize("exclude", [["last"], [-1], [4]])
def test_exclude_last_class(counts, exclude):
    # class 4 is NaN anyway; exclude class 3 as well to see the difference
    assert report(counts, exclude=exclude).miou == approx((4 / 7 + 2 / 5 + 0 + 0) / 4)
    assert report(counts, exclude=[*exclude, 3]).miou == approx((4 / 7 + 2 / 5 + 0) / 3)


def test_per_image_values(counts):
    r = report(counts)
    # IoU per image: tp / union, NaN where the union is empty
    assert r.per_image_values("iou") == approx(
        np.array([[1 / 2, 2 / 4, nan, 0 / 1, nan], [3 / 5, 0 / 1, 0 / 1, nan, nan]])
    )
    assert r.per_image_values("dice") == approx(
        np.array([[2 / 3, 4 / 6, nan, 0, nan], [6 / 8, 0, 0, nan, nan]])
    )
    assert r.image_means("iou") == approx([(1 / 2 + 1 / 2 + 0) / 3, (3 / 5 + 0 + 0) / 3])


def test_aggregation_image_averages_each_class_over_images_first(counts):
    r = report(counts, aggregation="image")
    # class 0: (1/2 + 3/5) / 2, class 1: (1/2 + 0) / 2, class 2: 0, class 3: 0, class 4 NaN
    assert r.iou == approx([11 / 20, 1 / 4, 0, 0, nan])
    assert r.miou == approx((11 / 20 + 1 / 4 + 0 + 0) / 4)  # 1/5
    # precision, recall and accuracies stay data-set values
    assert r.precision == approx([4 / 5, 2 / 4, nan, 0, nan])
    assert r.aacc == approx(6 / 10)


def test_aggregation_sample_averages_each_image_over_classes_first(counts):
    r = report(counts, aggregation="sample")
    # image A: (1/2 + 1/2 + 0) / 3 = 1/3; image B: (3/5 + 0 + 0) / 3 = 1/5
    assert r.miou == approx((1 / 3 + 1 / 5) / 2)  # 4/15
    assert r.iou == approx([11 / 20, 1 / 4, 0, 0, nan])  # per class as for 'image'


# ------------------------------------------------------------------------ presets


def test_mmseg_iou_metric(counts):
    # mmseg IoUMetric.total_area_to_metrics on the summed areas:
    #   IoU = intersect / union, Acc = intersect / label, Dice = 2 intersect / (pred + label),
    #   Precision = intersect / pred, Recall = intersect / label (0/0 -> NaN);
    #   aAcc = intersect.sum() / label.sum(); every summary is np.nanmean of its column.
    intersect = np.array([4.0, 2, 0, 0, 0])
    pred = np.array([5.0, 4, 0, 1, 0])
    label = np.array([6.0, 3, 1, 0, 0])
    union = pred + label - intersect
    with np.errstate(invalid="ignore", divide="ignore"):
        iou, acc = intersect / union, intersect / label
        dice, precision = 2 * intersect / (pred + label), intersect / pred
        expected = {"IoU": iou, "Acc": acc, "Dice": dice, "Precision": precision}
    r = report(counts, preset="mmseg")
    assert r.iou == approx(expected["IoU"])
    assert r.recall == approx(expected["Acc"])
    assert r.dice == approx(expected["Dice"])
    assert r.precision == approx(expected["Precision"])
    assert r.aacc == approx(intersect.sum() / label.sum())
    assert r.miou == approx(np.nanmean(expected["IoU"]))
    assert r.macc == approx(np.nanmean(expected["Acc"]))
    assert r.mdice == approx(np.nanmean(expected["Dice"]))
    # nan_to_num=0 turns the NaN IoU into 0 before the mean: fastseg's empty=0
    assert report(counts, preset="mmseg", empty=0).miou == approx(np.mean(np.nan_to_num(iou)))


def test_cityscapes_pixel_level(counts):
    # evalPixelLevelSemanticLabeling.getIouScoreForLabel on the confusion matrix:
    #   tp = conf[c, c]; fn = conf[c, :].sum() - tp; fp = conf[rows not ignored, c].sum() - tp
    #   IoU = tp / (tp + fp + fn), NaN when the denominator is 0; getScoreAverage skips NaN.
    # class 0: tp 4, fn 2 (truth 0 predicted 1), fp 1 (truth 2 predicted 0) -> 4/7
    # class 1: tp 2, fn 1, fp 2 -> 2/5; class 2: 0/(0+0+1); class 3: 0/(0+1+0); class 4: NaN
    r = report(counts, preset="cityscapes")
    assert r.iou == approx([4 / 7, 2 / 5, 0, 0, nan])
    assert r.miou == approx((4 / 7 + 2 / 5 + 0 + 0) / 4)


def test_torchmetrics_multiclass_jaccard_macro(counts):
    # _jaccard_index_reduce(average='macro'): num = diag(confmat),
    #   denom = confmat.sum(0) + confmat.sum(1) - num; jaccard = num / denom (0 for 0/0);
    #   weights 1, set to 0 where confmat.sum(1) + confmat.sum(0) == 0; mean weighted by them.
    num = np.array([4, 2, 0, 0, 0])
    denom = np.array([5 + 6 - 4, 4 + 3 - 2, 0 + 1 - 0, 1 + 0 - 0, 0])
    jaccard = np.divide(num, denom, out=np.zeros(5), where=denom != 0)
    weights = (denom != 0).astype(float)
    r = report(counts, preset="torchmetrics")
    assert r.miou == approx((weights * jaccard).sum() / weights.sum())
    # average='none' reports 0 where fastseg reports NaN; the macro mean agrees
    assert r.iou[:4] == approx(jaccard[:4])


def test_monai_dice_metric(counts):
    # DiceHelper.compute_channel, ignore_empty=True: NaN when the truth is empty (even if
    # predicted), else 2 |y & y_pred| / (|y| + |y_pred|); do_metric_reduction('mean') first
    # averages each image over its non-NaN classes, then the images.
    # image A: class 0 2*1/(2+1) = 2/3, class 1 2*2/(3+3) = 2/3, classes 2, 3, 4 NaN
    # image B: class 0 2*3/(4+4) = 3/4, class 2 2*0/(1+0) = 0, classes 1, 3, 4 NaN
    r = report(counts, preset="monai")
    assert r.mdice == approx(((2 / 3 + 2 / 3) / 2 + (3 / 4 + 0) / 2) / 2)  # 25/48
    # reduction='mean_batch' is the per-class column: each class over its non-NaN images
    assert r.dice == approx([(2 / 3 + 3 / 4) / 2, 2 / 3, 0, nan, nan])
    # include_background=False drops channel 0: image A 2/3, image B 0
    assert report(counts, preset="monai", exclude=[0]).mdice == approx((2 / 3 + 0) / 2)
    # ignore_empty=False: 1 where truth and prediction are both empty, else the Dice
    # image A: [2/3, 2/3, 1, 0, 1]; image B: [3/4, 0, 0, 1, 1]
    r = report(counts, preset="monai", presence="truth_or_pred", empty=1)
    assert r.mdice == approx(((2 / 3 + 2 / 3 + 1 + 0 + 1) / 5 + (3 / 4 + 0 + 0 + 1 + 1) / 5) / 2)


def _post_iou_terms():
    # (tp + s) / (union + s) per image and class, the last class dropped; absent -> None
    return [
        [(1 + S) / (2 + S), (2 + S) / (4 + S), None, S / (1 + S)],
        [(3 + S) / (5 + S), S / (1 + S), S / (1 + S), None],
    ]


def _post_dice_terms():
    # 2 (tp + s) / (pred + true + s)
    return [
        [2 * (1 + S) / (3 + S), 2 * (2 + S) / (6 + S), None, 2 * S / (1 + S)],
        [2 * (3 + S) / (8 + S), 2 * S / (1 + S), 2 * S / (1 + S), None],
    ]


@pytest.mark.parametrize(
    ("metric", "terms"), [("iou", _post_iou_terms), ("dice", _post_dice_terms)]
)
def test_post_standard(counts, metric, terms):
    # The post's standard mean: each class over the images where it is present, then the
    # classes present somewhere; the last class (4) dropped.
    t = terms()
    per_class = [np.mean([row[c] for row in t if row[c] is not None]) for c in range(4)]
    r = report(counts, preset="post_standard")
    assert r.summary["m" + metric] == approx(np.mean(per_class))
    one_hot = np.eye(5)[TRUTH][:, None], np.eye(5)[PRED][:, None]  # B, W=1, H=5, N
    assert r.summary["m" + metric] == approx(float(metrics_np(*one_hot, metric, "standard")))
    assert r.post_means()[metric]["standard"] == approx(r.summary["m" + metric])


@pytest.mark.parametrize(
    ("metric", "terms", "absent"), [("iou", _post_iou_terms, 1.0), ("dice", _post_dice_terms, 2.0)]
)
def test_post_naive(counts, metric, terms, absent):
    # The naive mean takes every (image, class) value, an absent class scoring s / s = 1
    # (IoU) or 2 s / s = 2 (Dice: the post's quirk).
    values = [absent if v is None else v for row in terms() for v in row]
    r = report(counts, preset="post_naive")
    assert r.summary["m" + metric] == approx(sum(values) / 8)
    one_hot = np.eye(5)[TRUTH][:, None], np.eye(5)[PRED][:, None]
    assert r.summary["m" + metric] == approx(float(metrics_np(*one_hot, metric, "naive")))


def test_peer_presets_agree_on_the_default_convention():
    assert (
        PRESETS["mmseg"] == PRESETS["cityscapes"] == PRESETS["torchmetrics"] == PRESETS["dataset"]
    )


def test_post_means_use_the_kept_classes(counts):
    all_classes = report(counts).post_means()
    assert all_classes["iou"]["standard"] == approx(
        fastseg.metrics(TRUTH, PRED, "iou", drop_last=False, num_classes=5, spatial_dims=1)
    )
    assert all_classes["dice"]["naive"] == approx(
        fastseg.metrics(
            TRUTH, PRED, "dice", "naive", drop_last=False, num_classes=5, spatial_dims=1
        )
    )
    assert report(counts, exclude=["last"]).post_means()["iou"]["naive"] == approx(
        fastseg.metrics(TRUTH, PRED, "iou", "naive", drop_last=True, num_classes=5, spatial_dims=1)
    )


# ------------------------------------------------------------ independent references


@pytest.mark.parametrize("seed", range(4))
def test_dataset_metrics_match_sklearn_confusion_matrix(seed):
    rng = np.random.default_rng(seed)
    n = 6
    truth = rng.integers(0, n, (3, 16, 16))
    pred = np.where(rng.random(truth.shape) < 0.6, truth, rng.integers(0, n, truth.shape))
    truth[rng.random(truth.shape) < 0.1] = 255
    r = Report(fastseg.counts(truth, pred, num_classes=n, ignore_index=255))
    keep = truth != 255
    cm = confusion_matrix(truth[keep], pred[keep], labels=range(n))
    np.testing.assert_array_equal(r.confusion_matrix, cm)
    tp = np.diag(cm).astype(float)
    union = cm.sum(0) + cm.sum(1) - tp
    with np.errstate(invalid="ignore"):
        iou, recall = tp / union, tp / cm.sum(1)
    assert r.iou == approx(iou)
    assert r.miou == approx(np.nanmean(iou))
    assert r.recall == approx(recall)
    assert r.aacc == approx(accuracy_score(truth[keep], pred[keep]))
    assert r.ignored == int((~keep).sum())
    assert r.pixels == int(keep.sum())


def random_counts(rng, b, n, hard=True):
    draw = (lambda: rng.integers(0, 6, (b, n))) if hard else (lambda: rng.random((b, n)) * 5)
    tp = draw()
    return Counts(tp, tp + draw(), tp + draw())


@st.composite
def counts_and_permutation(draw):
    b, n = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    c = random_counts(rng, b, n)
    return c, rng.permutation(n), rng.permutation(b)


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-15)


POLICIES = [
    {},
    {"aggregation": "image"},
    {"aggregation": "sample", "presence": "truth"},
    {"empty": 1, "exclude": [0]},
    {"preset": "post_naive"},
]


@settings(max_examples=40, deadline=None)
@given(counts_and_permutation(), st.sampled_from(POLICIES))
def test_permuting_classes_permutes_the_table_and_keeps_the_means(data, policy):
    c, perm, _ = data
    permuted = Counts(c.tp[:, perm], c.pred[:, perm], c.true[:, perm])
    a_policy, b_policy = dict(policy), dict(policy)
    if "exclude" in policy or "preset" in policy:
        # exclude original class 0 in both: column j of `permuted` is class perm[j]
        a_policy["exclude"], b_policy["exclude"] = [0], [int(np.argsort(perm)[0])]
    a, b = Report(c, **a_policy), Report(permuted, **b_policy)
    for column in ("iou", "dice", "precision", "recall"):
        np.testing.assert_allclose(getattr(b, column), getattr(a, column)[perm], rtol=1e-12)
    assert all(_same(a.summary[k], b.summary[k]) for k in a.summary)


@settings(max_examples=40, deadline=None)
@given(counts_and_permutation(), st.sampled_from(POLICIES))
def test_image_order_does_not_change_the_report(data, policy):
    c, _, order = data
    a = Report(c, **policy)
    b = Report(Counts(c.tp[order], c.pred[order], c.true[order]), **policy)
    assert all(_same(a.summary[k], b.summary[k]) for k in a.summary)
    np.testing.assert_array_equal(b.per_image_values("iou"), a.per_image_values("iou")[order])
    if a.policy.aggregation == "dataset":  # exact integer sums: bit-identical
        for k, v in a.summary.items():
            assert v == b.summary[k] or (math.isnan(v) and math.isnan(b.summary[k]))


# ---------------------------------------------------------------- worst images


def test_worst_images_with_ids(counts):
    r = report(counts)
    # image means: A (1/2 + 1/2 + 0) / 3 = 1/3, B (3/5 + 0 + 0) / 3 = 1/5
    assert r.worst(1) == [ImageScore(1, "b.png", pytest.approx(1 / 5))]
    assert [w.id for w in r.worst(5)] == ["b.png", "a.png"]
    assert r.worst(2, by="dice")[0].score == approx((3 / 4 + 0 + 0) / 3)


def test_worst_leaves_out_images_without_a_present_class():
    c = Counts(np.array([[1, 0], [0, 0], [0, 0]]), np.array([[2, 0], [0, 0], [0, 1]]),
               np.array([[1, 0], [0, 0], [0, 0]]))  # fmt: skip
    r = Report(c, ids=["x", "empty", "fp"])
    assert [(w.position, w.id, w.score) for w in r.worst(3)] == [(2, "fp", 0.0), (0, "x", 0.5)]


def test_default_ids_are_positions(counts):
    assert Report(counts).ids == ("0", "1")
    assert Report(counts).worst(1)[0].id == "1"


# ------------------------------------------------------------------- bootstrap


def _bootstrap_data(aggregation="dataset"):
    rng = np.random.default_rng(7)
    return Report(random_counts(rng, 60, 5), aggregation=aggregation)


@pytest.mark.parametrize("aggregation", ["dataset", "image", "sample"])
@pytest.mark.parametrize("metric", ["miou", "mdice", "aacc", "macc", "fwiou"])
def test_bootstrap_matches_explicitly_resampled_images(aggregation, metric):
    r = _bootstrap_data(aggregation)
    samples = r.bootstrap(metric, n_boot=5, seed=3)
    _, weights = next(resample_weights(3, r.counts.n_images, 5))
    c = r.counts
    for k in range(5):
        rows = np.repeat(np.arange(c.n_images), weights[k])  # the resampled images
        again = Report(Counts(c.tp[rows], c.pred[rows], c.true[rows]), aggregation=aggregation)
        if aggregation == "dataset" or metric not in ("miou", "mdice"):
            assert samples[k] == again.summary[metric]  # exact integer sums
        else:
            assert samples[k] == approx(again.summary[metric])


def test_resample_weights_blocks_and_sums():
    blocks = list(resample_weights(0, 7, 2 * BOOT_BLOCK + 3))
    assert [start for start, _ in blocks] == [0, BOOT_BLOCK, 2 * BOOT_BLOCK]
    assert [len(w) for _, w in blocks] == [BOOT_BLOCK, BOOT_BLOCK, 3]
    assert all((w.sum(axis=1) == 7).all() and w.min() >= 0 for _, w in blocks)


def test_confidence_interval_contains_estimate_and_is_reproducible():
    r = _bootstrap_data()
    ci = r.confidence_interval("mIoU", level=0.9, n_boot=300, seed=1)
    assert ci.low < ci.estimate < ci.high
    assert ci.estimate == r.miou
    assert (ci.level, ci.n_boot) == (0.9, 300)
    assert r.confidence_interval("miou", level=0.9, n_boot=300, seed=1) == ci
    other = r.confidence_interval("miou", level=0.9, n_boot=300, seed=2)
    assert (other.low, other.high) != (ci.low, ci.high)
    wider = r.confidence_interval("miou", level=0.99, n_boot=300, seed=1)
    assert wider.low <= ci.low
    assert wider.high >= ci.high
    samples = r.bootstrap("miou", n_boot=300, seed=1)
    assert ci.low == approx(np.quantile(samples, 0.05))
    assert ci.high == approx(np.quantile(samples, 0.95))


@pytest.mark.parametrize("aggregation", ["image", "sample"])
def test_confidence_interval_per_image_aggregations(aggregation):
    ci = _bootstrap_data(aggregation).confidence_interval("mdice", n_boot=200)
    assert ci.low < ci.estimate < ci.high


def test_bootstrap_rejects_bad_arguments(counts):
    r = report(counts)
    with pytest.raises(ValueError, match="metric must be one of"):
        r.bootstrap("f1")
    with pytest.raises(ValueError, match="n_boot must be >= 1"):
        r.bootstrap(n_boot=0)
    with pytest.raises(ValueError, match=r"level must be in \(0, 1\)"):
        r.confidence_interval(level=95)
    empty = Counts(np.zeros((0, 2), int), np.zeros((0, 2), int), np.zeros((0, 2), int))
    with pytest.raises(ValueError, match="at least one image"):
        Report(empty).bootstrap()


# -------------------------------------------------------------- per_image=False


def test_totals_only_report_gives_the_dataset_metrics(counts):
    totals = Report(counts.total(), per_image=False, meta={"n_images": 2})
    assert totals.summary == report(counts).summary
    assert totals.n_images == 2
    assert Report(counts.total(), per_image=False).n_images is None
    d = totals.to_dict()
    assert (d["images"], d["post_means"], d["per_image"]) == (None, None, False)
    assert "2 images" in str(totals)


@pytest.mark.parametrize(
    "call",
    [
        lambda r: r.worst(1),
        lambda r: r.confidence_interval(),
        lambda r: r.per_image_values("iou"),
        lambda r: r.post_means(),
    ],
)
def test_totals_only_report_refuses_per_image_things(counts, call):
    r = Report(counts.total(), per_image=False)
    with pytest.raises(ValueError, match="accumulator was made with per_image=False"):
        call(r)


@pytest.mark.parametrize("kwargs", [{"aggregation": "image"}, {"preset": "monai"}, {"ids": ["x"]}])
def test_totals_only_report_refuses_per_image_policies(counts, kwargs):
    with pytest.raises(ValueError, match="accumulator was made with per_image=False"):
        Report(counts.total(), per_image=False, **kwargs)


def test_totals_only_report_needs_one_row(counts):
    with pytest.raises(ValueError, match="one row of data-set totals; got 2 rows"):
        Report(counts, per_image=False)


# ----------------------------------------------------------------- soft counts


def test_soft_counts_have_no_confusion_matrix_but_every_metric():
    tp = np.array([[0.5, 1.5], [1.0, 0.0]])
    pred = np.array([[1.0, 2.0], [1.0, 0.5]])
    true = np.array([[1.0, 2.0], [1.5, 0.0]])
    r = Report(Counts(tp, pred, true))
    assert r.confusion_matrix is None
    # totals tp [1.5, 1.5], pred [2, 2.5], true [2.5, 2]; union [3, 3]
    assert r.iou == approx([1.5 / 3, 1.5 / 3])
    assert r.aacc == approx(3 / 4.5)
    assert r.pixels == approx(4.5)
    d = r.to_dict()
    assert (d["kind"], d["confusion_matrix"]) == ("soft", None)
    assert d["classes"][0]["support"] == 2.5
    assert set(r.post_means()["iou"]) == {"soft"}
    assert "2.5" in str(r)


# --------------------------------------------------------------------- outputs


def test_to_dict_is_json_safe_and_complete(counts):
    r = report(counts, preset="mmseg", meta={"source": "val.zarr"})
    d = r.to_dict()
    json.dumps(d, allow_nan=False)  # raises on NaN
    assert d["format"] == "fastseg.report"
    assert d["fastseg_version"] == fastseg.__version__
    assert d["complete"] is True
    assert d["preset"] == "mmseg"
    assert d["policy"] == {"aggregation": "dataset", "empty": "nan", "presence": "truth_or_pred",
                           "exclude": [], "smooth": 0.0, "excluded": []}  # fmt: skip
    assert d["class_names"] == NAMES
    assert (d["num_classes"], d["n_images"], d["pixels"], d["ignored"]) == (5, 2, 10, 0)
    assert d["summary"]["miou"] == approx(17 / 70)
    assert d["classes"][4] == {"index": 4, "name": "sky", "excluded": False, "iou": None,
                               "dice": None, "precision": None, "recall": None, "support": 0,
                               "predicted": 0}  # fmt: skip
    assert d["classes"][0]["iou"] == approx(4 / 7)
    assert d["confusion_matrix"][0] == [4, 2, 0, 0, 0]
    assert d["images"]["ids"] == IDS
    assert d["images"]["miou"] == approx([1 / 3, 1 / 5])
    assert d["meta"] == {"source": "val.zarr"}


def test_incomplete_report_says_so(counts):
    r = report(counts, meta={"skipped": ["chunk 3", "chunk 7"]})
    assert r.complete is False
    assert r.to_dict()["complete"] is False
    assert str(r).splitlines()[0] == "INCOMPLETE: 2 skipped: ['chunk 3', 'chunk 7'] (see meta)"
    assert "INCOMPLETE" in repr(r)
    assert report(counts, meta={"complete": False}).complete is False
    assert report(counts, meta={"skipped": []}).complete is True


def test_meta_is_copied_and_must_be_json_safe(counts):
    meta = {"skipped": [], "paths": ["a"]}
    r = report(counts, meta=meta)
    meta["paths"].append("b")
    assert r.meta == {"skipped": [], "paths": ["a"]}
    assert report(counts, meta={"x": float("nan")}).meta == {"x": None}
    with pytest.raises(TypeError, match="meta must hold JSON-safe values"):
        report(counts, meta={"x": object()})
    with pytest.raises(TypeError, match="meta must be a mapping"):
        report(counts, meta=["x"])


def test_json_round_trip(counts, tmp_path):
    r = report(counts, exclude=["last"], meta={"skipped": ["c1"]})
    path = r.to_json(tmp_path / "report.json")
    text = path.read_text()

    def no_constants(name):
        raise ValueError(f"non-standard JSON constant {name}")

    assert json.loads(text, parse_constant=no_constants) == r.to_dict()
    assert json.loads(text)["policy"]["excluded"] == [4]
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]  # no temporary left


def test_csv_one_row_per_class(counts, tmp_path):
    path = report(counts, exclude=[0]).to_csv(tmp_path / "classes.csv")
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    # the class columns first (as before summary rows were added), then kind, classes, value
    assert list(rows[0]) == ["index", "name", "excluded", "iou", "dice", "precision", "recall",
                             "support", "predicted", "kind", "classes", "value"]  # fmt: skip
    rows = [r for r in rows if r["kind"] == "class"]
    assert [r["name"] for r in rows] == NAMES
    assert [r["excluded"] for r in rows] == ["True", "False", "False", "False", "False"]
    assert float(rows[0]["iou"]) == 4 / 7  # full precision
    assert float(rows[1]["dice"]) == 4 / 7
    assert rows[4]["iou"] == rows[2]["precision"] == ""  # NaN
    assert [int(r["support"]) for r in rows] == [6, 3, 1, 0, 0]


def test_text_table_is_aligned(counts):
    text = str(report(counts, preset="cityscapes", exclude=[0]))
    lines = text.splitlines()
    assert lines[0] == ("fastseg report: 5 classes, 2 images, 10 pixels counted, 0 ignored "
                        "(hard counts)")  # fmt: skip
    assert lines[1].startswith("preset cityscapes (Cityscapes evalPixelLevelSemanticLabeling")
    assert "exclude=0" in lines[1]
    header = lines.index(next(line for line in lines if line.startswith("#")))
    table = lines[header : header + 7]  # header, rule, five classes
    assert len({len(line) for line in table}) == 1  # right-aligned last column
    assert table[2].split() == ["0*", "background", "0.5714", "0.7273", "0.8000", "0.6667", "6",
                                "5"]  # fmt: skip
    assert table[6].split()[:3] == ["4", "sky", "nan"]
    assert "* excluded from the means" in lines
    assert lines[-1] == "mIoU 0.1333  mDice 0.1905  aAcc 0.6000  mAcc 0.3333  fwIoU 0.3000"


def test_report_is_picklable(counts):
    r = report(counts, preset="monai")
    again = pickle.loads(pickle.dumps(r))
    assert again.summary == r.summary
    assert again.ids == r.ids


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"ids": ["a"]}, ValueError, "ids has 1 entries for 2 images"),
        ({"class_names": ["a"]}, ValueError, "class_names has 1 entries for 5 classes"),
        ({"preset": "voc"}, ValueError, "unknown preset 'voc'"),
        ({"exclude": [7]}, ValueError, "exclude: class 7 is out of range for 5 classes"),
        ({"empty": 2}, ValueError, "empty must be 'nan', 0 or 1"),
    ],
)
def test_bad_arguments(counts, kwargs, error, message):
    with pytest.raises(error, match=message):
        Report(counts, **kwargs)


def test_counts_must_be_counts():
    with pytest.raises(TypeError, match=r"counts must be a fastseg\.Counts; got ndarray"):
        Report(np.zeros((2, 3)))  # type: ignore[arg-type]


# ------------------------------------------------------------------------ plot


def _png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_plot_writes_a_png(counts, tmp_path):
    import matplotlib

    matplotlib.use("Agg")  # no display in tests; Report.plot itself never uses pyplot
    path = report(counts).plot(tmp_path / "report.png", dpi=50)
    width, height = _png_size(path)
    assert width > height > 100
    assert [p.name for p in tmp_path.iterdir()] == ["report.png"]


def test_plot_scales_to_150_classes(tmp_path):
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 150, (2, 64, 64))
    pred = np.where(rng.random(truth.shape) < 0.5, truth, rng.integers(0, 150, truth.shape))
    r = Report(fastseg.counts(truth, pred, num_classes=150))
    _, height = _png_size(r.plot(tmp_path / "ade.png", dpi=50))
    # 0.13 inch per class: 150 rows of at least 6 pixels at 50 dpi
    assert height >= 150 * 6


def test_plot_soft_counts_draws_only_bars(tmp_path):
    tp = np.array([[0.5, 1.5]])
    r = Report(Counts(tp, tp + 1, tp + 1))
    width, _ = _png_size(r.plot(tmp_path / "soft.png", dpi=50))
    assert width < _png_size(report_plot_hard(tmp_path))[0]


def report_plot_hard(tmp_path):
    tp = np.array([[1, 1]])
    c = Counts(tp, tp + 1, tp + 1, np.array([[1, 1], [1, 1]]))
    return Report(c).plot(tmp_path / "hard.png", dpi=50)


def test_plot_without_matplotlib_names_the_extra(counts, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # import fails
    with pytest.raises(ImportError, match=r"pip install 'fastseg\[plot\]'"):
        report(counts).plot(tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_exclusions_by_class_name_in_a_report_and_an_accumulator():
    names = ["road", "car", "sky"]
    truth = np.array([[[0, 1], [2, 2]]])
    acc = fastseg.Accumulator(3, class_names=names).update(truth, truth)
    report = acc.compute(exclude=["road"])
    assert report.kept.tolist() == [False, True, True]
    assert Report(acc.counts, class_names=names, exclude=["sky", "last"]).kept.tolist() == [
        True, True, False]  # fmt: skip


# ------------------------------------------------------------- class groups (by hand)

# Groups of the worked example, from its confusion matrix (rows truth, columns pred):
# [0,0]=4 [0,1]=2 [1,1]=2 [1,3]=1 [2,0]=1.
#   a = {0, 1}:           tp 4+2+2 = 8, pred col0+col1 = 5+4 = 9, true row0+row1 = 6+3 = 9
#   b = {2, 3}:           tp 0, pred 0+1 = 1, true 1+0 = 1
#   c = {1, 2, 3} (overlaps a and b): tp [1,1]+[1,3] = 3, pred 4+0+1 = 5, true 3+1+0 = 4
#   d = {4}:              nothing: IoU NaN, left out of the means
GROUPS = {"a": [0, 1], "b": [2, 3], "c": ["road", "car", "tree"], "d": [-1]}


def test_groups_by_hand(counts):
    g = report(counts, groups=GROUPS).groups
    assert g.names == ("a", "b", "c", "d")
    assert g.classes == ((0, 1), (2, 3), (1, 2, 3), (4,))
    assert (g.tp.tolist(), g.pred.tolist(), g.true.tolist()) == (
        [8, 0, 3, 0], [9, 1, 5, 0], [9, 1, 4, 0])  # fmt: skip
    assert g.iou == approx([8 / 10, 0, 3 / 6, nan])
    assert g.dice == approx([16 / 18, 0, 6 / 9, nan])
    assert g.precision == approx([8 / 9, 0, 3 / 5, nan])
    assert g.recall == approx([8 / 9, 0, 3 / 4, nan])
    assert g.summary == approx({"miou": (0.8 + 0.5) / 3, "mdice": (16 / 18 + 6 / 9) / 3,
                                "mprecision": (8 / 9 + 3 / 5) / 3,
                                "mrecall": (8 / 9 + 3 / 4) / 3})  # fmt: skip
    assert report(counts).groups is None


def test_groups_equal_relabelling_then_counting():
    rng = np.random.default_rng(7)
    truth = rng.integers(0, 7, (4, 9, 11))
    truth[0, :2] = 255
    pred = rng.integers(0, 6, truth.shape)
    groups = {"wt": [1, 2, 3], "tc": [2, 3], "et": [3], "bg+5": [0, 5], "six": [6]}
    r = Report(fastseg.counts(truth, pred, num_classes=7, ignore_index=255), groups=groups)
    keep = truth != 255
    for k, members in enumerate(groups.values()):
        t = np.isin(truth, members)[keep].astype(int)  # re-labelled: in the group or not
        p = np.isin(pred, members)[keep].astype(int)
        c = fastseg.counts(t[None, None], p[None, None], num_classes=2)
        assert [r.groups.tp[k], r.groups.pred[k], r.groups.true[k]] == [
            c.tp[0, 1], c.pred[0, 1], c.true[0, 1]]  # fmt: skip
        assert r.groups.iou[k] == approx(Report(c).iou[1])
        assert r.groups.dice[k] == approx(Report(c).dice[1])


def test_groups_errors(counts):
    soft = fastseg.counts(TRUTH, np.eye(5)[PRED].astype(np.float32), soft=True, spatial_dims=1)
    with pytest.raises(ValueError, match="soft counts have none"):
        Report(soft, groups={"a": [0]})
    with pytest.raises(ValueError, match="unknown class 'cat'"):
        report(counts, groups={"a": ["cat"]})
    with pytest.raises(ValueError, match="out of range"):
        report(counts, groups={"a": [5]})
    with pytest.raises(ValueError, match="has no class"):
        report(counts, groups={"a": []})
    with pytest.raises(TypeError, match="must be a list of classes"):
        report(counts, groups={"a": 3})


def test_groups_in_dict_table_and_accumulator(counts):
    r = report(counts, groups=GROUPS)
    d = r.to_dict()
    assert [g["name"] for g in d["groups"]] == ["a", "b", "c", "d"]
    assert d["groups"][2] == {"index": 2, "name": "c", "classes": [1, 2, 3], "iou": 0.5,
                              "dice": 6 / 9, "precision": 0.6, "recall": 0.75, "support": 4,
                              "predicted": 5}  # fmt: skip
    assert d["groups"][3]["iou"] is None
    assert d["group_summary"]["miou"] == approx(1.3 / 3)
    assert report(counts).to_dict()["groups"] is None
    text = str(r)
    assert "groups (from the summed confusion matrix): mIoU 0.4333" in text
    assert any(line.startswith("2  c ") and "1,2,3" in line for line in text.splitlines())
    acc = fastseg.Accumulator(5, class_names=NAMES, groups=GROUPS, spatial_dims=1)
    acc.update(TRUTH, PRED)
    assert acc.compute().groups.tp.tolist() == [8, 0, 3, 0]
    assert acc.compute(groups={"x": [0]}).groups.names == ("x",)


# ------------------------------------------------------------- per-case (nnU-Net) layout

# Per image (default policy), with P = 5 pixels per image, TN = P - TP - FP - FN:
#   A: class 0 TP 1 FP 0 FN 1 TN 3 (IoU 1/2, Dice 2/3); class 1 TP 2 FP 1 FN 1 TN 1
#      (IoU 2/4, Dice 4/6); class 2 empty (NaN, TN 5); class 3 TP 0 FP 1 (IoU 0); 4 empty
#   B: class 0 TP 3 FP 1 FN 1 TN 0 (IoU 3/5, Dice 6/8); class 1 FP 1 (0); class 2 FN 1 (0);
#      classes 3, 4 empty


def test_per_case_by_hand(counts):
    d = report(counts).per_case()
    assert [c["id"] for c in d["metric_per_case"]] == IDS
    a, b = (c["metrics"] for c in d["metric_per_case"])
    assert list(a) == ["0", "1", "2", "3", "4"]
    assert list(a["0"]) == ["Dice", "IoU", "FP", "TP", "FN", "TN", "n_pred", "n_ref"]
    assert a["0"] == {"Dice": 2 / 3, "IoU": 0.5, "FP": 0, "TP": 1, "FN": 1, "TN": 3,
                      "n_pred": 1, "n_ref": 2}  # fmt: skip
    assert a["1"] == {"Dice": 4 / 6, "IoU": 0.5, "FP": 1, "TP": 2, "FN": 1, "TN": 1,
                      "n_pred": 3, "n_ref": 3}  # fmt: skip
    assert math.isnan(a["2"]["Dice"])
    assert a["2"]["TN"] == 5
    assert (a["3"]["IoU"], a["3"]["FP"], a["3"]["TN"]) == (0, 1, 4)
    assert b["0"] == {"Dice": 6 / 8, "IoU": 3 / 5, "FP": 1, "TP": 3, "FN": 1, "TN": 0,
                      "n_pred": 4, "n_ref": 4}  # fmt: skip
    assert (b["2"]["Dice"], b["2"]["FN"], b["2"]["TN"]) == (0, 1, 4)
    assert all(isinstance(v, int) for v in (a["0"]["TP"], b["3"]["TN"]))
    mean = d["mean"]
    assert mean["0"]["Dice"] == approx((2 / 3 + 3 / 4) / 2)  # np.nanmean over the images
    assert mean["1"]["Dice"] == approx(1 / 3)
    assert mean["2"]["Dice"] == 0
    assert mean["3"]["Dice"] == 0
    assert math.isnan(mean["4"]["Dice"])
    assert mean["0"]["FP"] == 0.5
    assert mean["2"]["TN"] == 4.5
    # nnU-Net's foreground mean: np.mean over the classes but 0, so class 4 makes it NaN
    assert math.isnan(d["foreground_mean"]["Dice"])
    assert d["foreground_mean"]["FP"] == approx((1 + 0.5 + 0 + 0) / 4)
    fg = report(counts, exclude=[4]).per_case()["foreground_mean"]
    assert fg["Dice"] == approx((1 / 3 + 0 + 0) / 3)
    assert d["class_names"] == dict(zip("01234", NAMES, strict=True))
    assert d["format"] == "fastseg.per_case"
    assert d["complete"] is True


def test_per_case_needs_images(counts):
    with pytest.raises(ValueError, match="per-case layout needs per-image counts"):
        Report(counts.total(), per_image=False).per_case()


# ------------------------------------------------------------- the Cityscapes layout


def test_cityscapes_layout_generic(counts):
    r = report(counts, groups={"things": ["car", "tree"], "stuff": [0, 1]})
    d = r.cityscapes()
    assert set(d) == {"confMatrix", "priors", "labels", "classScores", "classInstScores",
                      "categoryScores", "categoryInstScores", "averageScoreClasses",
                      "averageScoreInstClasses", "averageScoreCategories",
                      "averageScoreInstCategories"}  # fmt: skip
    assert d["labels"] == {name: k for k, name in enumerate(NAMES)}
    assert d["confMatrix"] == counts.confusion.tolist()
    assert d["priors"] == approx(dict(zip(NAMES, [0.6, 0.3, 0.1, 0, 0], strict=True)))
    assert d["classScores"] == approx(dict(zip(NAMES, [4 / 7, 2 / 5, 0, 0, nan], strict=True)))
    assert d["averageScoreClasses"] == approx((4 / 7 + 2 / 5) / 4)
    # things {2, 3}: tp 0, pred 1, true 1 -> 0; stuff {0, 1}: 8 / 10
    assert d["categoryScores"] == approx({"things": 0.0, "stuff": 0.8})
    assert d["averageScoreCategories"] == approx(0.4)
    assert all(math.isnan(v) for v in d["classInstScores"].values())
    assert math.isnan(d["averageScoreInstCategories"])
    with pytest.raises(ValueError, match="hard counts"):
        Report(fastseg.counts(TRUTH, np.eye(5)[PRED], soft=True, spatial_dims=1)).cityscapes()


def test_cityscapes_layout_in_label_ids():
    from fastseg.dataset_presets import dataset_preset

    p = dataset_preset("cityscapes")
    rng = np.random.default_rng(8)
    truth = rng.integers(0, 19, (2, 8, 8))
    truth[0, 0] = 255
    pred = rng.integers(0, 19, truth.shape)
    r = Report(fastseg.counts(truth, pred, num_classes=19, ignore_index=255),
               class_names=p.class_names)  # fmt: skip
    d = r.cityscapes()
    assert len(d["classScores"]) == 34
    assert len(d["categoryScores"]) == 8
    assert d["labels"]["road"] == 7
    assert d["labels"]["unlabeled"] == 0
    assert d["classScores"]["road"] == approx(r.iou[0])
    assert math.isnan(d["classScores"]["parking"])
    assert math.isnan(d["categoryScores"]["void"])
    assert math.isnan(d["priors"]["unlabeled"])
    matrix = np.array(d["confMatrix"])
    assert matrix.shape == (34, 34)
    assert matrix[7, 7] == r.confusion_matrix[0, 0]
    assert matrix.sum() == r.confusion_matrix.sum()
    assert d["priors"]["road"] == approx(r.support[0] / (r.pixels + r.ignored))
    assert d["averageScoreClasses"] == approx(r.miou)


# ------------------------------------------------------------- files: round trips


def _nan_text(obj):
    return json.dumps(obj, sort_keys=True)


def test_json_layouts_round_trip(counts, tmp_path):
    r = report(counts, groups=GROUPS)
    strict = json.loads(r.to_json(tmp_path / "r.json").read_text())
    assert strict == r.to_dict()
    for layout, made in (("per-case", r.per_case()), ("cityscapes", r.cityscapes())):
        text = r.to_json(tmp_path / f"{layout}.json", layout).read_text()
        assert "NaN" in text  # as nnU-Net and the Cityscapes evaluator write it
        assert _nan_text(json.loads(text)) == _nan_text(made)
    assert r.to_json(tmp_path / "c.json", "cityscapes").read_text().startswith(
        '{\n    "averageScoreCategories"')  # keys sorted, indent 4: the official writer's
    with pytest.raises(ValueError, match="layout must be one of"):
        r.to_json(tmp_path / "x.json", "xml")


def test_csv_summary_and_group_rows_round_trip(counts, tmp_path):
    r = report(counts, exclude=[0], groups=GROUPS)
    with r.to_csv(tmp_path / "r.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    kinds = [row["kind"] for row in rows]
    assert kinds == ["class"] * 5 + ["group"] * 4 + ["summary"] * 5 + ["group_summary"] * 4

    def number(text):
        return nan if text == "" else float(text)

    classes = [row for row in rows if row["kind"] == "class"]
    for row, expected in zip(classes, r.class_rows(), strict=True):
        assert row["name"] == expected["name"]
        assert row["excluded"] == str(expected["excluded"])
        for col in ("iou", "dice", "precision", "recall", "support", "predicted"):
            assert number(row[col]) == approx(expected[col])
        assert row["value"] == row["classes"] == ""
    groups = [row for row in rows if row["kind"] == "group"]
    assert [row["classes"] for row in groups] == ["0 1", "2 3", "1 2 3", "4"]
    for row, expected in zip(groups, r.groups.rows(), strict=True):
        assert int(row["index"]) == expected["index"]
        assert row["name"] == expected["name"]
        for col in ("iou", "dice", "precision", "recall", "support", "predicted"):
            assert number(row[col]) == approx(expected[col])
    summary = {row["name"]: number(row["value"]) for row in rows if row["kind"] == "summary"}
    assert summary == approx(r.summary)
    group_summary = {row["name"]: number(row["value"]) for row in rows
                     if row["kind"] == "group_summary"}  # fmt: skip
    assert group_summary == approx(r.groups.summary)
    plain = report(counts).to_csv(tmp_path / "p.csv").read_text().splitlines()
    assert len(plain) == 1 + 5 + 5  # header, classes, summaries (no group rows)

"""Metric formulas from counts: pure NumPy, plain arrays in, arrays out.

Every number fastseg reports is computed here, from three arrays of counts of one shape,
rows (images, the data-set totals, or bootstrap resamples) by classes:

* ``tp``: the intersection ``I``, pixels of the class in truth and prediction;
* ``pred``: pixels predicted as the class; ``true``: truth pixels of the class (for soft
  counts, all three are sums of probabilities instead of pixel counts);
* ``S = pred + true`` (the mask sum) and ``U = S - I`` (the union).

A policy's choices arrive as plain arguments (``smooth``, ``presence``, ``empty``, the
``kept`` classes, the ``aggregation``), so nothing here knows a ``Counts``, a ``Policy`` or
a ``Report``. Sections:

* ratios and means without NumPy's warnings: :func:`ratio`, :func:`nanmean`;
* per-class values: :func:`iou`, :func:`dice`, :func:`precision`, :func:`recall`;
* the policy's rules and the data-set summaries: :func:`present`, :func:`metric_values`,
  :func:`class_mean`, :func:`pixel_accuracy`, :func:`mean_accuracy`,
  :func:`frequency_weighted_iou`, :func:`totals_summary`;
* means over images under weights (the ``'image'`` and ``'sample'`` aggregations, and
  their bootstrap): :func:`nan_masked`, :func:`weighted_nanmeans`,
  :func:`image_class_means`, :func:`image_mean`, :func:`prepare_image_aggregation`,
  :func:`image_aggregation_mean`;
* the post's smoothed per-image means (the post-compatible API): :func:`post_mean`;
* class groups (Cityscapes' categories, nnU-Net's regions) from the confusion matrix:
  :func:`group_counts`, :func:`group_values`;
* the per-case counts of nnU-Net's summary: :func:`case_counts`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal, TypedDict, get_args

import numpy as np
import numpy.typing as npt

#: An array of float64 values.
Floats = npt.NDArray[np.float64]

#: The per-class metrics that have a policy (presence, empty value, smoothing).
Metric = Literal["iou", "dice"]
#: When a class is present in a row: union not empty, truth not empty, or always.
Presence = Literal["truth_or_pred", "truth", "all"]
#: The means over images: per class first (``'image'``) or per image first (``'sample'``).
ImageAggregation = Literal["image", "sample"]
#: The data-set summaries, in display order.
Summary = Literal["miou", "mdice", "aacc", "macc", "fwiou"]
#: The post's ``metric_type``.
PostMetricType = Literal["standard", "soft", "naive"]

METRICS: tuple[Metric, ...] = get_args(Metric)
PRESENCES: tuple[Presence, ...] = get_args(Presence)
SUMMARIES: tuple[Summary, ...] = get_args(Summary)
POST_METRIC_TYPES: tuple[PostMetricType, ...] = get_args(PostMetricType)

#: The post's smoothing, in pixels.
POST_SMOOTH = 0.001


class ValueRules(TypedDict):
    """A policy's rules for IoU and Dice, as keywords of :func:`metric_values`."""

    smooth: float
    presence: Presence
    empty: float


# ------------------------------------------------------------------ ratios and means


def ratio(num: npt.ArrayLike, den: npt.ArrayLike) -> Floats:
    """``num / den`` in float64, NaN where ``den == 0``, without a warning.

    Parameters
    ----------
    num, den : array_like
        Broadcast against each other.

    Returns
    -------
    ndarray of float64
    """
    num, den = np.broadcast_arrays(np.asarray(num, np.float64), np.asarray(den, np.float64))
    out = np.full(num.shape, np.nan)
    np.divide(num, den, out=out, where=den != 0)
    return out


def nanmean(values: npt.ArrayLike, axis: int) -> Floats:
    """Mean over `axis` of the non-NaN values; NaN where there is none (no warning).

    Parameters
    ----------
    values : array_like
    axis : int

    Returns
    -------
    ndarray of float64
        `values`' shape without `axis`.

    Notes
    -----
    The values are added one slice at a time along `axis`, in index order: NumPy's
    pairwise ``sum`` groups the terms of a row differently depending on how many rows
    are reduced together, so a bootstrap block and a single report would disagree in
    the last bits.
    """
    moved = np.moveaxis(np.asarray(values, np.float64), axis, 0)
    total = np.zeros(moved.shape[1:])
    count = np.zeros(moved.shape[1:])
    for v in moved:
        valid = ~np.isnan(v)
        total += np.where(valid, v, 0.0)
        count += valid
    return ratio(total, count)


# ------------------------------------------------------------------ per-class values


def iou(tp: npt.ArrayLike, pred: npt.ArrayLike, true: npt.ArrayLike, smooth: float = 0.0) -> Floats:
    """IoU (Jaccard) per row and class, NaN where ``0 / 0``.

    Parameters
    ----------
    tp, pred, true : array_like
        Counts of one shape (any number of dimensions).
    smooth : float, default 0
        ``s`` below (the post: :data:`POST_SMOOTH`).

    Returns
    -------
    ndarray of float64
        The counts' shape.

    Notes
    -----
    With ``I = tp``, ``S = pred + true`` and ``U = S - I``::

        IoU = (I + s) / (U + s)
    """
    intersection = np.asarray(tp, np.float64)
    mask_sum = np.asarray(pred, np.float64) + np.asarray(true, np.float64)
    return ratio(intersection + smooth, mask_sum - intersection + smooth)


def dice(
    tp: npt.ArrayLike, pred: npt.ArrayLike, true: npt.ArrayLike, smooth: float = 0.0
) -> Floats:
    """Dice (F1) per row and class, NaN where ``0 / 0``.

    Parameters
    ----------
    tp, pred, true : array_like
        Counts of one shape (any number of dimensions).
    smooth : float, default 0
        ``s`` below (the post: :data:`POST_SMOOTH`).

    Returns
    -------
    ndarray of float64
        The counts' shape.

    Notes
    -----
    With ``I = tp`` and ``S = pred + true``::

        Dice = 2 (I + s) / (S + s)

    So ``Dice = 2 IoU / (1 + IoU)`` without smoothing, and an empty class smoothed scores
    ``2 s / s = 2`` (the post's quirk).
    """
    intersection = np.asarray(tp, np.float64)
    mask_sum = np.asarray(pred, np.float64) + np.asarray(true, np.float64)
    return ratio(2.0 * (intersection + smooth), mask_sum + smooth)


def precision(tp: npt.ArrayLike, pred: npt.ArrayLike) -> Floats:
    """Precision per row and class, NaN where nothing is predicted.

    Parameters
    ----------
    tp, pred : array_like

    Returns
    -------
    ndarray of float64

    Notes
    -----
    ::

        precision = tp / pred
    """
    return ratio(tp, pred)


def recall(tp: npt.ArrayLike, true: npt.ArrayLike) -> Floats:
    """Recall (class accuracy, mmsegmentation's ``Acc``) per row and class, NaN without truth.

    Parameters
    ----------
    tp, true : array_like

    Returns
    -------
    ndarray of float64

    Notes
    -----
    ::

        recall = tp / true
    """
    return ratio(tp, true)


# ------------------------------------------------------- the policy's rules, summaries


def present(
    tp: npt.ArrayLike, pred: npt.ArrayLike, true: npt.ArrayLike, presence: Presence
) -> npt.NDArray[np.bool_]:
    """Where each class is present in each row, by the `presence` rule.

    Parameters
    ----------
    tp, pred, true : array_like
        Counts of one shape.
    presence : {'truth_or_pred', 'truth', 'all'}

    Returns
    -------
    ndarray of bool
        The counts' shape.

    Notes
    -----
    ::

        truth_or_pred:  U > 0      (U = pred + true - tp)
        truth:          true > 0   (a class only predicted is not present)
        all:            always     (the post's naive mean)
    """
    if presence == "truth":
        return np.asarray(true) > 0
    if presence == "all":
        return np.ones(np.shape(tp), bool)
    return (np.asarray(pred) + np.asarray(true) - np.asarray(tp)) > 0


def metric_values(
    metric: Metric,
    tp: npt.ArrayLike,
    pred: npt.ArrayLike,
    true: npt.ArrayLike,
    *,
    smooth: float = 0.0,
    presence: Presence = "truth_or_pred",
    empty: float = math.nan,
) -> Floats:
    """IoU or Dice per row and class under a policy's smoothing, presence and empty value.

    Parameters
    ----------
    metric : {'iou', 'dice'}
    tp, pred, true : array_like
        Counts of one shape: rows (images or data-set totals) by classes.
    smooth : float, default 0
    presence : {'truth_or_pred', 'truth', 'all'}, default 'truth_or_pred'
        See :func:`present`.
    empty : float, default NaN
        The value of a class that is not present in a row (NaN, 0 or 1).

    Returns
    -------
    ndarray of float64
        The counts' shape.

    Raises
    ------
    ValueError
        An unknown `metric`.

    Notes
    -----
    ``iou`` (:func:`iou`) or ``dice`` (:func:`dice`) with smoothing `smooth`, replaced by
    `empty` where the class is not present in the row (:func:`present`); ``0 / 0`` is NaN.
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}; got {metric!r}")
    values = (iou if metric == "iou" else dice)(tp, pred, true, smooth)
    return np.where(present(tp, pred, true, presence), values, empty)


def class_mean(values: npt.ArrayLike, kept: npt.ArrayLike) -> Floats:
    """Mean of each row's values over the kept classes, NaN left out.

    Parameters
    ----------
    values : array_like, shape (R, N)
    kept : array_like of bool, shape (N,)
        The classes that enter the mean.

    Returns
    -------
    ndarray of float64, shape (R,)
        NaN where no kept class has a value.

    Notes
    -----
    With ``K`` the kept classes and ``mean`` over the non-NaN values::

        m[r] = mean_{c in K} values[r, c]

    On the data-set totals this is mIoU / mDice; on per-image values, each image's mean.
    """
    return nanmean(np.asarray(values, np.float64)[:, np.asarray(kept, bool)], axis=1)


def pixel_accuracy(tp: npt.ArrayLike, true: npt.ArrayLike) -> Floats:
    """aAcc: the fraction of truth pixels predicted right, per row, over every class.

    Parameters
    ----------
    tp, true : array_like, shape (R, N)

    Returns
    -------
    ndarray of float64, shape (R,)

    Notes
    -----
    ::

        aAcc = sum_c tp_c / sum_c true_c

    For hard counts, ``trace(confusion) / sum(confusion)``; classes are never excluded.
    """
    return ratio(np.asarray(tp, np.float64).sum(axis=1), np.asarray(true, np.float64).sum(axis=1))


def mean_accuracy(tp: npt.ArrayLike, true: npt.ArrayLike, kept: npt.ArrayLike) -> Floats:
    """mAcc: the mean recall of the kept classes, per row.

    Parameters
    ----------
    tp, true : array_like, shape (R, N)
    kept : array_like of bool, shape (N,)

    Returns
    -------
    ndarray of float64, shape (R,)

    Notes
    -----
    ::

        mAcc = mean_{c in K} tp_c / true_c      (a class without truth is NaN, left out)
    """
    return class_mean(recall(tp, true), kept)


def frequency_weighted_iou(
    tp: npt.ArrayLike, pred: npt.ArrayLike, true: npt.ArrayLike, kept: npt.ArrayLike
) -> Floats:
    """fwIoU: IoU of the kept classes weighted by their truth pixels, per row.

    Parameters
    ----------
    tp, pred, true : array_like, shape (R, N)
    kept : array_like of bool, shape (N,)

    Returns
    -------
    ndarray of float64, shape (R,)
        NaN where the kept classes have no truth pixel.

    Notes
    -----
    ::

        fwIoU = sum_{c in K} true_c IoU_c / sum_{c in K} true_c,   IoU_c = tp_c / U_c

    The weighted sum is computed as a mean of ``true_c IoU_c`` over the classes with
    truth (in :func:`nanmean`'s fixed order of addition) times their number.
    """
    kept = np.asarray(kept, bool)
    weight = np.asarray(true, np.float64)[:, kept]
    weighted_iou = np.where(weight > 0, weight * iou(tp, pred, true)[:, kept], np.nan)
    weighted = np.nan_to_num(nanmean(weighted_iou, axis=1)) * (weight > 0).sum(axis=1)
    return ratio(weighted, weight.sum(axis=1))


def totals_summary(
    tp: npt.ArrayLike,
    pred: npt.ArrayLike,
    true: npt.ArrayLike,
    kept: npt.ArrayLike,
    *,
    smooth: float = 0.0,
    presence: Presence = "truth_or_pred",
    empty: float = math.nan,
) -> dict[Summary, Floats]:
    """The summaries of summed counts, one per row of (R, N) totals.

    Parameters
    ----------
    tp, pred, true : array_like, shape (R, N)
        Data-set totals (one row), or one row per bootstrap resample.
    kept : array_like of bool, shape (N,)
        The classes that enter the means.
    smooth, presence, empty
        The policy's rules for IoU and Dice (see :func:`metric_values`).

    Returns
    -------
    dict of ndarray, shape (R,)
        ``miou``, ``mdice`` (the ``'dataset'`` aggregation), ``aacc``, ``macc``, ``fwiou``.

    Notes
    -----
    With ``K`` the kept classes and ``mean`` over the non-NaN values::

        mIoU  = mean_{c in K} iou_c      (metric_values: smoothing, presence, empty)
        mDice = mean_{c in K} dice_c
        aAcc  = sum_c tp_c / sum_c true_c            (every class: pixel accuracy)
        mAcc  = mean_{c in K} tp_c / true_c          (a class without truth is NaN)
        fwIoU = sum_{c in K} true_c IoU_c / sum_{c in K} true_c,  IoU_c = tp_c / U_c

    Precision, recall and the accuracies are never smoothed.
    """
    tp, pred, true = (np.asarray(a, np.float64) for a in (tp, pred, true))
    rules: ValueRules = {"smooth": smooth, "presence": presence, "empty": empty}
    return {
        "miou": class_mean(metric_values("iou", tp, pred, true, **rules), kept),
        "mdice": class_mean(metric_values("dice", tp, pred, true, **rules), kept),
        "aacc": pixel_accuracy(tp, true),
        "macc": mean_accuracy(tp, true, kept),
        "fwiou": frequency_weighted_iou(tp, pred, true, kept),
    }


# -------------------------------------------------------- means over weighted images


def nan_masked(values: npt.ArrayLike) -> Floats:
    """Per-image values prepared for :func:`weighted_nanmeans`: ``[values | valid]``.

    Parameters
    ----------
    values : array_like, shape (B,) or (B, N)

    Returns
    -------
    ndarray of float64, shape (B, 2N)
        The values with NaN as 0, then 1 where the value is not NaN and 0 where it is:
        one matrix product gives both the weighted sums and the weights of the means.
    """
    values = np.asarray(values, np.float64)
    values = values.reshape(len(values), -1)
    valid = ~np.isnan(values)
    return np.hstack([np.where(valid, values, 0.0), valid.astype(np.float64)])


def weighted_nanmeans(weights: npt.ArrayLike, masked: npt.ArrayLike) -> Floats:
    """Weighted means over the images of the non-NaN values prepared by :func:`nan_masked`.

    Parameters
    ----------
    weights : array_like, shape (R, B)
        How often each image counts in each of R resamples (ones for the plain mean).
    masked : array_like, shape (B, 2N)
        From :func:`nan_masked`.

    Returns
    -------
    ndarray of float64, shape (R, N)
        NaN where no image with a value has weight.

    Notes
    -----
    ::

        m[r, c] = sum_b w[r, b] v[b, c] / sum_b w[r, b] [v[b, c] is not NaN]
    """
    masked = np.asarray(masked)
    sums = np.asarray(weights) @ masked
    n = masked.shape[1] // 2
    return ratio(sums[:, :n], sums[:, n:])


def image_class_means(values: npt.ArrayLike, weights: npt.ArrayLike) -> Floats:
    """Weighted mean over the images (B, N) of each class's non-NaN values: (R, N).

    Parameters
    ----------
    values : array_like, shape (B, N)
    weights : array_like, shape (R, B)

    Returns
    -------
    ndarray of float64, shape (R, N)

    Notes
    -----
    ``v_c = mean_b values[b, c]`` (weighted): the per-class values of the ``'image'`` and
    ``'sample'`` aggregations. See :func:`weighted_nanmeans`.
    """
    return weighted_nanmeans(weights, nan_masked(values))


def image_mean(image_scores: npt.ArrayLike, weights: npt.ArrayLike) -> Floats:
    """Weighted mean of the non-NaN per-image scores (B,) for each of R resamples: (R,).

    Parameters
    ----------
    image_scores : array_like, shape (B,)
    weights : array_like, shape (R, B)

    Returns
    -------
    ndarray of float64, shape (R,)
    """
    return weighted_nanmeans(weights, nan_masked(image_scores))[:, 0]


def prepare_image_aggregation(
    values: npt.ArrayLike, kept: npt.ArrayLike, aggregation: ImageAggregation
) -> Floats:
    """Per-image values prepared once for :func:`image_aggregation_mean` under any weights.

    Parameters
    ----------
    values : array_like, shape (B, N)
        IoU or Dice per image and class (:func:`metric_values`).
    kept : array_like of bool, shape (N,)
    aggregation : {'image', 'sample'}

    Returns
    -------
    ndarray of float64
        ``'image'``: :func:`nan_masked` of the values, (B, 2N); ``'sample'``:
        :func:`nan_masked` of each image's mean over the kept classes, (B, 2).
    """
    if aggregation == "image":
        return nan_masked(values)
    return nan_masked(class_mean(values, kept))


def image_aggregation_mean(
    prepared: npt.ArrayLike,
    kept: npt.ArrayLike,
    weights: npt.ArrayLike,
    aggregation: ImageAggregation,
) -> Floats:
    """Mean IoU / Dice of the ``'image'`` or ``'sample'`` aggregation under R weightings.

    Parameters
    ----------
    prepared : array_like
        From :func:`prepare_image_aggregation` with the same `kept` and `aggregation`.
    kept : array_like of bool, shape (N,)
    weights : array_like, shape (R, B)
        How often each image counts (a row of ones: the report's own value; bootstrap
        resamples otherwise).
    aggregation : {'image', 'sample'}

    Returns
    -------
    ndarray of float64, shape (R,)

    Notes
    -----
    With ``v[b, c]`` the per-image values, ``K`` the kept classes, ``mean`` over the
    non-NaN values and ``mean_b`` weighted by ``w[r, b]``::

        image:   mIoU[r] = mean_{c in K} mean_b v[b, c]     (per class first: the post)
        sample:  mIoU[r] = mean_b mean_{c in K} v[b, c]     (per image first: MONAI)
    """
    means = weighted_nanmeans(weights, prepared)
    if aggregation == "image":
        return class_mean(means, kept)
    return means[:, 0]


# -------------------------------------------------------------------- the post's means


def check_post_options(metric_name: str, metric_type: str) -> Metric:
    """The post's ``metric_name``, checked with its ``metric_type``.

    Parameters
    ----------
    metric_name : str
        One of :data:`METRICS`.
    metric_type : str
        One of :data:`POST_METRIC_TYPES`.

    Returns
    -------
    {'iou', 'dice'}
        `metric_name`, typed for :func:`post_mean`.

    Raises
    ------
    ValueError
        An unknown name or type.
    """
    metric = next((name for name in METRICS if name == metric_name), None)
    if metric is None:
        raise ValueError(f"metric_name must be one of {METRICS}; got {metric_name!r}")
    if metric_type not in POST_METRIC_TYPES:
        raise ValueError(f"metric_type must be one of {POST_METRIC_TYPES}; got {metric_type!r}")
    return metric


def post_mean(
    tp: npt.ArrayLike,
    pred: npt.ArrayLike,
    true: npt.ArrayLike,
    metric: Metric,
    *,
    naive: bool = False,
    drop_last: bool = True,
    mean_per_class: bool = False,
) -> float | Floats:
    """The post's mean IoU / Dice from per-image counts (hard or soft).

    Parameters
    ----------
    tp, pred, true : array_like, shape (B, N)
        Per-image counts.
    metric : {'iou', 'dice'}
    naive : bool, default False
        Average over absent classes too (they score IoU 1, Dice 2).
    drop_last : bool, default True
        Leave the last class out (only when there is more than one class).
    mean_per_class : bool, default False
        Return one value per class, averaged over the images.

    Returns
    -------
    float or ndarray of float64, shape (N,) or (N - 1,)
        NaN when, without `naive`, no class is present in any image.

    Notes
    -----
    Per image ``b`` and class ``c``, with ``s = 0.001``, ``I = tp``, ``S = pred + true``,
    ``U = S - I``::

        iou[b, c]  = (I + s) / (U + s)
        dice[b, c] = 2 (I + s) / (S + s)
        p[b, c]    = 1 if U != 0 else 0     (present; soft sums of logits may be < 0)

    and the means of :func:`fastseg.reference.metrics_np` (``n_c = sum_b p[b, c]``)::

        standard:                  mean_{c: n_c > 0} (sum_b p[b, c] v[b, c] / n_c)
        naive:                     mean_{b, c} v[b, c]
        standard, mean_per_class:  (sum_b p[b, c] v[b, c] + s) / (n_c + s)
        naive, mean_per_class:     mean_b v[b, c]
    """
    tp = np.asarray(tp)
    values = (iou if metric == "iou" else dice)(tp, pred, true, POST_SMOOTH)
    union = np.asarray(true) + np.asarray(pred) - tp
    present = (union != 0).astype(np.int64)
    if drop_last and tp.shape[1] > 1:
        values = values[:, :-1]
        present = present[:, :-1]
    if mean_per_class:
        if naive:
            return np.mean(values, axis=0)
        smoothed_sum = np.sum(values * present, axis=0) + POST_SMOOTH
        return smoothed_sum / (np.sum(present, axis=0) + POST_SMOOTH)
    if naive:
        return float(np.mean(values))
    images_with_class = np.sum(present, axis=0)
    kept = images_with_class != 0
    if not kept.any():
        return float("nan")
    return float(np.mean(np.sum(values * present, axis=0)[kept] / images_with_class[kept]))


# --------------------------------------------------------------------- class groups


def group_counts(
    confusion: npt.ArrayLike, groups: Sequence[Sequence[int]]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Counts of class groups, each scored as one class, from the confusion matrix.

    Parameters
    ----------
    confusion : array_like, shape (N, N)
        Rows truth, columns prediction (ignored truth pixels already left out).
    groups : sequence of sequences of int
        The class indices of each group; groups may overlap.

    Returns
    -------
    tp, pred, true : ndarray of int64, shape (G,)

    Notes
    -----
    A pixel belongs to group ``g`` when its class does (in the truth, or in the
    prediction), so with ``C`` the confusion matrix::

        tp_g   = sum_{r in g} sum_{c in g} C[r, c]
        pred_g = sum_r sum_{c in g} C[r, c]
        true_g = sum_{r in g} sum_c C[r, c]

    the counts of re-labelling both maps to "in g" / "not in g" and counting. For
    Cityscapes' categories: its ``getIouScoreForCategory`` (fp from the rows of evaluated
    classes only, as here since ignored truth is not in ``C``).
    """
    c = np.asarray(confusion)
    rows, cols = c.sum(axis=1), c.sum(axis=0)
    tp = np.zeros(len(groups), np.int64)
    pred = np.zeros(len(groups), np.int64)
    true = np.zeros(len(groups), np.int64)
    for k, members in enumerate(groups):
        g = np.asarray(members, np.intp)
        tp[k] = c[np.ix_(g, g)].sum()
        pred[k] = cols[g].sum()
        true[k] = rows[g].sum()
    return tp, pred, true


def group_values(
    confusion: npt.ArrayLike,
    groups: Sequence[Sequence[int]],
    *,
    smooth: float = 0.0,
    presence: Presence = "truth_or_pred",
    empty: float = math.nan,
) -> dict[str, Floats]:
    """IoU, Dice, precision and recall of class groups, and their means over the groups.

    Parameters
    ----------
    confusion : array_like, shape (N, N)
    groups : sequence of sequences of int
    smooth, presence, empty
        The policy's rules for IoU and Dice (see :func:`metric_values`).

    Returns
    -------
    dict of ndarray
        ``tp``, ``pred``, ``true``, ``iou``, ``dice``, ``precision``, ``recall``, shape
        (G,), and ``miou``, ``mdice``, ``mprecision``, ``mrecall``, shape () : the mean of
        each over the groups, NaN left out (NaN when none has a value).

    Notes
    -----
    From :func:`group_counts` (data-set totals: per-image group values would need a
    confusion matrix per image)::

        iou_g = (tp_g + s) / (pred_g + true_g - tp_g + s)     dice_g = 2 (tp_g + s) / (S_g + s)
        precision_g = tp_g / pred_g                           recall_g = tp_g / true_g
    """
    tp, pred, true = group_counts(confusion, groups)
    rules: ValueRules = {"smooth": smooth, "presence": presence, "empty": empty}
    out: dict[str, Floats] = {
        "tp": tp.astype(np.float64), "pred": pred.astype(np.float64),
        "true": true.astype(np.float64),
        "iou": metric_values("iou", tp[None], pred[None], true[None], **rules)[0],
        "dice": metric_values("dice", tp[None], pred[None], true[None], **rules)[0],
        "precision": precision(tp, pred),
        "recall": recall(tp, true),
    }  # fmt: skip
    for key in ("iou", "dice", "precision", "recall"):
        out["m" + key] = nanmean(out[key][None], axis=1)[0]
    return out


# ------------------------------------------------------------- per-case (nnU-Net) counts


def case_counts(
    tp: npt.ArrayLike, pred: npt.ArrayLike, true: npt.ArrayLike
) -> dict[str, npt.NDArray[np.int64]]:
    """Per image and class TP, FP, FN, TN, n_pred, n_ref (nnU-Net's per-case counts).

    Parameters
    ----------
    tp, pred, true : array_like, shape (B, N)
        Per-image counts.

    Returns
    -------
    dict of ndarray, shape (B, N)
        ``TP``, ``FP``, ``FN``, ``TN``, ``n_pred``, ``n_ref``.

    Notes
    -----
    With ``P_b = sum_c true[b, c]`` the pixels of image ``b`` counted (not ignored)::

        TP = tp    FP = pred - tp    FN = true - tp    TN = P_b - TP - FP - FN
        n_pred = pred    n_ref = true

    nnU-Net's ``compute_tp_fp_fn_tn`` outside its ignore mask.
    """
    tp, pred, true = (np.asarray(a) for a in (tp, pred, true))
    pixels = true.sum(axis=1, keepdims=True)
    fp, fn = pred - tp, true - tp
    return {"TP": tp, "FP": fp, "FN": fn, "TN": pixels - tp - fp - fn, "n_pred": pred,
            "n_ref": true}  # fmt: skip

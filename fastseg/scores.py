"""Metric values from counts: pure NumPy, no pass over the data.

Two families share these counts (see DESIGN.md):

* the post's per-image means with smoothing (:func:`post_metric`), reproducing
  :func:`fastseg.reference.metrics_np`;
* data-set values without smoothing (:func:`iou`, :func:`dice`), where a class whose
  union is empty is NaN.
"""

from __future__ import annotations

import numpy as np

from fastseg.counts import Counts

#: The post's smoothing, in pixels.
SMOOTH = 0.001

METRIC_NAMES = ("iou", "dice")
METRIC_TYPES = ("standard", "soft", "naive")


def check_metric(metric_name: str, metric_type: str) -> None:
    """Raise ValueError for an unknown metric name or type."""
    if metric_name not in METRIC_NAMES:
        raise ValueError(f"metric_name must be one of {METRIC_NAMES}; got {metric_name!r}")
    if metric_type not in METRIC_TYPES:
        raise ValueError(f"metric_type must be one of {METRIC_TYPES}; got {metric_type!r}")


def post_metric(
    counts: Counts,
    metric_name: str,
    *,
    naive: bool = False,
    drop_last: bool = True,
    mean_per_class: bool = False,
) -> float | np.ndarray:
    """The post's mean IoU / Dice from per-image counts.

    Parameters
    ----------
    counts : Counts
        Per-image counts (hard or soft).
    metric_name : {'iou', 'dice'}
    naive : bool
        Average over absent classes too (they score IoU 1, Dice 2).
    drop_last : bool
        Leave the last class out (only when there is more than one class).
    mean_per_class : bool
        Return one value per class, averaged over the images.

    Returns
    -------
    float or ndarray
        NaN when, without ``naive``, no class is present in any image.

    Notes
    -----
    Per image and class, with ``s = 0.001``, ``I = tp``, ``S = pred + true``,
    ``U = S - I``::

        iou  = (I + s) / (U + s)
        dice = 2 (I + s) / (S + s)

    A class is present in an image when ``U != 0``. The means are those of
    :func:`fastseg.reference.metrics_np`.
    """
    intersection = counts.tp
    mask_sum = counts.true + counts.pred
    union = mask_sum - intersection
    if metric_name == "iou":
        metric = (intersection + SMOOTH) / (union + SMOOTH)
    else:
        metric = 2 * (intersection + SMOOTH) / (mask_sum + SMOOTH)
    present = (union != 0).astype(np.int64)
    if drop_last and counts.num_classes > 1:
        metric = metric[:, :-1]
        present = present[:, :-1]
    if mean_per_class:
        if naive:
            return np.mean(metric, axis=0)
        return (np.sum(metric * present, axis=0) + SMOOTH) / (np.sum(present, axis=0) + SMOOTH)
    if naive:
        return float(np.mean(metric))
    images_with_class = np.sum(present, axis=0)
    kept = images_with_class != 0
    if not kept.any():
        return float("nan")
    return float(np.mean(np.sum(metric * present, axis=0)[kept] / images_with_class[kept]))


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.full(np.broadcast(num, den).shape, np.nan)
    np.divide(num, den, out=out, where=den != 0)
    return out


def iou(counts: Counts) -> np.ndarray:
    """Per-image, per-class IoU ``tp / (pred + true - tp)``; NaN where the union is empty.

    Call on ``counts.total()`` for the data-set IoU of summed counts.
    """
    return _ratio(counts.tp.astype(np.float64), counts.union.astype(np.float64))


def dice(counts: Counts) -> np.ndarray:
    """Per-image, per-class Dice ``2 tp / (pred + true)``; NaN where both are empty."""
    return _ratio(2.0 * counts.tp, (counts.pred + counts.true).astype(np.float64))

"""The post-compatible metrics: drop-in replacements for the post's NumPy functions."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from fastseg.counting import count_prepared
from fastseg.formulas import Metric, PostMetricType, check_post_options, post_mean
from fastseg.inputs import prepare


def metrics(
    y_true: Any,
    y_pred: Any,
    metric_name: Metric,
    metric_type: PostMetricType = "standard",
    drop_last: bool = True,
    mean_per_class: bool = False,
    verbose: bool = False,
    *,
    class_axis: int | None = None,
    num_classes: int | None = None,
    ignore_index: int | None = None,
    spatial_dims: int | None = None,
) -> float | np.ndarray:
    """Mean IoU or Dice of a batch, as the post's ``metrics_np`` computes it.

    Gives the numbers of :func:`fastseg.reference.metrics_np` (quirks included) in one
    pass over the data, without building one-hot masks.

    Parameters
    ----------
    y_true : array_like
        Truth: one-hot masks like `y_pred` (argmax-ed; an all-zero pixel is class 0), or
        an integer label map without the class axis.
    y_pred : array_like
        Scores (softmax outputs, logits or one-hot masks), or a label map.
    metric_name : {'iou', 'dice'}
    metric_type : {'standard', 'soft', 'naive'}, default 'standard'
        'standard': argmax masks, mean over the classes present in each image;
        'naive': absent classes count as IoU 1 (Dice 2); 'soft': no argmax, probabilities
        weigh the pixels.
    drop_last : bool, default True
        Leave the last class out of the means (and out of the `mean_per_class` array), as
        the post does by default: the post treats the last class as the background. Pass
        False when every class counts, or when the background is another class (class 0
        in most data sets). With one class there is nothing to drop.
    mean_per_class : bool, default False
        Return the per-class metric averaged over the batch.
    verbose : bool, default False
        Print the per-image intersection and union, as the post does.
    class_axis : int, optional
        Class axis of score / one-hot inputs (default: last). Channels-first images use
        ``class_axis=1``.
    num_classes : int, optional
        N; required when both inputs are label maps.
    ignore_index : int, optional
        Truth label whose pixels are skipped entirely (an extension: the post has none).
    spatial_dims : int, optional
        Number of spatial axes after the batch axis (default: at least 2).

    Returns
    -------
    float or ndarray
        The mean metric, or the per-class array when `mean_per_class`. NaN (without a
        warning, where NumPy would warn) when no class is present in any image.

    Notes
    -----
    Per image and class: ``iou = (I + s) / (U + s)``, ``dice = 2 (I + s) / (S + s)`` with
    ``s = 0.001``, ``I`` the intersection, ``S`` the sum of both masks' areas and
    ``U = S - I``. With one class, both inputs are thresholded at ``> 0``. Soft sums
    accumulate in float64 (the post sums in the input dtype, so float16 and float32
    results differ in the last digits).

    Examples
    --------
    >>> import numpy as np, fastseg
    >>> truth = np.array([[[0, 1], [1, 1]]])            # label map, 1 image of 2x2
    >>> scores = np.eye(2)[[[[0, 1], [0, 1]]]]           # one-hot prediction
    >>> round(fastseg.metrics(truth, scores, "iou", drop_last=False), 4)
    0.5835
    """
    metric = check_post_options(metric_name, metric_type)
    soft = metric_type == "soft"
    # post=True: the post's one-class rule; soft sums of any values (logits included).
    prep = prepare(y_true, y_pred, num_classes=num_classes, class_axis=class_axis,
                   ignore_index=ignore_index, soft=soft, spatial_dims=spatial_dims,
                   post=True)  # fmt: skip
    c = count_prepared(prep, soft=soft)
    if verbose:
        union = c.union
        # Mirrors the post's verbose output, which users of the drop-in rely on.
        print("intersection (pred*true), union (pred+true-inters)", file=sys.stdout)  # noqa: T201
        print(c.tp, union, file=sys.stdout)  # noqa: T201
    return post_mean(c.tp, c.pred, c.true, metric, naive=metric_type == "naive",
                     drop_last=drop_last, mean_per_class=mean_per_class)  # fmt: skip


def mean_iou(
    y_true: Any,
    y_pred: Any,
    metric_type: PostMetricType = "standard",
    drop_last: bool = True,
    mean_per_class: bool = False,
    verbose: bool = False,
    *,
    class_axis: int | None = None,
    num_classes: int | None = None,
    ignore_index: int | None = None,
    spatial_dims: int | None = None,
) -> float | np.ndarray:
    """Mean IoU of a batch, as the post's ``mean_iou_np``: :func:`metrics` with ``'iou'``.

    Parameters
    ----------
    y_true : array_like
        Truth: one-hot masks like `y_pred` (argmax-ed; an all-zero pixel is class 0), or
        an integer label map without the class axis.
    y_pred : array_like
        Scores (softmax outputs, logits or one-hot masks), or a label map.
    metric_type : {'standard', 'soft', 'naive'}, default 'standard'
        'standard': argmax masks, mean over the classes present in each image;
        'naive': absent classes count as IoU 1; 'soft': no argmax, probabilities weigh
        the pixels.
    drop_last : bool, default True
        Leave the last class out of the mean (and out of the `mean_per_class` array), as
        the post does by default: the post treats the last class as the background. Pass
        False when every class counts, or when the background is another class (class 0
        in most data sets).
    mean_per_class : bool, default False
        Return the per-class IoU averaged over the batch.
    verbose : bool, default False
        Print the per-image intersection and union, as the post does.
    class_axis : int, optional
        Class axis of score / one-hot inputs (default: last); ``class_axis=1`` for
        channels-first images.
    num_classes : int, optional
        N; required when both inputs are label maps.
    ignore_index : int, optional
        Truth label whose pixels are skipped entirely (an extension: the post has none).
    spatial_dims : int, optional
        Number of spatial axes after the batch axis (default: at least 2).

    Returns
    -------
    float or ndarray
        The mean IoU, or the per-class array when `mean_per_class`; NaN when no class is
        present in any image.

    See Also
    --------
    metrics : The formulas and the post's quirks.

    Examples
    --------
    >>> import numpy as np, fastseg
    >>> truth = np.array([[[0, 1], [1, 1]]])
    >>> scores = np.eye(2)[[[[0, 1], [0, 1]]]]
    >>> round(fastseg.mean_iou(truth, scores, drop_last=False), 4)
    0.5835
    """
    return metrics(y_true, y_pred, "iou", metric_type, drop_last, mean_per_class, verbose,
                   class_axis=class_axis, num_classes=num_classes, ignore_index=ignore_index,
                   spatial_dims=spatial_dims)  # fmt: skip


def mean_dice(
    y_true: Any,
    y_pred: Any,
    metric_type: PostMetricType = "standard",
    drop_last: bool = True,
    mean_per_class: bool = False,
    verbose: bool = False,
    *,
    class_axis: int | None = None,
    num_classes: int | None = None,
    ignore_index: int | None = None,
    spatial_dims: int | None = None,
) -> float | np.ndarray:
    """Mean Dice of a batch, as the post's ``mean_dice_np``: :func:`metrics` with ``'dice'``.

    Parameters
    ----------
    y_true : array_like
        Truth: one-hot masks like `y_pred` (argmax-ed; an all-zero pixel is class 0), or
        an integer label map without the class axis.
    y_pred : array_like
        Scores (softmax outputs, logits or one-hot masks), or a label map.
    metric_type : {'standard', 'soft', 'naive'}, default 'standard'
        'standard': argmax masks, mean over the classes present in each image;
        'naive': absent classes count as Dice 2 (the post's smoothed ``2 (I + s) /
        (S + s)`` of an empty class); 'soft': no argmax, probabilities weigh the pixels.
    drop_last : bool, default True
        Leave the last class out of the mean (and out of the `mean_per_class` array), as
        the post does by default: the post treats the last class as the background. Pass
        False when every class counts, or when the background is another class (class 0
        in most data sets).
    mean_per_class : bool, default False
        Return the per-class Dice averaged over the batch.
    verbose : bool, default False
        Print the per-image intersection and union, as the post does.
    class_axis : int, optional
        Class axis of score / one-hot inputs (default: last); ``class_axis=1`` for
        channels-first images.
    num_classes : int, optional
        N; required when both inputs are label maps.
    ignore_index : int, optional
        Truth label whose pixels are skipped entirely (an extension: the post has none).
    spatial_dims : int, optional
        Number of spatial axes after the batch axis (default: at least 2).

    Returns
    -------
    float or ndarray
        The mean Dice, or the per-class array when `mean_per_class`; NaN when no class
        is present in any image.

    See Also
    --------
    metrics : The formulas and the post's quirks.

    Examples
    --------
    >>> import numpy as np, fastseg
    >>> truth = np.array([[[0, 1], [1, 1]]])
    >>> scores = np.eye(2)[[[[0, 1], [0, 1]]]]
    >>> round(fastseg.mean_dice(truth, scores, drop_last=False), 4)
    0.7337
    """
    return metrics(y_true, y_pred, "dice", metric_type, drop_last, mean_per_class, verbose,
                   class_axis=class_axis, num_classes=num_classes, ignore_index=ignore_index,
                   spatial_dims=spatial_dims)  # fmt: skip

"""Plain-NumPy reference ("oracle") for the mean IoU and Dice metrics.

This module re-implements, from its description and formulas, the function
``metrics_np`` of the blog post "Metrics for semantic segmentation" (section
"Numpy implementation"), together with its two wrappers ``mean_iou_np`` and
``mean_dice_np``. For every input the post's function accepts, :func:`metrics_np`
returns the same numbers bit for bit: the NumPy operations are applied to the same
operands in the same order, so the floating-point results (and their dtypes) are
identical. It is the semantic oracle of the whole package: it is deliberately
slow and simple, and must never be optimised.

Inputs are ``B*W*H*N`` arrays (batch, width, height, classes). For each image and
class the module computes

* ``intersection = sum |p * t|`` and ``mask_sum = sum |t| + sum |p|`` over the
  ``W, H`` axes, ``union = mask_sum - intersection``;
* ``iou = (intersection + s) / (union + s)`` and
  ``dice = 2 * (intersection + s) / (mask_sum + s)`` with ``s = SMOOTH = 0.001``;
* ``mask = union != 0`` (the class is present in the truth or the prediction),

then reduces the ``(B, N)`` matrix as described in :func:`metrics_np`.

Quirks of the post, reproduced on purpose
-----------------------------------------
* A class absent from both masks of an image scores IoU ``(0 + s) / (0 + s) = 1.0``
  and Dice ``2 * (0 + s) / (0 + s) = 2.0`` (not 1.0!). Under ``'naive'`` these values
  enter the mean; ``'standard'`` and ``'soft'`` mask them out.
* Hard metrics (``'standard'``, ``'naive'``) with ``N > 1`` one-hot encode *both*
  masks from their ``argmax`` over the class axis: an all-zero one-hot truth pixel
  is class 0 and ties go to the first maximum (a NaN counts as the maximum).
* Hard metrics with a single class (in fact ``N <= 1``) threshold both masks at
  ``> 0``: any positive probability counts as predicted, any positive truth value
  as present.
* Soft metrics take absolute values; they assume values in ``[0, 1]``. Outside that
  range the "union" can be zero (the class is then treated as absent) or negative.
* The scalar mean is per batch: each image's metric is computed from that image's
  counts and then averaged (over the images in which the class is present, then over
  the classes); it is *not* the metric of counts summed over the batch.
* The non-naive scalar mean is NaN (with a NumPy ``RuntimeWarning``) when every kept
  class is absent from every image, because it is the mean of an empty array.
* The non-naive per-class mean ``(sum(metric * mask) + s) / (sum(mask) + s)`` is
  smoothed too: it returns 1.0 for a class absent from every image, and is slightly
  biased otherwise (e.g. ``(x + s) / (1 + s)`` for a class present in one image).
* Float additions follow NumPy's (pairwise) summation in memory order, so the last
  bits depend on memory layouts. The hard one-hot masks are class-major in memory,
  as in the post (see :func:`_one_hot_of_argmax`): the ``(B, N)`` metric matrix is
  column-major, and e.g. the naive scalar mean adds it class by class. Soft metrics
  sum the inputs as they are laid out, so the same values with another layout (e.g.
  ``y[..., perm]`` or a Fortran-ordered array) can differ in the last bit.
* No dtype conversion is made under ``'soft'``: NumPy's arithmetic and promotion
  rules apply to the inputs' dtype, e.g. float16 inputs are multiplied and summed
  (and smoothed, since ``SMOOTH`` is a Python float) in float16; small integer
  dtypes can wrap around in ``p * t``.

Deviations from the post (errors only; no accepted input changes its result)
----------------------------------------------------------------------------
* The post's ``assert`` statements (shapes differ; inputs not 4-D) are
  :class:`ValueError` with the same information, so they survive ``python -O``.
* An unknown ``metric_name`` raises :class:`ValueError` up front (the post raised
  ``KeyError`` after the computation).
* An unknown ``metric_type`` raises :class:`ValueError`; the post silently treated
  any value other than ``'soft'`` and ``'naive'`` as ``'standard'``, so a typo would
  go unnoticed.
* Inputs are passed through :func:`numpy.asanyarray`, a no-op for NumPy arrays and
  their subclasses. Other array likes (nested lists, Dask arrays, ...) are therefore
  converted to NumPy arrays first (the post needed ``.shape`` and NumPy operators).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["METRIC_NAMES", "METRIC_TYPES", "SMOOTH", "mean_dice_np", "mean_iou_np", "metrics_np"]

#: Smoothing added to numerator and denominator, in pixels (a Python float on
#: purpose: a NumPy float64 scalar would upcast float16/float32 arrays).
SMOOTH = 0.001

#: Accepted values of ``metric_name``.
METRIC_NAMES = ("iou", "dice")

#: Accepted values of ``metric_type``.
METRIC_TYPES = ("standard", "soft", "naive")

# The W, H axes of a B*W*H*N array.
_IMAGE_AXES = (1, 2)


def _check_arguments(
    y_true: np.ndarray, y_pred: np.ndarray, metric_name: str, metric_type: str
) -> None:
    """Raise ValueError for inputs or options that the post would not accept."""
    if y_true.shape != y_pred.shape:
        raise ValueError(
            f"Input masks should be same shape, instead are {y_true.shape}, {y_pred.shape}"
        )
    if y_pred.ndim != 4:
        raise ValueError(f"Inputs should be B*W*H*N tensors, instead have shape {y_pred.shape}")
    if metric_name not in METRIC_NAMES:
        raise ValueError(f"metric_name should be one of {METRIC_NAMES}, got {metric_name!r}")
    if metric_type not in METRIC_TYPES:
        raise ValueError(f"metric_type should be one of {METRIC_TYPES}, got {metric_type!r}")


def _one_hot_of_argmax(y: np.ndarray, num_classes: int) -> npt.NDArray[np.bool_]:
    """Return the boolean one-hot encoding of ``argmax(y, axis=-1)``, shape of ``y``.

    The result is a class-major view: a C-contiguous ``(N, B, W, H)`` array with its
    first axis moved last, which is the memory layout the post's encoding has. The
    layout is part of the semantics: NumPy keeps it through the per-image sums, so
    the ``(B, N)`` metric matrix is column-major, and the order in which the final
    means add up its float values (hence their last bits) depends on it.
    """
    labels = np.argmax(y, axis=-1)
    class_ids = np.arange(num_classes).reshape(num_classes, 1, 1, 1)
    class_major = class_ids == labels[np.newaxis]
    return np.moveaxis(class_major, 0, -1)


def _hard_masks(y: np.ndarray, num_classes: int) -> np.ndarray:
    """Return the hard mask used by the 'standard' and 'naive' metrics."""
    if num_classes > 1:
        return _one_hot_of_argmax(y, num_classes)
    # One class (or none): threshold at > 0, as integers of the default int dtype.
    return (y > 0).astype(int)


def metrics_np(
    y_true: npt.ArrayLike,
    y_pred: npt.ArrayLike,
    metric_name: str,
    metric_type: str = "standard",
    drop_last: bool = True,
    mean_per_class: bool = False,
    verbose: bool = False,
) -> Any:
    """Compute the mean IoU or Dice of two batches of segmentation masks (the post's oracle).

    ``IoU(A, B) = |A & B| / |A | B|`` and ``Dice(A, B) = 2 |A & B| / (|A| + |B|)``,
    both smoothed by ``SMOOTH`` pixels, computed per image and per class and then
    averaged. Reproduces the blog post's ``metrics_np`` bit for bit (see the module
    docstring for the formulas).

    Parameters
    ----------
    y_true : array_like, shape (B, W, H, N)
        True masks, normally one-hot encoded (B images of W x H pixels, N classes).
    y_pred : array_like, shape (B, W, H, N)
        Predicted masks: softmax outputs or one-hot encoded.
    metric_name : {'iou', 'dice'}
        Metric to compute.
    metric_type : {'standard', 'soft', 'naive'}, default 'standard'
        ``'standard'``: hard masks; the mean is taken only over the classes present
        (in the truth or the prediction). ``'naive'``: hard masks; absent classes
        enter the mean with their smoothed score (IoU 1.0, Dice 2.0). ``'soft'``: no
        encoding of either mask (probabilities are used as weights); mean as in
        ``'standard'``.
    drop_last : bool, default True
        Drop the last class (usually the background) before averaging. Ignored when
        ``N <= 1``.
    mean_per_class : bool, default False
        Return the per-class metric averaged over the batch axis instead of a scalar.
    verbose : bool, default False
        Print the per-image intersection and union (both as computed, from the sums,
        and from ``logical_and`` / ``logical_or``), exactly as the post does.

    Returns
    -------
    numpy.floating or numpy.ndarray
        The mean metric as a NumPy scalar, or, if ``mean_per_class``, an array of
        shape ``(N,)`` (``(N - 1,)`` if the last class is dropped). The dtype follows
        NumPy's promotion rules (float64 for hard metrics).

    Raises
    ------
    ValueError
        If the shapes differ, the inputs are not 4-D, or ``metric_name`` or
        ``metric_type`` is unknown. (The post used ``assert`` for the first two, raised
        ``KeyError`` for an unknown name and treated an unknown type as
        ``'standard'``.)

    Warns
    -----
    RuntimeWarning
        From NumPy, when the non-naive scalar mean is taken over no class (every kept
        class absent from every image, or an empty batch): the result is then NaN.

    Notes
    -----
    Hard encoding. For ``N > 1`` both masks are replaced by the one-hot encoding of
    their ``argmax`` over the last axis: an all-zero truth pixel is class 0, ties go
    to the first maximum. For ``N <= 1`` both masks are thresholded at ``> 0`` (so
    any positive probability is a predicted pixel).

    Per image ``b`` and class ``c``: ``I = sum |p * t|``, ``S = sum |t| + sum |p|``,
    ``U = S - I``; ``iou = (I + s) / (U + s)``, ``dice = 2 * (I + s) / (S + s)``;
    ``mask = (U != 0)``. Soft metrics take absolute values, so they are meant for
    values in ``[0, 1]``. If ``drop_last`` and ``N > 1``, the last class is removed
    from ``metric`` and ``mask``. Then, with ``m = metric`` of shape ``(B, C)``:

    * ``mean_per_class`` and ``'naive'``: ``mean(m, axis=0)``;
    * ``mean_per_class`` otherwise: ``(sum(m * mask, 0) + s) / (sum(mask, 0) + s)``,
      which is 1.0 for a class absent from every image;
    * scalar and ``'naive'``: ``mean(m)``; absent classes count as IoU 1.0 and as
      Dice **2.0**, which raises the mean;
    * scalar otherwise: with ``n = sum(mask, 0)``, the mean over the classes with
      ``n != 0`` of ``sum(m * mask, 0) / n``. This averages per-image metrics (it is
      not the metric of the batch's summed counts) and is NaN, with a
      ``RuntimeWarning``, when no class is left.
    """
    y_true = np.asanyarray(y_true)
    y_pred = np.asanyarray(y_pred)
    _check_arguments(y_true, y_pred, metric_name, metric_type)

    soft = metric_type == "soft"
    naive = metric_type == "naive"
    num_classes = y_pred.shape[-1]
    # A single class has no background class: never drop it.
    drop_last = bool(drop_last) and num_classes > 1

    if soft:
        pred, true = y_pred, y_true
    else:
        pred = _hard_masks(y_pred, num_classes)
        true = _hard_masks(y_true, num_classes)

    # Per-image, per-class areas, shape (B, N).
    intersection = np.sum(np.abs(pred * true), axis=_IMAGE_AXES)
    mask_sum = np.sum(np.abs(true), axis=_IMAGE_AXES) + np.sum(np.abs(pred), axis=_IMAGE_AXES)
    union = mask_sum - intersection

    if verbose:
        # Mirrors the post's verbose output, which is part of the reproduced behaviour.
        print(  # noqa: T201
            "intersection (pred*true), intersection (pred&true), "
            "union (pred+true-inters), union (pred|true)"
        )
        print(  # noqa: T201
            intersection,
            np.sum(np.logical_and(pred, true), axis=_IMAGE_AXES),
            union,
            np.sum(np.logical_or(pred, true), axis=_IMAGE_AXES),
        )

    # Both metrics are computed, as in the post, so that NumPy emits the same warnings
    # (e.g. a division by zero) whichever metric is asked for.
    iou = (intersection + SMOOTH) / (union + SMOOTH)
    dice = 2 * (intersection + SMOOTH) / (mask_sum + SMOOTH)
    metric = iou if metric_name == "iou" else dice

    # 1 where the class is present in the truth or the prediction of the image, else 0.
    present = np.not_equal(union, 0).astype(int)

    if drop_last:
        metric = metric[:, :-1]
        present = present[:, :-1]

    # Remaining axes: (batch, class).
    if mean_per_class:
        if naive:
            return np.mean(metric, axis=0)
        # Mean over the images in which the class is present, smoothed (1.0 if never).
        return (np.sum(metric * present, axis=0) + SMOOTH) / (np.sum(present, axis=0) + SMOOTH)

    if naive:
        return np.mean(metric)
    # Mean over the images in which each class is present, then over the classes
    # present in at least one image (NaN + RuntimeWarning if there is none).
    images_with_class = np.sum(present, axis=0)
    kept = images_with_class != 0
    per_class = np.sum(metric * present, axis=0)[kept] / images_with_class[kept]
    return np.mean(per_class)


def mean_iou_np(y_true: npt.ArrayLike, y_pred: npt.ArrayLike, **kwargs: Any) -> Any:
    """Compute the mean Intersection over Union of two batches of segmentation masks.

    Calls ``metrics_np(y_true, y_pred, metric_name='iou', **kwargs)``; see
    :func:`metrics_np` for the accepted keyword arguments.

    Parameters
    ----------
    y_true, y_pred : array_like, shape (B, W, H, N)
        True and predicted masks.
    **kwargs
        ``metric_type``, ``drop_last``, ``mean_per_class``, ``verbose``.

    Returns
    -------
    numpy.floating or numpy.ndarray
        As :func:`metrics_np`.
    """
    return metrics_np(y_true, y_pred, metric_name="iou", **kwargs)


def mean_dice_np(y_true: npt.ArrayLike, y_pred: npt.ArrayLike, **kwargs: Any) -> Any:
    """Compute the mean Dice coefficient of two batches of segmentation masks.

    Calls ``metrics_np(y_true, y_pred, metric_name='dice', **kwargs)``; see
    :func:`metrics_np` for the accepted keyword arguments.

    Parameters
    ----------
    y_true, y_pred : array_like, shape (B, W, H, N)
        True and predicted masks.
    **kwargs
        ``metric_type``, ``drop_last``, ``mean_per_class``, ``verbose``.

    Returns
    -------
    numpy.floating or numpy.ndarray
        As :func:`metrics_np`.
    """
    return metrics_np(y_true, y_pred, metric_name="dice", **kwargs)

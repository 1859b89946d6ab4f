"""Bootstrap of a Report's summaries: resampling weights, the resampled statistic, intervals.

A resample draws the B images of a report uniformly with replacement; it is represented by
weights, ``w[b]`` = how often image ``b`` was drawn, so a block of R resamples is one
(R, B) integer matrix and every resampled summary is computed at once from weighted sums
(:func:`resampled_statistic`) by the formulas of :mod:`fastseg.formulas`. The
:class:`~fastseg.report.Report` methods :meth:`~fastseg.report.Report.bootstrap` and
:meth:`~fastseg.report.Report.confidence_interval` call :func:`bootstrap_samples` and
:func:`percentile_interval`; the Report is imported here only for types.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from fastseg.formulas import (
    SUMMARIES,
    Floats,
    Summary,
    image_aggregation_mean,
    prepare_image_aggregation,
    totals_summary,
)

if TYPE_CHECKING:
    from fastseg.report import Report

#: Resamples drawn at once: bounds the weights to BOOT_BLOCK x B (8 MB of float64 at
#: 10 000 images) while keeping each matrix product large enough for BLAS.
BOOT_BLOCK = 100


class Interval(NamedTuple):
    """A bootstrap confidence interval and the point estimate it brackets."""

    low: float
    high: float
    estimate: float
    level: float
    n_boot: int


def resample_weights(seed: int, n_images: int, n_boot: int) -> Iterator[tuple[int, np.ndarray]]:
    """Bootstrap weights: ``(start, w)`` blocks, ``w[r, b]`` = draws of image b in resample r.

    Parameters
    ----------
    seed : int
        Seed of ``numpy.random.default_rng``: the same seed gives the same weights.
    n_images : int
        B, the images drawn from (and the draws per resample).
    n_boot : int
        Resamples in all.

    Yields
    ------
    start : int
        Index of the block's first resample.
    w : ndarray of int64, shape (block, n_images)
        At most :data:`BOOT_BLOCK` rows; every row sums to `n_images`.
    """
    rng = np.random.default_rng(seed)
    for start in range(0, n_boot, BOOT_BLOCK):
        m = min(BOOT_BLOCK, n_boot - start)
        # int32 draws are three times faster to make and count than int64 ones.
        dtype = np.int32 if n_images < 2**31 else np.int64
        draws = rng.integers(0, n_images, size=(m, n_images), dtype=dtype)
        draws = draws + np.arange(m, dtype=np.int64)[:, None] * n_images
        yield start, np.bincount(draws.ravel(), minlength=m * n_images).reshape(m, n_images)


def summary_key(metric: str) -> Summary:
    """`metric` as a key of :attr:`Report.summary` (case-insensitive), or a ValueError."""
    key = metric.lower()
    for name in SUMMARIES:
        if key == name:
            return name
    raise ValueError(f"metric must be one of {SUMMARIES}; got {metric!r}")


def resampled_statistic(report: Report, key: Summary) -> Callable[[np.ndarray], Floats]:
    """The summary `key` of `report` as a function of resampling weights (R, B) -> (R,).

    Parameters
    ----------
    report : Report
        With per-image counts.
    key : {'miou', 'mdice', 'aacc', 'macc', 'fwiou'}

    Returns
    -------
    callable
        ``statistic(w)``: the summary of each resample, computed as the report computes
        its own value (a row of ones gives the report's value).

    Notes
    -----
    For the data-set aggregation (and aAcc, mAcc, fwIoU whatever the aggregation), the
    resampled totals are ``w @ [tp | pred | true]``, exact integer sums (in float64 while
    they stay below 2**53, else in int64), then
    :func:`~fastseg.formulas.totals_summary`. For mIoU / mDice under the ``'image'`` and
    ``'sample'`` aggregations, the per-image values are prepared once and averaged under
    each row of weights (:func:`~fastseg.formulas.image_aggregation_mean`).
    """
    policy, kept = report.policy, report.kept
    aggregation = policy.aggregation
    if key in ("miou", "mdice") and aggregation != "dataset":
        values = report.per_image_values("iou" if key == "miou" else "dice")
        prepared = prepare_image_aggregation(values, kept, aggregation)
        return lambda w: image_aggregation_mean(prepared, kept, w.astype(np.float64), aggregation)
    c = report.counts
    stacked = np.hstack([c.tp, c.pred, c.true])
    # Float64 sums of integers are exact below 2**53; a weight is at most B.
    exact_in_float = c.soft or int(stacked.sum(axis=0).max(initial=0)) * c.n_images < 2**53
    if exact_in_float:
        stacked = stacked.astype(np.float64)
    rules = policy.value_rules()

    def statistic(weights: np.ndarray) -> Floats:
        w = weights.astype(np.float64) if exact_in_float else weights
        tp, pred, true = np.split(w @ stacked, 3, axis=1)
        return totals_summary(tp, pred, true, kept, **rules)[key]

    return statistic


def bootstrap_samples(report: Report, metric: str, n_boot: int, seed: int) -> Floats:
    """The summary `metric` of `n_boot` resamples of the report's images, shape (n_boot,).

    Parameters
    ----------
    report : Report
        With per-image counts, at least one image.
    metric : {'miou', 'mdice', 'aacc', 'macc', 'fwiou'}
    n_boot : int
        At least 1.
    seed : int

    Returns
    -------
    ndarray of float64, shape (n_boot,)

    Raises
    ------
    ValueError
        An unknown metric, counts without images, no image, or ``n_boot < 1``.

    Notes
    -----
    Resample ``r`` draws B images uniformly with replacement (:func:`resample_weights`):
    image ``b`` counts ``w[r, b]`` times, and the metric of the resample is the report's
    metric of those images (:func:`resampled_statistic`).
    """
    key = summary_key(metric)
    report._require_images("the bootstrap")
    n_images = report.counts.n_images
    if n_images == 0:
        raise ValueError("the bootstrap needs at least one image")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1; got {n_boot}")
    statistic = resampled_statistic(report, key)
    out = np.empty(n_boot)
    for start, weights in resample_weights(seed, n_images, n_boot):
        out[start : start + len(weights)] = statistic(weights)
    return out


def percentile_interval(
    report: Report, metric: str, level: float, n_boot: int, seed: int
) -> Interval:
    """Percentile bootstrap interval of a summary of `report` (see :func:`bootstrap_samples`).

    Parameters
    ----------
    report : Report
    metric : {'miou', 'mdice', 'aacc', 'macc', 'fwiou'}
    level : float
        In (0, 1).
    n_boot, seed : int

    Returns
    -------
    Interval
        The ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of the resampled metric
        (resamples where it is NaN left out; NaN bounds when all are), and the report's
        own value.

    Raises
    ------
    ValueError
        `level` outside (0, 1), or as :func:`bootstrap_samples`.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1); got {level}")
    samples = bootstrap_samples(report, metric, n_boot, seed)
    samples = samples[~np.isnan(samples)]
    low, high = (math.nan, math.nan)
    if samples.size:
        low, high = (float(q) for q in np.quantile(samples, [(1 - level) / 2, (1 + level) / 2]))
    return Interval(low, high, report.summary[summary_key(metric)], level, n_boot)

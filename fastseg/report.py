"""The Report: data-set metric values of counts under a policy.

A :class:`Report` is computed from a :class:`~fastseg.counts.Counts` value (one row per
image, or one row of data-set totals) under a :class:`~fastseg.policy.Policy` chosen by a
preset and keyword overrides. It gives per-class IoU, Dice, precision, recall, support and
predicted pixels, the summaries (mIoU, mDice, aAcc, mAcc, fwIoU), the confusion matrix,
per-image values and the worst images, all computed by :mod:`fastseg.formulas`; with
instance sums in the counts and average instance sizes, Cityscapes' instance-weighted
iIoU (:attr:`Report.instances`, from :mod:`fastseg.instances`).

Its bootstrap (:meth:`Report.bootstrap`, :meth:`Report.confidence_interval`) lives in
:mod:`fastseg.bootstrap`, and its outputs (``str``, :meth:`Report.to_dict`, JSON, CSV,
plot) in :mod:`fastseg.render`; the methods here delegate to them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np

from fastseg import render
from fastseg.bootstrap import Interval, bootstrap_samples, percentile_interval
from fastseg.counts import Counts
from fastseg.formulas import (
    METRICS,
    Floats,
    Metric,
    Presence,
    Summary,
    class_mean,
    group_values,
    image_aggregation_mean,
    image_class_means,
    metric_values,
    post_mean,
    precision,
    prepare_image_aggregation,
    recall,
    totals_summary,
)
from fastseg.instances import InstanceScores, instance_scores, resolve_instance_sizes
from fastseg.policy import (
    PRESETS,
    Aggregation,
    EmptyValue,
    Policy,
    explain_keywords,
    resolve_groups,
    resolve_policy,
)

__all__ = ["PRESETS", "GroupScores", "ImageScore", "InstanceScores", "Interval", "JsonLayout",
           "Policy", "Report"]  # fmt: skip

#: The layouts of :meth:`Report.to_json`: :data:`fastseg.render.JSON_LAYOUTS`.
JsonLayout = Literal["report", "per-case", "cityscapes"]

#: Keywords of the bootstrap under other libraries' names.
_BOOTSTRAP_HINTS = {
    "n": "n is n_boot= here",
    "n_resamples": "n_resamples is n_boot= here",
    "confidence_level": "confidence_level is level= here (e.g. level=0.95)",
    "confidence": "confidence is level= here (e.g. level=0.95)",
    "alpha": "alpha is level= here, as its complement (level=0.95 for alpha=0.05)",
    "random_state": "random_state is seed= here",
}


class ImageScore(NamedTuple):
    """One image's score: its position in the counts, its id and its mean over classes."""

    position: int
    id: str
    score: float


@dataclass(frozen=True, eq=False)
class GroupScores:
    """Values of class groups, each scored as one class (``Report.groups``).

    From the data set's confusion matrix (:func:`fastseg.formulas.group_values`): a pixel
    is in a group when its class is. Per-image group values are not given: they would
    need a confusion matrix per image, which the counts do not keep.

    Attributes
    ----------
    names : tuple of str
    classes : tuple of tuple of int
        The class indices of each group.
    tp, pred, true : ndarray of int64, shape (G,)
        Group intersection, predicted and truth pixels.
    iou, dice : ndarray of float64, shape (G,)
        Under the report's policy (smoothing, presence, empty value).
    precision, recall : ndarray of float64, shape (G,)
    summary : dict of str to float
        ``miou``, ``mdice``, ``mprecision``, ``mrecall``: means over the groups, NaN left
        out (Cityscapes' ``averageScoreCategories`` is ``miou``).
    """

    names: tuple[str, ...]
    classes: tuple[tuple[int, ...], ...]
    tp: np.ndarray
    pred: np.ndarray
    true: np.ndarray
    iou: Floats
    dice: Floats
    precision: Floats
    recall: Floats
    summary: dict[str, float]

    def rows(self) -> list[dict[str, Any]]:
        """One dict per group, with the keys of the class rows and the group's classes.

        ``index``, ``name``, ``classes``, then ``iou``, ``dice``, ``precision``,
        ``recall``, ``support`` (truth pixels), ``predicted``.
        """
        return [
            {"index": k, "name": name, "classes": list(self.classes[k]),
             "iou": float(self.iou[k]), "dice": float(self.dice[k]),
             "precision": float(self.precision[k]), "recall": float(self.recall[k]),
             "support": int(self.true[k]), "predicted": int(self.pred[k])}
            for k, name in enumerate(self.names)
        ]  # fmt: skip


class Report:
    """Data-set metrics of segmentation counts, under a named or custom convention.

    Parameters
    ----------
    counts : Counts
        With ``per_image=True``, one row per image; with ``per_image=False``, one row of
        data-set totals. Hard (int64, with a confusion matrix) or soft (float64, without).
    ids : sequence of str, optional
        One id per image (e.g. file names); default ``"0"``, ``"1"``, ... (the positions).
    class_names : sequence of str, optional
        One name per class; default ``"0"``, ``"1"``, ...
    per_image : bool, default True
        Whether the rows of `counts` are images. Without them, per-image values,
        :meth:`worst`, :meth:`confidence_interval` and the ``'image'`` / ``'sample'``
        aggregations raise a ValueError.
    preset : str, optional
        A key of :data:`~fastseg.policy.PRESETS`; None is ``"dataset"`` (summed counts,
        an empty class NaN and left out, present = in truth or prediction, nothing
        excluded).
    aggregation, empty, presence, exclude, smooth : optional
        Override the preset's policy field of that name (see
        :class:`~fastseg.policy.Policy`).
    meta : mapping, optional
        JSON-safe facts to carry into :meth:`to_dict` (e.g. source paths). A non-empty
        ``meta["skipped"]`` (or ``meta["complete"] = False``) marks the report incomplete;
        ``meta["n_images"]`` gives the number of images when ``per_image=False``.
    groups : mapping of str to sequence, optional
        Class groups scored as one class each (Cityscapes' categories, nnU-Net's
        regions, which may overlap): ``{name: [class indices or names]}``. Computed from
        the summed confusion matrix (:func:`~fastseg.formulas.group_values`), so they are
        data-set values whatever the aggregation, and need hard counts; see
        :attr:`groups`.
    instance_sizes : mapping of class name or index to float, optional
        Average instance size in pixels of each class with instances: with counts that
        carry instance sums (:attr:`Counts.instances <fastseg.counts.Counts.instances>`),
        the report has Cityscapes' iIoU (:attr:`instances`, :attr:`iiou`).

    Notes
    -----
    Per class ``c`` from the summed counts (never smoothed, whatever the policy)::

        precision_c = tp_c / pred_c      recall_c = tp_c / true_c   (NaN for 0 / 0)
        support_c   = true_c             predicted_c = pred_c

    IoU and Dice per class and their means mIoU and mDice follow the policy (formulas in
    :class:`~fastseg.policy.Policy` and :mod:`fastseg.formulas`); aAcc, mAcc and fwIoU
    are those of :func:`~fastseg.formulas.totals_summary`. Recall is the class accuracy
    of mmsegmentation (``Acc``); aAcc equals ``trace(confusion) / sum(confusion)`` for
    hard counts and is computed from the counts, so soft counts have it too.
    """

    def __init__(
        self,
        counts: Counts,
        *,
        ids: Sequence[str] | None = None,
        class_names: Sequence[str] | None = None,
        per_image: bool = True,
        preset: str | None = None,
        aggregation: Aggregation | None = None,
        empty: EmptyValue | None = None,
        presence: Presence | None = None,
        exclude: Sequence[int | str] | None = None,
        meta: Mapping[str, Any] | None = None,
        smooth: float | None = None,
        groups: Mapping[str, Sequence[int | str]] | None = None,
        instance_sizes: Mapping[str | int, float] | None = None,
    ) -> None:
        if not isinstance(counts, Counts):
            raise TypeError(f"counts must be a fastseg.Counts; got {type(counts).__name__}")
        self.counts = counts
        self.per_image = bool(per_image)
        self.preset = "dataset" if preset is None else preset
        self.policy = resolve_policy(
            preset, aggregation=aggregation, empty=empty, presence=presence,
            exclude=exclude, smooth=smooth)  # fmt: skip
        if not self.per_image:
            if counts.n_images != 1:
                raise ValueError(
                    "with per_image=False, counts must be one row of data-set totals; "
                    f"got {counts.n_images} rows"
                )
            if self.policy.aggregation != "dataset":
                self._require_images(f"aggregation={self.policy.aggregation!r}")
            if ids is not None:
                self._require_images("ids")
        #: Classes that enter the class means (the others are marked in outputs).
        self.kept: np.ndarray = self.policy.kept(counts.num_classes, class_names)
        self.ids: tuple[str, ...] | None = _ids(ids, counts.n_images) if self.per_image else None
        self.class_names: tuple[str, ...] = _class_names(class_names, counts.num_classes)
        #: The class groups: name -> class indices (empty without groups).
        self.group_classes: dict[str, tuple[int, ...]] = resolve_groups(
            groups, counts.num_classes, class_names)  # fmt: skip
        if self.group_classes and counts.confusion is None:
            raise ValueError(
                "class groups are scored from the confusion matrix, and soft counts have "
                "none: leave groups out for soft metrics"
            )
        #: Average instance size per class, (N,), NaN for classes without (None: not given).
        self.instance_sizes: np.ndarray | None = resolve_instance_sizes(
            instance_sizes, counts.num_classes, class_names)  # fmt: skip
        self.meta: dict[str, Any] = _json_meta(meta)
        self._totals = counts.total() if self.per_image else counts

    # ------------------------------------------------------------------- facts

    @property
    def num_classes(self) -> int:
        """Number of classes N."""
        return self.counts.num_classes

    @property
    def n_images(self) -> int | None:
        """Images counted (``meta["n_images"]`` or None when ``per_image=False``)."""
        if self.per_image:
            return self.counts.n_images
        n = self.meta.get("n_images")
        return n if isinstance(n, int) else None

    @property
    def pixels(self) -> int | float:
        """Truth pixels counted (not ignored); a sum of weights for soft counts."""
        total = self._totals.true.sum()
        return float(total) if self.counts.soft else int(total)

    @property
    def ignored(self) -> int:
        """Truth pixels skipped because they equal the ignore index."""
        return int(self.counts.ignored)

    @property
    def complete(self) -> bool:
        """False when ``meta`` reports skipped data (``skipped`` or ``complete=False``)."""
        return not self.meta.get("skipped") and self.meta.get("complete", True) is not False

    @property
    def confusion_matrix(self) -> np.ndarray | None:
        """Rows truth, columns prediction, int64 (N, N); None for soft counts."""
        return self.counts.confusion

    # --------------------------------------------------------------- per class

    @cached_property
    def iou(self) -> Floats:
        """Per-class IoU under the policy, shape (N,)."""
        return self._class_values("iou")

    @cached_property
    def dice(self) -> Floats:
        """Per-class Dice under the policy, shape (N,)."""
        return self._class_values("dice")

    @cached_property
    def precision(self) -> Floats:
        """Per-class ``tp / pred`` of the summed counts, shape (N,)."""
        return precision(self._totals.tp[0], self._totals.pred[0])

    @cached_property
    def recall(self) -> Floats:
        """Per-class ``tp / true`` of the summed counts (class accuracy), shape (N,)."""
        return recall(self._totals.tp[0], self._totals.true[0])

    @property
    def support(self) -> np.ndarray:
        """Truth pixels per class, shape (N,)."""
        return self._totals.true[0]

    @property
    def predicted(self) -> np.ndarray:
        """Predicted pixels per class, shape (N,)."""
        return self._totals.pred[0]

    @cached_property
    def groups(self) -> GroupScores | None:
        """The class groups' values (None without groups): see :class:`GroupScores`."""
        if not self.group_classes:
            return None
        assert self.counts.confusion is not None
        members = list(self.group_classes.values())
        v = group_values(self.counts.confusion, members, **self.policy.value_rules())
        return GroupScores(
            names=tuple(self.group_classes), classes=tuple(members),
            tp=v["tp"].astype(np.int64), pred=v["pred"].astype(np.int64),
            true=v["true"].astype(np.int64), iou=v["iou"], dice=v["dice"],
            precision=v["precision"], recall=v["recall"],
            summary={k: float(v[k]) for k in ("miou", "mdice", "mprecision", "mrecall")},
        )  # fmt: skip

    @cached_property
    def instances(self) -> InstanceScores | None:
        """Cityscapes' instance-weighted iIoU of the classes and the groups.

        None unless the counts carry instance sums and ``instance_sizes`` were given.
        Computed as the official evaluator does, whatever the policy (no smoothing; NaN
        where the denominator is 0); see :class:`~fastseg.instances.InstanceScores`.
        """
        sums, sizes = self.counts.instances, self.instance_sizes
        if sums is None or sizes is None or self.counts.confusion is None:
            return None
        return instance_scores(sums, sizes, self.counts.confusion, self.kept,
                               self.group_classes)  # fmt: skip

    @property
    def iiou(self) -> Floats:
        """Per-class iIoU (N,); NaN for classes without instances, all NaN without scores."""
        scores = self.instances
        return np.full(self.num_classes, np.nan) if scores is None else scores.iiou

    @property
    def miiou(self) -> float:
        """Mean iIoU over the kept classes that have one (NaN without)."""
        scores = self.instances
        return float("nan") if scores is None else scores.summary["miiou"]

    # ------------------------------------------------ beyond region overlap (extras)

    @cached_property
    def extra_columns(self) -> dict[str, Floats]:
        """Per-class values of the per-image statistics the counts carry, (N,) each.

        ``boundary_iou`` (data-set sums of the boundary counts, :mod:`fastseg.boundary`),
        ``surface_dice`` and ``hd95`` (means over the cases that have a value,
        :mod:`fastseg.surface`); only those the counts hold. NaN where undefined.
        """
        columns: dict[str, Floats] = {}
        for x in self.counts.extras.values():
            columns.update(x.class_values())
        return columns

    @cached_property
    def extra_summary(self) -> dict[str, float]:
        """Summaries of the extras, by name.

        The mean of each :attr:`extra_columns` over the kept classes that have a value
        (``mboundary_iou``, ``msurface_dice``, ``mhd95``), and ``ece`` / ``mce`` of the
        confidence histograms (:mod:`fastseg.calibration`).
        """
        out: dict[str, float] = {}
        for name, values in self.extra_columns.items():
            out["m" + name] = float(class_mean(values[np.newaxis], self.kept)[0])
        calibration = self.counts.calibration
        if calibration is not None:
            out["ece"] = float(calibration.ece())
            out["mce"] = float(calibration.mce())
        return out

    @property
    def ece(self) -> float:
        """Expected calibration error of the confidences (NaN without calibration)."""
        return self.extra_summary.get("ece", float("nan"))

    @property
    def mce(self) -> float:
        """Maximum calibration error over the bins (NaN without calibration)."""
        return self.extra_summary.get("mce", float("nan"))

    def _class_values(self, metric: Metric) -> Floats:
        if self.policy.aggregation == "dataset":
            t = self._totals
            return metric_values(metric, t.tp, t.pred, t.true, **self.policy.value_rules())[0]
        return image_class_means(self.per_image_values(metric), self._ones)[0]

    # ---------------------------------------------------------------- summaries

    @cached_property
    def summary(self) -> dict[str, float]:
        """``miou``, ``mdice``, ``aacc``, ``macc``, ``fwiou`` as floats (NaN if undefined)."""
        t = self._totals
        totals = totals_summary(t.tp, t.pred, t.true, self.kept, **self.policy.value_rules())
        out: dict[str, float] = {k: float(v[0]) for k, v in totals.items()}
        aggregation = self.policy.aggregation
        if aggregation != "dataset":
            for metric in METRICS:
                prepared = prepare_image_aggregation(
                    self.per_image_values(metric), self.kept, aggregation
                )
                mean = image_aggregation_mean(prepared, self.kept, self._ones, aggregation)
                out["m" + metric] = float(mean[0])
        return out

    @property
    def miou(self) -> float:
        """Mean IoU under the policy."""
        return self.summary["miou"]

    @property
    def mdice(self) -> float:
        """Mean Dice under the policy."""
        return self.summary["mdice"]

    @property
    def aacc(self) -> float:
        """Pixel accuracy ``sum tp / sum true``."""
        return self.summary["aacc"]

    @property
    def macc(self) -> float:
        """Mean class accuracy (recall) over the kept classes."""
        return self.summary["macc"]

    @property
    def fwiou(self) -> float:
        """Frequency-weighted IoU over the kept classes."""
        return self.summary["fwiou"]

    # ---------------------------------------------------------------- per image

    def per_image_values(self, metric: Metric = "iou") -> Floats:
        """IoU or Dice per image and class under the policy (presence, empty, smooth), (B, N)."""
        self._require_images("per-image values")
        return self._image_values[_metric(metric)]

    def image_means(self, metric: Metric = "iou") -> Floats:
        """Each image's mean IoU or Dice over the kept classes, (B,); NaN where none counts."""
        return class_mean(self.per_image_values(metric), self.kept)

    @cached_property
    def _image_values(self) -> dict[Metric, Floats]:
        c = self.counts
        rules = self.policy.value_rules()
        return {m: metric_values(m, c.tp, c.pred, c.true, **rules) for m in METRICS}

    @cached_property
    def _ones(self) -> Floats:
        """Weights of the report's own value: every image once, shape (1, B)."""
        return np.ones((1, self.counts.n_images))

    def post_means(self) -> dict[str, dict[str, float]]:
        """The post's smoothed per-image means of the kept classes.

        Returns
        -------
        dict
            ``{"iou": {"standard": x, "naive": y}, "dice": {...}}`` for hard counts,
            ``{"iou": {"soft": x}, "dice": {"soft": y}}`` for soft counts: the numbers of
            :func:`fastseg.metrics` with ``drop_last=False`` on the kept classes (so
            excluding the last class gives ``drop_last=True``).
        """
        self._require_images("post-style means")
        c, kept = self.counts, self.kept
        tp, pred, true = c.tp[:, kept], c.pred[:, kept], c.true[:, kept]
        kinds = {"soft": False} if c.soft else {"standard": False, "naive": True}
        means: dict[str, dict[str, float]] = {}
        for m in METRICS:
            means[m] = {k: float(post_mean(tp, pred, true, m, naive=v, drop_last=False))
                        for k, v in kinds.items()}  # fmt: skip
        return means

    @explain_keywords({"metric": "metric is by= here (worst(k, by='dice'))"})
    def worst(self, k: int = 10, by: Metric = "iou") -> list[ImageScore]:
        """The `k` images with the lowest mean IoU (or Dice) over the kept classes.

        Images in which no kept class counts (their mean is NaN) are left out; ties keep
        the images' order.
        """
        self._require_images("worst()")
        scores = self.image_means(by)
        order = [i for i in np.argsort(scores, kind="stable") if not np.isnan(scores[i])]
        assert self.ids is not None
        return [ImageScore(int(i), self.ids[i], float(scores[i])) for i in order[:k]]

    # ---------------------------------------------------------------- bootstrap

    @explain_keywords(_BOOTSTRAP_HINTS)
    def bootstrap(self, metric: Summary = "miou", n_boot: int = 1000, seed: int = 0) -> Floats:
        """The summary `metric` of `n_boot` resamples of the images, shape (n_boot,).

        Parameters
        ----------
        metric : {'miou', 'mdice', 'aacc', 'macc', 'fwiou'}
        n_boot : int
            Resamples.
        seed : int
            Seed of :func:`numpy.random.default_rng`.

        Notes
        -----
        Resample ``r`` draws B images uniformly with replacement
        (:func:`fastseg.bootstrap.resample_weights`): image ``b`` counts ``w[r, b]``
        times. The metric of the resample is the report's metric of those images, from
        weighted sums: ``w @ counts`` for the data-set aggregation (exact integer sums, in
        float64 while they stay below 2**53, else in int64), weighted means of the
        per-image values for the ``'image'`` and ``'sample'`` aggregations. The same
        `seed` gives the same numbers. See :func:`fastseg.bootstrap.bootstrap_samples`.
        """
        return bootstrap_samples(self, metric, n_boot, seed)

    @explain_keywords(_BOOTSTRAP_HINTS)
    def confidence_interval(
        self, metric: Summary = "miou", level: float = 0.95, n_boot: int = 1000, seed: int = 0
    ) -> Interval:
        """Percentile bootstrap interval of a summary over images (see :meth:`bootstrap`).

        Parameters
        ----------
        metric : {'miou', 'mdice', 'aacc', 'macc', 'fwiou'}
        level : float
            Coverage, in (0, 1).
        n_boot : int
            Resamples.
        seed : int
            Seed of :func:`numpy.random.default_rng`.

        Returns
        -------
        Interval
            ``(low, high, estimate, level, n_boot)``: the ``(1 - level) / 2`` and
            ``(1 + level) / 2`` quantiles of the resampled metric (resamples where it is
            NaN left out), and the report's own value.

        Notes
        -----
        A percentile interval assumes the resampled metric is centred on the estimate.
        IoU is a ratio of sums, biased under resampling by O(1 / images per class): with
        classes present in few images (e.g. 300 ADE20K-like images, ~20 per class) the
        bias can exceed the spread and the interval exclude the estimate. Compare
        ``bootstrap(...).mean()`` with the estimate to see it.
        """
        return percentile_interval(self, metric, level, n_boot, seed)

    # ---------------------------------------------------------------- outputs

    def class_rows(self) -> list[dict[str, Any]]:
        """One dict per class: index, name, excluded, and the per-class values.

        Keys ``index``, ``name``, ``excluded``, then the columns
        :data:`fastseg.render.COLUMNS`: ``iou``, ``dice``, ``precision``, ``recall``,
        ``support``, ``predicted``.
        """
        return render.class_rows(self)

    def to_dict(self) -> dict[str, Any]:
        """Everything in the report as JSON-safe Python objects (NaN as None).

        Keys: ``format``, ``format_version``, ``fastseg_version``, ``complete``, ``kind``
        (hard / soft), ``preset``, ``policy``, ``num_classes``, ``class_names``,
        ``per_image``, ``n_images``, ``pixels``, ``ignored``, ``summary``, ``classes``
        (:meth:`class_rows`), ``confusion_matrix`` (None for soft counts), ``post_means``
        and ``images`` (ids, mIoU and mDice per image; both None without per-image
        counts), ``groups`` (:meth:`GroupScores.rows`) and ``group_summary`` (both None
        without groups), ``instances`` (None without instance scores: see
        :func:`fastseg.render.to_dict`) and ``meta``. With instance scores the class rows
        also hold ``iiou``.
        """
        return render.to_dict(self)

    def per_case(self) -> dict[str, Any]:
        """Per image and class counts and values in nnU-Net's ``summary.json`` layout.

        ``metric_per_case`` (one entry per image: ``id`` and ``metrics``, class index ->
        ``Dice``, ``IoU``, ``FP``, ``TP``, ``FN``, ``TN``, ``n_pred``, ``n_ref``), ``mean``
        (class -> each of those averaged over the images, NaN left out) and
        ``foreground_mean`` (each averaged over the classes of ``mean`` but class 0 and
        the excluded ones, as nnU-Net: a NaN class mean makes it NaN), plus
        ``class_names``. NaN stays NaN (nnU-Net's files hold ``NaN``). Needs per-image
        counts; see :func:`fastseg.render.per_case_dict`.
        """
        return render.per_case_dict(self)

    def cityscapes(self) -> dict[str, Any]:
        """The official Cityscapes evaluator's result dict (``resultPixelLevelSemanticLabeling``).

        ``classScores``, ``categoryScores`` (the groups), their ``average...`` keys,
        ``classInstScores`` / ``categoryInstScores`` (iIoU; NaN without instance scores),
        ``confMatrix``, ``priors`` and ``labels``; laid out in Cityscapes' labelIds when
        the classes are its 19 evaluated classes. See :func:`fastseg.render.cityscapes_dict`.
        """
        return render.cityscapes_dict(self)

    @explain_keywords({"format": "format is layout= here ('report', 'per-case' or 'cityscapes')"})
    def to_json(self, path: str | os.PathLike[str], layout: JsonLayout = "report") -> Path:
        """Write the report as JSON, atomically; return the path.

        `layout`: ``"report"`` (:meth:`to_dict`, strict JSON: NaN as null),
        ``"per-case"`` (:meth:`per_case`) or ``"cityscapes"`` (:meth:`cityscapes`); the
        last two keep NaN as ``NaN``, as the files of nnU-Net and of the Cityscapes
        evaluator do (Python's ``json`` reads it).
        """
        return render.write_json(self, path, layout)

    def to_csv(self, path: str | os.PathLike[str]) -> Path:
        """Write the class rows, group rows and summaries as CSV (NaN as ""), atomically.

        See :func:`fastseg.render.csv_rows` for the columns.
        """
        return render.write_csv(self, path)

    def plot(self, path: str | os.PathLike[str], *, dpi: int = 150) -> Path:
        """Save per-class IoU bars (sorted) and the row-normalised confusion heat map.

        The format follows the suffix of `path` (PNG by default). Needs matplotlib (the
        ``plot`` extra: ``pip install 'fastseg[plot]'``); soft counts have no confusion
        matrix, so only the bars are drawn.
        """
        return render.write_plot(self, path, dpi=dpi)

    def __str__(self) -> str:
        return render.text(self)

    def __repr__(self) -> str:
        return (
            f"<Report {self.preset}: mIoU={self.miou:.4f}, {self.num_classes} classes, "
            f"{self.n_images} images{'' if self.complete else ', INCOMPLETE'}>"
        )

    def _require_images(self, what: str) -> None:
        """Raise a ValueError saying that `what` needs per-image counts, if there are none."""
        if not self.per_image:
            raise ValueError(
                f"{what} needs per-image counts, but the accumulator was made with "
                "per_image=False (only data-set totals were kept)"
            )


# --------------------------------------------------------------------- helpers


def _metric(metric: str) -> Metric:
    for name in METRICS:
        if metric == name:
            return name
    raise ValueError(f"metric must be one of {METRICS}; got {metric!r}")


def _ids(ids: Sequence[str] | None, n: int) -> tuple[str, ...]:
    if ids is None:
        return tuple(str(i) for i in range(n))
    ids = tuple(str(i) for i in ids)
    if len(ids) != n:
        raise ValueError(f"ids has {len(ids)} entries for {n} images")
    return ids


def _class_names(names: Sequence[str] | None, n: int) -> tuple[str, ...]:
    if names is None:
        return tuple(str(c) for c in range(n))
    names = tuple(str(c) for c in names)
    if len(names) != n:
        raise ValueError(f"class_names has {len(names)} entries for {n} classes")
    return names


def _json_meta(meta: Mapping[str, Any] | None) -> dict[str, Any]:
    """A JSON-safe deep copy of `meta`, so later changes to the caller's object do not leak."""
    if meta is None:
        return {}
    if not isinstance(meta, Mapping):
        raise TypeError(f"meta must be a mapping; got {type(meta).__name__}")
    try:
        copy: dict[str, Any] = json.loads(json.dumps(render.json_safe(dict(meta)), allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"meta must hold JSON-safe values: {exc}") from exc
    return copy

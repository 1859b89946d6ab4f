"""The Report: data-set metrics of counts under a policy, and its outputs.

A :class:`Report` is computed from a :class:`~fastseg.counts.Counts` value (one row per
image, or one row of data-set totals) under a :class:`~fastseg.policy.Policy` chosen by a
preset and keyword overrides. It gives per-class IoU, Dice, precision, recall, support and
predicted pixels, the summaries (mIoU, mDice, aAcc, mAcc, fwIoU), the confusion matrix,
per-image values, a bootstrap confidence interval, the worst images, and writes them as a
dict, JSON, CSV, an aligned text table and a plot.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from fastseg._files import write_atomically
from fastseg.counts import Counts
from fastseg.policy import (
    METRICS,
    PRESET_SOURCES,
    PRESETS,
    Policy,
    image_class_means,
    masked,
    nanmean,
    ratio,
    resolve_policy,
    row_values,
    totals_summary,
    weighted_means,
)
from fastseg.scores import post_metric

__all__ = ["PRESETS", "ImageScore", "Interval", "Policy", "Report"]

#: Version of the dict / JSON layout written by :meth:`Report.to_dict`.
FORMAT_VERSION = 1
#: Summary names, in display order, with their labels.
SUMMARIES = {"miou": "mIoU", "mdice": "mDice", "aacc": "aAcc", "macc": "mAcc", "fwiou": "fwIoU"}
#: Per-class columns of the table, the CSV and the dict.
COLUMNS = ("iou", "dice", "precision", "recall", "support", "predicted")
#: Resamples drawn at once by the bootstrap: bounds its weights to BOOT_BLOCK x B float64
#: (8 MB at 10 000 images) while keeping each matrix product large enough for BLAS.
BOOT_BLOCK = 100


class Interval(NamedTuple):
    """A bootstrap confidence interval and the point estimate it brackets."""

    low: float
    high: float
    estimate: float
    level: float
    n_boot: int


class ImageScore(NamedTuple):
    """One image's score: its position in the counts, its id and its mean over classes."""

    position: int
    id: str
    score: float


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

    Notes
    -----
    Per class ``c`` from the summed counts (never smoothed, whatever the policy)::

        precision_c = tp_c / pred_c      recall_c = tp_c / true_c   (NaN for 0 / 0)
        support_c   = true_c             predicted_c = pred_c

    IoU and Dice per class and their means mIoU and mDice follow the policy (formulas in
    :class:`~fastseg.policy.Policy`); aAcc, mAcc and fwIoU are those of
    :func:`~fastseg.policy.totals_summary`. Recall is the class accuracy of mmsegmentation
    (``Acc``); aAcc equals ``trace(confusion) / sum(confusion)`` for hard counts and is
    computed from the counts, so soft counts have it too.
    """

    def __init__(
        self,
        counts: Counts,
        *,
        ids: Sequence[str] | None = None,
        class_names: Sequence[str] | None = None,
        per_image: bool = True,
        preset: str | None = None,
        aggregation: str | None = None,
        empty: str | float | None = None,
        presence: str | None = None,
        exclude: Sequence[int | str] | None = None,
        meta: Mapping[str, Any] | None = None,
        smooth: float | None = None,
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
    def iou(self) -> np.ndarray:
        """Per-class IoU under the policy, shape (N,)."""
        return self._class_values("iou")

    @cached_property
    def dice(self) -> np.ndarray:
        """Per-class Dice under the policy, shape (N,)."""
        return self._class_values("dice")

    @cached_property
    def precision(self) -> np.ndarray:
        """Per-class ``tp / pred`` of the summed counts, shape (N,)."""
        return ratio(self._totals.tp[0], self._totals.pred[0])

    @cached_property
    def recall(self) -> np.ndarray:
        """Per-class ``tp / true`` of the summed counts (class accuracy), shape (N,)."""
        return ratio(self._totals.tp[0], self._totals.true[0])

    @property
    def support(self) -> np.ndarray:
        """Truth pixels per class, shape (N,)."""
        return self._totals.true[0]

    @property
    def predicted(self) -> np.ndarray:
        """Predicted pixels per class, shape (N,)."""
        return self._totals.pred[0]

    def _class_values(self, metric: str) -> np.ndarray:
        if self.policy.aggregation == "dataset":
            t = self._totals
            return row_values(metric, t.tp, t.pred, t.true, self.policy)[0]
        return image_class_means(self.per_image_values(metric), self._ones)[0]

    # ---------------------------------------------------------------- summaries

    @cached_property
    def summary(self) -> dict[str, float]:
        """``miou``, ``mdice``, ``aacc``, ``macc``, ``fwiou`` as floats (NaN if undefined)."""
        t = self._totals
        out = {k: float(v[0]) for k, v in totals_summary(t.tp, t.pred, t.true, self.policy,
                                                          self.kept).items()}  # fmt: skip
        if self.policy.aggregation != "dataset":
            for metric in METRICS:
                out["m" + metric] = float(self._image_aggregate(metric, self._ones)[0])
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

    def per_image_values(self, metric: str = "iou") -> np.ndarray:
        """IoU or Dice per image and class under the policy (presence, empty, smooth), (B, N)."""
        self._require_images("per-image values")
        return self._image_values[_metric(metric)]

    def image_means(self, metric: str = "iou") -> np.ndarray:
        """Each image's mean IoU or Dice over the kept classes, (B,); NaN where none counts."""
        return nanmean(self.per_image_values(metric)[:, self.kept], axis=1)

    @cached_property
    def _image_values(self) -> dict[str, np.ndarray]:
        c = self.counts
        return {m: row_values(m, c.tp, c.pred, c.true, self.policy) for m in METRICS}

    @cached_property
    def _ones(self) -> np.ndarray:
        return np.ones((1, self.counts.n_images))

    def _image_aggregate(self, metric: str, weights: np.ndarray) -> np.ndarray:
        """The mean IoU / Dice of aggregation 'image' or 'sample', per row of `weights`."""
        return self._image_statistic(metric)(weights)

    def _image_statistic(self, metric: str) -> Callable[[np.ndarray], np.ndarray]:
        """Weights (R, B) -> mean metric (R,) of the 'image' or 'sample' aggregation."""
        if self.policy.aggregation == "image":
            prepared = masked(self.per_image_values(metric))
            return lambda w: nanmean(weighted_means(w, prepared)[:, self.kept], axis=1)
        prepared = masked(self.image_means(metric))
        return lambda w: weighted_means(w, prepared)[:, 0]

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
        c = self.counts
        kept = Counts(c.tp[:, self.kept], c.pred[:, self.kept], c.true[:, self.kept])
        kinds = {"soft": False} if c.soft else {"standard": False, "naive": True}
        means = {}
        for m in METRICS:
            means[m] = {k: float(post_metric(kept, m, naive=v, drop_last=False))
                        for k, v in kinds.items()}  # fmt: skip
        return means

    def worst(self, k: int = 10, by: str = "iou") -> list[ImageScore]:
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

    def bootstrap(self, metric: str = "miou", n_boot: int = 1000, seed: int = 0) -> np.ndarray:
        """The summary `metric` of `n_boot` resamples of the images, shape (n_boot,).

        Notes
        -----
        Resample ``r`` draws B images uniformly with replacement
        (:func:`resample_weights`): image ``b`` counts ``w[r, b]`` times. The metric of
        the resample is the report's metric of those images, from weighted sums:
        ``w @ counts`` for the data-set aggregation (exact integer sums, in float64 while
        they stay below 2**53, else in int64), weighted means of the per-image values for
        the ``'image'`` and ``'sample'`` aggregations. The same `seed` gives the same
        numbers.
        """
        key = _summary_key(metric)
        self._require_images("the bootstrap")
        if self.counts.n_images == 0:
            raise ValueError("the bootstrap needs at least one image")
        if n_boot < 1:
            raise ValueError(f"n_boot must be >= 1; got {n_boot}")
        statistic = self._resampled_statistic(key)
        out = np.empty(n_boot)
        for start, weights in resample_weights(seed, self.counts.n_images, n_boot):
            out[start : start + len(weights)] = statistic(weights)
        return out

    def confidence_interval(
        self, metric: str = "miou", level: float = 0.95, n_boot: int = 1000, seed: int = 0
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
        if not 0 < level < 1:
            raise ValueError(f"level must be in (0, 1); got {level}")
        samples = self.bootstrap(metric, n_boot=n_boot, seed=seed)
        samples = samples[~np.isnan(samples)]
        low, high = (math.nan, math.nan)
        if samples.size:
            low, high = (float(q) for q in np.quantile(samples, [(1 - level) / 2, (1 + level) / 2]))
        return Interval(low, high, self.summary[_summary_key(metric)], level, n_boot)

    def _resampled_statistic(self, key: str) -> Callable[[np.ndarray], np.ndarray]:
        if key in ("miou", "mdice") and self.policy.aggregation != "dataset":
            image_statistic = self._image_statistic(key[1:])
            return lambda weights: image_statistic(weights.astype(np.float64))
        c = self.counts
        stacked = np.hstack([c.tp, c.pred, c.true])
        # Float64 sums of integers are exact below 2**53; a weight is at most B.
        exact_in_float = c.soft or int(stacked.sum(axis=0).max(initial=0)) * c.n_images < 2**53
        if exact_in_float:
            stacked = stacked.astype(np.float64)

        def statistic(weights: np.ndarray) -> np.ndarray:
            w = weights.astype(np.float64) if exact_in_float else weights
            tp, pred, true = np.split(w @ stacked, 3, axis=1)
            return totals_summary(tp, pred, true, self.policy, self.kept)[key]

        return statistic

    # ---------------------------------------------------------------- outputs

    def class_rows(self) -> list[dict[str, Any]]:
        """One dict per class: index, name, excluded, and the :data:`COLUMNS`."""
        columns = {name: getattr(self, name) for name in COLUMNS}
        number = float if self.counts.soft else int
        rows = []
        for c, name in enumerate(self.class_names):
            row: dict[str, Any] = {"index": c, "name": name, "excluded": not self.kept[c]}
            for col, values in columns.items():
                value = values[c]
                row[col] = number(value) if col in ("support", "predicted") else float(value)
            rows.append(row)
        return rows

    def to_dict(self) -> dict[str, Any]:
        """Everything in the report as JSON-safe Python objects (NaN as None).

        Keys: ``format``, ``format_version``, ``fastseg_version``, ``complete``, ``kind``
        (hard / soft), ``preset``, ``policy``, ``num_classes``, ``class_names``,
        ``per_image``, ``n_images``, ``pixels``, ``ignored``, ``summary``, ``classes``
        (:meth:`class_rows`), ``confusion_matrix`` (None for soft counts), ``post_means``
        and ``images`` (ids, mIoU and mDice per image; both None without per-image
        counts) and ``meta``.
        """
        import fastseg  # the package imports this module: look the version up at call time

        confusion = self.confusion_matrix
        images = None
        if self.per_image:
            images = {"ids": list(self.ids or ()), "miou": self.image_means("iou").tolist(),
                      "mdice": self.image_means("dice").tolist()}  # fmt: skip
        out = {
            "format": "fastseg.report",
            "format_version": FORMAT_VERSION,
            "fastseg_version": fastseg.__version__,
            "complete": self.complete,
            "kind": "soft" if self.counts.soft else "hard",
            "preset": self.preset,
            "policy": self.policy.to_dict() | {"excluded": np.flatnonzero(~self.kept).tolist()},
            "num_classes": self.num_classes,
            "class_names": list(self.class_names),
            "per_image": self.per_image,
            "n_images": self.n_images,
            "pixels": self.pixels,
            "ignored": self.ignored,
            "summary": dict(self.summary),
            "classes": self.class_rows(),
            "confusion_matrix": None if confusion is None else confusion.tolist(),
            "post_means": self.post_means() if self.per_image else None,
            "images": images,
            "meta": self.meta,
        }
        return _json_safe(out)

    def to_json(self, path: str | os.PathLike[str]) -> Path:
        """Write :meth:`to_dict` as strict JSON (no NaN), atomically; return the path."""
        text = json.dumps(self.to_dict(), indent=1, allow_nan=False)
        return write_atomically(path, lambda tmp: tmp.write_text(text + "\n", encoding="utf-8"))

    def to_csv(self, path: str | os.PathLike[str]) -> Path:
        """Write one row per class (:meth:`class_rows`; NaN as an empty field), atomically."""
        fields = ["index", "name", "excluded", *COLUMNS]

        def write(tmp: Path) -> None:
            with tmp.open("w", newline="", encoding="utf-8") as f:
                writer = csv.DictWriter(f, fieldnames=fields)
                writer.writeheader()
                for row in _json_safe(self.class_rows()):
                    writer.writerow({k: "" if v is None else v for k, v in row.items()})

        return write_atomically(path, write)

    def plot(self, path: str | os.PathLike[str], *, dpi: int = 150) -> Path:
        """Save per-class IoU bars (sorted) and the row-normalised confusion heat map.

        The format follows the suffix of `path` (PNG by default). Needs matplotlib (the
        ``plot`` extra: ``pip install 'fastseg[plot]'``); soft counts have no confusion
        matrix, so only the bars are drawn.
        """
        figure = _figure(self)
        fmt = Path(path).suffix.lstrip(".").lower() or "png"
        return write_atomically(path, lambda tmp: figure.savefig(tmp, format=fmt, dpi=dpi))

    def __str__(self) -> str:
        return "\n".join(_text(self))

    def __repr__(self) -> str:
        return (
            f"<Report {self.preset}: mIoU={self.miou:.4f}, {self.num_classes} classes, "
            f"{self.n_images} images{'' if self.complete else ', INCOMPLETE'}>"
        )

    def _require_images(self, what: str) -> None:
        if not self.per_image:
            raise ValueError(
                f"{what} needs per-image counts, but the accumulator was made with "
                "per_image=False (only data-set totals were kept)"
            )


# --------------------------------------------------------------------- helpers


def resample_weights(seed: int, n_images: int, n_boot: int) -> Iterator[tuple[int, np.ndarray]]:
    """Bootstrap weights: ``(start, w)`` blocks, ``w[r, b]`` = draws of image b in resample r.

    Each resample draws `n_images` indices uniformly with replacement from
    ``numpy.random.default_rng(seed)``, :data:`BOOT_BLOCK` resamples at a time; ``w`` is
    int64 of shape (block, n_images) and every row sums to `n_images`.
    """
    rng = np.random.default_rng(seed)
    for start in range(0, n_boot, BOOT_BLOCK):
        m = min(BOOT_BLOCK, n_boot - start)
        # int32 draws are three times faster to make and count than int64 ones.
        dtype = np.int32 if n_images < 2**31 else np.int64
        draws = rng.integers(0, n_images, size=(m, n_images), dtype=dtype)
        draws = draws + np.arange(m, dtype=np.int64)[:, None] * n_images
        yield start, np.bincount(draws.ravel(), minlength=m * n_images).reshape(m, n_images)


def _metric(metric: str) -> str:
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}; got {metric!r}")
    return metric


def _summary_key(metric: str) -> str:
    key = metric.lower()
    if key not in SUMMARIES:
        raise ValueError(f"metric must be one of {tuple(SUMMARIES)}; got {metric!r}")
    return key


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
        copy: dict[str, Any] = json.loads(json.dumps(_json_safe(dict(meta)), allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"meta must hold JSON-safe values: {exc}") from exc
    return copy


def _json_safe(obj: Any) -> Any:
    """Python / NumPy values as JSON types; NaN and infinities as None."""
    if isinstance(obj, Mapping):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | np.ndarray):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _fmt(value: float) -> str:
    return "nan" if math.isnan(value) else f"{value:.4f}"


def _count(value: float, soft: bool) -> str:
    return f"{value:.1f}" if soft else str(int(value))


def _aligned(header: list[str], rows: list[list[str]], left: int) -> list[str]:
    """Columns padded to one width each; the first `left` columns left-aligned."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(
            cell.ljust(w) if i < left else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return [line(header), rule, *(line(r) for r in rows)]


def _text(report: Report) -> list[str]:
    """The lines of ``str(report)``."""
    soft = report.counts.soft
    n_images = "?" if report.n_images is None else report.n_images
    pixels = _count(report.pixels, soft)
    lines = []
    if not report.complete:
        skipped = report.meta.get("skipped") or []
        what = f"{len(skipped)} skipped: {skipped[:3]}{' ...' if len(skipped) > 3 else ''}"
        lines.append(f"INCOMPLETE: {what if skipped else 'marked incomplete'} (see meta)")
    lines.append(
        f"fastseg report: {report.num_classes} classes, {n_images} images, {pixels} pixels "
        f"counted, {report.ignored} ignored ({'soft' if soft else 'hard'} counts)"
    )
    source = PRESET_SOURCES.get(report.preset, "")
    lines.append(f"preset {report.preset} ({source}): {report.policy.describe()}")
    lines.append("")
    header = ["#", "class", "IoU", "Dice", "Precision", "Recall", "Support", "Predicted"]
    rows = [
        [f"{c}{'' if report.kept[c] else '*'}", name[:24], _fmt(report.iou[c]),
         _fmt(report.dice[c]), _fmt(report.precision[c]), _fmt(report.recall[c]),
         _count(report.support[c], soft), _count(report.predicted[c], soft)]
        for c, name in enumerate(report.class_names)
    ]  # fmt: skip
    lines += _aligned(header, rows, left=2)
    if not report.kept.all():
        lines.append("* excluded from the means")
    lines.append("")
    lines.append("  ".join(f"{label} {_fmt(report.summary[k])}" for k, label in SUMMARIES.items()))
    return lines


def _figure(report: Report) -> Any:
    """The matplotlib Figure of :meth:`Report.plot` (no pyplot, so no GUI backend)."""
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError(
            "Report.plot needs matplotlib; install the plot extra: pip install 'fastseg[plot]'"
        ) from exc
    n = report.num_classes
    confusion = report.confusion_matrix
    # 0.13 inch (9 pt) per class keeps a 6.5 pt label per row readable at 150 classes.
    height = max(3.0, 0.13 * n)
    fontsize = float(np.clip(72 * height / max(n, 1) * 0.7, 4, 10))
    widths = [6.0] if confusion is None else [6.0, height + 1.5]
    figure = Figure(figsize=(sum(widths) + 1.0, height + 1.5), layout="constrained")
    axes = figure.subplots(1, len(widths), width_ratios=widths, squeeze=False)[0]
    _iou_bars(axes[0], report, fontsize)
    if confusion is not None:
        _confusion_map(figure, axes[1], confusion, report.class_names, fontsize)
    return figure


def _iou_bars(ax: Any, report: Report, fontsize: float) -> None:
    iou = report.iou
    shown = [c for c in np.argsort(iou, kind="stable") if not np.isnan(iou[c])]
    names = [report.class_names[c] + ("" if report.kept[c] else " *") for c in shown]
    bars = ax.barh(np.arange(len(shown)), iou[shown], color="tab:blue")
    if len(shown) <= 40:  # values beside the bars, so a zero IoU is visible too
        ax.bar_label(bars, [_fmt(iou[c]) for c in shown], padding=2, fontsize=fontsize)
    ax.set_yticks(np.arange(len(shown)), names, fontsize=fontsize)
    ax.set_ylim(len(shown) - 0.5, -0.5)  # lowest IoU at the top
    ax.set_xlim(0, 1)
    ax.grid(axis="x", alpha=0.4)
    hidden = len(iou) - len(shown)
    note = f"; {hidden} with empty union not shown" if hidden else ""
    ax.set_title(f"IoU per class, sorted (mIoU {_fmt(report.miou)}{note})", fontsize=10)
    ax.set_xlabel("IoU (* excluded from the means)" if not report.kept.all() else "IoU")


def _confusion_map(
    figure: Any, ax: Any, confusion: np.ndarray, names: Sequence[str], fontsize: float
) -> None:
    from matplotlib.colors import PowerNorm

    rows = ratio(confusion, confusion.sum(axis=1, keepdims=True))
    # A square-root colour scale: confusions of a few percent stay visible beside the
    # diagonal of 150 classes, where a linear scale leaves them black.
    norm = PowerNorm(gamma=0.5, vmin=0, vmax=1)
    image = ax.imshow(np.ma.masked_invalid(rows), norm=norm, cmap="viridis",
                      interpolation="nearest")  # fmt: skip
    ticks = np.arange(len(names))
    ax.set_xticks(ticks, names, fontsize=fontsize, rotation=90)
    ax.set_yticks(ticks, names, fontsize=fontsize)
    ax.set_xlabel("prediction")
    ax.set_ylabel("truth (blank row: no truth pixels)")
    ax.set_title("row-normalised confusion (sqrt colour scale)", fontsize=10)
    figure.colorbar(image, ax=ax, shrink=0.5)

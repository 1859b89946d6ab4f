"""The streaming Accumulator: add counts batch by batch, merge, save, report.

An :class:`Accumulator` is a small value holding the counts seen so far (per image, with
optional ids, or only data-set totals) and the options that decide how batches are read.
``update`` runs the kernel on one batch and adds its counts; ``+`` merges two
accumulators; both combine counts with :meth:`fastseg.counts.Counts.merge`, the step the
Dask layer uses to combine chunks; ``compute`` makes a :class:`~fastseg.report.Report`.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from fastseg._version import __version__
from fastseg.counting import count_prepared
from fastseg.counts import Counts, corrupt_file, counts_from_arrays, load_versioned, save_counts
from fastseg.extras import extra_options, extra_settings
from fastseg.formulas import Presence
from fastseg.inputs import prepare, prepare_options
from fastseg.labelmaps import LabelMap, jsonable
from fastseg.policy import Aggregation, EmptyValue, explain_keywords, resolve_groups
from fastseg.report import Report

#: Confusion-matrix bytes of pending updates above which they are merged at once.
PENDING_BYTES = 16 * 2**20

#: Version of the file layout written by :meth:`Accumulator.save`: 2 adds the per-image
#: statistics (calibration histograms, ...); files without them are still version 1.
FORMAT_VERSION = 2
_PLAIN_VERSION = 1
_FORMAT = "fastseg.accumulator"

#: What :meth:`Accumulator.compute` says of a keyword that is the Accumulator's own.
_CONSTRUCTOR_ONLY = {
    **{name: f"{name} is a reading option: pass it to the Accumulator "
             f"(Accumulator(..., {name}=...)), which reads every batch update() gets with it"
       for name in inspect.signature(prepare_options).parameters},
    **{name: f"{name} is the Accumulator's: pass it when making it (Accumulator(..., "
             f"{name}=...))" for name in ("soft", "per_image", "class_names")},
    "ids": "ids belong to the batch they name: pass them to update(y_true, y_pred, ids=...)",
}  # fmt: skip


class Accumulator:
    """Counts of a stream of batches, and the data-set report they give.

    Parameters
    ----------
    num_classes : int
        N, the number of classes.
    ignore_index : int, optional
        Truth label whose pixels are skipped entirely.
    class_axis : int, optional
        Class axis of score / one-hot inputs (default: the last axis).
    class_names : sequence of str, optional
        One name per class, used by the report.
    per_image : bool, default True
        Keep the counts of every image (needed for per-image metrics, ``worst`` and
        bootstrap intervals). With False only the data-set totals are kept: constant
        memory for arbitrarily long streams.
    soft : bool, default False
        Sum ``|p t|``, ``|p|``, ``|t|`` (soft metrics) instead of argmax counts.
    threshold, spatial_dims : optional
        As for :func:`fastseg.counts`.
    label_map : dict, array, path or LabelMap, optional
        Stored truth id -> class index (every other id is the ignore index); see
        :func:`fastseg.inputs.prepare`. Files are read once, here.
    label_map_pred : dict, array, path, LabelMap or bool, optional
        The same for label-map predictions; True: the truth's map.
    reduce_zero_label : bool, default False
        mmsegmentation's ``reduce_zero_label`` as the truth's map (id 0 -> ignore, k ->
        k - 1); needs `ignore_index`.
    groups : mapping of str to sequence, optional
        Class groups for the report (:class:`~fastseg.report.Report`); class names are
        resolved against `class_names`.
    calibration : int, optional
        Number of confidence bins: also histogram the confidence of every counted
        pixel's predicted class, for ECE, MCE and the reliability diagram
        (:mod:`fastseg.calibration`). Needs float probabilities as predictions.
    calibration_softmax : bool, default False
        With `calibration`: the predictions are logits; confidences are their softmax.
    boundary : int or float, optional
        Also count boundary pixels for Boundary IoU (:mod:`fastseg.boundary`) at this
        width: pixels (``>= 1``) or a fraction of the image diagonal (``< 1``).
    surface, spacing, percentile : optional
        Also score each image's surfaces (:mod:`fastseg.surface`, MONAI's numbers):
        surface Dice at tolerance `surface` and the `percentile` Hausdorff distance
        (default 95; None: the maximum), with voxel `spacing` (default 1). Per-case
        scores: needs ``per_image=True``.

    Notes
    -----
    Hard counts are integers, so any split of the data into batches and any order of
    merging gives bit-identical counts and reports. Soft sums are exact per image; their
    data-set totals depend on the order images are added only through float rounding.

    Examples
    --------
    >>> import numpy as np, fastseg
    >>> acc = fastseg.Accumulator(3, ignore_index=255)
    >>> for truth, scores in [(np.zeros((2, 4, 4), np.uint8), np.ones((2, 4, 4, 3)))]:
    ...     _ = acc.update(truth, scores)
    >>> acc.n_images
    2
    """

    def __init__(
        self,
        num_classes: int,
        *,
        ignore_index: int | None = None,
        class_axis: int | None = None,
        class_names: Sequence[str] | None = None,
        per_image: bool = True,
        soft: bool = False,
        threshold: float | None = None,
        spatial_dims: int | None = None,
        label_map: Any = None,
        label_map_pred: Any = None,
        reduce_zero_label: bool = False,
        groups: Mapping[str, Sequence[int | str]] | None = None,
        calibration: int | None = None,
        calibration_softmax: bool = False,
        boundary: float | None = None,
        surface: Any = None,
        spacing: Any = None,
        percentile: float | None = 95.0,
    ) -> None:
        # The reading options are checked now, by the rules every entry point shares,
        # rather than at the first update.
        options = prepare_options(num_classes=num_classes, class_axis=class_axis,
                                  ignore_index=ignore_index, threshold=threshold,
                                  spatial_dims=spatial_dims, label_map=label_map,
                                  label_map_pred=label_map_pred,
                                  reduce_zero_label=reduce_zero_label)  # fmt: skip
        if class_names is not None:
            class_names = [str(name) for name in class_names]
            if len(class_names) != num_classes:
                raise ValueError(
                    f"class_names has {len(class_names)} names for {num_classes} classes"
                )
        self.num_classes = int(num_classes)
        self.ignore_index = None if ignore_index is None else int(ignore_index)
        self.class_axis = None if class_axis is None else int(class_axis)
        self.threshold = None if threshold is None else float(threshold)
        self.spatial_dims = None if spatial_dims is None else int(spatial_dims)
        self.class_names = class_names
        self.per_image = bool(per_image)
        self.soft = bool(soft)
        self.label_map: LabelMap | None = options["label_map"]
        self.label_map_pred: LabelMap | bool | None = options["label_map_pred"]
        self.reduce_zero_label: bool = options["reduce_zero_label"]
        if self.reduce_zero_label and self.ignore_index is None:
            raise ValueError(
                "reduce_zero_label sends id 0 to the ignore index, but there is none: pass "
                "ignore_index (mmsegmentation uses 255)"
            )
        resolve_groups(groups, self.num_classes, class_names)  # checked now
        # The per-image statistics asked for, checked: the options count_prepared takes.
        self._extras = extra_options(
            soft=self.soft, calibration=calibration, calibration_softmax=calibration_softmax,
            boundary=boundary, surface=surface, spacing=spacing, percentile=percentile)  # fmt: skip
        if "surface" in self._extras and not self.per_image:
            raise ValueError(
                "surface metrics are scores per image (case): they need per_image=True"
            )
        settings = extra_settings(self._extras)
        self.calibration: int | None = self._extras.get("calibration")
        self.calibration_softmax = bool(self._extras.get("calibration_softmax"))
        self.boundary: float | None = self._extras.get("boundary")
        #: The surface setting (tolerance, spacing, percentile), or None.
        self.surface: dict[str, Any] | None = settings.get("surface")
        self.groups: dict[str, list[int | str]] | None = (
            None if groups is None else {str(k): list(v) for k, v in groups.items()})  # fmt: skip
        self.reset()

    # ------------------------------------------------------------------ state

    def reset(self) -> Accumulator:
        """Forget every count (the options stay)."""
        # The counts so far, as parts not merged yet: each part's rows follow the previous
        # part's (first_image), so one Counts.merge appends them all when they are read.
        rows = 0 if self.per_image else 1
        self._parts: list[Counts] = [Counts.zeros(rows, self.num_classes, soft=self.soft)]
        self._ids: list[str | None] = []  # None: no id given, the image's position stands in
        self._n_images = 0
        return self

    @property
    def n_images(self) -> int:
        """Number of images (or volumes) added so far."""
        return self._n_images

    @property
    def ids(self) -> list[str]:
        """Per-image ids (``per_image=True`` only); an image added without one gets its position."""
        self._require_per_image("ids")
        return [str(i) if name is None else name for i, name in enumerate(self._ids)]

    @property
    def counts(self) -> Counts:
        """The counts so far: one row per image, or one row of totals (``per_image=False``).

        The parts added since the last read are merged (:meth:`Counts.merge`) once, here,
        and kept merged: updates stay cheap however long the stream.
        """
        if len(self._parts) > 1:
            self._parts = [Counts.merge(self._parts)]
        return self._parts[0]

    def _require_per_image(self, what: str) -> None:
        if not self.per_image:
            raise ValueError(f"{what} needs per-image counts; this Accumulator has per_image=False")

    # ---------------------------------------------------------------- updates

    def update(self, y_true: Any, y_pred: Any, ids: Sequence[Any] | None = None) -> Accumulator:
        """Count one batch and add it.

        Parameters
        ----------
        y_true, y_pred : array_like
            As for :func:`fastseg.counts`: scores (any layout and float dtype), label maps
            or one-hot masks; NumPy arrays, anything NumPy can view (a PyTorch CPU tensor)
            or DLPack producers.
        ids : sequence, optional
            One id per image of the batch (e.g. file names), kept for the report.

        Returns
        -------
        Accumulator
            self, so updates chain.
        """
        prep = prepare(
            y_true,
            y_pred,
            num_classes=self.num_classes,
            class_axis=self.class_axis,
            ignore_index=self.ignore_index,
            soft=self.soft,
            threshold=self.threshold,
            spatial_dims=self.spatial_dims,
            label_map=self.label_map,
            label_map_pred=self.label_map_pred,
            reduce_zero_label=self.reduce_zero_label,
        )
        return self.add_counts(count_prepared(prep, soft=self.soft, **self._extras), ids)

    def add_counts(self, counts: Counts, ids: Sequence[Any] | None = None) -> Accumulator:
        """Add counts made elsewhere (e.g. by :func:`fastseg.counts` or a Dask chunk)."""
        if counts.num_classes != self.num_classes or counts.soft != self.soft:
            raise ValueError(
                f"counts of {counts.num_classes} {'soft' if counts.soft else 'hard'} classes "
                f"cannot be added to an Accumulator of {self.num_classes} "
                f"{'soft' if self.soft else 'hard'} classes"
            )
        self._check_extras(counts, lambda why: ValueError(f"cannot add these counts: {why}"))
        names: list[str | None] = [None] * counts.n_images
        if ids is not None:
            names = [str(i) for i in ids]
            if len(names) != counts.n_images:
                raise ValueError(f"got {len(names)} ids for a batch of {counts.n_images} images")
        return self._append(counts, names, counts.n_images)

    def _extra_settings(self) -> dict[str, dict[str, Any]]:
        """The per-image statistics this accumulator computes: kind -> setting."""
        return extra_settings(self._extras)

    def _check_extras(self, counts: Counts, error: Callable[[str], Exception]) -> None:
        """Raise ``error(why)`` unless `counts` carry this accumulator's per-image statistics.

        Counts that counted nothing may carry none (an empty accumulator's file).
        """
        wanted = self._extra_settings()
        held = {kind: x.setting() for kind, x in counts.extras.items()}
        if held == wanted:
            return
        if not held and not (counts.true.any() or counts.pred.any() or counts.ignored):
            return
        raise error(
            f"they carry {held or 'no per-image statistics'}, this Accumulator computes "
            f"{wanted or 'none'} (its calibration, boundary and surface options)"
        )

    def _append(self, counts: Counts, names: list[str | None], n_images: int) -> Accumulator:
        """Add `counts` of `n_images` images: as the next rows, or into the totals.

        Either way through :meth:`Counts.merge`: per image, the rows are placed after
        those so far and merged when read; totals are merged now (``+`` appends the
        batch's rows to the totals' row, which are then summed in order).
        """
        if self.per_image:
            self._parts.append(counts.starting_at(self._n_images))
            self._ids.extend(names)
            # Each pending part holds an N x N confusion matrix: fold them once they
            # weigh more than a few MiB (at 4 000 classes, every update), so memory does
            # not grow with the number of updates.
            pending = sum(p.confusion.nbytes for p in self._parts if p.confusion is not None)
            if len(self._parts) > 2 and pending > PENDING_BYTES:
                self.counts  # noqa: B018 - the property merges the parts
        else:
            self._parts = [(self._parts[0] + counts).total()]
        self._n_images += n_images
        return self

    # ----------------------------------------------------------------- merging

    def _check_compatible(self, other: Accumulator) -> None:
        fields = ("num_classes", "class_names", "ignore_index", "soft", "per_image",
                  "label_map", "label_map_pred", "reduce_zero_label", "calibration",
                  "calibration_softmax", "boundary", "surface")  # fmt: skip
        mine = tuple(getattr(self, f) for f in fields)
        theirs = tuple(getattr(other, f) for f in fields)
        if mine != theirs:
            diffs = [
                f"{f}: {a!r} vs {b!r}"
                for f, a, b in zip(fields, mine, theirs, strict=True)
                if a != b
            ]
            raise ValueError("cannot merge accumulators that differ in " + "; ".join(diffs))

    def __iadd__(self, other: Accumulator) -> Accumulator:
        if not isinstance(other, Accumulator):
            return NotImplemented
        self._check_compatible(other)
        return self._append(other.counts, other._ids, other.n_images)

    def __add__(self, other: Accumulator) -> Accumulator:
        if not isinstance(other, Accumulator):
            return NotImplemented
        self._check_compatible(other)
        out = self.copy()
        out += other
        return out

    def copy(self) -> Accumulator:
        """An independent copy."""
        # Every option attribute as it is (checked when this one was made), so an option
        # added later cannot be left out; the state is copied below.
        out = object.__new__(Accumulator)
        out.__dict__.update(self.__dict__)
        out._parts = [Counts.merge([self.counts])]  # a merge of one part: a copy
        out._ids = list(self._ids)
        out._n_images = self._n_images
        return out

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Accumulator):
            return NotImplemented
        return (
            self._options() == other._options()
            and self._ids == other._ids
            and self.n_images == other.n_images
            and self.counts == other.counts
        )

    __hash__ = None  # type: ignore[assignment]

    def __getstate__(self) -> dict[str, Any]:
        self.counts  # noqa: B018 - fold the parts into one before pickling
        return self.__dict__.copy()

    def __repr__(self) -> str:
        kind = "soft" if self.soft else "hard"
        return (
            f"Accumulator({self.num_classes} classes, {self.n_images} images, {kind}, "
            f"per_image={self.per_image}, ignore_index={self.ignore_index})"
        )

    # ------------------------------------------------------------------ report

    @explain_keywords(_CONSTRUCTOR_ONLY)
    def compute(
        self,
        preset: str | None = None,
        *,
        aggregation: Aggregation | None = None,
        empty: EmptyValue | None = None,
        presence: Presence | None = None,
        exclude: Sequence[int | str] | None = None,
        smooth: float | None = None,
        meta: dict[str, Any] | None = None,
        groups: Mapping[str, Sequence[int | str]] | None = None,
        instance_sizes: Mapping[str | int, float] | None = None,
    ) -> Report:
        """The :class:`~fastseg.report.Report` of everything counted so far.

        Parameters
        ----------
        preset : str, optional
            A named convention (see :data:`fastseg.report.PRESETS`).
        aggregation, empty, presence, exclude, smooth : optional
            Override the preset's policy (see :class:`~fastseg.report.Report`).
        meta : dict, optional
            Extra JSON-safe facts for the report (e.g. sources, skipped blocks).
        groups : mapping of str to sequence, optional
            Class groups for the report; default: the accumulator's.
        instance_sizes : mapping, optional
            Average instance sizes per class, for iIoU (counts with instance sums; see
            :class:`~fastseg.report.Report`).

        Returns
        -------
        Report

        Raises
        ------
        TypeError
            For a keyword it does not take, listing those it takes. The reading options
            (``ignore_index``, ``num_classes``, ``class_axis``, ...) belong to the
            Accumulator, not to its report: the message says to pass them to the
            constructor, which applies them in :meth:`update`.
        ValueError
            When no image has been added, or for a bad preset or policy field.
        """
        if self.n_images == 0:
            raise ValueError("nothing to report: no image has been added")
        if not self.per_image:
            meta = {"n_images": self.n_images, **(meta or {})}
        return Report(
            self.counts,
            ids=self.ids if self.per_image else None,
            class_names=self.class_names,
            per_image=self.per_image,
            preset=preset,
            meta=meta,
            groups=self.groups if groups is None else groups,
            aggregation=aggregation,
            empty=empty,
            presence=presence,
            exclude=exclude,
            smooth=smooth,
            instance_sizes=instance_sizes,
        )

    # ------------------------------------------------------------------- files

    def _options(self) -> dict[str, Any]:
        return {
            "num_classes": self.num_classes,
            "ignore_index": self.ignore_index,
            "class_axis": self.class_axis,
            "class_names": self.class_names,
            "per_image": self.per_image,
            "soft": self.soft,
            "threshold": self.threshold,
            "spatial_dims": self.spatial_dims,
            "label_map": jsonable(self.label_map),
            "label_map_pred": jsonable(self.label_map_pred),
            "reduce_zero_label": self.reduce_zero_label,
            "groups": self.groups,
            "calibration": self.calibration,
            "calibration_softmax": self.calibration_softmax,
            "boundary": self.boundary,
            "surface": self.surface,
        }

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the accumulator to an ``.npz`` file at `path`, atomically.

        Notes
        -----
        Format (version :data:`FORMAT_VERSION`, written by
        :func:`fastseg.counts.save_versioned`): an uncompressed NumPy ``.npz`` with arrays
        ``tp``, ``pred``, ``true`` (shape (B, N); int64, or float64 when soft; one row of
        totals when ``per_image`` is false), ``confusion`` (N, N) int64 for hard counts,
        ``ids`` (unicode, B entries; ``named`` (bool, B) is false where no id was given)
        and ``meta``, a JSON string with ``format``
        (``"fastseg.accumulator"``), ``version``, the constructor options, ``n_images``,
        ``ignored`` and the writing fastseg's ``fastseg_version``. With per-image
        statistics (``calibration``, ``boundary``), version 2: their arrays
        ``x.<kind>.<field>`` (one row per image) and their settings in
        ``meta["extras"]`` (:func:`fastseg.counts.save_counts`); without them, version
        1. No pickles; no
        suffix is added to `path`.
        """
        meta = {**self._options(), "n_images": self.n_images, "fastseg_version": __version__}
        ids = {
            "ids": np.array(["" if i is None else i for i in self._ids], dtype=str),
            "named": np.array([i is not None for i in self._ids], dtype=bool),
        }
        counts = self.counts
        version = FORMAT_VERSION if counts.extras else _PLAIN_VERSION
        save_counts(path, counts, _FORMAT, version, meta, ids)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Accumulator:
        """Read an accumulator written by :meth:`save`.

        Raises
        ------
        ValueError
            Naming the file and the problem: missing, empty, truncated or damaged, not a
            fastseg accumulator, another format version, or arrays that do not agree
            with its metadata (shapes; int64 hard counts, float64 soft sums).
        """
        what = "accumulator"
        meta, arrays = load_versioned(path, _FORMAT, (_PLAIN_VERSION, FORMAT_VERSION), what=what)
        try:
            options = {
                k: meta[k]
                for k in ("ignore_index", "class_axis", "class_names", "per_image", "soft")
            }
            # Options added after version 1 was defined: absent from older files.
            later = ("threshold", "spatial_dims", "label_map", "label_map_pred",
                     "reduce_zero_label", "groups", "calibration",
                     "calibration_softmax", "boundary")  # fmt: skip
            options.update({k: meta[k] for k in later if meta.get(k) is not None})
            if meta.get("surface") is not None:
                surface = meta["surface"]
                options.update(surface=surface["tolerance"], spacing=surface["spacing"],
                               percentile=surface["percentile"])  # fmt: skip
            acc = cls(meta["num_classes"], **options)
            n_images = meta["n_images"]
            if isinstance(n_images, bool) or not isinstance(n_images, int) or n_images < 0:
                raise ValueError(f"n_images is {n_images!r}")
        except (KeyError, TypeError, ValueError) as exc:
            raise corrupt_file(path, what, f"bad metadata ({type(exc).__name__}: {exc})") from exc
        counts = counts_from_arrays(path, what, arrays, meta, soft=acc.soft, strict=True)
        expected_rows = n_images if acc.per_image else 1
        if counts.num_classes != acc.num_classes or counts.n_images != expected_rows:
            raise corrupt_file(
                path,
                what,
                f"arrays and metadata disagree: counts of shape {counts.tp.shape} for "
                f"{acc.num_classes} classes and {expected_rows} row(s)",
            )
        acc._check_extras(counts, lambda why: corrupt_file(path, what, f"counts disagree with "
                                                         f"the metadata: {why}"))  # fmt: skip
        if counts.first_image != 0:  # an accumulator's rows are its images from the first
            raise corrupt_file(path, what, f"counts from image {counts.first_image}, not 0")
        names, named = arrays.get("ids"), arrays.get("named")
        if (
            names is None
            or named is None
            or names.ndim != 1
            or names.dtype.kind != "U"
            or named.dtype != bool
            or named.shape != names.shape
            or (acc.per_image and len(names) != n_images)
        ):
            raise corrupt_file(path, what, "arrays and metadata disagree: bad ids")
        ids = [str(i) if n else None for i, n in zip(names, named, strict=True)]
        acc._parts = [counts]
        acc._ids = ids
        acc._n_images = n_images
        return acc

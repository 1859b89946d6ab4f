"""Cityscapes' instance-weighted IoU (iIoU): instance-id files, their mergeable sums, the scores.

The definition is cityscapesScripts' ``evalPixelLevelSemanticLabeling`` (``evaluatePair``,
``getInstanceIouScoreForLabel``, ``getInstanceIouScoreForCategory``). An instance-id map
(``*_gtFine_instanceIds.png``) holds ``label id * 1000 + k`` on the pixels of instance
``k``; values ``> 1000`` are instances (the evaluator's ``instanceNp > 1000``), smaller
ones are classes without instances. Each instance of a class ``c`` with an average size
``s_c`` (the evaluator's ``avgClassSize``) weighs ``w = s_c / size``, and::

    tp_w[c] = sum over instances of c of w * (instance pixels predicted c)
    fn_w[c] = sum over instances of c of w * (instance pixels predicted otherwise)
    iIoU[c] = tp_w / (tp_w + fp + fn_w)      NaN when the denominator is 0

with ``fp`` the class's false positives of the confusion matrix (pixels of other
evaluated classes predicted ``c``), so a class with false positives and no instance
scores 0. A class group (Cityscapes' categories) has an iIoU only when every class in it
has an average size: the same sums over the instances of its classes, "predicted c"
read as "predicted a class of the group", and the group's false positives.

The statistic: :class:`InstanceSums` holds, per truth class ``c`` and predicted class
``d``, the sum over the instances of ``c`` of the fraction of the instance predicted
``d`` (``fractions``, float64 N x N), and the number of instances (``instances``). It
adds over images and blocks, it is independent of the average sizes and of the groups
(both applied at report time, as groups are to the confusion matrix), and every sum
above is a linear form of it: ``tp_w[c] = s_c * fractions[c, c]``. It travels as the
optional :attr:`fastseg.counts.Counts.instances` field, so it merges, is saved and
checkpointed with the counts.

The instance ids' label ids are the truth's stored ids: the truth's label map (or
``reduce_zero_label``) makes them classes (:class:`InstanceRule`); ids it leaves
unmapped, or maps to the ignore index, are skipped (Cityscapes' ``ignoreInEval``
classes: caravan, trailer). The predicted class of a pixel is the evaluated one: the
prediction's label map applied, or the argmax of scores. One image is tallied by
:func:`tally` (a Numba pass over the flat maps; about 3 ms for 2048 x 1024 against 16 ms
for the ``np.bincount`` form).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numba
import numpy as np

from fastseg.formulas import Floats, ratio
from fastseg.kernels import skip_scipy_at_numba_start
from fastseg.labelmaps import as_label_map
from fastseg.pairing import FileEntry, list_files
from fastseg.readers import split_suffix

if TYPE_CHECKING:
    from fastseg.inputs import Prepared

#: Instance ids are ``label id * INSTANCE_DIVISOR + k``.
INSTANCE_DIVISOR = 1000
#: Values above this are instances (cityscapesScripts: ``instanceNp > 1000``).
FIRST_INSTANCE = 1000
#: Largest range of instance ids tallied through a dense table; wider ids go through
#: ``np.unique`` (slower, any value).
DENSE_SPAN = 2**22
#: Names shown in a message, at most.
_SHOWN = 5


# ------------------------------------------------------------------ the statistic


@dataclass(frozen=True, eq=False)
class InstanceSums:
    """Instance tallies of a set of images: the sufficient statistic of iIoU.

    Attributes
    ----------
    fractions : ndarray of float64, shape (N, N)
        Row ``c``, column ``d``: the sum, over the truth instances of class ``c``, of the
        fraction of the instance's pixels predicted ``d``. Each instance adds a row
        summing to 1.
    instances : ndarray of int64, shape (N,)
        Instances counted per class.

    Sums add over images, blocks and any split of the data (float sums: exact up to
    rounding, bit-identical for a fixed tree of merges).
    """

    fractions: np.ndarray
    instances: np.ndarray

    def __post_init__(self) -> None:
        f, k = self.fractions, self.instances
        if f.ndim != 2 or f.shape[0] != f.shape[1] or k.shape != (f.shape[0],):
            raise ValueError(
                f"instance sums must be (N, N) fractions and (N,) instance counts; got "
                f"{f.shape} and {k.shape}"
            )
        if f.dtype != np.float64 or k.dtype != np.int64:
            raise ValueError(
                f"instance sums must be float64 fractions and int64 instance counts; got "
                f"{f.dtype} and {k.dtype}"
            )

    @property
    def num_classes(self) -> int:
        """Number of classes N."""
        return int(self.instances.shape[0])

    @classmethod
    def zeros(cls, num_classes: int) -> InstanceSums:
        """Sums of no instance."""
        return cls(np.zeros((num_classes, num_classes)), np.zeros(num_classes, np.int64))

    @classmethod
    def merge(cls, parts: Sequence[InstanceSums]) -> InstanceSums:
        """The sum of `parts` (in the order given); the result shares no array with them."""
        if not parts:
            raise ValueError("nothing to merge: no instance sums given")
        n = parts[0].num_classes
        if any(p.num_classes != n for p in parts):
            raise ValueError("cannot merge instance sums of different class counts")
        fractions = np.zeros((n, n))
        instances = np.zeros(n, np.int64)
        for p in parts:
            fractions += p.fractions
            instances += p.instances
        return cls(fractions, instances)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, InstanceSums):
            return NotImplemented
        return np.array_equal(self.fractions, other.fractions) and np.array_equal(
            self.instances, other.instances
        )

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True, eq=False)
class InstanceRule:
    """Which class an instance's label id (``value // 1000``) stands for.

    Attributes
    ----------
    ids : ndarray of int64
        Label ids that are classes, sorted.
    classes : ndarray of int64
        Their class indices.
    num_classes : int
    """

    ids: np.ndarray
    classes: np.ndarray
    num_classes: int

    @classmethod
    def from_options(cls, options: Mapping[str, Any], num_classes: int) -> InstanceRule:
        """The rule of the truth's reading options (label map, ``reduce_zero_label``, ignore).

        `options` are :func:`~fastseg.inputs.prepare`'s (the label map as a LabelMap or in
        its JSON form).

        Label ids map as the truth's stored ids do; an id mapped to the ignore index, or
        to no class, names no class (its instances are skipped).
        """
        n = int(num_classes)
        ignore = options.get("ignore_index")
        label_map = as_label_map(options.get("label_map"))  # a LabelMap or its JSON form
        if options.get("reduce_zero_label"):
            ids, classes = np.arange(1, n + 1), np.arange(n)
        elif label_map is not None:
            ids = np.asarray(label_map.ids).astype(np.int64)
            classes = np.asarray(label_map.classes, np.int64)
        else:
            ids = classes = np.arange(n)
        keep = (classes >= 0) & (classes < n)
        if isinstance(ignore, int):
            keep &= classes != ignore
        ids, classes = ids[keep].astype(np.int64), classes[keep].astype(np.int64)
        order = np.argsort(ids, kind="stable")
        return cls(ids[order], classes[order], n)

    def classes_of(self, label_ids: np.ndarray) -> np.ndarray:
        """The class index of each label id, -1 where it names no class."""
        label_ids = np.asarray(label_ids, np.int64)
        if self.ids.size == 0:
            return np.full(label_ids.shape, -1, np.int64)
        pos = np.minimum(np.searchsorted(self.ids, label_ids), self.ids.size - 1)
        return np.where(self.ids[pos] == label_ids, self.classes[pos], -1)


#: Pixels per run :func:`_instance_pixels` skips at once when none is an instance pixel.
RUN = 512


@numba.njit(cache=True, nogil=True)
def _instance_pixels(ids, pred, codes, default, num_classes, floor, top):
    """Pixels of each instance id ``> floor`` per predicted class, in one table.

    `pred` holds classes, or (with a non-empty `codes` table) ids read as ``codes[id]``
    (`default` outside the table), as the counting kernels read a label-id map. Returns
    ``(values, table, bad)``: the instance ids found, ascending; ``table[i, d]`` the
    pixels of ``values[i]`` predicted ``d``; the number of instance pixels whose
    prediction is not in ``[0, num_classes)`` (left out).
    """
    # Instance pixels are few (Cityscapes: about 1 %, in objects): find the runs that hold
    # any with a vectorised max, then read only those runs pixel by pixel.
    n = ids.size
    runs = np.empty((n + RUN - 1) // RUN, np.int64)
    n_runs = 0
    for r in range(n // RUN):
        lo = r * RUN
        m = ids[lo]
        for i in range(lo, lo + RUN):  # a fixed trip count: LLVM vectorises it
            m = max(m, ids[i])
        if m > floor:
            runs[n_runs] = r
            n_runs += 1
    if n % RUN:  # the short last run is read pixel by pixel
        runs[n_runs] = n // RUN
        n_runs += 1
    span = top - floor
    slot = np.full(max(span, 0), -1, np.int32)
    for k in range(n_runs):
        lo = runs[k] * RUN
        for i in range(lo, min(n, lo + RUN)):
            v = ids[i]
            if v > floor:
                slot[v - floor - 1] = 0
    k = 0
    for j in range(span):
        if slot[j] == 0:
            slot[j] = k
            k += 1
    values = np.empty(k, np.int64)
    for j in range(span):
        if slot[j] >= 0:
            values[slot[j]] = j + floor + 1
    table = np.zeros((k, num_classes), np.int64)
    bad = 0
    for r in range(n_runs):
        lo = runs[r] * RUN
        for i in range(lo, min(n, lo + RUN)):
            v = ids[i]
            if v > floor:
                d = np.int64(pred[i])
                if codes.size:
                    d = np.int64(codes[d]) if d >= 0 and d < codes.size else np.int64(default)
                if d < 0 or d >= num_classes:
                    bad += 1
                else:
                    table[slot[v - floor - 1], d] += 1
    return values, table, bad


def _kernel_form(a: np.ndarray, kept: tuple[type, ...]) -> np.ndarray:
    """`a` flat and C-contiguous, in one of the `kept` dtypes or int64 (few compilations)."""
    flat = np.ravel(a)
    if flat.dtype not in [np.dtype(t) for t in kept]:
        flat = flat.astype(np.int64)
    return np.ascontiguousarray(flat)


#: No label-id map on the prediction: its values are classes.
NO_CODES = (np.zeros(0, np.int32), 0)


def tally(instance_ids: np.ndarray, pred_classes: np.ndarray, rule: InstanceRule,
          codes: tuple[np.ndarray, int] = NO_CODES) -> InstanceSums:  # fmt: skip
    """The instance sums of one image (or a batch): its instance-id map and predicted classes.

    Parameters
    ----------
    instance_ids : ndarray of integers
        The instance-id map (any shape).
    pred_classes : ndarray of integers
        The predicted class of each pixel (class indices), or with `codes` its stored id,
        as many pixels as `instance_ids`.
    rule : InstanceRule
        Which class each label id stands for.
    codes : (ndarray of int32, int), optional
        When `pred_classes` holds the prediction's stored ids: the table its label-id map
        is read through and the code of ids outside it (``Lookup.dense`` and
        ``Lookup.default``), applied at instance pixels only.

    Raises
    ------
    ValueError
        The two maps differ in size, or a predicted class is outside ``[0, N)``.
    """
    n = rule.num_classes
    ids = _kernel_form(instance_ids, (np.uint16, np.int32))
    pred = _kernel_form(pred_classes, (np.uint8, np.int32))
    code_table = np.ascontiguousarray(codes[0], np.int32)
    if ids.size != pred.size:
        raise ValueError(
            f"the instance-id map has {ids.size} pixels but the prediction {pred.size}"
        )
    top = int(ids.max()) if ids.size else 0
    if top - FIRST_INSTANCE <= DENSE_SPAN:
        top = max(top, FIRST_INSTANCE)
        skip_scipy_at_numba_start()
        values, table, bad = _instance_pixels(ids, pred, code_table, int(codes[1]), n,
                                              FIRST_INSTANCE, top)  # fmt: skip
    else:  # ids too spread out for a dense table
        mask = ids > FIRST_INSTANCE
        values, inverse = np.unique(ids[mask], return_inverse=True)
        d = pred[mask].astype(np.int64)
        if code_table.size:
            inside = (d >= 0) & (d < code_table.size)
            d = np.where(inside, code_table[np.where(inside, d, 0)], int(codes[1]))
        ok = (d >= 0) & (d < n)
        bad = int(np.count_nonzero(~ok))
        table = np.bincount(inverse[ok] * n + d[ok], minlength=values.size * n)
        table = table.reshape(values.size, n)
        values = values.astype(np.int64)
    if bad:
        raise ValueError(f"{bad} instance pixels are predicted as no class in [0, {n})")
    classes = rule.classes_of(values // INSTANCE_DIVISOR)
    keep = classes >= 0
    table, classes = table[keep], classes[keep]
    fractions = np.zeros((n, n))
    if classes.size:
        np.add.at(fractions, classes, table / table.sum(axis=1, keepdims=True))
    return InstanceSums(fractions, np.bincount(classes, minlength=n).astype(np.int64))


def prediction_for_tally(
    prep: Prepared, pred: np.ndarray, class_axis: int | None
) -> tuple[np.ndarray, tuple[np.ndarray, int]]:
    """What :func:`tally` reads for `pred` (as given to :func:`~fastseg.inputs.prepare`).

    Returns ``(values, codes)``. Label maps: their stored ids with the table of their
    label-id map (looked up at instance pixels only, as the counting kernels read it),
    or, for ids too widely spread for a table, their classes by the map's lookup. Scores:
    their argmax along `class_axis` (default the last; the first class on a tie, as the
    kernels), ``(B, P)`` class indices. Thresholded one-channel scores are not read here
    (:func:`check_options` refuses them).
    """
    b = pred.shape[0]
    if prep.pred_kind != "scores":
        lut = prep.pred_lut
        if lut is None:
            return pred.reshape(b, -1), NO_CODES
        if lut.dense is None:
            return lut(pred), NO_CODES
        return pred.reshape(b, -1), (lut.dense, lut.default)
    axis = -1 if class_axis is None else int(class_axis)
    return np.argmax(pred, axis=axis).reshape(b, -1), NO_CODES


def check_options(options: Mapping[str, Any]) -> None:
    """Refuse reading options iIoU cannot be computed with (soft sums, thresholds)."""
    if options.get("soft"):
        raise ValueError(
            "instances= gives iIoU, a hard metric of predicted classes: leave out soft=True"
        )
    if options.get("threshold") is not None:
        raise ValueError(
            "instances= needs label maps or multi-class scores as predictions, not "
            "thresholded one-channel scores"
        )


# ------------------------------------------------------------------ the files


def instance_files(
    instances: Any, suffix: str | None, cases: Sequence[tuple[str, str, str]]
) -> tuple[list[FileEntry], str]:
    """The instance-id file of every case, and a description of where they were found.

    Parameters
    ----------
    instances : True, str, os.PathLike or sequence of them
        True: beside each truth file, named by its id and `suffix` (Cityscapes:
        ``<id>_gtFine_instanceIds.png`` beside ``<id>_gtFine_labelIds.png``). Otherwise a
        folder, glob or list of files, paired with the truth by id (the name without
        `suffix`, else without its extension); files no case needs are ignored.
    suffix : str or None
        ``instance_suffix``.
    cases : sequence of (id, truth path, truth as shown)

    Raises
    ------
    ValueError
        A case without an instance-id file (naming the truth files and the instance-id
        files expected, the first few and their count), or no `suffix` with True.
    """
    found: list[FileEntry | None] = []
    expected: list[str] = []
    if instances is True:
        if not suffix:
            raise ValueError(
                "instances=True looks for each truth file's instance-id file beside it, "
                "named by its id and instance_suffix: pass instance_suffix= (Cityscapes: "
                "'_gtFine_instanceIds.png', which dataset='cityscapes' sets), or give the "
                "instance-id files (a folder, glob or list)"
            )
        _, fmt = split_suffix(suffix)
        if fmt is None:
            raise ValueError(f"instance_suffix={suffix!r} is not a file name ending fastseg reads")
        for key, path, shown in cases:
            name = key + suffix
            candidate = os.path.join(os.path.dirname(path), name)
            expected.append(os.path.join(os.path.dirname(shown), name))
            ok = os.path.isfile(candidate)
            found.append(FileEntry(candidate, key, fmt, expected[-1]) if ok else None)
        where = f"beside the truth files (*{suffix})"
    else:
        files = list_files(instances, "instance", suffix)
        by_key = {e.key: e for e in files.entries}
        for key, _, _ in cases:
            found.append(by_key.get(key))
            expected.append(f"id {key!r} in {files.description}")
        where = files.description
    missing = [(shown, expected[i]) for i, (_, _, shown) in enumerate(cases) if found[i] is None]
    if missing:
        listed = "; ".join(f"{t} (expected {e})" for t, e in missing[:_SHOWN])
        more = f" and {len(missing) - _SHOWN} more" if len(missing) > _SHOWN else ""
        raise ValueError(
            f"{len(missing)} truth file{'s' if len(missing) > 1 else ''} without an "
            f"instance-id file: {listed}{more}"
        )
    return [e for e in found if e is not None], where


# ------------------------------------------------------------------ the scores


def resolve_instance_sizes(
    sizes: Mapping[Any, Any] | None, num_classes: int, class_names: Sequence[str] | None
) -> Floats | None:
    """Average instance sizes per class, ``(N,)`` float64 with NaN for classes without.

    `sizes` maps class names or indices (negative from the end) to average sizes in
    pixels (finite, > 0); None gives None.

    Raises
    ------
    TypeError, ValueError
        Not a mapping, an unknown class (listing the names), a size that is not a
        positive number.
    """
    if sizes is None:
        return None
    if not isinstance(sizes, Mapping):
        raise TypeError(f"instance_sizes must be a mapping {{class: pixels}}; got {sizes!r}")
    names = None if class_names is None else [str(x) for x in class_names]
    out = np.full(num_classes, math.nan)
    for key, value in sizes.items():
        if isinstance(key, int | np.integer) and not isinstance(key, bool):
            if not -num_classes <= key < num_classes:
                raise ValueError(
                    f"instance_sizes: class {key} is out of range for {num_classes} classes"
                )
            c = int(key) % num_classes
        elif isinstance(key, str) and names is not None and key in names:
            c = names.index(key)
        else:
            known = f"; known names: {', '.join(names)}" if names else ""
            raise ValueError(f"instance_sizes: unknown class {key!r}{known}")
        ok = isinstance(value, int | float | np.integer | np.floating) and not isinstance(
            value, bool
        )
        if not ok or not math.isfinite(value) or value <= 0:
            raise ValueError(
                f"instance_sizes: {key!r} must be an average size in pixels (> 0); got {value!r}"
            )
        out[c] = float(value)
    return out


@dataclass(frozen=True, eq=False)
class InstanceScores:
    """iIoU of the classes and of the class groups (``Report.instances``).

    Attributes
    ----------
    sizes : ndarray of float64, shape (N,)
        Average instance size per class; NaN for classes without instances (no iIoU).
    instances : ndarray of int64, shape (N,)
        Instances counted per class.
    tp_weighted, fn_weighted : ndarray of float64, shape (N,)
        The evaluator's ``tpWeighted`` and ``fnWeighted`` (NaN without a size).
    fp : ndarray of int64, shape (N,)
        False positives from the confusion matrix.
    iiou : ndarray of float64, shape (N,)
        ``tp_w / (tp_w + fp + fn_w)``; NaN without a size or when the denominator is 0.
    group_names : tuple of str
    group_tp_weighted, group_fn_weighted, group_iiou : ndarray of float64, shape (G,)
        The same per class group; NaN for a group with a class without a size.
    group_fp : ndarray of int64, shape (G,)
    summary : dict of str to float
        ``miiou``: mean iIoU over the kept classes, NaN left out (Cityscapes'
        ``averageScoreInstClasses`` when no class is excluded); ``group_miiou``: over
        the groups (``averageScoreInstCategories``). NaN when there is no value.
    """

    sizes: Floats
    instances: np.ndarray
    tp_weighted: Floats
    fn_weighted: Floats
    fp: np.ndarray
    iiou: Floats
    group_names: tuple[str, ...]
    group_tp_weighted: Floats
    group_fn_weighted: Floats
    group_fp: np.ndarray
    group_iiou: Floats
    summary: dict[str, float]

    def class_rows(self, class_names: Sequence[str]) -> list[dict[str, Any]]:
        """One dict per class: index, name, size, instances, weighted sums, fp, iiou."""
        return [
            {"index": c, "name": name, "size": float(self.sizes[c]),
             "instances": int(self.instances[c]), "tp_weighted": float(self.tp_weighted[c]),
             "fn_weighted": float(self.fn_weighted[c]), "fp": int(self.fp[c]),
             "iiou": float(self.iiou[c])}
            for c, name in enumerate(class_names)
        ]  # fmt: skip

    def group_rows(self) -> list[dict[str, Any]]:
        """One dict per group: index, name, tp_weighted, fn_weighted, fp, iiou."""
        return [
            {"index": g, "name": name, "tp_weighted": float(self.group_tp_weighted[g]),
             "fn_weighted": float(self.group_fn_weighted[g]), "fp": int(self.group_fp[g]),
             "iiou": float(self.group_iiou[g])}
            for g, name in enumerate(self.group_names)
        ]  # fmt: skip


def group_instance_values(
    sums: InstanceSums,
    sizes: Floats,
    confusion: np.ndarray,
    groups: Sequence[Sequence[int]],
) -> dict[str, np.ndarray]:
    """Weighted sums, false positives and iIoU of class sets, from the sums and the matrix.

    A set of one class is that class. Returns ``tp_weighted``, ``fn_weighted``, ``iiou``
    (float64, NaN for a set with a class without a size) and ``fp`` (int64), shape
    (len(groups),). False positives of a set: pixels of classes outside it predicted as
    one of its classes (the matrix rows hold only evaluated truth).
    """
    g = len(groups)
    tp_w, fn_w = np.full(g, math.nan), np.full(g, math.nan)
    fp = np.zeros(g, np.int64)
    for i, members in enumerate(groups):
        m = np.zeros(sums.num_classes, bool)
        m[list(members)] = True
        fp[i] = int(confusion[~m][:, m].sum())
        weights = sizes[m]
        if np.isnan(weights).any():
            continue
        inside = sums.fractions[m][:, m].sum(axis=1)
        outside = sums.fractions[m][:, ~m].sum(axis=1)
        tp_w[i] = float(np.dot(weights, inside))
        fn_w[i] = float(np.dot(weights, outside))
    denominator = tp_w + fp + fn_w
    iiou = ratio(tp_w, np.where(np.isnan(denominator), 0.0, denominator))
    return {"tp_weighted": tp_w, "fn_weighted": fn_w, "fp": fp, "iiou": iiou}


def instance_scores(
    sums: InstanceSums,
    sizes: Floats,
    confusion: np.ndarray,
    kept: np.ndarray,
    groups: Mapping[str, Sequence[int]],
) -> InstanceScores:
    """:class:`InstanceScores` of the sums, the average sizes and the confusion matrix.

    `kept` marks the classes of the class mean (the report's exclusions).
    """
    n = sums.num_classes
    classes = group_instance_values(sums, sizes, confusion, [[c] for c in range(n)])
    grouped = group_instance_values(sums, sizes, confusion, list(groups.values()))

    def mean(values: np.ndarray) -> float:
        valid = values[~np.isnan(values)]
        return float(valid.mean()) if valid.size else math.nan

    return InstanceScores(
        sizes=np.asarray(sizes, np.float64), instances=sums.instances.copy(),
        tp_weighted=classes["tp_weighted"], fn_weighted=classes["fn_weighted"],
        fp=classes["fp"], iiou=classes["iiou"], group_names=tuple(groups),
        group_tp_weighted=grouped["tp_weighted"], group_fn_weighted=grouped["fn_weighted"],
        group_fp=grouped["fp"], group_iiou=grouped["iiou"],
        summary={"miiou": mean(classes["iiou"][kept]), "group_miiou": mean(grouped["iiou"])},
    )  # fmt: skip

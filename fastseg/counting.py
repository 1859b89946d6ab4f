"""From two arrays to :class:`~fastseg.counts.Counts`: validation, kernels, error checks."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numba
import numpy as np

from fastseg import kernels
from fastseg.boundary import BoundarySums, boundary_counts, boundary_width
from fastseg.calibration import CalibrationSums
from fastseg.class_images import class_images, lookup_codes
from fastseg.counts import Counts
from fastseg.extras import extra_options, extra_settings
from fastseg.image_stats import ImageStat
from fastseg.inputs import Prepared, check_num_classes, prepare, swap_hint
from fastseg.labelmaps import Lookup
from fastseg.surface import SurfaceStat, surface_scores


def count_prepared(
    prep: Prepared,
    *,
    soft: bool = False,
    check_range: bool | None = None,
    calibration: int | None = None,
    calibration_softmax: bool = False,
    boundary: float | None = None,
    surface: Any = None,
    spacing: Any = None,
    percentile: float | None = 95.0,
    case_spacing: Any = None,
) -> Counts:
    """Run the kernel over prepared inputs and check what it found.

    Parameters
    ----------
    prep : Prepared
    soft : bool
        Soft sums instead of hard counts.
    check_range : bool, optional
        With `soft`: refuse scores (and score truth) outside [0, 1] or infinite (see
        :func:`check_stats`). Default: on, except for inputs prepared by the
        post-compatible API (``prepare(..., post=True)``), which sums logits as the post
        does.
    calibration : int, optional
        Also histogram the confidence of the predicted class in this many bins
        (:mod:`fastseg.calibration`), in the same pass: score predictions only.
    calibration_softmax : bool, default False
        With `calibration`: the scores are logits; the confidence is their softmax at
        the predicted class. Without it, confidences outside [0, 1] are refused.
    boundary : int or float, optional
        Also count boundary pixels (:mod:`fastseg.boundary`) at this width: pixels
        (``>= 1``) or a fraction of the image diagonal (``< 1``); 2-D and 3-D images.
    surface, spacing, percentile : optional
        Also score every image's surfaces (:mod:`fastseg.surface`): surface Dice at the
        tolerance `surface` (one, or one per class) and the `percentile` Hausdorff
        distance (None: the maximum), distances scaled by `spacing` (one, or one per
        spatial axis; default 1).
    case_spacing : sequence of float, optional
        Without `spacing`: the voxel size of these images, from their files (a NIfTI
        header); the scores' setting still says "spacing None" (each file's own).

    Raises
    ------
    ValueError
        When labels lie outside ``[0, N)`` (and are not the ignore index), scores are
        NaN, or (`check_range`) soft values lie outside [0, 1]; nothing is returned in
        that case. Also when N is too large (:func:`check_num_classes`).
    """
    num_classes, n_images = prep.num_classes, prep.n_images
    check_num_classes(num_classes, soft=soft)
    # Every option is checked before the counting pass.
    extras_asked = extra_options(
        soft=soft, calibration=calibration, calibration_softmax=calibration_softmax,
        boundary=boundary, surface=surface, spacing=spacing, percentile=percentile)  # fmt: skip
    check_extras(prep, extras_asked)
    calibration = extras_asked.get("calibration")
    softmax = bool(extras_asked.get("calibration_softmax"))
    surface_setting = extra_settings(extras_asked).get("surface")
    if check_range is None:
        check_range = not prep.post
    dtype = np.float64 if soft else np.int64
    tp = np.zeros((n_images, num_classes), dtype)
    pred = np.zeros((n_images, num_classes), dtype)
    true = np.zeros((n_images, num_classes), dtype)
    confusion = None if soft else np.zeros((num_classes, num_classes), np.int64)
    stats = np.zeros(kernels.N_STATS, np.int64)
    ignore = prep.ignore_index
    true_lut, pred_lut = prep.kernel_lookups
    classes = kernels.Classes(num_classes, ignore is not None, 0 if ignore is None else ignore,
                              lookup_codes(true_lut), lookup_codes(pred_lut))  # fmt: skip
    threads = numba.get_num_threads()
    # Per-thread tables, or one shared table when those would not fit the memory budget.
    hard_counts = kernels.hard_kernel(num_classes, threads)
    cal = None
    if calibration is not None:
        cal = kernels.calibration_work(calibration, n_images, threads, softmax)
    for b0, p, t in prep.slabs():
        rows = slice(b0, b0 + p.shape[0])
        if soft:
            sums = kernels.SoftSums(tp[rows], pred[rows], true[rows])
            kernels.soft_sums(p, t, classes, sums, stats, threads)
        else:
            assert confusion is not None
            counts = kernels.HardCounts(tp[rows], pred[rows], true[rows], confusion)
            slab_cal = None if cal is None else cal._replace(out=cal.out[rows])
            hard_counts(p, t, classes, counts, stats, threads, slab_cal)
    check_stats(stats, num_classes, prep.ignore_index, (prep.true_dtype, prep.pred_dtype),
                soft_range=soft and check_range, lookups=(true_lut, pred_lut),
                unmapped=lambda side: _unmapped_ids(prep, side),
                swapped=lambda: _looks_swapped(prep, stats))  # fmt: skip
    extras: dict[str, ImageStat] = {}
    if cal is not None:
        assert calibration is not None
        if stats[kernels.PRED_RANGE]:
            shown = float(stats[kernels.PRED_RANGE_VALUE : kernels.PRED_RANGE_VALUE + 1]
                          .view(np.float64)[0])  # fmt: skip
            if softmax:  # a softmax is in [0, 1] unless the logits are not finite
                raise ValueError(
                    f"y_pred has logits whose softmax is undefined (infinite logits) at "
                    f"{stats[kernels.PRED_RANGE]} pixels"
                )
            raise ValueError(
                f"calibration needs probabilities: y_pred's largest score is outside [0, 1] "
                f"at {stats[kernels.PRED_RANGE]} pixels (e.g. {shown:g}); for logits, ask "
                "for their softmax (calibration_softmax=True, --calibration-softmax)"
            )
        extras["calibration"] = CalibrationSums.from_kernel(cal.out, calibration, softmax)
    if "boundary" in extras_asked:
        extras["boundary"] = count_boundaries(prep, extras_asked["boundary"], threads)
    if surface_setting is not None:
        extras["surface"] = score_surfaces(prep, surface_setting, threads, case_spacing)
    return Counts(tp, pred, true, confusion, int(stats[kernels.IGNORED]), extras=extras)


def count_boundaries(
    prep: Prepared,
    width: float,
    n_threads: int,
    halo: Sequence[tuple[int, int]] | None = None,
    image_shape: Sequence[int] | None = None,
) -> BoundarySums:
    """The boundary counts of prepared (and counted) inputs at `width`, per image.

    `halo`: the inputs are blocks of larger images, of spatial shape `image_shape`, with
    that many extra pixels on each side of each spatial axis
    (:func:`fastseg.boundary.boundary_counts`); a `width` below 1 is a fraction of the
    diagonal of `image_shape` (default: the inputs' own images).
    """
    n = prep.num_classes
    pixels = boundary_width(prep.spatial_shape if image_shape is None else image_shape, width)
    rows = [np.zeros((prep.n_images, n), np.int64) for _ in range(3)]
    for b0, true_cls, pred_cls, ignored in class_images(prep):
        found = boundary_counts(true_cls, pred_cls, n, pixels, ignore_index=ignored,
                                halo=halo, n_threads=n_threads)  # fmt: skip
        for out, part in zip(rows, found, strict=True):
            out[b0 : b0 + part.shape[0]] = part
    true_rows, pred_rows, both_rows = rows
    return BoundarySums(true_rows, pred_rows, both_rows, width)


def score_surfaces(
    prep: Prepared, setting: dict[str, Any], n_threads: int, case_spacing: Any = None
) -> SurfaceStat:
    """The surface scores of prepared (and counted) inputs, per image (`setting`: checked).

    Distances are scaled by the setting's spacing, else by `case_spacing`, else by 1.
    """
    spacing = setting["spacing"] if setting["spacing"] is not None else case_spacing
    n = prep.num_classes
    dice = np.full((prep.n_images, n), np.nan)
    hd = np.full((prep.n_images, n), np.nan)
    tolerance = setting["tolerance"]
    for b0, true_cls, pred_cls, ignored in class_images(prep):
        found = surface_scores(true_cls, pred_cls, n, spacing=spacing,
                               tolerance=tolerance, percentile=setting["percentile"],
                               ignore_index=ignored, n_threads=n_threads)  # fmt: skip
        assert found.dice is not None
        dice[b0 : b0 + found.hd.shape[0]] = found.dice
        hd[b0 : b0 + found.hd.shape[0]] = found.hd
    return SurfaceStat(dice, hd, **setting)


def check_surface(prep: Prepared, tolerance: Any, spacing: Any) -> None:
    """Refuse surface scores these inputs cannot take (a ValueError).

    `tolerance` and `spacing` as :func:`fastseg.surface.check_surface_options` gives them.
    """
    ndim = len(prep.spatial_shape)
    if ndim not in (2, 3):
        raise ValueError(
            f"surface metrics need 2-D images or 3-D volumes; these images have {ndim} "
            "spatial axes"
        )
    if isinstance(spacing, list) and len(spacing) not in (1, ndim):
        raise ValueError(f"spacing has {len(spacing)} values for {ndim} spatial axes")
    if isinstance(tolerance, list) and len(tolerance) not in (1, prep.num_classes):
        raise ValueError(
            f"surface has {len(tolerance)} tolerances for {prep.num_classes} classes"
        )


def check_boundary(prep: Prepared) -> None:
    """Refuse boundary counts of inputs that cannot give them (a ValueError)."""
    if len(prep.spatial_shape) not in (2, 3):
        raise ValueError(
            f"boundary counts need 2-D images or 3-D volumes; these images have "
            f"{len(prep.spatial_shape)} spatial axes"
        )


def check_calibration(prep: Prepared) -> None:
    """Refuse confidence histograms of inputs that have no confidence (a ValueError)."""
    if prep.pred_kind != "scores" or prep.channels is None or prep.channels < 2:
        raise ValueError(
            "calibration needs the prediction's scores (probabilities of two or more "
            "classes), not a label map or one-channel scores"
        )
    if prep.pred_dtype is None or prep.pred_dtype.kind != "f":
        raise ValueError(
            f"calibration needs float scores (probabilities); y_pred is {prep.pred_dtype}"
        )


#: Options of the statistics computed beside the counts, not of reading the inputs: an
#: options dict of :func:`count_arrays` may hold them beside :func:`prepare`'s.
EXTRA_OPTIONS = ("calibration", "calibration_softmax", "boundary", "surface", "spacing",
                 "percentile", "case_spacing")  # fmt: skip


def reading_options(options: dict[str, Any]) -> dict[str, Any]:
    """The options of :func:`fastseg.inputs.prepare` among `options`."""
    return {k: v for k, v in options.items() if k not in EXTRA_OPTIONS}


def count_arrays(y_true: Any, y_pred: Any, options: dict[str, Any]) -> tuple[Prepared, Counts]:
    """Prepare and count one batch by an options dict (the data-set layer's form).

    `options` holds :func:`fastseg.inputs.prepare`'s keywords (``soft`` among them) and
    the :data:`EXTRA_OPTIONS`. Returns the prepared inputs and their counts.
    """
    prep = prepare(y_true, y_pred, **reading_options(options))
    extras = {k: options[k] for k in EXTRA_OPTIONS if k in options}
    return prep, count_prepared(prep, soft=options["soft"], **extras)


def check_extras(prep: Prepared, options: dict[str, Any]) -> None:
    """Refuse :data:`EXTRA_OPTIONS` that the inputs of `prep` cannot give (a ValueError).

    `options` are checked already (:func:`fastseg.extras.extra_options`); this checks the
    inputs. For planning, `prep` may be of stand-in arrays of the inputs' shapes and
    dtypes.
    """
    if options.get("calibration") is not None:
        check_calibration(prep)
    if options.get("boundary") is not None:
        check_boundary(prep)
    if options.get("surface") is not None:
        check_surface(prep, options["surface"], options.get("spacing"))


def _unmapped_ids(prep: Prepared, side: str) -> np.ndarray:
    """The ids of `side` that map to no class, at the pixels a kernel checks them.

    For error messages only (a second pass): the kernel counts such pixels and keeps one
    id; this lists them all. A prediction is checked only where the truth counts.
    """
    true_lut, pred_lut = prep.kernel_lookups
    n, ignore = prep.num_classes, prep.ignore_index
    found: list[np.ndarray] = []
    for _, p, t in prep.slabs():
        if side == "y_true":
            assert true_lut is not None
            found.append(t[true_lut.kernel_codes(t) == true_lut.unmapped])
            continue
        assert pred_lut is not None
        bad = pred_lut.kernel_codes(p) == pred_lut.unmapped
        if t.ndim == 2:  # a label-map truth: only its counted pixels check the prediction
            labels = true_lut.kernel_codes(t) if true_lut is not None else t.astype(np.int64)
            bad &= (labels >= 0) & (labels < n) & (labels != (n if ignore is None else ignore))
        found.append(p[bad])
    return np.unique(np.concatenate(found)) if found else np.zeros(0, np.int64)


def _looks_swapped(prep: Prepared, stats: np.ndarray) -> str:
    """Why bad predicted labels suggest the inputs were passed in the wrong order, or "".

    Scores as the truth beside a label-map prediction; or predicted labels that are all
    the ignore index while the truth holds none (a second pass over the predictions,
    for the message only).
    """
    hint = swap_hint(prep.true_kind, prep.pred_kind)
    ignore = prep.ignore_index
    if hint or ignore is None or prep.pred_kind != "labels" or stats[kernels.IGNORED]:
        return hint
    if int(stats[kernels.PRED_BAD_VALUE]) != ignore:
        return ""
    for _, p, _ in prep.slabs():
        outside = p[(p < 0) | (p >= prep.num_classes)]
        if np.any(outside != ignore):
            return ""
    return (
        f"; each is the ignore index {ignore}, which y_true never holds: the two look "
        f"swapped (the truth is the one with the ignore label); pass (y_true, y_pred)"
    )


def check_stats(
    stats: np.ndarray,
    num_classes: int,
    ignore_index: int | None,
    dtypes: tuple[np.dtype | None, np.dtype | None] = (None, None),
    soft_range: bool = False,
    lookups: tuple[Lookup | None, Lookup | None] = (None, None),
    unmapped: Callable[[str], np.ndarray] | None = None,
    swapped: Callable[[], str] | None = None,
) -> None:
    """Raise a ValueError describing bad labels or NaN scores found by a kernel.

    With `soft_range`, soft values outside [0, 1] (or infinite) are refused too: soft
    metrics of logits are meaningless (kept only by the post-compatible API). Labels of
    an input read through a label-id map (`lookups`: truth, prediction) are bad when
    their id maps to no class; the message says so, naming the ids ``unmapped(name)``
    lists (else the one id the kernel kept). Bad predicted labels get the text
    ``swapped()`` returns: why the inputs look swapped, or "".
    """
    problems = []
    for name, bad, value, nan, dtype, lut in (
        ("y_true", kernels.TRUE_BAD, kernels.TRUE_BAD_VALUE, kernels.TRUE_NAN, dtypes[0],
         lookups[0]),
        ("y_pred", kernels.PRED_BAD, kernels.PRED_BAD_VALUE, kernels.PRED_NAN, dtypes[1],
         lookups[1]),
    ):  # fmt: skip
        example = int(stats[value])
        if dtype is not None and dtype.kind == "u" and example < 0:
            example += 2**64  # uint64 labels are read as int64 by the kernels
        if stats[bad] and lut is not None:
            ids = unmapped(name) if unmapped is not None else np.array([example])
            problems.append(lut.unmapped_message(int(stats[bad]), ids))
        elif stats[bad]:
            hint = "" if ignore_index is not None or name == "y_pred" else (
                "; if it marks pixels to skip, pass ignore_index")  # fmt: skip
            which = "" if name == "y_pred" else " that are not the ignore index"
            if name == "y_pred" and swapped is not None:
                hint = swapped()
            problems.append(
                f"{name} has {stats[bad]} labels outside [0, {num_classes}){which} "
                f"(e.g. {example}){hint}"
            )
        if stats[nan]:
            problems.append(f"{name} has NaN scores at {stats[nan]} pixels")
    if soft_range:
        for name, slot, value, what, hint in (
            ("y_true", kernels.TRUE_RANGE, kernels.TRUE_RANGE_VALUE, "values",
             "soft metrics need a one-hot or probability truth"),
            ("y_pred", kernels.PRED_RANGE, kernels.PRED_RANGE_VALUE, "scores",
             "soft metrics need probabilities: apply a softmax/sigmoid first"),
        ):  # fmt: skip
            if stats[slot]:
                shown = float(stats[value : value + 1].view(np.float64)[0])
                problems.append(
                    f"{name} has {stats[slot]} soft {what} outside [0, 1] (e.g. {shown:g}); {hint}"
                )
    if problems:
        raise ValueError("; ".join(problems))


def counts(
    y_true: Any,
    y_pred: Any,
    *,
    num_classes: int | None = None,
    class_axis: int | None = None,
    ignore_index: int | None = None,
    soft: bool = False,
    threshold: float | None = None,
    spatial_dims: int | None = None,
    label_map: Any = None,
    label_map_pred: Any = None,
    reduce_zero_label: bool = False,
    calibration: int | None = None,
    calibration_softmax: bool = False,
    boundary: float | None = None,
    surface: Any = None,
    spacing: Any = None,
    percentile: float | None = 95.0,
) -> Counts:
    """Count a batch: per-image intersection, predicted and true pixels, and confusion.

    Parameters
    ----------
    y_true : array_like
        Truth: an integer label map ``(B, *spatial)`` or one-hot / scores with a class
        axis (argmax-ed, as the post does). A label map may keep a channel axis of 1
        (``(B, 1, H, W)`` with ``class_axis=1``): the kind rules of :mod:`fastseg.inputs`.
    y_pred : array_like
        Prediction: scores (logits or probabilities, float16/32/64, channels-last or
        -first, 2-D or 3-D) or a label map (also with a channel axis of 1).
    num_classes : int, optional
        N; required when both inputs are label maps.
    class_axis : int, optional
        Class axis of score / one-hot inputs (default: last).
    ignore_index : int, optional
        Truth label whose pixels are skipped entirely.
    soft : bool, default False
        Float sums of ``|p t|``, ``|p|``, ``|t|`` instead of argmax counts.
    threshold : float, optional
        For one-channel scores (binary segmentation): foreground (class 1) where the
        score is ``> threshold``, else background (class 0). Required for one-channel
        inputs, refused for others.
    spatial_dims : int, optional
        Number of spatial axes after the batch axis (default: at least 2, so one image
        without its batch axis is refused rather than split into rows).
    label_map : dict, array, path or LabelMap, optional
        Stored truth id -> class index; every other id becomes the ignore index.
    label_map_pred : dict, array, path, LabelMap or bool, optional
        The same for label-map predictions; True: the truth's map.
    reduce_zero_label : bool, default False
        mmsegmentation's ``reduce_zero_label`` (id 0 -> ignore, k -> k - 1).
    calibration : int, optional
        Number of confidence bins: also histogram each counted pixel's confidence (its
        largest score) in the same pass, for ECE / MCE / reliability
        (:attr:`Counts.calibration <fastseg.counts.Counts.calibration>`). Needs float
        probabilities as `y_pred`.
    calibration_softmax : bool, default False
        With `calibration`: `y_pred` holds logits; confidences are their softmax.
    boundary : int or float, optional
        Also count the boundary pixels of every class for Boundary IoU (Cheng et al.,
        2021; :mod:`fastseg.boundary`) at this width: pixels (``>= 1``), or a fraction
        of the image diagonal (``< 1``; the paper uses 0.02). 2-D images or 3-D volumes
        (:attr:`Counts.boundary <fastseg.counts.Counts.boundary>`).
    surface : float or sequence of float, optional
        Also score each image's surfaces as MONAI does (:mod:`fastseg.surface`):
        normalised surface Dice at this tolerance (one, or one per class; in spacing
        units) and the Hausdorff distance at `percentile`
        (:attr:`Counts.surface <fastseg.counts.Counts.surface>`).
    spacing : float or sequence of float, optional
        Voxel size, one or one per spatial axis, for the surface distances (default 1).
    percentile : float or None, default 95
        The Hausdorff distance's percentile (HD95); None: the maximum.

    Returns
    -------
    Counts
        Per-image ``tp``, ``pred``, ``true`` of shape (B, N) and the (N, N) confusion
        matrix (None when soft); with `calibration`, their confidence histograms.

    Examples
    --------
    >>> import numpy as np, fastseg
    >>> truth = np.array([[[0, 1], [1, 1]]])
    >>> scores = np.eye(2, dtype=np.float32)[[[[0, 1], [0, 1]]]]
    >>> c = fastseg.counts(truth, scores)
    >>> c.tp.tolist(), c.union.tolist()
    ([[1, 2]], [[2, 3]])
    """
    prep = prepare(y_true, y_pred, num_classes=num_classes, class_axis=class_axis,
                   ignore_index=ignore_index, soft=soft, threshold=threshold,
                   spatial_dims=spatial_dims, label_map=label_map,
                   label_map_pred=label_map_pred,
                   reduce_zero_label=reduce_zero_label)  # fmt: skip
    return count_prepared(prep, soft=soft, calibration=calibration,
                          calibration_softmax=calibration_softmax, boundary=boundary,
                          surface=surface, spacing=spacing, percentile=percentile)  # fmt: skip


def confusion_matrix(
    y_true: Any,
    y_pred: Any,
    *,
    num_classes: int | None = None,
    class_axis: int | None = None,
    ignore_index: int | None = None,
    threshold: float | None = None,
    spatial_dims: int | None = None,
    label_map: Any = None,
    label_map_pred: Any = None,
    reduce_zero_label: bool = False,
) -> np.ndarray:
    """The (N, N) int64 confusion matrix of a batch: rows truth, columns prediction.

    Same convention as scikit-learn's ``confusion_matrix``; inputs as for
    :func:`counts`. Ignored truth pixels are left out of every cell.

    Examples
    --------
    >>> import numpy as np, fastseg
    >>> fastseg.confusion_matrix(np.array([[[0, 1, 1]]]), np.array([[[0, 0, 1]]]), num_classes=2)
    array([[1, 0],
           [1, 1]])
    """
    c = counts(y_true, y_pred, num_classes=num_classes, class_axis=class_axis,
               ignore_index=ignore_index, threshold=threshold, spatial_dims=spatial_dims,
               label_map=label_map, label_map_pred=label_map_pred,
               reduce_zero_label=reduce_zero_label)  # fmt: skip
    assert c.confusion is not None
    return c.confusion

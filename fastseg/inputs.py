"""Validation and normalisation of inputs: what each array is, and the kernel's view of it.

Every entry point (``fastseg.counts``, the post-compatible API, the Accumulator,
``fastseg.evaluate`` and so the CLI) passes its two arrays through :func:`prepare`. It
decides the *kind* of each input from its ``ndim``, dtype and the keywords, checks
everything that can be checked without reading the data, and returns a
:class:`Prepared` value holding zero-copy views in the layouts the kernels read (see
:mod:`fastseg.kernels`). The kind rules live here and nowhere else.

Kinds
-----
scores
    Logits, probabilities or one-hot masks with a class axis (``class_axis``, default
    last); float16/32/64, integer or bool. Hard metrics take their argmax.
labels
    An integer label map without a class axis, one dimension fewer than scores.

Axes: the first axis is always the batch. Images have at least two spatial axes by
default (``(B, H, W)`` label maps, ``(B, H, W, N)`` scores), so one image passed without
its batch axis is refused instead of being counted as H one-row images;
``spatial_dims=k`` fixes the number of spatial axes (1 for signals, 3 for volumes).

Rules, in order:

1. A label map with a channel axis of one (``(B, 1, H, W)``, as PyTorch data loaders
   give it): an integer or bool input whose class axis (``class_axis``, default last)
   has length 1 is read as the label map without that axis when the other input is
   unambiguous beside it: scores of the same shape but N > 1 along that axis, or a
   label map of the shape without it (``(B, H, W)``). A float input of one channel
   beside scores is refused (it could be a probability: class indices must be cast to
   integers). With ``threshold``, or when both inputs have one channel, rule 5 decides.
2. Different ``ndim``: the array with one more axis holds scores, the other a label map.
3. Same shape, either floating or bool: both have a class axis (the post's reading).
4. Same shape, both integer: one-hot masks if ``class_axis`` is given; else label maps
   when ``num_classes`` is given and no other reading fits. When both readings fit (an
   axis after the batch has ``num_classes`` entries and the arrays have room for a class
   axis) the call is ambiguous and raises, naming ``class_axis=`` and ``spatial_dims=``.
5. One channel along the class axis (binary segmentation with a sigmoid): needs
   ``threshold=t``; the input then reads as the label map ``score > t`` of two classes,
   0 (background) and 1 (foreground). Only the post-compatible API keeps the post's
   one-class rule (the single class is where the score is ``> 0``).
6. Label-id maps (:mod:`fastseg.labelmaps`) apply to label maps only: ``label_map`` (or
   ``reduce_zero_label``) to the truth, ``label_map_pred`` to a label-map prediction.
   Stored ids become class indices through a lookup table that the kernels read while
   counting (:attr:`Prepared.kernel_lookups`): the data are never remapped into a copy.
   Only a map of ids spread wider than ``labelmaps.KERNEL_TABLE_ENTRIES`` is applied
   slab by slab by a converter (extra memory that of a slab).

The inputs come as ``(y_true, y_pred)``. Errors name the option that fixes them (the
``class_axis=`` where the classes seem to lie), and say so when the inputs look swapped:
scores as the truth beside a label-map prediction, whose error would otherwise blame
the prediction.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from fastseg.labelmaps import (
    LabelMap,
    Lookup,
    as_label_map,
    jsonable,
    lookup,
    reduce_zero_label_map,
)

#: Largest slab converted at once when an input must be converted (byte order, dtypes
#: the kernels do not read directly): bounds the extra memory.
SLAB_BYTES = 8 * 2**20
#: Item size a slab is budgeted at once converted: the widest dtype the kernels read.
CONVERTED_ITEMSIZE = 8


@dataclass(frozen=True)
class Prepared:
    """Two validated inputs in kernel layout, and what is known about them.

    Attributes
    ----------
    pred, true : ndarray
        Kernel views: ``(B, P)`` labels, ``(B, P, N)`` or ``(B, O, N, I)`` scores.
    num_classes : int
        N.
    pred_kind, true_kind : {'scores', 'labels'}
        Whether each input has a class axis (one-channel scores read through a threshold
        are still 'scores': the kernel sees their label map).
    ignore_index : int or None
    pred_convert, true_convert : callable or None
        When set, the view must be converted slab by slab before a kernel reads it.
    true_dtype, pred_dtype : numpy.dtype
        The inputs' own dtypes, for messages.
    channels : int or None
        Length of the class axis of the score input, when there is one.
    true_lut, pred_lut : Lookup or None
        The label-id map of each input, when it has one. The kernel applies it
        (:attr:`kernel_lookups`), or, for ids too widely spread for a kernel table, the
        input's converter is the Lookup itself (stored ids in, class indices out).
    post : bool
        Read by the post-compatible API's rules (soft sums of any values).
    dropped_axes : tuple of (int or None)
        The (truth, prediction) channel axis of length 1 that rule 1 dropped from a
        label map, or None: the views are those of the input without that axis.
    spatial_shape : tuple of int
        The shape of one image (or volume), without the batch and class axes: the
        layout of the flat pixels of the views.
    """

    pred: np.ndarray
    true: np.ndarray
    num_classes: int
    pred_kind: str
    true_kind: str
    ignore_index: int | None
    pred_convert: Callable[[np.ndarray], np.ndarray] | None = None
    true_convert: Callable[[np.ndarray], np.ndarray] | None = None
    true_dtype: np.dtype | None = None
    pred_dtype: np.dtype | None = None
    channels: int | None = None
    true_lut: Lookup | None = None
    pred_lut: Lookup | None = None
    post: bool = False
    dropped_axes: tuple[int | None, int | None] = (None, None)
    spatial_shape: tuple[int, ...] = ()

    @property
    def kernel_lookups(self) -> tuple[Lookup | None, Lookup | None]:
        """The (truth, prediction) label-id maps the kernel applies while counting.

        None for an input without a map, or whose map has no kernel table (its converter
        applies it then).
        """
        return (
            None if self.true_lut is None or self.true_lut.dense is None else self.true_lut,
            None if self.pred_lut is None or self.pred_lut.dense is None else self.pred_lut,
        )

    @property
    def n_images(self) -> int:
        """Number of images (or volumes) in the batch."""
        return int(self.pred.shape[0])

    def slabs(self) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """Yield ``(first_image, pred, true)`` kernel inputs covering the batch.

        One slab (the views themselves) unless an input needs converting; then slabs of
        whole images whose converted inputs take at most :data:`SLAB_BYTES` (at least one
        image). Every slab is in a form the kernels are compiled for
        (:data:`fastseg.kernels.SIGNATURES`): C-contiguous, aligned, native byte order,
        one of their dtypes.
        """
        if self.pred_convert is None and self.true_convert is None:
            yield 0, self.pred, self.true
            return
        # Bytes of one converted image, counted at the widest dtype a converter makes
        # (8 bytes), so that a converted slab stays within SLAB_BYTES.
        inputs = ((self.pred, self.pred_convert), (self.true, self.true_convert))
        per_image = sum(
            math.prod(view.shape[1:]) * CONVERTED_ITEMSIZE for view, convert in inputs if convert
        )
        step = max(1, SLAB_BYTES // max(per_image, 1))
        for b0 in range(0, self.n_images, step):
            p = self.pred[b0 : b0 + step]
            t = self.true[b0 : b0 + step]
            yield (
                b0,
                self.pred_convert(p) if self.pred_convert else p,
                self.true_convert(t) if self.true_convert else t,
            )


def _on_cpu(device: Any) -> bool:
    """Whether an array's ``device`` is the host.

    PyTorch's ``device.type``, JAX's ``device.platform`` ("cpu"; its name may read
    "TFRT_CPU_0"), else its name.
    """
    for attr in ("type", "platform", "device_type"):
        kind = getattr(device, attr, None)
        if isinstance(kind, str):
            return kind.lower() == "cpu"
    return "cpu" in str(device).lower()


def _to_host_hint(x: Any) -> str:
    """How to copy `x` to host memory, by the library it comes from."""
    library = type(x).__module__.split(".")[0]
    if library == "torch":
        return "move it there with tensor.cpu()"
    if library in ("jax", "jaxlib"):
        return "copy it to the host with jax.device_get(array)"
    if library == "cupy":
        return "copy it to the host with array.get()"
    return "copy it to a NumPy array in host memory"


def _to_numpy(x: Any, name: str) -> np.ndarray:
    """View `x` as a NumPy array: through ``__array__``, else through DLPack."""
    if isinstance(x, np.ndarray):
        return x
    if not hasattr(x, "__array__") and hasattr(x, "__dlpack__"):
        try:
            return np.from_dlpack(x)
        except (BufferError, RuntimeError, TypeError) as exc:
            raise TypeError(f"{name} cannot be read through DLPack: {exc}") from exc
    try:
        return np.asarray(x)
    except RuntimeError as exc:  # e.g. a PyTorch tensor that requires grad
        raise TypeError(
            f"{name} cannot be viewed as a NumPy array ({exc}); pass a plain CPU array "
            f"(for a PyTorch tensor: tensor.detach().cpu())"
        ) from exc


def as_array(x: Any, name: str) -> np.ndarray:
    """Return `x` as a NumPy array without copying, refusing what cannot be counted.

    NumPy arrays, anything with ``__array__`` (a PyTorch CPU tensor, a Zarr or Dask
    array is read in full) and objects that only speak DLPack are accepted.

    Raises
    ------
    TypeError
        For GPU tensors, non-numeric dtypes (object, string, complex, datetime).
    ValueError
        For empty arrays.
    """
    device = getattr(x, "device", None)
    if device is not None and not isinstance(x, np.ndarray) and not _on_cpu(device):
        raise TypeError(
            f"{name} is on device {device!s}; fastseg counts on the CPU: "
            f"{_to_host_hint(x)} first"
        )
    arr = _to_numpy(x, name)
    if arr.dtype.kind not in "biuf":
        raise TypeError(
            f"{name} has dtype {arr.dtype}; fastseg needs a numeric array "
            f"(float16/32/64 scores, integer label maps or one-hot masks)"
        )
    if arr.dtype.kind == "f" and arr.dtype.itemsize > 8:
        raise TypeError(
            f"{name} has dtype {arr.dtype}; fastseg reads float16/32/64 scores: cast it to float64"
        )
    if arr.size == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape})")
    return arr


def _normalise_axis(axis: int, ndim: int, name: str) -> int:
    if not -ndim <= axis < ndim:
        raise ValueError(f"class_axis={axis} is out of range for {name} with {ndim} dimensions")
    axis %= ndim
    if axis == 0:
        raise ValueError("class_axis=0 is the batch axis; the class axis must come after it")
    return axis


def _check_ignore(ignore_index: int | None) -> int | None:
    if ignore_index is None:
        return None
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, int | np.integer):
        raise TypeError(f"ignore_index must be an integer or None; got {ignore_index!r}")
    if not -(2**63) <= int(ignore_index) < 2**63:
        raise ValueError(f"ignore_index={ignore_index} does not fit in a 64-bit integer")
    return int(ignore_index)


# How each input dtype reaches the kernels, which are compiled for a few forms only
# (fastseg.kernels.SIGNATURES: C-contiguous, aligned, native byte order, one of a few
# dtypes). An input is read as a pair (storage, read): when it is not already a
# C-contiguous, aligned array of dtype `storage`, it is copied slab by slab into one, and
# the kernel reads that viewed as `read` (same item size).


def _label_dtypes(dt: np.dtype) -> tuple[np.dtype, np.dtype]:
    """(storage, read) of a label map of dtype `dt` (kernels.LABEL_DTYPES)."""
    kind, size = dt.kind, dt.itemsize
    if kind == "b":
        return np.dtype(np.bool_), np.dtype(np.uint8)
    if kind == "u" and size == 8:
        # Read as int64: values >= 2**63 turn negative and are reported as out of range,
        # as they are (check_stats shows the value itself).
        return np.dtype(np.uint64), np.dtype(np.int64)
    if (kind, size) in (("u", 1), ("u", 2), ("i", 4), ("i", 8)):
        native = dt.newbyteorder("=")
        return native, native
    # int8 / int16 -> int32, uint32 -> int64: the values themselves (a negative label
    # stays negative, so it is reported, or matched to a negative ignore index).
    wide = np.dtype(np.int32 if size < 4 else np.int64)
    return wide, wide


def _score_dtypes(dt: np.dtype, soft: bool) -> tuple[np.dtype, np.dtype] | None:
    """(storage, read) of scores of dtype `dt` (kernels.SCORE_DTYPES / SOFT_SCORE_DTYPES).

    None for uint64 scores of hard counts: they are converted with the top bit flipped.
    """
    kind, size = dt.kind, dt.itemsize
    if kind == "b":
        return np.dtype(np.bool_), np.dtype(np.uint8)
    if kind == "f" and size == 2:
        # Hard counts read float16 as its bits (ordered as integers); soft sums need values.
        if soft:
            return np.dtype(np.float32), np.dtype(np.float32)
        return np.dtype(np.float16), np.dtype(np.uint16)
    if kind == "u" and size == 8:
        # Soft sums read every value as float64: converting first gives the same float64.
        return (np.dtype(np.float64),) * 2 if soft else None
    if (kind, size) in (("f", 4), ("f", 8), ("u", 1), ("i", 4), ("i", 8)):
        native = dt.newbyteorder("=")
        return native, native
    # int8 / int16 / uint16 (uint16 would read as float16 bits) -> int32, uint32 -> int64.
    wide = np.dtype(np.int32 if size <= 2 else np.int64)
    return wide, wide


def _kernel_view(
    arr: np.ndarray,
    view: np.ndarray | None,
    shape: tuple[int, ...],
    storage: np.dtype,
    read: np.dtype,
) -> tuple[np.ndarray, Callable | None]:
    """The kernel view of `arr` and its converter: (view, None) or (input, converter).

    (view, None) when `view` (`arr` reshaped to `shape`) is already in a form the kernels
    are compiled for; else the input and the converter that copies a slab into one.
    """
    if (view is not None and view.dtype == storage and view.flags.c_contiguous
            and view.flags.aligned):  # fmt: skip
        return view.view(read), None

    def convert(slab: np.ndarray) -> np.ndarray:
        out = np.require(slab, storage, ("C_CONTIGUOUS", "ALIGNED"))
        return out.reshape((out.shape[0], *shape[1:])).view(read)

    return (arr if view is None else view), convert


def _flat_view(arr: np.ndarray, shape: tuple[int, ...]) -> np.ndarray | None:
    """`arr` reshaped to `shape` without a copy, or None where no view exists."""
    try:
        return arr.reshape(shape, copy=False)
    except ValueError:
        return None  # not viewable in that layout (e.g. a strided slice): convert per slab


def _score_view(arr: np.ndarray, axis: int, soft: bool) -> tuple[np.ndarray, Callable | None]:
    """Kernel view of a score array and, when needed, its slab converter."""
    shape = arr.shape
    n = shape[axis]
    outer = math.prod(shape[1:axis])
    inner = math.prod(shape[axis + 1 :])
    new_shape = (shape[0], outer, n) if inner == 1 else (shape[0], outer, n, inner)
    view = _flat_view(arr, new_shape)
    dtypes = _score_dtypes(arr.dtype, soft)
    if dtypes is None:
        # Exact: the top bit flipped maps uint64 onto int64 in the same order (a float64
        # conversion would merge scores above 2**53).
        flip = _exact_uint64(arr)

        def convert_u64(slab: np.ndarray) -> np.ndarray:
            return flip(slab).reshape((slab.shape[0], *new_shape[1:]))

        return (arr if view is None else view), convert_u64
    return _kernel_view(arr, view, new_shape, *dtypes)


def _label_view(arr: np.ndarray) -> tuple[np.ndarray, Callable | None]:
    shape = (arr.shape[0], math.prod(arr.shape[1:]))
    return _kernel_view(arr, _flat_view(arr, shape), shape, *_label_dtypes(arr.dtype))


def _memory_class_axis(arrays: list[np.ndarray], axis: int) -> int:
    """The class axis to read score arrays along: `axis`, or where it lies in memory.

    When the arrays are not C-contiguous as given but are once their class axis is moved
    to position k (channels-last data viewed as channels-first, or the reverse, as
    PyTorch's ``channels_last`` memory format and ``permute`` make), they are read along
    k: moving the class axis keeps the order of the pixels, so the counts are the same,
    and the kernels read the memory as it lies instead of a copy.
    """
    if all(a.flags.c_contiguous for a in arrays):
        return axis
    ndim = arrays[0].ndim
    for k in (ndim - 1, *range(1, ndim - 1)):
        if all(np.moveaxis(a, axis, k).flags.c_contiguous for a in arrays):
            return k
    return axis


def _check_threshold(threshold: float | None) -> float | None:
    if threshold is None:
        return None
    if isinstance(threshold, bool) or not isinstance(threshold, int | float | np.integer |
                                                     np.floating):  # fmt: skip
        raise TypeError(f"threshold must be a number; got {threshold!r}")
    if not math.isfinite(float(threshold)):
        raise ValueError(f"threshold must be finite; got {threshold}")
    return float(threshold)


def _check_spatial_dims(spatial_dims: int | None) -> int | None:
    if spatial_dims is None:
        return None
    if isinstance(spatial_dims, bool) or not isinstance(spatial_dims, int | np.integer):
        raise TypeError(f"spatial_dims must be a positive integer; got {spatial_dims!r}")
    if spatial_dims < 1:
        raise ValueError(f"spatial_dims must be a positive integer; got {spatial_dims}")
    return int(spatial_dims)


#: Most classes the kernels can label: labels are int32, and N itself is the "no class"
#: label of the post's one-class threshold.
MAX_CLASSES = 2**31 - 2


def _memory_bytes() -> int | None:
    """Physical memory of this machine, or None where the OS does not say."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):
        return None


def check_num_classes(num_classes: int | None, *, soft: bool = False) -> int | None:
    """Return `num_classes` as an int, refusing what is not a usable class count.

    Refuses non-integers and counts below 1, and a count whose arrays cannot exist on
    this machine (hard: the N x N int64 confusion matrix; soft: three float64 rows of N
    per image), before anything of that size is allocated, with a message about classes
    rather than NumPy's.
    """
    if num_classes is None:
        return None
    if isinstance(num_classes, bool) or not isinstance(num_classes, int | np.integer):
        raise TypeError(f"num_classes must be a positive integer; got {num_classes!r}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer; got {num_classes}")
    n = int(num_classes)
    if soft:
        need = 3 * 8 * n
        what = f"three float64 rows of {n} values per image"
    else:
        need = 8 * n * n
        what = f"a {n} x {n} int64 confusion matrix"
    memory = _memory_bytes()
    if memory is not None and need > memory:
        why = f"this machine has {memory:.2g} bytes of memory"
    elif need >= 2**63:
        why = "no array can be that large"
    elif n > MAX_CLASSES:
        why = f"fastseg counts at most {MAX_CLASSES} classes (labels are int32)"
    else:
        return n
    raise ValueError(
        f"num_classes={n} needs {what} ({need:.2g} bytes); {why}: is num_classes right?"
    )


def prepare_options(
    *,
    num_classes: int | None = None,
    class_axis: int | None = None,
    ignore_index: int | None = None,
    threshold: float | None = None,
    spatial_dims: int | None = None,
    label_map: Any = None,
    label_map_pred: Any = None,
    reduce_zero_label: bool = False,
) -> dict[str, Any]:
    """Check the reading options without any array; return them normalised.

    Label maps come back as :class:`~fastseg.labelmaps.LabelMap` (files read once),
    `label_map_pred` as None, True (the truth's map) or a LabelMap.

    Raises
    ------
    TypeError, ValueError
        Naming the option at fault (e.g. ``ignore_index=255.7``, ``class_axis="1"``).
    """
    if class_axis is not None and (
        isinstance(class_axis, bool) or not isinstance(class_axis, int | np.integer)
    ):
        raise TypeError(f"class_axis must be an integer; got {class_axis!r}")
    ignore = _check_ignore(ignore_index)
    truth_map, pred_map = check_label_maps(label_map, label_map_pred, reduce_zero_label)
    return {
        "num_classes": check_num_classes(num_classes),
        "class_axis": None if class_axis is None else int(class_axis),
        "ignore_index": ignore,
        "threshold": _check_threshold(threshold),
        "spatial_dims": _check_spatial_dims(spatial_dims),
        "label_map": truth_map,
        "label_map_pred": pred_map,
        "reduce_zero_label": bool(reduce_zero_label),
    }


def check_label_maps(
    label_map: Any, label_map_pred: Any, reduce_zero_label: Any
) -> tuple[LabelMap | None, LabelMap | bool | None]:
    """The label-map options, normalised: (truth map, prediction map).

    The truth map is a :class:`~fastseg.labelmaps.LabelMap` or None; the prediction map a
    LabelMap, True (the truth's map, whichever it is) or None (``False`` and ``"none"``
    are None; ``"same"`` is True). Maps that are files are read here, once.

    Raises
    ------
    TypeError, ValueError
        `reduce_zero_label` not a bool or given with `label_map`; a map that cannot be
        read; `label_map_pred` True without a truth map.
    """
    if not isinstance(reduce_zero_label, bool | np.bool_):
        raise TypeError(f"reduce_zero_label must be True or False; got {reduce_zero_label!r}")
    if reduce_zero_label and label_map is not None:
        raise ValueError(
            "reduce_zero_label is a label map itself: pass label_map or reduce_zero_label, "
            "not both"
        )
    truth = as_label_map(label_map, "label_map")
    pred: LabelMap | bool | None
    if label_map_pred is None or label_map_pred is False or (
        isinstance(label_map_pred, str) and label_map_pred.lower() == "none"
    ):
        pred = None
    elif label_map_pred is True or (
        isinstance(label_map_pred, str) and label_map_pred.lower() == "same"
    ):
        if truth is None and not reduce_zero_label:
            raise ValueError(
                "label_map_pred=True applies the truth's label map to the prediction, but "
                "there is none: pass label_map (or reduce_zero_label)"
            )
        pred = True
    else:
        pred = as_label_map(label_map_pred, "label_map_pred")
    return truth, pred


def label_map_options(
    label_map: Any = None, label_map_pred: Any = None, reduce_zero_label: Any = False
) -> dict[str, Any]:
    """The label-map options checked (files read once) and in JSON-safe form.

    For option dicts that are passed to :func:`prepare` per block and recorded in
    checkpoint fingerprints: maps as ``{"ids": [...], "classes": [...]}``
    (:meth:`~fastseg.labelmaps.LabelMap.to_json`), which :func:`prepare` reads back.
    """
    truth, pred = check_label_maps(label_map, label_map_pred, reduce_zero_label)
    return {"label_map": jsonable(truth), "label_map_pred": jsonable(pred),
            "reduce_zero_label": bool(reduce_zero_label)}  # fmt: skip


def _fits(ndim: int, extra: int, spatial_dims: int | None) -> bool:
    """Whether an array of `ndim` axes is a batch of images with `extra` more axes."""
    spatial = ndim - 1 - extra
    return spatial >= 2 if spatial_dims is None else spatial == spatial_dims


def _batch_hint(spatial_dims: int | None) -> str:
    if spatial_dims is None:
        return (
            "the first axis is the batch and images have at least two spatial axes (one "
            "spatial axis only with spatial_dims=1): for one image add a batch axis (x[None])"
        )
    return f"the first axis is the batch, then spatial_dims={spatial_dims} spatial axes"


def _class_axis_option(k: int, ndim: int) -> str:
    """``class_axis=k`` as the option to pass, with the layout it means."""
    if k == 1:
        return "class_axis=1 (channels-first)"
    if k == ndim - 1:
        return "class_axis=-1 (channels-last)"
    return f"class_axis={k}"


def _axes_text(axes: list[int], conjunction: str) -> str:
    """``1``, ``1 and 2``, ``1, 2 and 3``."""
    if len(axes) == 1:
        return str(axes[0])
    return ", ".join(map(str, axes[:-1])) + f" {conjunction} {axes[-1]}"


def _channel_of_one(
    true: np.ndarray, pred: np.ndarray, class_axis: int | None, threshold: float | None
) -> tuple[int | None, int | None]:
    """Rule 1: the (truth, prediction) channel axis of length 1 to drop, or None.

    Raises
    ------
    ValueError
        A float one-channel input beside multi-channel scores (it could be a
        probability: only integers are read as class indices).
    """
    if threshold is not None:
        return None, None
    given = -1 if class_axis is None else class_axis
    pair = ((true, pred, "y_true", "y_pred"), (pred, true, "y_pred", "y_true"))
    for side, (arr, other, name, other_name) in enumerate(pair):
        if not -arr.ndim <= given < arr.ndim or given % arr.ndim == 0:
            continue  # no class axis there: the other rules say what is wrong
        k = given % arr.ndim
        if arr.shape[k] != 1:
            continue
        rest = arr.shape[:k] + arr.shape[k + 1 :]
        beside_scores = (other.ndim == arr.ndim and other.shape[k] > 1
                         and other.shape[:k] + other.shape[k + 1 :] == rest)  # fmt: skip
        beside_labels = other.shape == rest and other.dtype.kind in "biu"
        if not (beside_scores or beside_labels):
            continue
        if arr.dtype.kind in "biu":
            return (k, None) if side == 0 else (None, k)
        if beside_scores:
            raise ValueError(
                f"{name} has one channel along class_axis={given} beside {other_name}'s "
                f"{other.shape[k]}, but holds {arr.dtype}: a label map with a channel axis "
                f"of 1 must hold integers (a float channel could be a probability). If it "
                f"holds class indices, cast it (e.g. {name}.astype(np.int64), tensor.long())"
            )
    return None, None


def _one_channel_hint(true: np.ndarray, pred: np.ndarray) -> str:
    """For inputs of one ndim and different shapes: the class axis, when one input has 1."""
    differ = [k for k in range(1, pred.ndim) if pred.shape[k] != true.shape[k]]
    if len(differ) != 1 or pred.shape[0] != true.shape[0]:
        return ""
    k = differ[0]
    if 1 not in (pred.shape[k], true.shape[k]):
        return ""
    one, other = (("y_true", true), ("y_pred", pred)) if true.shape[k] == 1 else (
        ("y_pred", pred), ("y_true", true))  # fmt: skip
    text = (f"; {one[0]} has one channel on axis {k} where {other[0]} has "
            f"{other[1].shape[k]}: pass {_class_axis_option(k, pred.ndim)}")  # fmt: skip
    if one[1].dtype.kind in "biu":
        return f"{text} to read {one[0]} as a label map without that axis"
    return f"{text}, and cast {one[0]} ({one[1].dtype}) to integers if it holds class indices"


def _decide_kinds(
    true: np.ndarray,
    pred: np.ndarray,
    num_classes: int | None,
    class_axis: int | None,
    spatial_dims: int | None,
    threshold: float | None,
    dropped: tuple[int | None, int | None] = (None, None),
) -> tuple[str, str]:
    """(pred_kind, true_kind), each 'scores', 'labels' or 'map' (a float map, thresholded).

    `true` and `pred` are the inputs with the axes `dropped` by rule 1 already dropped.
    """
    if dropped != (None, None) and pred.ndim == true.ndim:
        # Rule 1 made a label map beside a label map: class_axis no longer applies.
        if not _fits(pred.ndim, 0, spatial_dims):
            raise ValueError(
                f"y_true and y_pred are label maps of shape {pred.shape}; "
                f"{_batch_hint(spatial_dims)}"
            )
        if num_classes is None:
            name = "y_true" if dropped[0] is not None else "y_pred"
            raise ValueError(
                f"both inputs are label maps ({name} without its channel axis of 1): pass "
                f"num_classes=N"
            )
        return ("labels", "labels")
    if pred.ndim != true.ndim:
        if abs(pred.ndim - true.ndim) != 1:
            raise ValueError(
                f"y_true and y_pred shapes do not fit: {true.shape} and {pred.shape} "
                "(expected the same shape, or one extra class axis on the scores)"
            )
        kinds = ("scores", "labels") if pred.ndim > true.ndim else ("labels", "scores")
        if not _fits(min(pred.ndim, true.ndim), 0, spatial_dims):
            pair = (("y_pred", pred), ("y_true", true))
            first, second = pair if kinds[0] == "scores" else pair[::-1]
            raise ValueError(
                f"{first[0]} has shape {first[1].shape} and {second[0]} {second[1].shape}; "
                f"{_batch_hint(spatial_dims)}"
            )
        return kinds
    if pred.shape != true.shape:
        raise ValueError(
            f"y_true and y_pred have different shapes: {true.shape} and {pred.shape}"
            f"{_one_channel_hint(true, pred)}"
        )
    ndim = pred.ndim
    as_scores = _fits(ndim, 1, spatial_dims)
    as_labels = _fits(ndim, 0, spatial_dims)
    if not (as_scores or as_labels):
        raise ValueError(f"y_true and y_pred have shape {pred.shape}; {_batch_hint(spatial_dims)}")
    floating = [a.dtype.kind in "fb" for a in (pred, true)]
    if any(floating):
        if as_scores:
            return ("scores", "scores")
        if threshold is not None:
            # Maps without a class axis: floats are one-channel scores, thresholded.
            return ("map" if floating[0] else "labels", "map" if floating[1] else "labels")
        name = "y_pred" if floating[0] else "y_true"
        dtype = pred.dtype if floating[0] else true.dtype
        raise ValueError(
            f"{name} has dtype {dtype} and shape {pred.shape}, which has no room for a class "
            f"axis: a label map must hold integers. For the probabilities of one class pass "
            f"threshold=t (foreground where score > t); for scores add the class axis"
        )
    if class_axis is not None:
        if not as_scores:
            raise ValueError(
                f"class_axis={class_axis} was given but y_true and y_pred (shape {pred.shape}) "
                f"have no room for a class axis; {_batch_hint(spatial_dims)}"
            )
        return ("scores", "scores")
    if not as_scores:
        if num_classes is None:
            raise ValueError("both inputs are label maps: pass num_classes=N")
        return ("labels", "labels")
    if num_classes is None or not as_labels:
        raise ValueError(
            f"y_true and y_pred are integer arrays of the same shape {pred.shape}: pass "
            f"num_classes=N to read them as label maps, or class_axis=K to read them as "
            f"one-hot masks along axis K"
        )
    axes = [k for k in range(1, ndim) if pred.shape[k] == num_classes]
    if axes:
        raise ValueError(
            f"y_true and y_pred are integer arrays of shape {pred.shape}, ambiguous with "
            f"num_classes={num_classes}: one-hot masks along axis {axes[-1]} or label maps "
            f"with {ndim - 1} spatial axes. Pass class_axis={axes[-1] - ndim} for one-hot "
            f"masks, or spatial_dims={ndim - 1} for label maps"
        )
    return ("labels", "labels")


def _threshold_view(
    arr: np.ndarray, axis: int | None, threshold: float, name: str
) -> tuple[np.ndarray, Callable]:
    """A one-channel score (or a float map) as the label map ``score > threshold``."""
    shape = arr.shape if axis is None else arr.shape[:axis] + arr.shape[axis + 1 :]
    flat = (shape[0], math.prod(shape[1:]))
    try:
        view = arr.reshape(flat, copy=False)
    except ValueError:
        view = arr

    def convert(slab: np.ndarray) -> np.ndarray:
        if slab.dtype.kind == "f":
            nans = int(np.count_nonzero(np.isnan(slab)))
            if nans:
                raise ValueError(f"{name} has NaN scores at {nans} pixels")
        labels = np.ascontiguousarray(slab > threshold).view(np.uint8)
        return labels.reshape(labels.shape[0], -1)

    return view, convert


def _exact_uint64(arr: np.ndarray) -> Callable:
    """Converter of uint64 scores to int64 with the same order (top bit flipped): exact."""

    def convert(slab: np.ndarray) -> np.ndarray:
        native = np.ascontiguousarray(slab, dtype=np.uint64)
        return (native ^ np.uint64(1 << 63)).view(np.int64)

    return convert


def prepare(
    y_true: Any,
    y_pred: Any,
    *,
    num_classes: int | None = None,
    class_axis: int | None = None,
    ignore_index: int | None = None,
    soft: bool = False,
    threshold: float | None = None,
    spatial_dims: int | None = None,
    post: bool = False,
    label_map: Any = None,
    label_map_pred: Any = None,
    reduce_zero_label: bool = False,
) -> Prepared:
    """Validate two inputs and return their kernel views.

    Parameters
    ----------
    y_true, y_pred : array_like
        Truth and prediction; see the module docstring for the kinds and the rules.
    num_classes : int, optional
        N. Required when both inputs are label maps; checked against the class axis
        otherwise.
    class_axis : int, optional
        Axis of the classes in score / one-hot inputs (default: last).
    ignore_index : int, optional
        Truth label whose pixels are skipped entirely.
    soft : bool
        Prepare for soft sums (the prediction must then be scores).
    threshold : float, optional
        Reads one-channel scores (and float maps without a class axis) as the two-class
        label map ``score > threshold``.
    spatial_dims : int, optional
        Number of spatial axes (default: at least two).
    post : bool
        The post's reading, for the post-compatible API only: one channel is the single
        class where its score is ``> 0``.
    label_map : dict, array, path or LabelMap, optional
        Stored truth id -> class index (:func:`fastseg.labelmaps.as_label_map`); every id
        it does not map to a class is the ignore index (without one, an error when
        found). The truth must be a label map.
    label_map_pred : dict, array, path, LabelMap or bool, optional
        The same for a label-map prediction (a map given for score predictions is
        refused). True: predictions are stored in the truth's ids, so a label-map
        prediction gets the truth's map (scores have no ids: nothing to map). A
        prediction id not mapped to a class is an error (a predicted pixel must be a
        class).
    reduce_zero_label : bool
        mmsegmentation's ``reduce_zero_label`` as the truth's map: id 0 -> ignore index,
        id k -> class k - 1 (:func:`fastseg.labelmaps.reduce_zero_label_map`); needs
        `ignore_index`.

    Returns
    -------
    Prepared

    Raises
    ------
    TypeError, ValueError
        With a message naming the argument at fault.
    """
    true = as_array(y_true, "y_true")
    pred = as_array(y_pred, "y_pred")
    options = prepare_options(num_classes=num_classes, class_axis=class_axis,
                              ignore_index=ignore_index, threshold=threshold,
                              spatial_dims=spatial_dims, label_map=label_map,
                              label_map_pred=label_map_pred,
                              reduce_zero_label=reduce_zero_label)  # fmt: skip
    num_classes, class_axis = options["num_classes"], options["class_axis"]
    ignore, threshold = options["ignore_index"], options["threshold"]
    spatial_dims = options["spatial_dims"]

    dropped = _channel_of_one(true, pred, class_axis, threshold)
    if dropped[0] is not None:
        true = np.squeeze(true, dropped[0])
    if dropped[1] is not None:
        pred = np.squeeze(pred, dropped[1])
    pred_kind, true_kind = _decide_kinds(true, pred, num_classes, class_axis, spatial_dims,
                                         threshold, dropped)  # fmt: skip
    if soft and pred_kind != "scores":
        raise ValueError(
            f"soft metrics need scores for y_pred, not a label map{swap_hint(true_kind, pred_kind)}"
        )

    axis: int | None = None
    channels: int | None = None
    if "scores" in (pred_kind, true_kind):
        scores = pred if pred_kind == "scores" else true
        scores_name = "y_pred" if pred_kind == "scores" else "y_true"
        axis = _normalise_axis(-1 if class_axis is None else int(class_axis), scores.ndim,
                               scores_name)  # fmt: skip
        channels = int(scores.shape[axis])
        if pred_kind != true_kind:
            spatial = scores.shape[:axis] + scores.shape[axis + 1 :]
            labels = true if true_kind == "labels" else pred
            if labels.shape != spatial:
                raise ValueError(
                    f"y_true and y_pred shapes do not fit: {true.shape} and {pred.shape} "
                    f"(the label map should have the scores' shape without the class axis "
                    f"{axis}, {spatial}"
                    f"{_fit_hint(scores.shape, labels.shape, axis, num_classes, scores_name)})"
                )

    binary = threshold is not None and (channels == 1 or "map" in (pred_kind, true_kind))
    if threshold is not None and not binary:
        raise ValueError(
            f"threshold={threshold} is for one-channel scores, but the scores have {channels} "
            f"channels along class_axis={axis}: leave threshold out (the argmax is taken)"
        )
    if channels == 1 and not binary and not post:
        name = "y_pred" if pred_kind == "scores" else "y_true"
        one = pred if pred_kind == "scores" else true
        # Integers of one channel may be label maps that rule 1 could not pair.
        labels_hint = "" if one.dtype.kind not in "biu" else (
            f". An integer input of one channel is a label map only beside multi-channel "
            f"scores or a label map without that axis; for two such label maps, drop the "
            f"axis from both (np.squeeze(y, {axis}), tensor.squeeze({axis})) and pass "
            f"num_classes=N")  # fmt: skip
        raise ValueError(
            f"{name} has one channel along class_axis={axis}: pass threshold=t to read it "
            f"as foreground where score > t (classes 0 background, 1 foreground; e.g. 0.5 "
            f"for probabilities, 0 for logits){labels_hint}"
        )
    if binary and soft:
        raise ValueError(
            "soft metrics need one channel per class; a one-channel probability p is "
            "background 1 - p and foreground p: stack the two channels"
        )

    if binary:
        n = 2
        if num_classes is not None and num_classes != 2:
            raise ValueError(
                f"num_classes={num_classes}, but thresholded one-channel scores have 2 "
                f"classes (0 background, 1 foreground)"
            )
    elif channels is not None:
        assert axis is not None
        n = channels
        if num_classes is not None and num_classes != n:
            found = "" if scores.ndim < 3 else _axis_hint(scores.shape, num_classes, axis)
            raise ValueError(
                f"num_classes={num_classes} but {scores_name} has {n} classes along "
                f"class_axis={axis - scores.ndim}{found}"
            )
    else:
        assert num_classes is not None
        n = num_classes

    for arr, kind, name in ((pred, pred_kind, "y_pred"), (true, true_kind, "y_true")):
        if kind == "labels" and arr.dtype.kind not in "biu":
            raise TypeError(
                f"{name} is read as a label map (it has no class axis) so it must hold "
                f"integers; got {arr.dtype}"
            )

    read_axis = axis
    if axis is not None and not binary:
        score_arrays = [a for a, k in ((pred, pred_kind), (true, true_kind)) if k == "scores"]
        read_axis = _memory_class_axis(score_arrays, axis)

    def view(arr: np.ndarray, kind: str, name: str) -> tuple[np.ndarray, Callable | None]:
        if kind == "labels":
            return _label_view(arr)
        if kind == "map" or binary:
            assert threshold is not None
            return _threshold_view(arr, None if kind == "map" else axis, threshold, name)
        assert axis is not None
        assert read_axis is not None
        return _score_view(np.moveaxis(arr, axis, read_axis), read_axis, soft)

    true_lut, pred_lut = _lookups(options, true, pred, true_kind, pred_kind, n, ignore)
    pred_view, pred_convert = (_mapped_view(pred, pred_lut) if pred_lut is not None
                               else view(pred, pred_kind, "y_pred"))  # fmt: skip
    true_view, true_convert = (_mapped_view(true, true_lut) if true_lut is not None
                               else view(true, true_kind, "y_true"))  # fmt: skip
    # A thresholded map has no class axis: for chunking it is a label map.
    pred_kind, true_kind = (k.replace("map", "labels") for k in (pred_kind, true_kind))
    if "scores" in (pred_kind, true_kind) and axis is not None:
        scores = pred if pred_kind == "scores" else true
        spatial_shape = tuple(np.delete(np.asarray(scores.shape), axis)[1:].tolist())
    else:
        spatial_shape = tuple(true.shape[1:])
    return Prepared(pred_view, true_view, n, pred_kind, true_kind, ignore,
                    pred_convert, true_convert, true.dtype, pred.dtype, channels,
                    true_lut, pred_lut, post, dropped, spatial_shape)  # fmt: skip


def _lookups(
    options: dict[str, Any],
    true: np.ndarray,
    pred: np.ndarray,
    true_kind: str,
    pred_kind: str,
    n: int,
    ignore: int | None,
) -> tuple[Lookup | None, Lookup | None]:
    """The label-id lookups of the truth and the prediction (rule 6), checked."""
    truth_map: LabelMap | None = options["label_map"]
    option = "label_map"
    if options["reduce_zero_label"]:
        if ignore is None:
            raise ValueError(
                "reduce_zero_label sends id 0 to the ignore index, but there is none: pass "
                "ignore_index (mmsegmentation uses 255)"
            )
        truth_map, option = reduce_zero_label_map(n), "reduce_zero_label"
    pred_map = options["label_map_pred"]
    pred_option = "label_map_pred"
    if pred_map is True:
        # "Predictions are stored in the truth's ids": a label-map prediction is mapped;
        # scores have no ids (their class axis is indexed by class already).
        pred_map = truth_map if pred_kind == "labels" else None
        pred_option = f"label_map_pred (the truth's {option})"
    for given, kind, name, what in ((truth_map, true_kind, "y_true", option),
                                    (pred_map, pred_kind, "y_pred", "label_map_pred")):  # fmt: skip
        if given is not None and kind != "labels":
            raise ValueError(
                f"{what} maps the ids of a label map, but {name} has "
                f"{'scores (a class axis)' if kind == 'scores' else 'float scores'}: its "
                f"classes are already indices{swap_hint(true_kind, pred_kind)}"
            )
    true_lut = None if truth_map is None else lookup(truth_map, true.dtype, n, ignore,
                                                       "y_true", option)  # fmt: skip
    pred_lut = None if pred_map is None else lookup(pred_map, pred.dtype, n, ignore,
                                                      "y_pred", pred_option)  # fmt: skip
    return true_lut, pred_lut


def _mapped_view(arr: np.ndarray, lut: Lookup) -> tuple[np.ndarray, Callable | None]:
    """Kernel view of a label map of stored ids.

    The ids as any label map (the kernel reads ``lut.dense``), or, without a kernel
    table, the ids with the lookup as converter.
    """
    if lut.dense is not None:
        return _label_view(arr)
    try:
        view = arr.reshape((arr.shape[0], math.prod(arr.shape[1:])), copy=False)
    except ValueError:
        view = arr  # not viewable flat (e.g. a strided slice): the lookup copies anyway
    return view, lut


def _axis_hint(shape: tuple[int, ...], num_classes: int, axis: int) -> str:
    """Where N classes may lie in scores of `shape` whose class axis `axis` has another length."""
    axes = [k for k in range(1, len(shape)) if shape[k] == num_classes and k != axis]
    if len(axes) == 1:
        option = _class_axis_option(axes[0], len(shape))
        return f"; its axis {axes[0]} has {num_classes}: pass {option}"
    if axes:
        return (
            f"; its axes {_axes_text(axes, 'and')} all have {num_classes}: pass class_axis= "
            f"the one that holds the classes"
        )
    return f"; no other axis of its shape {shape} has {num_classes}: is num_classes right?"


def _fit_hint(
    shape: tuple[int, ...],
    labels_shape: tuple[int, ...],
    axis: int,
    num_classes: int | None,
    name: str,
) -> str:
    """Where the class axis of scores of `shape` may be, beside a label map that does not fit."""
    fits = [k for k in range(1, len(shape))
            if k != axis and shape[:k] + shape[k + 1 :] == labels_shape]  # fmt: skip
    if len(fits) == 1:
        k = fits[0]
        if num_classes not in (None, shape[k]):
            return (
                f"; it would fit without axis {k}, but that axis has {shape[k]} entries, not "
                f"num_classes={num_classes}"
            )
        return f"; its class axis looks like axis {k}: pass {_class_axis_option(k, len(shape))}"
    if fits:
        # Equal neighbouring lengths: either axis dropped gives the label map's shape.
        return (
            f"; without axis {_axes_text(fits, 'or')} the shapes would fit: pass class_axis= "
            f"the one that holds the classes"
        )
    axes = [] if num_classes is None else [
        k for k in range(1, len(shape)) if k != axis and shape[k] == num_classes]  # fmt: skip
    if len(axes) == 1:
        k = axes[0]
        return (
            f"; {name}'s axis {k} has num_classes={num_classes} entries, but without it the "
            f"shape {shape[:k] + shape[k + 1 :]} is not the label map's either"
        )
    if axes:
        return (
            f"; {name}'s axes {_axes_text(axes, 'and')} have num_classes={num_classes} "
            f"entries, but without any of them the label map does not fit either"
        )
    return ""


#: What errors add when the kinds show the inputs in the wrong order.
SWAPPED = "y_true holds scores and y_pred a label map: the two look swapped; pass (y_true, y_pred)"


def swap_hint(true_kind: str, pred_kind: str) -> str:
    """``"; " + SWAPPED`` when the truth holds scores and the prediction a label map, else ""."""
    return f"; {SWAPPED}" if (true_kind, pred_kind) == ("scores", "labels") else ""

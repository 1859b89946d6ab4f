"""Validation and normalisation of inputs: what each array is, and the kernel's view of it.

Every public entry point passes its two arrays through :func:`prepare`. It decides the
*kind* of each input from its ``ndim``, dtype and the keywords, checks everything that
can be checked without reading the data, and returns a :class:`Prepared` value holding
zero-copy views in the layouts the kernels read (see :mod:`fastseg.kernels`).

Kinds
-----
scores
    Logits, probabilities or one-hot masks with a class axis (``class_axis``, default
    last); float16/32/64, integer or bool. Hard metrics take their argmax.
labels
    An integer label map without a class axis, one dimension fewer than scores.

Rules, in order:

1. ``y_pred.ndim == y_true.ndim + 1``: scores and a truth label map.
2. ``y_true.ndim == y_pred.ndim + 1``: a predicted label map and score / one-hot truth.
3. Same shape, either floating: both have a class axis (the post's reading).
4. Same shape, both integer or bool: label maps if ``num_classes`` is given, one-hot
   arrays if ``class_axis`` is given; with neither (or both) the call is ambiguous and
   raises, naming the keyword to set. Bool arrays are always one-hot.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

#: Largest slab converted at once when an input must be converted (byte order, dtypes
#: the kernels do not read directly): bounds the extra memory.
SLAB_BYTES = 8 * 2**20


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
    ignore_index : int or None
    pred_convert, true_convert : callable or None
        When set, the view must be converted slab by slab before a kernel reads it.
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

    @property
    def n_images(self) -> int:
        """Number of images (or volumes) in the batch."""
        return int(self.pred.shape[0])

    def slabs(self) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """Yield ``(first_image, pred, true)`` kernel inputs covering the batch.

        One slab (the views themselves) unless an input needs converting; then slabs of
        whole images of at most :data:`SLAB_BYTES` (at least one image).
        """
        if self.pred_convert is None and self.true_convert is None:
            yield 0, self.pred, self.true
            return
        per_image = max(self.pred[0].nbytes + self.true[0].nbytes, 1)
        step = max(1, SLAB_BYTES // per_image)
        for b0 in range(0, self.n_images, step):
            p = self.pred[b0 : b0 + step]
            t = self.true[b0 : b0 + step]
            yield (
                b0,
                self.pred_convert(p) if self.pred_convert else p,
                self.true_convert(t) if self.true_convert else t,
            )


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
    if device is not None and not isinstance(x, np.ndarray):
        kind = getattr(device, "type", str(device))
        if str(kind) not in ("cpu", "CPU"):
            raise TypeError(
                f"{name} is on device {device!s}; fastseg counts on the CPU: move it "
                f"there first (e.g. tensor.cpu())"
            )
    arr = _to_numpy(x, name)
    if arr.dtype.kind not in "biuf":
        raise TypeError(
            f"{name} has dtype {arr.dtype}; fastseg needs a numeric array "
            f"(float16/32/64 scores, integer label maps or one-hot masks)"
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


def _require_integer_labels(arr: np.ndarray, name: str) -> None:
    if arr.dtype.kind not in "biu":
        raise TypeError(
            f"{name} is read as a label map (it has no class axis) so it must hold integers; "
            f"got {arr.dtype}"
        )
    if arr.ndim < 2:
        raise ValueError(
            f"{name} has shape {arr.shape}; a label map needs a batch axis and at least one "
            f"spatial axis (add a batch axis with {name}[None])"
        )


def _native(arr: np.ndarray) -> np.ndarray:
    return arr.astype(arr.dtype.newbyteorder("="), copy=False)


def _score_view(arr: np.ndarray, axis: int, soft: bool) -> tuple[np.ndarray, Callable | None]:
    """Kernel view of a score array and, when needed, its slab converter."""
    shape = arr.shape
    n = shape[axis]
    outer = math.prod(shape[1:axis])
    inner = math.prod(shape[axis + 1 :])
    new_shape = (shape[0], outer, n) if inner == 1 else (shape[0], outer, n, inner)
    try:
        view = arr.reshape(new_shape, copy=False)
    except ValueError:
        view = None  # not viewable in that layout (e.g. a strided slice): convert per slab

    dt = arr.dtype
    native = dt.isnative or dt.itemsize == 1
    target: np.dtype | None = None
    if dt.kind == "f" and dt.itemsize == 2:
        # Hard metrics read float16 as its bits; soft sums need values.
        target = np.dtype(np.float32) if soft else None
    elif dt.kind == "u" and dt.itemsize == 2:
        target = np.dtype(np.int32)  # kernels read uint16 as float16 bits
    elif dt.kind == "u" and dt.itemsize == 8:
        target = np.dtype(np.float64)
    elif dt.kind == "b":
        target = None
    if target is None and (not native or view is None):
        target = dt.newbyteorder("=")

    def finish(v: np.ndarray) -> np.ndarray:
        if v.dtype.kind == "b":
            return v.view(np.uint8)
        if v.dtype.kind == "f" and v.dtype.itemsize == 2:
            return v.view(np.uint16)
        return v

    if target is None:
        assert view is not None
        return finish(view), None

    def convert(slab: np.ndarray) -> np.ndarray:
        out = np.ascontiguousarray(slab, dtype=target)
        return finish(out.reshape((out.shape[0], *new_shape[1:])))

    return (arr if view is None else view), convert


def _label_view(arr: np.ndarray) -> tuple[np.ndarray, Callable | None]:
    shape = (arr.shape[0], math.prod(arr.shape[1:]))
    dt = arr.dtype
    try:
        view = arr.reshape(shape, copy=False)
    except ValueError:
        view = None
    if (dt.isnative or dt.itemsize == 1) and view is not None:
        if dt.kind == "b":
            return view.view(np.uint8), None
        if dt.kind == "u" and dt.itemsize == 8:
            # Values >= 2**63 turn negative and are reported as out of range, as they are.
            return view.view(np.int64), None
        return view, None
    target = np.dtype(np.int64) if dt.kind == "u" and dt.itemsize == 8 else _native(
        np.empty(0, dt)).dtype  # fmt: skip
    if dt.kind == "b":
        target = np.dtype(np.uint8)

    def convert(slab: np.ndarray) -> np.ndarray:
        out = np.ascontiguousarray(slab, dtype=target)
        return out.reshape(out.shape[0], -1)

    return (arr if view is None else view), convert


def prepare(
    y_true: Any,
    y_pred: Any,
    *,
    num_classes: int | None = None,
    class_axis: int | None = None,
    ignore_index: int | None = None,
    soft: bool = False,
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
    ignore = _check_ignore(ignore_index)
    if num_classes is not None:
        if isinstance(num_classes, bool) or not isinstance(num_classes, int | np.integer):
            raise TypeError(f"num_classes must be a positive integer; got {num_classes!r}")
        if num_classes < 1:
            raise ValueError(f"num_classes must be a positive integer; got {num_classes}")
        num_classes = int(num_classes)

    if pred.ndim == true.ndim + 1:
        kinds = ("scores", "labels")
    elif true.ndim == pred.ndim + 1:
        kinds = ("labels", "scores")
    elif pred.ndim == true.ndim:
        if pred.shape != true.shape:
            raise ValueError(
                f"y_true and y_pred have different shapes: {true.shape} and {pred.shape}"
            )
        if (
            pred.dtype.kind == "f"
            or true.dtype.kind == "f"
            or pred.dtype.kind == "b"
            or true.dtype.kind == "b"
        ):
            kinds = ("scores", "scores")
        elif num_classes is not None and class_axis is None:
            kinds = ("labels", "labels")
        elif class_axis is not None and num_classes is None:
            kinds = ("scores", "scores")
        else:
            raise ValueError(
                "y_true and y_pred are integer arrays of the same shape "
                f"{pred.shape}: pass num_classes=N to read them as label maps, or "
                "class_axis=K to read them as one-hot masks along axis K (not both)"
            )
    else:
        raise ValueError(
            f"y_true and y_pred shapes do not fit: {true.shape} and {pred.shape} "
            "(expected the same shape, or one extra class axis on the scores)"
        )
    pred_kind, true_kind = kinds
    if soft and pred_kind != "scores":
        raise ValueError("soft metrics need scores for y_pred, not a label map")

    if pred_kind == "labels" and true_kind == "labels":
        if num_classes is None:
            raise ValueError("both inputs are label maps: pass num_classes=N")
        if class_axis is not None:
            raise ValueError("class_axis was given but neither input has a class axis")
        n, axis = num_classes, -1
        scores = pred
    else:
        scores = pred if pred_kind == "scores" else true
        scores_name = "y_pred" if pred_kind == "scores" else "y_true"
        if scores.ndim < 3:
            raise ValueError(
                f"{scores_name} has shape {scores.shape}; scores need a batch axis, at least "
                f"one spatial axis and a class axis, e.g. (B, H, W, N)"
            )
        axis = _normalise_axis(-1 if class_axis is None else int(class_axis), scores.ndim,
                               scores_name)  # fmt: skip
        n = int(scores.shape[axis])
        if num_classes is not None and num_classes != n:
            raise ValueError(
                f"num_classes={num_classes} but {scores_name} has {n} classes along "
                f"class_axis={axis}"
            )
    for arr, kind, name in ((pred, pred_kind, "y_pred"), (true, true_kind, "y_true")):
        if kind == "labels":
            _require_integer_labels(arr, name)
    if pred_kind != true_kind:
        spatial = scores.shape[:axis] + scores.shape[axis + 1 :]
        labels = true if true_kind == "labels" else pred
        if labels.shape != spatial:
            raise ValueError(
                f"y_true and y_pred shapes do not fit: {true.shape} and {pred.shape} "
                f"(the label map should have the scores' shape without the class axis, "
                f"{spatial})"
            )

    def view(arr: np.ndarray, kind: str) -> tuple[np.ndarray, Callable | None]:
        if kind == "labels":
            return _label_view(arr)
        return _score_view(arr, axis, soft)

    pred_view, pred_convert = view(pred, pred_kind)
    true_view, true_convert = view(true, true_kind)
    return Prepared(pred_view, true_view, n, pred_kind, true_kind, ignore,
                    pred_convert, true_convert, true.dtype, pred.dtype)  # fmt: skip

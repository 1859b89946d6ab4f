"""Class-index images of prepared inputs, for the metrics that look at neighbours.

Region counts need only each pixel's pair of classes; boundary counts
(:mod:`fastseg.boundary`) and surface distances (:mod:`fastseg.surface`) need the classes
laid out as the image: which pixels of a class touch another class. :func:`class_images`
gives them slab by slab, from the inputs as :func:`fastseg.inputs.prepare` left them:

- a label map as its class indices (through its label-id map, if it has one);
- scores as their argmax over the classes (the first largest, as the kernels take it).

Ignored truth pixels hold :func:`ignored_value` (N, one past the classes), so they belong
to no class. The inputs have been counted first (:func:`fastseg.counting.count_prepared`),
so their labels are valid and their scores free of NaN.
"""

from __future__ import annotations

from collections.abc import Iterator

import numba
import numpy as np

from fastseg import kernels
from fastseg.inputs import Prepared
from fastseg.labelmaps import Lookup


def lookup_codes(lut: Lookup | None) -> kernels.LabelCodes:
    """A label-id map as the kernels apply it (:class:`fastseg.kernels.LabelCodes`)."""
    if lut is None:
        return kernels.NO_CODES
    assert lut.dense is not None
    return kernels.LabelCodes(lut.dense, lut.default)


def ignored_value(num_classes: int) -> int:
    """The value of ignored truth pixels in a class image: N, which is no class."""
    return int(num_classes)


def class_images(prep: Prepared) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Yield ``(first image, truth, prediction)`` class images covering the batch.

    Both int32 of shape ``(b, *prep.spatial_shape)``; the truth's ignored pixels hold
    :func:`ignored_value`. Slabs of whole images, as :meth:`Prepared.slabs`.
    """
    true_lut, pred_lut = prep.kernel_lookups
    n = prep.num_classes
    classes = kernels.Classes(n, False, 0, kernels.NO_CODES, lookup_codes(pred_lut))
    threads = numba.get_num_threads()
    for b0, p, t in prep.slabs():
        shape = (t.shape[0], *prep.spatial_shape)
        true_cls = _classes(t, true_lut, prep.true_dtype, n).reshape(shape)
        # The decoders of the counting kernels: the same labels, at their speed.
        pred_cls = kernels.pred_labels(p, classes, threads).reshape(shape)
        if prep.ignore_index is not None:
            true_cls[true_cls == prep.ignore_index] = ignored_value(n)
        yield b0, true_cls, pred_cls


def _classes(
    view: np.ndarray, lut: Lookup | None, dtype: np.dtype | None, num_classes: int
) -> np.ndarray:
    """The class of every pixel of a kernel view, int32 of shape (b, P)."""
    if view.ndim == 2:
        codes = lut.kernel_codes(view) if lut is not None else view
        return np.asarray(codes, np.int32)
    if dtype is not None and dtype == np.float16:
        view = view.view(np.float16)  # the kernels read float16 as its bits
    if view.ndim == 3:  # (b, P, N): channels last
        return np.argmax(view, axis=2).astype(np.int32)
    b, outer, _, inner = view.shape  # (b, O, N, I): the class axis inside
    return np.argmax(view, axis=2).astype(np.int32).reshape(b, outer * inner)

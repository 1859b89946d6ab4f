"""Class-index images of prepared inputs, for the metrics that look at neighbours.

Region counts need only each pixel's pair of classes; boundary counts
(:mod:`fastseg.boundary`) and surface distances (:mod:`fastseg.surface`) need the classes
laid out as the image: which pixels of a class touch another class. :func:`class_images`
gives them slab by slab, from the inputs as :func:`fastseg.inputs.prepare` left them:

- a label map as its class indices: the input itself, or through its label-id map;
- scores as their argmax over the classes (the first largest, as the kernels take it).

Ignored truth pixels keep the ignore index, which both consumers take as no class. The
inputs have been counted first (:func:`fastseg.counting.count_prepared`), so their labels
are valid and their scores free of NaN.
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


def class_images(prep: Prepared) -> Iterator[tuple[int, np.ndarray, np.ndarray, int]]:
    """Yield ``(first image, truth, prediction, ignored)`` class images covering the batch.

    Both of shape ``(b, *prep.spatial_shape)``, integers; truth pixels equal to `ignored`
    (the ignore index, or N where there is none) belong to no class and are not
    counted. Label maps read without a label-id map are the inputs themselves (no copy);
    scores are argmax-ed by the counting kernels' decoders (:func:`fastseg.kernels.pred_labels`).
    Slabs of whole images, as :meth:`Prepared.slabs`.
    """
    true_lut, pred_lut = prep.kernel_lookups
    n = prep.num_classes
    classes = kernels.Classes(n, False, 0, kernels.NO_CODES, lookup_codes(pred_lut))
    threads = numba.get_num_threads()
    ignored = n if prep.ignore_index is None else prep.ignore_index
    for b0, p, t in prep.slabs():
        shape = (t.shape[0], *prep.spatial_shape)
        if t.ndim == 2:
            true_cls = t if true_lut is None else true_lut.kernel_codes(t)
        else:  # one-hot or score truth: its argmax, the ignore index read as no class
            true_cls = kernels.pred_labels(t, kernels.Classes(n, False, 0), threads)
        if p.ndim == 2 and pred_lut is None:
            pred_cls = p
        else:
            pred_cls = kernels.pred_labels(p, classes, threads)
        yield b0, true_cls.reshape(shape), pred_cls.reshape(shape), ignored

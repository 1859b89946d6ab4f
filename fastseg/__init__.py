"""fastseg: fast, exact IoU and Dice for semantic segmentation.

Post-compatible metrics (:func:`metrics`, :func:`mean_iou`, :func:`mean_dice`) give the
numbers of the post's NumPy code (:mod:`fastseg.reference`) in one Numba pass; counts
(:func:`counts`, :func:`confusion_matrix`) are the exact sufficient statistic that every
metric is computed from.
"""

from fastseg.counting import confusion_matrix, counts
from fastseg.counts import Counts
from fastseg.post import mean_dice, mean_iou, metrics

__version__ = "0.1.0"

__all__ = [
    "Counts",
    "__version__",
    "confusion_matrix",
    "counts",
    "mean_dice",
    "mean_iou",
    "metrics",
]

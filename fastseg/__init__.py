"""fastseg: fast, exact IoU and Dice for semantic segmentation.

Post-compatible metrics (:func:`metrics`, :func:`mean_iou`, :func:`mean_dice`) give the
numbers of the post's NumPy code (:mod:`fastseg.reference`) in one Numba pass; counts
(:func:`counts`, :func:`confusion_matrix`) are the exact sufficient statistic that every
metric is computed from. Data-set metrics come from an :class:`Accumulator` (streaming,
in memory) or :func:`evaluate` (Zarr / Dask, out of core) as a :class:`Report`.
"""

from fastseg._version import __version__
from fastseg.counting import confusion_matrix, counts
from fastseg.counts import Counts
from fastseg.dataset import evaluate
from fastseg.dataset_presets import dataset_preset
from fastseg.policy import PRESETS, Policy
from fastseg.post import mean_dice, mean_iou, metrics
from fastseg.report import Report
from fastseg.stream import Accumulator

__all__ = [
    "PRESETS",
    "Accumulator",
    "Counts",
    "Policy",
    "Report",
    "__version__",
    "confusion_matrix",
    "counts",
    "dataset_preset",
    "evaluate",
    "mean_dice",
    "mean_iou",
    "metrics",
]

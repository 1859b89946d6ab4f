"""The per-image statistics a :class:`~fastseg.counts.Counts` can carry, by kind.

The registry files are read through (:func:`fastseg.counts.counts_from_arrays`): a kind
named in a file's metadata is built by its class here.
"""

from __future__ import annotations

from fastseg.boundary import BoundarySums
from fastseg.calibration import CalibrationSums
from fastseg.image_stats import ImageStat
from fastseg.surface import SurfaceStat

#: Kind -> class of every per-image statistic (:attr:`ImageStat.KIND`).
EXTRA_KINDS: dict[str, type[ImageStat]] = {
    cls.KIND: cls for cls in (BoundarySums, CalibrationSums, SurfaceStat)
}

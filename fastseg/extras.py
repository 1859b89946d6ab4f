"""The per-image statistics a :class:`~fastseg.counts.Counts` can carry, by kind.

The registry files are read through (:func:`fastseg.counts.counts_from_arrays`): a kind
named in a file's metadata is built by its class here. Also the one check of the options
that ask for them (:func:`extra_options`) and the settings they give (:func:`extra_settings`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastseg.boundary import BoundarySums, check_width
from fastseg.calibration import CalibrationSums
from fastseg.calibration import check_options as check_calibration_options
from fastseg.image_stats import ImageStat
from fastseg.surface import SurfaceStat, check_surface_options

#: Kind -> class of every per-image statistic (:attr:`ImageStat.KIND`).
EXTRA_KINDS: dict[str, type[ImageStat]] = {
    cls.KIND: cls for cls in (BoundarySums, CalibrationSums, SurfaceStat)
}


def extra_options(
    *,
    soft: bool = False,
    calibration: int | None = None,
    calibration_softmax: bool = False,
    boundary: float | None = None,
    surface: Any = None,
    spacing: Any = None,
    percentile: float | None = 95.0,
) -> dict[str, Any]:
    """The options of the per-image statistics, checked and in one form.

    The one check of these options that every entry point makes (``counts``, the
    ``Accumulator``, ``evaluate``), before any compute. Returns the options of the
    statistics asked for only: ``calibration`` and ``calibration_softmax``;
    ``boundary``; ``surface`` (the tolerance), ``spacing`` and ``percentile`` (as
    :func:`fastseg.surface.check_surface_options` normalises them). What the inputs
    must be for each is checked where they are known
    (:func:`fastseg.counting.check_extras`).

    Raises
    ------
    ValueError
        A bad value; a statistic of soft sums; `calibration_softmax` without
        `calibration`, `spacing` without `surface`.
    """
    out: dict[str, Any] = {}
    n_bins = check_calibration_options(calibration, calibration_softmax)
    if n_bins is not None:
        if soft:
            raise ValueError("calibration bins hard predictions' confidences: leave out soft=True")
        out.update(calibration=n_bins, calibration_softmax=bool(calibration_softmax))
    if boundary is not None:
        out["boundary"] = check_width(boundary)
        if soft:
            raise ValueError("boundary counts are counts of hard labels: leave out soft=True")
    if surface is not None:
        setting = check_surface_options(surface, spacing, percentile)
        if soft:
            raise ValueError("surface metrics compare hard labels: leave out soft=True")
        out.update(surface=setting["tolerance"], spacing=setting["spacing"],
                   percentile=setting["percentile"])  # fmt: skip
    elif spacing is not None:
        raise ValueError("spacing applies to surface metrics: pass surface=tolerance")
    return out


def extra_settings(options: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Kind -> the setting its statistic carries, for options of :func:`extra_options`."""
    settings: dict[str, dict[str, Any]] = {}
    if options.get("calibration") is not None:
        settings["calibration"] = {"n_bins": options["calibration"],
                                   "softmax": options["calibration_softmax"]}  # fmt: skip
    if options.get("boundary") is not None:
        settings["boundary"] = {"width": options["boundary"]}
    if options.get("surface") is not None:
        settings["surface"] = {"tolerance": options["surface"], "spacing": options["spacing"],
                               "percentile": options["percentile"]}  # fmt: skip
    return settings

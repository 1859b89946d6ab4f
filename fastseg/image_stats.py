"""Statistics kept per image beside the counts: their common form, merge and file layout.

Region counts are not the only thing a data set is scored on. Boundary counts
(:mod:`fastseg.boundary`), confidence histograms (:mod:`fastseg.calibration`) and
surface scores (:mod:`fastseg.surface`) travel with a :class:`~fastseg.counts.Counts` as
its :attr:`~fastseg.counts.Counts.extras`: each is an :class:`ImageStat`, arrays whose
first axis is the image (row ``i`` is image ``first_image + i`` of the counts) and a
*setting* (the parameters it was computed with, e.g. the number of bins). Counts merge
their extras row by row, like their own rows (:func:`merge_rows`): parts of one image
(blocks that split it) add up for sums, and are refused for per-case scores, which only
a whole image gives. Parts computed with different settings never merge.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np


@dataclasses.dataclass(frozen=True, eq=False)
class ImageStat:
    """Base of the per-image statistics kept in :attr:`fastseg.counts.Counts.extras`.

    Subclasses are frozen dataclasses whose fields are the per-image arrays named in
    :attr:`ROWS` (first axis: images) and JSON-able settings (every other field).
    """

    #: The statistic's name: its key in ``Counts.extras`` and its files' array prefix.
    KIND: ClassVar[str] = ""
    #: Fields holding per-image arrays.
    ROWS: ClassVar[tuple[str, ...]] = ()
    #: Whether parts of one image add up (sums); per-case scores do not.
    ADDITIVE: ClassVar[bool] = True

    @property
    def n_images(self) -> int:
        """Number of images (rows)."""
        return int(getattr(self, self.ROWS[0]).shape[0])

    def arrays(self) -> dict[str, np.ndarray]:
        """The per-image arrays by field name."""
        return {name: getattr(self, name) for name in self.ROWS}

    def setting(self) -> dict[str, Any]:
        """The parameters the statistic was computed with (JSON-able)."""
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name not in self.ROWS
        }

    def replace_rows(self, arrays: Mapping[str, np.ndarray]) -> ImageStat:
        """The same statistic with other rows."""
        return dataclasses.replace(self, **arrays)

    def class_values(self) -> dict[str, np.ndarray]:
        """Per-class values for the report's table, by column name (none by default)."""
        return {}

    def report_dict(self) -> dict[str, Any]:
        """What the report's JSON holds of this statistic: its setting by default."""
        return self.setting()

    def total(self) -> ImageStat:
        """The rows summed into one (data-set sums; sums only)."""
        if not self.ADDITIVE:
            return self
        return self.replace_rows(
            {k: v.sum(axis=0, keepdims=True) for k, v in self.arrays().items()}
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ImageStat):
            return NotImplemented
        return (
            type(self) is type(other)
            and self.setting() == other.setting()
            and all(
                np.array_equal(a, b, equal_nan=a.dtype.kind == "f")
                for a, b in zip(self.arrays().values(), other.arrays().values(), strict=True)
            )
        )

    __hash__ = None  # type: ignore[assignment]


def merge_rows(
    parts: Sequence[tuple[int, ImageStat]], start: int, stop: int, consecutive: bool
) -> ImageStat:
    """Merge one statistic's parts, each given with its first image, into rows start..stop.

    Raises
    ------
    ValueError
        For parts of different settings, or parts of one image of a per-case statistic.
    """
    head = parts[0][1]
    for _, part in parts:
        if type(part) is not type(head) or part.setting() != head.setting():
            raise ValueError(
                f"cannot merge {head.KIND} computed with {head.setting()} and with "
                f"{part.setting()}"
            )
    if consecutive:
        return head.replace_rows(
            {name: np.concatenate([p.arrays()[name] for _, p in parts]) for name in head.ROWS}
        )
    if not head.ADDITIVE:
        spans = sorted((first, first + p.n_images) for first, p in parts)
        for (_, a_stop), (b_start, _) in itertools.pairwise(spans):
            if b_start < a_stop:
                raise ValueError(
                    f"{head.KIND} are scores of whole images: parts that split image "
                    f"{b_start} cannot be merged (evaluate whole images per block)"
                )
    merged = {}
    for name, array in head.arrays().items():
        fill = np.nan if array.dtype.kind == "f" and not head.ADDITIVE else 0
        out = np.full((stop - start, *array.shape[1:]), fill, array.dtype)
        for first, part in parts:
            rows = slice(first - start, first - start + part.n_images)
            if head.ADDITIVE:
                out[rows] += part.arrays()[name]
            else:
                out[rows] = part.arrays()[name]
        merged[name] = out
    return head.replace_rows(merged)

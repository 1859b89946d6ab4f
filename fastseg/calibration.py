"""Calibration of score predictions: confidence histograms, ECE, MCE, reliability.

The confidence of a pixel is its largest score: the probability the model gives the
class it predicts (with ``softmax``: the softmax of logits at that class). Counted
pixels (truth not ignored, scores not NaN) fall into ``n`` equal bins of confidence,
torchmetrics' ``multiclass_calibration_error`` bins exactly: bin ``k`` holds confidences
in ``[edges[k], edges[k + 1])``, with ``edges`` the float32 values of ``k / n``, and a
last bin holds the confidences equal to 1. As there, a confidence is binned as float32
(a float64 confidence is rounded to float32 to choose its bin; its sum is not). Per bin
and image, the kernel adds (in the same pass as the counts,
:class:`fastseg.kernels.Calibration`):

- ``pixels``: the pixels in the bin;
- ``correct``: those predicted right (predicted class == true class);
- ``confidence``: the sum of their confidences, as integers in units of ``2**-24``
  (each confidence rounded to that grid: exact for float16, and for float32 in
  [0.5, 1]; at most 3e-8 off otherwise), so sums are exact, and identical for any split
  of the data, order of merges or number of threads.

From the data-set sums, with ``acc_k = correct_k / pixels_k``, ``conf_k = confidence_k /
pixels_k`` (both 0 for an empty bin) and ``w_k = pixels_k / sum(pixels)``::

    ECE = sum_k w_k |acc_k - conf_k|        (torchmetrics norm="l1")
    MCE = max_k |acc_k - conf_k|            (norm="max")

NaN when no pixel was counted. A reliability diagram plots ``acc_k`` against the bins
(:meth:`fastseg.report.Report.plot`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import numpy as np

from fastseg import kernels
from fastseg.image_stats import ImageStat

#: Default number of bins (torchmetrics' default).
DEFAULT_BINS = 15
#: Largest number of bins accepted.
MAX_BINS = 10_000


def check_options(n_bins: object, softmax: object) -> int | None:
    """The number of bins (None: no calibration), or a ValueError for bad options."""
    if n_bins is None:
        if softmax:
            raise ValueError("calibration_softmax applies to calibration: pass calibration=BINS")
        return None
    return check_bins(n_bins)


def check_bins(n_bins: object, name: str = "calibration") -> int:
    """`n_bins` as an int in [1, MAX_BINS], or a ValueError naming `name`."""
    if isinstance(n_bins, bool) or not isinstance(n_bins, int | np.integer):
        raise ValueError(f"{name} is a number of confidence bins (an int); got {n_bins!r}")
    if not 1 <= int(n_bins) <= MAX_BINS:
        raise ValueError(f"{name} must be between 1 and {MAX_BINS} bins; got {n_bins}")
    return int(n_bins)


@dataclasses.dataclass(frozen=True, eq=False)
class CalibrationSums(ImageStat):
    """Per-image confidence histograms of the predicted class (see the module docstring).

    Attributes
    ----------
    pixels, correct, confidence : ndarray of int64, shape (B, n_bins + 1)
        Per image and bin: counted pixels, pixels predicted right, and the sum of their
        confidences in units of ``2**-24``. The last bin holds confidences equal to 1.
    n_bins : int
        The number of equal bins of [0, 1).
    softmax : bool
        Whether confidences are the softmax of logits rather than the scores.
    """

    KIND: ClassVar[str] = "calibration"
    ROWS: ClassVar[tuple[str, ...]] = ("pixels", "correct", "confidence")

    pixels: np.ndarray
    correct: np.ndarray
    confidence: np.ndarray
    n_bins: int
    softmax: bool = False

    def __post_init__(self) -> None:
        shape = (self.pixels.shape[0], self.n_bins + 1)
        for name in self.ROWS:
            a = getattr(self, name)
            if a.shape != shape or a.dtype != np.int64:
                raise ValueError(
                    f"calibration {name} must be int64 of shape {shape}; got {a.dtype} "
                    f"{a.shape}"
                )

    @classmethod
    def from_kernel(cls, out: np.ndarray, n_bins: int, softmax: bool) -> CalibrationSums:
        """From the ``(B, 3, n_bins + 1)`` output of :class:`fastseg.kernels.Calibration`."""
        return cls(
            np.ascontiguousarray(out[:, kernels.CAL_PIXELS]),
            np.ascontiguousarray(out[:, kernels.CAL_CORRECT]),
            np.ascontiguousarray(out[:, kernels.CAL_CONFIDENCE]),
            n_bins,
            softmax,
        )

    @classmethod
    def zeros(cls, n_images: int, n_bins: int, softmax: bool = False) -> CalibrationSums:
        """Histograms of `n_images` images in which nothing was counted."""
        z = np.zeros((n_images, n_bins + 1), np.int64)
        return cls(z, z.copy(), z.copy(), n_bins, softmax)

    @property
    def edges(self) -> np.ndarray:
        """The bins' edges: ``n_bins + 1`` float32 values of ``k / n_bins``, as float64."""
        return kernels.calibration_edges(self.n_bins)

    def bins(self, per_image: bool = False) -> dict[str, np.ndarray]:
        """Per bin: ``pixels``, ``accuracy`` and mean ``confidence`` (0 where empty).

        Data-set sums, or one row per image with `per_image`.
        """
        pixels, correct, conf = (
            (a if per_image else a.sum(axis=0)).astype(np.float64)
            for a in (self.pixels, self.correct, self.confidence)
        )
        safe = np.where(pixels > 0, pixels, 1.0)
        return {
            "pixels": pixels,
            "accuracy": np.where(pixels > 0, correct / safe, 0.0),
            "confidence": np.where(pixels > 0, conf / 2.0**kernels.CONFIDENCE_BITS / safe, 0.0),
        }

    def ece(self, per_image: bool = False) -> float | np.ndarray:
        """Expected calibration error (l1): NaN when no pixel was counted."""
        b = self.bins(per_image)
        total = b["pixels"].sum(axis=-1, keepdims=True)
        gap = np.abs(b["accuracy"] - b["confidence"])
        with np.errstate(invalid="ignore", divide="ignore"):
            value = (gap * b["pixels"]).sum(axis=-1) / total[..., 0]
        return value if per_image else float(value)

    def mce(self, per_image: bool = False) -> float | np.ndarray:
        """Maximum calibration error over the bins: NaN when no pixel was counted."""
        b = self.bins(per_image)
        gap = np.abs(b["accuracy"] - b["confidence"]).max(axis=-1)
        value = np.where(b["pixels"].sum(axis=-1) > 0, gap, np.nan)
        return value if per_image else float(value)

    def report_dict(self) -> dict[str, Any]:
        """The report's JSON part: the setting, ECE, MCE and the bins.

        ``n_bins``, ``softmax``, ``ece``, ``mce`` and ``bins``: per bin its ``lower`` /
        ``upper`` edges, ``pixels``, ``accuracy`` and mean ``confidence`` (data-set sums).
        """
        b = self.bins()
        edges = self.edges
        rows = [
            {"lower": float(edges[k]), "upper": float(edges[k + 1]) if k < self.n_bins else 1.0,
             "pixels": int(b["pixels"][k]), "accuracy": float(b["accuracy"][k]),
             "confidence": float(b["confidence"][k])}
            for k in range(self.n_bins + 1)
        ]  # fmt: skip
        return {"n_bins": self.n_bins, "softmax": self.softmax, "ece": self.ece(),
                "mce": self.mce(), "bins": rows}  # fmt: skip

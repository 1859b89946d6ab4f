"""The Counts value: the sufficient statistic of every metric, and how it merges."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: Version of the ``.npz`` layout written by :meth:`Counts.save`.
FORMAT_VERSION = 1


@dataclass(frozen=True, eq=False)
class Counts:
    """Per-image counts of a batch, and its confusion matrix.

    Hard counts are exact int64 pixel counts; soft counts are float64 sums.

    Attributes
    ----------
    tp : ndarray, shape (B, N)
        Intersection per image and class: pixels of class c in truth and prediction
        (soft: sum of ``|p * t|``).
    pred : ndarray, shape (B, N)
        Pixels predicted as c (soft: sum of ``|p|``), counted where the truth is not
        ignored.
    true : ndarray, shape (B, N)
        Pixels labelled c (soft: sum of ``|t|``).
    confusion : ndarray of int64, shape (N, N), or None
        Rows truth, columns prediction, summed over the batch; None for soft counts.
    ignored : int
        Truth pixels skipped because they equal the ignore index.

    Notes
    -----
    ``union = pred + true - tp`` and the Dice denominator is ``pred + true``.
    ``a + b`` concatenates the images of `a` and `b` and adds the confusion matrices:
    merging is exact, so counts do not depend on how the data was split.
    """

    tp: np.ndarray
    pred: np.ndarray
    true: np.ndarray
    confusion: np.ndarray | None = None
    ignored: int = 0

    def __post_init__(self) -> None:
        if not (self.tp.shape == self.pred.shape == self.true.shape) or self.tp.ndim != 2:
            raise ValueError(
                "tp, pred and true must share one (images, classes) shape; got "
                f"{self.tp.shape}, {self.pred.shape}, {self.true.shape}"
            )
        n = self.tp.shape[1]
        if self.confusion is not None and self.confusion.shape != (n, n):
            raise ValueError(f"confusion must be ({n}, {n}); got {self.confusion.shape}")

    @property
    def soft(self) -> bool:
        """True for soft (float) sums."""
        return self.tp.dtype.kind == "f"

    @property
    def num_classes(self) -> int:
        """Number of classes N."""
        return int(self.tp.shape[1])

    @property
    def n_images(self) -> int:
        """Number of images B."""
        return int(self.tp.shape[0])

    @property
    def union(self) -> np.ndarray:
        """``pred + true - tp`` per image and class."""
        return self.pred + self.true - self.tp

    def total(self) -> Counts:
        """The counts of the whole batch as one image (data-set sums)."""
        return Counts(
            self.tp.sum(axis=0, keepdims=True),
            self.pred.sum(axis=0, keepdims=True),
            self.true.sum(axis=0, keepdims=True),
            self.confusion,
            self.ignored,
        )

    def __add__(self, other: Counts) -> Counts:
        if not isinstance(other, Counts):
            return NotImplemented
        if other.num_classes != self.num_classes or other.soft != self.soft:
            raise ValueError(
                f"cannot merge counts of {self.num_classes} classes "
                f"({'soft' if self.soft else 'hard'}) with counts of {other.num_classes} "
                f"classes ({'soft' if other.soft else 'hard'})"
            )
        confusion = None
        if self.confusion is not None and other.confusion is not None:
            confusion = self.confusion + other.confusion
        return Counts(
            np.concatenate([self.tp, other.tp]),
            np.concatenate([self.pred, other.pred]),
            np.concatenate([self.true, other.true]),
            confusion,
            self.ignored + other.ignored,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Counts):
            return NotImplemented
        if self.confusion is None or other.confusion is None:
            same_confusion = self.confusion is None and other.confusion is None
        else:
            same_confusion = np.array_equal(self.confusion, other.confusion)
        return (
            same_confusion
            and self.ignored == other.ignored
            and all(
                np.array_equal(a, b)
                for a, b in ((self.tp, other.tp), (self.pred, other.pred), (self.true, other.true))
            )
        )

    __hash__ = None  # type: ignore[assignment]

    def save(self, path: str | Path) -> None:
        """Write the counts to an ``.npz`` file (format :data:`FORMAT_VERSION`)."""
        meta = {"format": "fastseg.counts", "version": FORMAT_VERSION, "ignored": self.ignored}
        arrays: dict[str, np.ndarray] = {"tp": self.tp, "pred": self.pred, "true": self.true}
        if self.confusion is not None:
            arrays["confusion"] = self.confusion
        arrays["meta"] = np.array(json.dumps(meta))
        np.savez(path, **arrays)  # type: ignore[arg-type]

    @classmethod
    def load(cls, path: str | Path) -> Counts:
        """Read counts written by :meth:`save`, refusing other files with a clear error."""
        try:
            with np.load(path, allow_pickle=False) as f:
                meta = json.loads(str(f["meta"]))
                arrays = {k: f[k] for k in f.files if k != "meta"}
        except (OSError, ValueError, KeyError) as exc:
            raise ValueError(f"{path} is not a fastseg counts file: {exc}") from exc
        if meta.get("format") != "fastseg.counts" or meta.get("version") != FORMAT_VERSION:
            raise ValueError(f"{path}: unsupported counts format {meta!r}")
        return cls(
            arrays["tp"],
            arrays["pred"],
            arrays["true"],
            arrays.get("confusion"),
            int(meta["ignored"]),
        )

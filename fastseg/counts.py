"""The Counts value: the sufficient statistic of every metric, how it merges, its files.

One statistic, one merge: :class:`Counts` holds the per-image counts of a run of
consecutive images (from :attr:`Counts.first_image` on) and :meth:`Counts.merge` is the
only way counts are combined: ``+``, the streaming :class:`~fastseg.stream.Accumulator`
and the Dask reduction of :func:`fastseg.evaluate` all go through it. Its optional
instance sums (:attr:`Counts.instances`, Cityscapes' iIoU) travel, merge and are saved
with it.

Counts, accumulators and checkpoint blocks are all saved by :func:`save_counts` (over
:func:`save_versioned`) and read by :func:`load_versioned` and :func:`counts_from_arrays`:
an uncompressed ``.npz`` (no pickles) whose ``meta`` entry is a JSON object with a
``format`` tag and a ``version``, written atomically. Every way such a file can be wrong
(missing, truncated, empty, damaged, another program's ``.npz``, another fastseg format or
version, arrays that disagree with the metadata) ends in a :class:`ValueError` naming the
file and the problem.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
from collections.abc import Collection, Iterable, Mapping
from dataclasses import KW_ONLY, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fastseg._files import save_npz
from fastseg.image_stats import ImageStat, merge_rows
from fastseg.instances import InstanceSums

#: Version of the ``.npz`` layout written by :meth:`Counts.save`: 2 adds the optional
#: instance sums (:attr:`Counts.instances`), 3 the per-image statistics
#: (:attr:`Counts.extras`); counts without them are still written as version 1 (or 2),
#: the same layout, so any fastseg reads them.
FORMAT_VERSION = 3
#: The version of counts files with instance sums and no extras.
_INSTANCE_VERSION = 2
#: The version of counts files without instance sums.
_PLAIN_VERSION = 1
#: Arrays of the instance sums (:class:`~fastseg.instances.InstanceSums`) in files.
INSTANCE_ARRAYS = ("instance_fractions", "instance_count")
_FORMAT = "fastseg.counts"
#: Metadata key of :attr:`Counts.first_image` in files holding counts (absent means 0).
FIRST_IMAGE_KEY = "b0"
#: Metadata key of the extras' settings (kind -> setting); their arrays are saved as
#: ``EXTRA_PREFIX + kind + "." + field``.
EXTRAS_KEY = "extras"
EXTRA_PREFIX = "x."
#: First bytes of a zip archive (an ``.npz``): a local file header, or an empty archive.
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")


def save_versioned(
    path: str | os.PathLike[str],
    fmt: str,
    version: int,
    meta: Mapping[str, Any],
    arrays: Mapping[str, np.ndarray],
) -> Path:
    """Write `arrays` and a ``meta`` JSON entry tagged `fmt` / `version`, atomically.

    The file is an uncompressed ``.npz`` at exactly `path` (no suffix added); ``meta``
    holds ``{"format": fmt, "version": version, **meta}``. Returns the path.
    """
    if "meta" in arrays:
        raise ValueError("'meta' is reserved for the metadata entry")
    header = {"format": fmt, "version": version, **meta}
    return save_npz(path, {**arrays, "meta": np.array(json.dumps(header))})


def save_counts(
    path: str | os.PathLike[str],
    counts: Counts,
    fmt: str,
    version: int,
    meta: Mapping[str, Any],
    arrays: Mapping[str, np.ndarray] | None = None,
) -> Path:
    """Write `counts` (and any other `arrays`) with :func:`save_versioned`, atomically.

    Arrays ``tp``, ``pred``, ``true`` and, when there is one, ``confusion``, and with
    instance sums ``instance_fractions`` (N x N float64) and ``instance_count`` (N int64);
    ``meta`` holds `meta`, then ``ignored``, ``soft`` and, when it is not 0, the first
    image (:data:`FIRST_IMAGE_KEY`). :func:`counts_from_arrays` reads them back. Returns
    the path.
    """
    header = {**meta, "ignored": int(counts.ignored), "soft": counts.soft}
    if counts.first_image:
        header[FIRST_IMAGE_KEY] = counts.first_image
    held = {"tp": counts.tp, "pred": counts.pred, "true": counts.true}
    if counts.confusion is not None:
        held["confusion"] = counts.confusion
    if counts.instances is not None:
        held[INSTANCE_ARRAYS[0]] = counts.instances.fractions
        held[INSTANCE_ARRAYS[1]] = counts.instances.instances
    if counts.extras:
        header[EXTRAS_KEY] = {kind: x.setting() for kind, x in counts.extras.items()}
        for kind, x in counts.extras.items():
            for name, a in x.arrays().items():
                held[f"{EXTRA_PREFIX}{kind}.{name}"] = a
    return save_versioned(path, fmt, version, header, {**held, **(arrays or {})})


def counts_version(counts: Counts) -> int:
    """The lowest :meth:`Counts.save` layout version that holds `counts`."""
    if counts.extras:
        return FORMAT_VERSION
    return _PLAIN_VERSION if counts.instances is None else _INSTANCE_VERSION


def _extras_from_arrays(
    path: str | os.PathLike[str],
    what: str,
    arrays: Mapping[str, np.ndarray],
    meta: Mapping[str, Any],
) -> dict[str, ImageStat]:
    from fastseg.extras import EXTRA_KINDS

    settings = meta.get(EXTRAS_KEY, {})
    if not isinstance(settings, dict):
        raise corrupt_file(path, what, f"{EXTRAS_KEY} is {settings!r}, not an object")
    found = {}
    for kind, setting in settings.items():
        cls = EXTRA_KINDS.get(kind)
        if cls is None:
            raise corrupt_file(path, what, f"unknown per-image statistic {kind!r}")
        if not isinstance(setting, dict):
            raise corrupt_file(path, what, f"{kind} setting {setting!r} is not an object")
        rows = {}
        for name in cls.ROWS:
            key = f"{EXTRA_PREFIX}{kind}.{name}"
            if key not in arrays:
                raise corrupt_file(path, what, f"{kind} without its array {name!r}")
            rows[name] = arrays[key]
        try:
            found[kind] = cls(**rows, **setting)
        except (TypeError, ValueError) as exc:
            raise corrupt_file(path, what, f"{kind}: {exc}") from exc
    return found


def check_format(
    where: str | os.PathLike[str],
    meta: Any,
    fmt: str,
    versions: Collection[int],
    what: str,
    *,
    hint: str = "",
) -> dict[str, Any]:
    """`meta` if it is a JSON object tagged `fmt` with one of `versions`, else a ValueError.

    `where` names the file in messages, `what` the kind of file ("accumulator");
    `hint` is added to the message about an unsupported version.
    """
    if not isinstance(meta, dict):
        raise ValueError(
            f"{os.fspath(where)} is not a fastseg {what} file: its metadata is "
            f"{type(meta).__name__}, not a JSON object"
        )
    tag = meta.get("format")
    if tag != fmt:
        found = "no format tag" if tag is None else f"format {tag!r}"
        raise ValueError(
            f"{os.fspath(where)} is not a fastseg {what} file: unsupported {what} format "
            f"({found}; expected {fmt!r})"
        )
    version = meta.get("version")
    if isinstance(version, bool) or version not in versions:
        readable = ", ".join(str(v) for v in sorted(versions))
        newer = (
            isinstance(version, int)
            and not isinstance(version, bool)
            and version > max(versions)
        )
        why = "; it was written by a newer fastseg: upgrade fastseg to read it" if newer else ""
        raise ValueError(
            f"{os.fspath(where)} has unsupported {what} format version {version!r}; this "
            f"fastseg reads version {readable}{why}{hint}"
        )
    return meta


def _damaged(path: str, what: str, reason: str) -> ValueError:
    return ValueError(
        f"{path} is not a readable fastseg {what} file ({reason}): it is truncated or "
        f"damaged, or is not a fastseg {what} file at all"
    )


def corrupt_file(path: str | os.PathLike[str], what: str, detail: str) -> ValueError:
    """The error for a readable fastseg file whose content disagrees with itself."""
    return ValueError(f"{os.fspath(path)} is a corrupt fastseg {what} file: {detail}")


def load_versioned(
    path: str | os.PathLike[str],
    fmt: str,
    versions: Collection[int],
    *,
    what: str,
    hint: str = "",
    arrays: bool = True,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read a file written by :func:`save_versioned`: its metadata and its arrays.

    Parameters
    ----------
    path : path
    fmt : str
        The format tag the file must carry.
    versions : collection of int
        The versions this reader understands.
    what : str
        The kind of file, for messages ("accumulator", "counts", "checkpoint block").
    hint : str, optional
        Added to the message about an unsupported version.
    arrays : bool, default True
        False reads the metadata only (and returns no arrays).

    Returns
    -------
    meta : dict
        The ``meta`` JSON object (with ``format`` and ``version``).
    arrays : dict of str to ndarray
        Every other entry.

    Raises
    ------
    ValueError
        Naming `path` and the problem: it cannot be read (missing, a folder, no
        permission), is empty, truncated or damaged, is not an ``.npz``, is another
        program's ``.npz`` (no fastseg metadata), carries another format tag or an
        unsupported version.
    """
    shown = os.fspath(path)
    try:
        file = open(path, "rb")  # noqa: SIM115 - closed below, after every array is read
    except OSError as exc:
        raise ValueError(
            f"{shown} is not a fastseg {what} file: it cannot be read "
            f"({exc.strerror or exc})"
        ) from exc
    with file:
        return _read_versioned(file, shown, fmt, versions, what, hint, arrays)


def _read_versioned(
    file: Any,
    shown: str,
    fmt: str,
    versions: Collection[int],
    what: str,
    hint: str,
    with_arrays: bool,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    try:
        head = file.read(4)
        file.seek(0)
    except OSError as exc:  # e.g. a folder
        raise ValueError(
            f"{shown} is not a fastseg {what} file: it cannot be read ({exc.strerror or exc})"
        ) from exc
    if not head:
        raise _damaged(shown, what, "the file is empty")
    if head not in _ZIP_MAGIC:
        raise _damaged(shown, what, "not an .npz (zip) archive")
    try:
        npz = np.load(file, allow_pickle=False)
    except Exception as exc:  # BadZipFile, EOFError, zlib.error, ValueError, ...
        raise _damaged(shown, what, f"{type(exc).__name__}: {exc}") from exc
    with npz:
        names = list(npz.files)
        if "meta" not in names:
            held = ", ".join(names[:10]) or "nothing"
            raise ValueError(
                f"{shown} is not a fastseg {what} file: it has no 'meta' entry "
                f"(an .npz holding {held})"
            )

        def read(name: str) -> np.ndarray:
            try:
                return npz[name]
            except Exception as exc:  # CRC errors, bad headers, object arrays, ...
                raise _damaged(
                    shown, what, f"entry {name!r}: {type(exc).__name__}: {exc}"
                ) from exc

        raw = read("meta")
        try:
            if raw.ndim != 0 or raw.dtype.kind != "U":
                raise ValueError(f"a {raw.dtype} array of shape {raw.shape}, not a JSON string")
            meta = json.loads(str(raw))
        except ValueError as exc:
            raise ValueError(
                f"{shown} is not a fastseg {what} file: its 'meta' entry is not fastseg "
                f"metadata ({exc})"
            ) from exc
        meta = check_format(shown, meta, fmt, versions, what, hint=hint)
        wanted = names if with_arrays else []
        arrays = {name: read(name) for name in wanted if name != "meta"}
    return meta, arrays


def counts_from_arrays(
    path: str | os.PathLike[str],
    what: str,
    arrays: Mapping[str, np.ndarray],
    meta: Mapping[str, Any],
    *,
    soft: bool | None = None,
    strict: bool = False,
) -> Counts:
    """The :class:`Counts` held by a loaded file (written by :func:`save_counts`), checked.

    `arrays` and `meta` are what :func:`load_versioned` returned: the counts' arrays (the
    instance sums' :data:`INSTANCE_ARRAYS` both or neither), and their ``ignored`` pixels
    and first image (:data:`FIRST_IMAGE_KEY`, absent means 0).
    `soft` None infers hard or soft from the arrays' dtype. With `strict`, hard counts
    must be int64 with an int64 confusion matrix and soft sums float64 without one (the
    layout fastseg's own accumulators and checkpoint blocks write); otherwise any
    integer (hard) or float (soft) dtype is accepted and the confusion matrix is optional.

    Raises
    ------
    ValueError
        Naming `path` and what disagrees (:func:`corrupt_file`).
    """
    absent = [k for k in ("tp", "pred", "true") if k not in arrays]
    if absent:
        raise corrupt_file(path, what, f"array(s) {', '.join(absent)} missing")
    tp, pred, true = arrays["tp"], arrays["pred"], arrays["true"]
    confusion = arrays.get("confusion")
    if soft is None:
        soft = tp.dtype.kind == "f"
    kind = "soft" if soft else "hard"
    for name, a in (("tp", tp), ("pred", pred), ("true", true)):
        if strict:
            ok = a.dtype == (np.float64 if soft else np.int64)
        else:
            ok = a.dtype.kind in ("f" if soft else "iu") and a.dtype == tp.dtype
        if not ok:
            raise corrupt_file(path, what, f"{kind} counts with {name} of dtype {a.dtype}")
    if confusion is not None:
        if soft and strict:
            raise corrupt_file(path, what, "soft sums with a confusion matrix")
        if confusion.dtype.kind not in "iu" or (strict and confusion.dtype != np.int64):
            raise corrupt_file(path, what, f"confusion matrix of dtype {confusion.dtype}")
    elif strict and not soft:
        raise corrupt_file(path, what, "hard counts without their confusion matrix")
    ignored = meta.get("ignored")
    if isinstance(ignored, bool) or not isinstance(ignored, int) or ignored < 0:
        raise corrupt_file(path, what, f"ignored pixels {ignored!r} is not a count")
    first_image = meta.get(FIRST_IMAGE_KEY, 0)
    held = [k for k in INSTANCE_ARRAYS if k in arrays]
    if held and len(held) != len(INSTANCE_ARRAYS):
        absent = [k for k in INSTANCE_ARRAYS if k not in arrays]
        raise corrupt_file(path, what, f"instance sums without {', '.join(absent)}")
    try:
        instances = None
        if held:
            instances = InstanceSums(*(arrays[k] for k in INSTANCE_ARRAYS))
        extras = _extras_from_arrays(path, what, arrays, meta)
        return Counts(
            tp=tp, pred=pred, true=true, confusion=confusion, ignored=ignored,
            first_image=first_image, instances=instances, extras=extras)  # fmt: skip
    except ValueError as exc:
        if str(exc).startswith(os.fspath(path)):
            raise
        raise corrupt_file(path, what, str(exc)) from exc


@dataclass(frozen=True, eq=False)
class Counts:
    """Per-image counts of a run of consecutive images, and their confusion matrix.

    The one sufficient statistic of every metric: what :func:`fastseg.counts` returns,
    what an :class:`~fastseg.stream.Accumulator` keeps and what each block of
    :func:`fastseg.evaluate` yields. Hard counts are exact int64 pixel counts; soft counts
    are float64 sums. Build one by keyword (``Counts(tp=..., pred=..., true=...)``) or
    with :meth:`zeros`; combine any number with :meth:`merge` (``a + b`` appends).

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
    first_image : int, keyword only, default 0
        Index of the image row 0 stands for: row ``i`` counts image ``first_image + i``
        of the data set (a block of :func:`fastseg.evaluate` that starts at image 40 has
        ``first_image=40``). :meth:`merge` places rows by it.
    instances : InstanceSums or None, keyword only
        Instance tallies of these images, summed (data-set values, like `confusion`):
        what Cityscapes' iIoU is computed from (:mod:`fastseg.instances`); None when no
        instance-id map was counted. Hard counts only.
    extras : mapping of str to ImageStat, keyword only
        Per-image statistics computed beside the counts, by kind
        (:mod:`fastseg.image_stats`): ``"boundary"`` counts, ``"calibration"``
        histograms, ``"surface"`` scores. Each has one row per image; they merge, are
        saved and checkpointed with the counts.

    Notes
    -----
    ``union = pred + true - tp`` and the Dice denominator is ``pred + true``.
    ``a + b`` appends the images of `b` after those of `a` and adds the confusion
    matrices (through :meth:`merge`): merging is exact, so counts do not depend on how
    the data was split.
    """

    tp: np.ndarray
    pred: np.ndarray
    true: np.ndarray
    confusion: np.ndarray | None = None
    ignored: int = 0
    _: KW_ONLY
    first_image: int = 0
    instances: InstanceSums | None = None
    extras: Mapping[str, ImageStat] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        first = self.first_image
        if isinstance(first, bool) or not isinstance(first, int | np.integer) or first < 0:
            raise ValueError(f"first_image must be an image index (an int >= 0); got {first!r}")
        object.__setattr__(self, "first_image", int(first))
        if not (self.tp.shape == self.pred.shape == self.true.shape) or self.tp.ndim != 2:
            raise ValueError(
                "tp, pred and true must share one (images, classes) shape; got "
                f"{self.tp.shape}, {self.pred.shape}, {self.true.shape}"
            )
        n = self.tp.shape[1]
        if self.confusion is not None and self.confusion.shape != (n, n):
            raise ValueError(f"confusion must be ({n}, {n}); got {self.confusion.shape}")
        if self.instances is not None:
            if not isinstance(self.instances, InstanceSums):
                raise TypeError(
                    f"instances must be InstanceSums; got {type(self.instances).__name__}"
                )
            if self.instances.num_classes != n:
                raise ValueError(
                    f"instance sums of {self.instances.num_classes} classes for counts of {n}"
                )
            if self.confusion is None:
                raise ValueError("instance sums need hard counts (with a confusion matrix)")
        object.__setattr__(self, "extras", dict(self.extras))
        for kind, x in self.extras.items():
            if not isinstance(x, ImageStat) or kind != x.KIND:
                raise TypeError(f"extras[{kind!r}] must be a {kind} statistic; got {x!r}")
            if x.n_images != self.n_images:
                raise ValueError(
                    f"{kind} of {x.n_images} images for counts of {self.n_images} images"
                )

    @property
    def calibration(self) -> Any:
        """The confidence histograms (:class:`~fastseg.calibration.CalibrationSums`), or None."""
        return self.extras.get("calibration")

    @property
    def boundary(self) -> Any:
        """The boundary counts (:class:`~fastseg.boundary.BoundarySums`), or None."""
        return self.extras.get("boundary")

    @property
    def surface(self) -> Any:
        """The surface scores (:class:`~fastseg.surface.SurfaceScores`), or None."""
        return self.extras.get("surface")

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

    @classmethod
    def zeros(
        cls, n_images: int, num_classes: int, *, soft: bool = False, first_image: int = 0
    ) -> Counts:
        """Counts of `n_images` images in which nothing was counted.

        int64 counts with an int64 confusion matrix, or float64 sums without one (`soft`).
        """
        dtype = np.float64 if soft else np.int64
        return cls(
            tp=np.zeros((n_images, num_classes), dtype),
            pred=np.zeros((n_images, num_classes), dtype),
            true=np.zeros((n_images, num_classes), dtype),
            confusion=None if soft else np.zeros((num_classes, num_classes), np.int64),
            first_image=first_image,
        )

    def starting_at(self, first_image: int) -> Counts:
        """These counts with row 0 standing for image `first_image` (arrays shared)."""
        return dataclasses.replace(self, first_image=first_image)

    def total(self) -> Counts:
        """The counts of the whole batch as one image (data-set sums), at `first_image`."""
        return Counts(
            tp=self.tp.sum(axis=0, keepdims=True),
            pred=self.pred.sum(axis=0, keepdims=True),
            true=self.true.sum(axis=0, keepdims=True),
            confusion=self.confusion,
            ignored=self.ignored,
            first_image=self.first_image,
            instances=self.instances,
            # Per-case scores stay with the per-image counts (Report reads them there).
            extras={k: x.total() for k, x in self.extras.items() if x.ADDITIVE},
        )

    @classmethod
    def merge(cls, parts: Iterable[Counts]) -> Counts:
        """Sum `parts` into one value covering all their images: the one merge of counts.

        Rows are placed by :attr:`first_image`: parts of different images land in their
        own rows, parts of the same image (blocks that split it spatially) add into one
        row, and images between the parts that none of them covers get zero rows. The
        result runs from the smallest `first_image` to the largest end; confusion
        matrices add up (the result has one only when every part has one), and so do the
        ignored pixels and the instance sums (the result has them when a part has them;
        a part without them must then have counted nothing, e.g. the zero rows of images
        skipped, since adding counts that tallied no instances would misstate them).
        ``a + b``, the :class:`~fastseg.stream.Accumulator` (updates, ``+``, data-set
        totals) and the Dask reduction of :func:`fastseg.evaluate` all merge through here.

        Parts are added in the order given. Integer counts are exact, so any split of
        the data, any order of the parts and any tree of merges give the same counts;
        float (soft) sums of one image spread over several parts differ between orders
        only by rounding (a fixed tree of merges gives bit-identical sums). The result
        shares no array with the parts.

        Raises
        ------
        ValueError
            For no part, parts of different class counts or of hard and soft counts, or
            parts with instance sums merged with parts that counted pixels without them.
        TypeError
            For a part that is not a :class:`Counts`.
        """
        parts = list(parts)
        if not parts:
            raise ValueError("nothing to merge: no counts given")
        head = parts[0]
        for part in parts:
            if not isinstance(part, Counts):
                raise TypeError(f"only Counts merge with Counts; got {type(part).__name__}")
            if part.num_classes != head.num_classes or part.soft != head.soft:
                raise ValueError(
                    f"cannot merge counts of {head.num_classes} classes "
                    f"({'soft' if head.soft else 'hard'}) with counts of {part.num_classes} "
                    f"classes ({'soft' if part.soft else 'hard'})"
                )
        start = min(p.first_image for p in parts)
        stop = max(p.first_image + p.n_images for p in parts)
        consecutive = all(
            b.first_image == a.first_image + a.n_images for a, b in itertools.pairwise(parts)
        )

        def rows(name: str) -> np.ndarray:
            arrays = [getattr(p, name) for p in parts]
            if consecutive:  # each part's images follow the previous part's: append
                return np.concatenate(arrays)
            out = np.zeros((stop - start, head.num_classes), np.result_type(*arrays))
            for p, a in zip(parts, arrays, strict=True):
                out[p.first_image - start : p.first_image - start + p.n_images] += a
            return out

        confusion = None
        matrices = [p.confusion for p in parts if p.confusion is not None]
        if len(matrices) == len(parts):
            n = head.num_classes
            confusion = np.zeros((n, n), np.result_type(*matrices))
            for m in matrices:
                confusion += m
        return cls(
            tp=rows("tp"), pred=rows("pred"), true=rows("true"), confusion=confusion,
            ignored=sum(int(p.ignored) for p in parts), first_image=start,
            instances=_merged_instances(parts),
            extras=_merged_extras(parts, start, stop, consecutive))  # fmt: skip

    def __add__(self, other: Counts) -> Counts:
        if not isinstance(other, Counts):
            return NotImplemented
        return Counts.merge([self, other.starting_at(self.first_image + self.n_images)])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Counts):
            return NotImplemented
        if self.confusion is None or other.confusion is None:
            same_confusion = self.confusion is None and other.confusion is None
        else:
            same_confusion = np.array_equal(self.confusion, other.confusion)
        if self.instances is None or other.instances is None:
            same_instances = self.instances is None and other.instances is None
        else:
            same_instances = self.instances == other.instances
        return (
            same_confusion
            and same_instances
            and self.extras.keys() == other.extras.keys()
            and all(x == other.extras[k] for k, x in self.extras.items())
            and self.ignored == other.ignored
            and self.first_image == other.first_image
            and all(
                np.array_equal(a, b)
                for a, b in ((self.tp, other.tp), (self.pred, other.pred), (self.true, other.true))
            )
        )

    __hash__ = None  # type: ignore[assignment]

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the counts to an ``.npz`` file at `path`, atomically.

        Format (:func:`save_counts`): arrays ``tp``, ``pred``, ``true`` and, when there is
        one, ``confusion``; ``meta`` holds ``format: "fastseg.counts"``, ``version``,
        ``ignored``, ``soft`` and, when it is not 0, ``b0`` (:attr:`first_image`). Version
        1 without instance sums; with them, version 2 (:data:`FORMAT_VERSION`), which adds
        ``instance_fractions`` and ``instance_count`` (a fastseg that reads only version
        1 refuses such a file rather than drop them). No suffix is added to `path`.
        """
        save_counts(path, self, _FORMAT, counts_version(self), {})

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Counts:
        """Read counts written by :meth:`save`.

        Raises
        ------
        ValueError
            Naming the file and the problem, for a missing, damaged or foreign file,
            another format version, or arrays that disagree with the metadata.
        """
        meta, arrays = load_versioned(
            path, _FORMAT, (_PLAIN_VERSION, _INSTANCE_VERSION, FORMAT_VERSION), what="counts"
        )
        soft = meta.get("soft")  # absent from files written before fastseg recorded it
        if soft is not None and not isinstance(soft, bool):
            raise corrupt_file(path, "counts", f"soft is {soft!r}, not true or false")
        return counts_from_arrays(path, "counts", arrays, meta, soft=soft)


def _merged_instances(parts: list[Counts]) -> InstanceSums | None:
    """The instance sums of merged `parts` (see :meth:`Counts.merge`), or None."""
    held = [p.instances for p in parts if p.instances is not None]
    if not held:
        return None
    if len(held) != len(parts):
        for p in parts:
            if p.instances is None and (p.true.any() or p.pred.any() or p.ignored):
                raise ValueError(
                    "cannot merge counts with instance sums and counts of pixels without "
                    "them: the merged instance sums would leave those images out"
                )
    return InstanceSums.merge(held)


def _merged_extras(
    parts: list[Counts], start: int, stop: int, consecutive: bool
) -> dict[str, ImageStat]:
    """The extras of merged `parts` (see :meth:`Counts.merge`), by kind.

    A part without a kind that others have must have counted nothing (the zero rows of
    skipped images): it gets rows of nothing counted (NaN for per-case scores).
    """
    merged: dict[str, ImageStat] = {}
    kinds = [k for p in parts for k in p.extras]
    for kind in dict.fromkeys(kinds):
        model = next(p.extras[kind] for p in parts if kind in p.extras)
        held = []
        for p in parts:
            x = p.extras.get(kind)
            if x is None:
                if p.true.any() or p.pred.any() or p.ignored:
                    raise ValueError(
                        f"cannot merge counts with {kind} and counts of pixels without it: "
                        f"the merged {kind} would leave those images out"
                    )
                x = _empty_like(model, p.n_images)
            held.append((p.first_image, x))
        merged[kind] = merge_rows(held, start, stop, consecutive)
    return merged


def _empty_like(x: ImageStat, n_images: int) -> ImageStat:
    def nothing(a: np.ndarray) -> float:
        return np.nan if not x.ADDITIVE and a.dtype.kind == "f" else 0

    return x.replace_rows(
        {name: np.full((n_images, *a.shape[1:]), nothing(a), a.dtype)
         for name, a in x.arrays().items()})  # fmt: skip

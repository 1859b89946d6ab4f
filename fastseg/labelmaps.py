"""Label-id maps: stored ids -> evaluated class indices, as lookup tables.

A :class:`LabelMap` says which class index each stored id stands for (Cityscapes' labelIds
-> trainIds, mmsegmentation's ``reduce_zero_label``, a data set's own ids); every id it
does not list is not a class: on the truth it becomes the ignore index (its pixels are
skipped and counted as ignored), on a prediction it is an error, since a predicted pixel
must be some class (see :func:`lookup`).

:func:`as_label_map` reads the forms users pass (a dict, an array used as a lookup table, a
JSON or CSV file, another LabelMap); :func:`reduce_zero_label_map` builds mmseg's map;
:func:`lookup` checks a map against one input (its dtype, N, the ignore index) and turns it
into a :class:`Lookup`, the table :func:`fastseg.inputs.prepare` applies slab by slab
through :class:`~fastseg.inputs.Prepared`'s converters (so the extra memory is that of a
slab, never of the input), and that a kernel can read directly instead (the seam:
``Prepared.true_lut`` / ``Prepared.pred_lut``).
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

#: A dense table is built for inputs of at most this many bytes per id (uint8 / uint16 and
#: their signed and bool kin: 256 or 65 536 entries); wider dtypes use a sorted lookup.
DENSE_ITEMSIZE = 2
#: Largest table (entries, int32: 4 MiB) the kernels read while counting
#: (:attr:`Lookup.dense`); a map of wider-spread ids is applied slab by slab instead.
KERNEL_TABLE_ENTRIES = 2**20


@dataclass(frozen=True, eq=False)
class LabelMap:
    """Stored id -> class index, for the ids listed; any other id is not a class.

    Attributes
    ----------
    ids : ndarray of uint64
        The stored ids, sorted, unique, non-negative.
    classes : ndarray of int64
        The class index of each id (or the ignore index: the id is skipped like an unmapped
        one), checked against N and the ignore index when the map is applied.
    source : str
        What the map came from, for messages (``"label_map"``, a file name,
        ``"reduce_zero_label"``).
    """

    ids: np.ndarray
    classes: np.ndarray
    source: str = "label_map"

    def __post_init__(self) -> None:
        ids = np.asarray(self.ids)
        classes = np.asarray(self.classes)
        if ids.ndim != 1 or classes.shape != ids.shape:
            raise ValueError(f"{self.source}: ids and classes must be two 1-D arrays of one length")
        if ids.size and (ids.dtype.kind not in "iu" or classes.dtype.kind not in "iu"):
            raise TypeError(f"{self.source}: ids and classes must be integers")
        if ids.size and ids.dtype.kind == "i" and ids.min() < 0:
            raise ValueError(f"{self.source}: id {int(ids.min())} is negative; ids are >= 0")
        ids = ids.astype(np.uint64)
        order = np.argsort(ids, kind="stable")
        ids, classes = ids[order], classes.astype(np.int64)[order]
        dup = np.flatnonzero(ids[1:] == ids[:-1])
        if dup.size:
            raise ValueError(f"{self.source}: id {int(ids[dup[0]])} is listed twice")
        ids.flags.writeable = False
        classes.flags.writeable = False
        object.__setattr__(self, "ids", ids)
        object.__setattr__(self, "classes", classes)

    def __len__(self) -> int:
        return int(self.ids.size)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LabelMap):
            return NotImplemented
        return np.array_equal(self.ids, other.ids) and np.array_equal(self.classes, other.classes)

    __hash__ = None  # type: ignore[assignment]

    def as_dict(self) -> dict[int, int]:
        """``{stored id: class index}``."""
        return {int(i): int(c) for i, c in zip(self.ids, self.classes, strict=True)}

    def to_json(self) -> dict[str, list[int]]:
        """JSON-safe form ``{"ids": [...], "classes": [...]}``, read by :func:`as_label_map`."""
        return {"ids": [int(i) for i in self.ids], "classes": [int(c) for c in self.classes]}

    def __repr__(self) -> str:
        shown = ", ".join(f"{i}: {c}" for i, c in list(self.as_dict().items())[:6])
        more = ", ..." if len(self) > 6 else ""
        return f"LabelMap({{{shown}{more}}}, {len(self)} ids, source={self.source!r})"


def _int(value: Any, what: str, source: str) -> int:
    """`value` as an int: an integer, or a string of digits (JSON object keys)."""
    if isinstance(value, bool):
        raise TypeError(f"{source}: {what} {value!r} is not an integer")
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise TypeError(f"{source}: {what} {value!r} is not an integer")


def _from_mapping(mapping: Mapping[Any, Any], source: str) -> LabelMap:
    if set(mapping) == {"ids", "classes"}:  # the form LabelMap.to_json writes
        ids, classes = (np.asarray(mapping[k]) for k in ("ids", "classes"))
        if ids.dtype.kind not in "iu" or classes.dtype.kind not in "iu":
            ids = np.array([_int(i, "id", source) for i in mapping["ids"]], np.int64)
            classes = np.array([_int(c, "class", source) for c in mapping["classes"]], np.int64)
        if ids.shape != classes.shape or ids.ndim != 1:
            raise ValueError(f"{source}: {ids.size} ids but {classes.size} classes")
        return LabelMap(ids, classes, source)
    keys = [_int(key, "id", source) for key in mapping]
    values = [_int(value, f"class of id {key!r}", source) for key, value in mapping.items()]
    if any(i < 0 for i in keys):
        raise ValueError(f"{source}: id {min(keys)} is negative; stored ids are >= 0")
    if any(i >= 2**64 for i in keys):
        raise ValueError(f"{source}: id {max(keys)} does not fit in 64 bits")
    return LabelMap(np.array(keys, np.uint64), np.array(values, np.int64), source)


def _from_table(table: Any, source: str) -> LabelMap:
    """A lookup table: entry ``k`` is the class of id ``k``; negative or None: not mapped."""
    values = list(table)
    ids, classes = [], []
    for k, value in enumerate(values):
        if value is None:
            continue
        c = _int(value, f"entry {k}", source)
        if c >= 0:
            ids.append(k)
            classes.append(c)
    return LabelMap(np.array(ids, np.int64), np.array(classes, np.int64), source)


def read_label_map(path: str | os.PathLike[str]) -> LabelMap:
    """Read a label map from a JSON or CSV file.

    JSON: an object ``{"7": 0, "8": 1, ...}`` (stored id: class index), a list (a lookup
    table: entry k is the class of id k; ``null`` or a negative entry leaves id k
    unmapped), or ``{"ids": [...], "classes": [...]}``. CSV: one ``id,class`` pair per
    row; a first row that is not two integers is a header; blank lines and lines starting
    with ``#`` are skipped. ``.json`` / ``.csv`` suffixes decide; other names are read as
    JSON when they start with ``{`` or ``[``, else as CSV.

    Raises
    ------
    ValueError
        Naming the file and the problem (missing, unreadable, not JSON / CSV of integers).
    """
    shown = os.fspath(path)
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ValueError(f"label map {shown}: cannot be read ({exc.strerror or exc})") from exc
    except UnicodeDecodeError as exc:
        raise ValueError(f"label map {shown}: not a text file ({exc.reason})") from exc
    suffix = Path(shown).suffix.lower()
    as_json = suffix == ".json" or (suffix != ".csv" and text.lstrip()[:1] in ("{", "["))
    try:
        if as_json:
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ValueError(f"not JSON ({exc})") from exc
            if isinstance(data, Mapping):
                return _from_mapping(data, shown)
            if isinstance(data, list):
                return _from_table(data, shown)
            raise ValueError(f"a JSON {type(data).__name__}, not an object or a list")
        return _from_csv(text, shown)
    except (TypeError, ValueError) as exc:
        message = str(exc)
        prefix = f"{shown}: "
        message = message[len(prefix):] if message.startswith(prefix) else message
        raise ValueError(f"label map {shown}: {message}") from exc


def _from_csv(text: str, source: str) -> LabelMap:
    ids, classes = [], []
    rows = [r for r in csv.reader(io.StringIO(text)) if r and not r[0].lstrip().startswith("#")]
    for n, row in enumerate(rows):
        cells = [c.strip() for c in row if c.strip()]
        if not cells:
            continue
        try:
            if len(cells) != 2:
                raise TypeError(f"{len(cells)} cells")
            i = _int(cells[0], "id", source)
            c = _int(cells[1], "class", source)
        except TypeError:
            if n == 0:
                continue  # a header
            raise ValueError(f"row {n + 1} is {','.join(row)!r}, not 'id,class' integers") from None
        if i < 0:
            raise ValueError(f"row {n + 1}: id {i} is negative; stored ids are >= 0")
        ids.append(i)
        classes.append(c)
    return LabelMap(np.array(ids, np.uint64), np.array(classes, np.int64), source)


def as_label_map(value: Any, name: str = "label_map") -> LabelMap | None:
    """`value` as a :class:`LabelMap` (None stays None).

    Accepts a LabelMap, a mapping ``{stored id: class index}`` (keys may be strings of
    digits, as in JSON), ``{"ids": [...], "classes": [...]}``, a 1-D integer array or list
    used as a lookup table (entry k is the class of id k; negative entries, or None, leave
    id k unmapped), or a path to a JSON / CSV file (:func:`read_label_map`).

    Raises
    ------
    TypeError, ValueError
        Naming `name` and what is wrong (a negative or repeated id, a non-integer, a file
        that cannot be read).
    """
    if value is None or isinstance(value, LabelMap):
        return value
    if isinstance(value, str | os.PathLike):
        return read_label_map(value)
    if isinstance(value, Mapping):
        return _from_mapping(value, name)
    if isinstance(value, np.ndarray | list | tuple):
        arr = np.asarray(value, dtype=object) if isinstance(value, list | tuple) else value
        if arr.ndim != 1:
            raise ValueError(f"{name}: a lookup table must be 1-D; got shape {arr.shape}")
        if isinstance(value, np.ndarray) and value.dtype.kind not in "iu":
            raise TypeError(f"{name}: a lookup table must hold integers; got {value.dtype}")
        return _from_table(arr.tolist(), name)
    raise TypeError(
        f"{name} must be a dict {{stored id: class}}, an integer array (a lookup table) or "
        f"a JSON / CSV file; got {type(value).__name__}"
    )


def reduce_zero_label_map(num_classes: int) -> LabelMap:
    """Mmsegmentation's ``reduce_zero_label`` as a map: id ``k`` -> class ``k - 1``.

    Ids 1 to N become classes 0 to N - 1; id 0, and every id above N, is not mapped (on
    the truth: the ignore index, as mmseg's ``0 -> 255, k -> k - 1, 254 -> 255``).
    """
    ids = np.arange(1, num_classes + 1, dtype=np.uint64)
    return LabelMap(ids, np.arange(num_classes, dtype=np.int64), "reduce_zero_label")


# ------------------------------------------------------------------ the lookup itself


@dataclass(frozen=True, eq=False)
class Lookup:
    """A label map checked against one input and ready to apply to its slabs.

    Calling it on a slab of stored ids returns their codes as a ``(B, P)`` C-contiguous
    array: the class index, the ignore index, or :attr:`unmapped` (which raises a
    ValueError naming the ids, before any kernel sees them).

    Attributes
    ----------
    table : ndarray or None
        Dense table, for inputs of 1 or 2 bytes per id: ``table[u]`` is the code of the id
        whose bits read as the unsigned integer ``u`` (so negative ids of a signed input
        land on entries no map lists). 256 or 65 536 entries.
    keys, values : ndarray or None
        Sorted lookup, for wider inputs: ``keys`` are the listed ids in the input's dtype,
        ``values`` their codes; an id not in ``keys`` gets :attr:`default`.
    default : int
        Code of an id the map does not list: the ignore index (truth with one), else
        :attr:`unmapped`.
    unmapped : int or None
        The code that marks a pixel no class can be given (an unmapped truth id without an
        ignore index; any prediction id not mapped to a class): N. None when no id can get it.
    name, source : str
        The input (``"y_true"`` / ``"y_pred"``) and the map's source, for messages.
    dense : ndarray of int32 or None
        The table the kernels read while counting (``fastseg.kernels.LabelCodes``):
        ``dense[v]`` is the code of id ``v`` for ``0 <= v < dense.size``; any other id
        gets :attr:`default`. None when the ids span more than
        :data:`KERNEL_TABLE_ENTRIES` or a code does not fit in 32 bits: the map is then
        applied slab by slab by calling the Lookup.
    """

    table: np.ndarray | None
    keys: np.ndarray | None
    values: np.ndarray | None
    default: int
    unmapped: int | None
    name: str
    source: str
    dense: np.ndarray | None = None

    def __call__(self, slab: np.ndarray) -> np.ndarray:
        """The codes of a slab ``(b, ...)`` of stored ids, as a ``(b, P)`` array.

        Raises
        ------
        ValueError
            Pixels whose id gets :attr:`unmapped`, with how many and which ids.
        """
        rows = slab.shape[0]
        if self.table is not None:
            dt = slab.dtype
            # The bits as an unsigned index of the same width and byte order: a negative
            # id of a signed input lands on an entry no map lists.
            ids = slab.view(np.uint8) if dt.kind == "b" else slab.view(dt.str.replace("i", "u"))
            codes = np.take(self.table, ids)
        else:
            assert self.keys is not None
            assert self.values is not None
            codes = _sorted_lookup(slab, self.keys, self.values, self.default)
        codes = codes.reshape(rows, -1)
        if self.unmapped is not None:
            bad = codes == self.unmapped
            n_bad = int(np.count_nonzero(bad))
            if n_bad:
                raise ValueError(self.unmapped_message(n_bad, slab.reshape(rows, -1)[bad]))
        return codes

    def kernel_codes(self, values: np.ndarray) -> np.ndarray:
        """The codes the kernels give `values` (ids as a kernel input holds them).

        Through :attr:`dense`, as int64; for messages (the kernels apply the table
        themselves).
        """
        assert self.dense is not None
        v = np.asarray(values).astype(np.int64)
        inside = (v >= 0) & (v < self.dense.size)
        codes = np.full(v.shape, self.default, np.int64)
        codes[inside] = self.dense[v[inside]]
        return codes

    def unmapped_message(self, n_bad: int, ids: np.ndarray) -> str:
        """The error for `n_bad` pixels whose ids (`ids`, or some of them) map to no class."""
        shown = ", ".join(str(int(i)) for i in np.unique(ids)[:5])
        if self.name == "y_true":
            hint = "; pass ignore_index to skip the pixels of unmapped ids, or map them"
        else:
            hint = (
                "; a predicted pixel must be a class: map these ids to classes (for a "
                "'void' prediction add a class for it and exclude it from the means)"
            )
        return (
            f"{self.name} has {n_bad} pixels with ids that {self.source} does not map to a "
            f"class (ids {shown}){hint}"
        )


def _sorted_lookup(slab: np.ndarray, keys: np.ndarray, values: np.ndarray,
                   default: int) -> np.ndarray:  # fmt: skip
    native = slab.astype(slab.dtype.newbyteorder("="), copy=False)
    if keys.size == 0:
        return np.full(native.shape, default, values.dtype)
    pos = np.searchsorted(keys, native)
    np.minimum(pos, keys.size - 1, out=pos)
    hit = keys[pos] == native
    codes = np.take(values, pos)
    codes[~hit] = default
    return codes


def _code_dtype(low: int, high: int) -> np.dtype:
    """The narrowest of uint8, int32, int64 holding [low, high] (few kernel compilations)."""
    if low >= 0 and high <= 255:
        return np.dtype(np.uint8)
    if low >= -(2**31) and high < 2**31:
        return np.dtype(np.int32)
    return np.dtype(np.int64)


def _id_range(dtype: np.dtype) -> tuple[int, int]:
    if dtype.kind == "b":
        return 0, 1
    info = np.iinfo(dtype)
    return max(int(info.min), 0), int(info.max)


def lookup(
    label_map: LabelMap,
    dtype: np.dtype,
    num_classes: int,
    ignore_index: int | None,
    name: str,
    option: str,
) -> Lookup:
    """Check `label_map` against an input of `dtype` and build its :class:`Lookup`.

    Parameters
    ----------
    label_map : LabelMap
    dtype : numpy.dtype
        The input's dtype (integer or bool): every listed id must be a value it can hold.
    num_classes : int
        N: every class must lie in ``[0, N)``, or be the ignore index.
    ignore_index : int or None
        The truth's ignore index. On the truth (`name` ``"y_true"``) unmapped ids, and ids
        mapped to it, are skipped; on a prediction, ids mapped to it are unmapped.
    name : {'y_true', 'y_pred'}
    option : str
        The option that gave the map (``"label_map"``, ``"label_map_pred"``,
        ``"reduce_zero_label"``), for messages.

    Raises
    ------
    ValueError
        An id the dtype cannot hold, or a class outside ``[0, N)`` that is not the ignore
        index, naming the first one.
    """
    named = label_map.source in ("label_map", "label_map_pred", "reduce_zero_label")
    where = option if named else f"{option} ({label_map.source})"
    if dtype.kind not in "biu":
        raise TypeError(f"{where} maps the ids of a label map; {name} has dtype {dtype}")
    low, high = _id_range(dtype)
    ids, classes = label_map.ids, label_map.classes
    if ids.size and int(ids[-1]) > high:
        raise ValueError(
            f"{where} lists id {int(ids[-1])}, which {name} of dtype {dtype} cannot hold "
            f"(ids {low} to {high})"
        )
    is_class = (classes >= 0) & (classes < num_classes)
    is_ignore = classes == ignore_index if ignore_index is not None else np.zeros_like(is_class)
    bad = np.flatnonzero(~(is_class | is_ignore))
    if bad.size:
        k = bad[0]
        also = "" if ignore_index is None else f" nor the ignore index {ignore_index}"
        raise ValueError(
            f"{where} maps id {int(ids[k])} to {int(classes[k])}, which is not a class in "
            f"[0, {num_classes}){also}"
        )
    truth = name == "y_true"
    codes = classes.copy()
    unmapped: int | None = num_classes
    if truth and ignore_index is not None:
        default = ignore_index
        unmapped = None
    else:
        default = num_classes
        if not truth:
            codes[is_ignore] = num_classes  # a prediction cannot be ignored
    values = [default, *([] if codes.size == 0 else [int(codes.min()), int(codes.max())])]
    out = _code_dtype(min(values), max(values))
    codes = codes.astype(out)
    dense = _kernel_table(ids, codes, default, dtype)
    if dtype.itemsize <= DENSE_ITEMSIZE:
        table = np.full(256 ** dtype.itemsize, default, out)
        table[ids.astype(np.int64)] = codes
        if unmapped is not None and not np.any(table == unmapped):
            unmapped = None  # every value the input can hold is mapped to a class
        return Lookup(table, None, None, default, unmapped, name, where, dense)
    keys = ids.astype(dtype.newbyteorder("=") if dtype.kind != "b" else np.uint8)
    return Lookup(None, keys, codes, default, unmapped, name, where, dense)


def _kernel_table(ids: np.ndarray, codes: np.ndarray, default: int,
                  dtype: np.dtype) -> np.ndarray | None:  # fmt: skip
    """:attr:`Lookup.dense`: codes indexed by id value.

    Every id the input can hold (1-2 byte dtypes) or up to the largest listed id (wider
    ones); None when too large.
    """
    size = _id_range(dtype)[1] + 1 if dtype.itemsize <= DENSE_ITEMSIZE else (
        int(ids[-1]) + 1 if ids.size else 1)  # fmt: skip
    if size > KERNEL_TABLE_ENTRIES:
        return None
    values = [default, *([] if codes.size == 0 else [int(codes.min()), int(codes.max())])]
    if min(values) < -(2**31) or max(values) >= 2**31:
        return None
    table = np.full(size, default, np.int32)
    table[ids.astype(np.int64)] = codes
    table.flags.writeable = False
    return table


def jsonable(value: Any) -> Any:
    """An option value as JSON: a LabelMap as :meth:`LabelMap.to_json`, others as they are."""
    return value.to_json() if isinstance(value, LabelMap) else value

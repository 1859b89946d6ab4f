"""What every evaluation plan shares, Zarr stores and folders of files alike.

The :class:`Plan` an evaluation builds before computing anything, and its parts: the
reading options the stores' attributes decide (:func:`store_defaults`, :func:`class_names_of`),
the fixed reduction tree of block counts (:func:`merge_tree`), the kernel threads of a
block task (:func:`numba_threads`) and the tiny example input the kernels are compiled on
before a run (:func:`valid_example`). :mod:`fastseg.dataset` (Zarr / Dask) and
:mod:`fastseg.filesource` (files) both build on it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from fastseg.checkpoint import Checkpoint
from fastseg.counting import reading_options
from fastseg.inputs import prepare
from fastseg.labelmaps import Lookup
from fastseg.policy import Policy
from fastseg.stores import Source

log = logging.getLogger("fastseg")

#: Block counts merged per task of the reduction tree.
FAN_IN = 16
#: Default of ``ignore_index``: the truth store's ``ignore_index`` attribute, else none.
FROM_STORE: Literal["store"] = "store"


class MissingChunksError(ValueError):
    """Chunks the arrays' shapes imply are absent from the store."""


@dataclass
class Plan:
    """An evaluation ready to run: the lazy merged counts and what was decided on the way.

    Attributes
    ----------
    root : dask.delayed.Delayed or None
        Merged :class:`~fastseg.counts.Counts` of every block to count or load (from
        the first image of the first block on); None when every block was skipped.
    n_images, num_classes : int
    soft : bool
    meta : dict
        Facts for the report: sources, block counts, resumed and skipped blocks.
    class_names : list of str or None
        Given, or from the stores' ``class_names`` attribute.
    policy : Policy
        The report's policy: the preset with its overrides, exclusions resolved against
        the classes (indices and ``'last'`` only).
    preset : str or None
        The preset's name.
    options : dict
        The reading options every block is counted with (``num_classes``,
        ``class_axis``, ``ignore_index``, ``soft``, ...), store defaults applied.
    parts : list of dask.delayed.Delayed
        One task per block (counted, or loaded from the checkpoint), in block order;
        `root` merges them by a fixed tree of :meth:`Counts.merge` of :data:`FAN_IN`.
    counting : frozenset
        Keys of the parts that count a block (not loaded from a checkpoint).
    example : tuple of ndarray
        Tiny prediction and truth made like the blocks (dtypes, kinds, class axis,
        C order), to compile the kernel before the run.
    kinds : tuple of str
        Kinds of the prediction and the truth (``'scores'`` or ``'labels'``).
    class_axis : int or None
        The normalised class axis of the score inputs.
    checkpoint : Checkpoint or None
        The checkpoint directory the blocks are saved to.
    ids : list of str or None
        Per-image ids (file inputs: the file names without their suffix); None: positions.
    unit : str
        What a counting task is, for progress lines (``"block"``, ``"image"``).
    """

    root: Any
    n_images: int
    num_classes: int
    soft: bool
    meta: dict[str, Any] = field(default_factory=dict)
    class_names: list[str] | None = None
    policy: Policy = field(default_factory=Policy)
    preset: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    parts: list[Any] = field(default_factory=list)
    counting: frozenset[Any] = frozenset()
    example: tuple[np.ndarray, np.ndarray] | None = None
    kinds: tuple[str, str] = ("scores", "labels")
    class_axis: int | None = None
    checkpoint: Checkpoint | None = None
    ids: list[str] | None = None
    unit: str = "block"


def describe_missing(found: dict[str, list[tuple[int, ...]]], sources: dict[str, Source]) -> str:
    """The message of a :class:`MissingChunksError`: which chunks each source lacks."""
    parts = []
    sharded = {name: getattr(src.zarr_array, "shards", None) is not None
               for name, src in sources.items()}  # fmt: skip
    for name, coords in found.items():
        shown = ", ".join(str(c) for c in coords[:10])
        more = f" and {len(coords) - 10} more" if len(coords) > 10 else ""
        parts.append(
            f"{name} ({sources[name].description}) lacks {len(coords)} "
            f"{'shard(s), or shards missing an inner chunk' if sharded[name] else 'chunk(s)'}: "
            f"{shown}{more}"
        )
    return "; ".join(parts)


@contextlib.contextmanager
def numba_threads(n: int) -> Iterator[None]:
    """Run the kernels of the block with `n` threads (at most Numba's pool size)."""
    import numba

    before = numba.get_num_threads()
    numba.set_num_threads(max(1, min(n, numba.config.NUMBA_NUM_THREADS)))  # type: ignore[attr-defined]
    try:
        yield
    finally:
        numba.set_num_threads(before)


def merge_tree(parts: list[Any], merge: Callable[[list[Any]], Any]) -> Any:
    """The fixed reduction tree: `merge` of :data:`FAN_IN` consecutive parts, level by level.

    `merge` submits :meth:`Counts.merge` of a group (a Dask task or a distributed future).

    The same tree whatever runs it (Dask's local schedulers, distributed futures), so the
    merged counts are bit-identical. None when there is no part.
    """
    while len(parts) > 1:
        parts = [merge(parts[i : i + FAN_IN]) for i in range(0, len(parts), FAN_IN)]
    return parts[0] if parts else None


def store_defaults(options: dict[str, Any], pred: Source, true: Source) -> str:
    """Fill the options left to the stores from their attributes; say which were taken.

    ``ignore_index`` (when :data:`FROM_STORE`) from the truth store; ``num_classes``
    (when None) from the truth store, else the prediction store; ``class_axis`` (when
    None) from the prediction store, else the truth store.
    """
    taken = []
    if options["ignore_index"] == FROM_STORE:
        has, value = _attr_int(true, "ignore_index")
        options["ignore_index"] = value
        if has:
            log.info("ignore index %s, from the truth store's attributes", value)
            taken.append(f"ignore_index={value} from the truth store's attributes")
    for key, sources, where in (
        ("num_classes", (true, pred), ("truth", "prediction")),
        ("class_axis", (pred, true), ("prediction", "truth")),
    ):
        if options[key] is not None:
            continue
        for source, name in zip(sources, where, strict=True):
            has, value = _attr_int(source, key)
            if has and value is not None:
                options[key] = value
                log.info("%s %s, from the %s store's attributes", key.replace("_", " "),
                         value, name)  # fmt: skip
                taken.append(f"{key}={value} from the {name} store's attributes")
                break
    return "; ".join(taken)


def class_names_of(
    given: Sequence[str] | None, pred: Source, true: Source, n: int
) -> list[str] | None:
    """Class names given (must be N), else the stores' ``class_names`` attribute (if N)."""
    if given is not None:
        if len(given) != n:
            raise ValueError(f"class_names has {len(given)} entries for {n} classes")
        return [str(x) for x in given]
    for source in (pred, true):
        names = source.attrs.get("class_names")
        if not names:
            continue
        if isinstance(names, str) or len(names) != n:
            log.warning(
                "the %s store's class_names attribute (%d entries) does not fit its %d "
                "classes; classes are named by their index", source.name,
                1 if isinstance(names, str) else len(names), n)  # fmt: skip
            continue
        return [str(x) for x in names]
    return None


def valid_example(
    pred: np.ndarray, true: np.ndarray, options: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray]:
    """The zero-filled examples `pred` and `true`, made valid input for `options`.

    Zero is a class (or, for scores, an argmax of 0) for every input read without a
    label-id map; through a map it may be no class (Cityscapes' labelIds, where 0 is
    "unlabeled", on predictions; ``reduce_zero_label`` applied to predictions; a truth map
    without an ignore index). Each mapped input is filled, in place, with the first id
    its map sends to a class (else, on the truth, to the ignore index), so the warm-up
    counts it instead of failing the label check and compiling nothing.
    """
    try:
        prep = prepare(true, pred, **reading_options(options))
    except (ValueError, TypeError):
        return pred, true  # the warm-up meets the same error and leaves it to the blocks
    for arr, lut in ((pred, prep.pred_lut), (true, prep.true_lut)):
        if lut is not None:
            stored = _mapped_id(lut, arr.dtype, prep.num_classes, prep.ignore_index)
            if stored is not None:
                arr[...] = stored
    return pred, true


def _mapped_id(lut: Lookup, dtype: np.dtype, n: int, ignore: int | None) -> Any:
    """A stored id of `dtype` that `lut` sends to a class (else to any valid code), or None."""
    if lut.table is not None:
        codes = lut.table[:2] if dtype.kind == "b" else lut.table  # bool: ids 0 and 1
    else:
        assert lut.values is not None
        codes = lut.values
    codes = codes.astype(np.int64)  # compared with N, the ignore index (maybe negative)
    is_class = (codes >= 0) & (codes < n)
    if ignore is not None:
        is_class &= codes != ignore
    valid = codes != lut.unmapped if lut.unmapped is not None else np.ones_like(is_class)
    found = np.flatnonzero(is_class if is_class.any() else valid)
    if not found.size:
        return None  # the map sends no id to a class: every block fails the same way
    k = int(found[0])
    if lut.table is None:
        assert lut.keys is not None
        return lut.keys[k]
    # Table entry k is the id whose bits read as the unsigned integer k (see Lookup).
    unsigned = np.dtype(np.uint8) if dtype.kind == "b" else np.dtype(dtype.str.replace("i", "u"))
    return np.array([k], unsigned).view(dtype)[0]


def _attr_int(source: Source, key: str) -> tuple[bool, int | None]:
    """Whether `source` has the attribute `key`, and its value as an int (or None)."""
    if key not in source.attrs:
        return False, None
    value = source.attrs[key]
    if value is None:
        return True, None
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        which = "truth" if source.name == "true" else "prediction"
        raise ValueError(
            f"the {which} store's {key} attribute is {value!r}, not an integer; "
            f"pass {key}=K to override it"
        )
    return True, int(value)

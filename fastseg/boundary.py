"""Boundary IoU counts (Cheng et al., CVPR 2021): exact, per class, adding over images and blocks.

Definition (the paper's ``mask_to_boundary``): the boundary region of a binary mask ``M``
at width ``d`` is ``M & ~erode(pad(M), d)``, cropped, with a 3 x 3 (3-D: 3 x 3 x 3) square
structuring element and one pixel of zero padding. Equivalently, a pixel of ``M`` is a
boundary pixel iff the ``(2d + 1)^k`` box around it is not entirely inside ``M``, positions
outside the image counting as not-``M``. For class ``c`` of one image, with ``Gb`` and
``Pb`` the boundary regions of ``truth == c`` and ``pred == c``::

    true[c] = |Gb|      pred[c] = |Pb|      both[c] = |Gb & Pb|
    Boundary IoU[c] = sum of both / sum of (true + pred - both), over images

:func:`boundary_counts` returns these counts per image (:class:`BoundaryCounts`);
:func:`boundary_width` turns the paper's width (a fraction of the image diagonal) into
pixels. Truth pixels holding the ignore index belong to no class (they end the runs of
their neighbours' classes, which can make those boundary pixels) and are counted nowhere,
like every fastseg count.

Algorithm: every class at once, from the label maps, in O(1) work per pixel whatever
``d``. A pixel is *interior* (not a boundary pixel of its own class) iff its box lies in
the image and holds its label only, which is separable:

1. along each row, over runs of equal labels: a pixel is row-interior iff its run extends
   ``d`` pixels on both sides within the row (:func:`_row_keys`);
2. down each column, over runs of pixels that are row-interior *and* share the label: a
   pixel is interior iff that run extends ``d`` rows on both sides (:func:`_advance`);
3. (3-D) the same along the depth axis, over runs of pixels interior in their slice.

A pass writes *keys*: a pixel's label where it passed, else a sentinel. Passes 2 and 3
stream: a column's state is its last key and the step where its run of equal keys began,
so step ``i`` decides step ``i - d`` in one loop over the row that LLVM vectorises. Rows
are then counted run by run (:func:`_count_row`): pixels alike in both labels and both
flags add at once.

Blocks: with ``halo``, the input is a piece of a larger image with that many extra pixels
on each side (Dask's ``map_overlap``); the boundary is decided on the whole block, block
sides counting as outside, and only pixels outside the halo are counted. A pixel's
decision reads its ``(2d + 1)^k`` box only, so with halos of ``d`` on the sides facing
another block (0 at the image's edges) the blocks' counts add up exactly to the image's.

Threads: whole images round-robin over :func:`fastseg.kernels.run_shares`; each of the
last ``B % T`` images is split into ranges of counted rows, a share streaming ``d`` rows
before and after its range (a row's decision reads ``d`` rows each side, so the shares'
counts add up exactly). A share adds into the output rows of its own images, or into its
own table.

Measured (2-core AMD EPYC shared with other jobs, so rough; one thread, a 2048 x 1024
uint8 pair of blocky maps, 19 classes, ``d = 46``): 3.0-3.2 ms with 11-14 label runs per
row (``benchmarks/test_boundary_speed.py``'s maps), 3.8 ms with ~29, against 1.2-1.7 ms for
``fastseg.counts`` of the same pair. Per 2048 x 1024 map, pass 1 about 0.6 ms (runs and
fills), pass 2 about 0.56 ms; counting about 0.85 ms per pair. Costs grow with the runs:
random 8-pixel blocks take 3-4x the region counts.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import operator
from collections.abc import Sequence
from typing import Any, ClassVar, NamedTuple

import numba
import numpy as np
from numba import from_dtype, njit, types

from fastseg import kernels
from fastseg.formulas import ratio
from fastseg.image_stats import ImageStat

# Numba options, the values of kernels.KERNEL. Written out here, not imported: Numba's
# on-disk cache is keyed by this file, and options imported from another module could
# change without invalidating it (see fastseg/kernels.py).
_OPTIONS: Any = {
    "nogil": True,
    "cache": True,
    # Exact counts: nothing to reassociate.
    "fastmath": False,
    "error_model": "numpy",
    # Indices come from the arrays' own shapes.
    "boundscheck": False,
}

#: Dtypes of the label maps the kernel is compiled for (both maps in one of them). Others
#: are converted: bool -> uint8, int8 -> int16, uint32 / uint64 -> int64, and two maps
#: of different dtypes to their common one.
LABEL_DTYPES = ("uint8", "uint16", "int16", "int32", "int64")
#: Dtypes of the keys (a class, or the sentinel: all bits set), the narrowest that holds
#: N + 1 values: uint8 up to 255 classes, uint16 up to 65535, else int32.
KEY_DTYPES = ("uint8", "uint16", "int32")
_CONVERTED = {"bool": "uint8", "int8": "int16", "uint32": "int64", "uint64": "int64"}

# Slots of a share's ``stats`` row: how many pixels (rows read by two shares count twice)
# hold labels outside [0, N) (truth: other than the ignore index), and one such label.
_TRUE_BAD = 0
_TRUE_BAD_VALUE = 1
_PRED_BAD = 2
_PRED_BAD_VALUE = 3
_N_STATS = 4


class BoundaryCounts(NamedTuple):
    """Boundary pixel counts per image and class; int64 arrays of shape (B, N).

    Attributes
    ----------
    true : ndarray
        Boundary pixels of ``truth == c``.
    pred : ndarray
        Boundary pixels of ``pred == c``.
    both : ndarray
        Pixels in both boundary regions of ``c``.

    No count includes a pixel whose truth is the ignore index. Counts add over images, and
    over blocks with halos (:func:`boundary_counts`); the Boundary IoU of ``c`` is
    ``both / (true + pred - both)`` of the sums.
    """

    true: np.ndarray
    pred: np.ndarray
    both: np.ndarray


def boundary_width(spatial_shape: Sequence[int], width: float) -> int:
    """The boundary width in pixels: `width` pixels, or a fraction of the image diagonal.

    Parameters
    ----------
    spatial_shape : sequence of int
        The image's spatial shape (2-D or 3-D).
    width : int or float
        ``>= 1`` and integral: that many pixels. ``0 < width < 1``: a fraction of the
        diagonal, ``max(1, round(width * sqrt(sum(s**2 for s in spatial_shape))))`` (the
        paper's ``dilation_ratio``, 0.02 there).

    Raises
    ------
    ValueError
        Any other width (0, negative, not integral above 1, infinite, NaN, a bool).
    """
    if isinstance(width, bool) or not isinstance(width, numbers.Real):
        raise ValueError(f"the boundary width must be a number; got {width!r}")
    w = float(width)
    if math.isfinite(w) and w >= 1 and w == math.floor(w):
        return int(w)
    if 0 < w < 1:
        diagonal = math.sqrt(sum(int(s) ** 2 for s in spatial_shape))
        return max(1, round(w * diagonal))
    raise ValueError(
        "the boundary width must be a whole number of pixels >= 1 or a fraction of the "
        f"image diagonal in (0, 1); got {width!r}"
    )


# --------------------------------------------------------------------------------------
# Kernels
# --------------------------------------------------------------------------------------


@njit(**_OPTIONS)
def _sentinel(keys):
    """The key of a pixel that did not pass: all bits set in the keys' dtype."""
    return ~keys.dtype.type(0)


@njit(**_OPTIONS)
def _run_starts(changes, words, w, starts):
    """The starts of the runs flagged in ``changes[:w]`` (1 where a run starts), in order.

    `changes` is uint8 scratch of a multiple of 8 entries > `w` (the rest is cleared here),
    `words` its uint64 view. Writes ``starts[:n]`` and ``starts[n] = w``; returns ``n``.
    """
    # Flags are read eight at a time, and a word jumps from flag to flag: a run costs
    # little more than its start.
    pad = changes[w:]
    for j in range(pad.size):
        pad[j] = 0
    ones = np.uint64(0x0101010101010101)
    top = np.uint64(56)
    zero = np.uint64(0)
    n = 0
    for q in range(words.size):
        word = words[q]
        while word != zero:
            low = word & (zero - word)  # 1 << 8k: the first flag left is byte k (little-endian)
            starts[n] = 8 * q + np.int64((((low - np.uint64(1)) & ones) * ones) >> top)
            n += 1
            word ^= low
    starts[n] = w
    return n


@njit(**_OPTIONS)
def _runs(row, changes, words, starts):
    """The runs of equal labels of `row` (not empty): see :func:`_run_starts`."""
    w = row.size
    # Slices keep every index a non-negative loop variable: no negative-index wraparound,
    # which would stop LLVM vectorising.
    right = row[1:]
    left = row[: w - 1]
    flags = changes[1:w]
    changes[0] = 1
    for j in range(w - 1):
        flags[j] = right[j] != left[j]
    return _run_starts(changes, words, w, starts)


@njit(**_OPTIONS)
def _row_keys(row, starts, n_runs, keys, d, n, has_ignore, ignore, stats, slot):
    """Pass 1 of one row: ``keys[j]`` = the label where row-interior, else the sentinel.

    `starts`, `n_runs`: the row's runs (:func:`_runs`). A pixel is row-interior iff its
    label is a class (in ``[0, n)``, not the ignore index) and its run covers
    ``[j - d, j + d]``. Labels outside ``[0, n)`` other than the ignore index are counted
    in ``stats[slot]``, one of them kept in ``stats[slot + 1]``.
    """
    sent = _sentinel(keys)
    for j in range(keys.size):
        keys[j] = sent
    for r in range(n_runs):
        a = np.int64(starts[r])
        e = np.int64(starts[r + 1])
        label = np.int64(row[a])
        if label < 0 or label >= n or (has_ignore and label == ignore):
            if not (has_ignore and label == ignore):
                stats[slot] += e - a
                stats[slot + 1] = label
        elif e - a > 2 * d:
            key = keys.dtype.type(label)
            # Unsigned bounds: no wraparound, so LLVM vectorises the fill.
            for k in range(np.uint64(a + d), np.uint64(e - d)):
                keys[k] = key


@njit(**_OPTIONS)
def _advance(keys, prev, start, i, d, out):
    """Pass 2 or 3: step ``i`` (a row or a slice) of a stream, over one row of keys.

    `prev` and `start` are the stream's state for these pixels: the key at step ``i - 1``
    and the step where its run of equal keys began. ``out[j]`` gets the key of step
    ``i - d`` where that pixel passes (its run covers steps ``[i - 2d, i]``, so it holds
    this key), else the sentinel. A stream may begin at any step ``<= i - 2d``: a run
    begun earlier passes the same.
    """
    sent = _sentinel(keys)
    step = np.int32(i)
    limit = np.int32(i - 2 * d)
    for j in range(keys.size):
        k = keys[j]
        s = start[j] if (k == prev[j]) & (k != sent) else step
        start[j] = s
        prev[j] = k
        out[j] = k if s <= limit else sent


@njit(**_OPTIONS)
def _count_row(t, p, kt, kp, n, has_ignore, ignore, out, scratch):
    """Add one row's boundary pixels into `out` (3, N): true, pred, both.

    `t`, `p`: the labels; `kt`, `kp`: the final keys (the sentinel on boundary pixels),
    all of the counted columns. `scratch`: ``(changes, words, starts)`` of
    :func:`_run_starts` for this many columns.
    """
    sent = _sentinel(kt)
    changes, words, starts = scratch
    w = t.size
    if w == 0:
        return
    t1, t0 = t[1:], t[: w - 1]
    p1, p0 = p[1:], p[: w - 1]
    kt1, kt0 = kt[1:], kt[: w - 1]
    kp1, kp0 = kp[1:], kp[: w - 1]
    flags = changes[1:w]
    changes[0] = 1
    for j in range(w - 1):
        flags[j] = (t1[j] != t0[j]) | (p1[j] != p0[j]) | (kt1[j] != kt0[j]) | (kp1[j] != kp0[j])
    for r in range(_run_starts(changes, words, w, starts)):
        a = starts[r]
        size = np.int64(starts[r + 1] - a)
        tv = np.int64(t[a])
        pv = np.int64(p[a])
        bt = kt[a] == sent
        bp = kp[a] == sent
        if has_ignore and tv == ignore:
            continue
        if tv >= 0 and tv < n and bt:
            out[0, tv] += size
            if bp and pv == tv:
                out[2, tv] += size
        if pv >= 0 and pv < n and bp:
            out[1, pv] += size


@njit(**_OPTIONS)
def _image(t, p, scratch, n, has_ignore, ignore, d, depth, lo, hi, stream, out, stats):
    """Add the counts of rows ``[lo[1], hi[1])`` of one image into `out` (3, N).

    `t`, `p`: (D, H, W) label maps (a 2-D image is one slice, `depth` False). Counted:
    slices ``[lo[0], hi[0])``, rows ``[lo[1], hi[1])``, columns ``[lo[2], hi[2])``.
    `stream`: the rows ``[stream[0], stream[1])`` read, at least the counted ones and
    ``d`` more each side where the image has them (all slices are read). `scratch`: an
    array of the key dtype (its values are not used). `stats`: see :func:`_row_keys`.
    """
    n_slices, w = t.shape[0], t.shape[2]
    rlo, rhi, zlo, zhi, c0, c1 = lo[1], hi[1], lo[0], hi[0], lo[2], hi[2]
    rs, re = stream[0], stream[1]
    sent = _sentinel(scratch)
    # Per map: [0] pass-1 keys, [1] the row stream's previous keys, [2] its output, [3]
    # the slice stream's output.
    keys = np.empty((2, 4, w), scratch.dtype)
    starts = np.zeros((2, w), np.int32)
    none = np.full(w, sent, scratch.dtype)
    changes = np.zeros((w + 8) // 8 * 8, np.uint8)
    words = changes.view(np.uint64)
    run_starts = np.empty(w + 1, np.int32)
    row_runs = (changes, words, run_starts)
    count_runs = (changes, words[: (c1 - c0 + 8) // 8], run_starts)
    # The slice stream's state, per counted row.
    n_held = rhi - rlo if depth else 0
    prev3 = np.full((2, n_held, w), sent, scratch.dtype)
    starts3 = np.zeros((2, n_held, w), np.int32)
    # 2-D: one pass over the rows. 3-D: d more slices than the image, so the last d
    # slices are decided (as boundary pixels) by the same loop.
    for z in range(n_slices + d if depth else n_slices):
        zc = z - d if depth else z
        keys[:, 1] = sent
        for i in range(rs, re + d):
            r = i - d
            if i < re and z < n_slices:
                for m in range(2):
                    row = t[z, i] if m == 0 else p[z, i]
                    n_runs = _runs(row, *row_runs)
                    _row_keys(row, run_starts, n_runs, keys[m, 0], d, n,
                              has_ignore and m == 0, ignore, stats, 2 * m)  # fmt: skip
                    _advance(keys[m, 0], keys[m, 1], starts[m], i, d, keys[m, 2])
            if r < rlo or r >= rhi:
                continue
            if depth:
                for m in range(2):
                    if i >= re or z >= n_slices:  # within d of an end: no interior pixel
                        keys[m, 2] = sent
                    _advance(keys[m, 2], prev3[m, r - rlo], starts3[m, r - rlo], z, d,
                             keys[m, 3])  # fmt: skip
                final_t, final_p = keys[0, 3], keys[1, 3]
            elif i < re:
                final_t, final_p = keys[0, 2], keys[1, 2]
            else:
                final_t, final_p = none, none
            if zc >= zlo and zc < zhi:
                _count_row(t[zc, r, c0:c1], p[zc, r, c0:c1], final_t[c0:c1],
                           final_p[c0:c1], n, has_ignore, ignore, out, count_runs)  # fmt: skip


@njit(**_OPTIONS)
def _share(t, p, scratch, n, has_ignore, ignore, d, depth, lo, hi, out, tables, stats,
           image, k, n_threads):  # fmt: skip
    """Share `k` of :func:`boundary_counts` (the compiled kernel; the GIL released).

    ``image < 0``: the images ``k, k + T, ...`` below the last ``B % T``, each added into
    its own row of `out` (B, 3, N). Otherwise the `k`-th of `n_threads` ranges of the
    counted rows of `image`, into ``tables[k]`` (3, N). Bad labels: ``stats[k]``.
    """
    n_images, n_rows = t.shape[0], t.shape[2]
    stream = np.zeros(2, np.int64)
    if image < 0:
        stream[1] = n_rows
        for b in range(k, n_images - n_images % n_threads, n_threads):
            _image(t[b], p[b], scratch, n, has_ignore, ignore, d, depth, lo, hi, stream,
                   out[b], stats[k])  # fmt: skip
        return
    span = hi[1] - lo[1]
    mine_lo, mine_hi = lo.copy(), hi.copy()
    mine_lo[1] = lo[1] + span * k // n_threads
    mine_hi[1] = lo[1] + span * (k + 1) // n_threads
    if mine_lo[1] >= mine_hi[1]:
        return
    # The first and last ranges are read to the block's ends, so every pixel is checked.
    stream[0] = 0 if mine_lo[1] == lo[1] else max(mine_lo[1] - d, 0)
    stream[1] = n_rows if mine_hi[1] == hi[1] else min(mine_hi[1] + d, n_rows)
    _image(t[image], p[image], scratch, n, has_ignore, ignore, d, depth, mine_lo, mine_hi,
           stream, tables[k], stats[k])  # fmt: skip


def _array_type(dtype: str, ndim: int, readonly: bool = False) -> Any:
    return types.Array(from_dtype(np.dtype(dtype)), ndim, "C", readonly=readonly)


def _share_types(label: str, key: str) -> tuple[Any, ...]:
    """The argument types of :func:`_share` for label maps of `label`, keys of `key`."""
    maps = _array_type(label, 4, readonly=True)
    i64, flag = types.int64, types.boolean
    vector, table, stats = (_array_type("int64", ndim) for ndim in (1, 3, 2))
    return (maps, maps, _array_type(key, 1), i64, flag, i64, i64, flag, vector, vector,
            table, table, stats, i64, i64, i64)  # fmt: skip


#: Every argument type tuple :func:`_share` is compiled for: one per label dtype and key
#: dtype (:func:`boundary_counts` passes nothing else; compiled when first used).
SIGNATURES: frozenset[tuple[Any, ...]] = frozenset(
    _share_types(label, key) for label in LABEL_DTYPES for key in KEY_DTYPES
)


# --------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------


def _kernel_dtype(a: np.dtype, b: np.dtype) -> np.dtype:
    """The one dtype of :data:`LABEL_DTYPES` both label maps are read in."""
    for x in (a, b):
        if x.kind not in "biu":
            raise TypeError(f"label maps must hold integers; got dtype {x}")
    a, b = (np.dtype(_CONVERTED.get(x.name, x.name)) for x in (a, b))
    return np.promote_types(a, b)


def _int(value: Any, name: str) -> int:
    if isinstance(value, bool | np.bool_):
        raise ValueError(f"{name} must be an integer; got {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be an integer; got {value!r}") from None


def _counted(shape: tuple[int, ...], halo: Any) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi): the counted range of each spatial axis, as 3 axes (slices, rows, columns)."""
    k = len(shape)
    pairs = [(0, 0)] * k
    if halo is not None:
        if len(halo) != k:
            raise ValueError(f"halo needs one (before, after) pair per spatial axis ({k}); "
                             f"got {halo!r}")  # fmt: skip
        pairs = []
        for pair, size in zip(halo, shape, strict=True):
            if len(pair) != 2:
                raise ValueError(f"halo: each axis takes a (before, after) pair; got {pair!r}")
            before, after = (_int(v, "halo") for v in pair)
            if before < 0 or after < 0 or before + after > size:
                raise ValueError(
                    f"halo {pair!r} does not fit an axis of {size} pixels (halos are >= 0 "
                    "and leave the counted part of the block non-negative)"
                )
            pairs.append((before, after))
    full = (1,) * (3 - k) + tuple(shape)
    pad = [(0, 0)] * (3 - k) + pairs
    lo = np.array([a for a, _ in pad], np.int64)
    hi = np.array([s - b for s, (_, b) in zip(full, pad, strict=True)], np.int64)
    return lo, hi


def _outside(x: np.ndarray, n: int, ignore: int | None) -> np.ndarray:
    """Where `x` holds no class (and not the ignore index)."""
    bad = (x < 0) | (x >= n)
    if ignore is not None:
        bad &= x != ignore
    return bad


def _bad_message(x: np.ndarray, name: str, n: int, ignore: int | None) -> str:
    bad = _outside(x, n, ignore)
    value = x.reshape(-1)[int(np.argmax(bad.reshape(-1)))].item()
    which = " that are not the ignore index" if ignore is not None else ""
    return (f"{name}: {int(np.count_nonzero(bad))} pixel(s) hold labels outside [0, {n})"
            f"{which}, e.g. {value!r}")  # fmt: skip


def boundary_counts(
    y_true: Any,
    y_pred: Any,
    num_classes: int,
    width: int,
    *,
    ignore_index: int | None = None,
    halo: Sequence[tuple[int, int]] | None = None,
    n_threads: int | None = None,
) -> BoundaryCounts:
    """Boundary pixels per image and class of two label maps, at width `width`.

    Parameters
    ----------
    y_true, y_pred : array_like of integers, shape (B, H, W) or (B, D, H, W)
        Label maps of one shape, class indices in ``[0, N)``; `y_true` may also hold
        `ignore_index`. Any integer dtype, layout or byte order (the kernel reads uint8,
        uint16, int16, int32 and int64 as they are; other inputs are converted).
    num_classes : int
        N.
    width : int
        The boundary width ``d`` in pixels, ``>= 1`` (:func:`boundary_width` turns a
        fraction of the diagonal into pixels).
    ignore_index : int, optional
        Truth label of pixels that are counted nowhere and belong to no class.
    halo : sequence of (int, int), optional
        One ``(before, after)`` pair per spatial axis: the input is a block of a larger
        image carrying that many extra pixels on each side. The boundary is decided on
        the whole block (its sides counting as outside) and only pixels outside the halo
        are counted: blocks with halos of `width` on the sides facing other blocks (0 on
        the image's edges) add up exactly to the counts of the image.
    n_threads : int, optional
        Threads to use (default ``numba.get_num_threads()``).

    Returns
    -------
    BoundaryCounts
        ``true``, ``pred``, ``both``: (B, N) int64.

    Raises
    ------
    TypeError
        Label maps that do not hold integers.
    ValueError
        Shapes that differ or are not (B, H, W) / (B, D, H, W); labels outside
        ``[0, N)`` (in the truth: other than `ignore_index`); a width, class count,
        halo or thread count out of range.
    """
    n = _int(num_classes, "num_classes")
    if not 1 <= n < 2**31 - 1:
        raise ValueError(f"num_classes must be in [1, 2**31 - 1); got {n}")
    d = _int(width, "width")
    if d < 1:
        raise ValueError(f"width must be >= 1 pixel; got {d}")
    ignore = None if ignore_index is None else _int(ignore_index, "ignore_index")
    if ignore is not None and not -(2**63) <= ignore < 2**63:
        raise ValueError(f"ignore_index must fit in int64; got {ignore}")
    threads = numba.get_num_threads() if n_threads is None else _int(n_threads, "n_threads")
    if threads < 1:
        raise ValueError(f"n_threads must be >= 1; got {threads}")
    true, pred = np.asarray(y_true), np.asarray(y_pred)
    if true.shape != pred.shape:
        raise ValueError(f"y_true and y_pred differ in shape: {true.shape} and {pred.shape}")
    if true.ndim not in (3, 4):
        raise ValueError(f"label maps must be (B, H, W) or (B, D, H, W); got shape {true.shape}")
    dtype = _kernel_dtype(true.dtype, pred.dtype)
    spatial = true.shape[1:]
    lo, hi = _counted(spatial, halo)
    n_images = true.shape[0]
    out = np.zeros((n_images, 3, n), np.int64)
    if n_images and min(spatial) > 0 and np.all(hi > lo):
        # Past half an axis no pixel is interior: a wider d changes nothing.
        d = min(d, *((s + 1) // 2 for s in spatial))
        shape4 = (n_images, *((1,) * (4 - true.ndim)), *spatial)
        t = kernels.kernel_input(np.ascontiguousarray(true, dtype).reshape(shape4), "y_true")
        p = kernels.kernel_input(np.ascontiguousarray(pred, dtype).reshape(shape4), "y_pred")
        key = KEY_DTYPES[0 if n <= 2**8 - 1 else 1 if n <= 2**16 - 1 else 2]
        tables = np.zeros((threads, 3, n), np.int64)
        stats = np.zeros((threads, _N_STATS), np.int64)
        args = (t, p, np.zeros(1, key), n, ignore is not None,
                0 if ignore is None else ignore, d, true.ndim == 4, lo, hi, out, tables,
                stats)  # fmt: skip
        if n_images >= threads:
            kernels.run_shares(_share, threads, *args, -1)
        for image in range(n_images - n_images % threads, n_images):
            tables[...] = 0
            kernels.run_shares(_share, threads, *args, image)
            out[image] += tables.sum(axis=0)
        bad = [stats[:, _TRUE_BAD].any(), stats[:, _PRED_BAD].any()]
    else:  # nothing counted: the labels are checked all the same
        bad = [_outside(true, n, ignore).any(), _outside(pred, n, None).any()]
    for x, name, is_bad, ign in ((true, "y_true", bad[0], ignore),
                                 (pred, "y_pred", bad[1], None)):  # fmt: skip
        if is_bad:
            raise ValueError(_bad_message(x, name, n, ign))
    return BoundaryCounts(*(np.ascontiguousarray(out[:, j]) for j in range(3)))


# ------------------------------------------------------------------ the statistic


def check_width(width: object) -> float | int:
    """The boundary width as given (pixels, or a fraction of the diagonal), checked."""
    boundary_width((1000, 1000), width)  # type: ignore[arg-type]
    value = float(width)  # type: ignore[arg-type]
    return int(value) if value >= 1 else value


@dataclasses.dataclass(frozen=True, eq=False)
class BoundarySums(ImageStat):
    """Boundary counts per image and class, and the width they were counted at.

    Attributes
    ----------
    true, pred, both : ndarray of int64, shape (B, N)
        As :class:`BoundaryCounts`: boundary pixels of the truth's class, of the
        prediction's, and of both.
    width : int or float
        The width as given: pixels (``>= 1``), or a fraction of each image's diagonal.

    Counts add over images and blocks; the Boundary IoU of class ``c`` is
    ``both / (true + pred - both)`` of the data-set sums (NaN where no pixel of ``c`` is
    a boundary pixel of either), the semantic-segmentation form of the paper's metric.
    """

    KIND: ClassVar[str] = "boundary"
    ROWS: ClassVar[tuple[str, ...]] = ("true", "pred", "both")

    true: np.ndarray
    pred: np.ndarray
    both: np.ndarray
    width: float | int

    def __post_init__(self) -> None:
        shape = self.true.shape
        for name in self.ROWS:
            a = getattr(self, name)
            if a.ndim != 2 or a.shape != shape or a.dtype != np.int64:
                raise ValueError(
                    f"boundary {name} must be int64 of one (images, classes) shape; got "
                    f"{a.dtype} {a.shape} beside {shape}"
                )
        object.__setattr__(self, "width", check_width(self.width))

    @classmethod
    def from_counts(cls, counts: BoundaryCounts, width: float | int) -> BoundarySums:
        """From the kernel's :class:`BoundaryCounts`."""
        return cls(counts.true, counts.pred, counts.both, width)

    def iou(self) -> np.ndarray:
        """Boundary IoU per class, (N,), from the data-set sums; NaN for an empty union."""
        both = self.both.sum(axis=0)
        union = self.true.sum(axis=0) + self.pred.sum(axis=0) - both
        return ratio(both, union)

    def class_values(self) -> dict[str, np.ndarray]:
        """``boundary_iou`` per class."""
        return {"boundary_iou": self.iou()}

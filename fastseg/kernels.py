"""Numba kernels: arrays in, counts out.

Two kernels, :func:`hard_counts` and :func:`soft_sums`, make every count fastseg uses.
They take arrays already validated and viewed by :mod:`fastseg.inputs` in one of three
shapes, told apart by ``ndim``:

``(B, P)``          integer label map (P = pixels per image, flattened)
``(B, P, N)``       scores with the class axis last ("channels-last")
``(B, O, N, I)``    scores with the class axis inside, pixels ``p = o * I + i``
                    ("channels-first" is ``O == 1``)

Float16 scores arrive as their ``uint16`` bit patterns (Numba has no float16 on the
CPU); the vector decoders widen them to float32 in the register (:func:`row_argmax`,
:func:`_lane_key`), the scalar loops compare them as integers with the same order
(:func:`_key`), so the argmax is taken without converting the array. Other dtypes are
compared natively, except channels-last float64 scores with many classes, whose bits
are compared as integers the same way (an integer max is a reduction LLVM vectorises;
see :func:`_argmax_two_pass`).

Channels-first scores are reduced class-outer over runs of pixels, several classes per
pass (:func:`_argmax_group`); channels-last scores pixel by pixel.

The kernels never allocate anything proportional to the input: pixels are decoded to
class labels one block of :data:`BLOCK` pixels at a time into small scratch buffers, then
tallied into a per-image table: a row per true class, a column per predicted class, and
a row and column "no class" (only the one-class threshold of the post produces it). Two
label maps skip the decoding: each pixel pair is read through one lookup table per input
(one fused table for two uint8 maps) as a table cell and counted without a branch; the
table's extra rows and column collect the ignored and invalid pixels
(:func:`_label_pair_block`, :func:`table_shape`).

Threads: a call's work is split into ``T`` shares (whole images round-robin, then the
blocks of the last ``B % T`` images in contiguous ranges), compiled functions that release
the GIL and run on a plain thread pool (:func:`run_shares`), not in a Numba parallel
region: that would cost seconds of compilation per kernel specialisation and tie the
kernels to a Numba threading layer. ``T`` is ``numba.get_num_threads()`` of the caller.
Each share owns its tables; nothing is shared between shares, so counts are identical
for any number of threads, and so are the soft sums (summed block by block, blocks in
order).

Per-thread tables take about ``T * 2 * N^2`` int64: with many classes and threads that is
gigabytes. :func:`hard_kernel` then picks :func:`hard_counts_shared`, which decodes
blocks in parallel and tallies them straight into the outputs, each thread owning a
disjoint range of truth rows and prediction columns (see :func:`thread_tables_fit`).

Kernels add into the count arrays the caller allocated (and zeroed), so one kernel
serves a one-shot call, an accumulator update and a Dask chunk.

What the kernels are compiled for
---------------------------------
Numba compiles a kernel once per combination of argument types, and an array's type
includes its layout (C / F / any), whether it is writable, its alignment and dtype. The
kernels are compiled for one form only: every input array C-contiguous, aligned, in
native byte order and **readonly** (Zarr / Dask chunks and memory maps arrive readonly; a
writable array is given as a readonly view of itself, which costs nothing), with a dtype
from :data:`LABEL_DTYPES` (label maps), :data:`SCORE_DTYPES` (scores, hard counts) or
:data:`SOFT_SCORE_DTYPES` (scores, soft sums). :data:`SIGNATURES` lists every argument
type tuple this allows; :func:`hard_counts`, :func:`hard_counts_shared` and
:func:`soft_sums` refuse anything else (a TypeError, never a new compilation), and
:mod:`fastseg.inputs` views or converts, slab by slab, every other input onto these
forms (other layouts, byte orders and dtypes). Compilation stays lazy: a signature is
compiled (or loaded from the on-disk cache) the first time it is used.

Input kind -> decoder -> fast path -> measured cycles per pixel
---------------------------------------------------------------
Figures as measured on the project's machine (2-core AMD EPYC, one thread, unless the
note says otherwise); the letter names the source. "last" is channels-last ``(B, P, N)``,
"inside" the class axis inside ``(B, O, N, I)`` (channels-first is ``O == 1``). No figure
is given where none was measured.

=======================  ===================  ==============================  ==================
input kind               decoder              fast path                       cycles per pixel
=======================  ===================  ==============================  ==================
two uint8 label maps     _fused_pair_block    one fused lookup per pixel      Cityscapes-like
                                              pair, eight pixels a word; a    0.75, blocky 1.54,
                                              word of equal pairs counts at   random 2.21 (g)
                                              once
two label maps, other    _label_pair_block    one lookup per map and pixel,   no figure
dtypes                                        no branch on the labels
label map ``(B, P)``     _decode_labels       one pass over a slice (indices  no figure
(truth, beside scores)                        non-negative: vectorised)
last, float32 / float16  _decode_vector_rows  row_argmax: the row in 8-lane  N=5: 10, N=14: 9,
bits, 1 < N <= 32                             vectors, max tree, first index  N=21: 12, N=31: 19
                                              by cttz of one mask; rows       (h)
                                              prefetched 8 KiB ahead
last, float32 / float16  _decode_vector_rows  long_row_argmax: lane-wise      N=150: f16 114,
bits, N > 32                                  running max and index in        f32 125 (i);
                                              16-lane vectors, two            in cache, 3 GHz:
                                              accumulators, NaN by sums;      f16 56, f32 54 (j)
                                              rows prefetched
last, float64, N < 32    _decode_last         running argmax per pixel,       N=14: 28, N=21: 33
                                              branch-free NaN flag            (a); VOC: ~33 (b)
last, float64, N >= 32   _decode_last         _argmax_two_pass: largest key,  N=32: 30,
                                              then first class holding it     N=100: 156 (a)
last, integers           _decode_last         running argmax per pixel        no figure
inside, any dtype        _decode_strided      _argmax_group: 4 classes per    VOC 9.0, ADE 67,
                                              pass over a run of pixels;      ADE16 43 (e);
                                              float16 widened to float32      volume (f16, 14)
                                                                              16.9 -> 13.5 (f)
soft sums, any scores    _soft_block          float64 sums pixel by pixel     no figure
=======================  ===================  ==============================  ==================

(a) :func:`_two_pass_from`: random float32 softmax, one pass / two passes at N = 14, 21,
32, 100 (the faster one is used). (b) README, Performance: "about 33 cycles per pixel for
VOC". (e) :func:`_argmax_group` (one class per pass: 20.6, 166, 100). (f)
:func:`_lane_key`: int32 keys from the float16 bits against float32 values (vcvtph2ps),
``pred_labels`` of the volume; int16 keys lost to int32 keys by far: 19 classes 89 -> 22,
150 classes 553 -> 182. (g) one thread, 4 x 1024 x 2048 maps (:func:`_fused_pair_block`'s
docstring). (h) :func:`_decode_vector_rows`: blocks of random float32 scores in cache,
against the per-pixel loop (22, 29, 51, 65); float16 measured the same within noise. (i)
:func:`long_row_argmax`, 65 536 rows not in cache, against :func:`_argmax_two_pass` (162,
188). (j) :func:`_long_row_scan`, 2 048 rows in cache, on the 2-core Sapphire Rapids of
2026-12-02 (8 lanes: f16 74, f32 56).

Names
-----
``num_classes``
    N, the number of classes, everywhere (``Classes.num_classes``).
``channels``
    The extent of the class axis of the score array being read (``x.shape[2]``): equal
    to N for scores; loops over an array's classes are bounded by the array's own extent.
``n_pix``, ``n_span``
    Pixels per image; pixels in the span being decoded (``stop - start``).
``span``, ``classes``, ``scratch``, ``found``, ``mask``
    The bundles every decoder takes (:class:`Span`, :class:`Classes`, :class:`Scratch`,
    :class:`Found`, :class:`Mask`); the kernels' outputs travel as :class:`HardCounts` /
    :class:`SoftSums`.
"""

from __future__ import annotations

import concurrent.futures
import importlib.util
import math
import os
import sys
import threading
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
from llvmlite import ir
from numba import from_dtype, njit, typeof, types
from numba.core import cgutils
from numba.extending import intrinsic, overload

# --------------------------------------------------------------------------------------
# Numba options: the one place that owns them. Every kernel is compiled with KERNEL and
# every helper it calls with HELPER; nothing else in the package passes options to Numba.
# They live in this file, beside the functions, because Numba's on-disk cache is keyed by
# the source file of the function it compiled (its timestamp and size): options imported
# from another module could be edited without invalidating the cache, and the old
# machine code would silently stay in use until __pycache__ was deleted.
# --------------------------------------------------------------------------------------

HELPER: Any = {
    # Helpers are called from kernels only; they are compiled into the caller, so the
    # caller's cache entry holds them too.
    "nogil": True,
    "cache": True,
    # Exact counting: a float comparison must not be reordered or assume "no NaN", and the
    # soft sums must not be reassociated (results must not depend on the thread count).
    "fastmath": False,
    # NumPy's error model: no Python exception checks (e.g. for division) in hot loops.
    "error_model": "numpy",
    # Indices are computed from the array's own shape; a bounds check per access would
    # cost ~20 % for nothing.
    "boundscheck": False,
}

KERNEL: Any = {
    **HELPER,
    # Kernels release the GIL: :func:`run_shares` runs a call's shares on several threads,
    # and Dask's threaded scheduler (or any thread pool) can run several calls at once.
    "nogil": True,
    # No `parallel=True`: a Numba parallel region costs seconds of compilation per kernel
    # specialisation (parfor passes, one gufunc per loop, its body compiled twice) and
    # ties the kernels to a Numba threading layer; the shares run on a plain thread pool.
    # The on-disk cache makes the second process start in well under a second instead of
    # recompiling. It is keyed by the source file's timestamp and the CPU; Numba writes
    # it atomically, so several processes may share it.
    "cache": True,
}

#: Blocks per thread in one round of the kernels that work in rounds (the soft sums of
#: the last ``B % T`` images, the shared-table hard counts): a round's buffers take
#: ``T * ROUND_BLOCKS`` blocks, whatever the input size; more blocks per round mean
#: fewer hand-overs between threads.
ROUND_BLOCKS = 4
#: Pixels decoded per block. Channels-first scores are read as N runs of BLOCK values;
#: runs much shorter than this defeat the hardware prefetcher, which stops at 4 KiB pages
#: (measured: 4096 -> 32768 made the argmax 3x faster). Scratch stays in L2 (~0.5 MiB).
BLOCK = 32768
#: Label code of a pixel that is not counted (ignored truth, invalid label, NaN score).
SKIP = -1

# Slots of the ``stats`` vector every kernel adds into. The truth decoder uses slots
# TRUE_*, the prediction decoder PRED_* (its base offset is passed as ``Found.slot``).
TRUE_BAD = 0  # truth labels outside [0, N) that are not the ignore index
TRUE_BAD_VALUE = 1  # one such value, for the error message
TRUE_NAN = 2  # truth pixels with a NaN score
PRED_BAD = 3
PRED_BAD_VALUE = 4
PRED_NAN = 5
IGNORED = 6  # truth pixels equal to the ignore index
# Soft sums: score values outside [0, 1], infinities included (NaN is counted per pixel
# in *_NAN), and one such value as float64 bits (read it with
# ``stats[slot:slot + 1].view(np.float64)[0]``). Only pixels that are counted (truth not
# ignored, labels valid) are checked. Hard counts use PRED_RANGE for the confidences of
# their confidence histograms (:class:`Calibration`) only.
TRUE_RANGE = 7  # truth score / one-hot values outside [0, 1] (label-map truth: never)
TRUE_RANGE_VALUE = 8
PRED_RANGE = 9
PRED_RANGE_VALUE = 10
N_STATS = 11

# Rows and columns of the per-image tables of :func:`hard_counts`, beyond the classes
# ``0 .. N-1`` and "no class" ``N`` (the one-class threshold of the post produces it):
# two label maps are tallied without a branch (:class:`PairCodes`), so the pixels the
# decoders count in ``stats`` land in rows and a column of their own, folded into
# ``stats`` with the image (:func:`_finish_image`).
IGNORED_ROW = 1  # + N: ignored truth pixels
TRUE_BAD_ROW = 2  # + N: truth labels that are not classes
PRED_BAD_COLUMN = 1  # + N: predictions that are not classes, where the truth counts


def table_shape(num_classes: int) -> tuple[int, int]:
    """(rows, row width) of a per-image table of :func:`hard_counts`."""
    return num_classes + TRUE_BAD_ROW + 1, num_classes + PRED_BAD_COLUMN + 1


# --------------------------------------------------------------------------------------
# Argument bundles. Numba passes a named tuple as its fields (no boxing, no memory), and
# each function unpacks the bundles it takes into the local names its loops use.
# --------------------------------------------------------------------------------------


def _no_table() -> np.ndarray:
    table = np.zeros(0, np.int32)
    table.flags.writeable = False
    return table


class LabelCodes(NamedTuple):
    """A label-id map, applied while a label map is read.

    Id ``v`` reads as ``table[v]`` when ``0 <= v < table.size``, else as `default`. An
    empty table maps nothing.
    """

    #: int32, readonly, C-contiguous.
    table: np.ndarray = _no_table()
    default: int = 0


#: No label-id map: ids are class labels.
NO_CODES = LabelCodes()


class Classes(NamedTuple):
    """How labels are read: ``[0, num_classes)`` are classes; `ignore` is skipped.

    `codes` is the label-id map of the input being decoded (at a kernel's entry: the
    truth's), `pred_codes` the prediction's; both apply to label maps only.
    """

    num_classes: int
    has_ignore: bool
    ignore: int
    codes: LabelCodes = NO_CODES
    pred_codes: LabelCodes = NO_CODES


class HardCounts(NamedTuple):
    """The outputs of the hard kernels, added into; int64."""

    #: (B, N): pixels both predicted and true, per image and class.
    tp: np.ndarray
    #: (B, N): predicted pixels.
    pred_count: np.ndarray
    #: (B, N): true pixels.
    true_count: np.ndarray
    #: (N, N): rows truth, columns prediction.
    confusion: np.ndarray


class SoftSums(NamedTuple):
    """The outputs of :func:`soft_sums`, added into; float64, (B, N) each."""

    #: Sum of ``|p * t|``.
    inter: np.ndarray
    #: Sum of ``|p|``.
    pred_sum: np.ndarray
    #: Sum of ``|t|``.
    true_sum: np.ndarray


class Span(NamedTuple):
    """Pixels ``[start, stop)`` of image `image`: what a decoder decodes."""

    image: int
    start: int
    stop: int


class Scratch(NamedTuple):
    """One input's decode buffers (BLOCK entries; a decoder uses the first ``n_span``)."""

    #: Class labels out (SKIP where a pixel is not counted).
    labels: np.ndarray
    #: Keys of the running argmax (channels-first and float16 scores).
    keys: np.ndarray
    #: Per-pixel NaN flags.
    nans: np.ndarray


class Found(NamedTuple):
    """Where a decoder adds what it finds: `stats`, at base slot TRUE_BAD or PRED_BAD."""

    stats: np.ndarray
    slot: int


class Mask(NamedTuple):
    """Pixels not to read: where `masked` and ``keep[j] < 0`` (the truth is not counted)."""

    keep: np.ndarray
    masked: bool


class HardScratch(NamedTuple):
    """Block buffers of :func:`_hard_block`, one set per thread."""

    pred_labels: np.ndarray
    true_labels: np.ndarray
    pred_keys: np.ndarray
    true_keys: np.ndarray
    nans: np.ndarray


class SoftScratch(NamedTuple):
    """Block buffers of :func:`_soft_block`, one set per thread."""

    true_labels: np.ndarray
    true_keys: np.ndarray
    nans: np.ndarray
    pred_nans: np.ndarray
    true_nans: np.ndarray


class PairCodes(NamedTuple):
    """Two label maps read as table cells, one lookup per pixel and input.

    Truth id ``v`` reads as the offset ``true[v]`` of its row in a per-image table (see
    :func:`table_shape`): its class's row, or the IGNORED / TRUE_BAD row; prediction id
    ``v`` as ``pred[v]``, its class's column or the PRED_BAD column. Their sum is the
    pixel's cell, counted without a branch. Ids outside a table read as `true_outside` /
    `pred_outside`, except that with `ignore_outside` (a truth without a label-id map) a
    truth id equal to the ignore index is ignored. For two uint8 maps,
    ``fused[(t << 8) | p]`` holds the sum itself. Built by :func:`pair_codes`.
    """

    true: np.ndarray
    pred: np.ndarray
    true_outside: int
    pred_outside: int
    ignore_outside: bool
    fused: np.ndarray


#: Inputs that are not two label maps.
NO_PAIR = PairCodes(_no_table(), _no_table(), 0, 0, False, _no_table())


class Calibration(NamedTuple):
    """Confidence histograms of the predicted class, per image (:mod:`fastseg.calibration`).

    Bin ``k < n`` holds the counted pixels whose confidence lies in ``[edges[k],
    edges[k + 1])``; bin ``n`` those whose confidence is exactly 1 (torchmetrics'
    ``bucketize(..., right=True)`` bins). Per bin: pixels, pixels predicted right, and the
    sum of their confidences in units of ``2**-CONFIDENCE_BITS`` (integers: exact, and the
    same for any split of the data or number of threads). ``edges`` empty: not computed.
    """

    #: float64, (n + 1,): the bins' lower edges, and 1.
    edges: np.ndarray
    #: The confidence is the softmax of the scores at the predicted class (scores are
    #: logits), not the score itself.
    softmax: bool
    #: (T, 3, n + 1) int64: the image (or blocks) a thread is counting.
    tables: np.ndarray
    #: (B, 3, n + 1) int64: per image, added into.
    out: np.ndarray


#: Confidence sums are integers in units of 2**-CONFIDENCE_BITS: float32's resolution
#: near 1, so a confidence of float16 or of float32 in [0.5, 1] adds exactly.
CONFIDENCE_BITS = 24
#: Rows of a :class:`Calibration` table.
CAL_PIXELS = 0
CAL_CORRECT = 1
CAL_CONFIDENCE = 2

#: A counted pixel is one int64 increment of its bin (:func:`_confidence_bins`): its
#: confidence units in bits 0-36, whether it is right at bit 37, and 1 at bit 50. The sum
#: of up to PACKED_PIXELS such words keeps each field within its bits (units below
#: 2**36 + 1, counts below 2**13), so one add stands for three.
PACKED_PIXELS = 4096
PACKED_CORRECT = 37
PACKED_PIXEL = 50


@njit(**HELPER)
def _unpacked(v):
    """(pixels, right pixels, confidence units) of a sum of packed increments."""
    units = v & ((np.int64(1) << PACKED_CORRECT) - 1)
    right = (v >> PACKED_CORRECT) & ((np.int64(1) << (PACKED_PIXEL - PACKED_CORRECT)) - 1)
    return v >> PACKED_PIXEL, right, units


class HardWork(NamedTuple):
    """Per-thread buffers of :func:`hard_counts` (thread ``t`` owns index ``t``)."""

    #: (T, rows * width) int64: the table of the image (or blocks) being counted, its
    #: rows back to back (:func:`table_shape`).
    tables: np.ndarray
    #: (T, N, N) int64: confusion of the whole images a thread counted.
    confusions: np.ndarray
    #: (T, N_STATS) int64.
    stats: np.ndarray
    #: Two label maps' lookups (:data:`NO_PAIR` for other inputs).
    pair: PairCodes
    #: Confidence histograms of score predictions; None: not computed (and not compiled).
    calibration: Calibration | None


class SoftWork(NamedTuple):
    """Buffers of :func:`soft_sums`."""

    #: (T * ROUND_BLOCKS, 3, N) float64: one round's per-block sums.
    partial: np.ndarray
    #: (T, N_STATS) int64, one row per thread.
    stats: np.ndarray


class BlockLabels(NamedTuple):
    """One round of decoded labels of :func:`hard_counts_shared`.

    (T * ROUND_BLOCKS, BLOCK) int32 each, SKIP where a pixel is not counted.
    """

    true: np.ndarray
    pred: np.ndarray


class ConfidenceMarks(NamedTuple):
    """One round's confidence bins of :func:`hard_counts_shared` (with calibration).

    (T * ROUND_BLOCKS, BLOCK) each, beside :class:`BlockLabels`: a pixel's bin (int32;
    ``n + 1`` where it is not counted) and its packed increment (int64, see
    :data:`PACKED_PIXELS`); (0, 0) without calibration.
    """

    bins: np.ndarray
    packed: np.ndarray


# --------------------------------------------------------------------------------------
# Threads: a call's work is split into shares, run on a pool of plain threads.
# --------------------------------------------------------------------------------------

_pool: concurrent.futures.ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _reset_pool() -> None:
    # A forked child has the pool object but not its threads: start afresh.
    global _pool
    _pool = None


os.register_at_fork(after_in_child=_reset_pool)


def _workers(n: int) -> concurrent.futures.ThreadPoolExecutor:
    """The process's kernel thread pool, with at least `n` threads."""
    global _pool
    with _pool_lock:
        if _pool is None or _pool._max_workers < n:
            old, _pool = _pool, concurrent.futures.ThreadPoolExecutor(
                n, thread_name_prefix="fastseg-kernel")  # fmt: skip
            if old is not None:
                old.shutdown(wait=False)  # its queued shares still run
        return _pool


_blas_probe_lock = threading.Lock()
_blas_probe_done = False


def skip_scipy_at_numba_start() -> None:
    """Spare the first compiled call Numba's import of SciPy's linear algebra (~0.5 s).

    Called before fastseg's compiled functions are first dispatched (:func:`run_shares`,
    :func:`fastseg.png.decode_gray`, :func:`fastseg.instances.tally`); a no-op after the
    first call.

    Numba's first compile or cache load imports ``numba.np.arraymath``, which probes for
    BLAS by importing ``scipy.linalg.cython_blas``: half a second of SciPy imports in
    every process where SciPy is installed (measured: 0.54 s, ``python -X importtime``),
    for linear algebra no kernel uses. While that module is imported, its probe only
    asks whether SciPy is installed (the same answer, without importing it); every later
    call of Numba's check is Numba's own. Nothing is changed when the module is already
    loaded or Numba's layout differs.
    """
    global _blas_probe_done
    if _blas_probe_done:
        return
    with _blas_probe_lock:
        if _blas_probe_done:
            return
        _blas_probe_done = True
        if "numba.np.arraymath" in sys.modules:
            return
        try:
            from numba.np import linalg

            check = linalg.ensure_blas
        except (ImportError, AttributeError):
            return

        def probe() -> None:
            if sys._getframe(1).f_globals.get("__name__") != "numba.np.arraymath":
                return check()
            if importlib.util.find_spec("scipy") is None:
                raise ImportError("scipy is not installed")
            return None

        linalg.ensure_blas = probe


def run_shares(work: Callable[..., None], n_threads: int, *args: Any) -> None:
    """``work(*args, t, n_threads)`` for every share ``t < n_threads``, on that many threads.

    Share 0 runs in the calling thread, the others on the pool (shares are compiled
    kernels that release the GIL, so they run at once). Returns when all have finished;
    the first error raised by a share is raised again. Shares never wait on each other,
    so calls from several threads at once (Dask's threaded scheduler) just queue their
    shares: the pool bounds the threads in use, and no call can deadlock another.
    """
    skip_scipy_at_numba_start()
    if n_threads <= 1:
        work(*args, 0, 1)
        return
    pool = _workers(n_threads - 1)
    futures = [pool.submit(work, *args, t, n_threads) for t in range(1, n_threads)]
    try:
        work(*args, 0, n_threads)
    finally:
        concurrent.futures.wait(futures)
    for f in futures:
        f.result()


def _pixels_per_image(x: np.ndarray) -> int:
    """P, for a kernel input of any of the three shapes."""
    return int(x.shape[1] * x.shape[3]) if x.ndim == 4 else int(x.shape[1])


# --------------------------------------------------------------------------------------
# The signatures the kernels are compiled for: the one list (see the module docstring).
# --------------------------------------------------------------------------------------

#: Dtypes of label maps ``(B, P)``. Other integers are converted slab by slab
#: (int8 / int16 -> int32, uint32 -> int64) or viewed (bool as uint8, uint64 as int64).
LABEL_DTYPES = ("uint8", "uint16", "int32", "int64")
#: Dtypes of scores ``(B, P, N)`` / ``(B, O, N, I)`` for hard counts; uint16 holds float16
#: bits. Others: bool viewed as uint8; int8 / int16 / uint16 -> int32, uint32 -> int64,
#: uint64 -> int64 with the top bit flipped (same order), converted slab by slab.
SCORE_DTYPES = ("uint8", "uint16", "int32", "int64", "float32", "float64")
#: Dtypes of scores for soft sums, which read values: float16 -> float32, uint64 ->
#: float64 (the kernel sums float64 anyway), other integers as for hard counts.
SOFT_SCORE_DTYPES = ("uint8", "int32", "int64", "float32", "float64")


def _array_type(dtype: str, ndim: int, readonly: bool = True) -> Any:
    return types.Array(from_dtype(np.dtype(dtype)), ndim, "C", readonly=readonly)


def _input_pairs(soft: bool) -> list[tuple[tuple[int, str], tuple[int, str]]]:
    """(pred, true) as ((ndim, dtype), (ndim, dtype)) pairs a kernel takes.

    Hard counts: each input a label map or scores; two score inputs have one ndim (they
    have one shape). Soft sums: scores for the prediction; the truth a label map or
    scores of the prediction's ndim.
    """
    labels = [(2, d) for d in LABEL_DTYPES]
    if soft:
        return [
            ((nd, p), t)
            for nd in (3, 4)
            for p in SOFT_SCORE_DTYPES
            for t in labels + [(nd, d) for d in SOFT_SCORE_DTYPES]
        ]
    scores = [(nd, d) for nd in (3, 4) for d in SCORE_DTYPES]
    return [
        (p, t)
        for p in labels + scores
        for t in labels + scores
        if p[0] == 2 or t[0] == 2 or p[0] == t[0]
    ]


# Numba types built directly (numba.typeof on arrays would import numpy.ma at import).
_CODES_TYPE = types.NamedTuple((_array_type("int32", 1), types.int64), LabelCodes)
_CLASSES_TYPE = types.NamedTuple(
    (types.int64, types.boolean, types.int64, _CODES_TYPE, _CODES_TYPE), Classes)
_PAIR_TYPE = types.NamedTuple(
    (_array_type("int32", 1), _array_type("int32", 1), types.int64, types.int64,
     types.boolean, _array_type("int32", 1)),
    PairCodes,
)
_CALIBRATION_TYPE = types.NamedTuple(
    (_array_type("float64", 1), types.boolean, _array_type("int64", 3, False),
     _array_type("int64", 3, False)),
    Calibration,
)
_OUTPUT_TYPES = {
    False: types.NamedUniTuple(_array_type("int64", 2, readonly=False), 4, HardCounts),
    True: types.NamedUniTuple(_array_type("float64", 2, readonly=False), 3, SoftSums),
}
_INPUT_TYPES = {(nd, d): _array_type(d, nd) for nd in (2, 3, 4)
                for d in {*LABEL_DTYPES, *SCORE_DTYPES, *SOFT_SCORE_DTYPES}}  # fmt: skip

_I64 = types.int64
#: Calibration or none (None, a type of its own: compiled without any of its code).
_CALIBRATIONS = (_CALIBRATION_TYPE, types.none)
_SUFFIX_TYPES: dict[str, list[tuple[Any, ...]]] = {
    # The alternatives of (outputs, buffers, integers...) after (pred, true, Classes),
    # per compiled kernel.
    "hard_counts": [
        (
            _OUTPUT_TYPES[False],
            types.NamedTuple(
                (_array_type("int64", 2, False), _array_type("int64", 3, False),
                 _array_type("int64", 2, False), _PAIR_TYPE, calibration),
                HardWork,
            ),
            _I64, _I64, _I64,
        )
        for calibration in _CALIBRATIONS
    ],
    "hard_counts_shared": [
        (
            types.NamedUniTuple(_array_type("int32", 2, readonly=False), 2, BlockLabels),
            _array_type("int64", 2, readonly=False),
            calibration,
            types.NamedTuple(
                (_array_type("int32", 2, False), _array_type("int64", 2, False)),
                ConfidenceMarks),
            _I64, _I64, _I64,
        )
        for calibration in _CALIBRATIONS
    ],
    "soft_sums": [(
        _OUTPUT_TYPES[True],
        types.NamedTuple(
            (_array_type("float64", 3, False), _array_type("int64", 2, False)), SoftWork
        ),
        _I64, _I64, _I64, _I64,
    )],
}  # fmt: skip

#: Kernel name -> every argument type tuple its compiled function (:data:`COMPILED`) may
#: be compiled for: ``(pred, true, Classes, ...)`` with `pred` and `true` from
#: :func:`_input_pairs` and the rest fixed. Nothing else is ever compiled
#: (tests/test_kernels.py checks).
SIGNATURES: dict[str, frozenset[tuple[Any, ...]]] = {
    name: frozenset(
        (_INPUT_TYPES[p], _INPUT_TYPES[t], _CLASSES_TYPE, *suffix)
        for p, t in _input_pairs(name == "soft_sums")
        for suffix in _SUFFIX_TYPES[name]
    )
    for name in ("hard_counts", "hard_counts_shared", "soft_sums")
}

#: The predicted labels of one input (:func:`pred_labels`): (x, Classes, out, stats, t, T).
SIGNATURES["pred_labels"] = frozenset(
    (_INPUT_TYPES[x], _CLASSES_TYPE, _array_type("int32", 2, False),
     _array_type("int64", 2, False), _I64, _I64)
    for x in [(2, d) for d in LABEL_DTYPES] + [(nd, d) for nd in (3, 4) for d in SCORE_DTYPES]
)  # fmt: skip

_ACCEPTS = {soft: frozenset(_input_pairs(soft)) for soft in (False, True)}


def kernel_input(x: Any, name: str = "input") -> np.ndarray:
    """`x` as the kernels take it: a readonly view of a C-contiguous, aligned, native array.

    A writable array is viewed as readonly (no copy). Whether its ndim and dtype are in
    the table is checked by the kernel entry points.

    Raises
    ------
    TypeError
        When `x` is not a NumPy array of that form (:mod:`fastseg.inputs` converts such
        inputs slab by slab before a kernel sees them).
    """
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name}: the kernels take NumPy arrays; got {type(x).__name__}")
    flags = x.flags
    if not (flags.c_contiguous and flags.aligned and x.dtype.isnative):
        raise TypeError(
            f"{name}: the kernels take C-contiguous, aligned arrays in native byte order "
            f"(got dtype {x.dtype.str}, strides {x.strides}); fastseg.inputs.prepare "
            "converts other inputs slab by slab"
        )
    if flags.writeable:
        x = x.view()
        x.flags.writeable = False
    return x


def _codes(codes: Any, name: str) -> LabelCodes:
    table = np.asarray(codes.table)
    if table.dtype != np.int32 or table.ndim != 1:
        raise TypeError(f"Classes.{name}.table must be a 1-D int32 array")
    return LabelCodes(kernel_input(table, f"Classes.{name}.table"), int(codes.default))


def _output(x: Any, dtype: type, ndim: int, name: str) -> np.ndarray:
    if not (isinstance(x, np.ndarray) and x.dtype == dtype and x.ndim == ndim
            and x.flags.c_contiguous and x.flags.aligned and x.flags.writeable):  # fmt: skip
        raise TypeError(
            f"{name} must be a writable C-contiguous {np.dtype(dtype).name} array of "
            f"{ndim} dimensions"
        )
    return x


def _arguments(pred: Any, true: Any, classes: Any, outputs: Any, stats: Any, n_threads: Any,
               soft: bool) -> tuple[Any, ...]:  # fmt: skip
    """The kernel arguments in the one form each is compiled for, or a TypeError."""
    pred = kernel_input(pred, "pred")
    true = kernel_input(true, "true")
    if ((pred.ndim, pred.dtype.name), (true.ndim, true.dtype.name)) not in _ACCEPTS[soft]:
        what = "soft_sums" if soft else "hard counts"
        raise TypeError(
            f"{what} are not compiled for pred {pred.dtype.name} of {pred.ndim} dimensions "
            f"with true {true.dtype.name} of {true.ndim} dimensions (see "
            "fastseg.kernels.SIGNATURES); fastseg.inputs.prepare maps inputs onto them"
        )
    classes = Classes(int(classes.num_classes), bool(classes.has_ignore), int(classes.ignore),
                      _codes(classes.codes, "codes"), _codes(classes.pred_codes, "pred_codes"))
    kind: Any = SoftSums if soft else HardCounts
    dtype = np.float64 if soft else np.int64
    outputs = kind(*(_output(a, dtype, 2, f"{kind.__name__}.{field}")
                     for a, field in zip(outputs, kind._fields, strict=True)))  # fmt: skip
    shapes = [(pred.shape[0], classes.num_classes)] * 3 + [(classes.num_classes,) * 2]
    for a, field, shape in zip(outputs, kind._fields, shapes, strict=False):
        if a.shape != shape:
            raise ValueError(f"{kind.__name__}.{field} must have shape {shape}; got {a.shape}")
    stats = _output(stats, np.int64, 1, "stats")
    if stats.shape != (N_STATS,):
        raise ValueError(f"stats must have shape ({N_STATS},); got {stats.shape}")
    return pred, true, classes, outputs, stats, int(n_threads)


# --------------------------------------------------------------------------------------
# Scalar helpers, specialised on the argument types by @overload.
# --------------------------------------------------------------------------------------


def _specialised(select: Callable[..., Callable]) -> Callable:
    """Make `select` the Numba overload of a new function, and return that function.

    While compiling a caller, Numba calls ``select(*argument_types)`` and compiles the
    implementation it returns (with :data:`HELPER`). The returned function does the same
    in pure Python, for ``NUMBA_DISABLE_JIT=1`` (to step through a kernel in pdb): it
    picks the implementation by ``numba.typeof`` of its arguments and calls it.
    """

    def python_impl(*args: Any) -> Any:
        return select(*(typeof(a) for a in args))(*args)

    python_impl.__name__ = python_impl.__qualname__ = select.__name__
    python_impl.__doc__ = select.__doc__
    overload(python_impl, jit_options=HELPER)(select)
    return python_impl


#: Bit pattern of +inf by width: a larger magnitude is a NaN.
_INF_BITS = {16: 0x7C00, 32: 0x7F800000, 64: 0x7FF0000000000000}


@_specialised
def _sm_key(b):
    # The bits of a float (sign and magnitude) -> a signed integer with the same order:
    # +m for positive, -m for negative, so -0 == +0 as np.argmax sees them. Branch-free,
    # so it vectorises on lanes of the float's width. NaN keys are meaningless: decoders
    # flag NaN pixels and skip them.
    width = b.bitwidth
    signed = getattr(np, f"int{width}")
    magnitude = (1 << (width - 1)) - 1

    def impl(b):
        s = np.int64((b >> (width - 1)) & 1)
        return signed(((b & magnitude) ^ -s) + s)

    return impl


@_specialised
def _sm_isnan(b):
    width = b.bitwidth
    magnitude = (1 << (width - 1)) - 1
    # Integer scores are typed through the two-pass branch but never run it.
    inf = _INF_BITS.get(width, magnitude)
    return lambda b: (b & magnitude) > inf


@_specialised
def _key(v):
    if v == types.uint16:
        # float16 bits -> int32 ordered as by _sm_key, every NaN above +inf. In the
        # per-pixel loop of channels-last scores this form measured 2x faster than
        # _sm_key (volume channels-last: 148 vs 295 ms).
        def half_key(v):
            m = np.int32(v & 0x7FFF)
            if m > 0x7C00:
                return np.int32(0x7FFF)
            return -m if v & 0x8000 else m

        return half_key
    return lambda v: v


def _half_to_float32(typingctx: Any, bits: Any) -> Any:
    # float16 bits -> float32: one fpext, which LLVM vectorises (vcvtph2ps on x86).
    if bits != types.uint16:
        return None

    def codegen(context: Any, builder: ir.IRBuilder, signature: Any, args: Any) -> Any:
        return builder.fpext(builder.bitcast(args[0], ir.HalfType()), ir.FloatType())

    return types.float32(types.uint16), codegen


_half_to_float: Any = intrinsic(_half_to_float32)


def _half_value(v):
    """float16 bits as a float32.

    Compiled: :func:`_half_to_float32`; this body is the form of ``NUMBA_DISABLE_JIT=1``.
    """
    return np.float32(np.uint16(v).view(np.float16))


@overload(_half_value, jit_options=HELPER)
def _half_value_of(v):
    return lambda v: _half_to_float(v)


@_specialised
def _lane_key(v):
    # For the vectorised channels-first loop: float16 bits as float32 values, converted
    # in the register (the order of np.argmax: -0 == +0; NaN is flagged apart). Cycles per
    # pixel, one thread, the 14-class float16 volume (pred_labels): int32 keys from the
    # bits 16.9 -> float32 values (see the README). int16 keys vectorised far worse than
    # int32: 19 classes 89 -> 22, 150 classes 553 -> 182 (2026-12-01).
    if v == types.uint16:
        return lambda v: _half_value(v)
    return lambda v: v


@_specialised
def _isnan(v):
    if v == types.uint16:
        return lambda v: _sm_isnan(v)
    if isinstance(v, types.Float):
        return lambda v: v != v
    return lambda v: False


@_specialised
def _float_bits(r):
    if isinstance(r.dtype, types.Float):
        bits = {32: np.int32, 64: np.int64}[r.dtype.bitwidth]
        return lambda r: r.view(bits)
    return lambda r: r


@_specialised
def _two_pass_from(x):
    # Number of classes from which a channels-last pixel's argmax is taken in two
    # vectorised passes (:func:`_argmax_two_pass`). Measured on random float32 softmax,
    # one thread, cycles per pixel, one pass -> two passes: 14: 28 -> 47 and 21: 33 -> 40
    # (worse: short vector remainders), 32: 46 -> 30, 100: 303 -> 156. Float16: volume
    # (14 classes) 148 -> 204 ms, ade16 (150) 80 -> 19 ms. Integer scores: one pass.
    if x.dtype == types.uint16 or isinstance(x.dtype, types.Float):
        return lambda x: 32
    return lambda x: x.shape[2] + 1


@_specialised
def _key_buffer(x, size):
    if x.ndim == 3 and (x.dtype == types.uint16 or x.dtype == types.float32):
        # Channels-last: each pixel's maximum, the confidence (:func:`_note_top`).
        return lambda x, size: np.empty(size, np.float32)
    if x.ndim == 4 and x.dtype == types.uint16:
        return lambda x, size: np.empty(size, np.float32)
    if x.dtype == types.uint16:
        return lambda x, size: np.empty(size, np.int32)
    if x.ndim == 4:
        return lambda x, size: np.empty(size, x.dtype)
    # Labels and channels-last scores need no key buffer.
    return lambda x, size: np.empty(0, np.int32)


@_specialised
def _n_pixels(x):
    if x.ndim == 4:
        return lambda x: x.shape[1] * x.shape[3]
    return lambda x: x.shape[1]


# --------------------------------------------------------------------------------------
# Decoders: one span of pixels [start, stop) of an image -> class labels in scratch.labels.
# Each takes (x, span, classes, scratch, found, mask) and unpacks them first.
# --------------------------------------------------------------------------------------


def _decode_labels(x, span, classes, scratch, found, mask):
    b, start, stop = span
    num_classes = classes.num_classes
    has_ignore = classes.has_ignore
    ignore = classes.ignore
    table, default = classes.codes
    mapped = table.size > 0
    size = table.size
    out = scratch.labels
    stats, slot = found
    keep, masked = mask
    # Slices keep every index a non-negative loop variable: Numba then emits no
    # negative-index wraparound, which would stop LLVM vectorising (measured: 3-4x).
    # Everything per pixel is written inline: a helper called per pixel with array
    # arguments costs reference-count updates per call (measured: 5x slower).
    lab = x[b, start:stop]
    for j in range(stop - start):
        stored = lab[j]
        v = np.int64(stored)
        if mapped:
            v = np.int64(table[v]) if v >= 0 and v < size else np.int64(default)
        if masked and keep[j] < 0:
            out[j] = SKIP
        elif has_ignore and v == ignore:
            out[j] = SKIP
            stats[IGNORED] += 1
        elif v < 0 or v >= num_classes:
            out[j] = SKIP
            stats[slot] += 1
            stats[slot + 1] = stored
        else:
            out[j] = v


@njit(**HELPER)
def _pred_classes(classes):
    """How the prediction's labels are read: no ignore index, its own label-id map."""
    return Classes(classes.num_classes, False, 0, classes.pred_codes, classes.pred_codes)


@njit(**HELPER)
def _finish_scores(scratch, any_nan, one_class, classes, found, mask):
    """Turn argmax results into label codes, counting NaN and ignored pixels.

    `scratch` holds the span's labels (exactly ``n_span`` of them), keys and NaN flags.
    Each step is its own loop, run only when needed, so the common case (several
    classes, no NaN, no ignore index) adds no pass over the block and no branches to the
    argmax loops.
    """
    out, keys, nans = scratch
    num_classes = classes.num_classes
    has_ignore = classes.has_ignore
    ignore = classes.ignore
    stats, slot = found
    keep, masked = mask
    n_span = out.shape[0]
    if one_class:
        # The post's one-class rule: the pixel is the class when its score is > 0.
        for j in range(n_span):
            out[j] = 0 if keys[j] > 0 else 1
    if any_nan:
        for j in range(n_span):
            if nans[j]:
                if not masked or keep[j] >= 0:
                    stats[slot + 2] += 1
                out[j] = SKIP
    if has_ignore:
        for j in range(n_span):
            lab = out[j]
            if 0 <= lab < num_classes and lab == ignore:
                stats[IGNORED] += 1
                out[j] = SKIP


@njit(**HELPER)
def _argmax_two_pass(bits):
    """(label, nan) of one pixel's scores given as float bits (see :func:`_float_bits`).

    The largest key, then the first class holding it: two reductions that LLVM
    vectorises, where a running argmax is a chain of dependent compares.
    """
    channels = bits.shape[0]
    best = _sm_key(bits[0])
    nan = False
    for c in range(channels):
        b = bits[c]
        best = max(best, _sm_key(b))
        nan |= _sm_isnan(b)
    lab = np.int32(channels)
    for c in range(channels):
        lab = min(lab, np.int32(c) if _sm_key(bits[c]) == best else np.int32(channels))
    return lab, nan


# --------------------------------------------------------------------------------------
# Channels-last rows in vector registers
#
# The argmax of one pixel's scores in SIMD registers: channels-last float32 / float16 rows.
#
# A channels-last pixel's scores are a short contiguous row. A running argmax over it is a
# chain of dependent compares (about 30 cycles per pixel for 21 classes); LLVM does not
# vectorise that reduction, nor a max-then-first-index pair of loops written in Numba. So
# :func:`row_argmax` is written as LLVM IR (a Numba intrinsic) over 8-lane vectors:
#
# 1. the row is read in chunks of 8 scores: at 0, 8, ... and, for a row whose length is not a
#    multiple of 8, its last 8 scores (the chunk overlaps the one before it, which changes
#    neither the maximum nor the first index holding it); float16 is widened to float32 in
#    the register (exactly), so both dtypes share the rest;
# 2. the maximum of the chunks, lane by lane, then across the lanes (a shuffle tree);
# 3. per chunk, the lanes equal to it as a bit mask, shifted to the chunk's offset and
#    combined into one mask of the row; the first index is its lowest set bit (``cttz``);
# 4. NaN: any unordered lane. Decoders flag such pixels and skip them, so the label of a
#    pixel with a NaN score is not defined here.
#
# A row shorter than 8 is read as one chunk past its end, the lanes beyond it set to -inf:
# the caller keeps the reads inside the array (:func:`safe_rows`).
#
# Ties keep the first index, -0.0 equals +0.0, and a row of -inf is labelled 0: the rules of
# ``np.argmax`` and of the kernels' scalar loops.
#
# It lives in this file for the cache: Numba keys a cached kernel by its source file,
# and an intrinsic edited in another module would leave the old machine code in use.
# --------------------------------------------------------------------------------------

#: Scores per vector register (AVX2: 8 float32).
VECTOR_LANES = 8
#: Chunks a row may span: the first index is found in one 64-bit mask of the row.
VECTOR_CHUNKS = 64 // VECTOR_LANES

_IR_I32 = ir.IntType(32)
_IR_I64 = ir.IntType(64)
_IR_F32 = ir.FloatType()
_IR_VF = ir.VectorType(_IR_F32, VECTOR_LANES)
_IR_VI32 = ir.VectorType(_IR_I32, VECTOR_LANES)
_IR_MASK = ir.IntType(VECTOR_LANES)


def _splat(builder: ir.IRBuilder, value: Any, vector: ir.VectorType) -> Any:
    one = builder.insert_element(ir.Constant(vector, None), value, ir.Constant(_IR_I32, 0))
    lanes = vector.count
    return builder.shuffle_vector(one, one, ir.Constant(ir.VectorType(_IR_I32, lanes), [0] * lanes))


def _rotation(width: int, lanes: int = VECTOR_LANES) -> ir.Constant:
    """The shuffle that rotates a vector's lanes by `width` (a step of a reduction tree)."""
    return ir.Constant(ir.VectorType(_IR_I32, lanes), [(i + width) % lanes for i in range(lanes)])


def _max(builder: ir.IRBuilder, a: Any, b: Any) -> Any:
    # a > b ? a : b, the form LLVM lowers to one vmaxps.
    return builder.select(builder.fcmp_ordered(">", a, b), a, b)


def _row_argmax(typingctx: Any, block: Any, j: Any, chunks: Any) -> Any:
    """``(label, nan, top)`` of row `j` of a C-contiguous 2-D float32 / float16-bits block.

    `label` (int32) is the first index of the row's maximum, `nan` whether the row holds a
    NaN, `top` (float32) the maximum. `chunks` (a compile-time constant, 1 to
    :data:`VECTOR_CHUNKS`) is the number of 8-score chunks a row spans, ``ceil(N / 8)``: the
    code is unrolled over them. Rows of fewer than
    :data:`VECTOR_LANES` scores are read past their end (see :func:`safe_rows`).
    """
    if not (isinstance(block, types.Array) and block.ndim == 2 and block.layout == "C"
            and block.dtype in (types.float32, types.uint16)
            and isinstance(chunks, types.IntegerLiteral)
            and 1 <= chunks.literal_value <= VECTOR_CHUNKS):  # fmt: skip
        return None
    half = block.dtype == types.uint16
    itemsize = 2 if half else 4
    raw = ir.VectorType(ir.IntType(16), VECTOR_LANES) if half else _IR_VF
    n_chunks = chunks.literal_value
    sig = types.Tuple((types.int32, types.boolean, types.float32))(block, types.intp, chunks)

    def codegen(context: Any, builder: ir.IRBuilder, signature: Any, args: Any) -> Any:
        array = context.make_array(signature.args[0])(context, builder, args[0])
        n = builder.extract_value(array.shape, 1)
        row = builder.gep(
            builder.bitcast(array.data, ir.IntType(8).as_pointer()),
            [builder.mul(args[1], builder.extract_value(array.strides, 0))],
        )
        # Chunk k starts at min(8k, n - 8): the last one ends at the row's end.
        last = builder.sub(n, ir.Constant(_IR_I64, VECTOR_LANES))
        offsets = [ir.Constant(_IR_I64, 0)]
        for k in range(1, n_chunks):
            at = ir.Constant(_IR_I64, VECTOR_LANES * k)
            offsets.append(builder.select(builder.icmp_signed("<", at, last), at, last))
        values = []
        for offset in offsets:
            p = builder.gep(row, [builder.mul(offset, ir.Constant(_IR_I64, itemsize))])
            v = builder.load(builder.bitcast(p, raw.as_pointer()), align=itemsize)
            if half:
                halves = builder.bitcast(v, ir.VectorType(ir.HalfType(), VECTOR_LANES))
                v = builder.fpext(halves, _IR_VF)
            values.append(v)
        nan = builder.fcmp_unordered("uno", values[0], values[0])
        if n_chunks == 1:
            # A short row: the lanes past its end are -inf and not NaN.
            valid = builder.icmp_signed(
                "<", ir.Constant(_IR_VI32, list(range(VECTOR_LANES))),
                _splat(builder, builder.trunc(n, _IR_I32), _IR_VI32))  # fmt: skip
            nan = builder.and_(nan, valid)
            minus_inf = ir.Constant(_IR_VF, [float("-inf")] * VECTOR_LANES)
            values[0] = builder.select(valid, values[0], minus_inf)
        for v in values[1:]:
            nan = builder.or_(nan, builder.fcmp_unordered("uno", v, v))
        m = values[0]
        for v in values[1:]:
            m = _max(builder, v, m)
        for width in (4, 2, 1):
            m = _max(builder, builder.shuffle_vector(m, m, _rotation(width)), m)
        top = builder.extract_element(m, ir.Constant(_IR_I32, 0))
        best = _splat(builder, top, _IR_VF)
        cttz = builder.module.declare_intrinsic(
            "llvm.cttz", [_IR_I64], ir.FunctionType(_IR_I64, [_IR_I64, ir.IntType(1)]))
        equal = [builder.bitcast(builder.fcmp_ordered("==", v, best), _IR_MASK) for v in values]
        hits = [builder.zext(e, _IR_I64) for e in equal]
        # One 64-bit mask of the row (overlapping chunks set a bit twice): its lowest bit.
        mask = hits[0]
        for offset, h in zip(offsets[1:], hits[1:], strict=True):
            mask = builder.or_(mask, builder.shl(h, offset))
        label = builder.call(cttz, [mask, ir.Constant(ir.IntType(1), 0)])
        any_nan = builder.icmp_unsigned(
            "!=", builder.bitcast(nan, _IR_MASK), ir.Constant(_IR_MASK, 0))
        return context.make_tuple(
            builder, signature.return_type, [builder.trunc(label, _IR_I32), any_nan, top])

    return sig, codegen


#: The intrinsic, called from compiled code as ``row_argmax(block, j, chunks)``.
row_argmax: Any = intrinsic(prefer_literal=True)(_row_argmax)


#: Accumulators of :func:`long_row_argmax`: independent chains of compares.
LONG_ROW_ACCUMULATORS = 2
#: Scores per vector of :func:`long_row_argmax` (two AVX2 registers, one AVX-512).
LONG_ROW_LANES = 16


def _long_row_scan(typingctx: Any, block: Any, j: Any) -> Any:
    """``(label, maybe_nan, top)`` of row `j`, for rows of more than 32 scores.

    One pass over the row's chunks of :data:`LONG_ROW_LANES` scores, kept lane by lane in
    :data:`LONG_ROW_ACCUMULATORS` accumulators over interleaved chunks (each a chain of
    dependent compares): the largest score each lane has seen and the offset of the group
    of chunks it came from (a later chunk replaces them only where it is larger, so a lane
    keeps its first index). The last chunk ends at the row's end. Then the largest lane, and
    the lowest index among the lanes holding it.

    Beside each accumulator a plain sum of its chunks: one add, where a NaN test is a
    compare and an or. A NaN score makes its lane's sum NaN, so does ``inf - inf`` (or an
    overflow to inf beside one): `maybe_nan` holds for every row with a NaN and for few
    others, which :func:`long_row_argmax` checks exactly. In a row with a NaN, `label` and
    `top` are not defined (the decoders skip such pixels).

    Vectors of :data:`LONG_ROW_LANES` scores: on AVX-512 one register, elsewhere two.
    One thread, ADE20K-like rows of 150 scores in cache, ns per row: float16 24.6 -> 18.7,
    float32 18.8 -> 18.0 against 8 lanes, two accumulators and an exact NaN test per chunk
    (four accumulators of 8 lanes: 23.2 and 18.2).
    """
    if not (isinstance(block, types.Array) and block.ndim == 2 and block.layout == "C"
            and block.dtype in (types.float32, types.uint16)):  # fmt: skip
        return None
    half = block.dtype == types.uint16
    itemsize = 2 if half else 4
    lanes = LONG_ROW_LANES
    vf = ir.VectorType(_IR_F32, lanes)
    vi32 = ir.VectorType(_IR_I32, lanes)
    mask_type = ir.IntType(lanes)
    raw = ir.VectorType(ir.IntType(16), lanes) if half else vf
    sig = types.Tuple((types.int32, types.boolean, types.float32))(block, types.intp)
    n_acc = LONG_ROW_ACCUMULATORS

    def codegen(context: Any, builder: ir.IRBuilder, signature: Any, args: Any) -> Any:
        array = context.make_array(signature.args[0])(context, builder, args[0])
        n = builder.extract_value(array.shape, 1)
        row = builder.gep(
            builder.bitcast(array.data, ir.IntType(8).as_pointer()),
            [builder.mul(args[1], builder.extract_value(array.strides, 0))],
        )

        def i64(value: int) -> ir.Constant:
            return ir.Constant(_IR_I64, value)

        def splat32(value: Any) -> Any:
            return _splat(builder, builder.trunc(value, _IR_I32), vi32)

        def load(offset: Any) -> Any:
            p = builder.gep(row, [builder.mul(offset, i64(itemsize))])
            v = builder.load(builder.bitcast(p, raw.as_pointer()), align=itemsize)
            if half:
                halves = builder.bitcast(v, ir.VectorType(ir.HalfType(), lanes))
                v = builder.fpext(halves, vf)
            return v

        # The first n_acc chunks start the accumulators (the row has more); accumulator a
        # holds chunk offsets less lanes * a, so one offset vector serves a group of chunks.
        firsts = [load(i64(lanes * a)) for a in range(n_acc)]
        tops = [cgutils.alloca_once_value(builder, v) for v in firsts]
        sums = [cgutils.alloca_once_value(builder, v) for v in firsts]
        zero = ir.Constant(vi32, [0] * lanes)
        where = [cgutils.alloca_once_value(builder, zero) for _ in range(n_acc)]

        def add(a: int, offset: Any, base: Any) -> None:
            v = load(offset)
            top = builder.load(tops[a])
            larger = builder.fcmp_ordered(">", v, top)
            builder.store(builder.select(larger, v, top), tops[a])
            builder.store(builder.select(larger, base, builder.load(where[a])), where[a])
            builder.store(builder.fadd(builder.load(sums[a]), v), sums[a])

        group = i64(lanes * n_acc)
        groups = builder.udiv(n, group)
        with cgutils.for_range(builder, builder.sub(groups, i64(1))) as loop:
            at = builder.mul(builder.add(loop.index, i64(1)), group)
            base = splat32(at)
            for a in range(n_acc):
                add(a, builder.add(at, i64(lanes * a)), base)
        done = builder.mul(groups, group)
        for a in range(n_acc - 1):  # the whole chunks after the last group
            at = builder.add(done, i64(lanes * a))
            with builder.if_then(builder.icmp_signed("<=", builder.add(at, i64(lanes)), n)):
                add(a, at, splat32(done))
        with builder.if_then(builder.icmp_signed("!=", builder.urem(n, i64(lanes)), i64(0))):
            last = builder.sub(n, i64(lanes))
            # Offset `last` in accumulator n_acc - 1: stored less lanes * (n_acc - 1).
            add(n_acc - 1, last, splat32(builder.sub(last, i64(lanes * (n_acc - 1)))))
        iota = ir.Constant(vi32, list(range(lanes)))
        m = builder.load(tops[0])
        index = builder.add(builder.load(where[0]), iota)
        total = builder.load(sums[0])
        for a in range(1, n_acc):
            b = builder.load(tops[a])
            ib = builder.add(builder.load(where[a]), builder.add(iota, splat32(i64(lanes * a))))
            # Lane by lane, the larger of the two; on a tie, the lower index.
            take = builder.or_(builder.fcmp_ordered(">", b, m), builder.and_(
                builder.fcmp_ordered("==", b, m), builder.icmp_signed("<", ib, index)))  # fmt: skip
            m = builder.select(take, b, m)
            index = builder.select(take, ib, index)
            total = builder.fadd(total, builder.load(sums[a]))
        top = m
        widths = [lanes >> k for k in range(1, lanes.bit_length())]
        for width in widths:
            top = _max(builder, builder.shuffle_vector(top, top, _rotation(width, lanes)), top)
        best = builder.extract_element(top, ir.Constant(_IR_I32, 0))
        none = ir.Constant(vi32, [2**31 - 1] * lanes)
        label = builder.select(builder.fcmp_ordered("==", m, _splat(builder, best, vf)),
                               index, none)  # fmt: skip
        for width in widths:
            other = builder.shuffle_vector(label, label, _rotation(width, lanes))
            label = builder.select(builder.icmp_signed("<", other, label), other, label)
        maybe_nan = builder.icmp_unsigned(
            "!=", builder.bitcast(builder.fcmp_unordered("uno", total, total), mask_type),
            ir.Constant(mask_type, 0))  # fmt: skip
        return context.make_tuple(
            builder, signature.return_type,
            [builder.extract_element(label, ir.Constant(_IR_I32, 0)), maybe_nan, best])  # fmt: skip

    return sig, codegen


_long_row_scan_intrinsic: Any = intrinsic(_long_row_scan)


def _prefetch_line(typingctx: Any, block: Any, byte: Any) -> Any:
    """Ask for the cache line at byte offset `byte` of a C-contiguous array's data.

    A hint: it does not fault, even past the array's end.
    """
    if not (isinstance(block, types.Array) and block.layout == "C"):
        return None
    sig = types.none(block, types.intp)

    def codegen(context: Any, builder: ir.IRBuilder, signature: Any, args: Any) -> Any:
        array = context.make_array(signature.args[0])(context, builder, args[0])
        at = builder.gep(builder.bitcast(array.data, ir.IntType(8).as_pointer()), [args[1]])
        prefetch = builder.module.declare_intrinsic(
            "llvm.prefetch", [at.type],
            ir.FunctionType(ir.VoidType(), [at.type, _IR_I32, _IR_I32, _IR_I32]))  # fmt: skip
        # read, keep in all levels, data cache
        builder.call(prefetch, [at, ir.Constant(_IR_I32, 0), ir.Constant(_IR_I32, 3),
                                ir.Constant(_IR_I32, 1)])  # fmt: skip
        return context.get_dummy_value()

    return sig, codegen


prefetch_line: Any = intrinsic(_prefetch_line)

#: How far ahead of the row being decoded channels-last rows are asked for, in bytes.
PREFETCH_AHEAD = 8192


@njit(**HELPER)
def _prefetch_row(block, j, row_bytes):
    """Ask for the lines of the row :data:`PREFETCH_AHEAD` bytes past row `j` of `block`.

    One address every 64 bytes from each row's start: over consecutive rows, every line.
    The hardware's prefetchers alone left the vector argmax waiting on memory: channels-
    last, both cores, Cityscapes 20.2 -> 14.0 ms, ADE20K float32 28.1 -> 19.8 ms.
    """
    ahead = j * row_bytes + PREFETCH_AHEAD
    for line in range(ahead, ahead + row_bytes, 64):
        prefetch_line(block, line)


def long_row_argmax(block, j):
    """``(label, nan, top)`` of a long row, as :func:`row_argmax` (:func:`_long_row_scan`).

    Row `j` of a C-contiguous 2-D float32 / float16-bits block, of more than 32 scores.
    Compiled, the overload below; this body is NumPy's form, for ``NUMBA_DISABLE_JIT=1``.
    """
    row = block[j].view(np.float16) if block.dtype == np.uint16 else block[j]
    nan = bool(np.isnan(row).any())
    return np.int32(np.argmax(row)), nan, np.float32(row.max())


@overload(long_row_argmax, jit_options=HELPER)
def _long_row_argmax_of(block, j):
    def impl(block, j):
        label, nan, top = _long_row_scan_intrinsic(block, j)
        if nan:  # the first pass's sums say "maybe": look
            nan = False
            for c in range(block.shape[1]):
                nan |= _isnan(block[j, c])
        return label, nan, top

    return impl


def _numpy_rows(block, out, nans, tops, n_rows):
    """NumPy's form of the vector rows, for ``NUMBA_DISABLE_JIT=1``: (rows, any NaN)."""
    rows = block[:n_rows].view(np.float16) if block.dtype == np.uint16 else block[:n_rows]
    nan = np.isnan(rows).any(axis=1)
    out[:n_rows] = np.argmax(rows, axis=1)
    nans[:n_rows] = nan
    tops[:n_rows] = rows.max(axis=1, initial=-np.inf)
    return n_rows, bool(nan.any())


def _long_rows(block, out, nans, tops):
    """:func:`long_row_argmax` of every row of `block`; returns whether one held a NaN.

    Compiled, the overload below; this body is NumPy's form, for ``NUMBA_DISABLE_JIT=1``.
    """
    return _numpy_rows(block, out, nans, tops, block.shape[0])[1]


@overload(_long_rows, jit_options=HELPER)
def _long_rows_of(block, out, nans, tops):
    def impl(block, out, nans, tops):
        any_nan = False
        row_bytes = block.strides[0]
        for j in range(block.shape[0]):
            _prefetch_row(block, j, row_bytes)
            lab, nan, top = long_row_argmax(block, j)
            out[j] = lab
            nans[j] = nan
            tops[j] = top
            any_nan |= nan
        return any_nan

    return impl


@njit(**HELPER)
def safe_rows(n_rows: int, channels: int) -> int:
    """Rows of a block whose :func:`row_argmax` reads stay inside the block.

    A row shorter than a chunk is read on into the rows after it.
    """
    if channels >= VECTOR_LANES:
        return n_rows
    return max(n_rows - (VECTOR_LANES + channels - 1) // channels + 1, 0)


#: Classes up to which channels-last float32 / float16 rows are decoded in vector
#: registers (:func:`_decode_vector_rows`): four chunks of :data:`LANES` scores.
VECTOR_CLASSES = 4 * VECTOR_LANES


def _vector_rows(block, out, nans, tops, chunks):
    """Labels, NaN flags and maxima of a block's rows, `chunks` vector chunks per row.

    Of the rows :func:`row_argmax` may read (:func:`safe_rows`); returns (rows, any NaN).

    Compiled, the overload below; this body is NumPy's form, for ``NUMBA_DISABLE_JIT=1``.
    """
    return _numpy_rows(block, out, nans, tops, safe_rows(block.shape[0], block.shape[1]))


@overload(_vector_rows, prefer_literal=True, jit_options=HELPER)
def _vector_rows_of(block, out, nans, tops, chunks):
    if not isinstance(chunks, types.IntegerLiteral):
        return None
    k = chunks.literal_value

    def impl(block, out, nans, tops, chunks):
        n_rows = safe_rows(block.shape[0], block.shape[1])
        any_nan = False
        row_bytes = block.strides[0]
        for j in range(n_rows):
            # One line per row (at most two lines long): measured faster than every line.
            prefetch_line(block, j * row_bytes + PREFETCH_AHEAD)
            lab, nan, top = row_argmax(block, j, k)
            out[j] = lab
            nans[j] = nan
            tops[j] = top
            any_nan |= nan
        return n_rows, any_nan

    return impl


@_specialised
def _decode_vector_rows(x, span, classes, scratch, found, mask):
    """The fast path of :func:`_decode_last`; False when it does not apply.

    It applies to float32 / float16 scores of 2 classes or more: up to
    :data:`VECTOR_CLASSES`, :func:`row_argmax`; beyond, :func:`long_row_argmax`.

    Each row's argmax in vector registers (:func:`row_argmax`); its maximum,
    the confidence, goes into the keys buffer. One thread, cycles per pixel on blocks in
    cache (random float32 scores), per-pixel loop -> vector: N=5 22 -> 10, N=14 29 -> 9,
    N=21 51 -> 12, N=31 65 -> 19. It reads the scores of every pixel, ignored truth or
    not (the results are the same).
    """
    if x.dtype not in (types.float32, types.uint16):
        return lambda x, span, classes, scratch, found, mask: False

    def impl(x, span, classes, scratch, found, mask):
        b, start, stop = span
        out, tops, nans = scratch
        keep, masked = mask
        channels = x.shape[2]
        if channels == 1:
            return False
        block = x[b, start:stop]
        chunks = (channels + VECTOR_LANES - 1) // VECTOR_LANES
        if channels > VECTOR_CLASSES:
            n_rows = stop - start
            any_nan = _long_rows(block, out, nans, tops)
        elif chunks == 1:
            n_rows, any_nan = _vector_rows(block, out, nans, tops, 1)
        elif chunks == 2:
            n_rows, any_nan = _vector_rows(block, out, nans, tops, 2)
        elif chunks == 3:
            n_rows, any_nan = _vector_rows(block, out, nans, tops, 3)
        else:
            n_rows, any_nan = _vector_rows(block, out, nans, tops, 4)
        n_span = stop - start
        for j in range(n_rows, n_span):  # the last rows of a block of short rows
            r = block[j]
            best = _key(r[0])
            lab = 0
            nan = _isnan(r[0])
            for c in range(1, channels):
                k = _key(r[c])
                if k > best:
                    best = k
                    lab = c
                nan |= _isnan(r[c])
            out[j] = lab
            nans[j] = nan
            tops[j] = _score_value(r[lab])
            any_nan |= nan
        if masked:
            for j in range(n_span):
                if keep[j] < 0:
                    out[j] = SKIP
        _finish_scores(Scratch(out[:n_span], tops, nans), any_nan, False, classes, found, mask)
        return True

    return impl


@_specialised
def _note_top(tops, j, row, lab):
    """Keep pixel j's maximum (its confidence) in a channels-last decoder's keys buffer.

    Float32 / float16 decoders keep it whichever path decoded the pixel.
    """
    if tops.dtype == types.float32:

        def keep(tops, j, row, lab):
            tops[j] = _score_value(row[min(lab, row.shape[0] - 1)])

        return keep
    return lambda tops, j, row, lab: None


def _decode_last(x, span, classes, scratch, found, mask):
    if _decode_vector_rows(x, span, classes, scratch, found, mask):
        return
    b, start, stop = span
    out, keys, nans = scratch
    keep, masked = mask
    channels = x.shape[2]
    two_pass = channels >= _two_pass_from(x)
    n_span = stop - start
    block = x[b, start:stop]
    any_nan = False
    for j in range(n_span):
        nan = False
        if masked and keep[j] < 0:
            lab = SKIP  # the truth is ignored here: the prediction is not read
        elif two_pass:
            lab, nan = _argmax_two_pass(_float_bits(block[j]))
        else:
            r = block[j]
            best = _key(r[0])
            lab = 0
            nan = _isnan(r[0])
            for c in range(1, channels):
                v = r[c]
                k = _key(v)
                if k > best:
                    best = k
                    lab = c
                # Branch-free NaN flag: a compare-branch here instead measured 4x slower.
                nan |= _isnan(v)
            if channels == 1:
                # The post's one-class rule: the pixel is the class when its score is > 0.
                lab = 0 if best > 0 else 1
        if lab >= 0:
            _note_top(keys, j, block[j], lab)
        out[j] = lab
        nans[j] = nan
        any_nan |= nan
    _finish_scores(Scratch(out[:n_span], keys, nans), any_nan, False, classes, found, mask)


#: Classes folded into the running argmax per pass over a run of channels-first pixels
#: (the rows :func:`_argmax_group` takes).
GROUP = 4


@njit(**HELPER)
def _first_max(ka, la, kb, lb):
    """The larger of two (key, label) pairs; the first one on a tie."""
    gt = kb > ka
    return (kb if gt else ka), (lb if gt else la)


@njit(**HELPER)
def _argmax_group(r0, r1, r2, r3, c, keys, labels, first):
    """Fold rows of classes c..c+3 into a running argmax over a run of pixels.

    The four rows are reduced in registers (a tree that keeps the lower class on ties)
    before the running key and label are loaded and stored once, instead of once per
    class: measured 2.2-2.5x faster than one class per pass (one thread, cycles per
    pixel: voc 20.6 -> 9.0, ade 166 -> 67, ade16 100 -> 43). On the first group the
    buffers hold garbage and are overwritten.
    """
    any_nan = False
    c1 = c + np.int32(1)
    c2 = c + np.int32(2)
    c3 = c + np.int32(3)
    for s in range(keys.shape[0]):
        v0 = r0[s]
        v1 = r1[s]
        v2 = r2[s]
        v3 = r3[s]
        any_nan |= _isnan(v0) | _isnan(v1) | _isnan(v2) | _isnan(v3)
        ka, la = _first_max(_lane_key(v0), c, _lane_key(v1), c1)
        kb, lb = _first_max(_lane_key(v2), c2, _lane_key(v3), c3)
        k, lab = _first_max(ka, la, kb, lb)
        gt = first or k > keys[s]
        keys[s] = k if gt else keys[s]
        labels[s] = lab if gt else labels[s]
    return any_nan


@njit(**HELPER)
def _mark_nans(row, nans):
    for s in range(row.shape[0]):
        nans[s] |= _isnan(row[s])


def _decode_strided(x, span, classes, scratch, found, mask):
    b, start, stop = span
    out, keys, nans = scratch
    channels = x.shape[2]
    inner = x.shape[3]
    last = channels - 1
    n_span = stop - start
    block_nan = False
    p = start
    j0 = 0
    while p < stop:
        o = p // inner
        i0 = p - o * inner
        seg = min(inner - i0, stop - p)
        i1 = i0 + seg
        k_seg = keys[j0 : j0 + seg]
        l_seg = out[j0 : j0 + seg]
        # Class-outer loop over a contiguous run of pixels, GROUP classes per pass:
        # branch-free and vectorised. A short last group repeats the last class, which
        # changes nothing (an equal key keeps the first label).
        any_nan = False
        for c in range(0, channels, GROUP):
            any_nan |= _argmax_group(
                x[b, o, c, i0:i1], x[b, o, min(c + 1, last), i0:i1],
                x[b, o, min(c + 2, last), i0:i1], x[b, o, min(c + 3, last), i0:i1],
                np.int32(c), k_seg, l_seg, c == 0)  # fmt: skip
        # NaN is rare: one flag per run, and only then a second look per pixel.
        if any_nan:
            if not block_nan:
                nans[:n_span] = False
                block_nan = True
            for c in range(channels):
                _mark_nans(x[b, o, c, i0:i1], nans[j0 : j0 + seg])
        p += seg
        j0 += seg
    _finish_scores(Scratch(out[:n_span], keys, nans), block_nan, channels == 1, classes, found,
                   mask)  # fmt: skip


@_specialised
def _decode(x, span, classes, scratch, found, mask):
    """Labels of one span of pixels of `x`: the decoder of its shape."""
    return {2: _decode_labels, 3: _decode_last, 4: _decode_strided}[x.ndim]


#: Copies of a small table a decoded block is tallied into, pixel j into copy
#: ``j % TALLY_COPIES``: where neighbouring pixels share their (truth, prediction) pair,
#: as in real maps, one cell's increments then form that many chains instead of one.
TALLY_COPIES = 4
#: Tables of at most this many cells are tallied through copies (cleared and folded per
#: block: 4 x 2 048 int64, 64 KiB); larger ones directly.
TALLY_COPY_CELLS = 2048


@njit(**HELPER)
def _tally(pred_labels, true_labels, n_span, table, width):
    """Count a decoded block's (truth, prediction) pairs into `table`.

    A pixel SKIP on either side counts nothing. Small tables (:data:`TALLY_COPY_CELLS`)
    go through :data:`TALLY_COPIES` copies, without a branch (an uncounted pixel adds to
    a cell past the table). One thread, 32 768 pixels in cache, 21 classes, ns per
    pixel, direct -> copies: labels drawn independently per pixel 0.81 -> 0.93, runs of
    64 pixels 1.77 -> 0.95, 80 % one class 1.90 -> 0.90.
    """
    cells = table.size
    if cells > TALLY_COPY_CELLS:
        for j in range(n_span):
            t = true_labels[j]
            p = pred_labels[j]
            if t >= 0 and p >= 0:
                table[t * width + p] += 1
        return
    stride = cells + 1
    copies = np.zeros(TALLY_COPIES * stride, np.int64)
    for j in range(n_span):
        t = true_labels[j]
        p = pred_labels[j]
        cell = t * width + p if (t >= 0) & (p >= 0) else cells
        copies[(j & (TALLY_COPIES - 1)) * stride + cell] += 1
    for r in range(TALLY_COPIES):
        for k in range(cells):
            table[k] += copies[r * stride + k]


@njit(**HELPER)
def _finish_image(table, b, num_classes, counts, stats):
    """Fold one image's table into its count rows, the confusion matrix and `stats`."""
    tp, pred_count, true_count, confusion = counts
    width = num_classes + PRED_BAD_COLUMN + 1  # table_shape
    side = num_classes + 1
    for r in range(side):
        for c in range(side):
            v = table[r * width + c]
            if v == 0:
                continue
            if r < num_classes:
                true_count[b, r] += v
                if c < num_classes:
                    confusion[r, c] += v
            if c < num_classes:
                pred_count[b, c] += v
            if r == c and r < num_classes:
                tp[b, r] += v
    ignored = 0
    true_bad = 0
    for c in range(width):
        ignored += table[(num_classes + IGNORED_ROW) * width + c]
        true_bad += table[(num_classes + TRUE_BAD_ROW) * width + c]
    pred_bad = 0
    for r in range(num_classes):
        pred_bad += table[r * width + num_classes + PRED_BAD_COLUMN]
    stats[IGNORED] += ignored
    stats[TRUE_BAD] += true_bad
    stats[PRED_BAD] += pred_bad


@njit(**HELPER)
def _add_sums(sums, b, acc):
    """Add one block's (3, N) soft sums into image `b`'s rows.

    A loop: NumPy-style array arithmetic in Numba compiles a shape-mismatch error path
    whose message formatting costs seconds of compilation in every process.
    """
    for c in range(acc.shape[1]):
        sums.inter[b, c] += acc[0, c]
        sums.pred_sum[b, c] += acc[1, c]
        sums.true_sum[b, c] += acc[2, c]


# Run in Python after the shares: a few small rows, no need to compile them.


def _merge_stats(thread_stats: np.ndarray, stats: np.ndarray) -> None:
    """Add the per-thread stats rows into `stats` (an example value: the last thread's)."""
    for t in range(thread_stats.shape[0]):
        for slot in (TRUE_BAD, PRED_BAD):
            if thread_stats[t, slot] > 0:
                stats[slot + 1] = thread_stats[t, slot + 1]
        for slot in (TRUE_BAD, TRUE_NAN, PRED_BAD, PRED_NAN, IGNORED):
            stats[slot] += thread_stats[t, slot]


def _decoded_block(pred, true, span, classes, scratch, stats, pair, table, calibration,
                   cal_work):  # fmt: skip
    pl, tl, pkeys, tkeys, nans = scratch
    # Truth first: where it is ignored (or invalid) the prediction is not checked.
    _decode(true, span, classes, Scratch(tl, tkeys, nans), Found(stats, TRUE_BAD),
            Mask(tl, False))  # fmt: skip
    n_span = span.stop - span.start
    pred_classes = _pred_classes(classes)
    conf = _confidence_buffer(cal_work)
    # With calibration, channels-last scores are decoded in pieces that stay in cache,
    # each piece's confidences read right after its argmax (a block of VOC scores is
    # 2.7 MB, of ADE20K's 150 float16 scores 9.8 MB: read back afterwards, each pixel's
    # score was a cache miss).
    step = _calibration_step(pred, calibration, n_span)
    for j0 in range(0, n_span, step):
        j1 = min(n_span, j0 + step)
        piece = Span(span.image, span.start + j0, span.start + j1)
        _decode(pred, piece, pred_classes, Scratch(pl[j0:j1], pkeys, nans),
                Found(stats, PRED_BAD), Mask(tl[j0:j1], True))  # fmt: skip
        _piece_confidences(pred, piece, pl[j0:j1], pkeys, calibration, conf, j0)
    _tally(pl, tl, n_span, table, classes.num_classes + PRED_BAD_COLUMN + 1)
    _calibrate(span, tl, pl, calibration, cal_work, stats)


#: Bytes of channels-last scores decoded at a time when confidences are read too.
CALIBRATION_PIECE = 128 * 1024


# Without calibration, the kernels take None for it (a type of its own): every function
# below compiles to nothing for it, so the kernels users run without calibration carry
# none of its code (measured: a first compile 10.8 s without this, 23.4 s with it).


def _off(x: Any) -> bool:
    return isinstance(x, types.NoneType)


@_specialised
def _calibration_step(pred, calibration, n_span):
    """Pixels per piece of a block decoded with calibration (see :func:`_decoded_block`)."""
    if _off(calibration) or pred.ndim != 3:
        # Channels-first confidences are the decoder's running maxima: nothing is read back.
        return lambda pred, calibration, n_span: n_span
    itemsize = pred.dtype.bitwidth // 8
    # Float32 / float16 decoders keep the maxima: rows are read back only for a softmax.
    kept = pred.dtype == types.float32 or pred.dtype == types.uint16

    def step(pred, calibration, n_span):
        if kept and not calibration.softmax:
            return n_span
        return max(256, CALIBRATION_PIECE // (pred.shape[2] * itemsize))

    return step


@_specialised
def _confidence_buffer(work):
    """The confidence buffer of a thread's :class:`CalScratch` (None without calibration)."""
    if _off(work):
        return lambda work: None
    return lambda work: work.conf


@_specialised
def _piece_confidences(pred, piece, pl, keys, calibration, conf, j0):
    """The confidences of a decoded piece into `conf` from `j0` on (with calibration)."""
    if _off(calibration):
        return lambda pred, piece, pl, keys, calibration, conf, j0: None

    def impl(pred, piece, pl, keys, calibration, conf, j0):
        j1 = j0 + piece.stop - piece.start
        _gather_confidences(pred, piece, pl, keys, calibration.softmax, conf[j0:j1])

    return impl


#: The weight of a float16's significand by its exponent field: 2**-24 for subnormals
#: (no implicit bit), 2**(e - 25) for the normal exponents, inf for inf / NaN.
_HALF_SCALE = np.array([2.0**-24] + [2.0 ** (e - 25) for e in range(1, 31)] + [np.inf])


@_specialised
def _score_value(v):
    """A score as float64; float16 given as its bits (NaN reads as inf)."""
    if v == types.uint16:

        def half_value(v):
            # Branch-free, a table instead of ldexp: per pixel in the calibration pass
            # (float16 volume, channels-first: 3.3x -> see the README).
            h = np.int64(v)
            exponent = (h >> 10) & 0x1F
            significand = np.float64((h & 0x3FF) | (np.int64(exponent != 0) << 10))
            value = significand * _HALF_SCALE[exponent]
            return -value if h & 0x8000 else value

        return half_value
    return lambda v: np.float64(v)


@njit(**HELPER)
def _note_confidence_range(stats, conf):
    stats[PRED_RANGE] += 1
    stats[PRED_RANGE_VALUE] = np.int64(np.float64(conf).view(np.int64))


@njit(**HELPER)
def _softmax_at(top, others):
    """The softmax at the largest of a pixel's scores: ``1 / sum(exp(s - top))``."""
    total = 0.0
    for c in range(others.shape[0]):
        total += math.exp(_score_value(others[c]) - top)
    return 1.0 / total


@_specialised
def _key_value(k):
    """A running-argmax key (:func:`_lane_key`) as the score's value, float64."""
    return lambda k: np.float64(k)


@_specialised
def _gather_confidences(pred, span, pl, keys, softmax, conf):
    """The confidence of every pixel of a block with a label (`pl` >= 0) into `conf`.

    Channels-first scores: the decoder's running maxima (`keys`), read back as values;
    channels-last float32 / float16: the maxima the decoder kept (:func:`_note_top`);
    other channels-last scores: the score at the label, in the row just read. Per pixel only scalars
    move: a helper called per pixel with array arguments would cost reference-count
    updates (see :func:`_decode_labels`).
    """
    if pred.ndim == 3 and keys.dtype == types.float32:

        def last_kept(pred, span, pl, keys, softmax, conf):
            b, start, stop = span
            for j in range(stop - start):
                conf[j] = keys[j]
            if softmax:
                block = pred[b, start:stop]
                for j in range(stop - start):
                    if pl[j] >= 0:
                        conf[j] = _softmax_at(conf[j], block[j])

        return last_kept
    if pred.ndim == 3:

        def last(pred, span, pl, keys, softmax, conf):
            b, start, stop = span
            block = pred[b, start:stop]
            for j in range(stop - start):
                p = pl[j]
                conf[j] = _score_value(block[j, max(p, 0)])
            if softmax:
                for j in range(stop - start):
                    if pl[j] >= 0:
                        conf[j] = _softmax_at(conf[j], block[j])

        return last
    if pred.ndim == 4:

        def inside(pred, span, pl, keys, softmax, conf):
            b, start, stop = span
            n_span = stop - start
            for j in range(n_span):
                conf[j] = _key_value(keys[j])
            if not softmax:
                return
            inner = pred.shape[3]
            channels = pred.shape[2]
            total = np.zeros(n_span)
            p0 = start
            j0 = 0
            while p0 < stop:  # runs of pixels within one outer index, as _decode_strided
                o = p0 // inner
                i0 = p0 - o * inner
                seg = min(inner - i0, stop - p0)
                for c in range(channels):  # class-outer, as the argmax reads them
                    row = pred[b, o, c, i0 : i0 + seg]
                    for s in range(seg):
                        total[j0 + s] += math.exp(_score_value(row[s]) - conf[j0 + s])
                p0 += seg
                j0 += seg
            for j in range(n_span):
                conf[j] = 1.0 / total[j]

        return inside
    return lambda pred, span, pl, keys, softmax, conf: None


#: Copies of a block's confidence histogram, pixel j adding into copy ``j % LANES``: the
#: increments of one bin (most pixels of a confident model share one) then form that
#: many independent chains instead of one.
LANES = 8


class CalScratch(NamedTuple):
    """A thread's buffers for :func:`_calibrate`: its histograms and per-pixel scratch."""

    #: (3, n + 1) int64: the histograms of the image (or blocks) being counted.
    table: np.ndarray
    #: BLOCK float64 confidences, int32 bins and int64 packed increments
    #: (:data:`PACKED_PIXELS`).
    conf: np.ndarray
    bins: np.ndarray
    packed: np.ndarray


@_specialised
def _cal_scratch(calibration, t):
    if _off(calibration):
        return lambda calibration, t: None

    def impl(calibration, t):
        table = calibration.tables[t]
        table[:] = 0
        return CalScratch(table, np.empty(BLOCK), np.empty(BLOCK, np.int32),
                          np.empty(BLOCK, np.int64))  # fmt: skip

    return impl


@_specialised
def _fold_calibration(calibration, work, b):
    """Add the thread's histograms of image `b` into its output rows, and clear them."""
    if _off(calibration):
        return lambda calibration, work, b: None

    def impl(calibration, work, b):
        calibration.out[b] += work.table
        work.table[:] = 0

    return impl


@njit(**HELPER)
def _confidence_bins(conf, tl, pl, edges, bins, packed, stats):
    """Each pixel's bin (``n + 1`` where it is not counted) and packed increment.

    The increment (:data:`PACKED_PIXELS`) holds the confidence in units of
    ``2**-CONFIDENCE_BITS``, rounded to nearest, and whether the pixel is right.

    A confidence is binned as its float32 value, like torchmetrics: ``k = floor(c n)``
    (exact: a float32 times a small n fits a float64), one more where ``c`` equals the
    edge above, ``float32((k + 1) / n)`` rounded down to it (the nearest float32 to
    ``k / n`` is the only one that can lie across it, so no other correction exists).
    Such a ``c`` lies within ``n 2**-24`` below ``k + 1``, which the vectorised loop
    flags; only flagged blocks are looked at again. The loop has no gather and no branch:
    measured 4.7 -> 1.6 ns per pixel against comparing with the edges at each pixel.
    """
    n = edges.size - 1
    near = 1.0 - n * 2.0**-23
    flagged = np.int32(0)
    bad = np.int32(0)
    for j in range(conf.size):
        c = conf[j]
        inside = (c >= 0.0) & (c <= 1.0)
        labelled = (tl[j] >= 0) & (pl[j] >= 0)
        counted = inside & labelled
        bad += np.int32(labelled & ~inside)
        cc = c if counted else 0.0
        x = np.float64(np.float32(cc)) * n
        k = np.int32(x)
        flagged += np.int32(x - k > near)
        bins[j] = k if counted else np.int32(n + 1)
        units = np.int64(cc * np.float64(1 << CONFIDENCE_BITS) + 0.5)  # >= 0: floor
        right = np.int64(tl[j] == pl[j])
        packed[j] = (np.int64(1) << PACKED_PIXEL) | (right << PACKED_CORRECT) | units
    if flagged:
        for j in range(conf.size):
            k = bins[j]
            if k < n and np.float64(np.float32(conf[j])) >= edges[k + 1]:
                bins[j] = k + 1
    if bad:
        for j in range(conf.size):
            c = conf[j]
            if tl[j] >= 0 and pl[j] >= 0 and not (c >= 0.0 and c <= 1.0):
                _note_confidence_range(stats, c)
                stats[PRED_RANGE] += bad - 1
                break


@njit(**HELPER)
def _add_confidence_bins(bins, packed, cal):
    """Add binned pixels into a (3, n + 1) histogram table.

    One increment per pixel (:data:`PACKED_PIXELS`), into :data:`LANES` copies of the
    bins, unrolled over the copies; the copies are summed and unpacked every
    :data:`PACKED_PIXELS` pixels. One thread, 32 768 pixels in cache, 15 bins, ns per
    pixel: 1.64 for two increments into four copies (a count word and a float sum).
    """
    n = cal.shape[1] - 1
    acc = np.zeros((LANES, n + 2), np.int64)
    for j0 in range(0, bins.size, PACKED_PIXELS):
        j1 = min(bins.size, j0 + PACKED_PIXELS)
        whole = j0 + (j1 - j0) // LANES * LANES
        for j in range(j0, whole, LANES):
            for r in range(LANES):
                acc[r, bins[j + r]] += packed[j + r]
        for j in range(whole, j1):
            acc[0, bins[j]] += packed[j]
        for k in range(n + 1):
            v = np.int64(0)
            for r in range(LANES):
                v += acc[r, k]
            pixels, right, units = _unpacked(v)
            cal[CAL_PIXELS, k] += pixels
            cal[CAL_CORRECT, k] += right
            cal[CAL_CONFIDENCE, k] += units
        acc[:] = 0


@_specialised
def _calibrate(span, tl, pl, calibration, work, stats):
    """Add a decoded block's counted pixels to the thread's confidence histograms.

    Their confidences are in ``work.conf`` (:func:`_gather_confidences`).
    """
    if _off(calibration):
        return lambda span, tl, pl, calibration, work, stats: None

    def impl(span, tl, pl, calibration, work, stats):
        n_span = span.stop - span.start
        conf = work.conf[:n_span]
        bins = work.bins[:n_span]
        packed = work.packed[:n_span]
        _confidence_bins(conf, tl, pl, calibration.edges, bins, packed, stats)
        _add_confidence_bins(bins, packed, work.table)

    return impl


def _label_pair_block(pred, true, span, classes, scratch, stats, pair, table, calibration,
                      cal_work):  # fmt: skip
    """Two label maps: each pixel pair read as a table cell and counted.

    No branch on the labels (:class:`PairCodes`): the table's extra rows and column take
    the pixels that are not counted.
    """
    b, start, stop = span
    ignore = classes.ignore
    true_codes = pair.true
    pred_codes = pair.pred
    n_true = true_codes.size
    n_pred = pred_codes.size
    true_outside = pair.true_outside
    pred_outside = pair.pred_outside
    ignore_outside = pair.ignore_outside
    ignored = (classes.num_classes + IGNORED_ROW) * (classes.num_classes + PRED_BAD_COLUMN + 1)
    tl = true[b, start:stop]
    pl = pred[b, start:stop]
    for j in range(stop - start):
        t = np.int64(tl[j])
        p = np.int64(pl[j])
        # Ids outside the tables are rare (the tables cover uint8 and uint16 whole).
        if t >= 0 and t < n_true:
            cell = np.int64(true_codes[t])
        elif ignore_outside and t == ignore:
            cell = ignored
        else:
            cell = true_outside
        if p >= 0 and p < n_pred:
            cell += np.int64(pred_codes[p])
        else:
            cell += pred_outside
        table[cell] += 1


def _fused_pair_block(pred, true, span, classes, scratch, stats, pair, table, calibration,
                      cal_work):  # fmt: skip
    """Two uint8 label maps: one lookup of each pixel pair's cell, then its count.

    Eight pixels of each map are read as one uint64 word: per-byte loads, not the
    lookups, bound this loop (4.1 -> 2.7 ms for a 2048 x 1024 Cityscapes map pair). Eight
    equal pixel pairs (a word of one byte repeated, in both maps) count at once: real label
    maps are runs of one class, whose increments of one cell would otherwise form a chain
    (one thread, cycles per pixel: Cityscapes-like maps 2.24 -> 0.75, 32 x 32 blocks
    4.33 -> 1.54, random labels 2.05 -> 2.21).
    """
    b, start, stop = span
    fused = pair.fused
    tl = true[b, start:stop]
    pl = pred[b, start:stop]
    n_words = (stop - start) // 8
    true_words = tl[: 8 * n_words].view(np.uint64)
    pred_words = pl[: 8 * n_words].view(np.uint64)
    low = np.uint64(255)
    eight = np.uint64(8)
    bytes_of_one = np.uint64(0x0101010101010101)
    for w in range(n_words):
        t_word = true_words[w]
        p_word = pred_words[w]
        t_first = t_word & low
        p_first = p_word & low
        if (t_word ^ t_first * bytes_of_one) | (p_word ^ p_first * bytes_of_one) == 0:
            table[np.uint64(fused[(t_first << eight) | p_first])] += 8
            continue
        for _ in range(8):  # little-endian: the word's low byte is the first pixel
            table[np.uint64(fused[((t_word & low) << eight) | (p_word & low)])] += 1
            t_word >>= eight
            p_word >>= eight
    for j in range(8 * n_words, stop - start):
        table[np.uint64(fused[(np.intp(tl[j]) << 8) | np.intp(pl[j])])] += 1


@_specialised
def _hard_block(pred, true, span, classes, scratch, stats, pair, table, calibration, cal_work):
    """Decode and tally one block.

    Two label maps in one pass, anything else through the decoders of each input.
    """
    if pred.ndim == 2 and true.ndim == 2:
        if pred.dtype == types.uint8 and true.dtype == types.uint8:
            return _fused_pair_block
        return _label_pair_block
    return _decoded_block


@njit(**HELPER)
def _scratch(pred, true):
    return HardScratch(
        np.empty(BLOCK, np.int32),
        np.empty(BLOCK, np.int32),
        _key_buffer(pred, BLOCK),
        _key_buffer(true, BLOCK),
        np.empty(BLOCK, np.bool_),
    )


# --------------------------------------------------------------------------------------
# Kernels
# --------------------------------------------------------------------------------------


@njit(**KERNEL)
def _hard_share(pred, true, classes, counts, work, image, t, n_threads):
    """Thread `t`'s share of one step of :func:`hard_counts` (the compiled kernel).

    ``image < 0``: the whole images ``t, t + T, ...`` below the last ``B % T``, each
    tallied into this thread's table and folded into its rows and this thread's own
    confusion matrix. Otherwise the blocks ``t, t + T, ...`` of `image`, tallied into this
    thread's table (the caller sums the tables).
    """
    n_images = pred.shape[0]
    n_pix = _n_pixels(pred)
    n_blocks = (n_pix + BLOCK - 1) // BLOCK
    table = work.tables[t]
    stats = work.stats[t]
    calibration = work.calibration
    cal_work = _cal_scratch(calibration, t)
    table[:] = 0
    scratch = _scratch(pred, true)
    if image < 0:
        n_whole = n_images - n_images % n_threads
        own = HardCounts(counts.tp, counts.pred_count, counts.true_count, work.confusions[t])
        for b in range(t, n_whole, n_threads):
            for k in range(n_blocks):
                start = k * BLOCK
                _hard_block(pred, true, Span(b, start, min(n_pix, start + BLOCK)), classes,
                            scratch, stats, work.pair, table, calibration, cal_work)  # fmt: skip
            _finish_image(table, b, classes.num_classes, own, stats)
            table[:] = 0
            _fold_calibration(calibration, cal_work, b)
    else:
        for k in range(t * n_blocks // n_threads, (t + 1) * n_blocks // n_threads):
            start = k * BLOCK
            _hard_block(pred, true, Span(image, start, min(n_pix, start + BLOCK)), classes,
                        scratch, stats, work.pair, table, calibration, cal_work)  # fmt: skip


def hard_counts(pred: Any, true: Any, classes: Classes, counts: HardCounts, stats: np.ndarray,
                n_threads: int, calibration: Calibration | None = None) -> None:  # fmt: skip
    """Add the hard counts of a batch into caller-allocated arrays.

    Parameters
    ----------
    pred, true : ndarray
        Prediction and truth, each a label map ``(B, P)`` or scores ``(B, P, N)`` /
        ``(B, O, N, I)`` (see the module docstring); scores are argmax-ed over N. Their
        ndim and dtype must be a pair of :data:`SIGNATURES`, C-contiguous, aligned and in
        native byte order (writable arrays are viewed as readonly).
    classes : Classes
        N (labels must lie in ``[0, N)``), whether the ignore index is in use, and the
        ignore index: a truth label whose pixels are skipped entirely.
    counts : HardCounts
        Per-image intersection, predicted and true pixel counts, ``(B, N)`` int64, and
        the ``(N, N)`` confusion matrix, rows truth, columns prediction (added into).
    stats : ndarray of int64, shape (N_STATS,)
        Bad-label, NaN and ignored-pixel counts (added into; see the slot constants).
    n_threads : int
        ``numba.get_num_threads()`` of the caller (read outside the kernel: calling it
        inside would stop Numba from caching the kernel on disk).
    calibration : Calibration, optional
        Confidence histograms of score predictions, per image (:func:`calibration_work`
        makes one; its ``out`` is added into). Confidences outside [0, 1] are counted in
        ``stats[PRED_RANGE]``, not binned.

    Raises
    ------
    TypeError, ValueError
        Arguments of another form than the kernel is compiled for, outputs of the wrong
        shape. Nothing is compiled for them.
    """
    pred, true, classes, counts, stats, n_threads = _arguments(
        pred, true, classes, counts, stats, n_threads, soft=False)  # fmt: skip
    num_classes = classes.num_classes
    rows, width = table_shape(num_classes)
    label_pair = pred.ndim == 2 and true.ndim == 2
    n_images = pred.shape[0]
    if calibration is not None:
        calibration = _calibration_arguments(calibration, pred, n_threads)
    work = HardWork(
        np.zeros((n_threads, rows * width), np.int64),
        np.zeros((n_threads, num_classes, num_classes), np.int64),
        np.zeros((n_threads, N_STATS), np.int64),
        pair_codes(pred.dtype, true.dtype, classes) if label_pair else NO_PAIR,
        calibration,
    )
    n_tail = n_images % n_threads
    if n_images > n_tail:
        run_shares(_hard_share, n_threads, pred, true, classes, counts, work, -1)
    for image in range(n_images - n_tail, n_images):
        run_shares(_hard_share, n_threads, pred, true, classes, counts, work, image)
        _finish_image(work.tables.sum(axis=0), image, num_classes, counts, work.stats[0])
        if calibration is not None:
            calibration.out[image] += calibration.tables.sum(axis=0)
    counts.confusion[...] += work.confusions.sum(axis=0)
    _merge_stats(work.stats, stats)
    _merge_range(work.stats, stats)
    if label_pair and (stats[TRUE_BAD] or stats[PRED_BAD]):
        _bad_examples(pred, true, classes, work.pair, stats)


def calibration_edges(n_bins: int) -> np.ndarray:
    """The edges of `n_bins` equal confidence bins: ``k / n_bins`` as float32 values.

    torchmetrics' ``torch.linspace(0, 1, n_bins + 1)`` (float32), as float64.
    """
    edges = (np.arange(n_bins + 1) / n_bins).astype(np.float32).astype(np.float64)
    edges.flags.writeable = False
    return edges


def calibration_work(n_bins: int, n_images: int, n_threads: int,
                     softmax: bool = False) -> Calibration:  # fmt: skip
    """A :class:`Calibration` of `n_bins` bins for a batch of `n_images`, zeroed."""
    return Calibration(calibration_edges(n_bins), bool(softmax),
                       np.zeros((n_threads, 3, n_bins + 1), np.int64),
                       np.zeros((n_images, 3, n_bins + 1), np.int64))  # fmt: skip


def _calibration_arguments(
    calibration: Any, pred: np.ndarray, n_threads: int
) -> Calibration | None:
    edges = kernel_input(np.asarray(calibration.edges, np.float64), "Calibration.edges")
    n = edges.size
    if n and pred.ndim == 2:
        raise TypeError("confidence histograms need score predictions, not a label map")
    if n < 2:
        raise ValueError("Calibration.edges must hold at least one bin (two edges)")
    out = _output(calibration.out, np.int64, 3, "Calibration.out")
    tables = np.zeros((n_threads, 3, n), np.int64)
    if out.shape != (pred.shape[0], 3, n):
        raise ValueError(f"Calibration.out must have shape {(pred.shape[0], 3, n)}; got "
                         f"{out.shape}")  # fmt: skip
    return Calibration(edges, bool(calibration.softmax), tables, out)


def pair_codes(pred_dtype: np.dtype, true_dtype: np.dtype, classes: Classes) -> PairCodes:
    """The lookups of :func:`_label_pair_block` for two label maps of these dtypes.

    Each table covers a uint8 or uint16 input's every value; for wider integers, the ids
    up to the label-id map's end (or N, or the ignore index below 2**16 when the truth
    has no map). A few microseconds for uint8, about 0.1 ms for uint16 (per call).
    """
    num_classes = classes.num_classes
    _, width = table_shape(num_classes)
    ignored = (num_classes + IGNORED_ROW) * width
    true_bad = (num_classes + TRUE_BAD_ROW) * width
    pred_bad = num_classes + PRED_BAD_COLUMN

    def labels(ids: np.ndarray, codes: LabelCodes) -> np.ndarray:
        table = np.asarray(codes.table, np.int64)
        if not table.size:
            return ids
        inside = ids < table.size
        return np.where(inside, table[np.where(inside, ids, 0)], codes.default)

    def true_cells(label: np.ndarray) -> np.ndarray:
        cells = np.where((label >= 0) & (label < num_classes), label * width, true_bad)
        if classes.has_ignore:
            cells = np.where(label == classes.ignore, ignored, cells)
        return cells

    def pred_cells(label: np.ndarray) -> np.ndarray:
        return np.where((label >= 0) & (label < num_classes), label, pred_bad)

    def extent(dtype: np.dtype, codes: LabelCodes, truth: bool) -> int:
        if dtype.kind == "u" and dtype.itemsize <= 2:
            return 1 << (8 * dtype.itemsize)
        n = max(num_classes, len(codes.table))
        if truth and not len(codes.table) and classes.has_ignore and 0 <= classes.ignore < 2**16:
            n = max(n, classes.ignore + 1)
        return n

    def outside(codes: LabelCodes, cells: Callable[[np.ndarray], np.ndarray],
                bad: int) -> int:  # fmt: skip
        if not len(codes.table):
            return bad
        return int(cells(np.array([codes.default], np.int64))[0])

    true_ids = np.arange(extent(true_dtype, classes.codes, True), dtype=np.int64)
    pred_ids = np.arange(extent(pred_dtype, classes.pred_codes, False), dtype=np.int64)
    true = true_cells(labels(true_ids, classes.codes)).astype(np.int32)
    pred = pred_cells(labels(pred_ids, classes.pred_codes)).astype(np.int32)
    fused = _no_table()
    if true_dtype == np.uint8 and pred_dtype == np.uint8:
        fused = np.add.outer(true, pred).ravel()  # int32, 256 KiB
        fused.flags.writeable = False
    for table in (true, pred):
        table.flags.writeable = False
    return PairCodes(true, pred, outside(classes.codes, true_cells, true_bad),
                     outside(classes.pred_codes, pred_cells, pred_bad),
                     bool(classes.has_ignore and not len(classes.codes.table)), fused)  # fmt: skip


def _bad_examples(pred: np.ndarray, true: np.ndarray, classes: Classes, pair: PairCodes,
                  stats: np.ndarray) -> None:  # fmt: skip
    """Put one invalid truth id and one invalid prediction id in `stats` (errors only).

    The branch-free tally counts such pixels but keeps no id; this finds one.
    """
    num_classes = classes.num_classes
    _, width = table_shape(num_classes)

    def cells(x: np.ndarray, table: np.ndarray, outside: int) -> np.ndarray:
        ids = x.astype(np.int64, copy=False)
        inside = (ids >= 0) & (ids < table.size)
        return np.where(inside, table[np.where(inside, ids, 0)], outside)

    t_cells = cells(true, pair.true, pair.true_outside)
    if pair.ignore_outside:
        t_cells = np.where((true.astype(np.int64, copy=False) == classes.ignore)
                           & ((true < 0) | (true >= pair.true.size)),
                           (num_classes + IGNORED_ROW) * width, t_cells)  # fmt: skip
    bad_true = t_cells == (num_classes + TRUE_BAD_ROW) * width
    if bad_true.any():
        stats[TRUE_BAD_VALUE] = true[bad_true][0]
    counted = t_cells < num_classes * width
    bad_pred = counted & (cells(pred, pair.pred, pair.pred_outside)
                          == num_classes + PRED_BAD_COLUMN)  # fmt: skip
    if bad_pred.any():
        stats[PRED_BAD_VALUE] = pred[bad_pred][0]


# --------------------------------------------------------------------------------------
# Many classes: one shared table, tallied by owners of disjoint rows and columns
# --------------------------------------------------------------------------------------

#: Bytes the per-thread tables of :func:`hard_counts` may take beyond the size of the
#: confusion matrix before :func:`hard_kernel` picks :func:`hard_counts_shared`: a call's
#: extra memory, its outputs included, then stays below twice its outputs plus this
#: slack (plus ~0.8 MiB of block buffers per thread, on either path). The rule is
#: ``T * ((N + 3) * (N + 2) + N^2) * 8 <= N^2 * 8 + TABLE_SLACK`` (:func:`table_shape`);
#: with 16 MiB the per-thread tables serve up to N = 1445 classes at 1 thread, 834 at 2,
#: 545 at 4, 258 at 16, 181 at 32 (ADE20K's 150 included) and 127 at 64.
TABLE_SLACK = 16 * 2**20


def thread_tables_fit(num_classes: int, n_threads: int, table_slack: int | None = None) -> bool:
    """Whether the per-thread tables of :func:`hard_counts` fit the memory budget.

    The budget is the size of the ``N x N`` int64 confusion matrix plus `table_slack`
    bytes (default :data:`TABLE_SLACK`, read at call time).
    """
    slack = TABLE_SLACK if table_slack is None else table_slack
    num_classes = int(num_classes)
    rows, width = table_shape(int(num_classes))
    tables = 8 * int(n_threads) * (rows * width + num_classes**2)
    return tables <= 8 * num_classes**2 + slack


def hard_kernel(num_classes: int, n_threads: int, table_slack: int | None = None) -> Any:
    """The hard-count kernel for `num_classes` and `n_threads`: per-thread or shared tables.

    :func:`hard_counts` (per-thread ``(N + 3) x (N + 2)`` tables, the fast path) where its tables
    fit :func:`thread_tables_fit`, else :func:`hard_counts_shared`. Both take the same
    arguments and add the same counts.
    """
    if thread_tables_fit(num_classes, n_threads, table_slack):
        return hard_counts
    return hard_counts_shared


@njit(**HELPER)
def _decode_chunk(pred, true, g0, g1, classes, tl, pl, stats, calibration, bins, packed):
    """Labels of the pixels [g0, g1) of the batch (images back to back) into tl / pl.

    A pixel whose truth or prediction is not counted is SKIP in both. With calibration,
    each counted pixel's confidence bin and packed increment go into `bins` / `packed`
    (bin ``n + 1`` for the others).
    """
    n_pix = _n_pixels(pred)
    pred_classes = _pred_classes(classes)
    tkeys = _key_buffer(true, BLOCK)
    pkeys = _key_buffer(pred, BLOCK)
    nans = np.empty(BLOCK, np.bool_)
    conf = _chunk_confidence_buffer(calibration, g1 - g0)
    g = g0
    while g < g1:
        b = g // n_pix
        start = g - b * n_pix
        stop = min(n_pix, start + (g1 - g))
        j0 = g - g0
        j1 = j0 + (stop - start)
        t_out = tl[j0:j1]
        span = Span(b, start, stop)
        # Truth first: where it is ignored (or invalid) the prediction is not checked.
        _decode(true, span, classes, Scratch(t_out, tkeys, nans), Found(stats, TRUE_BAD),
                Mask(t_out, False))  # fmt: skip
        _decode(pred, span, pred_classes, Scratch(pl[j0:j1], pkeys, nans),
                Found(stats, PRED_BAD), Mask(t_out, True))  # fmt: skip
        # While the decoder's running maxima are this run's:
        _piece_confidences(pred, span, pl[j0:j1], pkeys, calibration, conf, j0)
        g += stop - start
    for j in range(g1 - g0):
        skip = (tl[j] < 0) | (pl[j] < 0)
        tl[j] = SKIP if skip else tl[j]
        pl[j] = SKIP if skip else pl[j]
    _chunk_bins(conf, tl[: g1 - g0], pl[: g1 - g0], calibration, bins, packed, stats)


@_specialised
def _chunk_confidence_buffer(calibration, size):
    """The confidences of a chunk of :func:`hard_counts_shared` (None without calibration)."""
    if _off(calibration):
        return lambda calibration, size: None
    return lambda calibration, size: np.empty(size)


@_specialised
def _chunk_bins(conf, tl, pl, calibration, bins, packed, stats):
    if _off(calibration):
        return lambda conf, tl, pl, calibration, bins, packed, stats: None

    def impl(conf, tl, pl, calibration, bins, packed, stats):
        n = tl.size
        _confidence_bins(conf, tl, pl, calibration.edges, bins[:n], packed[:n], stats)

    return impl


@njit(**HELPER)
def _tally_owned(tl, pl, lo, hi, b, num_classes, counts):
    """Tally image `b`'s labels into the rows / columns [lo, hi) that this caller owns.

    Truth rows [lo, hi) of `confusion`, `true_count` and `tp`; prediction columns
    [lo, hi) of `pred_count`. Label N ("no class", one-class threshold only) has no row
    or column: it counts only on the other side, as in :func:`_finish_image`.
    """
    tp = counts.tp[b]
    pred_count = counts.pred_count[b]
    true_count = counts.true_count[b]
    confusion = counts.confusion
    for j in range(tl.shape[0]):
        t = tl[j]
        p = pl[j]
        if lo <= t and t < hi:
            true_count[t] += 1
            if p < num_classes:
                confusion[t, p] += 1
                if t == p:
                    tp[t] += 1
        if lo <= p and p < hi:
            pred_count[p] += 1


@njit(**KERNEL)
def _decode_share(pred, true, classes, labels, stats, calibration, marks, g0, t, n_threads):
    """Thread `t`'s share of a round of :func:`hard_counts_shared` (the compiled kernel).

    Chunks ``t, t + T, ...`` of the round starting at pixel `g0` of the batch, decoded
    into ``labels.true[r]`` / ``labels.pred[r]`` (r the chunk's place in the round), and
    with calibration their confidence bins into ``marks``.
    """
    total = pred.shape[0] * _n_pixels(pred)
    for r in range(t, labels.true.shape[0], n_threads):
        c0 = g0 + r * BLOCK
        if c0 >= total:
            break
        bins = marks.bins[min(r, marks.bins.shape[0] - 1)]  # one empty row without
        packed = marks.packed[min(r, marks.packed.shape[0] - 1)]
        _decode_chunk(pred, true, c0, min(total, c0 + BLOCK), classes, labels.true[r],
                      labels.pred[r], stats[t], calibration, bins, packed)  # fmt: skip


@njit(**HELPER)
def _calibration_share(labels, marks, out, n_pix, total, g0, t, n_threads):
    """Owner `t`'s share of a round's confidence bins: the pixels of images ``b % T == t``.

    Each image's histogram row has one owner, so no two threads write one cell.
    """
    for r in range(labels.true.shape[0]):
        c0 = g0 + r * BLOCK
        c1 = min(total, c0 + BLOCK)
        for g in range(c0, c1):
            b = g // n_pix
            if b % n_threads != t:
                continue
            k = marks.bins[r, g - c0]
            if k >= out.shape[2]:  # not counted
                continue
            pixels, right, units = _unpacked(marks.packed[r, g - c0])
            out[b, CAL_PIXELS, k] += pixels
            out[b, CAL_CORRECT, k] += right
            out[b, CAL_CONFIDENCE, k] += units


@njit(**HELPER)
def _tally_share(labels, counts, n_pix, total, g0, t, n_threads):
    """Owner `t`'s share of a round.

    Every label of the round that falls in its truth rows or prediction columns
    ``[t N / T, (t + 1) N / T)``.
    """
    num_classes = counts.confusion.shape[0]
    lo = t * num_classes // n_threads
    hi = (t + 1) * num_classes // n_threads
    for r in range(labels.true.shape[0]):
        c0 = g0 + r * BLOCK
        c1 = min(total, c0 + BLOCK)
        g = c0
        while g < c1:
            b = g // n_pix
            stop = min((b + 1) * n_pix, c1)
            _tally_owned(labels.true[r, g - c0 : stop - c0], labels.pred[r, g - c0 : stop - c0],
                         lo, hi, b, num_classes, counts)  # fmt: skip
            g = stop


def hard_counts_shared(pred: Any, true: Any, classes: Classes, counts: HardCounts,
                       stats: np.ndarray, n_threads: int,
                       calibration: Calibration | None = None) -> None:  # fmt: skip
    """:func:`hard_counts` without per-thread tables, for many classes.

    Same arguments and results as :func:`hard_counts`; extra memory is independent of N:
    about 0.8 MiB of block buffers per thread. The batch's pixels (images back to back)
    are taken in rounds of `n_threads` chunks of :data:`BLOCK` pixels:

    1. chunks are decoded to (truth, prediction) labels in parallel, one per thread;
    2. owner ``o`` of ``n_threads`` owns truth rows and prediction columns
       ``[o N / T, (o + 1) N / T)``: it scans every label of the round and adds only into
       its rows of `confusion`, `true_count`, `tp` and its columns of `pred_count`, so no
       two threads write one cell. Each owner reads the whole round (T times the labels
       in all), which is small beside the argmax over many classes.

    With `calibration`, decoding also bins each counted pixel's confidence into the
    round's :class:`ConfidenceMarks`, and a third step adds them into the histograms, the
    rows of image ``b`` by owner ``b % T``.

    Counts are integers: identical to :func:`hard_counts` for any thread count.
    """
    pred, true, classes, counts, stats, n_threads = _arguments(
        pred, true, classes, counts, stats, n_threads, soft=False)  # fmt: skip
    n_pix = _pixels_per_image(pred)
    total = pred.shape[0] * n_pix
    per_round = n_threads * ROUND_BLOCKS
    labels = BlockLabels(np.empty((per_round, BLOCK), np.int32),
                         np.empty((per_round, BLOCK), np.int32))  # fmt: skip
    if calibration is not None:
        calibration = _calibration_arguments(calibration, pred, n_threads)
    calibrating = calibration is not None
    rows = per_round if calibrating else 1
    marks = ConfidenceMarks(np.empty((rows, BLOCK if calibrating else 0), np.int32),
                            np.empty((rows, BLOCK if calibrating else 0), np.int64))  # fmt: skip
    thread_stats = np.zeros((n_threads, N_STATS), np.int64)
    for g0 in range(0, total, per_round * BLOCK):
        run_shares(_decode_share, n_threads, pred, true, classes, labels, thread_stats,
                   calibration, marks, g0)  # fmt: skip
        run_shares(_tally_share, n_threads, labels, counts, n_pix, total, g0)
        if calibration is not None:
            run_shares(_calibration_share, n_threads, labels, marks, calibration.out, n_pix,
                       total, g0)  # fmt: skip
    _merge_stats(thread_stats, stats)
    _merge_range(thread_stats, stats)


@_specialised
def _truth_value(true, b, p, o, c, i, lab):
    if true.ndim == 2:
        return lambda true, b, p, o, c, i, lab: 1.0 if lab == c else 0.0
    if true.ndim == 3:
        return lambda true, b, p, o, c, i, lab: np.float64(true[b, p, c])
    return lambda true, b, p, o, c, i, lab: np.float64(true[b, o, c, i])


@njit(**HELPER)
def _soft_block(pred, true, span, classes, scratch, stats, acc):
    """Sums of |p t|, |p|, |t| per class over one span, pixels in order, into acc (3, N)."""
    b, start, stop = span
    num_classes = classes.num_classes
    has_ignore = classes.has_ignore
    tl, tkeys, nans, p_nan, t_nan = scratch
    n_span = stop - start
    if true.ndim == 2 or has_ignore:
        _decode(true, span, classes, Scratch(tl, tkeys, nans), Found(stats, TRUE_BAD),
                Mask(tl, False))  # fmt: skip
    else:
        tl[:n_span] = 0
    # Values outside [0, 1]: counts and the last such value (selects, not branches).
    p_out = 0
    t_out = 0
    p_ex = 0.0
    t_ex = 0.0
    if pred.ndim == 3:
        for j in range(n_span):
            lab = tl[j]
            if lab < 0:
                continue
            p = start + j
            pn = False
            tn = False
            for c in range(num_classes):
                pv = np.float64(pred[b, p, c])
                tv = _truth_value(true, b, p, 0, c, 0, lab)
                pn |= pv != pv
                tn |= tv != tv
                po = (pv < 0.0) | (pv > 1.0)
                to = (tv < 0.0) | (tv > 1.0)
                p_out += int(po)
                t_out += int(to)
                p_ex = pv if po else p_ex
                t_ex = tv if to else t_ex
                acc[0, c] += abs(pv * tv)
                acc[1, c] += abs(pv)
                acc[2, c] += abs(tv)
            stats[PRED_NAN] += pn
            stats[TRUE_NAN] += tn
    else:
        inner = pred.shape[3]
        p_nan[:n_span] = False
        t_nan[:n_span] = False
        for c in range(num_classes):
            s_pt = 0.0
            s_p = 0.0
            s_t = 0.0
            for j in range(n_span):
                lab = tl[j]
                if lab < 0:
                    continue
                p = start + j
                o = p // inner
                i = p - o * inner
                pv = np.float64(pred[b, o, c, i])
                tv = _truth_value(true, b, p, o, c, i, lab)
                p_nan[j] |= pv != pv
                t_nan[j] |= tv != tv
                po = (pv < 0.0) | (pv > 1.0)
                to = (tv < 0.0) | (tv > 1.0)
                p_out += int(po)
                t_out += int(to)
                p_ex = pv if po else p_ex
                t_ex = tv if to else t_ex
                s_pt += abs(pv * tv)
                s_p += abs(pv)
                s_t += abs(tv)
            acc[0, c] += s_pt
            acc[1, c] += s_p
            acc[2, c] += s_t
        for j in range(n_span):
            stats[PRED_NAN] += p_nan[j]
            stats[TRUE_NAN] += t_nan[j]
    _note_range(stats, PRED_RANGE, p_out, p_ex)
    _note_range(stats, TRUE_RANGE, t_out, t_ex)


@njit(**HELPER)
def _note_range(stats, slot, count, example):
    """Add `count` values outside [0, 1] into ``stats[slot]``, `example` as float64 bits."""
    if count:
        stats[slot] += count
        stats.view(np.float64)[slot + 1] = example


def _merge_range(thread_stats: np.ndarray, stats: np.ndarray) -> None:
    """The range slots of :func:`_merge_stats`: soft sums, and hard counts' confidences."""
    for t in range(thread_stats.shape[0]):
        for slot in (TRUE_RANGE, PRED_RANGE):
            if thread_stats[t, slot] > 0:
                stats[slot] += thread_stats[t, slot]
                stats[slot + 1] = thread_stats[t, slot + 1]


@njit(**HELPER)
def _soft_scratch(true):
    return SoftScratch(
        np.empty(BLOCK, np.int32),
        _key_buffer(true, BLOCK),
        np.empty(BLOCK, np.bool_),
        np.empty(BLOCK, np.bool_),
        np.empty(BLOCK, np.bool_),
    )


@njit(**KERNEL)
def _soft_share(pred, true, classes, sums, work, image, k0, t, n_threads):
    """Thread `t`'s share of one step of :func:`soft_sums` (the compiled kernel).

    ``image < 0``: the whole images ``t, t + T, ...`` below the last ``B % T``, blocks
    summed in order into their rows. Otherwise the blocks ``k0 + r`` of `image` for
    ``r = t, t + T, ...`` below ``work.partial.shape[0]``, each into ``work.partial[r]``
    (the caller adds them in block order).
    """
    n_images = pred.shape[0]
    n_pix = _n_pixels(pred)
    n_blocks = (n_pix + BLOCK - 1) // BLOCK
    stats = work.stats[t]
    scratch = _soft_scratch(true)
    if image < 0:
        acc = np.zeros((3, classes.num_classes))
        for b in range(t, n_images - n_images % n_threads, n_threads):
            for k in range(n_blocks):
                start = k * BLOCK
                acc[:] = 0.0
                _soft_block(pred, true, Span(b, start, min(n_pix, start + BLOCK)), classes,
                            scratch, stats, acc)  # fmt: skip
                _add_sums(sums, b, acc)
    else:
        for r in range(t, work.partial.shape[0], n_threads):
            k = k0 + r
            if k >= n_blocks:
                break
            part = work.partial[r]
            part[:] = 0.0
            start = k * BLOCK
            _soft_block(pred, true, Span(image, start, min(n_pix, start + BLOCK)), classes,
                        scratch, stats, part)  # fmt: skip


def soft_sums(pred: Any, true: Any, classes: Classes, sums: SoftSums, stats: np.ndarray,
              n_threads: int) -> None:  # fmt: skip
    """Add the soft sums of a batch into caller-allocated float64 arrays.

    Parameters
    ----------
    pred : ndarray
        Scores ``(B, P, N)`` or ``(B, O, N, I)``, a dtype of :data:`SOFT_SCORE_DTYPES`.
    true : ndarray
        Label map ``(B, P)`` (read as its one-hot encoding) or scores shaped like `pred`.
    classes, stats, n_threads
        As for :func:`hard_counts`. With score truth, the ignore index applies to the
        truth's argmax. `stats` also counts the values outside [0, 1] of the prediction
        and of a score truth (slots ``PRED_RANGE``, ``TRUE_RANGE`` and their examples);
        the kernel only counts them (logits are summed as they are).
    sums : SoftSums
        Per image and class, ``(B, N)`` float64: sum of ``|p * t|``, of ``|p|`` and of
        ``|t|`` (added into).

    Notes
    -----
    Each block is summed pixel by pixel, and blocks are added to an image's total in
    order, whatever thread computed them: the sums do not depend on the thread count.
    """
    pred, true, classes, sums, stats, n_threads = _arguments(
        pred, true, classes, sums, stats, n_threads, soft=True)  # fmt: skip
    n_images = pred.shape[0]
    n_blocks = (_pixels_per_image(pred) + BLOCK - 1) // BLOCK
    n_tail = n_images % n_threads
    per_round = n_threads * ROUND_BLOCKS
    work = SoftWork(np.zeros((per_round, 3, classes.num_classes)),
                    np.zeros((n_threads, N_STATS), np.int64))  # fmt: skip
    if n_images > n_tail:
        run_shares(_soft_share, n_threads, pred, true, classes, sums, work, -1, 0)
    # The remaining images: their blocks in rounds, so the partial sums take
    # O(threads x N) memory whatever the image size; added in block order.
    for image in range(n_images - n_tail, n_images):
        for k0 in range(0, n_blocks, per_round):
            run_shares(_soft_share, n_threads, pred, true, classes, sums, work, image, k0)
            for r in range(min(per_round, n_blocks - k0)):
                for row, out in enumerate(sums):  # in block order, as the shares add
                    out[image] += work.partial[r, row]
    _merge_stats(work.stats, stats)
    _merge_range(work.stats, stats)


@njit(**KERNEL)
def _labels_share(x, classes, out, stats, t, n_threads):
    """Thread `t`'s share of :func:`pred_labels`: blocks ``t, t + T, ...`` of the batch."""
    n_pix = _n_pixels(x)
    n_blocks = (n_pix + BLOCK - 1) // BLOCK
    keys = _key_buffer(x, BLOCK)
    nans = np.empty(BLOCK, np.bool_)
    pred_classes = _pred_classes(classes)
    for k in range(t, x.shape[0] * n_blocks, n_threads):
        b = k // n_blocks
        start = (k - b * n_blocks) * BLOCK
        stop = min(n_pix, start + BLOCK)
        labels = out[b, start:stop]
        _decode(x, Span(b, start, stop), pred_classes, Scratch(labels, keys, nans),
                Found(stats[t], PRED_BAD), Mask(labels, False))  # fmt: skip


def pred_labels(x: Any, classes: Classes, n_threads: int) -> np.ndarray:
    """The class label of every pixel of a prediction, as the counting kernels read it.

    Parameters
    ----------
    x : ndarray
        A prediction in kernel form (:func:`hard_counts`): a label map ``(B, P)`` (read
        through ``classes.pred_codes``) or scores ``(B, P, N)`` / ``(B, O, N, I)``
        (argmax, the first largest; the one-class threshold).
    classes : Classes
    n_threads : int

    Returns
    -------
    ndarray of int32, shape (B, P)
        Labels; SKIP (-1) where a score is NaN or a label is not a class.
    """
    x = kernel_input(x, "x")
    key = (x.ndim, x.dtype.name)
    if key not in {(2, d) for d in LABEL_DTYPES} | {(nd, d) for nd in (3, 4)
                                                     for d in SCORE_DTYPES}:  # fmt: skip
        raise TypeError(f"pred_labels is not compiled for {x.dtype.name} of {x.ndim} dimensions")
    classes = Classes(int(classes.num_classes), False, 0, _codes(classes.codes, "codes"),
                      _codes(classes.pred_codes, "pred_codes"))  # fmt: skip
    out = np.empty((x.shape[0], _pixels_per_image(x)), np.int32)
    stats = np.zeros((n_threads, N_STATS), np.int64)
    run_shares(_labels_share, n_threads, x, classes, out, stats)
    return out


#: Kernel name -> its compiled function (a Numba dispatcher; the plain Python function
#: under ``NUMBA_DISABLE_JIT=1``). Their ``signatures`` stay within :data:`SIGNATURES`.
COMPILED = {
    "hard_counts": _hard_share,
    "hard_counts_shared": _decode_share,
    "soft_sums": _soft_share,
    "pred_labels": _labels_share,
}


def unlisted_signatures() -> dict[str, list[tuple[Any, ...]]]:
    """Signatures compiled (or loaded from the cache) in this process outside SIGNATURES."""
    return {
        name: [s for s in getattr(f, "signatures", ()) if s not in SIGNATURES[name]]
        for name, f in COMPILED.items()
    }

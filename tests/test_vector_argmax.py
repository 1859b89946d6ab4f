"""The vector argmax of channels-last float32 / float16 rows (:func:`fastseg.kernels.row_argmax`).

First the intrinsic alone, row by row, against ``np.argmax`` on rows drawn by hypothesis
from values that make ties, signed zeros, infinities and NaN likely, for every row length
the kernels give it (2 to 32 classes: one to four chunks, a last chunk that overlaps the
one before it, a short row read past its end), and :func:`fastseg.kernels.long_row_argmax`
for longer rows (an odd or even number of chunks, a partial last one or none). Then
through the kernels, on blocks whose last rows take the scalar loop
(:func:`fastseg.kernels.safe_rows`).
"""

from __future__ import annotations

import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numba import njit

import fastseg
from fastseg import kernels
from fastseg.kernels import long_row_argmax, row_argmax, safe_rows


@njit(cache=True)
def _rows(block, chunks):
    n = safe_rows(block.shape[0], block.shape[1])
    labels = np.empty(n, np.int32)
    nans = np.empty(n, np.bool_)
    tops = np.empty(n, np.float32)
    for j in range(n):
        # Literal chunk counts, as the kernels call it (kernels._vector_rows).
        if chunks == 1:
            lab, nan, top = row_argmax(block, j, 1)
        elif chunks == 2:
            lab, nan, top = row_argmax(block, j, 2)
        elif chunks == 3:
            lab, nan, top = row_argmax(block, j, 3)
        else:
            lab, nan, top = row_argmax(block, j, 4)
        labels[j] = lab
        nans[j] = nan
        tops[j] = top
    return labels, nans, tops


@njit(cache=True)
def _long_rows(block):
    n = block.shape[0]
    labels = np.empty(n, np.int32)
    nans = np.empty(n, np.bool_)
    tops = np.empty(n, np.float32)
    for j in range(n):
        labels[j], nans[j], tops[j] = long_row_argmax(block, j)
    return labels, nans, tops


@njit
def _maybe_nan(block, j):
    return kernels._long_row_scan_intrinsic(block, j)[1]


def _check(values: np.ndarray) -> None:
    """Every row of `values` (float32 or float16) against NumPy."""
    channels = values.shape[1]
    block = values.view(np.uint16) if values.dtype == np.float16 else values
    if channels > kernels.VECTOR_CLASSES:
        labels, nans, tops = _long_rows(block)
    else:
        labels, nans, tops = _rows(block, (channels + 7) // 8)
    n = len(labels)
    assert n == safe_rows(len(values), channels)
    rows = values[:n]
    np.testing.assert_array_equal(nans, np.isnan(rows).any(axis=1))
    ok = ~nans
    np.testing.assert_array_equal(labels[ok], np.argmax(rows[ok], axis=1))
    np.testing.assert_array_equal(tops[ok], rows[ok].max(axis=1).astype(np.float32))


SPECIAL = [0.0, -0.0, 1.0, 0.5, -1.0, np.inf, -np.inf, 0.25, 65504.0, 6e-8, np.nan]


@settings(max_examples=300, deadline=None)
@given(
    channels=st.one_of(st.integers(2, kernels.VECTOR_CLASSES), st.integers(33, 160)),
    n_rows=st.integers(1, 12),
    dtype=st.sampled_from([np.float32, np.float16]),
    data=st.data(),
)
def test_rows_match_numpy(channels, n_rows, dtype, data):
    picks = data.draw(st.lists(st.integers(0, len(SPECIAL) - 1), min_size=channels * n_rows,
                               max_size=channels * n_rows))  # fmt: skip
    # Two rows more than drawn: a short row is read past its end, into them.
    values = np.array([SPECIAL[i] for i in picks] + [np.nan] * 2 * channels, dtype)
    _check(values.reshape(n_rows + 2, channels))


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("channels", [*range(2, kernels.VECTOR_CLASSES + 1), 33, 39, 40, 47,
                                      48, 56, 63, 64, 100, 150, 151])  # fmt: skip
def test_every_position_of_the_maximum(dtype, channels):
    # The maximum at each index, alone or tied with every later index; NaN at each index.
    eye = np.eye(channels, dtype=dtype)
    ties = np.triu(np.ones((channels, channels), dtype))
    nan = np.where(np.eye(channels, dtype=bool), np.nan, 0).astype(dtype)
    rng = np.random.default_rng(channels)
    noise = rng.random((500, channels)).astype(dtype)
    _check(np.concatenate([eye, ties, nan, noise, -eye, noise]))


def test_a_row_longer_than_one_mask_is_refused_at_compile_time():
    wide = njit(lambda b: row_argmax(b, 0, kernels.VECTOR_CHUNKS + 1))
    with pytest.raises(numba.TypingError):
        wide(np.zeros((2, 80), np.float32))


@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("channels", [2, 3, 5, 7, 8, 9, 17, 25, 32, 33, 150])
@pytest.mark.parametrize("threads", [1, 2])
def test_counts_across_blocks_match_bincount(dtype, channels, threads):
    # Images of more than one block: every block ends with rows the scalar loop decodes
    # (short rows), with NaN, ignored truth and ties placed there and elsewhere.
    rng = np.random.default_rng(channels)
    b, p = 2, kernels.BLOCK + 11
    scores = np.floor(rng.random((b, p, channels)) * 4).astype(dtype)  # many ties
    truth = rng.integers(0, channels, (b, p)).astype(np.uint8)
    truth[:, kernels.BLOCK - 3 : kernels.BLOCK + 2] = 255
    truth[:, -2] = 255
    scores[0, kernels.BLOCK - 1, channels - 1] = np.nan  # ignored: not counted
    scores[1, -2, 0] = np.nan  # ignored
    scores[1, 7, channels - 1] = np.nan  # counted
    scores[0, -1, -1] = np.nan  # counted, the array's last row (a scalar row)
    keep = truth != 255
    nan = np.isnan(scores).any(-1)
    labels = scores.astype(np.float32).argmax(-1)
    ok = keep & ~nan
    want = np.bincount(truth[ok].astype(np.int64) * channels + labels[ok],
                       minlength=channels**2).reshape(channels, channels)  # fmt: skip
    view = scores.view(np.uint16) if dtype == "float16" else scores
    out = [np.zeros((b, channels), np.int64) for _ in range(3)]
    confusion = np.zeros((channels, channels), np.int64)
    stats = np.zeros(kernels.N_STATS, np.int64)
    kernels.hard_counts(view, truth, kernels.Classes(channels, True, 255),
                        kernels.HardCounts(*out, confusion), stats, threads)  # fmt: skip
    np.testing.assert_array_equal(confusion, want)
    assert stats[kernels.PRED_NAN] == (keep & nan).sum() == 2
    with pytest.raises(ValueError, match="NaN scores at 2 pixels"):
        fastseg.counts(truth, scores, ignore_index=255, spatial_dims=1)


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("channels", [33, 47, 64, 150])
def test_long_rows_with_opposite_infinities_hold_no_nan(dtype, channels):
    # Long rows sum their chunks to detect NaN: inf - inf (and, in float32, sums that
    # overflow to inf beside -inf) make a lane's sum NaN without a NaN score. Such rows
    # must still read as NaN-free, with the right label.
    big = np.finfo(dtype).max
    rows = []
    for c in range(channels):
        row = np.zeros(channels, dtype)
        row[c] = np.inf
        row[(c + 16) % channels] = -np.inf
        rows.append(row)
        row = np.full(channels, big, dtype)  # float32: partial sums overflow to inf
        row[c] = -np.inf
        rows.append(row)
    values = np.array(rows)
    block = values.view(np.uint16) if dtype == np.float16 else values
    # The first row takes the exact check (its sums say "maybe NaN").
    assert _maybe_nan(block, 0)
    labels, nans, tops = _long_rows(block)
    assert not nans.any()
    np.testing.assert_array_equal(labels, np.argmax(values, axis=1))
    np.testing.assert_array_equal(tops, values.max(axis=1).astype(np.float32))

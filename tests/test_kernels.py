"""Direct tests of the Numba kernels :func:`fastseg.kernels.hard_counts` / ``soft_sums``.

Inputs are passed in the kernels' own layouts (see the module docstring of
:mod:`fastseg.kernels`): ``(B, P)`` label maps, ``(B, P, N)`` channels-last scores and
``(B, O, N, I)`` scores with the class axis inside. Expected tables are worked out by hand
in the comments.

The kernels are compiled for the few argument types of ``kernels.SIGNATURES`` only
(readonly C-contiguous inputs of a few dtypes); the entry points view writable inputs as
readonly, so these calls share their compiled signatures with the other test files. The
last sections check that nothing else is ever compiled, that inputs of every other
layout and dtype are mapped onto those signatures, that the Numba options take effect
when edited, and that the kernels run as plain Python under ``NUMBA_DISABLE_JIT=1``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numba
import numpy as np
import pytest

import fastseg
from fastseg import kernels

# --------------------------------------------------------------------------------------
# One image of 2 x 3 pixels, 3 classes, flattened to P = 6 pixels.
#
#   pixel          0    1    2    3    4    5
#   truth          0    1    2    2    1    0
#   pred (argmax)  0    2    2    1    1    0   (pixel 5 is a tie 0.5 / 0.5 -> first max)
#
# confusion (rows truth, cols pred):   t0: [2, 0, 0]
#                                      t1: [0, 1, 1]
#                                      t2: [0, 1, 1]
# tp = [2, 1, 1]; pred = column sums [2, 2, 2]; true = row sums [2, 2, 2]
# --------------------------------------------------------------------------------------
TRUTH = np.array([[0, 1, 2, 2, 1, 0]], dtype=np.int64)
SCORES = np.array(
    [
        [
            [0.7, 0.2, 0.1],
            [0.1, 0.3, 0.6],
            [0.2, 0.2, 0.6],
            [0.3, 0.5, 0.2],
            [0.1, 0.8, 0.1],
            [0.5, 0.5, 0.0],
        ]
    ],
    dtype=np.float32,
)
PRED_LABELS = np.array([[0, 2, 2, 1, 1, 0]], dtype=np.int64)
CONFUSION = np.array([[2, 0, 0], [0, 1, 1], [0, 1, 1]])
TP = np.array([[2, 1, 1]])
PRED = np.array([[2, 2, 2]])
TRUE = np.array([[2, 2, 2]])


def threads():
    return numba.get_num_threads()


def classes(n, ignore=None):
    """The kernels' Classes argument: N and the ignore index (None: no ignore index)."""
    return kernels.Classes(n, ignore is not None, 0 if ignore is None else ignore)


def outputs(b, n):
    """Zeroed hard-count outputs: tp, pred_count, true_count, confusion, stats."""
    return (
        np.zeros((b, n), np.int64),
        np.zeros((b, n), np.int64),
        np.zeros((b, n), np.int64),
        np.zeros((n, n), np.int64),
        np.zeros(kernels.N_STATS, np.int64),
    )


def run_hard(pred, true, n, ignore=None, out=None):
    out = outputs(pred.shape[0], n) if out is None else out
    tp, pc, tc, conf, stats = out
    kernels.hard_counts(pred, true, classes(n, ignore), kernels.HardCounts(tp, pc, tc, conf),
                        stats, threads())  # fmt: skip
    return out


def run_soft(pred, true, n, ignore=None):
    b = pred.shape[0]
    inter, ps, ts = (np.zeros((b, n)) for _ in range(3))
    stats = np.zeros(kernels.N_STATS, np.int64)
    kernels.soft_sums(pred, true, classes(n, ignore), kernels.SoftSums(inter, ps, ts), stats,
                      threads())  # fmt: skip
    return inter, ps, ts, stats


def channels_first(scores):
    """(B, P, N) -> (B, 1, N, P), C-contiguous."""
    return np.ascontiguousarray(np.moveaxis(scores, 2, 1)[:, None])


def class_in_middle(scores, outer):
    """(B, P, N) with P = outer * inner -> (B, outer, N, inner): scores[b, o, c, i]."""
    b, p, n = scores.shape
    return np.ascontiguousarray(scores.reshape(b, outer, p // outer, n).transpose(0, 1, 3, 2))


def test_stats_slots():
    assert kernels.N_STATS == 11
    slots = [
        kernels.TRUE_BAD,
        kernels.TRUE_BAD_VALUE,
        kernels.TRUE_NAN,
        kernels.PRED_BAD,
        kernels.PRED_BAD_VALUE,
        kernels.PRED_NAN,
        kernels.IGNORED,
        kernels.TRUE_RANGE,
        kernels.TRUE_RANGE_VALUE,
        kernels.PRED_RANGE,
        kernels.PRED_RANGE_VALUE,
    ]
    assert sorted(slots) == list(range(kernels.N_STATS))
    # The soft kernel writes "count, example" relative to a base slot.
    assert kernels.TRUE_RANGE_VALUE == kernels.TRUE_RANGE + 1
    assert kernels.PRED_RANGE_VALUE == kernels.PRED_RANGE + 1
    # The decoders address "bad, bad value, nan" relative to a base slot.
    assert (kernels.TRUE_BAD_VALUE, kernels.TRUE_NAN) == (
        kernels.TRUE_BAD + 1,
        kernels.TRUE_BAD + 2,
    )
    assert (kernels.PRED_BAD_VALUE, kernels.PRED_NAN) == (
        kernels.PRED_BAD + 1,
        kernels.PRED_BAD + 2,
    )
    assert kernels.SKIP < 0


def check(out, tp, pred, true, confusion, stats=None):
    got_tp, got_pred, got_true, got_conf, got_stats = out
    np.testing.assert_array_equal(got_tp, tp)
    np.testing.assert_array_equal(got_pred, pred)
    np.testing.assert_array_equal(got_true, true)
    np.testing.assert_array_equal(got_conf, confusion)
    expected_stats = np.zeros(kernels.N_STATS, np.int64)
    for slot, value in (stats or {}).items():
        expected_stats[slot] = value
    np.testing.assert_array_equal(got_stats, expected_stats)


@pytest.mark.parametrize(
    "make_pred",
    [
        pytest.param(lambda: SCORES, id="channels_last"),
        pytest.param(lambda: channels_first(SCORES), id="channels_first"),
        pytest.param(lambda: class_in_middle(SCORES, 2), id="class_in_middle"),
        pytest.param(lambda: SCORES.astype(np.float16).view(np.uint16), id="float16_bits"),
        pytest.param(lambda: PRED_LABELS, id="label_map"),
    ],
)
def test_hand_worked_tables(make_pred):
    pred = make_pred()
    check(run_hard(pred, TRUTH, 3), TP, PRED, TRUE, CONFUSION)


def test_layouts_agree_on_the_class_in_middle_view():
    # class_in_middle with outer = 2, inner = 3: scores[0, o, c, i] is pixel o * 3 + i.
    view = class_in_middle(SCORES, 2)
    assert view.shape == (1, 2, 3, 3)
    assert view[0, 1, 2, 0] == SCORES[0, 3, 2]


def test_ignore_index():
    # Ignoring truth label 1 drops pixels 1 and 4 (truth and prediction):
    #   t0: [2, 0, 0], t1: [0, 0, 0], t2: [0, 1, 1]
    out = run_hard(SCORES, TRUTH, 3, ignore=1)
    confusion = np.array([[2, 0, 0], [0, 0, 0], [0, 1, 1]])
    check(out, [[2, 0, 1]], [[2, 1, 1]], [[2, 0, 2]], confusion, {kernels.IGNORED: 2})


def test_ignore_index_applies_to_truth_only():
    # Ignoring label 2: truth pixels 2 and 3 go; predictions of 2 elsewhere still count.
    #   t0: [2, 0, 0], t1: [0, 1, 1]
    out = run_hard(PRED_LABELS, TRUTH, 3, ignore=2)
    confusion = np.array([[2, 0, 0], [0, 1, 1], [0, 0, 0]])
    check(out, [[2, 1, 0]], [[2, 1, 1]], [[2, 2, 0]], confusion, {kernels.IGNORED: 2})


def test_kernels_add_into_their_outputs():
    out = run_hard(SCORES, TRUTH, 3, ignore=1)
    run_hard(SCORES, TRUTH, 3, ignore=1, out=out)
    confusion = np.array([[2, 0, 0], [0, 0, 0], [0, 1, 1]])
    check(out, [[4, 0, 2]], [[4, 2, 2]], [[4, 0, 4]], 2 * confusion, {kernels.IGNORED: 4})

    # Whatever was in the outputs beforehand is kept.
    start = [np.full_like(a, 10) for a in outputs(1, 3)]
    out = run_hard(SCORES, TRUTH, 3, out=tuple(start))
    check(
        out,
        TP + 10,
        PRED + 10,
        TRUE + 10,
        CONFUSION + 10,
        dict.fromkeys(range(kernels.N_STATS), 10),
    )


def test_bad_truth_labels():
    truth = np.array([[0, 1, 5, 2, 1, -3]], dtype=np.int64)
    tp, pred, true, conf, stats = run_hard(SCORES, truth, 3)
    assert stats[kernels.TRUE_BAD] == 2
    assert stats[kernels.TRUE_BAD_VALUE] in (5, -3)
    assert stats[kernels.PRED_BAD] == 0
    # Pixels 2 and 5 are not counted at all (neither their truth nor their prediction).
    np.testing.assert_array_equal(conf, [[1, 0, 0], [0, 1, 1], [0, 1, 0]])
    np.testing.assert_array_equal(pred, [[1, 2, 1]])
    np.testing.assert_array_equal(true, [[1, 2, 1]])
    np.testing.assert_array_equal(tp, [[1, 1, 0]])


def test_bad_predicted_labels():
    pred_labels = np.array([[0, 2, 7, 1, 1, 0]], dtype=np.int64)
    *_, conf, stats = run_hard(pred_labels, TRUTH, 3)
    assert stats[kernels.PRED_BAD] == 1
    assert stats[kernels.PRED_BAD_VALUE] == 7
    assert stats[kernels.TRUE_BAD] == 0
    assert conf.sum() == 5


def test_truth_equal_to_ignore_is_not_bad():
    truth = np.array([[0, 1, 9, 2, 1, 9]], dtype=np.int64)
    *_, conf, stats = run_hard(SCORES, truth, 3, ignore=9)
    assert stats[kernels.TRUE_BAD] == 0
    assert stats[kernels.IGNORED] == 2
    assert conf.sum() == 4


@pytest.mark.parametrize("layout", ["channels_last", "channels_first"])
def test_nan_scores_are_counted_per_pixel(layout):
    scores = SCORES.copy()
    scores[0, 2, 1] = np.nan  # pixel 2: one NaN class
    scores[0, 4, :] = np.nan  # pixel 4: every class NaN, still one pixel
    pred = scores if layout == "channels_last" else channels_first(scores)
    _, _, tc, conf, stats = run_hard(pred, TRUTH, 3)
    assert stats[kernels.PRED_NAN] == 2
    assert stats[kernels.TRUE_NAN] == 0
    # Pixels 2 (truth 2, pred 2) and 4 (truth 1, pred 1) are not counted.
    np.testing.assert_array_equal(conf, [[2, 0, 0], [0, 0, 1], [0, 1, 0]])
    np.testing.assert_array_equal(tc, [[2, 1, 1]])


def test_nan_in_truth_scores():
    truth = np.eye(3, dtype=np.float32)[TRUTH]
    truth[0, 0, 0] = np.nan
    *_, conf, stats = run_hard(SCORES, truth, 3)
    assert stats[kernels.TRUE_NAN] == 1
    assert stats[kernels.PRED_NAN] == 0
    np.testing.assert_array_equal(conf, CONFUSION - np.diag([1, 0, 0]))


def test_one_class_threshold():
    # N = 1: a pixel is the class when its value is > 0 (-0.0 and 0.0 are not).
    #   pixel   0     1     2     3     4     5
    #   pred    1    -1     0    -0     2   0.5    -> class at 0, 4, 5
    #   truth   1     1     0     1     0  0.25    -> class at 0, 1, 3, 5
    # both: 0, 5 -> tp 2; pred 3; true 4.
    pred = np.array([[1.0, -1.0, 0.0, -0.0, 2.0, 0.5]], np.float32)[..., None]
    truth = np.array([[1.0, 1.0, 0.0, 1.0, 0.0, 0.25]], np.float32)[..., None]
    check(run_hard(pred, truth, 1), [[2]], [[3]], [[4]], [[2]])
    check(run_hard(channels_first(pred), channels_first(truth), 1), [[2]], [[3]], [[4]], [[2]])


def test_block_boundaries():
    # More pixels than one block, not a multiple of it; B = 1 and B = 3 take the two
    # parallel paths (blocks of one image / whole images).
    rng = np.random.default_rng(0)
    n = 4
    for b in (1, 3):
        p = 2 * kernels.BLOCK + 5
        scores = rng.standard_normal((b, p, n)).astype(np.float32)
        truth = rng.integers(0, n, (b, p))
        labels = scores.argmax(-1)
        expected = np.bincount((truth * n + labels).ravel(), minlength=n * n).reshape(n, n)
        *_, conf, stats = run_hard(scores, truth, n)
        np.testing.assert_array_equal(conf, expected)
        assert not stats.any()
        # Inner runs of 7 pixels: BLOCK is not a multiple of 7, so blocks cut runs.
        middle = class_in_middle(scores[:, : 7 * (p // 7)], p // 7)
        sub = (truth[:, : 7 * (p // 7)] * n + labels[:, : 7 * (p // 7)]).ravel()
        *_, conf, _ = run_hard(middle, truth[:, : 7 * (p // 7)].copy(), n)
        np.testing.assert_array_equal(conf, np.bincount(sub, minlength=n * n).reshape(n, n))


# --------------------------------------------------------------------------------------
# Soft sums, one image of 4 pixels, 2 classes (dyadic values: every sum is exact).
#
#   pixel    p0     p1     truth label   one-hot-ish truth t
#   0       0.75   0.25    0             [1,    0   ]
#   1       0.5    0.5     1             [0.5,  0.5 ]
#   2      -0.25   1.0     1             [0,    1   ]
#   3       1.0    0.0     0             [0.25, 0.75]
#
# label truth: inter c0 = 0.75 + 1.0 = 1.75, c1 = 0.5 + 1.0 = 1.5
#              pred_sum |p|: c0 = 2.5, c1 = 1.75; true_sum = [2, 2]
# score truth: inter c0 = 0.75 + 0.25 + 0 + 0.25 = 1.25, c1 = 0 + 0.25 + 1 + 0 = 1.25
#              true_sum c0 = 1.75, c1 = 2.25
# One prediction value lies outside [0, 1]: -0.25 (pixel 2); the truth has none.
# --------------------------------------------------------------------------------------
SOFT_P = np.array([[[0.75, 0.25], [0.5, 0.5], [-0.25, 1.0], [1.0, 0.0]]], np.float32)
SOFT_LABELS = np.array([[0, 1, 1, 0]], np.int64)
SOFT_T = np.array([[[1, 0], [0.5, 0.5], [0, 1], [0.25, 0.75]]], np.float32)


def float_stat(stats, slot):
    """The float64 stored as bits in an int64 stats slot (the *_RANGE_VALUE slots)."""
    return float(stats[slot : slot + 1].view(np.float64)[0])


def assert_soft_stats(stats, pred_range=(0, None), true_range=(0, None), **counts):
    """Range slots as (count, example); every other slot 0 unless given by name."""
    for (count, example), slot, value in (
        (pred_range, kernels.PRED_RANGE, kernels.PRED_RANGE_VALUE),
        (true_range, kernels.TRUE_RANGE, kernels.TRUE_RANGE_VALUE),
    ):
        assert stats[slot] == count
        if count:
            assert float_stat(stats, value) == example
        else:
            assert stats[value] == 0
    others = [s for s in range(kernels.N_STATS) if s not in (
        kernels.PRED_RANGE, kernels.PRED_RANGE_VALUE, kernels.TRUE_RANGE,
        kernels.TRUE_RANGE_VALUE)]  # fmt: skip
    expected = {getattr(kernels, name): v for name, v in counts.items()}
    for slot in others:
        assert stats[slot] == expected.get(slot, 0), slot


@pytest.mark.parametrize("layout", ["channels_last", "channels_first"])
def test_soft_sums_label_truth(layout):
    pred = SOFT_P if layout == "channels_last" else channels_first(SOFT_P)
    inter, ps, ts, stats = run_soft(pred, SOFT_LABELS, 2)
    np.testing.assert_array_equal(inter, [[1.75, 1.5]])
    np.testing.assert_array_equal(ps, [[2.5, 1.75]])
    np.testing.assert_array_equal(ts, [[2.0, 2.0]])
    assert_soft_stats(stats, pred_range=(1, -0.25))


def test_soft_sums_score_truth():
    inter, ps, ts, stats = run_soft(SOFT_P, SOFT_T, 2)
    np.testing.assert_array_equal(inter, [[1.25, 1.25]])
    np.testing.assert_array_equal(ps, [[2.5, 1.75]])
    np.testing.assert_array_equal(ts, [[1.75, 2.25]])
    assert_soft_stats(stats, pred_range=(1, -0.25))
    inter4, ps4, ts4, stats4 = run_soft(channels_first(SOFT_P), channels_first(SOFT_T), 2)
    np.testing.assert_array_equal(inter4, inter)
    np.testing.assert_array_equal(ps4, ps)
    np.testing.assert_array_equal(ts4, ts)
    np.testing.assert_array_equal(stats4, stats)


def test_soft_sums_ignore():
    # Ignoring label 1 drops pixels 1 and 2: inter [1.75, 0], |p| c0 0.75 + 1 = 1.75,
    # c1 0.25 + 0 = 0.25, true [2, 0].
    inter, ps, ts, stats = run_soft(SOFT_P, SOFT_LABELS, 2, ignore=1)
    np.testing.assert_array_equal(inter, [[1.75, 0.0]])
    np.testing.assert_array_equal(ps, [[1.75, 0.25]])
    np.testing.assert_array_equal(ts, [[2.0, 0.0]])
    assert stats[kernels.IGNORED] == 2
    assert stats[kernels.PRED_RANGE] == 0  # -0.25 is at an ignored pixel: not checked
    # With score truth the ignore index applies to its argmax: pixels 2 and 3 (argmax 1;
    # pixel 1 is a tie -> 0). Left: pixels 0, 1.
    inter, ps, ts, stats = run_soft(SOFT_P, SOFT_T, 2, ignore=1)
    np.testing.assert_array_equal(inter, [[1.0, 0.25]])
    np.testing.assert_array_equal(ps, [[1.25, 0.75]])
    np.testing.assert_array_equal(ts, [[1.5, 0.5]])
    assert stats[kernels.IGNORED] == 2


def test_soft_sums_add_into_outputs():
    inter, ps, ts = (np.ones((1, 2)) for _ in range(3))
    stats = np.zeros(kernels.N_STATS, np.int64)
    for _ in range(2):
        kernels.soft_sums(SOFT_P, SOFT_LABELS, classes(2), kernels.SoftSums(inter, ps, ts),
                          stats, threads())  # fmt: skip
    np.testing.assert_array_equal(inter, [[1 + 2 * 1.75, 1 + 2 * 1.5]])
    np.testing.assert_array_equal(ps, [[1 + 2 * 2.5, 1 + 2 * 1.75]])
    np.testing.assert_array_equal(ts, [[5.0, 5.0]])


def test_soft_sums_bad_labels_and_nan():
    labels = np.array([[0, 3, 1, 0]], np.int64)
    inter, ps, ts, stats = run_soft(SOFT_P, labels, 2)
    assert stats[kernels.TRUE_BAD] == 1
    assert stats[kernels.TRUE_BAD_VALUE] == 3
    # Pixel 1 is skipped: c1 inter = 1.0, |p| c0 = 2.0, c1 = 1.25.
    np.testing.assert_array_equal(inter, [[1.75, 1.0]])
    np.testing.assert_array_equal(ps, [[2.0, 1.25]])
    np.testing.assert_array_equal(ts, [[2.0, 1.0]])

    pred = SOFT_P.copy()
    pred[0, 3, 0] = np.nan
    *_, stats = run_soft(pred, SOFT_LABELS, 2)
    assert stats[kernels.PRED_NAN] == 1


@pytest.mark.parametrize("n", [2, 5, 19, 31])
@pytest.mark.parametrize("negative", [False, True])
def test_float16_channels_last_fast_path_matches_bincount(n, negative):
    """Blocks of float16 scores take a four-pixel path (raw bits if no score is negative,
    keys otherwise); a block with a NaN falls back to the exact per-pixel loop."""
    rng = np.random.default_rng(n)
    b, h, w = 2, 130, 300  # more pixels per image than one kernel block
    scores = rng.random((b, h, w, n)).astype(np.float16)  # softmax-like: all bits vary
    if negative:
        scores -= np.float16(0.5)
    scores[rng.random(scores.shape) < 0.2] = -0.0 if negative else 0.0  # +-0
    scores[..., -1] = np.where(rng.random((b, h, w)) < 0.3, scores[..., 0], scores[..., -1])
    truth = rng.integers(0, n, (b, h, w)).astype(np.uint8)
    truth[rng.random(truth.shape) < 0.1] = 255
    keep = truth != 255
    labels = scores.astype(np.float32).argmax(-1)
    expected = np.bincount(truth[keep].astype(np.int64) * n + labels[keep],
                           minlength=n * n).reshape(n, n)  # fmt: skip
    assert (fastseg.confusion_matrix(truth, scores, ignore_index=255) == expected).all()

    ignored_nan = scores.copy()
    ignored_nan[(*np.argwhere(~keep)[0], 0)] = np.nan  # not counted: its truth is ignored
    assert (fastseg.confusion_matrix(truth, ignored_nan, ignore_index=255) == expected).all()
    kept_nan = scores.copy()
    kept_nan[(*np.argwhere(keep)[5], n - 1)] = np.nan
    with pytest.raises(ValueError, match="NaN scores at 1 pixels"):
        fastseg.counts(truth, kept_nan, ignore_index=255)


# --------------------------------------------------------------------------------------
# Soft values outside [0, 1]: counted (never refused) by the kernel.
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["channels_last", "channels_first"])
@pytest.mark.parametrize("truth_kind", ["labels", "scores"])
@pytest.mark.parametrize("b", [1, 3])
def test_soft_range_counts_match_numpy(layout, truth_kind, b):
    """Values < 0 or > 1 (infinities too, NaN not) at counted pixels, as NumPy counts them;
    B = 1 spreads one image over 3 blocks (blocks in parallel), B = 3 takes whole images."""
    rng = np.random.default_rng([50, b, len(layout), len(truth_kind)])
    n = 3
    p = 2 * kernels.BLOCK + 5 if b == 1 else 1000
    scores = rng.random((b, p, n)).astype(np.float32)
    scores[rng.random(scores.shape) < 0.01] = 3.5  # logits
    scores[rng.random(scores.shape) < 0.01] = -0.5
    scores[0, 7] = [np.inf, -np.inf, np.nan]
    scores[0, 8] = [0.0, 1.0, np.nan]  # bounds are in range, NaN is not "out of range"
    labels = rng.integers(0, n, (b, p))
    if truth_kind == "labels":
        ignore = 2
        truth = labels
        keep = labels != ignore
        truth_values = None
    else:
        ignore = 1  # applies to the truth's argmax
        truth = rng.random((b, p, n)).astype(np.float32)
        truth[rng.random(truth.shape) < 0.01] = 2.0
        truth[rng.random(truth.shape) < 0.01] = -1.0
        keep = truth.argmax(-1) != ignore
        truth_values = truth[keep]
    pred = scores if layout == "channels_last" else channels_first(scores)
    true = truth
    if truth_kind == "scores" and layout == "channels_first":
        true = channels_first(truth)
    *_, stats = run_soft(pred, true, n, ignore=ignore)

    def out_of_range(values):
        return values[(values < 0) | (values > 1)]

    pred_out = out_of_range(scores[keep])
    assert stats[kernels.PRED_RANGE] == pred_out.size > 0
    assert float_stat(stats, kernels.PRED_RANGE_VALUE) in set(pred_out.tolist())
    assert stats[kernels.PRED_NAN] == np.isnan(scores[keep]).any(-1).sum()
    if truth_values is None:
        assert stats[kernels.TRUE_RANGE] == stats[kernels.TRUE_RANGE_VALUE] == 0
    else:
        true_out = out_of_range(truth_values)
        assert stats[kernels.TRUE_RANGE] == true_out.size > 0
        assert float_stat(stats, kernels.TRUE_RANGE_VALUE) in set(true_out.tolist())
    assert stats[kernels.IGNORED] == (~keep).sum()


# --------------------------------------------------------------------------------------
# Many classes: hard_counts_shared (one shared table, rows / columns owned by threads).
# --------------------------------------------------------------------------------------

LARGE_N = 3000


def test_hard_kernel_choice():
    """Per-thread tables while they fit the confusion matrix's size plus TABLE_SLACK."""
    assert kernels.hard_kernel(21, 64) is kernels.hard_counts
    assert kernels.hard_kernel(150, 32) is kernels.hard_counts
    assert kernels.hard_kernel(150, 64) is kernels.hard_counts_shared
    assert kernels.hard_kernel(1000, 1) is kernels.hard_counts
    assert kernels.hard_kernel(1000, 2) is kernels.hard_counts_shared
    assert kernels.hard_kernel(LARGE_N, 1) is kernels.hard_counts_shared
    assert kernels.hard_kernel(2, 1, table_slack=0) is kernels.hard_counts_shared
    assert kernels.hard_kernel(LARGE_N, 64, table_slack=2**60) is kernels.hard_counts
    # The boundary: T * ((N + 3) * (N + 2) + N^2) * 8 <= N^2 * 8 + slack.
    n, t = 100, 4
    need = t * ((n + 3) * (n + 2) + n**2) * 8 - n**2 * 8
    assert kernels.thread_tables_fit(n, t, need)
    assert not kernels.thread_tables_fit(n, t, need - 1)


def bincount_expected(truth, pred_labels, n, ignore=None, pred_nan=None):
    """tp, pred, true, confusion and stats of label maps (B, P), by np.bincount.

    ``pred_nan`` marks pixels whose scores hold a NaN. Stats are a dict slot -> value,
    with the sets of possible example values under *_BAD_VALUE.
    """
    t = np.asarray(truth, np.int64)
    p = np.asarray(pred_labels, np.int64)
    b = t.shape[0]
    ignored = t == ignore if ignore is not None else np.zeros(t.shape, bool)
    t_bad = ~ignored & ((t < 0) | (t >= n))
    kept = ~ignored & ~t_bad
    nan = np.zeros(t.shape, bool) if pred_nan is None else pred_nan
    p_bad = kept & ~nan & ((p < 0) | (p >= n))
    ok = kept & ~nan & ~p_bad
    tp, pc, tc = (np.zeros((b, n), np.int64) for _ in range(3))
    for i in range(b):
        ti, pi = t[i][ok[i]], p[i][ok[i]]
        tc[i] = np.bincount(ti, minlength=n)
        pc[i] = np.bincount(pi, minlength=n)
        tp[i] = np.bincount(ti[ti == pi], minlength=n)
    confusion = np.bincount(t[ok] * n + p[ok], minlength=n * n).reshape(n, n)
    stats = {
        kernels.TRUE_BAD: t_bad.sum(),
        kernels.TRUE_BAD_VALUE: set(t[t_bad].tolist()) or {0},
        kernels.PRED_BAD: p_bad.sum(),
        kernels.PRED_BAD_VALUE: set(p[p_bad].tolist()) or {0},
        kernels.PRED_NAN: (kept & nan).sum(),
        kernels.IGNORED: ignored.sum(),
    }
    return tp, pc, tc, confusion, stats


def _read_through(ids, codes):
    """Label ids read through a kernels.LabelCodes map, as NumPy."""
    table = np.asarray(codes.table, np.int64)
    if not table.size:
        return np.asarray(ids, np.int64)
    ids = np.asarray(ids, np.int64)
    inside = (ids >= 0) & (ids < table.size)
    return np.where(inside, table[np.where(inside, ids, 0)], codes.default)


#: (pred dtype, true dtype) pairs of label maps: each dtype with itself, and mixed.
LABEL_PAIRS = [(d, d) for d in kernels.LABEL_DTYPES] + [("uint8", "int64"), ("int32", "uint16")]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize(("pred_dtype", "true_dtype"), LABEL_PAIRS)
@pytest.mark.parametrize("ignore", [None, 255, -1, 70000])
@pytest.mark.parametrize("mapped", [False, True])
def test_label_pairs_match_bincount(pred_dtype, true_dtype, ignore, mapped, threads):
    """Two label maps (the lookup-table tally, fused for two uint8 maps): every dtype,
    with and without label-id maps, ignore indices inside and outside the tables, ids
    outside them, invalid labels on either side; whole images and a split last image;
    images whose size is not a multiple of the 8 pixels read at once."""
    if threads > numba.config.NUMBA_NUM_THREADS:
        pytest.skip(f"needs {threads} Numba threads")
    pred_dt, true_dt = np.dtype(pred_dtype), np.dtype(true_dtype)
    if ignore is not None and not np.can_cast(np.min_scalar_type(ignore), true_dt):
        pytest.skip("the ignore index is not a value of the truth's dtype")
    n, b, p = 6, 3, kernels.BLOCK + 13
    rng = np.random.default_rng([n, b, p, pred_dt.num, true_dt.num, threads])

    def ids(dtype, shape):
        top = min(np.iinfo(dtype).max, 300) + 1
        x = rng.integers(0, 12, shape)  # mostly classes and a few ids beyond N
        rare = rng.random(shape) < 0.03
        x[rare] = rng.integers(np.iinfo(dtype).min if dtype.kind == "i" else 0, top, rare.sum())
        return x.astype(dtype)

    truth, pred = ids(true_dt, (b, p)), ids(pred_dt, (b, p))
    if ignore is not None:
        truth[rng.random(truth.shape) < 0.05] = ignore
    codes = pred_codes = kernels.NO_CODES
    if mapped:  # ids 0..9 onto the classes (two of them to nothing), beyond: the default
        codes = kernels.LabelCodes(np.array([3, 2, 1, 0, 5, 4, 7, -1, 2, 1], np.int32),
                                   255 if ignore is None else ignore)  # fmt: skip
        pred_codes = kernels.LabelCodes(np.array([5, 4, 3, 2, 1, 0, 9], np.int32), 6)
    c = kernels.Classes(n, ignore is not None, 0 if ignore is None else ignore, codes,
                        pred_codes)  # fmt: skip
    expected = bincount_expected(_read_through(truth, codes), _read_through(pred, pred_codes),
                                 n, ignore)  # fmt: skip
    # Example values are stored ids (before the map).
    t_lab, p_lab = _read_through(truth, codes), _read_through(pred, pred_codes)
    t_bad = ((t_lab < 0) | (t_lab >= n)) & (t_lab != (n + 10**6 if ignore is None else ignore))
    kept = ~t_bad & (t_lab != (n + 10**6 if ignore is None else ignore))
    expected[4][kernels.TRUE_BAD_VALUE] = set(truth[t_bad].astype(np.int64).tolist()) or {0}
    p_bad = kept & ((p_lab < 0) | (p_lab >= n))
    expected[4][kernels.PRED_BAD_VALUE] = set(pred[p_bad].astype(np.int64).tolist()) or {0}
    assert expected[4][kernels.TRUE_BAD]
    assert expected[4][kernels.PRED_BAD]
    out = outputs(b, n)
    kernels.hard_counts(pred, truth, c, kernels.HardCounts(*out[:4]), out[4], threads)
    assert_expected(out, expected)


def assert_expected(out, expected):
    for name, got, want in zip(("tp", "pred", "true", "confusion"), out[:4], expected[:4],
                               strict=True):  # fmt: skip
        np.testing.assert_array_equal(got, want, err_msg=name)
    stats = out[4]
    for slot in range(kernels.N_STATS):
        want = expected[4].get(slot, 0)
        if isinstance(want, set):
            assert stats[slot] in want, slot
        else:
            assert stats[slot] == want, slot


def shared_case(layout, n, b, p, seed):
    """(pred, truth, expected) with ignored, invalid truth and NaN / invalid predictions."""
    rng = np.random.default_rng([seed, n, b, p, len(layout)])
    ignore = n + 1
    truth = rng.integers(0, n, (b, p))
    truth[rng.random(truth.shape) < 0.05] = ignore
    truth[rng.random(truth.shape) < 0.01] = n + 5
    truth[rng.random(truth.shape) < 0.01] = -3
    if layout == "labels":
        pred = rng.integers(0, n, (b, p))
        pred[rng.random(pred.shape) < 0.01] = n
        pred[rng.random(pred.shape) < 0.01] = -2
        return pred, truth, ignore, bincount_expected(truth, pred, n, ignore)
    scores = rng.random((b, p, n), np.float32)
    nan = rng.random((b, p)) < 0.02
    scores[nan, rng.integers(0, n)] = np.nan
    labels = np.where(np.isnan(scores), -1, scores).argmax(-1)
    expected = bincount_expected(truth, labels, n, ignore, nan)
    if layout == "channels_first":
        scores = channels_first(scores)
    elif layout == "class_in_middle":
        scores = class_in_middle(scores, 7)
    return scores, truth, ignore, expected


#: (layout, N, B, P, table_slack): the first cases take the shared kernel by their size;
#: the others are forced onto it with a zero slack. P = 2 * BLOCK + 5 splits an image over
#: 3 chunks and makes chunks cross image boundaries.
SHARED_CASES = [
    ("labels", LARGE_N, 3, 2 * kernels.BLOCK + 5, None),
    ("labels", LARGE_N, 1, 2 * kernels.BLOCK + 5, None),
    ("channels_last", LARGE_N, 4, 64, None),
    ("channels_first", LARGE_N, 5, 48, None),
    ("labels", 5, 3, 2 * kernels.BLOCK + 5, 0),
    ("labels", 3, 4, 1000, 0),  # fewer classes than threads: some own nothing
    ("channels_last", 5, 1, 2 * kernels.BLOCK + 5, 0),
    ("channels_last", 5, 3, 2 * kernels.BLOCK + 5, 0),
    ("channels_first", 5, 3, 2 * kernels.BLOCK + 5, 0),
    ("class_in_middle", 5, 2, 7 * 9363, 0),
]


def check_shared_cases(thread_counts):
    """Every SHARED_CASES case at each thread count, where hard_kernel picks the shared
    kernel: equal to bincount (the small cases also to hard_counts)."""
    saved = numba.get_num_threads()
    try:
        for threads in thread_counts:
            numba.set_num_threads(threads)
            for layout, n, b, p, slack in SHARED_CASES:
                pred, truth, ignore, expected = shared_case(layout, n, b, p, seed=60)
                assert kernels.hard_kernel(n, threads, slack) is kernels.hard_counts_shared
                # The small cases also against the per-thread kernel.
                kernel_list = [kernels.hard_counts_shared]
                if n < LARGE_N:
                    kernel_list.append(kernels.hard_counts)
                for kernel in kernel_list:
                    out = outputs(b, n)
                    kernel(pred, truth, classes(n, ignore), kernels.HardCounts(*out[:4]),
                           out[4], threads)  # fmt: skip
                    assert_expected(out, expected)
    finally:
        numba.set_num_threads(saved)


@pytest.mark.parametrize("threads", [1, 2])
def test_shared_kernel_matches_bincount(threads):
    if threads > numba.config.NUMBA_NUM_THREADS:
        pytest.skip(f"needs {threads} Numba threads")
    check_shared_cases([threads])


def test_shared_kernel_with_more_threads_than_cores():
    """NUMBA_NUM_THREADS = 5 (more than this machine's cores, more than some N)."""
    threads = max(5, (os.cpu_count() or 1) + 1)
    root = Path(kernels.__file__).resolve().parents[1]
    code = (
        f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
        f"import test_kernels; test_kernels.check_shared_cases([{threads}, 3])"
    )
    path = os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "NUMBA_NUM_THREADS": str(threads), "PYTHONPATH": path}
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=False)  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]


def test_shared_kernel_one_class_threshold():
    """N = 1: label 1 is "no class", in the truth and the prediction (channels-first
    rewrites the labels of ignored pixels: they must still be skipped)."""
    pred = np.array([[1.0, -1.0, 0.0, -0.0, 2.0, 0.5]], np.float32)[..., None]
    truth = np.array([[1.0, 1.0, 0.0, 1.0, 0.0, 0.25]], np.float32)[..., None]
    kernel = kernels.hard_kernel(1, threads(), table_slack=0)
    assert kernel is kernels.hard_counts_shared
    out = outputs(1, 1)
    kernel(channels_first(pred), channels_first(truth), classes(1), kernels.HardCounts(*out[:4]),
           out[4], threads())  # fmt: skip
    check(out, [[2]], [[3]], [[4]], [[2]])
    # Ignoring class 0 of the truth leaves pixels 2 and 4 (truth "no class"): pred 1.
    out = outputs(1, 1)
    kernel(channels_first(pred), channels_first(truth), classes(1, 0),
           kernels.HardCounts(*out[:4]), out[4], threads())  # fmt: skip
    check(out, [[0]], [[1]], [[0]], [[0]], {kernels.IGNORED: 4})


# --------------------------------------------------------------------------------------
# Compiled signatures: the table of kernels.SIGNATURES, and nothing else.
# --------------------------------------------------------------------------------------

ROOT = Path(kernels.__file__).resolve().parents[1]


def argument_types(pred, true, n=3):
    """The Numba types of a kernel's inputs and classes for the slab (pred, true): the
    part of a signature that depends on the data (the rest is fixed per kernel)."""
    args = (kernels.kernel_input(pred), kernels.kernel_input(true), kernels.Classes(n, False, 0))
    return tuple(numba.typeof(a) for a in args)


def input_types(table):
    return {sig[:3] for sig in table}


def test_signature_table():
    hard = kernels.SIGNATURES["hard_counts"]
    shared = kernels.SIGNATURES["hard_counts_shared"]
    soft = kernels.SIGNATURES["soft_sums"]
    assert input_types(shared) == input_types(hard)
    # Each input a label map (4 dtypes) or scores (6 dtypes, 3 or 4 dimensions); two
    # score inputs have one shape. Soft: scores (5 dtypes) with a label map or scores.
    # Hard counts: each pair with confidence histograms (Calibration) or without (None).
    assert len(hard) == len(shared) == 2 * (16**2 - 2 * 6 * 6)
    assert len(soft) == 2 * 5 * (4 + 5)
    for sig in hard | shared | soft:
        assert [a.layout for a in sig[:2]] == ["C", "C"]
        assert [a.mutable for a in sig[:2]] == [False, False]  # readonly inputs
        assert sig[3][0].mutable  # writable outputs
        buffers = sig[4] if isinstance(sig[4], numba.types.Array) else sig[4][0]
        assert buffers.mutable
    assert {s[0].dtype.name for s in hard} == set(kernels.SCORE_DTYPES)
    assert {s[1].dtype.name for s in hard if s[1].ndim == 2} == set(kernels.LABEL_DTYPES)
    assert {s[0].dtype.name for s in soft} == set(kernels.SOFT_SCORE_DTYPES)


def readonly(a):
    a = a.copy()
    a.flags.writeable = False
    return a


def unaligned(a):
    """A copy of `a` whose data starts one byte past an aligned address."""
    u = np.empty(a.nbytes + 1, np.uint8)[1:].view(a.dtype).reshape(a.shape)
    u[...] = a
    return u


#: Layouts every input may come in, each onto the same few kernel signatures.
INPUT_LAYOUTS = {
    "c": lambda a: a,
    "readonly": readonly,
    "fortran": np.asfortranarray,
    "strided_batch": lambda a: np.repeat(a, 2, axis=0)[::2],
    "cropped": lambda a: np.pad(a, [(0, 0), (0, 1)] + [(0, 0)] * (a.ndim - 2))[:, :-1],
    "byteswapped": lambda a: a.astype(a.dtype.newbyteorder()),
    "unaligned": unaligned,
}
INPUT_DTYPES = ["bool", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64",
                "uint64", "float16", "float32", "float64"]  # fmt: skip


def prepared_cases():
    """(name, truth, pred, keywords, tested input) for every input dtype, layout and kind.

    The tested input (``"true"`` or ``"pred"``) has the dtype and layout named; the other
    one is a C-contiguous array the kernels read as it is.
    """
    rng = np.random.default_rng(80)
    n = 3
    labels = rng.integers(0, n, (3, 5, 7))
    scores = rng.random((3, 5, 7, n), np.float32)
    for dtype in INPUT_DTYPES:
        for layout, make in INPUT_LAYOUTS.items():
            name = f"{dtype}-{layout}"
            if np.dtype(dtype).kind != "f":
                label_map = make(labels.astype(dtype) if dtype != "bool" else labels > 0)
                yield f"{name}-truth-labels", label_map, scores, {}, "true"
                if dtype != "bool":  # two bool maps of one shape read as one-hot masks
                    yield f"{name}-pred-labels", labels.astype(np.uint8), label_map, {
                        "num_classes": n}, "pred"  # fmt: skip
            typed = make(scores.astype(dtype) if dtype != "bool" else scores > 0.5)
            first = make(np.ascontiguousarray(np.moveaxis(scores, -1, 1)).astype(dtype))
            yield f"{name}-last", labels, typed, {}, "pred"
            yield f"{name}-first", labels, first, {"class_axis": 1}, "pred"
            yield f"{name}-one-hot-truth", typed, scores, {}, "true"
            # The class axis moved in a view: read where it lies in memory (no copy).
            yield f"{name}-moved-to-first", labels, np.moveaxis(typed, -1, 1), {
                "class_axis": 1}, "pred"  # fmt: skip
            yield f"{name}-moved-to-last", labels, np.moveaxis(first, 1, -1), {}, "pred"


#: Input dtypes the kernels read without a copy (as they are, or viewed as another dtype
#: of the same size: bool as uint8, float16 as its uint16 bits, uint64 labels as int64).
VIEWED = {
    "labels": {"bool", "uint8", "uint16", "int32", "int64", "uint64"},
    "hard": {"bool", "uint8", "int32", "int64", "float16", "float32", "float64"},
    "soft": {"bool", "uint8", "int32", "int64", "float32", "float64"},
}


@pytest.mark.parametrize("soft", [False, True])
def test_every_input_reaches_a_listed_signature(soft):
    """prepare() views or converts every dtype and layout onto SIGNATURES (no kernel
    runs here: this compiles nothing). C-contiguous inputs of a listed dtype, readonly
    ones and those whose class axis was moved in a view are read without a copy; others
    are converted slab by slab, within SLAB_BYTES."""
    table = input_types(kernels.SIGNATURES["soft_sums" if soft else "hard_counts"])
    seen = 0
    for name, truth, pred, kw, tested in prepared_cases():
        if soft and "pred-labels" in name:
            continue  # soft sums need score predictions
        prep = fastseg.inputs.prepare(truth, pred, soft=soft, **kw)
        for _, p, t in prep.slabs():
            assert argument_types(p, t) in table, name
            for view, convert in ((p, prep.pred_convert), (t, prep.true_convert)):
                if convert is not None:
                    assert view.nbytes <= fastseg.inputs.SLAB_BYTES or view.shape[0] == 1
            seen += 1
        dtype, layout = name.split("-")[:2]
        kind = "labels" if name.endswith("-labels") else "soft" if soft else "hard"
        convert = prep.pred_convert if tested == "pred" else prep.true_convert
        other = prep.true_convert if tested == "pred" else prep.pred_convert
        assert other is None, name
        if layout in ("c", "readonly"):
            assert (convert is None) == (dtype in VIEWED[kind]), name
        elif layout in ("fortran", "strided_batch", "cropped"):
            assert convert is not None, name
    assert seen > 400


def test_kernels_refuse_what_they_are_not_compiled_for():
    """A TypeError (a ValueError for output shapes), never a new compilation."""
    before = {name: len(getattr(f, "signatures", ())) for name, f in kernels.COMPILED.items()}
    scores = SCORES.copy()
    refused = [
        (np.asfortranarray(np.repeat(scores, 2, axis=0)), np.repeat(TRUTH, 2, axis=0)),
        (scores[:, ::2], TRUTH[:, ::2]),
        (scores.astype(">f4"), TRUTH),
        (scores.astype(np.float16), TRUTH),  # float16 goes in as its bits
        (scores, TRUTH.astype(np.int16)),
        (scores, TRUTH.astype(np.float32)),
        (scores[..., None, None], TRUTH),
        (scores.tolist(), TRUTH),
    ]
    for pred, true in refused:
        for kernel in (kernels.hard_counts, kernels.hard_counts_shared):
            with pytest.raises(TypeError):
                run_hard_with(kernel, pred, true, 3)
        with pytest.raises(TypeError):
            run_soft_with(pred, true, 3)
    with pytest.raises(TypeError, match="soft_sums are not compiled"):
        run_soft_with(PRED_LABELS, TRUTH, 3)  # label-map predictions have no soft sums
    tp, pc, tc, conf, stats = outputs(1, 3)
    for counts, out_stats in (
        (kernels.HardCounts(tp, pc, tc, conf[:2]), stats),
        (kernels.HardCounts(tp[:, :2], pc, tc, conf), stats),
        (kernels.HardCounts(tp, pc, tc, conf), stats[:5]),
    ):
        with pytest.raises(ValueError, match="must have shape"):
            kernels.hard_counts(SCORES, TRUTH, classes(3), counts, out_stats, threads())
    with pytest.raises(TypeError, match="writable C-contiguous int64"):
        kernels.hard_counts(SCORES, TRUTH, classes(3), kernels.HardCounts(tp, pc, tc, conf.T),
                            stats, threads())  # fmt: skip
    after = {name: len(getattr(f, "signatures", ())) for name, f in kernels.COMPILED.items()}
    assert after == before


def run_hard_with(kernel, pred, true, n):
    tp, pc, tc, conf, stats = outputs(np.shape(pred)[0], n)
    kernel(pred, true, classes(n), kernels.HardCounts(tp, pc, tc, conf), stats, threads())


def run_soft_with(pred, true, n):
    sums = kernels.SoftSums(*(np.zeros((np.shape(pred)[0], n)) for _ in range(3)))
    kernels.soft_sums(pred, true, classes(n), sums, np.zeros(kernels.N_STATS, np.int64),
                      threads())  # fmt: skip


def entry_points(monkeypatch):
    """name -> f(truth, pred, keywords): every way into the kernels, with a comparable result."""
    n = 4

    def shared(t, p, kw):
        with monkeypatch.context() as m:
            m.setattr(kernels, "TABLE_SLACK", 0)
            return fastseg.counts(t, p, **kw)

    def accumulator(t, p, kw):
        kw = {k: v for k, v in kw.items() if k != "num_classes"}
        return fastseg.Accumulator(n, **kw).update(t, p).counts

    def evaluate(t, p, kw):
        return fastseg.evaluate(t, p, progress=False, workers=1, **kw).counts

    def post(t, p, kw):
        kw = {k: v for k, v in kw.items() if k != "num_classes"}
        return fastseg.metrics(t, p, "iou", num_classes=n, **kw)

    return {
        "counts": lambda t, p, kw: fastseg.counts(t, p, **kw),
        "soft": lambda t, p, kw: fastseg.counts(t, p, soft=True, **kw),
        "shared": shared,
        "post": post,
        "accumulator": accumulator,
        "evaluate": evaluate,
    }


def same(a, b):
    if isinstance(a, fastseg.Counts):
        return a == b
    return bool(np.array_equal(np.asarray(a), np.asarray(b), equal_nan=True))


@pytest.mark.slow
def test_layouts_and_entry_points_compile_nothing_new(monkeypatch):
    """Every entry point, on inputs of every layout: the results equal those of
    C-contiguous inputs, and no kernel specialisation beyond theirs is compiled (nor
    anything outside SIGNATURES)."""
    rng = np.random.default_rng(90)
    n = 4
    truth = rng.integers(0, n, (3, 20, 30)).astype(np.uint8)
    scores = rng.random((3, 20, 30, n), np.float32)
    first = np.ascontiguousarray(np.moveaxis(scores, -1, 1))
    cases = {
        "last": (scores, {}),
        "first": (first, {"class_axis": 1}),
        "float16": (scores.astype(np.float16), {}),
        "labels": (scores.argmax(-1), {"num_classes": n}),
    }
    entries = entry_points(monkeypatch)

    def skip(entry, case):
        return (entry == "soft" and case == "labels") or (entry == "post" and case == "first")

    expected = {}
    for entry, f in entries.items():
        for case, (pred, kw) in cases.items():
            if not skip(entry, case):
                expected[entry, case] = f(truth, pred, kw)
    compiled = {name: set(getattr(f, "signatures", ())) for name, f in kernels.COMPILED.items()}
    layouts = {k: v for k, v in INPUT_LAYOUTS.items() if k != "c"}
    for entry, f in entries.items():
        for case, (pred, kw) in cases.items():
            if skip(entry, case):
                continue
            for layout, make in layouts.items():
                got = f(make(truth), make(pred), kw)
                assert same(got, expected[entry, case]), (entry, case, layout)
        # The class axis moved in a view (channels-last memory read as channels-first).
        if entry != "post":
            got = f(truth, np.moveaxis(scores, -1, 1), {"class_axis": 1})
            assert same(got, expected[entry, "last"]), entry
    now = {name: set(getattr(f, "signatures", ())) for name, f in kernels.COMPILED.items()}
    assert now == compiled
    assert kernels.unlisted_signatures() == {name: [] for name in kernels.COMPILED}


# --------------------------------------------------------------------------------------
# Numba options live in kernels.py, whose timestamp keys Numba's cache: an edit of an
# option invalidates the cached machine code.
# --------------------------------------------------------------------------------------

_PROBE = '''

@njit(**HELPER)
def _option_probe(a, b):
    return a // b
'''

_RUN_PROBE = """
import kernels
try:
    print(kernels._option_probe(7, 0))
except ZeroDivisionError:
    print("ZeroDivisionError")
print(kernels._option_probe.stats.cache_hits[kernels._option_probe.signatures[0]])
"""


def test_an_edited_numba_option_takes_effect(tmp_path):
    """A copy of kernels.py with a probe compiled under HELPER (integer division by 0):
    NumPy's error model gives 0 (and a second process loads it from the cache); with the
    option edited to Python's, the next process raises: the cache did not keep the old
    machine code."""
    source = Path(kernels.__file__).read_text()
    assert 'from fastseg' not in source  # every option is in the file itself
    copy = tmp_path / "kernels.py"
    copy.write_text(source + _PROBE)
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("NUMBA_DISABLE_JIT", None)

    def run():
        done = subprocess.run([sys.executable, "-c", _RUN_PROBE], cwd=tmp_path, env=env,
                              capture_output=True, text=True, check=False)  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout.split()

    assert run() == ["0", "0"]  # compiled
    assert run() == ["0", "1"]  # loaded from the cache
    edited = source.replace('"error_model": "numpy"', '"error_model": "python"', 1)
    assert edited != source
    copy.write_text(edited + _PROBE)
    stat = copy.stat()
    os.utime(copy, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # an edit a second later
    assert run() == ["ZeroDivisionError", "0"]


# --------------------------------------------------------------------------------------
# NUMBA_DISABLE_JIT=1: the kernels run as plain Python (to step through them in pdb).
# --------------------------------------------------------------------------------------

_NO_JIT = """
import numpy as np
import fastseg
from fastseg import kernels

assert not hasattr(kernels.COMPILED["hard_counts"], "signatures")  # plain Python
rng = np.random.default_rng(5)
n = 5
truth = rng.integers(0, n + 1, (2, 6, 7)).astype(np.uint8)  # label n is ignored
keep = truth != n
scores = rng.standard_normal((2, 6, 7, n)).astype(np.float32)
scores[0, 0, 0, :] = -0.0
half = scores.astype(np.float16)
labels = half.astype(np.float32).argmax(-1)


def expected(pred_labels):
    t, p = truth[keep].astype(np.int64), pred_labels[keep]
    return np.bincount(t * n + p, minlength=n * n).reshape(n, n)


def confusion(pred, **kw):
    return fastseg.confusion_matrix(truth, pred, ignore_index=n, **kw)


first = np.ascontiguousarray(np.moveaxis(half, -1, 1))
inside = np.ascontiguousarray(np.moveaxis(scores, -1, 2))
cases = {
    "labels": (confusion(labels, num_classes=n), labels),
    "channels-last": (confusion(scores), scores.argmax(-1)),
    "channels-last float16": (confusion(half), labels),
    "channels-first float16": (confusion(first, class_axis=1), labels),
    "class axis inside": (confusion(inside, class_axis=2), scores.argmax(-1)),
    "channels-last, many classes": (None, None),
}
wide = rng.standard_normal((2, 6, 7, 40)).astype(np.float32)
wide_truth = rng.integers(0, 40, (2, 6, 7))
got = fastseg.confusion_matrix(wide_truth, wide)
want = np.bincount(wide_truth.ravel() * 40 + wide.argmax(-1).ravel(), minlength=1600)
cases["channels-last, many classes"] = (got, want.reshape(40, 40))
for name, (got, want) in cases.items():
    if name != "channels-last, many classes":
        want = expected(want)
    assert (got == want).all(), name

kernels.TABLE_SLACK = 0  # the shared-table kernel
assert (confusion(scores) == expected(scores.argmax(-1))).all(), "shared"
kernels.TABLE_SLACK = 16 * 2**20

probs = rng.random((2, 6, 7, n))
soft = fastseg.counts(truth, probs, soft=True, ignore_index=n)
one_hot = np.eye(n)[np.where(keep, truth, 0)] * keep[..., None]
assert np.allclose(soft.tp, (probs * one_hot).sum((1, 2)))
assert np.allclose(soft.pred, (probs * keep[..., None]).sum((1, 2)))
assert np.allclose(soft.true, np.bincount(
    (np.arange(2)[:, None, None] * n + truth)[keep], minlength=2 * n).reshape(2, n))
print("ok")
"""


def test_kernels_run_as_python_with_jit_disabled():
    """Counts of tiny inputs of each kind equal np.bincount with NUMBA_DISABLE_JIT=1."""
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "NUMBA_DISABLE_JIT": "1", "PYTHONPATH": path}
    run = subprocess.run([sys.executable, "-c", _NO_JIT], env=env, capture_output=True,
                         text=True, check=False)  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip() == "ok"


# --------------------------------------------------------------------------------------
# The thread pool the shares run on
# --------------------------------------------------------------------------------------


def _count_in_child(queue):
    truth = np.arange(4 * 40 * 30).reshape(4, 40, 30) % 5
    c = fastseg.counts(truth, truth, num_classes=5)
    queue.put(c.confusion.trace())


def test_a_forked_child_counts_with_a_fresh_pool():
    """A child forked after the pool ran has the pool object but not its threads: it must
    start a new pool (os.register_at_fork), not wait forever on the parent's."""
    import multiprocessing

    truth = np.arange(4 * 40 * 30).reshape(4, 40, 30) % 5
    assert fastseg.counts(truth, truth, num_classes=5).confusion.trace() == truth.size
    assert kernels._pool is not None or numba.get_num_threads() == 1
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_count_in_child, args=(queue,))
    child.start()
    child.join(timeout=60)
    if child.is_alive():
        child.kill()
    assert child.exitcode == 0
    assert queue.get(timeout=5) == truth.size


def test_run_shares_runs_every_share_once_and_raises_their_error():
    seen = []

    def work(tag, t, n):
        seen.append((tag, t, n))
        if tag == "fail" and t == n - 1:
            raise ValueError("share failed")

    kernels.run_shares(work, 3, "ok")
    assert sorted(seen) == [("ok", 0, 3), ("ok", 1, 3), ("ok", 2, 3)]
    seen.clear()
    kernels.run_shares(work, 1, "one")
    assert seen == [("one", 0, 1)]
    with pytest.raises(ValueError, match="share failed"):
        kernels.run_shares(work, 2, "fail")


def test_the_first_kernel_call_leaves_scipy_unimported():
    """Numba's BLAS probe asks whether SciPy is installed instead of importing
    scipy.linalg (0.5 s); Numba's answer and its linear algebra are unchanged."""
    code = """
import importlib.util, sys
import numpy as np
import fastseg
fastseg.confusion_matrix(np.zeros((1, 4, 4), np.uint8), np.zeros((1, 4, 4), np.uint8),
                         num_classes=2)
import numba
import numba.np.arraymath as arraymath
print("scipy.linalg" in sys.modules, arraymath._HAVE_BLAS,
      importlib.util.find_spec("scipy") is not None)
@numba.njit
def dot(a, b):
    return np.dot(a, b)
print(dot(np.ones(3), np.arange(3.0)))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)  # fmt: skip
    first, second = done.stdout.splitlines()
    imported, have_blas, installed = first.split()
    assert imported == "False"
    assert have_blas == installed
    assert float(second) == 3.0


@pytest.mark.parametrize("threads", [1, 2])
def test_runs_of_equal_label_pairs_count_as_their_pixels(threads):
    """Two uint8 maps of runs (a word of eight equal pixel pairs counts at once): runs in
    both maps, in one map only, across word edges, ignored and invalid runs; equal to
    np.bincount."""
    if threads > numba.config.NUMBA_NUM_THREADS:
        pytest.skip(f"needs {threads} Numba threads")
    rng = np.random.default_rng(21)
    n, b, p = 5, 3, kernels.BLOCK + 21
    lengths = rng.integers(1, 40, p)  # runs of 1 to 39 pixels, at any offset
    starts = np.cumsum(lengths)[: p // 8]
    truth = np.repeat(rng.integers(0, n + 2, starts.size), np.diff(starts, prepend=0))
    truth = np.resize(truth, (b, p)).astype(np.uint8)
    truth[truth == n + 1] = 255  # ignored runs; n: invalid runs
    pred = truth.copy()
    pred[truth == 255] = 0
    flip = rng.random(pred.shape) < 0.03
    pred[flip] = rng.integers(0, n, int(flip.sum()))
    pred[:, 100:140] = n  # an invalid predicted run
    expected = bincount_expected(truth, pred, n, 255)
    out = outputs(b, n)
    c = kernels.Classes(n, True, 255)
    kernels.hard_counts(pred, truth, c, kernels.HardCounts(*out[:4]), out[4], threads)
    assert_expected(out, expected)


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64", "uint8", "int32"])
@pytest.mark.parametrize("channels", [3, 40])
def test_pred_labels_are_the_first_argmax(dtype, channels):
    # What boundary and surface metrics read: every pixel's label, ties to the first.
    rng = np.random.default_rng(channels)
    scores = np.floor(rng.random((3, 70_000 // channels, channels)) * 5).astype(dtype)
    classes = kernels.Classes(channels, False, 0)
    view = scores.view(np.uint16) if dtype == "float16" else scores
    for n_threads in (1, 2):
        last = kernels.pred_labels(view, classes, n_threads)
        np.testing.assert_array_equal(last, scores.argmax(-1))
        inside = np.ascontiguousarray(np.moveaxis(view, -1, 1))[:, None]
        np.testing.assert_array_equal(kernels.pred_labels(inside, classes, n_threads),
                                      scores.argmax(-1))  # fmt: skip


def test_pred_labels_read_label_maps_through_their_codes():
    table = np.array([2, 0, 1], np.int32)
    table.flags.writeable = False
    classes = kernels.Classes(3, False, 0, pred_codes=kernels.LabelCodes(table, 0))
    labels = np.array([[0, 1, 2, 7]], np.uint8)
    assert kernels.pred_labels(labels, classes, 1).tolist() == [[2, 0, 1, 0]]

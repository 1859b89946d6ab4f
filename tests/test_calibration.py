"""Calibration: confidence histograms against a NumPy oracle and torchmetrics, files, CLI."""

from __future__ import annotations

import csv
import io
import json
import math

import numba
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stores import zarr_pair as _store

import fastseg
from fastseg import kernels
from fastseg.calibration import CalibrationSums
from fastseg.cli import main
from fastseg.counts import Counts
from fastseg.stream import Accumulator

IGNORE = 255


# ------------------------------------------------------------------------- the oracle


def oracle(truth, scores, n_bins, *, class_axis=-1, keep=None, softmax=False):
    """(B, 3, n_bins + 1) int64: per image and bin, pixels, correct, confidence sums.

    `truth` holds class indices; `keep` marks the counted pixels (default: all).
    Independent of fastseg: float32 edges ``k / n``, ``searchsorted(side="right")``.
    """
    s = np.moveaxis(np.asarray(scores), class_axis, -1).astype(np.float64)
    pred = s.argmax(-1)
    top = s.max(-1)
    if softmax:
        total = np.zeros_like(top)
        for c in range(s.shape[-1]):  # the kernel's order of summation
            total += np.exp(s[..., c] - top)
        conf = 1.0 / total
    else:
        conf = top
    edges = (np.arange(n_bins + 1) / n_bins).astype(np.float32)
    keep = np.ones(truth.shape, bool) if keep is None else keep
    out = np.zeros((truth.shape[0], 3, n_bins + 1), np.int64)
    for b in range(truth.shape[0]):
        # Binned as float32 (torchmetrics' confidences are float32); summed exactly.
        binned = conf[b][keep[b]].astype(np.float32).astype(np.float64)
        k = np.searchsorted(edges, binned, side="right") - 1
        right = pred[b][keep[b]] == truth[b][keep[b]]
        units = np.floor(conf[b][keep[b]] * 2.0**24 + 0.5).astype(np.int64)
        out[b, 0] = np.bincount(k, minlength=n_bins + 1)
        out[b, 1] = np.bincount(k[right], minlength=n_bins + 1)
        np.add.at(out[b, 2], k, units)  # int64: exact
    return out


def got(counts):
    cal = counts.calibration
    assert isinstance(cal, CalibrationSums)
    for a in (cal.pixels, cal.correct, cal.confidence):
        assert a.dtype == np.int64
    return np.stack([cal.pixels, cal.correct, cal.confidence], axis=1)


def probabilities(rng, shape, dtype=np.float32, sharp=1.0):
    """Softmax probabilities of random logits, last axis the classes."""
    x = rng.standard_normal(shape) * sharp
    e = np.exp(x - x.max(-1, keepdims=True))
    return (e / e.sum(-1, keepdims=True)).astype(dtype)


def batch(seed, shape, n, dtype=np.float32, ignore=0.1):
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, n, shape).astype(np.uint8)
    truth[rng.random(shape) < ignore] = IGNORE
    scores = probabilities(rng, (*shape, n), dtype, sharp=2.0)
    return truth, scores


# ---------------------------------------------------------------- 1. exact histograms


@pytest.mark.parametrize("n_classes", [2, 5, 40])
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("layout", ["last", "first"])
@pytest.mark.parametrize("spatial", [(9, 7), (3, 4, 5)])
def test_histograms_equal_the_oracle_per_image(n_classes, dtype, layout, spatial):
    truth, scores = batch(n_classes + len(spatial), (3, *spatial), n_classes, dtype)
    class_axis = None
    if layout == "first":
        scores = np.ascontiguousarray(np.moveaxis(scores, -1, 1))
        class_axis = 1
    c = fastseg.counts(truth, scores, class_axis=class_axis, ignore_index=IGNORE, calibration=7)
    axis = 1 if layout == "first" else -1
    expected = oracle(truth, scores, 7, class_axis=axis, keep=truth != IGNORE)
    np.testing.assert_array_equal(got(c), expected)
    assert c.calibration.n_bins == 7
    assert c.calibration.softmax is False
    # every counted pixel is binned once; correct pixels are the counts' true positives
    assert c.calibration.pixels.sum(axis=1).tolist() == c.true.sum(axis=1).tolist()
    assert c.calibration.correct.sum(axis=1).tolist() == c.tp.sum(axis=1).tolist()


@pytest.mark.parametrize("n_classes", [3, 40])
@pytest.mark.parametrize("layout", ["last", "first"])
@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_softmax_of_logits_equals_the_oracle(n_classes, layout, dtype):
    rng = np.random.default_rng(n_classes)
    truth = rng.integers(0, n_classes, (3, 8, 6)).astype(np.uint8)
    truth[:, 0] = IGNORE
    logits = (rng.standard_normal((3, 8, 6, n_classes)) * 3).astype(dtype)
    class_axis = None
    if layout == "first":
        logits = np.ascontiguousarray(np.moveaxis(logits, -1, 1))
        class_axis = 1
    c = fastseg.counts(truth, logits, class_axis=class_axis, ignore_index=IGNORE,
                       calibration=9, calibration_softmax=True)  # fmt: skip
    expected = oracle(truth, logits, 9, class_axis=1 if class_axis else -1,
                      keep=truth != IGNORE, softmax=True)  # fmt: skip
    np.testing.assert_array_equal(got(c), expected)
    assert c.calibration.softmax is True


def test_many_tied_float16_scores_argmax_the_first_class():
    # float16 scores on a coarse grid: ties for the largest score are frequent; the
    # predicted class (and so "correct") is the first of them, as np.argmax says.
    rng = np.random.default_rng(5)
    for n in (5, 40):
        truth = rng.integers(0, 3, (3, 10, 10)).astype(np.uint8)
        scores = (rng.integers(0, 4, (3, 10, 10, n)) / 4).astype(np.float16)
        c = fastseg.counts(truth, scores, calibration=4)
        np.testing.assert_array_equal(got(c), oracle(truth, scores, 4))
        assert c.calibration.correct.sum() > 0


def test_label_map_on_the_truth():
    rng = np.random.default_rng(6)
    ids = rng.choice(np.array([0, 7, 8, 11, 26], np.uint8), (2, 12, 10))
    scores = probabilities(rng, (2, 12, 10, 3))
    mapping = {7: 0, 8: 1, 11: 2}
    c = fastseg.counts(ids, scores, ignore_index=IGNORE, label_map=mapping, calibration=6)
    lut = np.full(256, -1)
    for k, v in mapping.items():
        lut[k] = v
    classes = lut[ids]
    np.testing.assert_array_equal(got(c), oracle(classes, scores, 6, keep=classes >= 0))
    assert c.calibration.pixels.sum() == (classes >= 0).sum() < ids.size


@pytest.mark.parametrize("layout", ["last", "first"])
def test_thread_counts_and_image_blocks_give_identical_histograms(layout):
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs 2 Numba threads")
    # 3 images (not a multiple of 2 threads) of 190 x 190 > kernels.BLOCK pixels: the
    # last one is split in blocks between the threads.
    truth, scores = batch(7, (3, 190, 190), 3)
    assert kernels.BLOCK < 190 * 190
    class_axis = None
    if layout == "first":
        scores = np.ascontiguousarray(np.moveaxis(scores, -1, 1))
        class_axis = 1
    kw = {"class_axis": class_axis, "ignore_index": IGNORE, "calibration": 11}
    saved = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = fastseg.counts(truth, scores, **kw)
        numba.set_num_threads(2)
        two = fastseg.counts(truth, scores, **kw)
        one_image_two_threads = fastseg.counts(truth[:1], scores[:1], **kw)
    finally:
        numba.set_num_threads(saved)
    assert one == two
    expected = oracle(truth, scores, 11, class_axis=1 if class_axis else -1,
                      keep=truth != IGNORE)  # fmt: skip
    np.testing.assert_array_equal(got(two), expected)
    np.testing.assert_array_equal(got(one_image_two_threads), expected[:1])


def _pixels(conf_and_classes, dtype):
    """One image, one row: pixel j's scores put `conf` on its class, the rest spread."""
    n = max(c for _, c, _ in conf_and_classes) + 2
    truth = np.array([[[t for _, _, t in conf_and_classes]]], np.uint8)
    scores = np.zeros((1, 1, len(conf_and_classes), n), np.float64)
    for j, (conf, cls, _) in enumerate(conf_and_classes):
        scores[0, 0, j, :] = (1.0 - conf) / (n - 1) if conf < 1 else 0.0
        scores[0, 0, j, cls] = conf
    return truth, scores.astype(dtype)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_confidences_on_the_edges(dtype):
    # (confidence, predicted class, true class): 0.25 / 0.75 are edges of 4 bins, 1 is
    # the bin of its own, 0.5 an edge of both 2 and 4 bins.
    pixels = [(0.25, 0, 0), (0.5, 1, 0), (0.75, 1, 1), (1.0, 0, 0), (1.0, 1, 0), (0.5, 2, 2)]
    truth, scores = _pixels(pixels, dtype)
    four = fastseg.counts(truth, scores, calibration=4).calibration
    assert four.pixels[0].tolist() == [0, 1, 2, 1, 2]
    assert four.correct[0].tolist() == [0, 1, 1, 1, 1]
    assert four.confidence[0].tolist() == [0, 2**22, 2 * 2**23, 3 * 2**22, 2 * 2**24]
    two = fastseg.counts(truth, scores, calibration=2).calibration
    assert two.pixels[0].tolist() == [1, 3, 2]  # 0.5 opens the second bin
    for n in (1, 2, 3, 4, 10):
        c = fastseg.counts(truth, scores, calibration=n)
        np.testing.assert_array_equal(got(c), oracle(truth, scores, n))
    one = fastseg.counts(truth, scores, calibration=1).calibration
    assert one.pixels[0].tolist() == [4, 2]  # [0, 1) and exactly 1


def test_float32_edges_that_are_not_k_over_n():
    # float32(1/3) and float32(0.1) lie above 1/3 and 0.1 (torchmetrics' float32
    # linspace): as float32 they sit on the edge; a float64 confidence is binned as its
    # float32 value too, as torchmetrics bins it.
    truth = np.zeros((1, 1, 2), np.uint8)
    for n_bins, value, n_classes in ((3, 1 / 3, 3), (10, 0.1, 10)):
        for dtype, k in ((np.float64, 1), (np.float32, 1)):
            scores = np.full((1, 1, 2, n_classes), value, dtype)
            c = fastseg.counts(truth, scores, calibration=n_bins)
            expected = np.zeros(n_bins + 1, np.int64)
            expected[k] = 2
            assert c.calibration.pixels[0].tolist() == expected.tolist(), (n_bins, dtype)
            np.testing.assert_array_equal(got(c), oracle(truth, scores, n_bins))
    np.testing.assert_array_equal(
        kernels.calibration_edges(3), np.array([0, 1 / 3, 2 / 3, 1], np.float32)
    )


def test_ece_and_mce_by_hand():
    # 4 pixels: confidences 0.375 (right), 0.375 (wrong), 0.875 (right), 1 (wrong).
    pixels = [(0.375, 0, 0), (0.375, 0, 1), (0.875, 1, 1), (1.0, 0, 1)]
    truth, scores = _pixels(pixels, np.float32)
    cal = fastseg.counts(truth, scores, calibration=2).calibration
    b = cal.bins()
    assert b["pixels"].tolist() == [2, 1, 1]
    assert b["accuracy"].tolist() == [0.5, 1.0, 0.0]
    assert b["confidence"].tolist() == [0.375, 0.875, 1.0]
    assert cal.ece() == pytest.approx((2 * 0.125 + 0.125 + 1.0) / 4, abs=1e-15)
    assert cal.mce() == 1.0
    assert cal.ece(per_image=True).tolist() == [cal.ece()]
    empty = CalibrationSums.zeros(2, 5)
    assert math.isnan(empty.ece())
    assert math.isnan(empty.mce())
    assert np.isnan(empty.ece(per_image=True)).all()
    d = cal.report_dict()
    assert (d["n_bins"], d["softmax"], d["ece"], d["mce"]) == (2, False, cal.ece(), 1.0)
    assert [(r["lower"], r["upper"], r["pixels"]) for r in d["bins"]] == [
        (0.0, 0.5, 2), (0.5, 1.0, 1), (1.0, 1.0, 1)]  # fmt: skip


# --------------------------------------------------------------- 2. torchmetrics


def _torch_errors(torch, truth, scores, n_classes, n_bins, ignore=IGNORE):
    from torchmetrics.functional.classification import multiclass_calibration_error

    preds = torch.from_numpy(np.ascontiguousarray(scores.reshape(-1, n_classes)))
    target = torch.from_numpy(truth.reshape(-1).astype(np.int64))
    return tuple(
        float(multiclass_calibration_error(preds, target, num_classes=n_classes,
                                           n_bins=n_bins, norm=norm, ignore_index=ignore))
        for norm in ("l1", "max")
    )  # fmt: skip


@pytest.mark.parametrize(("n_classes", "n_bins"), [(2, 15), (6, 10), (40, 7), (5, 1)])
def test_ece_and_mce_equal_torchmetrics_for_probabilities(n_classes, n_bins):
    torch = pytest.importorskip("torch")
    pytest.importorskip("torchmetrics")
    truth, scores = batch(20 + n_classes, (3, 16, 12), n_classes, np.float32)
    # some pixels are confidently right, so accuracy and confidence differ per bin
    right = np.random.default_rng(0).random(truth.shape) < 0.5
    onehot = np.eye(n_classes, dtype=np.float32)[np.where(truth == IGNORE, 0, truth)]
    scores = np.where(right[..., None], 0.1 * scores + 0.9 * onehot, scores).astype(np.float32)
    scores[0, 0, :3] = 1.0 / n_classes  # exact ties (and 0.5 with two classes)
    scores[1, 0, :2] = np.eye(n_classes, dtype=np.float32)[1]  # confidence 1
    cal = fastseg.counts(truth, scores, ignore_index=IGNORE, calibration=n_bins).calibration
    ece, mce = _torch_errors(torch, truth, scores, n_classes, n_bins)
    assert cal.ece() == pytest.approx(ece, abs=1e-6)
    assert cal.mce() == pytest.approx(mce, abs=1e-6)
    assert cal.ece() > 0.01


@pytest.mark.parametrize("layout", ["last", "first"])
def test_ece_and_mce_equal_torchmetrics_for_logits(layout):
    torch = pytest.importorskip("torch")
    pytest.importorskip("torchmetrics")
    rng = np.random.default_rng(21)
    n = 5
    truth = rng.integers(0, n, (3, 14, 10)).astype(np.uint8)
    truth[:, :2] = IGNORE
    logits = (rng.standard_normal((3, 14, 10, n)) * 2).astype(np.float32)
    logits[..., 0] += 1.5 * (truth == 0)
    pred, class_axis = logits, None
    if layout == "first":
        pred, class_axis = np.ascontiguousarray(np.moveaxis(logits, -1, 1)), 1
    cal = fastseg.counts(truth, pred, class_axis=class_axis, ignore_index=IGNORE,
                         calibration=15, calibration_softmax=True).calibration  # fmt: skip
    ece, mce = _torch_errors(torch, truth, logits, n, 15)  # torchmetrics applies softmax
    assert cal.ece() == pytest.approx(ece, abs=1e-6)
    assert cal.mce() == pytest.approx(mce, abs=1e-6)


# ------------------------------------------------------------- 3. splits and merges


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    b=st.integers(2, 5),
    h=st.integers(2, 9),
    w=st.integers(1, 9),
    n_bins=st.integers(1, 20),
    softmax=st.booleans(),
    data=st.data(),
)
def test_any_split_gives_the_whole_batch(b, h, w, n_bins, softmax, data):
    rng = np.random.default_rng(b * 10_000 + h * 100 + w * 7 + n_bins)
    truth = rng.integers(0, 4, (b, h, w)).astype(np.uint8)
    truth[rng.random(truth.shape) < 0.2] = IGNORE
    scores = (rng.standard_normal((b, h, w, 4)) * 2).astype(np.float32)
    if not softmax:
        scores = probabilities(rng, (b, h, w, 4))
    kw = {"ignore_index": IGNORE, "calibration": n_bins, "calibration_softmax": softmax}
    whole = fastseg.counts(truth, scores, **kw)
    np.testing.assert_array_equal(
        got(whole), oracle(truth, scores, n_bins, keep=truth != IGNORE, softmax=softmax)
    )
    cut = data.draw(st.integers(1, b - 1))
    parts = fastseg.counts(truth[:cut], scores[:cut], **kw) + fastseg.counts(
        truth[cut:], scores[cut:], **kw)  # fmt: skip
    assert parts == whole
    acc = Accumulator(4, ignore_index=IGNORE, calibration=n_bins, calibration_softmax=softmax)
    acc.update(truth[:cut], scores[:cut]).update(truth[cut:], scores[cut:])
    assert acc.counts == whole
    # blocks that split every image (rows): their sums add up per image
    row = data.draw(st.integers(1, h - 1))
    top = fastseg.counts(truth[:, :row], scores[:, :row], **kw)
    bottom = fastseg.counts(truth[:, row:], scores[:, row:], **kw)
    assert Counts.merge([top, bottom]).calibration == whole.calibration
    # totals only: one row of data-set sums, in any order of updates
    totals = Accumulator(4, ignore_index=IGNORE, per_image=False, calibration=n_bins,
                         calibration_softmax=softmax)  # fmt: skip
    totals.update(truth[cut:], scores[cut:]).update(truth[:cut], scores[:cut])
    t = totals.counts.calibration
    assert t.n_images == 1
    np.testing.assert_array_equal(got(totals.counts), got(whole).sum(axis=0, keepdims=True))
    # NaN when every pixel is ignored
    np.testing.assert_equal(t.ece(), whole.calibration.ece())
    np.testing.assert_equal(t.mce(), whole.calibration.mce())
    np.testing.assert_equal(totals.compute().ece, whole.calibration.ece())
    np.testing.assert_equal(acc.compute().mce, whole.calibration.mce())


def test_merging_other_settings_is_refused():
    truth, scores = batch(30, (2, 5, 5), 3)
    a = fastseg.counts(truth, scores, ignore_index=IGNORE, calibration=5)
    with pytest.raises(ValueError, match="cannot merge calibration computed with"):
        a + fastseg.counts(truth, scores, ignore_index=IGNORE, calibration=6)
    with pytest.raises(ValueError, match="counts of pixels without it"):
        a + fastseg.counts(truth, scores, ignore_index=IGNORE)
    with pytest.raises(ValueError, match="calibration: 5 vs 6"):
        Accumulator(3, calibration=5) + Accumulator(3, calibration=6)
    with pytest.raises(ValueError, match="calibration_softmax: False vs True"):
        Accumulator(3, calibration=5) + Accumulator(3, calibration=5, calibration_softmax=True)


# ------------------------------------------------------------------------- 4. errors

_TRUTH = np.zeros((1, 4, 4), np.uint8)
_PROBS = np.full((1, 4, 4, 3), 1 / 3, np.float32)


@pytest.mark.parametrize(
    ("pred", "kwargs", "message"),
    [
        (np.zeros((1, 4, 4), np.uint8), {"num_classes": 3},
         "calibration needs the prediction's scores (probabilities of two or more classes), "
         "not a label map"),
        (np.full((1, 4, 4, 1), 0.7, np.float32), {"threshold": 0.5},
         "calibration needs the prediction's scores (probabilities of two or more classes), "
         "not a label map or one-channel scores"),
        (np.zeros((1, 4, 4, 3), np.uint8), {},
         "calibration needs float scores (probabilities); y_pred is uint8"),
        (np.zeros((1, 4, 4, 3), bool), {},
         "calibration needs float scores (probabilities); y_pred is bool"),
        (_PROBS, {"soft": True},
         "calibration bins hard predictions' confidences: leave out soft=True"),
        (np.full((1, 4, 4, 3), 2.5, np.float32), {},
         "calibration needs probabilities: y_pred's largest score is outside [0, 1] at 16 "
         "pixels (e.g. 2.5); for logits, ask for their softmax (calibration_softmax=True, "
         "--calibration-softmax)"),
    ],
)  # fmt: skip
def test_inputs_without_confidences_are_refused(pred, kwargs, message):
    with pytest.raises(ValueError, match="^" + _escape(message)):
        fastseg.counts(_TRUTH, pred, calibration=4, **kwargs)
    options = {k: v for k, v in kwargs.items() if k != "num_classes"}
    n = 2 if "threshold" in kwargs else 3
    with pytest.raises(ValueError, match="^" + _escape(message)):
        Accumulator(n, calibration=4, **options).update(_TRUTH, pred)


def test_logits_count_without_calibration():
    logits = np.full((1, 4, 4, 3), 2.5, np.float32)
    assert fastseg.counts(_TRUTH, logits).calibration is None
    cal = fastseg.counts(_TRUTH, logits, calibration=4, calibration_softmax=True).calibration
    assert cal.pixels[0].tolist() == [0, 16, 0, 0, 0]  # softmax 1/3 of three equal logits


def _escape(text):
    import re

    return re.escape(text)


@pytest.mark.parametrize(
    ("bins", "message"),
    [
        (0, "calibration must be between 1 and 10000 bins; got 0"),
        (-1, "calibration must be between 1 and 10000 bins; got -1"),
        (10001, "calibration must be between 1 and 10000 bins; got 10001"),
        (True, "calibration is a number of confidence bins (an int); got True"),
        (1.5, "calibration is a number of confidence bins (an int); got 1.5"),
        ("15", "calibration is a number of confidence bins (an int); got '15'"),
    ],
)
def test_bad_numbers_of_bins_are_refused_everywhere(bins, message, tmp_path):
    m = "^" + _escape(message) + "$"
    with pytest.raises(ValueError, match=m):
        fastseg.counts(_TRUTH, _PROBS, calibration=bins)
    with pytest.raises(ValueError, match=m):
        Accumulator(3, calibration=bins)
    with pytest.raises(ValueError, match=m):
        fastseg.evaluate(_TRUTH, _PROBS, calibration=bins, progress=False,
                         checkpoint=tmp_path / "ck")  # fmt: skip
    assert not (tmp_path / "ck").exists()


def test_extreme_numbers_of_bins_work():
    for n in (1, 10_000):
        cal = fastseg.counts(_TRUTH, _PROBS, calibration=n).calibration
        assert cal.n_bins == n
        assert cal.pixels.shape == (1, n + 1)
    # float32(1/3) = 0.33333334 lies in [0.3333, 0.3334)
    assert fastseg.counts(_TRUTH, _PROBS, calibration=10_000).calibration.pixels[0, 3333] == 16
    acc = Accumulator(3, calibration=np.int64(3)).update(_TRUTH, _PROBS)
    assert type(acc.calibration) is int
    assert type(acc.counts.calibration.n_bins) is int


def test_a_numpy_integer_number_of_bins_saves(tmp_path):
    c = fastseg.counts(_TRUTH, _PROBS, calibration=np.int64(3))
    c.save(tmp_path / "c.npz")
    assert type(c.calibration.n_bins) is int
    assert Counts.load(tmp_path / "c.npz") == c


def test_softmax_without_calibration_is_refused(tmp_path):
    m = "^calibration_softmax applies to calibration: pass calibration=BINS$"
    with pytest.raises(ValueError, match=m):
        fastseg.counts(_TRUTH, _PROBS, calibration_softmax=True)
    with pytest.raises(ValueError, match=m):
        Accumulator(3, calibration_softmax=True)
    with pytest.raises(ValueError, match=m):
        fastseg.evaluate(_TRUTH, _PROBS, calibration_softmax=True, progress=False)
    with pytest.raises(ValueError, match="leave out soft=True"):
        Accumulator(3, soft=True, calibration=5)
    with pytest.raises(ValueError, match="leave out soft=True"):
        fastseg.evaluate(_TRUTH, _PROBS, soft=True, calibration=5, progress=False)


def test_nan_scores_are_still_refused():
    scores = _PROBS.copy()
    scores[0, 1, 2, 1] = np.nan
    for kw in ({"calibration": 4}, {"calibration": 4, "calibration_softmax": True}, {}):
        with pytest.raises(ValueError, match=r"^y_pred has NaN scores at 1 pixels$"):
            fastseg.counts(_TRUTH, scores, **kw)
    truth = _TRUTH.copy()
    truth[0, 1, 2] = IGNORE  # under an ignored pixel: not looked at
    c = fastseg.counts(truth, scores, ignore_index=IGNORE, calibration=4)
    assert c.calibration.pixels.sum() == 15


# -------------------------------------------------------------------------- 5. files


def _meta(path):
    with np.load(path) as f:
        return json.loads(str(f["meta"])), {k: f[k] for k in f.files if k != "meta"}


def test_counts_files_round_trip_with_calibration(tmp_path):
    truth, scores = batch(40, (3, 6, 5), 4)
    c = fastseg.counts(truth, scores, ignore_index=IGNORE, calibration=8,
                       calibration_softmax=False)  # fmt: skip
    c = c.starting_at(5)
    path = tmp_path / "c.npz"
    c.save(path)
    back = Counts.load(path)
    assert back == c
    np.testing.assert_array_equal(got(back), got(c))
    meta, arrays = _meta(path)
    assert meta["version"] == 3
    assert meta["extras"] == {"calibration": {"n_bins": 8, "softmax": False}}
    assert sorted(k for k in arrays if k.startswith("x.")) == [
        "x.calibration.confidence", "x.calibration.correct", "x.calibration.pixels"]  # fmt: skip
    plain = tmp_path / "plain.npz"
    fastseg.counts(truth, scores, ignore_index=IGNORE).save(plain)
    assert _meta(plain)[0]["version"] == 1
    assert Counts.load(plain).calibration is None


def test_accumulator_files_round_trip(tmp_path):
    truth, scores = batch(41, (4, 6, 5), 4)
    for per_image in (True, False):
        acc = Accumulator(4, ignore_index=IGNORE, per_image=per_image, calibration=6,
                          calibration_softmax=True)  # fmt: skip
        acc.update(truth[:3], scores[:3] * 4).update(truth[3:], scores[3:] * 4)
        path = tmp_path / f"acc{per_image}.npz"
        acc.save(path)
        back = Accumulator.load(path)
        assert back == acc
        assert (back.calibration, back.calibration_softmax) == (6, True)
        assert back.counts.calibration == acc.counts.calibration
        assert back.compute().ece == acc.compute().ece
        assert _meta(path)[0]["version"] == 2
        # a loaded accumulator goes on counting with its options
        back.update(truth[:1], scores[:1] * 4)
        assert back.counts.calibration.softmax is True
    plain = tmp_path / "plain.npz"
    Accumulator(4, ignore_index=IGNORE).update(truth, scores).save(plain)
    assert _meta(plain)[0]["version"] == 1
    assert Accumulator.load(plain).counts.calibration is None


def test_an_empty_accumulator_keeps_its_bins_through_a_file(tmp_path):
    path = tmp_path / "empty.npz"
    Accumulator(3, calibration=5).save(path)
    back = Accumulator.load(path)
    assert back.calibration == 5
    assert back.counts.calibration is None
    back.update(_TRUTH, _PROBS)
    assert back.counts.calibration.pixels.tolist() == [[0, 16, 0, 0, 0, 0]]


def test_add_counts_of_other_bins_is_refused():
    seven = fastseg.counts(_TRUTH, _PROBS, calibration=7)
    with pytest.raises(ValueError, match="calibration"):
        Accumulator(3, calibration=5).add_counts(seven).compute()
    with pytest.raises(ValueError, match="calibration"):
        Accumulator(3, calibration=5).add_counts(fastseg.counts(_TRUTH, _PROBS)).compute()


def test_accumulator_file_without_its_histograms_is_refused(tmp_path):
    good = tmp_path / "good.npz"
    Accumulator(3, calibration=5).update(_TRUTH, _PROBS).save(good)

    def strip(arrays):
        meta = json.loads(str(arrays["meta"]))
        del meta["extras"]
        arrays["meta"] = np.array(json.dumps(meta))
        for k in [k for k in arrays if k.startswith("x.")]:
            del arrays[k]

    bad = _rewrite(good, tmp_path / "bad.npz", strip)
    with pytest.raises(ValueError, match=_escape(str(bad))):
        Accumulator.load(bad)  # today: loads, and its report's ECE is NaN


def _rewrite(good, path, change):
    with np.load(good) as f:
        arrays = {k: f[k] for k in f.files}
    change(arrays)
    with path.open("wb") as f:
        np.savez(f, **arrays)
    return path


@pytest.mark.parametrize("kind", ["counts", "accumulator"])
def test_damaged_extras_name_the_file(tmp_path, kind):
    truth, scores = batch(42, (2, 6, 5), 4)
    good = tmp_path / "good.npz"
    load = Counts.load if kind == "counts" else Accumulator.load
    if kind == "counts":
        fastseg.counts(truth, scores, ignore_index=IGNORE, calibration=5).save(good)
    else:
        Accumulator(4, ignore_index=IGNORE, calibration=5).update(truth, scores).save(good)

    def drop(arrays):
        del arrays["x.calibration.correct"]

    def reshape(arrays):
        arrays["x.calibration.pixels"] = arrays["x.calibration.pixels"][:, :-1].copy()

    def floats(arrays):
        arrays["x.calibration.confidence"] = arrays["x.calibration.confidence"].astype(float)

    def setting(arrays):
        meta = json.loads(str(arrays["meta"]))
        meta["extras"]["calibration"]["n_bins"] = 9
        arrays["meta"] = np.array(json.dumps(meta))

    def unknown(arrays):
        meta = json.loads(str(arrays["meta"]))
        meta["extras"]["calibrashun"] = meta["extras"].pop("calibration")
        arrays["meta"] = np.array(json.dumps(meta))

    for change, why in ((drop, "calibration without its array 'correct'"),
                        (reshape, "calibration pixels must be int64 of shape (2, 6)"),
                        (floats, "calibration confidence must be int64"),
                        (setting, "must be int64 of shape (2, 10)"),
                        (unknown, "unknown per-image statistic 'calibrashun'")):  # fmt: skip
        bad = _rewrite(good, tmp_path / f"{change.__name__}.npz", change)
        with pytest.raises(ValueError, match=_escape(str(bad)) + ".*" + _escape(why)):
            load(bad)


# -------------------------------------------------------------------- 6. out of core

N = 5




@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """6 images of float16 probabilities: chunks split images spatially and the batch."""
    truth, scores = batch(50, (6, 24, 20), N, np.float16)
    path = _store(tmp_path_factory.mktemp("cal") / "ds.zarr", truth, scores,
                  pred_chunks=(4, 12, 10, N), true_chunks=(3, 24, 7))  # fmt: skip
    return path, truth, scores


def test_out_of_core_equals_the_accumulator(store):
    path, truth, scores = store
    report = fastseg.evaluate(str(path), str(path), ignore_index=IGNORE, calibration=12,
                              progress=False)  # fmt: skip
    acc = Accumulator(N, ignore_index=IGNORE, calibration=12).update(truth, scores)
    assert report.counts.calibration == acc.counts.calibration
    np.testing.assert_array_equal(got(report.counts),
                                  oracle(truth, scores, 12, keep=truth != IGNORE))  # fmt: skip
    assert report.ece == acc.compute().ece
    assert report.mce == acc.compute().mce
    totals = fastseg.evaluate(str(path), str(path), ignore_index=IGNORE, calibration=12,
                              per_image=False, progress=False)  # fmt: skip
    assert totals.counts.calibration == acc.counts.calibration.total()
    assert totals.ece == report.ece


def test_out_of_core_logits_with_softmax(tmp_path):
    rng = np.random.default_rng(51)
    truth = rng.integers(0, N, (4, 16, 12)).astype(np.uint8)
    logits = (rng.standard_normal((4, 16, 12, N)) * 3).astype(np.float32)
    first = np.ascontiguousarray(np.moveaxis(logits, -1, 1))
    path = _store(tmp_path / "lg.zarr", truth, first, pred_chunks=(3, N, 8, 12),
                  true_chunks=(2, 16, 12))  # fmt: skip
    report = fastseg.evaluate(str(path), str(path), class_axis=1, calibration=15,
                              calibration_softmax=True, progress=False)  # fmt: skip
    acc = Accumulator(N, class_axis=1, calibration=15, calibration_softmax=True)
    assert report.counts.calibration == acc.update(truth, first).counts.calibration
    np.testing.assert_array_equal(got(report.counts), oracle(truth, logits, 15, softmax=True))
    with pytest.raises(ValueError, match=r"block .*calibration_softmax=True"):
        fastseg.evaluate(str(path), str(path), class_axis=1, calibration=15, progress=False)


def test_a_resumed_checkpoint_gives_the_same_calibration(store, tmp_path):
    path, truth, scores = store
    ck = tmp_path / "ck"
    kw = {"ignore_index": IGNORE, "calibration": 12, "progress": False, "checkpoint": ck,
          "scheduler": "sync"}  # fmt: skip
    first = fastseg.evaluate(str(path), str(path), **kw)
    blocks = sorted((ck / "blocks").iterdir())
    assert len(blocks) > 2
    blocks[1].unlink()
    again = fastseg.evaluate(str(path), str(path), **kw)
    assert again.meta["blocks_resumed"] == len(blocks) - 1
    assert again.counts.calibration == first.counts.calibration
    np.testing.assert_array_equal(got(again.counts),
                                  oracle(truth, scores, 12, keep=truth != IGNORE))  # fmt: skip
    # other bins are another evaluation: not mixed with the saved blocks
    with pytest.raises(ValueError, match="calibration: 12 there, 7 here"):
        fastseg.evaluate(str(path), str(path), **{**kw, "calibration": 7})
    with pytest.raises(ValueError, match="calibration: 12 there, null here"):
        fastseg.evaluate(str(path), str(path), **{**kw, "calibration": None})


def test_a_folder_of_npy_scores(tmp_path):
    rng = np.random.default_rng(52)
    ids, pairs = ["a", "b", "c"], []
    (tmp_path / "pred").mkdir()
    (tmp_path / "true").mkdir()
    for i, shape in zip(ids, [(10, 12), (7, 15), (9, 9)], strict=True):
        t = rng.integers(0, N, shape).astype(np.uint8)
        s = probabilities(rng, (*shape, N), sharp=2.0)
        np.save(tmp_path / "pred" / f"{i}.npy", s)
        np.save(tmp_path / "true" / f"{i}.npy", t)
        pairs.append((t, s))
    report = fastseg.evaluate(tmp_path / "true", tmp_path / "pred", calibration=10,
                              progress=False)  # fmt: skip
    acc = Accumulator(N, calibration=10)
    for (t, s), i in zip(pairs, ids, strict=True):
        acc.update(t[None], s[None], ids=[i])
    assert list(report.ids) == ids
    assert report.counts.calibration == acc.counts.calibration
    for b, (t, s) in enumerate(pairs):
        np.testing.assert_array_equal(got(report.counts)[b], oracle(t[None], s[None], 10)[0])


# -------------------------------------------------------------------------- 7. the CLI


def test_cli_writes_calibration_to_json_csv_and_table(store, tmp_path, capsys):
    path, truth, scores = store
    base = ["evaluate", "--true", str(path), "--pred", str(path), "--ignore-index", "255",
            "--calibration", "10", "--no-progress"]  # fmt: skip
    expected = Accumulator(N, ignore_index=IGNORE, calibration=10).update(truth, scores)
    cal = expected.counts.calibration
    out = tmp_path / "r.json"
    assert main([*base, "--format", "json", "--output", str(out)]) == 0
    data = json.loads(out.read_text())
    extras = data["extras"]
    assert extras["summary"]["ece"] == pytest.approx(cal.ece(), abs=1e-12)
    assert extras["summary"]["mce"] == pytest.approx(cal.mce(), abs=1e-12)
    c = extras["calibration"]
    assert (c["n_bins"], c["softmax"]) == (10, False)
    assert c["ece"] == pytest.approx(cal.ece(), abs=1e-12)
    assert c["mce"] == pytest.approx(cal.mce(), abs=1e-12)
    assert len(c["bins"]) == 11
    assert [r["pixels"] for r in c["bins"]] == cal.pixels.sum(axis=0).tolist()
    assert sum(r["pixels"] for r in c["bins"]) == (truth != IGNORE).sum()
    assert c["bins"][3]["lower"] == pytest.approx(0.3)
    assert c["bins"][-1]["lower"] == 1.0
    out_csv = tmp_path / "r.csv"
    assert main([*base, "--format", "csv", "--output", str(out_csv)]) == 0
    rows = {r["name"]: r for r in csv.DictReader(io.StringIO(out_csv.read_text()))
            if r["kind"] == "summary"}  # fmt: skip
    assert float(rows["ece"]["value"]) == pytest.approx(cal.ece(), abs=1e-12)
    assert float(rows["mce"]["value"]) == pytest.approx(cal.mce(), abs=1e-12)
    capsys.readouterr()
    assert main(base) == 0
    text = capsys.readouterr().out
    assert f"calibration (n_bins 10, softmax False): ECE {cal.ece():.4f}  MCE {cal.mce():.4f}" in (
        text)  # fmt: skip


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--calibration-softmax"], "--calibration-softmax applies to calibration: pass "
                                    "--calibration BINS"),
        (["--calibration", "0"], "between 1 and 10000 bins; got 0"),
        (["--calibration", "many"], "invalid int value"),
    ],
)  # fmt: skip
def test_cli_refuses_bad_calibration_options(store, tmp_path, capsys, args, message):
    path = store[0]
    argv = ["evaluate", "--true", str(path), "--pred", str(path), "--no-progress",
            "--output", str(tmp_path / "r.json"), *args]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "error" in err
    assert message in err
    assert not (tmp_path / "r.json").exists()


# ----------------------------------------------------------------------- 8. the report


def test_report_text_plot_and_dict(tmp_path):
    pytest.importorskip("matplotlib")
    from fastseg.render import figure

    truth, scores = batch(60, (3, 12, 10), 4)
    acc = Accumulator(4, ignore_index=IGNORE, calibration=5).update(truth, scores)
    report = acc.compute()
    cal = acc.counts.calibration
    assert report.ece == cal.ece()
    assert report.mce == cal.mce()
    assert report.extra_summary == {"ece": cal.ece(), "mce": cal.mce()}
    assert report.extra_columns == {}
    line = f"calibration (n_bins 5, softmax False): ECE {cal.ece():.4f}  MCE {cal.mce():.4f}"
    assert str(report).splitlines()[-1] == line
    d = report.to_dict()
    assert d["extras"]["summary"] == {"ece": cal.ece(), "mce": cal.mce()}
    assert d["extras"]["calibration"] == json.loads(json.dumps(cal.report_dict()))
    png = tmp_path / "r.png"
    report.plot(png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    fig = figure(report)
    panels = [ax for ax in fig.axes if ax.get_title()]  # the colour bar has no title
    assert len(panels) == 3
    assert panels[-1].get_title().startswith(f"reliability (ECE {cal.ece():.4f}, MCE")
    plain = Accumulator(4, ignore_index=IGNORE).update(truth, scores).compute()
    assert plain.to_dict()["extras"] is None
    assert math.isnan(plain.ece)
    assert math.isnan(plain.mce)
    assert "calibration" not in str(plain)
    assert len([ax for ax in figure(plain).axes if ax.get_title()]) == 2


def test_infinite_logits_under_softmax_are_named_as_such():
    logits = np.zeros((1, 2, 2, 3), np.float32)
    logits[0, 0, 0, 1] = np.inf
    with pytest.raises(ValueError, match=r"infinite logits\) at 1 pixels$"):
        fastseg.counts(np.zeros((1, 2, 2), np.uint8), logits, calibration=4,
                       calibration_softmax=True)  # fmt: skip


def test_a_float64_confidence_is_binned_as_float32_like_torchmetrics():
    # float64 0.1 lies below float32(0.1) = 0.10000000149: bin 0 in float64, bin 1 as
    # torchmetrics bins it (its confidences are float32).
    scores = np.full((1, 1, 2, 3), 0.1)
    cal = fastseg.counts(np.zeros((1, 1, 2), np.uint8), scores, calibration=10).calibration
    assert cal.pixels[0].tolist() == [0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0]


@pytest.mark.parametrize("threads", [1, 2])
def test_the_shared_table_kernel_bins_the_same(monkeypatch, threads):
    # Many classes and threads choose the kernel without per-thread tables: its
    # histograms (owners by image) equal the per-thread tables' and the oracle.
    truth, scores = batch(7, (3, 40, 30), 6)
    truth[0, :3] = 255
    expected = fastseg.counts(truth, scores, ignore_index=255, calibration=9)
    monkeypatch.setattr(kernels, "TABLE_SLACK", -(2**40))
    assert kernels.hard_kernel(6, threads) is kernels.hard_counts_shared
    before = numba.get_num_threads()
    numba.set_num_threads(threads)
    try:
        shared = fastseg.counts(truth, scores, ignore_index=255, calibration=9)
    finally:
        numba.set_num_threads(before)
    assert shared == expected
    np.testing.assert_array_equal(got(shared), oracle(truth, scores, 9, keep=truth != 255))


@pytest.mark.parametrize("n_bins", [3, 7, 10, 15, 100, 999])
def test_every_float32_beside_an_edge_is_binned_as_searchsorted(n_bins):
    # The vectorised binning (floor(c n), then the edge above where c lies within n ulps
    # of it) against searchsorted on the float32 edges, at the edges and one ulp around.
    edges = kernels.calibration_edges(n_bins).astype(np.float32)
    around = np.concatenate([np.nextafter(edges, np.float32(-1)), edges,
                             np.nextafter(edges, np.float32(2))])  # fmt: skip
    conf = np.unique(around[(around >= 0) & (around <= 1)]).astype(np.float32)
    scores = np.stack([conf, np.zeros_like(conf)], axis=-1)[None, None]  # (1, 1, P, 2)
    truth = np.zeros(conf.shape, np.uint8)[None, None]
    got_pixels = fastseg.counts(truth, scores, calibration=n_bins).calibration.pixels[0]
    expected = np.searchsorted(edges.astype(np.float64), conf.astype(np.float64),
                               side="right") - 1  # fmt: skip
    np.testing.assert_array_equal(got_pixels, np.bincount(expected, minlength=n_bins + 1))


@pytest.mark.parametrize("shared", [False, True])
def test_a_whole_block_of_certain_right_pixels_adds_exactly(monkeypatch, shared):
    # Every pixel's confidence 1 (the most units one pixel adds) and right, in one bin, for
    # more pixels than a block: the packed increments' fields must not spill into each
    # other (kernels.PACKED_PIXELS). Hand-worked: 2 * 200 * 200 pixels, all in the last
    # bin (confidence exactly 1), each adding 2**24 units.
    if shared:
        monkeypatch.setattr(kernels, "TABLE_SLACK", 0)  # the shared-table kernel
    truth = np.full((2, 200, 200), 2, np.uint8)
    scores = np.zeros((2, 200, 200, 4), np.float32)
    scores[..., 2] = 1.0
    c = fastseg.counts(truth, scores, calibration=5)
    n = 200 * 200
    assert n > kernels.BLOCK > kernels.PACKED_PIXELS
    assert c.calibration.pixels.tolist() == [[0, 0, 0, 0, 0, n]] * 2
    assert c.calibration.correct.tolist() == [[0, 0, 0, 0, 0, n]] * 2
    assert c.calibration.confidence.tolist() == [[0, 0, 0, 0, 0, n * 2**24]] * 2

"""Boundary IoU end to end: counts(), out of core, the Accumulator, the report and the CLI.

Every count is checked against an independent SciPy oracle of the paper's
``mask_to_boundary`` (zero padding, ``binary_erosion`` with a full 3 x 3 / 3 x 3 x 3
square ``iterations=d``, crop), per image and class; ignored truth pixels belong to no
class and are counted nowhere. Out of core, blocks that split images spatially (chunks
smaller than the width, uneven chunks, 3-D volumes split on every axis) must give exactly
the in-memory counts.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re

import dask.array as da
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import ndimage
from stores import zarr_pair as _store

import fastseg
from fastseg.boundary import BoundarySums
from fastseg.cli import main
from fastseg.counts import Counts
from fastseg.stream import Accumulator

IGNORE = 255
N = 4


# ------------------------------------------------------------------------- the oracle


def region(mask, d):
    """The paper's mask_to_boundary of a binary mask at d pixels (2-D or 3-D)."""
    k = mask.ndim
    eroded = ndimage.binary_erosion(np.pad(mask, 1), structure=np.ones((3,) * k, bool),
                                    iterations=d)  # fmt: skip
    return mask & ~eroded[(slice(1, -1),) * k]


def pixels(spatial, width):
    """The width in pixels: itself, or a fraction of the image diagonal (at least 1)."""
    if width >= 1:
        return int(width)
    return max(1, round(width * math.sqrt(sum(s * s for s in spatial))))


def oracle(truth, pred, n, width, ignore=None):
    """(B, 3, N) int64: true, pred, both boundary pixels per image and class."""
    truth, pred = np.asarray(truth), np.asarray(pred)
    out = np.zeros((truth.shape[0], 3, n), np.int64)
    for b in range(truth.shape[0]):
        d = pixels(truth.shape[1:], width)
        keep = np.ones(truth.shape[1:], bool) if ignore is None else truth[b] != ignore
        for c in range(n):
            gb = region(truth[b] == c, d)
            pb = region(pred[b] == c, d)
            out[b, 0, c] = np.count_nonzero(gb & keep)
            out[b, 1, c] = np.count_nonzero(pb & keep)
            out[b, 2, c] = np.count_nonzero(gb & pb & keep)
    return out


def oracle_iou(o):
    """Boundary IoU per class from (B, 3, N) counts: NaN for an empty union."""
    true, pred, both = o.sum(axis=0)
    union = true + pred - both
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, both / np.maximum(union, 1), np.nan)


def got(counts):
    b = counts.boundary
    assert isinstance(b, BoundarySums)
    for a in (b.true, b.pred, b.both):
        assert a.dtype == np.int64
    return np.stack([b.true, b.pred, b.both], axis=1)


def blocky(rng, shape, n, block=3):
    """Label maps of `shape` (B, *spatial) made of `block`-pixel cubes of one class."""
    small = (shape[0], *(-(-s // block) for s in shape[1:]))
    a = rng.integers(0, n, small)
    for axis in range(1, len(shape)):
        a = np.repeat(a, block, axis=axis)
    return a[tuple(slice(0, s) for s in shape)]


def pair(seed, shape, n=N, ignore=False, noise=0.15):
    """(truth, pred) uint8 label maps: blocky, the prediction a noisy copy."""
    rng = np.random.default_rng(seed)
    truth = blocky(rng, shape, n)
    pred = np.where(rng.random(shape) < noise, rng.integers(0, n, shape), truth)
    pred = np.where(rng.random(shape) < 0.5, pred, blocky(rng, shape, n, 4))
    truth = truth.astype(np.uint8)
    if ignore:
        truth[rng.random(shape) < 0.08] = IGNORE
    return truth, pred.astype(np.uint8)


def scores_of(seed, labels, n=N, dtype=np.float32):
    """Scores (class axis last) favouring `labels`, on a grid coarse enough for ties."""
    rng = np.random.default_rng(seed)
    s = rng.integers(0, 3, (*labels.shape, n)) / 4
    s += 0.5 * np.eye(n)[labels]
    return s.astype(dtype)


# --------------------------------------------------------------- 1. in memory, exact


def test_a_worked_example_by_hand():
    # A 4 x 4 square of class 1 in a 6 x 6 image; the prediction one column right.
    truth = np.zeros((1, 6, 6), np.uint8)
    truth[0, 1:5, 1:5] = 1
    pred = np.zeros_like(truth)
    pred[0, 1:5, 2:6] = 1
    c = fastseg.counts(truth, pred, num_classes=2, boundary=1)
    # class 0: its 20 pixels all touch the image's edge or the square; class 1: the ring
    assert c.boundary.true.tolist() == [[20, 12]]
    assert c.boundary.pred.tolist() == [[20, 12]]
    assert c.boundary.both.tolist() == [[16, 6]]
    assert c.boundary.width == 1
    assert c.boundary.iou().tolist() == [16 / 24, 6 / 18]
    # width 2: every pixel of a 4-wide square is within 2 of its outside
    c2 = fastseg.counts(truth, pred, num_classes=2, boundary=2)
    assert c2.boundary.true.tolist() == [[20, 16]]
    # an ignored truth pixel is counted nowhere, and ends the runs of its neighbours
    truth[0, 2, 2] = IGNORE
    c3 = fastseg.counts(truth, pred, num_classes=2, ignore_index=IGNORE, boundary=1)
    assert c3.boundary.true.tolist() == [[20, 15]]  # 12 + the 3 inner pixels beside it
    assert c3.boundary.pred.tolist() == [[20, 11]]  # pred's ring without (2, 2)
    assert c3.boundary.both.tolist() == [[16, 7]]  # and (3, 2), now on both boundaries
    for c_ in (c, c2, c3):
        ig = IGNORE if c_ is c3 else None
        np.testing.assert_array_equal(got(c_), oracle(truth if ig else np.where(
            truth == IGNORE, 1, truth), pred, 2, c_.boundary.width, ig))  # fmt: skip


@pytest.mark.parametrize("spatial", [(17, 13), (6, 7, 8)])
@pytest.mark.parametrize("width", [1, 2, 3, 0.02, 0.1])
@pytest.mark.parametrize("ignore", [None, IGNORE])
def test_label_maps_equal_the_oracle(spatial, width, ignore):
    truth, pred = pair(len(spatial) * 10 + int(width * 100), (3, *spatial),
                       ignore=ignore is not None)  # fmt: skip
    kw = {"spatial_dims": len(spatial)} if len(spatial) == 3 else {}
    c = fastseg.counts(truth, pred, num_classes=N, ignore_index=ignore, boundary=width, **kw)
    expected = oracle(truth, pred, N, width, ignore)
    np.testing.assert_array_equal(got(c), expected)
    assert c.boundary.width == width
    assert type(c.boundary.width) is (int if width >= 1 else float)
    np.testing.assert_array_equal(c.boundary.iou(), oracle_iou(expected))
    # boundary pixels are pixels of their class: never more than the region counts
    assert (c.boundary.true <= c.true).all()
    assert (c.boundary.pred <= c.pred).all()
    assert (c.boundary.both <= c.tp).all()
    # the region counts are unchanged by asking for the boundary
    plain = fastseg.counts(truth, pred, num_classes=N, ignore_index=ignore, **kw)
    assert c.extras.keys() == {"boundary"}
    assert Counts(c.tp, c.pred, c.true, c.confusion, c.ignored) == plain


def test_blocky_maps_have_interior_pixels():
    # The oracle is not trivial here: most pixels are interior at width 1, and the
    # Boundary IoU differs from the IoU.
    truth, pred = pair(1, (2, 30, 30), noise=0.0)
    c = fastseg.counts(truth, pred, num_classes=N, boundary=1)
    assert c.boundary.true.sum() < 0.8 * c.true.sum()
    report = Accumulator(N, boundary=1).update(truth, pred).compute()
    assert not np.allclose(report.extra_columns["boundary_iou"], report.iou)


@pytest.mark.parametrize("spatial", [(15, 11), (5, 6, 7)])
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("layout", ["last", "first"])
@pytest.mark.parametrize("width", [2, 0.1])
def test_score_predictions_are_their_argmax(spatial, dtype, layout, width):
    truth, labels = pair(7 + len(spatial), (2, *spatial), ignore=True)
    scores = scores_of(3, labels, dtype=dtype)
    pred = np.argmax(scores, axis=-1)  # the first largest score on ties
    assert (pred != labels).any()  # ties resolved to a lower class
    class_axis = None
    if layout == "first":
        scores = np.ascontiguousarray(np.moveaxis(scores, -1, 1))
        class_axis = 1
    c = fastseg.counts(truth, scores, class_axis=class_axis, ignore_index=IGNORE,
                       boundary=width)  # fmt: skip
    np.testing.assert_array_equal(got(c), oracle(truth, pred, N, width, IGNORE))


def test_fractions_are_of_each_batchs_diagonal():
    # 60 x 80: a diagonal of 100 pixels, so 0.02 is 2 pixels and 0.1 is 10
    truth, pred = pair(2, (2, 60, 80), noise=0.02)
    for fraction, d in ((0.02, 2), (0.1, 10), (0.004, 1), (0.001, 1)):
        a = fastseg.counts(truth, pred, num_classes=N, boundary=fraction).boundary
        b = fastseg.counts(truth, pred, num_classes=N, boundary=d).boundary
        assert (a.width, b.width) == (fraction, d)
        for name in ("true", "pred", "both"):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
        assert a != b  # the setting differs
    # 3-D: sqrt(6^2 + 8^2 + 24^2) = 26
    truth, pred = pair(3, (1, 6, 8, 24))
    a = fastseg.counts(truth, pred, num_classes=N, spatial_dims=3, boundary=0.1)
    np.testing.assert_array_equal(got(a), oracle(truth, pred, N, 3))


def test_a_label_map_on_the_truth():
    rng = np.random.default_rng(6)
    classes = blocky(rng, (2, 14, 12), 3)
    ids = np.array([7, 8, 11], np.uint8)[classes]
    ids[rng.random(ids.shape) < 0.1] = 26  # unmapped: ignored
    ids[0, :2] = 0
    pred = blocky(rng, (2, 14, 12), 3, 2).astype(np.uint8)
    mapping = {7: 0, 8: 1, 11: 2}
    c = fastseg.counts(ids, pred, num_classes=3, ignore_index=IGNORE, label_map=mapping,
                       boundary=1)  # fmt: skip
    lut = np.full(256, IGNORE)
    for k, v in mapping.items():
        lut[k] = v
    np.testing.assert_array_equal(got(c), oracle(lut[ids], pred, 3, 1, IGNORE))
    assert c.ignored == (lut[ids] == IGNORE).sum() > 0


def test_a_truth_mask_with_a_channel_axis():
    truth, labels = pair(8, (2, 13, 11), n=3)
    scores = np.ascontiguousarray(np.moveaxis(scores_of(4, labels, n=3), -1, 1))
    c = fastseg.counts(truth[:, None], scores, class_axis=1, boundary=2)
    np.testing.assert_array_equal(got(c), oracle(truth, scores.argmax(1), 3, 2))
    # a (B, 1, H, W) mask beside a label map without that axis
    masks = fastseg.counts(truth[:, None], labels, num_classes=3, class_axis=1, boundary=2)
    np.testing.assert_array_equal(got(masks), oracle(truth, labels, 3, 2))


def test_one_channel_scores_with_a_threshold():
    rng = np.random.default_rng(9)
    truth = np.zeros((2, 12, 12), np.uint8)
    truth[:, 3:9, 2:10] = 1
    s = rng.random((2, 12, 12, 1)).astype(np.float32) * 0.6
    s[:, 2:9, 3:10] += 0.45
    c = fastseg.counts(truth, s, threshold=0.5, boundary=1)
    np.testing.assert_array_equal(got(c), oracle(truth, (s[..., 0] > 0.5), 2, 1))


def test_a_class_in_no_image_has_nan_boundary_iou():
    truth, pred = pair(10, (2, 12, 12), n=3)
    c = fastseg.counts(truth, pred, num_classes=5, boundary=1)
    iou = c.boundary.iou()
    assert np.isnan(iou[3:]).all()
    assert not np.isnan(iou[:3]).any()
    np.testing.assert_array_equal(iou, oracle_iou(oracle(truth, pred, 5, 1)))


# ------------------------------------------------------------ 2. out of core: Zarr




def _evaluate(truth, pred, **kw):
    kw.setdefault("progress", False)
    kw.setdefault("ignore_index", None)
    return fastseg.evaluate(truth, pred, **kw)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """5 images of 22 x 19 uint8 labels and float16 scores; chunks split every image."""
    truth, labels = pair(50, (5, 22, 19), ignore=True)
    scores = scores_of(51, labels, dtype=np.float16)
    path = _store(tmp_path_factory.mktemp("biou") / "ds.zarr", truth, scores,
                  pred_chunks=(2, 8, 7, N), true_chunks=(3, 22, 5))  # fmt: skip
    return path, truth, scores


@pytest.mark.parametrize(
    ("case", "pred_chunks", "true_chunks", "width"),
    [
        ("labels", (2, 8, 7), (2, 8, 7), 2),
        ("labels", (1, 2, 3), (5, 4, 4), 3),  # chunks smaller than the width
        ("labels", (3, 22, 4), (2, 5, 19), 0.1),  # rows of blocks; a fraction
        ("labels", (2, 22, 19), (1, 11, 19), 2),  # blocks split the batch only
        ("last", (2, 5, 19, N), (1, 22, 19), 2),
        ("first", (4, N, 9, 6), (2, 22, 7), 1),
        ("first", (1, N, 3, 2), (5, 22, 19), 0.02),
    ],
)  # fmt: skip
def test_zarr_blocks_equal_the_in_memory_counts(tmp_path, case, pred_chunks, true_chunks,
                                                width):  # fmt: skip
    truth, labels = pair(60, (5, 22, 19), ignore=True)
    pred, kw = labels, {"num_classes": N}
    if case != "labels":
        pred, kw = scores_of(61, labels, dtype=np.float16), {}
    if case == "first":
        pred, kw = np.ascontiguousarray(np.moveaxis(pred, -1, 1)), {"class_axis": 1}
    path = _store(tmp_path / "s.zarr", truth, pred, pred_chunks=pred_chunks,
                  true_chunks=true_chunks)  # fmt: skip
    report = _evaluate(path, path, ignore_index=IGNORE, boundary=width, **kw)
    memory = fastseg.counts(truth, pred, ignore_index=IGNORE, boundary=width, **kw)
    assert report.counts.boundary == memory.boundary
    assert report.counts == memory
    hard = pred if case == "labels" else np.argmax(pred, axis=1 if case == "first" else -1)
    np.testing.assert_array_equal(got(report.counts), oracle(truth, hard, N, width, IGNORE))
    assert report.meta["blocks"] > 1


def test_3d_volumes_split_on_every_axis(tmp_path):
    truth, pred = pair(70, (3, 9, 10, 11), ignore=True)
    kw = {"num_classes": N, "spatial_dims": 3, "ignore_index": IGNORE}
    for chunks, width in (((1, 3, 4, 5), 2), ((2, 2, 3, 4), 3), ((3, 4, 10, 3), 0.1),
                          ((1, 5, 5, 5), 1)):  # fmt: skip
        path = _store(tmp_path / f"v{chunks}.zarr", truth, pred, pred_chunks=chunks,
                      true_chunks=(2, 9, 5, 6))  # fmt: skip
        report = _evaluate(path, path, boundary=width, **kw)
        memory = fastseg.counts(truth, pred, boundary=width, **kw)
        assert report.counts == memory, chunks
        np.testing.assert_array_equal(got(report.counts),
                                      oracle(truth, pred, N, width, IGNORE))  # fmt: skip


def _cuts(size):
    """Uneven chunk sizes of an axis of `size`: up to 3 random cuts."""
    cuts = st.lists(st.integers(1, size - 1), max_size=3, unique=True)
    return cuts.map(lambda c: tuple(np.diff([0, *sorted(c), size]).tolist()))


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])  # fmt: skip
@given(
    spatial=st.sampled_from([(9, 12), (13, 7), (5, 6, 7)]),
    b=st.integers(1, 3),
    kind=st.sampled_from(["labels", "last", "first"]),
    width=st.sampled_from([1, 2, 3, 0.1]),
    data=st.data(),
)
def test_any_chunking_gives_the_in_memory_counts(spatial, b, kind, width, data):
    seed = b * 1000 + sum(spatial) * 10 + len(kind)
    truth, labels = pair(seed, (b, *spatial), ignore=True)
    chunks = [data.draw(_cuts(s), label=f"axis {a}") if s > 1 else (s,)
              for a, s in enumerate((b, *spatial))]  # fmt: skip
    label_chunks = tuple(chunks)  # the truth's, when it is not one chunk
    pred, kw, hard = labels, {"num_classes": N}, labels
    if kind != "labels":
        pred, kw = scores_of(seed, labels, dtype=np.float32), {}
        hard = np.argmax(pred, axis=-1)
        chunks.append((N,))
    if kind == "first":
        pred, kw = np.ascontiguousarray(np.moveaxis(pred, -1, 1)), {"class_axis": 1}
        chunks.insert(1, chunks.pop())
    if len(spatial) == 3:
        kw["spatial_dims"] = 3
    true_chunks = data.draw(st.sampled_from(["same", "whole"]), label="truth chunks")
    t = da.from_array(truth, chunks=truth.shape if true_chunks == "whole" else label_chunks)
    report = _evaluate(t, da.from_array(pred, chunks=tuple(chunks)), ignore_index=IGNORE,
                       boundary=width, scheduler="sync", **kw)  # fmt: skip
    memory = fastseg.counts(truth, pred, ignore_index=IGNORE, boundary=width, **kw)
    assert report.counts.boundary == memory.boundary
    assert report.counts == memory
    np.testing.assert_array_equal(got(memory), oracle(truth, hard, N, width, IGNORE))


def test_totals_only_out_of_core(store):
    path, truth, scores = store
    kw = {"ignore_index": IGNORE, "boundary": 2}
    report = _evaluate(path, path, per_image=False, **kw)
    memory = fastseg.counts(truth, scores, **kw)
    assert report.counts.boundary == memory.boundary.total()
    assert report.counts.boundary.n_images == 1
    whole = _evaluate(path, path, **kw)
    np.testing.assert_array_equal(report.extra_columns["boundary_iou"],
                                  whole.extra_columns["boundary_iou"])  # fmt: skip
    expected = oracle_iou(oracle(truth, scores.argmax(-1), N, 2, IGNORE))
    np.testing.assert_array_equal(whole.extra_columns["boundary_iou"], expected)


def test_a_resumed_checkpoint_gives_the_same_boundary_counts(store, tmp_path):
    path, truth, scores = store
    ck = tmp_path / "ck"
    kw = {"ignore_index": IGNORE, "boundary": 2, "checkpoint": ck, "scheduler": "sync"}
    first = _evaluate(path, path, **kw)
    blocks = sorted((ck / "blocks").iterdir())
    assert len(blocks) > 2
    blocks[1].unlink()
    blocks[-1].unlink()
    again = _evaluate(path, path, **kw)
    assert again.meta["blocks_resumed"] == len(blocks) - 2
    assert again.counts == first.counts
    assert again.counts.boundary == fastseg.counts(truth, scores, ignore_index=IGNORE,
                                                   boundary=2).boundary  # fmt: skip
    # all resumed
    third = _evaluate(path, path, **kw)
    assert third.meta["blocks_resumed"] == len(blocks)
    assert third.counts.boundary == first.counts.boundary
    # 2.0 is the same width; any other is another evaluation
    assert _evaluate(path, path, **{**kw, "boundary": 2.0}).counts == first.counts
    for other, shown in ((3, "3"), (0.1, "0.1"), (None, "null")):
        with pytest.raises(ValueError, match=f"boundary: 2 there, {re.escape(shown)} here"):
            _evaluate(path, path, **{**kw, "boundary": other})


def test_a_folder_of_npy_and_png_label_files(tmp_path):
    image = pytest.importorskip("PIL.Image")
    ids = ["a", "b", "c"]
    sizes = [(20, 15), (9, 31), (12, 12)]
    pairs = [pair(80 + k, (1, *s), ignore=True) for k, s in enumerate(sizes)]
    for (t, p), i in zip(pairs, ids, strict=True):
        for side, arr in (("gt", t[0]), ("pred", p[0])):
            (tmp_path / side).mkdir(exist_ok=True)
            image.fromarray(arr).save(tmp_path / side / f"{i}.png")
            (tmp_path / f"{side}_npy").mkdir(exist_ok=True)
            np.save(tmp_path / f"{side}_npy" / f"{i}.npy", arr)
    for width in (2, 0.1):  # a fraction of each image's own diagonal
        expected = np.concatenate([oracle(t, p, N, width, IGNORE) for t, p in pairs])
        acc = Accumulator(N, ignore_index=IGNORE, boundary=width)
        for (t, p), i in zip(pairs, ids, strict=True):
            acc.update(t, p, ids=[i])
        for true, pred, kw in (
            (tmp_path / "gt", tmp_path / "pred", {}),
            (str(tmp_path / "gt_npy" / "*.npy"), [str(tmp_path / "pred_npy" / f"{i}.npy")
                                                  for i in ids], {}),
        ):  # fmt: skip
            report = _evaluate(true, pred, num_classes=N, ignore_index=IGNORE,
                               boundary=width, **kw)  # fmt: skip
            assert list(report.ids) == ids
            np.testing.assert_array_equal(got(report.counts), expected)
            assert report.counts.boundary == acc.counts.boundary


def test_a_width_deeper_than_a_split_axis(tmp_path):
    # An anisotropic volume split along its 4 slices: 0.1 of its diagonal is 6 pixels.
    truth, pred = pair(90, (1, 4, 40, 40))
    path = _store(tmp_path / "thin.zarr", truth, pred, pred_chunks=(1, 2, 40, 40),
                  true_chunks=(1, 2, 40, 40))  # fmt: skip
    kw = {"num_classes": N, "spatial_dims": 3, "boundary": 0.1}
    memory = fastseg.counts(truth, pred, **kw)
    np.testing.assert_array_equal(got(memory), oracle(truth, pred, N, 6))
    assert _evaluate(path, path, **kw).counts.boundary == memory.boundary


# ------------------------------------------------------------------ 3. Accumulator


def test_split_batches_equal_the_whole_and_totals():
    truth, pred = pair(100, (5, 16, 14), ignore=True)
    kw = {"ignore_index": IGNORE, "boundary": 2}
    whole = fastseg.counts(truth, pred, num_classes=N, **kw)
    np.testing.assert_array_equal(got(whole), oracle(truth, pred, N, 2, IGNORE))
    acc = Accumulator(N, **kw)
    for lo, hi in ((0, 2), (2, 3), (3, 5)):
        acc.update(truth[lo:hi], pred[lo:hi])
    assert acc.counts == whole
    assert (fastseg.counts(truth[:2], pred[:2], num_classes=N, **kw)
            + fastseg.counts(truth[2:], pred[2:], num_classes=N, **kw)) == whole  # fmt: skip
    totals = Accumulator(N, per_image=False, **kw)
    totals.update(truth[3:], pred[3:]).update(truth[:3], pred[:3])
    assert totals.counts.boundary == whole.boundary.total()
    np.testing.assert_array_equal(got(totals.counts)[0], got(whole).sum(axis=0))
    np.testing.assert_array_equal(totals.compute().extra_columns["boundary_iou"],
                                  oracle_iou(got(whole)))  # fmt: skip
    # iadd of an accumulator of the same options
    more = Accumulator(N, **kw).update(truth[:2], pred[:2])
    more += Accumulator(N, **kw).update(truth[2:], pred[2:])
    assert more.counts == whole


def test_adding_two_accumulators_of_one_width():
    truth, pred = pair(101, (4, 12, 12))
    a = Accumulator(N, boundary=2).update(truth[:2], pred[:2])
    b = Accumulator(N, boundary=2).update(truth[2:], pred[2:])
    assert a.copy().boundary == 2
    both = a + b
    assert both.counts == fastseg.counts(truth, pred, num_classes=N, boundary=2)


def test_save_and_load_round_trip(tmp_path):
    truth, pred = pair(102, (3, 12, 10), ignore=True)
    for width, per_image in ((2, True), (0.1, False)):
        acc = Accumulator(N, ignore_index=IGNORE, boundary=width, per_image=per_image)
        acc.update(truth, pred)
        path = tmp_path / f"acc{per_image}.npz"
        acc.save(path)
        back = Accumulator.load(path)
        assert back == acc
        assert back.boundary == width
        assert type(back.boundary) is type(width)
        assert back.counts.boundary == acc.counts.boundary
        np.testing.assert_array_equal(back.compute().extra_columns["boundary_iou"],
                                      acc.compute().extra_columns["boundary_iou"])  # fmt: skip
        back.update(truth[:1], pred[:1])  # goes on counting at its width
        assert back.counts.boundary.width == width
    c = fastseg.counts(truth, pred, num_classes=N, ignore_index=IGNORE, boundary=3)
    c.starting_at(4).save(tmp_path / "c.npz")
    assert Counts.load(tmp_path / "c.npz") == c.starting_at(4)
    empty = tmp_path / "empty.npz"
    Accumulator(N, ignore_index=IGNORE, boundary=3).save(empty)
    again = Accumulator.load(empty)
    assert again.boundary == 3
    assert again.update(truth, pred).counts.boundary.width == 3


def test_counts_of_another_width_are_refused():
    truth, pred = pair(103, (2, 10, 10))
    two = fastseg.counts(truth, pred, num_classes=N, boundary=2)
    three = fastseg.counts(truth, pred, num_classes=N, boundary=3)
    plain = fastseg.counts(truth, pred, num_classes=N)
    for counts in (three, plain):
        with pytest.raises(ValueError, match="cannot add these counts"):
            Accumulator(N, boundary=2).add_counts(counts)
    with pytest.raises(ValueError, match="cannot add these counts"):
        Accumulator(N).add_counts(two)
    assert Accumulator(N, boundary=2).add_counts(two).counts == two
    assert Accumulator(N, boundary=2.0).add_counts(two).counts == two
    with pytest.raises(ValueError, match=re.escape(
            "cannot merge boundary computed with {'width': 2} and with {'width': 3}")):  # fmt: skip
        two + three
    with pytest.raises(ValueError, match="counts of pixels without it"):
        two + plain
    with pytest.raises(ValueError, match="boundary: 2 vs 3"):
        Accumulator(N, boundary=2) + Accumulator(N, boundary=3)
    acc = Accumulator(N, boundary=2)
    with pytest.raises(ValueError, match="boundary: 2 vs None"):
        acc += Accumulator(N)


# -------------------------------------------------------------- 4. report and CLI


def test_report_text_dict_csv_and_exclusions():
    truth, pred = pair(110, (3, 18, 16), n=3, ignore=True)
    acc = Accumulator(5, ignore_index=IGNORE, boundary=2).update(truth, pred)
    biou = oracle_iou(oracle(truth, pred, 5, 2, IGNORE))
    assert np.isnan(biou[3:]).all()  # classes 3 and 4 appear nowhere
    report = acc.compute()
    np.testing.assert_array_equal(report.extra_columns["boundary_iou"], biou)
    mean = float(np.nanmean(biou))
    assert report.extra_summary["mboundary_iou"] == pytest.approx(mean, abs=1e-15)
    text = str(report)
    header = next(line for line in text.splitlines() if line.startswith("#"))
    assert header.split()[-1] == "BIoU"
    row1 = next(line for line in text.splitlines() if line.startswith("1 "))
    assert row1.split()[-1] == f"{biou[1]:.4f}"
    assert f"boundary (width 2): mBIoU {mean:.4f}" in text.splitlines()
    d = report.to_dict()
    assert [r["boundary_iou"] for r in d["classes"]] == [*biou[:3].tolist(), None, None]
    assert d["extras"]["summary"]["mboundary_iou"] == pytest.approx(mean, abs=1e-15)
    assert d["extras"]["boundary"] == {"width": 2}
    rows = list(csv.DictReader(io.StringIO(_csv(report))))
    assert float(rows[1]["boundary_iou"]) == pytest.approx(biou[1], abs=1e-15)
    summary = {r["name"]: r["value"] for r in rows if r["kind"] == "summary"}
    assert float(summary["mboundary_iou"]) == pytest.approx(mean, abs=1e-15)
    # exclusions leave the column alone and change the mean as they change mIoU
    excluded = acc.compute(exclude=[0])
    np.testing.assert_array_equal(excluded.extra_columns["boundary_iou"], biou)
    assert excluded.extra_summary["mboundary_iou"] == pytest.approx(np.nanmean(biou[1:]),
                                                                    abs=1e-15)  # fmt: skip
    assert excluded.summary["miou"] == pytest.approx(np.nanmean(report.iou[1:]), abs=1e-15)
    assert excluded.extra_summary["mboundary_iou"] != report.extra_summary["mboundary_iou"]
    assert f"mBIoU {np.nanmean(biou[1:]):.4f}" in str(excluded)
    # a fraction shows as given; without boundary, no column and no line
    frac = Accumulator(5, ignore_index=IGNORE, boundary=0.02).update(truth, pred).compute()
    assert "boundary (width 0.02): mBIoU" in str(frac)
    plain = Accumulator(5, ignore_index=IGNORE).update(truth, pred).compute()
    assert "BIoU" not in str(plain)
    assert "boundary_iou" not in plain.to_dict()["classes"][0]
    assert plain.extra_summary == {}


def _csv(report):
    from fastseg.render import csv_fields, csv_rows

    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=csv_fields(report))
    writer.writeheader()
    writer.writerows(csv_rows(report))
    return out.getvalue()


def test_cli_writes_boundary_iou(store, tmp_path, capsys):
    path, truth, scores = store
    base = ["evaluate", "--true", path, "--pred", path, "--ignore-index", "255",
            "--no-progress", "--boundary"]  # fmt: skip
    expected = oracle(truth, scores.argmax(-1), N, 2, IGNORE)
    biou = oracle_iou(expected)
    out = tmp_path / "out.json"
    assert main([*base, "2", "--format", "json", "--output", str(out)]) == 0
    data = json.loads(out.read_text())
    assert [r["boundary_iou"] for r in data["classes"]] == pytest.approx(biou.tolist(),
                                                                        abs=1e-15)  # fmt: skip
    assert data["extras"]["summary"]["mboundary_iou"] == pytest.approx(np.nanmean(biou),
                                                                       abs=1e-15)  # fmt: skip
    assert data["extras"]["boundary"] == {"width": 2}
    capsys.readouterr()
    assert main([*base, "0.1", "--exclude-class", "0"]) == 0
    text = capsys.readouterr().out
    frac = oracle_iou(oracle(truth, scores.argmax(-1), N, 0.1, IGNORE))
    assert f"boundary (width 0.1): mBIoU {np.nanmean(frac[1:]):.4f}" in text


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("1.5", "whole number of pixels >= 1 or a fraction of the image diagonal in (0, 1); "
                "got 1.5"),
        ("0", "got 0.0"),
        ("-2", "got -2.0"),
        ("nan", "got nan"),
        ("wide", "invalid float value"),
    ],
)  # fmt: skip
def test_cli_refuses_bad_widths(store, tmp_path, capsys, value, message):
    path = store[0]
    out = tmp_path / "out.json"
    argv = ["evaluate", "--true", path, "--pred", path, "--no-progress", "--format", "json",
            "--output", str(out), "--boundary", value]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "error" in err
    assert message in err
    assert not out.exists()


# ------------------------------------------------------------------------- 5. errors

_T = np.zeros((1, 6, 6), np.uint8)


@pytest.mark.parametrize("width", [0, -1, 1.5, float("nan"), float("inf"), True, "2", None])
def test_bad_widths_are_refused_everywhere(width, tmp_path):
    if width is None:
        assert fastseg.counts(_T, _T, num_classes=2, boundary=width).boundary is None
        return
    shown = re.escape(repr(width))
    m = f"^the boundary width must be .*; got {shown}$"
    with pytest.raises(ValueError, match=m):
        fastseg.counts(_T, _T, num_classes=2, boundary=width)
    with pytest.raises(ValueError, match=m):
        Accumulator(2, boundary=width)
    with pytest.raises(ValueError, match=m):
        _evaluate(_T, _T, num_classes=2, boundary=width, checkpoint=tmp_path / "ck")
    assert not (tmp_path / "ck").exists()


def test_soft_counts_are_refused():
    probs = np.full((1, 6, 6, 2), 0.5, np.float32)
    m = "^boundary counts are counts of hard labels: leave out soft=True$"
    with pytest.raises(ValueError, match=m):
        fastseg.counts(_T, probs, soft=True, boundary=2)
    with pytest.raises(ValueError, match=m):
        Accumulator(2, soft=True, boundary=2)
    with pytest.raises(ValueError, match=m):
        _evaluate(_T, probs, soft=True, boundary=2)


@pytest.mark.parametrize("spatial_dims", [1, 4])
def test_other_than_2d_or_3d_images_are_refused(spatial_dims):
    shape = (2, *(3,) * spatial_dims)
    t = np.zeros(shape, np.uint8)
    m = (f"^boundary counts need 2-D images or 3-D volumes; these images have {spatial_dims} "
         "spatial axes$")  # fmt: skip
    kw = {"num_classes": 2, "spatial_dims": spatial_dims, "boundary": 1}
    with pytest.raises(ValueError, match=m):
        fastseg.counts(t, t, **kw)
    with pytest.raises(ValueError, match=m):
        Accumulator(**kw).update(t, t)
    with pytest.raises(ValueError, match=m):
        _evaluate(t, t, **kw)


def test_bad_labels_are_still_refused_with_boundary():
    t = _T.copy()
    t[0, 2, 2] = 7
    with pytest.raises(ValueError, match="y_true has 1 labels outside"):
        fastseg.counts(t, _T, num_classes=2, boundary=1)
    with pytest.raises(ValueError, match="y_pred has 1 labels outside"):
        fastseg.counts(_T, t, num_classes=2, boundary=1)

"""Surface metrics through fastseg's layers: counts, report, Accumulator, files, CLI.

Every value is checked against MONAI 1.6 (``compute_surface_dice`` and
``compute_hausdorff_distance`` on one-hot inputs built here), or against those checked
values through another layer (the report's means by hand, out of core against in memory).
"""

from __future__ import annotations

import csv
import io
import json
import re
import warnings

import numpy as np
import pytest
from stores import zarr_pair as _store

import fastseg
from fastseg import render
from fastseg.cli import main
from fastseg.counts import Counts
from fastseg.stream import Accumulator
from fastseg.surface import SurfaceStat

monai_metrics = pytest.importorskip("monai.metrics")
torch = pytest.importorskip("torch")

IGNORE = 255


# ------------------------------------------------------------------ MONAI, the oracle


def _one_hot(classes, n, keep):
    """(B, *spatial) classes -> float32 one-hot (B, n, *spatial), zero where not `keep`."""
    x = np.zeros((classes.shape[0], n, *classes.shape[1:]), np.float32)
    for c in range(n):
        x[:, c] = (classes == c) & keep
    return torch.from_numpy(x)


def monai(truth, pred, n, *, tolerance=1.0, spacing=None, percentile=95.0, keep=None):
    """MONAI's (surface Dice, Hausdorff) per image and class, float64, include_background.

    `truth`, `pred`: class maps; `keep`: the voxels that count. Elsewhere both one-hot
    maps are zero, which is what MONAI's ``ignore_index`` does (both inputs multiplied by
    "the truth has a class here").
    """
    truth, pred = np.asarray(truth), np.asarray(pred)
    keep = np.ones(truth.shape, bool) if keep is None else keep
    yt, yp = _one_hot(truth, n, keep), _one_hot(pred, n, keep)
    taus = [float(v) for v in np.broadcast_to(tolerance, (n,))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MONAI warns for every empty class
        dice = monai_metrics.compute_surface_dice(yp, yt, taus, include_background=True,
                                                  spacing=spacing)  # fmt: skip
        hd = monai_metrics.compute_hausdorff_distance(yp, yt, include_background=True,
                                                      percentile=percentile,
                                                      spacing=spacing)  # fmt: skip
    return dice.numpy().astype(np.float64), hd.numpy().astype(np.float64)


def assert_same(got, expected):
    """Equal to rtol 1e-6, NaN (and inf) in the same places."""
    got, expected = np.asarray(got, np.float64), np.asarray(expected, np.float64)
    assert got.shape == expected.shape
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(expected))
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def assert_monai(surface, truth, pred, n, **kw):
    assert isinstance(surface, SurfaceStat)
    dice, hd = monai(truth, pred, n, **kw)
    assert_same(surface.dice, dice)
    assert_same(surface.hd, hd)


# ------------------------------------------------------------------ data


def smooth(noise, passes=2):
    """Box-smoothed noise along every axis but the first (the classes)."""
    for _ in range(passes):
        for axis in range(1, noise.ndim):
            noise = (np.roll(noise, 1, axis) + noise + np.roll(noise, -1, axis)) / 3
    return noise


def fields(shape, n, seed):
    """(truth uint8 (B, *spatial), scores float64 (B, *spatial, n)): smooth blobs; the
    scores are the truth's noise plus their own, so the argmax resembles the truth."""
    rng = np.random.default_rng(seed)
    b, spatial = shape[0], shape[1:]
    truth = np.empty(shape, np.uint8)
    scores = np.empty((*shape, n))
    for i in range(b):
        noise = rng.standard_normal((n, *spatial))
        truth[i] = smooth(noise).argmax(0)
        scores[i] = np.moveaxis(smooth(noise + 0.7 * rng.standard_normal(noise.shape)), 0, -1)
    return truth, scores


SHAPES = {2: (3, 20, 24), 3: (2, 10, 12, 14)}
SPACINGS = {2: (0.7, 1.3), 3: (2.5, 0.8, 1.1)}


# ------------------------------------------------------------ 1. counts() against MONAI


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("kind", ["labels", "last", "first", "float16"])
def test_counts_equal_monai(ndim, kind):
    n = 4
    truth, scores = fields(SHAPES[ndim], n, seed=10 * ndim + len(kind))
    # class n-1: in neither map of image 0 (NaN), in the truth only of image 1
    truth[0][truth[0] == n - 1] = 0
    drop = np.zeros(truth.shape, bool)
    drop[:2] = scores[:2].argmax(-1) == n - 1
    scores[drop, 0] = 10.0
    kw = {}
    if kind == "labels":
        pred_in = scores.argmax(-1).astype(np.uint8)
        kw["num_classes"] = n
    elif kind == "last":
        pred_in = scores.astype(np.float32)
    else:  # channels first, class_axis=1; float16: ties are frequent, the first wins
        dtype = np.float32 if kind == "first" else np.float16
        pred_in = np.ascontiguousarray(np.moveaxis(scores.astype(dtype), -1, 1))
        kw["class_axis"] = 1
    pred = pred_in if kind == "labels" else pred_in.argmax(1 if "class_axis" in kw else -1)
    assert not (pred[:2] == n - 1).any()
    assert (truth[1] == n - 1).any()
    spacing = SPACINGS[ndim]
    tau = [0.0, 1.0, 1.5, 2.0]  # one per class
    c = fastseg.counts(truth, pred_in, surface=tau, spacing=spacing, **kw)
    assert c.surface is c.extras["surface"]
    assert c.surface.dice.shape == c.surface.hd.shape == (truth.shape[0], n)
    assert (c.surface.tolerance, c.surface.spacing, c.surface.percentile) == (
        tau, list(spacing), 95.0)  # fmt: skip
    assert_monai(c.surface, truth, pred, n, tolerance=tau, spacing=spacing)
    # NaN where the class is in neither map; surface Dice 0 / HD95 NaN in one only
    assert np.isnan(c.surface.dice[0, n - 1])
    assert np.isnan(c.surface.hd[0, n - 1])
    assert c.surface.dice[1, n - 1] == 0
    assert np.isnan(c.surface.hd[1, n - 1])
    assert np.isfinite(c.surface.hd[:, : n - 1]).all()
    # the Hausdorff maximum (percentile=None): inf for the class in one map only
    top = fastseg.counts(truth, pred_in, surface=1.0, spacing=spacing, percentile=None, **kw)
    assert top.surface.percentile is None
    assert top.surface.hd_name == "hd"
    assert_monai(top.surface, truth, pred, n, tolerance=1.0, spacing=spacing, percentile=None)
    assert top.surface.hd[1, n - 1] == np.inf
    assert (top.surface.hd[:, : n - 1] >= c.surface.hd[:, : n - 1]).all()
    # the region counts are unchanged by the surface scores
    plain = fastseg.counts(truth, pred_in, **kw)
    np.testing.assert_array_equal(plain.tp, c.tp)
    np.testing.assert_array_equal(plain.confusion, c.confusion)
    assert plain.surface is None


@pytest.mark.parametrize("ndim", [2, 3])
def test_spacing_scales_the_distances(ndim):
    truth, scores = fields(SHAPES[ndim], 3, seed=3)
    pred = scores.argmax(-1).astype(np.uint8)
    one = fastseg.counts(truth, pred, num_classes=3, surface=2.0).surface
    assert_monai(one, truth, pred, 3, tolerance=2.0)
    twice = fastseg.counts(truth, pred, num_classes=3, surface=4.0, spacing=2.0).surface
    np.testing.assert_array_equal(twice.hd, 2 * one.hd)  # exact: a power of two
    np.testing.assert_array_equal(twice.dice, one.dice)
    uniform = fastseg.counts(truth, pred, num_classes=3, surface=4.0,
                             spacing=[2.0] * ndim).surface  # fmt: skip
    np.testing.assert_array_equal(uniform.hd, twice.hd)
    np.testing.assert_array_equal(uniform.dice, twice.dice)
    assert (uniform.spacing, twice.spacing) == ([2.0] * ndim, 2.0)
    aniso = fastseg.counts(truth, pred, num_classes=3, surface=2.0,
                           spacing=SPACINGS[ndim]).surface  # fmt: skip
    assert_monai(aniso, truth, pred, 3, tolerance=2.0, spacing=SPACINGS[ndim])
    assert not np.array_equal(aniso.hd, one.hd, equal_nan=True)


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("percentile", [50.0, 99.5, 100.0])
def test_other_percentiles_equal_monai(ndim, percentile):
    truth, scores = fields(SHAPES[ndim], 3, seed=4)
    pred = scores.argmax(-1).astype(np.uint8)
    c = fastseg.counts(truth, pred, num_classes=3, surface=1.0, spacing=SPACINGS[ndim],
                       percentile=percentile)  # fmt: skip
    assert c.surface.percentile == percentile
    assert_monai(c.surface, truth, pred, 3, spacing=SPACINGS[ndim], percentile=percentile)


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("kind", ["labels", "first"])
def test_ignored_voxels_equal_monai_ignore_index(ndim, kind):
    n = 4
    truth, scores = fields(SHAPES[ndim], n, seed=5 + ndim)
    rng = np.random.default_rng(6)
    truth[:, 3:6] = IGNORE  # a slab cuts the masks: edges along the cut
    truth[rng.random(truth.shape) < 0.04] = IGNORE
    pred = scores.argmax(-1).astype(np.uint8)
    if kind == "labels":
        pred_in, kw = pred, {"num_classes": n}
    else:
        pred_in = np.ascontiguousarray(np.moveaxis(scores.astype(np.float32), -1, 1))
        kw = {"class_axis": 1}
    spacing = SPACINGS[ndim]
    c = fastseg.counts(truth, pred_in, ignore_index=IGNORE, surface=1.0, spacing=spacing, **kw)
    keep = truth != IGNORE
    assert_monai(c.surface, truth, pred, n, spacing=spacing, keep=keep)
    # it is not the same as scoring the prediction everywhere
    everywhere = monai(np.where(keep, truth, 0), pred, n, spacing=spacing)
    assert not np.array_equal(c.surface.dice, everywhere[0], equal_nan=True)
    # and MONAI's own ignore_index: a sentinel outside the channels, the truth's one-hot
    # empty at the ignored voxels
    yt = _one_hot(truth, n, keep)
    yp = _one_hot(pred, n, np.ones_like(keep))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dice = monai_metrics.compute_surface_dice(yp, yt, [1.0] * n, include_background=True,
                                                  spacing=spacing, ignore_index=n)  # fmt: skip
        metric = monai_metrics.HausdorffDistanceMetric(
            include_background=True, percentile=95, reduction="none", ignore_index=n)
        hd = metric(yp, yt, spacing=spacing)
    assert_same(c.surface.dice, dice.numpy())
    assert_same(c.surface.hd, hd.numpy())


def test_a_label_id_map_on_the_truth():
    rng = np.random.default_rng(7)
    truth, scores = fields((3, 16, 18), 3, seed=8)
    codes = np.array([7, 8, 11], np.uint8)
    ids = codes[truth]
    ids[rng.random(ids.shape) < 0.05] = 200  # no class: ignored
    ids[:, :2] = 0
    mapping = {7: 0, 8: 1, 11: 2}
    pred = scores.argmax(-1).astype(np.uint8)
    c = fastseg.counts(ids, scores.astype(np.float32), label_map=mapping, ignore_index=IGNORE,
                       surface=[1.0, 2.0, 0.5], spacing=(1.2, 0.9))  # fmt: skip
    lut = np.full(256, -1)
    for k, v in mapping.items():
        lut[k] = v
    classes = lut[ids]
    assert c.ignored == (classes < 0).sum() > 0
    assert_monai(c.surface, np.maximum(classes, 0), pred, 3, tolerance=[1.0, 2.0, 0.5],
                 spacing=(1.2, 0.9), keep=classes >= 0)  # fmt: skip


def test_a_label_map_prediction_of_other_ids():
    truth, scores = fields((2, 14, 15), 3, seed=9)
    pred = scores.argmax(-1).astype(np.uint8)
    codes = np.array([7, 8, 11], np.uint8)
    mapping = {7: 0, 8: 1, 11: 2}
    c = fastseg.counts(codes[truth], codes[pred], num_classes=3, label_map=mapping,
                       label_map_pred=True, ignore_index=IGNORE, surface=1.0)  # fmt: skip
    assert c.surface == fastseg.counts(truth, pred, num_classes=3, surface=1.0).surface
    assert_monai(c.surface, truth, pred, 3)


def test_perfect_and_shifted_squares_by_hand():
    truth = np.zeros((1, 12, 12), np.uint8)
    truth[0, 2:6, 2:6] = 1
    pred = np.zeros_like(truth)
    pred[0, 2:6, 3:7] = 1  # one column to the right
    c = fastseg.counts(truth, pred, num_classes=2, surface=1.0)
    # class 1: 12 edge voxels each, every distance 0 or 1: NSD 1, HD95 1
    assert c.surface.dice[0, 1] == 1.0
    assert c.surface.hd[0, 1] == 1.0
    # at tolerance 0.5: 6 of 12 predicted and 6 of 12 true edge voxels are on the other
    assert fastseg.counts(truth, pred, num_classes=2, surface=0.5).surface.dice[0, 1] == 0.5
    same = fastseg.counts(truth, truth, num_classes=2, surface=0.0).surface
    np.testing.assert_array_equal(same.dice, [[1.0, 1.0]])
    np.testing.assert_array_equal(same.hd, [[0.0, 0.0]])
    assert_monai(c.surface, truth, pred, 2)


# -------------------------------------------------------------------------- 2. report


def _three_cases():
    """3 cases, 3 classes: case 1 has no class 2 (NaN), case 2 class 2 in the truth only."""
    truth = np.zeros((3, 12, 12), np.uint8)
    pred = np.zeros_like(truth)
    truth[:, 2:6, 2:6] = 1
    pred[0, 2:6, 3:7] = 1
    pred[1, 2:6, 2:6] = 1
    pred[2, 3:8, 4:8] = 1
    truth[0, 8:10, 8:11] = 2
    pred[0, 8:10, 8:11] = 2
    truth[2, 8:11, 1:4] = 2
    return truth, pred


def test_report_means_over_cases_by_hand():
    truth, pred = _three_cases()
    c = fastseg.counts(truth, pred, num_classes=3, surface=1.0)
    d, h = c.surface.dice, c.surface.hd
    assert_monai(c.surface, truth, pred, 3)
    assert np.isnan(d[1, 2])
    assert np.isnan(h[1, 2])
    assert d[2, 2] == 0
    assert np.isnan(h[2, 2])
    assert (d[0, 1], h[0, 1], d[1, 1], h[1, 1], d[0, 2], h[0, 2]) == (1, 1, 1, 0, 1, 0)
    report = fastseg.Report(c)
    col_d = report.extra_columns["surface_dice"]
    col_h = report.extra_columns["hd95"]
    assert list(report.extra_columns) == ["surface_dice", "hd95"]
    np.testing.assert_allclose(col_d, [(d[0, 0] + d[1, 0] + d[2, 0]) / 3,
                                       (1 + 1 + d[2, 1]) / 3, (1 + 0) / 2], rtol=1e-15)  # fmt: skip
    np.testing.assert_allclose(col_h, [(h[0, 0] + h[1, 0] + h[2, 0]) / 3,
                                       (1 + 0 + h[2, 1]) / 3, 0.0], rtol=1e-15)  # fmt: skip
    summary = report.extra_summary
    assert summary["msurface_dice"] == pytest.approx(col_d.mean(), rel=1e-15)
    assert summary["mhd95"] == pytest.approx(col_h.mean(), rel=1e-15)
    kept = fastseg.Report(c, exclude=[0])
    assert kept.extra_summary["msurface_dice"] == pytest.approx(col_d[1:].mean(), rel=1e-15)
    assert kept.extra_summary["mhd95"] == pytest.approx(col_h[1:].mean(), rel=1e-15)
    assert kept.extra_summary["msurface_dice"] != summary["msurface_dice"]
    assert kept.extra_summary["mhd95"] != summary["mhd95"]
    # a class with no value in any case: NaN, left out of the mean
    nothing = fastseg.Report(fastseg.counts(truth[1:2], pred[1:2], num_classes=3, surface=1.0))
    assert np.isnan(nothing.extra_columns["hd95"][2])
    assert nothing.extra_summary["mhd95"] == pytest.approx(
        np.nanmean(nothing.extra_columns["hd95"][:2]))  # fmt: skip


def test_report_text_json_and_csv(tmp_path):
    truth, pred = _three_cases()
    report = fastseg.Report(fastseg.counts(truth, pred, num_classes=3, surface=1.0,
                                           spacing=(1.0, 0.5)), exclude=[0])  # fmt: skip
    col_d, col_h = report.extra_columns["surface_dice"], report.extra_columns["hd95"]
    m_d, m_h = report.extra_summary["msurface_dice"], report.extra_summary["mhd95"]
    text = str(report)
    header = next(line for line in text.splitlines() if line.startswith("#"))
    assert header.split()[-2:] == ["NSD", "HD95"]
    row2 = next(line for line in text.splitlines() if line.startswith("2 "))
    assert row2.split()[-2:] == [f"{col_d[2]:.4f}", f"{col_h[2]:.4f}"]
    assert (f"surface (tolerance 1.0, spacing [1.0, 0.5], percentile 95.0): "
            f"mNSD {m_d:.4f}  mHD95 {m_h:.4f}") in text  # fmt: skip
    data = json.loads(json.dumps(report.to_dict()))
    assert data["extras"]["surface"] == {"tolerance": 1.0, "spacing": [1.0, 0.5],
                                         "percentile": 95.0}  # fmt: skip
    assert data["extras"]["summary"] == {"msurface_dice": m_d, "mhd95": m_h}
    assert [r["surface_dice"] for r in data["classes"]] == col_d.tolist()
    assert [r["hd95"] for r in data["classes"]] == col_h.tolist()
    path = report.to_csv(tmp_path / "r.csv")
    rows = list(csv.DictReader(io.StringIO(path.read_text())))
    summary = {r["name"]: r["value"] for r in rows if r["kind"] == "summary"}
    assert float(summary["msurface_dice"]) == m_d
    assert float(summary["mhd95"]) == m_h
    classes = [r for r in rows if r["kind"] == "class"]
    assert [float(r["surface_dice"]) for r in classes] == col_d.tolist()
    assert [float(r["hd95"]) for r in classes] == col_h.tolist()
    # NaN classes are null in the JSON, empty in the CSV
    one = fastseg.Report(fastseg.counts(truth[1:2], pred[1:2], num_classes=3, surface=1.0))
    assert one.to_dict()["classes"][2]["hd95"] is None
    rows = render.csv_rows(one)
    assert [r["hd95"] for r in rows if r["kind"] == "class"][2] is None


@pytest.mark.parametrize("percentile", [None, 90.0])
def test_report_text_shows_the_hausdorff_mean_of_any_percentile(percentile):
    truth, pred = _three_cases()
    report = fastseg.Report(fastseg.counts(truth, pred, num_classes=3, surface=1.0,
                                           percentile=percentile))  # fmt: skip
    name = "mhd" if percentile is None else "mhd90"
    value = report.extra_summary[name]  # computed, under the column's name
    line = next(x for x in str(report).splitlines() if x.startswith("surface ("))
    assert f"{value:.4f}" in line


# --------------------------------------------------------------------- 3. Accumulator


def test_accumulator_batches_equal_the_whole():
    truth, scores = fields((5, 8, 10, 9), 4, seed=20)
    truth, scores = truth, scores.astype(np.float32)
    kw = {"surface": [0.5, 1.0, 1.0, 2.0], "spacing": (2.0, 1.0, 0.7), "percentile": 90}
    whole = fastseg.counts(truth, scores, **kw)
    acc = Accumulator(4, **kw)
    acc.update(truth[:2], scores[:2], ids=["a", "b"]).update(truth[2:3], scores[2:3])
    acc.update(truth[3:], scores[3:])
    assert acc.counts.surface == whole.surface
    assert acc.ids == ["a", "b", "2", "3", "4"]
    assert_monai(acc.counts.surface, truth, scores.argmax(-1), 4, tolerance=kw["surface"],
                 spacing=kw["spacing"], percentile=90)  # fmt: skip
    report = acc.compute()
    np.testing.assert_array_equal(report.extra_columns["hd90"],
                                  np.nanmean(whole.surface.hd, axis=0))  # fmt: skip
    # merged accumulators and added counts
    other = Accumulator(4, **kw).update(truth[:2], scores[:2])
    other += Accumulator(4, **kw).add_counts(fastseg.counts(truth[2:], scores[2:], **kw))
    assert other.counts.surface == whole.surface


def test_accumulator_save_load_round_trip(tmp_path):
    truth, scores = fields((3, 12, 14), 3, seed=21)
    pred = scores.argmax(-1).astype(np.uint8)
    acc = Accumulator(3, surface=1.5, spacing=(0.5, 2.0), percentile=None)
    acc.update(truth[:2], pred[:2])
    acc.save(tmp_path / "acc.npz")
    back = Accumulator.load(tmp_path / "acc.npz")
    assert back == acc
    assert back.surface == {"tolerance": 1.5, "spacing": [0.5, 2.0], "percentile": None}
    assert back.counts.surface == acc.counts.surface
    back.update(truth[2:], pred[2:])  # it goes on with its options
    whole = fastseg.counts(truth, pred, num_classes=3, surface=1.5, spacing=(0.5, 2.0),
                           percentile=None)  # fmt: skip
    assert back.counts.surface == whole.surface
    assert_monai(back.counts.surface, truth, pred, 3, tolerance=1.5, spacing=(0.5, 2.0),
                 percentile=None)  # fmt: skip
    c = whole.starting_at(4)
    c.save(tmp_path / "c.npz")
    assert Counts.load(tmp_path / "c.npz") == c
    # an empty accumulator keeps its options through a file
    Accumulator(3, surface=[1, 2, 3]).save(tmp_path / "empty.npz")
    assert Accumulator.load(tmp_path / "empty.npz").surface["tolerance"] == [1.0, 2.0, 3.0]


def test_accumulator_refusals():
    with pytest.raises(ValueError, match=r"scores per image \(case\): they need per_image=True"):
        Accumulator(3, surface=1.0, per_image=False)
    with pytest.raises(ValueError, match=r"^spacing applies to surface metrics: pass surface="):
        Accumulator(3, spacing=(1.0, 2.0))
    with pytest.raises(ValueError, match="leave out soft=True"):
        Accumulator(3, surface=1.0, soft=True)
    truth, scores = fields((2, 10, 11), 3, seed=22)
    pred = scores.argmax(-1).astype(np.uint8)
    acc = Accumulator(3, surface=1.0, spacing=(1.0, 2.0))
    for other in ({"surface": 2.0, "spacing": (1.0, 2.0)}, {"surface": 1.0, "spacing": 3.0},
                  {"surface": 1.0, "spacing": (1.0, 2.0), "percentile": None}, {}):  # fmt: skip
        c = fastseg.counts(truth, pred, num_classes=3, **other)
        with pytest.raises(ValueError, match="cannot add these counts"):
            acc.add_counts(c)
    assert acc.n_images == 0
    with pytest.raises(ValueError, match="surface"):
        Accumulator(3, surface=1.0) + Accumulator(3, surface=2.0)
    # parts of one image never merge: per-case scores
    top = fastseg.counts(truth[:, :5], pred[:, :5], num_classes=3, surface=1.0)
    bottom = fastseg.counts(truth[:, 5:], pred[:, 5:], num_classes=3, surface=1.0)
    with pytest.raises(ValueError, match="scores of whole images"):
        Counts.merge([top, bottom])
    # the totals of counts keep no per-case scores
    assert fastseg.counts(truth, pred, num_classes=3, surface=1.0).total().surface is None


# -------------------------------------------------------------------- 4. out of core

N = 4




@pytest.fixture(scope="module")
def volumes(tmp_path_factory):
    """5 volumes, float16 channels-first scores: chunks split the volumes and the batch."""
    truth, scores = fields((5, 8, 12, 10), N, seed=30)
    truth[:, :, :2] = IGNORE
    truth[4][truth[4] == 3] = 1  # class 3: NaN / 0 in the last volume
    first = np.ascontiguousarray(np.moveaxis(scores.astype(np.float16), -1, 1))
    first[4, 3] = -10.0
    path = _store(tmp_path_factory.mktemp("surface") / "v.zarr", truth, first,
                  pred_chunks=(2, N, 4, 6, 10), true_chunks=(3, 8, 5, 4))  # fmt: skip
    return path, truth, first


SURFACE = {"surface": [0.0, 1.0, 1.5, 2.0], "spacing": (2.5, 0.8, 0.8), "ignore_index": IGNORE,
           "class_axis": 1}  # fmt: skip


def test_out_of_core_equals_in_memory(volumes):
    path, truth, first = volumes
    report = fastseg.evaluate(str(path), str(path), progress=False, **SURFACE)
    memory = fastseg.counts(truth, first, **SURFACE)
    got = report.counts.surface
    assert got == memory.surface  # exactly, NaN in the same places
    assert np.isnan(got.dice[4, 3])
    assert np.isnan(got.hd[4, 3])
    assert_monai(got, np.where(truth == IGNORE, 0, truth), first.argmax(1), N,
                 tolerance=SURFACE["surface"], spacing=SURFACE["spacing"],
                 keep=truth != IGNORE)  # fmt: skip
    np.testing.assert_array_equal(report.extra_columns["hd95"],
                                  fastseg.Report(memory).extra_columns["hd95"])  # fmt: skip
    # per_image=False: refused, not silently without the surfaces
    with pytest.raises(ValueError, match="per_image=True"):
        fastseg.evaluate(str(path), str(path), progress=False, per_image=False, **SURFACE)


@pytest.mark.parametrize(
    ("layout", "chunks"),
    [("labels", (2, 5, 7)), ("last", (3, 8, 6, 3)), ("last", (3, 8, 6, 2)),
     ("first", (2, 3, 16, 5))],
)  # fmt: skip
def test_out_of_core_images_of_every_layout(tmp_path, layout, chunks):
    truth, scores = fields((5, 16, 18), 3, seed=32)
    truth[:, 0, :3] = IGNORE
    pred = scores.astype(np.float32)
    kw = {"surface": 1.0, "spacing": (1.0, 0.5), "ignore_index": IGNORE, "boundary": 2}
    if layout == "labels":
        pred, kw["num_classes"] = pred.argmax(-1).astype(np.uint8), 3
    elif layout == "first":
        pred, kw["class_axis"] = np.ascontiguousarray(np.moveaxis(pred, -1, 1)), 1
    path = _store(tmp_path / "s.zarr", truth, pred, pred_chunks=chunks, true_chunks=(4, 7, 18))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # chunks split the class axis: rechunked
        report = fastseg.evaluate(str(path), str(path), progress=False, **kw)
    memory = fastseg.counts(truth, pred, **kw)
    assert report.counts == memory  # the surfaces and the boundary counts too
    assert_monai(report.counts.surface, np.where(truth == IGNORE, 0, truth),
                 scores.argmax(-1), 3, spacing=(1.0, 0.5), keep=truth != IGNORE)  # fmt: skip


def test_a_resumed_checkpoint_gives_the_same_surfaces(volumes, tmp_path):
    path, truth, first = volumes
    ck = tmp_path / "ck"
    kw = {**SURFACE, "progress": False, "checkpoint": ck, "scheduler": "sync"}
    done = fastseg.evaluate(str(path), str(path), **kw)
    blocks = sorted((ck / "blocks").iterdir())
    assert len(blocks) >= 2
    blocks[0].unlink()
    again = fastseg.evaluate(str(path), str(path), **kw)
    assert again.meta["blocks_resumed"] == len(blocks) - 1
    assert again.counts.surface == done.counts.surface
    assert again.counts.surface == fastseg.counts(truth, first, **SURFACE).surface
    # another tolerance or spacing is another evaluation
    with pytest.raises(ValueError, match=re.escape("surface: [0.0, 1.0, 1.5, 2.0] there, "
                                                   "1.0 here")):  # fmt: skip
        fastseg.evaluate(str(path), str(path), **{**kw, "surface": 1.0})
    with pytest.raises(ValueError, match=re.escape("spacing: [2.5, 0.8, 0.8] there, 1.0 here")):
        fastseg.evaluate(str(path), str(path), **{**kw, "spacing": 1.0})
    with pytest.raises(ValueError, match=re.escape("percentile: 95.0 there, null here")):
        fastseg.evaluate(str(path), str(path), **{**kw, "percentile": None})


def _nifti(path, vol, zooms):
    """Write the (Z, Y, X) array as NIfTI data (X, Y, Z) with voxel sizes `zooms` (x, y, z)."""
    nibabel = pytest.importorskip("nibabel")
    path.parent.mkdir(parents=True, exist_ok=True)
    nibabel.save(nibabel.Nifti1Image(np.asarray(vol).T, np.diag([*zooms, 1.0])), path)


def test_nifti_folders_use_each_header_spacing(tmp_path):
    truth, scores = fields((2, 6, 12, 10), 3, seed=31)
    pred = scores.argmax(-1).astype(np.uint8)
    zooms = [(0.8, 0.8, 2.5), (1.0, 0.6, 1.5)]  # x, y, z of each case
    for i, z in enumerate(zooms):
        _nifti(tmp_path / "true" / f"c{i}.nii.gz", truth[i], z)
        _nifti(tmp_path / "pred" / f"c{i}.nii.gz", pred[i], z)
    kw = {"num_classes": 3, "surface": 1.0, "progress": False}
    report = fastseg.evaluate(tmp_path / "true", tmp_path / "pred", **kw)
    assert list(report.ids) == ["c0", "c1"]
    got = report.counts.surface
    assert got.spacing is None  # each file's own
    for i, z in enumerate(zooms):
        spacing = z[::-1]  # array order (Z, Y, X)
        alone = fastseg.counts(truth[i : i + 1], pred[i : i + 1], num_classes=3, surface=1.0,
                               spacing=spacing).surface  # fmt: skip
        assert_same(got.dice[i], alone.dice[0])
        assert_same(got.hd[i], alone.hd[0])
        assert_monai(alone, truth[i : i + 1], pred[i : i + 1], 3, spacing=spacing)
    # not the spacing of the other case, nor 1
    flat = fastseg.counts(truth, pred, num_classes=3, surface=1.0).surface
    assert not np.array_equal(got.hd, flat.hd, equal_nan=True)
    # spacing= given: that instead of the headers', for every case
    given = fastseg.evaluate(tmp_path / "true", tmp_path / "pred", spacing=(1.0, 2.0, 3.0), **kw)
    expected = fastseg.counts(truth, pred, num_classes=3, surface=1.0, spacing=(1.0, 2.0, 3.0))
    assert given.counts.surface == expected.surface


# --------------------------------------------------------------------------- 5. CLI


def test_cli_surface_options(volumes, tmp_path, capsys):
    path, truth, first = volumes
    base = ["evaluate", "--true", str(path), "--pred", str(path), "--ignore-index", "255",
            "--class-axis", "1", "--no-progress", "--surface", "1"]  # fmt: skip
    out = tmp_path / "r.json"
    assert main([*base, "--format", "json", "--output", str(out)]) == 0
    expected = fastseg.Report(fastseg.counts(truth, first, class_axis=1, ignore_index=IGNORE,
                                             surface=1.0))  # fmt: skip
    data = json.loads(out.read_text())
    assert data["extras"]["surface"] == {"tolerance": 1.0, "spacing": None, "percentile": 95.0}
    assert data["extras"]["summary"]["msurface_dice"] == pytest.approx(
        expected.extra_summary["msurface_dice"], rel=1e-12)  # fmt: skip
    assert data["extras"]["summary"]["mhd95"] == pytest.approx(
        expected.extra_summary["mhd95"], rel=1e-12)  # fmt: skip
    got_hd = [np.nan if r["hd95"] is None else r["hd95"] for r in data["classes"]]
    assert_same(got_hd, expected.extra_columns["hd95"])

    out = tmp_path / "max.json"
    argv = [*base, "--percentile", "max", "--spacing", "2", "1", "1", "--format", "json",
            "--output", str(out)]  # fmt: skip
    assert main(argv) == 0
    data = json.loads(out.read_text())
    assert data["extras"]["surface"] == {"tolerance": 1.0, "spacing": [2.0, 1.0, 1.0],
                                         "percentile": None}  # fmt: skip
    c = fastseg.counts(truth, first, class_axis=1, ignore_index=IGNORE, surface=1.0,
                       spacing=(2.0, 1.0, 1.0), percentile=None)  # fmt: skip
    got_hd = [np.nan if r["hd"] is None else r["hd"] for r in data["classes"]]
    assert_same(got_hd, fastseg.Report(c).extra_columns["hd"])
    assert_monai(c.surface, np.where(truth == IGNORE, 0, truth), first.argmax(1), N,
                 spacing=(2.0, 1.0, 1.0), percentile=None, keep=truth != IGNORE)  # fmt: skip

    capsys.readouterr()
    assert main([*base, "--surface", "0", "1", "1", "2", "--percentile", "99"]) == 0
    text = capsys.readouterr().out
    assert "surface (tolerance [0.0, 1.0, 1.0, 2.0], spacing None, percentile 99.0)" in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--surface", "-1"], "surface tolerance must be a number >= 0"),
        (["--surface", "1", "--percentile", "0"], "percentile must be in (0, 100]"),
        (["--surface", "1", "--percentile", "101"], "percentile must be in (0, 100]"),
        (["--surface", "1", "--percentile", "abc"], "not a percentile or 'max': 'abc'"),
        (["--surface", "1", "--spacing", "0"], "spacing must be a number > 0"),
        (["--surface", "1", "--spacing", "1", "2"], "spacing has 2 values for 3 spatial axes"),
        (["--surface", "1", "2"], "surface has 2 tolerances for 4 classes"),
        (["--spacing", "2"], "spacing applies to surface metrics"),
        (["--surface", "nan"], "surface tolerance must be a number >= 0"),
    ],
)
def test_cli_refuses_bad_surface_options(volumes, tmp_path, capsys, args, message):
    path = volumes[0]
    argv = ["evaluate", "--true", str(path), "--pred", str(path), "--ignore-index", "255",
            "--class-axis", "1", "--no-progress", "--output", str(tmp_path / "r.json"), *args]
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "error" in err
    assert message in err
    assert not (tmp_path / "r.json").exists()


# -------------------------------------------------------------------------- 6. errors

_T2 = np.zeros((1, 6, 6), np.uint8)
_P2 = np.full((1, 6, 6, 3), 1 / 3, np.float32)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"surface": 1.0, "soft": True}, "surface metrics compare hard labels: leave out "
                                         "soft=True"),
        ({"surface": -1.0}, "surface tolerance must be a number >= 0 or one per class; got -1.0"),
        ({"surface": float("nan")}, "surface tolerance must be a number >= 0"),
        ({"surface": float("inf")}, "surface tolerance must be a number >= 0"),
        ({"surface": True}, "surface tolerance must be a number >= 0"),
        ({"surface": [1.0, -0.5, 1.0]}, "surface tolerance must be a number >= 0"),
        ({"surface": [1.0, 2.0]}, "surface has 2 tolerances for 3 classes"),
        ({"surface": [1.0, 2.0, 3.0, 4.0]}, "surface has 4 tolerances for 3 classes"),
        ({"surface": 1.0, "spacing": [1.0, 2.0, 3.0]}, "spacing has 3 values for 2 spatial axes"),
        ({"surface": 1.0, "spacing": 0}, "spacing must be a number > 0 or one per spatial axis"),
        ({"surface": 1.0, "spacing": [1.0, 0.0]}, "spacing must be a number > 0"),
        ({"surface": 1.0, "spacing": [1.0, -2.0]}, "spacing must be a number > 0"),
        ({"surface": 1.0, "spacing": [1.0, np.nan]}, "spacing must be a number > 0"),
        ({"surface": 1.0, "percentile": 0}, "percentile must be in (0, 100], or None for the "
                                            "maximum; got 0"),
        ({"surface": 1.0, "percentile": 101}, "percentile must be in (0, 100]"),
        ({"surface": 1.0, "percentile": -5}, "percentile must be in (0, 100]"),
        ({"surface": 1.0, "percentile": True}, "percentile must be in (0, 100]"),
        ({"surface": 1.0, "percentile": float("nan")}, "percentile must be in (0, 100]"),
        ({"surface": None, "spacing": 2.0}, "spacing applies to surface metrics"),
    ],
)  # fmt: skip
def test_bad_options_are_refused_everywhere(kwargs, message, tmp_path):
    m = re.escape(message)
    soft = kwargs.get("soft", False)
    if kwargs.get("surface") is not None or soft:
        with pytest.raises(ValueError, match=m):
            fastseg.counts(_T2, _P2, **kwargs)
    with pytest.raises(ValueError, match=m):
        Accumulator(3, **kwargs).update(_T2, _P2)
    with pytest.raises(ValueError, match=m):
        fastseg.evaluate(_T2, _P2, progress=False, checkpoint=tmp_path / "ck", **kwargs)
    assert not (tmp_path / "ck").exists()


def test_one_dimensional_data_is_refused():
    message = "surface metrics need 2-D images or 3-D volumes; these images have 1 spatial axes"
    with pytest.raises(ValueError, match=re.escape(message)):
        fastseg.counts(_T2[:, 0], _P2[:, 0], spatial_dims=1, surface=1.0)
    with pytest.raises(ValueError, match=re.escape(message)):
        Accumulator(3, spatial_dims=1, surface=1.0).update(_T2[:, 0], _P2[:, 0])


def test_labels_outside_the_classes_are_still_refused():
    truth = _T2.copy()
    truth[0, 2, 2] = 7
    with pytest.raises(ValueError, match=r"labels outside \[0, 3\)"):
        fastseg.counts(truth, _P2, surface=1.0)


def test_counts_refuses_spacing_without_surface():
    with pytest.raises(ValueError, match="spacing applies to surface metrics"):
        fastseg.counts(_T2, _P2, spacing=2.0)


@pytest.mark.parametrize("kwargs", [{"spacing": [2.0]}, {"surface": [1.0]}])
def test_one_value_lists_are_one_value(kwargs):
    truth, scores = fields((2, 8, 9), 3, seed=40)
    scores = scores.astype(np.float32)
    options = {"surface": 1.0, **kwargs}
    scalar = {k: v[0] for k, v in kwargs.items()}
    got = fastseg.counts(truth, scores, **options).surface
    assert got == fastseg.counts(truth, scores, **{"surface": 1.0, **scalar}).surface

"""Cityscapes' instance-weighted iIoU: against the official evaluator, by hand, merged, resumed.

The official numbers come from cityscapesScripts' ``evalPixelLevelSemanticLabeling``
(``evaluateImgLists`` with ``evalInstLevelScore``) run in-process on the same PNG folders,
as ``tests/test_presets.py`` drives it for the class and category IoU.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest

import fastseg
from fastseg import instances as instances_
from fastseg import readers
from fastseg.cli import main
from fastseg.counts import Counts
from fastseg.dataset_presets import CITYSCAPES_INSTANCE_SIZES, dataset_preset
from fastseg.instances import InstanceRule, InstanceSums, tally
from fastseg.render import CSV_FIELDS
from fastseg.report import Report

PIL = pytest.importorskip("PIL.Image")
labels_module = pytest.importorskip("cityscapesscripts.helpers.labels")
EVALUATED = [lab for lab in labels_module.labels if not lab.ignoreInEval and lab.id >= 0]
EVALUATED_IDS = np.array([lab.id for lab in EVALUATED])
SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "make_folders.py"
INSTANCE_KEYS = ("classInstScores", "categoryInstScores")
AVERAGE_KEYS = ("averageScoreClasses", "averageScoreCategories", "averageScoreInstClasses",
                "averageScoreInstCategories")  # fmt: skip


def _make_folders(out, *args):
    spec = importlib.util.spec_from_file_location("make_folders", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["cityscapes", str(out), "--workers", "1", *args]) == 0
    gts = sorted(str(p) for p in (out / "gtFine" / "val").rglob("*_gtFine_labelIds.png"))
    preds = [str(out / "results" / Path(g).name.replace("_gtFine_labelIds", "_leftImg8bit"))
             for g in gts]  # fmt: skip
    return preds, gts


def _crowded_folders(root, n=3, shape=(48, 64), seed=0):
    """Cityscapes-like PNGs with many instances of every class that has them.

    Truth label ids on a random background; rectangles of the ten instance label ids
    (caravan and trailer too, which the benchmark does not evaluate), some overlapping;
    instance ids ``id * 1000 + k`` (k from 0, so the ego vehicle's 1000 never appears as
    an instance, but label id 1 pixels do) and label ids elsewhere. Predictions are the
    truth with a third of the pixels replaced by random evaluated ids, and some instances
    predicted wholly as another class.
    """
    rng = np.random.default_rng(seed)
    gt_dir, pred_dir = root / "gtFine" / "val" / "city", root / "results"
    gt_dir.mkdir(parents=True)
    pred_dir.mkdir(parents=True)
    preds, gts = [], []
    for i in range(n):
        truth = rng.choice([0, 1, 7, 8, 11, 21, 23], shape).astype(np.uint8)
        inst = truth.astype(np.uint16)
        pred = truth.copy()
        k = {}
        for _ in range(25):
            label = int(rng.integers(24, 34))
            h, w = rng.integers(1, 12, 2)
            y, x = rng.integers(0, shape[0] - h), rng.integers(0, shape[1] - w)
            truth[y : y + h, x : x + w] = label
            inst[y : y + h, x : x + w] = label * 1000 + k.setdefault(label, 0)
            k[label] += 1
            if rng.random() < 0.2:  # an instance missed entirely
                pred[y : y + h, x : x + w] = rng.choice(EVALUATED_IDS)
            else:
                pred[y : y + h, x : x + w] = label
        noise = rng.random(shape) < 0.33
        pred = np.where(noise, rng.choice(EVALUATED_IDS, shape), pred)
        pred = np.where(np.isin(pred, EVALUATED_IDS), pred, rng.choice(EVALUATED_IDS, shape))
        name = f"city_{i:06d}_000019"
        gts.append(str(gt_dir / f"{name}_gtFine_labelIds.png"))
        preds.append(str(pred_dir / f"{name}_leftImg8bit.png"))
        PIL.fromarray(truth).save(gts[-1])
        PIL.fromarray(inst).save(gt_dir / f"{name}_gtFine_instanceIds.png")
        PIL.fromarray(pred.astype(np.uint8)).save(preds[-1])
    return preds, gts


def _official(preds, gts, monkeypatch):
    from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as official  # noqa: N813

    for key, value in (("evalInstLevelScore", True), ("quiet", True), ("JSONOutput", False),
                       ("colorized", False), ("evalPixelAccuracy", False)):  # fmt: skip
        monkeypatch.setattr(official.args, key, value, raising=False)
    if not hasattr(np, "in1d"):  # removed in NumPy 2.4; the evaluator's category masks use it
        monkeypatch.setattr(np, "in1d", lambda a, b, assume_unique=False, invert=False:
                            np.isin(np.ravel(a), b, invert=invert), raising=False)  # fmt: skip
    return official.evaluateImgLists(preds, gts, official.args)


def _same(a, b):
    return (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, rel=1e-12, abs=1e-15)


def _assert_official(ours, official, keys=("classScores", "categoryScores", *INSTANCE_KEYS)):
    for key in keys:
        assert set(ours[key]) == set(official[key]), key
        for name, value in official[key].items():
            assert _same(ours[key][name], value), (key, name, ours[key][name], value)
    for key in AVERAGE_KEYS:
        assert _same(ours[key], official[key]), key


# ------------------------------------------------------------- the official evaluator


def test_preset_sizes_are_the_official_table():
    from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as official  # noqa: N813

    evaluated = {lab.name for lab in EVALUATED}
    table = {k: v for k, v in official.args.avgClassSize.items() if k in evaluated}
    assert table == CITYSCAPES_INSTANCE_SIZES
    p = dataset_preset("cityscapes")
    assert dict(p.instance_sizes) == table
    assert p.instance_suffix == "_gtFine_instanceIds.png"
    with_instances = {lab.name for lab in EVALUATED if lab.hasInstances}
    assert set(table) == with_instances


def test_iiou_equals_the_official_evaluator_on_synthetic_folders(tmp_path, monkeypatch, capsys):
    preds, gts = _make_folders(tmp_path, "--instances", "--images", "4", "--size", "128", "256")
    official = _official(preds, gts, monkeypatch)
    assert any(v > 0 for v in official["classInstScores"].values() if not math.isnan(v))
    r = fastseg.evaluate(str(tmp_path / "gtFine" / "val"), str(tmp_path / "results"),
                         dataset="cityscapes", instances=True, progress=False)  # fmt: skip
    _assert_official(r.cityscapes(), official)
    assert r.miiou == pytest.approx(official["averageScoreInstClasses"], rel=1e-12)
    assert r.instances.summary["group_miiou"] == pytest.approx(
        official["averageScoreInstCategories"], rel=1e-12)  # fmt: skip
    # the command, writing the official layout
    assert main(["evaluate", "--true", str(tmp_path / "gtFine" / "val"),
                 "--pred", str(tmp_path / "results"),
                 "--dataset", "cityscapes", "--format", "cityscapes", "--no-progress",
                 "--instances"]) == 0  # fmt: skip
    _assert_official(json.loads(capsys.readouterr().out), official)
    # instance files named as a folder, fastseg's JSON report
    gt_dir = str(tmp_path / "gtFine" / "val")
    assert main(["evaluate", "--true", gt_dir,
                 "--pred", str(tmp_path / "results"), "--dataset", "cityscapes",
                 "--format", "json", "--no-progress", "--instances", gt_dir,
                 "--instance-suffix", "_gtFine_instanceIds.png"]) == 0  # fmt: skip
    report = json.loads(capsys.readouterr().out)
    for row in report["classes"]:
        expected = official["classInstScores"][row["name"]]
        assert _same(math.nan if row["iiou"] is None else row["iiou"], expected), row["name"]
    assert report["instances"]["summary"]["miiou"] == pytest.approx(
        official["averageScoreInstClasses"], rel=1e-12)  # fmt: skip


def test_iiou_equals_the_official_evaluator_with_many_instances(tmp_path, monkeypatch):
    preds, gts = _crowded_folders(tmp_path)
    official = _official(preds, gts, monkeypatch)
    inst = official["classInstScores"]
    assert sum(not math.isnan(v) for v in inst.values()) == 8  # every evaluated class
    assert len({round(v, 6) for v in inst.values() if not math.isnan(v)}) > 4
    pred_dir, gt_dir = str(tmp_path / "results"), str(tmp_path / "gtFine" / "val")
    r = fastseg.evaluate(gt_dir, pred_dir, dataset="cityscapes", instances=True, progress=False)
    _assert_official(r.cityscapes(), official)
    # the official tallies, class by class
    from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as ev  # noqa: N813

    stats = ev.generateInstanceStats(ev.args)
    conf = ev.generateMatrix(ev.args)
    for p, g in zip(preds, gts, strict=True):
        ev.evaluatePair(p, g, conf, stats, {}, ev.args)
    for c, name in enumerate(r.class_names):
        if name in stats["classes"]:
            s = stats["classes"][name]
            assert r.instances.tp_weighted[c] == pytest.approx(s["tpWeighted"], rel=1e-12)
            assert r.instances.fn_weighted[c] == pytest.approx(s["fnWeighted"], rel=1e-12)
        else:
            assert math.isnan(r.instances.tp_weighted[c])
    for g, name in enumerate(r.instances.group_names):
        if name in stats["categories"]:
            s = stats["categories"][name]
            assert r.instances.group_tp_weighted[g] == pytest.approx(s["tpWeighted"], rel=1e-12)
            assert r.instances.group_fn_weighted[g] == pytest.approx(s["fnWeighted"], rel=1e-12)
    # the instance files given as a folder (paired by id), and trainId predictions
    folder = fastseg.evaluate(gt_dir, pred_dir, dataset="cityscapes", instances=gt_dir,
                              progress=False)  # fmt: skip
    assert folder.counts == r.counts
    train_dir = tmp_path / "train"
    train_dir.mkdir()
    lut = np.full(256, 255, np.uint8)
    lut[EVALUATED_IDS] = [lab.trainId for lab in EVALUATED]
    for p in preds:
        PIL.fromarray(lut[np.asarray(PIL.open(p))]).save(train_dir / Path(p).name)
    train = fastseg.evaluate(gt_dir, str(train_dir), dataset="cityscapes", instances=True,
                             label_map_pred=False, progress=False)  # fmt: skip
    assert train.counts == r.counts
    # scores (.npy, channels last) are read through their argmax
    scores_dir = tmp_path / "scores"
    scores_dir.mkdir()
    for p in preds:
        onehot = np.eye(19, dtype=np.float32)[lut[np.asarray(PIL.open(p))]]
        np.save(scores_dir / Path(p).name.replace("_leftImg8bit.png", ".npy"), onehot)
    scores = fastseg.evaluate(gt_dir, str(scores_dir), dataset="cityscapes", instances=True,
                              pred_suffix=".npy", progress=False)  # fmt: skip
    assert scores.counts == r.counts


# ---------------------------------------------------------------- by hand


# 2 x 6 pixels, classes 0 road (no instances), 1 car (average size 10), 2 person (4).
# Instances: car A (1001: 2 px), car B (1002: 4 px), person P (2001: 2 px).
HAND_TRUTH = np.array([[[0, 0, 1, 1, 1, 1], [2, 2, 1, 1, 0, 0]]])
HAND_PRED = np.array([[[0, 1, 1, 0, 1, 1], [2, 1, 1, 2, 0, 0]]])
HAND_IDS = np.array([[[0, 0, 1001, 1001, 1002, 1002], [2001, 2001, 1002, 1002, 0, 0]]],
                    np.uint16)  # fmt: skip
HAND_GROUPS = {"flat": [0], "vehicle": [1], "things": [1, 2]}


def _hand_report(**kw):
    counts = fastseg.counts(HAND_TRUTH, HAND_PRED, num_classes=3)
    sums = tally(HAND_IDS, HAND_PRED, InstanceRule.from_options({}, 3))
    counts = Counts(tp=counts.tp, pred=counts.pred, true=counts.true,
                    confusion=counts.confusion, instances=sums)  # fmt: skip
    return Report(counts, class_names=["road", "car", "person"], groups=HAND_GROUPS, **kw)


def test_hand_worked_iiou():
    r = _hand_report(instance_sizes={"car": 10.0, 2: 4.0})
    # confusion rows truth, columns prediction: [[3, 1, 0], [1, 4, 1], [0, 1, 1]]
    assert r.confusion_matrix.tolist() == [[3, 1, 0], [1, 4, 1], [0, 1, 1]]
    s = r.instances
    # car: A (weight 10 / 2 = 5) 1 of 2 px right; B (10 / 4 = 2.5) 3 of 4; fp = 1 + 1
    assert s.tp_weighted[1] == 5 * 1 + 2.5 * 3
    assert s.fn_weighted[1] == 5 * 1 + 2.5 * 1
    assert s.fp.tolist() == [1, 2, 1]
    assert s.iiou[1] == pytest.approx(12.5 / (12.5 + 2 + 7.5))
    # person: P (4 / 2 = 2) 1 of 2 px right; fp 1 (a car pixel)
    assert s.iiou[2] == pytest.approx(2 / (2 + 1 + 2))
    assert math.isnan(s.iiou[0])  # road has no instances
    assert s.instances.tolist() == [0, 2, 1]
    assert r.iiou.tolist()[1:] == [s.iiou[1], s.iiou[2]]
    assert r.miiou == pytest.approx((12.5 / 22 + 0.4) / 2)
    # things {car, person}: A 1 of 2 px in the group, B 4 of 4, P 2 of 2; fp: road -> car
    things = s.group_names.index("things")
    assert s.group_tp_weighted[things] == 5 * 1 + 2.5 * 4 + 2 * 2
    assert s.group_fn_weighted[things] == 5 * 1
    assert s.group_iiou[things] == pytest.approx(19 / (19 + 1 + 5))
    assert s.group_iiou[s.group_names.index("vehicle")] == pytest.approx(12.5 / 22)
    assert math.isnan(s.group_iiou[s.group_names.index("flat")])
    assert s.summary["group_miiou"] == pytest.approx((12.5 / 22 + 0.76) / 2)
    # a class with a size and false positives but no instance scores 0 (not NaN)
    road = _hand_report(instance_sizes={"road": 7.0, "car": 10.0, "person": 4.0})
    assert road.iiou[0] == 0.0
    assert road.instances.group_iiou[0] == 0.0
    # the Cityscapes layout of a generic report: classes by name, groups as categories
    d = r.cityscapes()
    assert d["classInstScores"]["car"] == pytest.approx(12.5 / 22)
    assert math.isnan(d["classInstScores"]["road"])
    assert d["categoryInstScores"]["things"] == pytest.approx(0.76)
    assert d["averageScoreInstClasses"] == pytest.approx((12.5 / 22 + 0.4) / 2)
    # without sizes, or without instance sums, no scores
    assert _hand_report().instances is None
    assert math.isnan(_hand_report().miiou)
    plain = Report(fastseg.counts(HAND_TRUTH, HAND_PRED, num_classes=3),
                   instance_sizes={1: 10.0})  # fmt: skip
    assert plain.instances is None
    assert np.isnan(plain.iiou).all()


def test_tally_rules(monkeypatch):
    rule = InstanceRule.from_options({"ignore_index": 255}, 3)
    pred = np.array([1, 1, 1, 1, 2, 2])
    # 1000 is no instance (the evaluator's "> 1000"); ids below are classes without
    ids = np.array([1000, 1000, 7, 1001, 1001, 2001], np.int32)
    s = tally(ids, pred, rule)
    assert s.instances.tolist() == [0, 1, 1]
    assert s.fractions[1].tolist() == [0, 0.5, 0.5]
    assert s.fractions[2].tolist() == [0, 0, 1]
    # through a label map: label id 26 -> class 1, 24 -> 2; 29 unmapped, 30 -> ignored
    lm = {"label_map": {26: 1, 24: 2, 30: 255}, "ignore_index": 255}
    rule = InstanceRule.from_options(lm, 3)
    ids = np.array([26000, 26000, 24001, 29000, 30000, 5])
    assert tally(ids, pred, rule).instances.tolist() == [0, 1, 1]
    # reduce_zero_label: label id k is class k - 1
    rule = InstanceRule.from_options({"reduce_zero_label": True, "ignore_index": 255}, 3)
    assert tally(np.array([1001, 3001, 4001, 0, 0, 0]), pred, rule).instances.tolist() == [1, 0, 1]
    # ids too spread for the dense table take np.unique: the same sums
    rule = InstanceRule.from_options({}, 3)
    rng = np.random.default_rng(1)
    wide = rng.choice([0, 1005, 2005, 2009, 2000007], 500).astype(np.int64)
    p = rng.integers(0, 3, 500)
    dense = tally(wide, p, rule)
    monkeypatch.setattr(instances_, "DENSE_SPAN", 10)
    assert tally(wide, p, rule) == dense
    assert dense.instances.tolist() == [0, 1, 2]  # 2000007 is label id 2000: no class
    with pytest.raises(ValueError, match="2 instance pixels are predicted as no class"):
        tally(np.array([1001, 1001, 1001]), np.array([0, 3, 9]), rule)
    with pytest.raises(ValueError, match="6 pixels but the prediction 5"):
        tally(np.zeros(6, np.uint16), np.zeros(5, np.uint8), rule)


def test_tally_reads_prediction_ids_through_the_map_at_instance_pixels_only(monkeypatch):
    """Prediction ids with their map's table: the same sums as their classes; an
    unmapped id where no instance lies is not read (the counting kernels skip it too)."""
    rule = InstanceRule.from_options({}, 3)
    rng = np.random.default_rng(2)
    ids = rng.choice([0, 1001, 1002, 2001, 3005], 400).astype(np.int32)
    table = np.full(256, 3, np.int32)  # N = 3: no class
    table[[7, 8, 11]] = [0, 1, 2]
    stored = rng.choice([7, 8, 11], 400).astype(np.uint8)
    classes = table[stored]
    stored[ids == 0] = 0  # unmapped ids, only where no instance lies
    expected = tally(ids, classes, rule)
    assert tally(ids, stored, rule, (table, 3)) == expected
    monkeypatch.setattr(instances_, "DENSE_SPAN", 1)  # the np.unique path
    assert tally(ids, stored, rule, (table, 3)) == expected
    stored[ids == 1001] = 0
    with pytest.raises(ValueError, match="instance pixels are predicted as no class"):
        tally(ids, stored, rule, (table, 3))


# ---------------------------------------------------------------- merges, files, resume


def test_halves_merge_into_the_whole(tmp_path):
    preds, gts = _crowded_folders(tmp_path, n=4)
    gt_dir = str(tmp_path / "gtFine" / "val")
    kw = {"dataset": "cityscapes", "instances": gt_dir, "progress": False}
    whole = fastseg.evaluate(gts, preds, **kw)
    halves = [fastseg.evaluate(gts[s], preds[s], **kw) for s in (slice(0, 2), slice(2, 4))]
    merged = halves[0].counts + halves[1].counts
    a, b = merged.instances, whole.counts.instances
    assert np.array_equal(a.instances, b.instances)
    np.testing.assert_allclose(a.fractions, b.fractions, rtol=1e-13)
    assert np.array_equal(merged.confusion, whole.counts.confusion)
    r = Report(merged, class_names=whole.class_names, groups=dataset_preset("cityscapes").groups,
               instance_sizes=CITYSCAPES_INSTANCE_SIZES, preset="cityscapes")  # fmt: skip
    np.testing.assert_allclose(r.iiou, whole.iiou, rtol=1e-12)
    np.testing.assert_allclose(r.instances.group_iiou, whole.instances.group_iiou, rtol=1e-12)
    # data-set totals (per_image=False) keep them too
    totals = fastseg.evaluate(gts, preds, per_image=False, **kw)
    np.testing.assert_allclose(totals.iiou, whole.iiou, rtol=1e-12)
    # counts of pixels without instance sums do not merge into counts with them
    plain = fastseg.evaluate(gts[:1], preds[:1], dataset="cityscapes", progress=False)
    with pytest.raises(ValueError, match="with instance sums and counts of pixels without"):
        halves[0].counts + plain.counts
    empty = Counts.zeros(1, 19)  # zero rows (skipped images) are fine
    assert (halves[0].counts + empty).instances == halves[0].counts.instances


def test_checkpoint_resume_carries_instances(tmp_path):
    _crowded_folders(tmp_path, n=3)
    pred_dir, gt_dir = str(tmp_path / "results"), str(tmp_path / "gtFine" / "val")
    ckpt = tmp_path / "ckpt"
    kw = {"dataset": "cityscapes", "instances": True, "progress": False, "checkpoint": ckpt}
    first = fastseg.evaluate(gt_dir, pred_dir, **kw)
    with np.load(ckpt / "blocks" / "1.npz") as block:
        assert {"instance_fractions", "instance_count"} <= set(block.files)
    manifest = json.loads((ckpt / "manifest.json").read_text())["fingerprint"]
    assert len(manifest["instance_files"]) == 3
    (ckpt / "blocks" / "1.npz").unlink()
    again = fastseg.evaluate(gt_dir, pred_dir, **kw)
    assert again.meta["blocks_resumed"] == 2
    assert again.counts == first.counts  # bit-identical: the same tree of merges
    assert np.array_equal(again.iiou, first.iiou, equal_nan=True)
    # without instances it is another evaluation: refused, not mixed in
    with pytest.raises(ValueError, match="instance_files"):
        fastseg.evaluate(gt_dir, pred_dir, dataset="cityscapes", progress=False,
                         checkpoint=ckpt)  # fmt: skip


def test_counts_files_with_instance_sums(tmp_path):
    r = _hand_report()
    c = r.counts
    c.save(tmp_path / "c.npz")
    with np.load(tmp_path / "c.npz") as f:
        assert json.loads(str(f["meta"]))["version"] == 2
    assert Counts.load(tmp_path / "c.npz") == c
    plain = Counts(tp=c.tp, pred=c.pred, true=c.true, confusion=c.confusion)
    plain.save(tmp_path / "p.npz")
    with np.load(tmp_path / "p.npz") as f:
        assert json.loads(str(f["meta"]))["version"] == 1  # readable by any fastseg
    assert Counts.load(tmp_path / "p.npz") == plain != c
    with np.load(tmp_path / "c.npz") as f:
        arrays = {k: f[k] for k in f.files if k != "instance_count"}
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ValueError, match="instance sums without instance_count"):
        Counts.load(tmp_path / "bad.npz")
    with pytest.raises(ValueError, match="need hard counts"):
        Counts(tp=c.tp.astype(float), pred=c.pred.astype(float), true=c.true.astype(float),
               instances=c.instances)  # fmt: skip
    with pytest.raises(ValueError, match="instance sums of 2 classes for counts of 3"):
        Counts(tp=c.tp, pred=c.pred, true=c.true, confusion=c.confusion,
               instances=InstanceSums.zeros(2))  # fmt: skip


# ---------------------------------------------------------------- outputs


def test_outputs_with_and_without_instances(tmp_path):
    r = _hand_report(instance_sizes={"car": 10.0, "person": 4.0})
    d = r.to_dict()
    assert d["classes"][1]["iiou"] == pytest.approx(12.5 / 22)
    assert d["classes"][0]["iiou"] is None
    assert d["instances"]["summary"]["miiou"] == pytest.approx(r.miiou)
    assert d["instances"]["classes"][1]["tp_weighted"] == 12.5
    assert d["instances"]["groups"][2]["iiou"] == pytest.approx(0.76)
    json.loads(r.to_json(tmp_path / "r.json").read_text())  # strict JSON
    with r.to_csv(tmp_path / "r.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == [*CSV_FIELDS, "iiou"]
    assert float(rows[1]["iiou"]) == pytest.approx(12.5 / 22)
    group = [row for row in rows if row["kind"] == "group" and row["name"] == "things"]
    assert float(group[0]["iiou"]) == pytest.approx(0.76)
    summary = {(row["kind"], row["name"]): row["value"] for row in rows if row["value"]}
    assert float(summary["summary", "miiou"]) == pytest.approx(r.miiou)
    assert float(summary["group_summary", "miiou"]) == pytest.approx((12.5 / 22 + 0.76) / 2)
    text = str(r)
    assert "iIoU" in text.splitlines()[3]
    assert "instance-weighted (iIoU, 2 classes with instances, 3 instances): miIoU" in text
    # without instance scores every output keeps its layout
    plain = _hand_report()
    assert plain.to_dict()["instances"] is None
    assert "iiou" not in plain.to_dict()["classes"][0]
    with plain.to_csv(tmp_path / "p.csv").open(newline="") as f:
        assert list(next(csv.DictReader(f))) == list(CSV_FIELDS)
    assert "iIoU" not in str(plain)
    assert all(math.isnan(v) for v in plain.cityscapes()["classInstScores"].values())


# ---------------------------------------------------------------- errors, before compute


def test_errors_before_any_compute(tmp_path, monkeypatch, capsys):
    _crowded_folders(tmp_path, n=3)
    pred_dir, gt_dir = str(tmp_path / "results"), str(tmp_path / "gtFine" / "val")
    monkeypatch.setattr(readers, "_ARRAYS", {})  # no file is read, only headers
    missing = tmp_path / "gtFine" / "val" / "city" / "city_000001_000019_gtFine_instanceIds.png"
    missing.unlink()
    with pytest.raises(ValueError, match=r"1 truth file without an instance-id file: "
                       r"city/city_000001_000019_gtFine_labelIds.png \(expected "
                       r"city/city_000001_000019_gtFine_instanceIds.png\)"):  # fmt: skip
        fastseg.evaluate(gt_dir, pred_dir, dataset="cityscapes", instances=True, progress=False)
    with pytest.raises(ValueError, match=r"without an instance-id file: .*expected id "
                       r"'city_000001_000019' in"):  # fmt: skip
        fastseg.evaluate(gt_dir, pred_dir, dataset="cityscapes", instances=gt_dir,
                         progress=False)  # fmt: skip
    code = main(["evaluate", "--true", gt_dir,
                 "--pred", pred_dir, "--dataset", "cityscapes", "--instances",
                 "--no-progress"])  # fmt: skip
    assert code == 2
    assert "city_000001_000019_gtFine_instanceIds.png" in capsys.readouterr().err
    PIL.fromarray(np.zeros((4, 4), np.uint16)).save(missing)
    with pytest.raises(ValueError, match=r"instance-id file .* has shape \(4, 4\) but truth"):
        fastseg.evaluate(gt_dir, pred_dir, dataset="cityscapes", instances=True, progress=False)
    PIL.fromarray(np.zeros((48, 64), np.uint16)).save(missing)
    truth = np.zeros((1, 4, 4), np.uint8)
    suffixes = {"pred_suffix": "_leftImg8bit.png", "true_suffix": "_gtFine_labelIds.png"}
    cases = {
        "instance_suffix=": {"num_classes": 34, "instances": True, "instance_sizes": {1: 5.0},
                             **suffixes},
        "pass instance_sizes=": {"num_classes": 34, "instances": gt_dir, **suffixes},
        "unknown class 'lorry'": {"dataset": "cityscapes", "instances": True,
                                  "instance_sizes": {"lorry": 1.0}},
        "hard metric": {"dataset": "cityscapes", "instances": True, "soft": True},
    }  # fmt: skip
    for message, kw in cases.items():
        with pytest.raises(ValueError, match=message):
            fastseg.evaluate(gt_dir, pred_dir, progress=False, **kw)
    with pytest.raises(ValueError, match="truth is not a folder, glob or list of files"):
        fastseg.evaluate(truth, truth, num_classes=3, instances=gt_dir,
                         instance_sizes={1: 5.0}, progress=False)  # fmt: skip
    with pytest.raises(ValueError, match="must be an average size"):
        fastseg.evaluate(gt_dir, pred_dir, dataset="cityscapes", instances=True,
                         instance_sizes={"car": -1}, progress=False)  # fmt: skip


def test_dataset_file_with_instances(tmp_path):
    spec = {"class_names": ["road", "car"], "instance_suffix": "_inst.png",
            "instance_sizes": {"car": 4.0}, "true_suffix": "_gt.png", "pred_suffix": "_p.png"}
    (tmp_path / "d.json").write_text(json.dumps(spec))
    for name in ("a", "b"):
        truth = np.array([[0, 1, 1, 0], [1, 1, 0, 0]], np.uint8)
        PIL.fromarray(truth).save(tmp_path / f"{name}_gt.png")
        PIL.fromarray(np.where(truth == 1, 1001, 0).astype(np.uint16)).save(
            tmp_path / f"{name}_inst.png")  # fmt: skip
        PIL.fromarray(np.array([[0, 1, 0, 0], [1, 1, 0, 1]], np.uint8)).save(
            tmp_path / f"{name}_p.png")  # fmt: skip
    r = fastseg.evaluate(str(tmp_path / "*_gt.png"), str(tmp_path / "*_p.png"),
                         dataset=tmp_path / "d.json", instances=True, progress=False)  # fmt: skip
    # per image one car of 4 px, 3 right: weight 1, tp_w 3, fn_w 1; fp 1 (a road pixel)
    assert r.instances.tp_weighted.tolist()[1] == 6.0
    assert r.iiou[1] == pytest.approx(6 / (6 + 2 + 2))
    (tmp_path / "bad.json").write_text(json.dumps({**spec, "instance_sizes": {"bus": 1}}))
    with pytest.raises(ValueError, match="instance_sizes: unknown class 'bus'"):
        dataset_preset(tmp_path / "bad.json")
    assert instances_.FIRST_INSTANCE == 1000


@pytest.mark.parametrize("dtype", [np.uint16, np.int32])
def test_the_dense_tally_reads_every_run_holding_instance_pixels(dtype):
    """Instance pixels at the edges of the runs the tally skips by their maximum, in the
    short last run, and nowhere else: the pixels per instance and predicted class equal a
    direct count."""
    run = instances_.RUN
    n = 3 * run + 37
    rng = np.random.default_rng(3)
    ids = rng.integers(0, 34, n).astype(dtype)  # stuff ids only: not instances
    spots = [0, run - 1, run, 2 * run - 1, 3 * run, n - 1]
    ids[spots] = [26001, 26001, 24002, 26003, 24002, 33000]
    pred = rng.integers(0, 5, n).astype(np.uint8)
    values, table, bad = instances_._instance_pixels(
        ids, pred, np.zeros(0, np.int32), 0, 5, instances_.FIRST_INSTANCE, int(ids.max()))
    assert bad == 0
    np.testing.assert_array_equal(values, [24002, 26001, 26003, 33000])
    for v, row in zip(values, table, strict=True):
        at = ids == v
        np.testing.assert_array_equal(row, np.bincount(pred[at], minlength=5))

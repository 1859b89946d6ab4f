"""Data-set presets: tables against the data sets' own definitions, files, and the peers.

Cityscapes' names, ids, train ids and categories are checked against cityscapesScripts'
``labels`` table, and its class and category IoU against the official evaluator
(``evalPixelLevelSemanticLabeling``) run on the same synthetic PNG folders.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import fastseg
from fastseg.cli import main
from fastseg.dataset_presets import (
    ADE20K_CLASSES,
    BUILT_IN,
    CITYSCAPES_LABELS,
    VOC_CLASSES,
    DatasetPreset,
    dataset_preset,
    read_class_names,
    read_dataset_file,
)

labels_module = pytest.importorskip("cityscapesscripts.helpers.labels")
EVALUATED = [lab for lab in labels_module.labels if not lab.ignoreInEval and lab.id >= 0]


# ------------------------------------------------------------------ Cityscapes' tables


def test_cityscapes_table_equals_cityscapesscripts():
    official = [lab for lab in labels_module.labels if lab.id >= 0]
    theirs = [(lab.name, lab.id, lab.category, lab.hasInstances) for lab in official]
    ours = [(lab.name, lab.id, lab.category, lab.has_instances) for lab in CITYSCAPES_LABELS]
    assert theirs == ours
    for lab, ours in zip(official, CITYSCAPES_LABELS, strict=True):
        assert ours.train_id == (255 if lab.ignoreInEval else lab.trainId)


def test_cityscapes_preset_equals_cityscapesscripts():
    p = dataset_preset("cityscapes")
    by_train = sorted(EVALUATED, key=lambda lab: lab.trainId)
    assert p.class_names == tuple(lab.name for lab in by_train)
    assert [lab.trainId for lab in by_train] == list(range(19))
    assert p.label_map.as_dict() == {lab.id: lab.trainId for lab in EVALUATED}
    assert p.ignore_index == 255
    assert p.label_map_pred is True
    assert p.preset == "cityscapes"
    categories = {}
    for lab in by_train:
        categories.setdefault(lab.category, []).append(lab.trainId)
    assert {k: list(v) for k, v in p.groups.items()} == categories
    assert (p.pred_suffix, p.true_suffix) == ("_leftImg8bit.png", "_gtFine_labelIds.png")


def test_ade20k_and_voc():
    ade = dataset_preset("ade20k")
    assert ade.num_classes == 150
    assert len(set(ADE20K_CLASSES)) == 150
    assert ADE20K_CLASSES[:3] == ("wall", "building", "sky")
    assert ADE20K_CLASSES[-1] == "flag"
    assert ade.reduce_zero_label
    assert ade.ignore_index == 255
    assert ade.label_map is None
    assert (ade.pred_suffix, ade.true_suffix, ade.preset) == (".png", ".png", "mmseg")
    voc = dataset_preset("VOC")
    assert voc.num_classes == 21
    assert voc.class_names == VOC_CLASSES
    assert VOC_CLASSES[0] == "background"
    assert VOC_CLASSES[15] == "person"
    assert voc.ignore_index == 255
    assert not voc.reduce_zero_label
    assert set(BUILT_IN) == {"cityscapes", "ade20k", "voc"}
    with pytest.raises(ValueError, match="unknown dataset 'kitti': choose one of"):
        dataset_preset("kitti")


# ----------------------------------------------------- against the official evaluator


def _cityscapes_folders(root, n=4, shape=(24, 40), seed=0):
    from PIL import Image

    rng = np.random.default_rng(seed)
    evaluated = np.array([lab.id for lab in EVALUATED])
    (root / "gt").mkdir()
    (root / "pred").mkdir()
    preds, gts = [], []
    for i in range(n):
        truth = rng.integers(0, 34, shape).astype(np.uint8)
        pred = np.where(rng.random(shape) < 0.5, truth, rng.choice(evaluated, shape))
        pred = np.where(np.isin(pred, evaluated), pred, rng.choice(evaluated, shape))
        if i == 0:
            truth[:, :5] = 31  # "train": present in one image only
        gt_path = root / "gt" / f"city_{i:06d}_000019_gtFine_labelIds.png"
        pred_path = root / "pred" / f"city_{i:06d}_000019_leftImg8bit.png"
        Image.fromarray(truth).save(gt_path)
        Image.fromarray(pred.astype(np.uint8)).save(pred_path)
        gts.append(truth)
        preds.append(pred.astype(np.uint8))
        preds_list = sorted((root / "pred").iterdir())
        gts_list = sorted((root / "gt").iterdir())
    return np.stack(preds), np.stack(gts), [str(p) for p in preds_list], [str(g) for g in gts_list]


def _official(preds, gts, monkeypatch):
    from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as official  # noqa: N813

    for key, value in (("evalInstLevelScore", False), ("quiet", True), ("JSONOutput", False),
                       ("colorized", False), ("evalPixelAccuracy", False)):  # fmt: skip
        monkeypatch.setattr(official.args, key, value, raising=False)
    return official.evaluateImgLists(preds, gts, official.args)


def _same(a, b):
    return (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, rel=1e-12)


def test_class_and_category_iou_equal_the_official_evaluator(tmp_path, monkeypatch, capsys):
    pred, truth, pred_files, gt_files = _cityscapes_folders(tmp_path)
    official = _official(pred_files, gt_files, monkeypatch)
    # in memory, through the preset's accumulator
    acc = dataset_preset("cityscapes").accumulator()
    ours = acc.update(truth, pred).compute().cityscapes()
    # and from the folders, through the command
    assert main(["evaluate", "--true", str(tmp_path / "gt"),
                 "--pred", str(tmp_path / "pred"), "--dataset",
                 "cityscapes", "--format", "cityscapes", "--no-progress"]) == 0  # fmt: skip
    from_cli = json.loads(capsys.readouterr().out)
    for result in (ours, from_cli):
        assert set(result) == set(official)
        for key in ("classScores", "categoryScores"):
            assert set(result[key]) == set(official[key])
            for name, value in official[key].items():
                assert _same(result[key][name], value), (key, name)
        for key in ("averageScoreClasses", "averageScoreCategories"):
            assert result[key] == pytest.approx(official[key], rel=1e-12)
        assert result["labels"] == official["labels"]
        matrix = np.array(result["confMatrix"])
        evaluated = [lab.id for lab in EVALUATED]
        expected = np.array(official["confMatrix"])[np.ix_(evaluated, evaluated)]
        assert matrix[np.ix_(evaluated, evaluated)].tolist() == expected.tolist()
        for lab in EVALUATED:  # priors of the evaluated classes: over every pixel
            assert result["priors"][lab.name] == pytest.approx(official["priors"][lab.name])
        assert math.isnan(result["averageScoreInstClasses"])
    assert math.isnan(ours["classScores"]["unlabeled"])  # not evaluated, as the official


def test_a_void_prediction_is_refused(tmp_path):
    pred, truth, _, _ = _cityscapes_folders(tmp_path, n=1)
    pred[0, 0, 0] = 0  # "unlabeled": the official evaluator counts it a false negative
    acc = dataset_preset("cityscapes").accumulator()
    with pytest.raises(ValueError, match=r"y_pred has 1 pixels .*\(ids 0\)"):
        acc.update(truth, pred)


def test_evaluate_with_the_preset(tmp_path):
    pred, truth, _, _ = _cityscapes_folders(tmp_path)
    expected = dataset_preset("cityscapes").accumulator().update(truth, pred).compute()
    r = fastseg.evaluate(truth, pred, dataset="cityscapes", progress=False)
    assert r.counts == expected.counts
    assert r.preset == "cityscapes"
    assert r.class_names == expected.class_names
    assert r.group_classes == expected.group_classes
    files = fastseg.evaluate(str(tmp_path / "gt"), str(tmp_path / "pred"), dataset="cityscapes",
                             progress=False)  # fmt: skip
    assert files.counts == r.counts
    assert files.ids == tuple(f"city_{i:06d}_000019" for i in range(4))
    # what is given explicitly wins over the preset
    r = fastseg.evaluate(truth, pred, dataset="cityscapes", preset="mmseg", groups={},
                         progress=False)  # fmt: skip
    assert r.preset == "mmseg"
    assert r.groups is None
    # trainId predictions: no map on the prediction
    train = np.full(pred.shape, 255, np.uint8)
    for lab in EVALUATED:
        train[pred == lab.id] = lab.trainId
    r = fastseg.evaluate(truth, train, dataset="cityscapes", label_map_pred=False, progress=False)
    assert r.counts == expected.counts


# ------------------------------------------------------------------ data-set files


def test_fastseg_dataset_file(tmp_path):
    (tmp_path / "map.csv").write_text("id,class\n0,0\n7,1\n26,2\n")
    spec = {
        "name": "mine",
        "class_names": ["background", "road", "car"],
        "ignore_index": 255,
        "label_map": "map.csv",
        "label_map_pred": "same",
        "groups": {"things": ["car"], "all": [0, 1, 2]},
        "pred_suffix": "_pred.png",
        "true_suffix": "_gt.png",
        "preset": "mmseg",
    }
    (tmp_path / "d.json").write_text(json.dumps(spec))
    p = dataset_preset(tmp_path / "d.json")
    assert p.name == "mine"
    assert p.num_classes == 3
    assert p.ignore_index == 255
    assert p.label_map.as_dict() == {0: 0, 7: 1, 26: 2}
    assert p.label_map_pred is True
    assert dict(p.groups) == {"things": (2,), "all": (0, 1, 2)}
    assert (p.pred_suffix, p.true_suffix, p.preset) == ("_pred.png", "_gt.png", "mmseg")
    truth = np.array([[[0, 7, 26, 99]]], np.uint8)
    pred = np.array([[[7, 7, 26, 0]]], np.uint8)
    r = p.accumulator(spatial_dims=2).update(truth, pred).compute()
    assert r.counts.true.tolist() == [[1, 1, 1]]
    assert r.ignored == 1
    assert r.groups.tp.tolist() == [1, 3]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"class_names": ["a"], "colour": 1}, r"unknown keys \['colour'\]"),
        ({"class_names": []}, "class_names must be a non-empty list"),
        ({"class_names": ["a"], "ignore_index": "255"}, "ignore_index must be an integer"),
        ({"class_names": ["a"], "groups": {"g": ["b"]}}, "unknown class 'b'"),
        ({"class_names": ["a"], "reduce_zero_label": 1}, "reduce_zero_label must be true"),
        ({"class_names": ["a"], "label_map": {"x": 0}}, "is not an integer"),
        ([1, 2], "not an object"),
    ],
)
def test_bad_dataset_files(tmp_path, spec, message):
    path = tmp_path / "d.json"
    path.write_text(json.dumps(spec))
    with pytest.raises(ValueError, match=message) as info:
        read_dataset_file(path)
    assert str(path) in str(info.value)


def test_nnunet_dataset_json_plain_labels(tmp_path):
    spec = {"channel_names": {"0": "CT"}, "labels": {"background": 0, "liver": 1, "tumor": 2},
            "numTraining": 10, "file_ending": ".nii.gz"}  # fmt: skip
    (tmp_path / "dataset.json").write_text(json.dumps(spec))
    p = dataset_preset(tmp_path / "dataset.json")
    assert p.class_names == ("background", "liver", "tumor")
    assert not p.groups
    assert p.label_map is None
    assert p.ignore_index is None
    assert p.pred_suffix == p.true_suffix == ".nii.gz"


def test_nnunet_dataset_json_regions_and_ignore(tmp_path):
    spec = {"labels": {"background": 0, "whole tumor": [1, 2, 3], "tumor core": [2, 3],
                       "enhancing tumor": 3, "ignore": 4},
            "regions_class_order": [1, 2, 3], "file_ending": ".nii.gz"}  # fmt: skip
    (tmp_path / "dataset.json").write_text(json.dumps(spec))
    p = dataset_preset(tmp_path / "dataset.json")
    assert p.class_names == ("background", "1", "2", "enhancing tumor")
    assert dict(p.groups) == {"whole tumor": (1, 2, 3), "tumor core": (2, 3),
                              "enhancing tumor": (3,)}  # fmt: skip
    assert p.ignore_index == 4
    # region values equal re-labelling the maps to each region, then counting
    rng = np.random.default_rng(5)
    truth = rng.integers(0, 5, (3, 6, 7, 5)).astype(np.uint8)
    pred = rng.integers(0, 4, truth.shape).astype(np.uint8)
    r = p.accumulator(spatial_dims=3).update(truth, pred).compute()
    keep = truth != 4
    for k, members in enumerate(p.groups.values()):
        t, q = np.isin(truth, members) & keep, np.isin(pred, members) & keep
        assert r.groups.tp[k] == np.sum(t & q)
        assert r.groups.pred[k] == q.sum()
        assert r.groups.true[k] == t.sum()
        assert r.groups.dice[k] == pytest.approx(2 * np.sum(t & q) / (t.sum() + q.sum()))


def test_nnunet_dataset_json_non_consecutive_ids(tmp_path):
    spec = {"labels": {"background": 0, "a": 2, "b": 5}}
    (tmp_path / "dataset.json").write_text(json.dumps(spec))
    p = dataset_preset(tmp_path / "dataset.json")
    assert p.class_names == ("background", "a", "b")
    assert p.label_map.as_dict() == {0: 0, 2: 1, 5: 2}
    assert p.label_map_pred is True


def test_class_names_files(tmp_path):
    (tmp_path / "n.txt").write_text("road\n  sidewalk \n\nbuilding\n")
    (tmp_path / "n.json").write_text('["road", "sidewalk", "building"]')
    assert read_class_names(tmp_path / "n.txt") == read_class_names(tmp_path / "n.json") == [
        "road", "sidewalk", "building"]  # fmt: skip
    (tmp_path / "bad.json").write_text('["road", 3]')
    with pytest.raises(ValueError, match="list of strings"):
        read_class_names(tmp_path / "bad.json")
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(ValueError, match="no name"):
        read_class_names(tmp_path / "empty.txt")


def test_fill_leaves_given_options_alone():
    p = dataset_preset("ade20k")
    filled = p.fill({"ignore_index": "store"}, num_classes=None, ignore_index="store",
                    label_map=None, reduce_zero_label=None, preset="dataset",
                    pred_suffix=None)  # fmt: skip
    assert filled == {"num_classes": 150, "ignore_index": 255, "label_map": None,
                      "reduce_zero_label": True, "preset": "dataset",
                      "pred_suffix": ".png"}  # fmt: skip
    own = p.fill(label_map={1: 0}, reduce_zero_label=None)  # a map given replaces the preset's
    assert own == {"label_map": {1: 0}, "reduce_zero_label": None}
    assert p.fill(files=False, pred_suffix=None) == {"pred_suffix": None}
    # None is an explicit "no ignore index" where the unset value is another one
    assert p.fill({"ignore_index": "store"}, ignore_index=None) == {"ignore_index": None}
    assert isinstance(dataset_preset(p), DatasetPreset)


def test_cli_dataset_file_and_class_names(tmp_path, capsys):
    import zarr

    rng = np.random.default_rng(4)
    group = zarr.open_group(tmp_path / "d.zarr", mode="w")
    group.create_array("true", data=rng.integers(0, 3, (2, 8, 8)).astype(np.uint8))
    group.create_array("pred", data=rng.integers(0, 3, (2, 8, 8)).astype(np.uint8))
    store = str(tmp_path / "d.zarr")
    (tmp_path / "names.txt").write_text("sky\nsea\nsand\n")
    spec = {"class_names": ["a", "b", "c"], "groups": {"wet": ["b"], "dry": ["a", "c"]},
            "pred_suffix": "_p.png"}  # fmt: skip
    (tmp_path / "d.json").write_text(json.dumps(spec))
    assert main(["evaluate", "--true", store,
                 "--pred", store, "--dataset", str(tmp_path / "d.json"), "--format",
                 "json", "--no-progress"]) == 0  # fmt: skip
    out = json.loads(capsys.readouterr().out)
    assert out["class_names"] == ["a", "b", "c"]
    assert [g["name"] for g in out["groups"]] == ["wet", "dry"]
    args = ["evaluate", "--true", store, "--pred", store, "--num-classes", "3", "--class-names",
            str(tmp_path / "names.txt"), "--format", "json", "--no-progress"]  # fmt: skip
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["class_names"] == ["sky", "sea", "sand"]
    assert main(["evaluate", "--true", store,
                 "--pred", store, "--dataset", "nope", "--no-progress"]) == 2
    assert "unknown dataset 'nope'" in capsys.readouterr().err


def test_cli_per_case_and_csv(tmp_path, capsys):
    import csv
    import io

    import zarr

    rng = np.random.default_rng(6)
    truth = rng.integers(0, 3, (3, 8, 8)).astype(np.uint8)
    pred = rng.integers(0, 3, (3, 8, 8)).astype(np.uint8)
    group = zarr.open_group(tmp_path / "d.zarr", mode="w")
    group.create_array("true", data=truth)
    group.create_array("pred", data=pred)
    store = str(tmp_path / "d.zarr")
    spec = {"class_names": ["bg", "x", "y"], "groups": {"fg": ["x", "y"]}}
    (tmp_path / "d.json").write_text(json.dumps(spec))
    common = ["evaluate", "--true", store,
              "--pred", store, "--dataset", str(tmp_path / "d.json"), "--no-progress"]
    expected = fastseg.Accumulator(3, class_names=["bg", "x", "y"], groups={"fg": [1, 2]})
    expected = expected.update(truth, pred).compute()
    assert main([*common, "--format", "per-case", "--output", str(tmp_path / "s.json")]) == 0
    summary = json.loads((tmp_path / "s.json").read_text())
    assert json.dumps(summary, sort_keys=True) == json.dumps(expected.per_case(), sort_keys=True)
    assert main([*common, "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["kind"] for r in rows].count("group") == 1
    fg = next(r for r in rows if r["kind"] == "group")
    assert float(fg["iou"]) == pytest.approx(expected.groups.iou[0])

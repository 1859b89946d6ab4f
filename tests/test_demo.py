"""``fastseg demo`` (Zarr, and folders of PNG and NIfTI files) and the kernel warm-up.

The demo's numbers are checked against ``np.bincount`` on the files it wrote (kept with
``--keep``); the warm-up's example input against every label-map option, since a warm-up
that fails is silent by design (the blocks report real errors).
"""

from __future__ import annotations

import builtins
import json
import shlex
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import zarr

import fastseg.dataset
from fastseg import counting, synth
from fastseg.cli import DEMO_MARK, main
from fastseg.dataset import _warm_up, plan
from fastseg.inputs import prepare

PIL = pytest.importorskip("PIL.Image")
nibabel = pytest.importorskip("nibabel")


@pytest.fixture(autouse=True)
def strict_warm_up(monkeypatch):
    """Every evaluation of this file must compile its kernel on a valid example."""
    real = fastseg.dataset._warm_up
    failures = []

    def checked(p, *args, **kwargs):
        failure = real(p, *args, **kwargs)
        if failure is not None:
            failures.append(failure)
        return failure

    monkeypatch.setattr(fastseg.dataset, "_warm_up", checked)
    yield
    assert failures == []


def _json_documents(text):
    """The JSON documents printed one after the other."""
    decoder, docs, at = json.JSONDecoder(), [], 0
    while text[at:].strip():
        at += len(text[at:]) - len(text[at:].lstrip())
        doc, at = decoder.raw_decode(text, at)
        docs.append(doc)
    return docs


def _said(err, prefix):
    """The demo's line starting with `prefix` (after ``fastseg demo: ``), each one."""
    lead = f"fastseg demo: {prefix}"
    return [line[len(lead):] for line in err.splitlines() if line.startswith(lead)]


def _confusion(truth, pred, n, ignore=255):
    keep = truth != ignore
    flat = truth[keep].astype(np.int64) * n + pred[keep]
    return np.bincount(flat, minlength=n * n).reshape(n, n)


def _iou(confusion):
    tp = np.diag(confusion).astype(float)
    union = confusion.sum(0) + confusion.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / union, np.nan)


def _same_numbers(report, confusion):
    assert report["confusion_matrix"] == confusion.tolist()
    iou = _iou(confusion)
    got = np.array([np.nan if c["iou"] is None else c["iou"] for c in report["classes"]])
    np.testing.assert_allclose(got, iou, rtol=1e-12)
    np.testing.assert_allclose(report["summary"]["miou"], np.nanmean(iou), rtol=1e-12)


# ------------------------------------------------------------------------------- Zarr


def test_zarr_demo_kept_equals_bincount_and_prints_commands_that_run(tmp_path, capsys):
    keep = tmp_path / "demo"
    assert main(["demo", "--images", "3", "--size", "40", "48", "--classes", "5", "--keep",
                 str(keep), "--format", "json", "--no-progress"]) == 0  # fmt: skip
    out, err = capsys.readouterr()
    report = json.loads(out)
    g = zarr.open_group(keep / "demo.zarr", mode="r")
    truth, scores = g["true"][:], g["pred"][:]
    assert truth.shape == (3, 40, 48)
    assert scores.shape == (3, 40, 48, 5)
    expected = _confusion(truth, scores.argmax(-1), 5)
    _same_numbers(report, expected)
    assert report["ignored"] == int((truth == 255).sum()) > 0
    assert _said(err, "3 synthetic images of 40x48, 5 classes")[0].endswith(
        f", in {keep / 'demo.zarr'}"
    )
    (again,) = _said(err, "to run it again: ")
    assert again == shlex.join(["fastseg", "evaluate", "--true", str(keep / "demo.zarr"),
                                "--pred", str(keep / "demo.zarr"), "--ignore-index", "255",
                                "--format", "json", "--no-progress"])  # fmt: skip
    assert _said(err, "on your own data: ") == [
        "fastseg evaluate --true labels.zarr --pred preds.zarr --ignore-index 255 --format json "
        "--no-progress"
    ]
    assert "temporary" not in err
    assert (keep / DEMO_MARK).is_file()
    # the printed command is the evaluation that ran
    assert main(shlex.split(again)[1:]) == 0
    assert json.loads(capsys.readouterr().out)["confusion_matrix"] == expected.tolist()


def test_demo_without_keep_prints_no_path_of_its_deleted_folder(monkeypatch, capsys):
    made = []
    real = tempfile.TemporaryDirectory

    def recorded(*args, **kwargs):
        tmp = real(*args, **kwargs)
        made.append(tmp.name)
        return tmp

    monkeypatch.setattr(tempfile, "TemporaryDirectory", recorded)
    assert main(["demo", "--images", "2", "--size", "32", "32", "--no-progress"]) == 0
    out, err = capsys.readouterr()
    assert "mIoU" in out
    (tmp,) = made
    assert not Path(tmp).exists()
    assert tmp not in out + err
    assert "to run it again" not in err
    assert _said(err, "on your own data: ") == [
        "fastseg evaluate --true labels.zarr --pred preds.zarr --ignore-index 255 --no-progress"
    ]
    assert _said(err, "the data was in a temporary folder, now deleted; --keep DIR keeps it")
    assert _said(err, "'fastseg demo --folders'")  # the other demo is named


# ---------------------------------------------------------------------------- folders


def _trainids():
    """Cityscapes labelIds -> trainIds (255: not evaluated), from cityscapesScripts."""
    labels = pytest.importorskip("cityscapesscripts.helpers.labels").labels
    lut = np.full(256, 255, np.int64)
    for label in labels:
        if label.id >= 0 and not label.ignoreInEval:
            lut[label.id] = label.trainId
    return lut


def _load_png(path):
    with PIL.open(path) as image:
        return np.asarray(image)


def _nifti(path):
    return np.asarray(nibabel.load(path).dataobj).T  # (Z, Y, X), as nnU-Net reads it


def test_folders_demo_equals_bincount_on_the_files_it_wrote(tmp_path, capsys):
    keep = tmp_path / "demo"
    assert main(["demo", "--folders", "--images", "3", "--size", "48", "96", "--classes", "3",
                 "--keep", str(keep), "--format", "json", "--per-image",
                 "--no-progress"]) == 0  # fmt: skip
    out, err = capsys.readouterr()
    cityscapes, nnunet = _json_documents(out)

    # Cityscapes-like: labelIds truth in city folders, labelIds predictions, 19 classes
    lut = _trainids()
    gt = sorted((keep / "cityscapes" / "gtFine" / "val").rglob("*_gtFine_labelIds.png"))
    assert len(gt) == 3
    assert len({p.parent.name for p in gt}) == 3  # city sub-folders
    truth, pred, ids = [], [], []
    for path in gt:
        name = path.name.removesuffix("_gtFine_labelIds.png")
        ids.append(name)
        truth.append(lut[_load_png(path)].ravel())
        p = lut[_load_png(keep / "cityscapes" / "results" / f"{name}_leftImg8bit.png")].ravel()
        assert (p != 255).all()  # predictions hold evaluated ids only
        pred.append(p)
        assert _load_png(path).shape == (48, 96)
    truth, pred = np.concatenate(truth), np.concatenate(pred)
    _same_numbers(cityscapes, _confusion(truth, pred, 19))
    assert cityscapes["ignored"] == int((truth == 255).sum()) > 0
    assert cityscapes["preset"] == "cityscapes"
    assert cityscapes["class_names"][:3] == ["road", "sidewalk", "building"]
    assert cityscapes["groups"] is not None  # the categories
    assert sorted(cityscapes["images"]["ids"]) == sorted(ids)

    # nnU-Net-like: NIfTI volumes of one name, the classes of dataset.json
    cases = sorted((keep / "nnunet" / "labelsTs").glob("*.nii.gz"))
    assert [c.name for c in cases] == [f"case_{i:04d}.nii.gz" for i in range(3)]
    vt = [_nifti(c) for c in cases]
    vp = [_nifti(keep / "nnunet" / "pred" / c.name) for c in cases]
    assert len({v.shape for v in vt}) > 1  # ragged, like real cases
    expected = sum(_confusion(t, p, 3) for t, p in zip(vt, vp, strict=True))
    _same_numbers(nnunet, expected)
    assert nnunet["class_names"] == ["background", "class1", "class2"]
    assert nnunet["ignored"] == 0

    # the printed commands: what ran (they give the same report), and the usual layout
    again = _said(err, "to run it again: ")
    assert again == [
        shlex.join(["fastseg", "evaluate", "--true", str(keep / "cityscapes" / "gtFine" / "val"),
                    "--pred", str(keep / "cityscapes" / "results"), "--dataset", "cityscapes",
                    "--per-image", "--format", "json", "--no-progress"]),
        shlex.join(["fastseg", "evaluate", "--true", str(keep / "nnunet" / "labelsTs"),
                    "--pred", str(keep / "nnunet" / "pred"), "--dataset",
                    str(keep / "nnunet" / "dataset.json"), "--per-image", "--format", "json",
                    "--no-progress"]),
    ]  # fmt: skip
    assert _said(err, "on your own data: ") == [
        "fastseg evaluate --true gtFine/val/ --pred results/ --dataset cityscapes --per-image "
        "--format json --no-progress",
        "fastseg evaluate --true labelsTs/ --pred nnUNet_predictions/ --dataset "
        "Dataset001/dataset.json --per-image --format json --no-progress",
    ]
    for command, report in zip(again, (cityscapes, nnunet), strict=True):
        assert main(shlex.split(command)[1:]) == 0
        rerun = json.loads(capsys.readouterr().out)
        assert rerun["confusion_matrix"] == report["confusion_matrix"]


def test_folders_demo_table_and_defaults_are_quick(capsys):
    started = time.perf_counter()
    assert main(["demo", "--folders", "--no-progress"]) == 0
    elapsed = time.perf_counter() - started
    out, err = capsys.readouterr()
    assert out.count("mIoU") == 2 + 1  # two reports; the Cityscapes one has category means
    assert _said(err, "6 Cityscapes-like images of 512x1024")
    assert _said(err, "6 nnU-Net-like volumes of up to 48 x 96 x 96 voxels, 4 classes")
    assert "fastseg-demo-" not in err  # no path: the data is deleted
    assert tempfile.gettempdir() not in err
    assert elapsed < 60  # generous: a cold kernel cache compiles; warm it takes ~1 s


def test_keep_replaces_only_what_an_earlier_demo_wrote(tmp_path, capsys):
    keep = tmp_path / "demo"
    base = ["--keep", str(keep), "--no-progress", "--format", "json"]
    assert main(["demo", "--images", "2", "--size", "16", "16", *base]) == 0
    assert main(["demo", "--folders", "--images", "3", "--size", "16", "32", *base]) == 0
    assert main(["demo", "--folders", "--images", "2", "--size", "16", "32", *base]) == 0
    out = capsys.readouterr().out
    *_, cityscapes, nnunet = _json_documents(out)
    # no stale file of the 3-image run is paired with the new ones
    assert cityscapes["n_images"] == nnunet["n_images"] == 2
    assert len(list((keep / "cityscapes" / "results").iterdir())) == 2
    assert (keep / "demo.zarr" / "zarr.json").is_file()  # the other part is kept

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    assert main(["demo", "--keep", str(mine), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "--keep" in err
    assert "did not write" in err
    assert err.count("\n") == 1
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]
    assert main(["demo", "--keep", str(mine / "notes.txt"), "--no-progress"]) == 2
    assert "is a file" in capsys.readouterr().err


def test_folders_demo_refuses_one_output_file_for_two_reports(tmp_path, capsys):
    code = main(["demo", "--folders", "--output", str(tmp_path / "r.json")])
    err = capsys.readouterr().err
    assert code == 2
    assert "--output" in err
    assert err.count("\n") == 1
    assert not list(tmp_path.iterdir())


def _block(monkeypatch, *modules):
    real = builtins.__import__

    def blocked(name, *args, **kwargs):
        if any(name == m or name.startswith(m + ".") for m in modules):
            raise ImportError(f"No module named {name!r}")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", blocked)


def test_folders_demo_names_the_extra_of_a_missing_reader(monkeypatch, capsys):
    _block(monkeypatch, "nibabel")
    assert main(["demo", "--folders", "--images", "2", "--size", "16", "32",
                 "--no-progress"]) == 0  # fmt: skip
    out, err = capsys.readouterr()
    assert out.count("fastseg report:") == 1  # the PNGs only
    assert "skipping the NIfTI folders" in err
    assert "pip install 'fastseg[nifti]'" in err
    _block(monkeypatch, "nibabel", "PIL")
    assert main(["demo", "--folders", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "pip install 'fastseg[images]'" in err
    assert "pip install 'fastseg[images,nifti]'" in err


def test_png_writer_without_pillow_writes_the_same_label_ids(tmp_path, monkeypatch):
    pytest.importorskip("imagecodecs")
    names = synth.write_cityscapes(tmp_path / "pil", images=2, size=(16, 32), workers=1,
                                   background=7)  # fmt: skip
    with monkeypatch.context() as m:
        _block(m, "PIL")
        synth.write_cityscapes(tmp_path / "codecs", images=2, size=(16, 32), workers=1,
                               background=7)  # fmt: skip
    for name in names:
        for rel in (f"results/{name}_leftImg8bit.png",):
            a, b = _load_png(tmp_path / "pil" / rel), _load_png(tmp_path / "codecs" / rel)
            assert a.dtype == b.dtype == np.uint8
            np.testing.assert_array_equal(a, b)
    _block(monkeypatch, "PIL", "imagecodecs")
    with pytest.raises(ImportError, match=r"pip install 'fastseg\[images\]'"):
        synth.write_cityscapes(tmp_path / "none", images=1, size=(8, 8))
    assert not (tmp_path / "none").exists()  # checked before anything is written


def test_cityscapes_background_is_road_or_unlabeled(tmp_path):
    for background in (0, 7):
        folder = tmp_path / str(background)
        synth.write_cityscapes(folder, images=1, size=(32, 64), workers=1,
                               background=background)  # fmt: skip
        truth = _load_png(next(folder.rglob("*_gtFine_labelIds.png")))
        shapes, _ = synth.labels(synth.make_spec((32, 64), 34, ignore_index=None), 0)
        np.testing.assert_array_equal(truth, np.where(shapes == 0, background, shapes))
    with pytest.raises(ValueError, match="background"):
        synth.write_cityscapes(tmp_path / "x", images=1, size=(8, 8), background=34)


# ------------------------------------------------------ the warm-up's example input


def _cityscapes_plan(tmp_path):
    synth.write_cityscapes(tmp_path, images=2, size=(16, 32), workers=1)
    from fastseg.dataset_presets import dataset_preset

    preset = dataset_preset("cityscapes")
    return plan(tmp_path / "gtFine", tmp_path / "results", num_classes=19, ignore_index=255,
                label_map=preset.label_map, label_map_pred=True,
                pred_suffix="_leftImg8bit.png", true_suffix="_gtFine_labelIds.png")  # fmt: skip


_LABELS = np.random.default_rng(3).integers(1, 6, (2, 8, 8))
_SHIFT_DOWN = {k: k - 1 for k in range(1, 7)}

#: Options under which a zero is no class for at least one input (the examples were
#: zero-filled), with the dtypes a table (8 / 16 bits) or a sorted lookup (wider) maps.
MAPPED = {
    "reduce_zero_label on predictions too": (np.uint8, {
        "num_classes": 5, "ignore_index": 255, "reduce_zero_label": True,
        "label_map_pred": True}),
    "reduce_zero_label, big-endian int16": (">i2", {
        "num_classes": 5, "ignore_index": 255, "reduce_zero_label": True,
        "label_map_pred": True}),
    "truth map without an ignore index": (np.uint16, {
        "num_classes": 6, "ignore_index": None, "label_map": _SHIFT_DOWN}),
    "both maps, int64 ids (sorted lookup)": (np.int64, {
        "num_classes": 6, "ignore_index": None, "label_map": _SHIFT_DOWN,
        "label_map_pred": True}),
    "int8 ids": (np.int8, {
        "num_classes": 6, "ignore_index": None, "label_map": _SHIFT_DOWN,
        "label_map_pred": True}),
}  # fmt: skip


def _counted_example(p):
    """Count the plan's example as the warm-up does; every example pixel must count."""
    pred, true = p.example
    c = counting.count_prepared(prepare(true, pred, **p.options), soft=p.options["soft"])
    assert int(c.true.sum()) == true.size  # a class, not ignored
    assert int(c.tp.sum()) == true.size  # both sides the same class
    return c


def test_the_cityscapes_example_is_counted(tmp_path):
    p = _cityscapes_plan(tmp_path)
    c = _counted_example(p)
    assert int(c.tp[0, 0]) == 4  # id 7, road, on both sides of the 2 x 2 example
    assert _warm_up(p, announce=False) is None


@pytest.mark.parametrize("case", sorted(MAPPED))
def test_a_mapped_example_is_counted(case):
    dtype, options = MAPPED[case]
    labels = _LABELS.astype(dtype)
    p = plan(labels, labels, **options)
    _counted_example(p)
    assert _warm_up(p, announce=False) is None


def test_unmapped_examples_stay_zero():
    truth, scores = synth.sample(2, (8, 8), 4)
    p = plan(truth, scores, ignore_index=255)
    assert not any(a.any() for a in p.example)
    _counted_example(p)


def _compile_after_counting(monkeypatch, seconds):
    """count_prepared that, on its first call, compiles (a Numba event) once it has counted.

    So the compile is announced only when the example is valid input: a warm-up that
    fails raises before the event, as a real compile never finishes on bad input.
    """
    from numba.core import event

    real = counting.count_prepared
    calls = []

    def counted_then_compiled(*args, **kwargs):
        result = real(*args, **kwargs)
        calls.append(1)
        if len(calls) == 1:
            with event.trigger_event("numba:compile", data={}):
                time.sleep(seconds)
        return result

    monkeypatch.setattr(counting, "count_prepared", counted_then_compiled)


def test_a_compile_of_the_cityscapes_kernel_is_announced(tmp_path, monkeypatch, capsys):
    p = _cityscapes_plan(tmp_path)
    _compile_after_counting(monkeypatch, 0.2)
    assert _warm_up(p, announce=True, wait=0) is None
    assert capsys.readouterr().err == (
        "fastseg: compiling kernels for uint8 label maps and uint8 label maps (once, ~10 s; "
        "cached afterwards)\n"
    )


def test_the_cli_announces_the_compile_with_the_cityscapes_dataset(tmp_path, monkeypatch,
                                                                   capsys):  # fmt: skip
    synth.write_cityscapes(tmp_path, images=2, size=(16, 32), workers=1)
    _compile_after_counting(monkeypatch, fastseg.dataset.COMPILE_NOTICE_AFTER + 0.2)
    assert main(["evaluate", "--true", str(tmp_path / "gtFine"),
                 "--pred", str(tmp_path / "results"),
                 "--dataset", "cityscapes"]) == 0  # fmt: skip
    err = capsys.readouterr().err
    assert "fastseg: compiling kernels for uint8 label maps and uint8 label maps" in err


def test_a_failed_warm_up_is_returned_not_shown(monkeypatch, capsys):
    truth, scores = synth.sample(2, (8, 8), 4)
    p = plan(truth, scores, ignore_index=255)

    def broken(*args, **kwargs):
        raise RuntimeError("kernel broke")

    monkeypatch.setattr(counting, "count_prepared", broken)
    failure = _warm_up(p, announce=True)
    assert isinstance(failure, RuntimeError)
    assert str(failure) == "kernel broke"
    assert capsys.readouterr().err == ""

"""Folders, globs and lists of files: formats, pairing, errors, checkpoints, the CLI."""

from __future__ import annotations

import builtins
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

import fastseg
from fastseg import readers
from fastseg.cli import main
from fastseg.dataset import MissingChunksError, plan
from fastseg.pairing import UnpairedFilesError, is_file_input
from fastseg.readers import FileReadError, MissingReaderError
from fastseg.stream import Accumulator

PIL = pytest.importorskip("PIL.Image")
tifffile = pytest.importorskip("tifffile")
nibabel = pytest.importorskip("nibabel")

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "make_folders.py"
N = 5
SIZES = [(20, 30), (33, 17), (8, 8), (41, 25)]


def _script():
    spec = importlib.util.spec_from_file_location("make_folders", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _pairs(seed=0, sizes=SIZES, n=N, dtype=np.uint8):
    """Ragged (truth, prediction) label maps, mostly right."""
    rng = np.random.default_rng(seed)
    out = []
    for shape in sizes:
        t = rng.integers(0, n, shape).astype(dtype)
        p = np.where(rng.random(shape) < 0.7, t, rng.integers(0, n, shape)).astype(dtype)
        out.append((t, p))
    return out


def _expected(pairs, ids, n=N, **kw):
    """The in-memory reference: an Accumulator updated image by image."""
    acc = Accumulator(n, **kw)
    for (t, p), i in zip(pairs, ids, strict=True):
        acc.update(t[None], p[None], ids=[i])
    return acc.compute()


def _png(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    PIL.fromarray(arr).save(path)


def _load(path):
    with PIL.open(path) as image:
        return np.asarray(image)


def _nifti(path, vol, spacing=(1.0, 1.0, 1.0), gz=True):
    """Write the (Z, Y, X) volume as nnU-Net / SimpleITK do: NIfTI data (X, Y, Z)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    affine = np.diag([*spacing[::-1], 1.0])
    nibabel.save(nibabel.Nifti1Image(np.asarray(vol).T, affine), path)


def _evaluate(pred, true, **kw):
    kw.setdefault("progress", False)
    return fastseg.evaluate(true, pred, **kw)


def _same(report, expected):
    assert report.counts == expected.counts
    assert report.ids == expected.ids
    np.testing.assert_allclose(report.iou, expected.iou, equal_nan=True)


# ----------------------------------------------------------------------------- formats


@pytest.mark.parametrize("depth", [8, 16])
def test_png_folders_of_ragged_sizes_equal_the_accumulator(tmp_path, depth):
    dtype = np.uint8 if depth == 8 else np.uint16
    pairs = _pairs(sizes=SIZES, dtype=dtype)
    ids = [f"img{i}" for i in range(len(pairs))]
    for (t, p), i in zip(pairs, ids, strict=True):
        _png(tmp_path / "gt" / f"{i}.png", t)
        _png(tmp_path / "pred" / f"{i}.png", p)
    report = _evaluate(str(tmp_path / "pred"), tmp_path / "gt", num_classes=N)
    _same(report, _expected(pairs, ids))
    assert report.meta["images"] == 4
    assert report.complete


def test_palette_and_low_bit_pngs_read_as_label_ids(tmp_path):
    pairs = _pairs(sizes=[(12, 16), (9, 7)], n=4)
    ids = ["a", "b"]
    for (t, p), i in zip(pairs, ids, strict=True):
        img = PIL.fromarray(t, mode="L").convert("P")  # palette indices == the labels
        img.putpalette([v for k in range(256) for v in (k * 7 % 256, k, 255 - k)])
        img.save(tmp_path / f"{i}_gt.png")
        with PIL.open(tmp_path / f"{i}_gt.png") as check:
            assert check.mode == "P"
        # 2-bit grayscale: PIL writes L images with bits=2 as a 2-bit PNG
        PIL.fromarray(p, mode="L").save(tmp_path / f"{i}_pred.png", bits=2)
    assert readers.read_header(str(tmp_path / "a_pred.png"), "png").png[0] == 2
    report = _evaluate(str(tmp_path / "*_pred.png"), str(tmp_path / "*_gt.png"),
                       pred_suffix="_pred", true_suffix="_gt", num_classes=4)  # fmt: skip
    _same(report, _expected(pairs, ids, n=4))


def test_one_bit_png_reads_as_zero_and_one(tmp_path):
    mask = np.zeros((9, 10), bool)
    mask[2:5, 3:8] = True
    PIL.fromarray(mask).save(tmp_path / "m.png")
    header = readers.read_header(str(tmp_path / "m.png"), "png")
    arr = readers.read_array(str(tmp_path / "m.png"), "png", header)
    np.testing.assert_array_equal(arr, mask.astype(np.uint8))


def test_tiff_npy_and_npz_files(tmp_path):
    pairs = _pairs(sizes=[(10, 12), (14, 9), (7, 7)])
    ids = ["c0", "c1", "c2"]
    for (t, p), i in zip(pairs, ids, strict=True):
        tifffile.imwrite(tmp_path / f"{i}.tif", t, compression="zlib")
        np.save(tmp_path / f"{i}.npy", p)
        np.savez_compressed(tmp_path / f"{i}.npz", labels=p)
    tifs = sorted(str(p) for p in tmp_path.glob("*.tif"))
    expected = _expected(pairs, ids)
    _same(_evaluate(str(tmp_path / "*.npy"), tifs, num_classes=N), expected)
    _same(_evaluate(str(tmp_path / "*.npz"), tifs, num_classes=N), expected)


def test_scores_npy_against_png_truth(tmp_path):
    rng = np.random.default_rng(3)
    pairs, ids = [], ["x", "y"]
    for i, shape in zip(ids, [(10, 12), (6, 15)], strict=True):
        t = rng.integers(0, N, shape).astype(np.uint8)
        scores = rng.random((*shape, N)).astype(np.float32)
        _png(tmp_path / "gt" / f"{i}.png", t)
        (tmp_path / "pred").mkdir(exist_ok=True)
        np.save(tmp_path / "pred" / f"{i}.npy", scores)
        pairs.append((t, scores))
    report = _evaluate(tmp_path / "pred", tmp_path / "gt")
    _same(report, _expected(pairs, ids))
    soft = _evaluate(tmp_path / "pred", tmp_path / "gt", soft=True)
    np.testing.assert_allclose(soft.counts.tp, _expected(pairs, ids, soft=True).counts.tp)


@pytest.mark.parametrize("gz", [True, False])
def test_nifti_volumes_with_identical_names(tmp_path, gz):
    rng = np.random.default_rng(1)
    vols, ids = [], ["case_0000", "case_0001", "case_0002"]
    for i, shape in zip(ids, [(6, 10, 8), (4, 7, 9), (5, 5, 5)], strict=True):
        t = rng.integers(0, N, shape).astype(np.uint8)
        p = np.where(rng.random(shape) < 0.6, t, rng.integers(0, N, shape)).astype(np.int16)
        ext = ".nii.gz" if gz else ".nii"
        _nifti(tmp_path / "labelsTs" / f"{i}{ext}", t, (2.0, 0.7, 0.7))
        _nifti(tmp_path / "pred" / f"{i}{ext}", p, (2.0, 0.7, 0.7))
        vols.append((t, p))
    report = _evaluate(tmp_path / "pred", tmp_path / "labelsTs", num_classes=N)
    _same(report, _expected(vols, ids, spatial_dims=3))
    # (5, 5, 5) with num_classes 5 would be ambiguous for arrays; a NIfTI file is a volume
    assert report.ids == tuple(ids)


def test_nnunet_folder_with_probabilities(tmp_path):
    names = _script().write_nnunet(tmp_path, cases=3, size=(8, 16, 12), classes=4,
                                   probabilities=True, workers=1)  # fmt: skip
    truth = [
        np.asarray(nibabel.load(tmp_path / "labelsTs" / f"{n}.nii.gz").dataobj).T for n in names
    ]
    probs = [np.load(tmp_path / "pred" / f"{n}.npz")["probabilities"] for n in names]
    assert probs[0].shape[1:] == truth[0].shape  # (C, Z, Y, X) against (Z, Y, X)
    report = _evaluate(tmp_path / "pred", tmp_path / "labelsTs", pred_suffix=".npz")
    acc = Accumulator(4, class_axis=1)
    for n, t, p in zip(names, truth, probs, strict=True):
        acc.update(t[None], p[None], ids=[n])
    _same(report, acc.compute())
    seg = _evaluate(tmp_path / "pred", tmp_path / "labelsTs", pred_suffix=".nii.gz",
                    num_classes=4)  # fmt: skip
    assert seg.counts == report.counts  # the segmentations are the probabilities' argmax
    # the suffix may include the extension or not, and ids never do
    assert seg.ids == tuple(names)


def test_lossy_images_are_refused(tmp_path):
    t = np.zeros((8, 8), np.uint8)
    PIL.fromarray(t).save(tmp_path / "a.jpg")
    _png(tmp_path / "gt" / "a.png", t)
    with pytest.raises(ValueError, match=r"lossy image.*a\.jpg.*PNG"):
        plan(tmp_path / "gt", [str(tmp_path / "a.jpg")], num_classes=2)
    (tmp_path / "preds").mkdir()
    (tmp_path / "a.jpg").rename(tmp_path / "preds" / "a.jpg")
    with pytest.raises(ValueError, match=r"no image, volume or array files.*1 lossy image"):
        plan(tmp_path / "gt", tmp_path / "preds", num_classes=2)


def test_rgb_png_and_object_npy_are_refused_naming_the_file(tmp_path):
    _png(tmp_path / "p" / "a.png", np.zeros((4, 4, 3), np.uint8))
    _png(tmp_path / "t" / "a.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(FileReadError, match=r"p/a\.png.*an RGB image.*single-channel"):
        plan(tmp_path / "t", tmp_path / "p", num_classes=2)
    np.save(tmp_path / "o.npy", np.array([{}, 1], dtype=object))
    with pytest.raises(FileReadError, match=r"o\.npy.*Python objects"):
        readers.read_header(str(tmp_path / "o.npy"), "npy")


# ----------------------------------------------------------------------------- pairing


def test_cityscapes_like_folders_pair_by_suffix_across_city_folders(tmp_path):
    names = _script().write_cityscapes(tmp_path, images=5, size=(24, 48), ragged=True,
                                       instances=True, color=True, workers=1)  # fmt: skip
    gt = sorted((tmp_path / "gtFine").rglob("*_gtFine_labelIds.png"))
    assert len({p.parent for p in gt}) == 3  # city sub-folders
    report = _evaluate(tmp_path / "results", tmp_path / "gtFine",
                       pred_suffix="_leftImg8bit.png", true_suffix="_gtFine_labelIds.png",
                       num_classes=34)  # fmt: skip
    pairs, ids = [], sorted(names)
    for i in ids:
        city = i.split("_")[0]
        t = _load(tmp_path / "gtFine" / "val" / city / f"{i}_gtFine_labelIds.png")
        p = _load(tmp_path / "results" / f"{i}_leftImg8bit.png")
        pairs.append((t, p))
    assert len({t.shape for t, _ in pairs}) > 1  # ragged
    _same(report, _expected(pairs, ids, n=34))
    # the suffix without its extension works too; ids are the same
    again = _evaluate(tmp_path / "results", tmp_path / "gtFine", pred_suffix="_leftImg8bit",
                      true_suffix="_gtFine_labelIds", num_classes=34)  # fmt: skip
    assert again.counts == report.counts
    assert again.ids == tuple(ids)
    worst = report.worst(2)
    assert {w.id for w in worst} <= set(ids)
    assert report.to_dict()["images"]["ids"] == ids


def _folders(tmp_path, pred_ids, true_ids):
    t = np.zeros((4, 5), np.uint8)
    for i in pred_ids:
        _png(tmp_path / "pred" / f"{i}.png", t)
    for i in true_ids:
        _png(tmp_path / "true" / f"{i}.png", t)
    return tmp_path / "pred", tmp_path / "true"


def test_unpaired_files_are_listed_before_any_compute(tmp_path, monkeypatch):
    common = [f"c{i}" for i in range(3)]
    pred, true = _folders(tmp_path, common + [f"p{i}" for i in range(7)], [*common, "t0"])
    monkeypatch.setattr(readers, "_ARRAYS", {})  # nothing may be decoded
    with pytest.raises(UnpairedFilesError) as info:
        _evaluate(pred, true, num_classes=2)
    message = str(info.value)
    assert "7 prediction files without a truth file: p0.png, p1.png, p2.png, p3.png, " \
           "p4.png and 2 more" in message  # fmt: skip
    assert "1 truth file without a prediction file: t0.png" in message
    assert "missing='skip'" in message


def test_unpaired_files_skipped_make_an_incomplete_report(tmp_path):
    pred, true = _folders(tmp_path, ["a", "b", "x"], ["a", "b", "y", "z"])
    report = _evaluate(pred, true, num_classes=2, missing="skip")
    assert report.ids == ("a", "b")
    assert not report.complete
    assert report.meta["unpaired_pred"] == ["x.png"]
    assert report.meta["unpaired_true"] == ["y.png", "z.png"]
    assert report.to_dict()["complete"] is False
    assert "INCOMPLETE: 3 skipped" in str(report)


def test_nothing_pairs_suggests_suffixes(tmp_path):
    pred, true = _folders(tmp_path, ["a_leftImg8bit"], ["a_gtFine_labelIds"])
    with pytest.raises(UnpairedFilesError, match=r"no prediction file has the id.*pred_suffix="):
        plan(true, pred, num_classes=2, missing="skip")


def test_duplicate_ids_and_bad_suffix_use(tmp_path):
    t = np.zeros((4, 5), np.uint8)
    _png(tmp_path / "p" / "x" / "a.png", t)
    _png(tmp_path / "p" / "y" / "a.png", t)
    _png(tmp_path / "t" / "a.png", t)
    with pytest.raises(ValueError, match=r"'a': x/a\.png, y/a\.png.*must be unique"):
        plan(tmp_path / "t", tmp_path / "p", num_classes=2)
    with pytest.raises(ValueError, match=r"pred_suffix='_x' pairs files by name"):
        plan(t[None], np.zeros((1, 4, 5), np.uint8), num_classes=2, pred_suffix="_x")
    with pytest.raises(ValueError, match=r"does not end with true_suffix='_gt'"):
        plan([str(tmp_path / "t" / "a.png")], [str(tmp_path / "t" / "a.png")],
             num_classes=2, true_suffix="_gt")  # fmt: skip
    with pytest.raises(ValueError, match=r"missing='fill'.*files have none"):
        plan(tmp_path / "t", tmp_path / "t", num_classes=2, missing="fill")


def test_hidden_files_and_other_formats_in_folders_are_ignored(tmp_path):
    pred, true = _folders(tmp_path, ["a"], ["a"])
    (tmp_path / "pred" / "._a.png").write_bytes(b"resource fork")
    (tmp_path / "pred" / "notes.txt").write_text("hello")
    (tmp_path / "true" / "a_polygons.json").write_text("{}")
    assert _evaluate(pred, true, num_classes=2).ids == ("a",)


def test_what_counts_as_files():
    assert is_file_input(["a.png"])
    assert is_file_input("preds/*.png")
    assert is_file_input("missing.nii.gz")
    assert not is_file_input("s3://bucket/x.zarr")
    assert not is_file_input([1, 2])
    assert not is_file_input(np.zeros(3))
    assert not is_file_input("data.zarr")


def test_files_mixed_with_zarr_pair_by_position(tmp_path):
    zarr = pytest.importorskip("zarr")
    rng = np.random.default_rng(5)
    b, h, w = 5, 12, 10
    scores = rng.random((b, h, w, N)).astype(np.float16)
    truth = rng.integers(0, N, (b, h, w)).astype(np.uint8)
    names = ["e", "a", "d", "b", "c"]  # written in any order: ids sort them
    order = sorted(names)
    for k, name in enumerate(order):
        _png(tmp_path / "gt" / f"{name}.png", truth[k])
    g = zarr.open_group(tmp_path / "p.zarr", mode="w")
    g.create_array("pred", data=scores, chunks=(2, 6, 10, N))
    report = _evaluate(tmp_path / "p.zarr", tmp_path / "gt")
    acc = Accumulator(N)
    acc.update(truth, scores, ids=order)
    _same(report, acc.compute())
    assert report.meta["blocks"] == 3  # one task per batch chunk of the store
    flipped = _evaluate(str(tmp_path / "gt"), scores.argmax(-1).astype(np.uint8), num_classes=N)
    assert flipped.ids == tuple(order)
    with pytest.raises(ValueError, match=r"true has 4 files.*pred has 5 images.*by position"):
        plan([str(tmp_path / "gt" / f"{n}.png") for n in order[:4]], tmp_path / "p.zarr")
    (tmp_path / "p.zarr" / "pred" / "c" / "1" / "0" / "0" / "0").unlink()
    with pytest.raises(MissingChunksError, match=r"lacks 1 chunk"):
        plan(tmp_path / "gt", tmp_path / "p.zarr")
    skipped = _evaluate(tmp_path / "p.zarr", tmp_path / "gt", missing="skip")
    assert skipped.meta["skipped"] == order[2:4]
    assert not skipped.complete


# ------------------------------------------------------------------------------ errors


def test_geometry_mismatch_names_the_case(tmp_path):
    _png(tmp_path / "p" / "case1.png", np.zeros((10, 12), np.uint8))
    _png(tmp_path / "t" / "case1.png", np.zeros((12, 10), np.uint8))
    with pytest.raises(ValueError, match=r"image 'case1'.*\(10, 12\).*\(12, 10\)"):
        plan(tmp_path / "t", tmp_path / "p", num_classes=2)
    vol = np.zeros((4, 6, 5), np.uint8)
    _nifti(tmp_path / "np" / "v.nii.gz", vol, (2.0, 1.0, 1.0))
    _nifti(tmp_path / "nt" / "v.nii.gz", vol, (2.5, 1.0, 1.0))
    with pytest.raises(ValueError, match=r"image 'v'.*voxel spacing"):
        plan(tmp_path / "nt", tmp_path / "np", num_classes=2)
    _nifti(tmp_path / "nt" / "v.nii.gz", vol, (2.0 * (1 + 1e-6), 1.0, 1.0))
    plan(tmp_path / "nt", tmp_path / "np", num_classes=2)  # within the tolerance
    moved = nibabel.Nifti1Image(vol.T, np.diag([1.0, 1.0, 2.0, 1.0]))
    moved.affine[:3, 3] = (5.0, 0.0, 0.0)
    nibabel.save(nibabel.Nifti1Image(vol.T, moved.affine), tmp_path / "nt" / "v.nii.gz")
    with pytest.raises(ValueError, match=r"image 'v'.*different NIfTI affines"):
        plan(tmp_path / "nt", tmp_path / "np", num_classes=2)


def test_kinds_are_checked_per_case_before_compute(tmp_path):
    _png(tmp_path / "t" / "a.png", np.zeros((6, 6), np.uint8))
    _png(tmp_path / "t" / "b.png", np.zeros((6, 6), np.uint8))
    (tmp_path / "p").mkdir()
    np.save(tmp_path / "p" / "a.npy", np.zeros((6, 6, 3), np.float32))
    np.save(tmp_path / "p" / "b.npy", np.zeros((6, 6, 4), np.float32))
    with pytest.raises(ValueError, match=r"image 'b' reads as scores against labels, 4 classes"):
        plan(tmp_path / "t", tmp_path / "p")
    with pytest.raises(ValueError, match=r"image 'a' \(prediction a\.npy .*num_classes=4"):
        plan(tmp_path / "t", tmp_path / "p", num_classes=4)


def test_corrupt_files_are_named(tmp_path):
    pred, true = _folders(tmp_path, ["a", "b"], ["a", "b"])
    (tmp_path / "pred" / "a.png").write_bytes(b"not a png at all")
    with pytest.raises(FileReadError, match=r"header of .*pred/a\.png"):
        plan(true, pred, num_classes=2)
    noise = np.random.default_rng(0).integers(0, 2, (40, 50)).astype(np.uint8)
    _png(tmp_path / "pred" / "a.png", noise)
    _png(tmp_path / "true" / "a.png", np.zeros((40, 50), np.uint8))
    data = (tmp_path / "pred" / "a.png").read_bytes()
    (tmp_path / "pred" / "a.png").write_bytes(data[: len(data) // 2])  # header intact
    with pytest.raises(FileReadError, match=r"could not decode .*pred/a\.png"):
        _evaluate(pred, true, num_classes=2)
    code = main(["evaluate", "--true", str(true),
                 "--pred", str(pred), "--num-classes", "2", "--no-progress"])
    assert code == 1


def test_bad_labels_name_the_image(tmp_path):
    pred, true = _folders(tmp_path, ["a"], ["a"])
    _png(tmp_path / "true" / "a.png", np.full((4, 5), 7, np.uint8))
    with pytest.raises(ValueError, match=r"image 'a' \(prediction a\.png, truth a\.png\).*7"):
        _evaluate(pred, true, num_classes=2)


@pytest.mark.parametrize(("module", "fmt", "extra"),
                         [("PIL", "png", "images"), ("tifffile", "tiff", "images"),
                          ("nibabel", "nifti", "nifti")])  # fmt: skip
def test_a_missing_reader_names_its_extra(tmp_path, monkeypatch, capsys, module, fmt, extra):
    real = builtins.__import__

    def blocked(name, *args, **kwargs):
        if name == module or name.startswith(module + "."):
            raise ImportError(f"No module named {name!r}")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", blocked)
    with pytest.raises(MissingReaderError, match=rf"pip install 'fastseg\[{extra}\]'"):
        readers.require(fmt)
    ext = {"png": ".png", "tiff": ".tif", "nifti": ".nii.gz"}[fmt]
    (tmp_path / f"a{ext}").write_bytes(b"")
    code = main(["evaluate", "--true", str(tmp_path / f"a{ext}"),
                 "--pred", str(tmp_path / f"a{ext}"),
                 "--num-classes", "2"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1
    assert f"pip install 'fastseg[{extra}]'" in err


def test_imagecodecs_missing_falls_back_to_pillow(tmp_path, monkeypatch):
    arr = np.random.default_rng(0).integers(0, 30, (17, 23)).astype(np.uint8)
    _png(tmp_path / "a.png", arr)
    header = readers.read_header(str(tmp_path / "a.png"), "png")
    monkeypatch.setitem(sys.modules, "imagecodecs", None)
    np.testing.assert_array_equal(readers.read_array(str(tmp_path / "a.png"), "png", header), arr)


# ---------------------------------------------------------------- checkpoints, schedulers


def test_checkpoint_resumes_over_files(tmp_path):
    pairs = _pairs()
    ids = [f"im{i}" for i in range(len(pairs))]
    for (t, p), i in zip(pairs, ids, strict=True):
        _png(tmp_path / "gt" / f"{i}.png", t)
        _png(tmp_path / "pred" / f"{i}.png", p)
    ckpt = tmp_path / "ckpt"
    first = _evaluate(tmp_path / "pred", tmp_path / "gt", num_classes=N, checkpoint=ckpt)
    blocks = sorted(p.name for p in (ckpt / "blocks").iterdir())
    assert blocks == ["0.npz", "1.npz", "2.npz", "3.npz"]  # one block file per image
    manifest = json.loads((ckpt / "manifest.json").read_text())["fingerprint"]
    assert [f[0] for f in manifest["pred_files"]] == [
        str((tmp_path / "pred" / f"{i}.png").resolve()) for i in ids
    ]
    (ckpt / "blocks" / "2.npz").unlink()
    again = _evaluate(tmp_path / "pred", tmp_path / "gt", num_classes=N, checkpoint=ckpt)
    assert again.meta["blocks_resumed"] == 3
    _same(again, first)
    _same(first, _expected(pairs, ids))
    # a changed file (size, mtime) is another evaluation: refused, not mixed in
    _png(tmp_path / "pred" / "im0.png", pairs[0][0])
    with pytest.raises(ValueError, match=r"pred_files"):
        _evaluate(tmp_path / "pred", tmp_path / "gt", num_classes=N, checkpoint=ckpt)


def test_plan_reads_headers_only_and_makes_one_task_per_file(tmp_path, monkeypatch):
    pred, true = _folders(tmp_path, ["a", "b", "c"], ["a", "b", "c"])
    monkeypatch.setattr(readers, "_ARRAYS", {})
    p = plan(true, pred, num_classes=2)
    assert len(p.parts) == 3
    assert p.ids == ["a", "b", "c"]
    assert p.unit == "image"


def test_same_counts_on_every_scheduler(tmp_path):
    pairs = _pairs(seed=4)
    ids = [f"s{i}" for i in range(len(pairs))]
    for (t, p), i in zip(pairs, ids, strict=True):
        _png(tmp_path / "gt" / f"{i}.png", t)
        _png(tmp_path / "pred" / f"{i}.png", p)
    expected = _expected(pairs, ids)
    for kw in ({"workers": 1}, {"workers": 2}, {"scheduler": "sync"}):
        _same(_evaluate(tmp_path / "pred", tmp_path / "gt", num_classes=N, **kw), expected)
    distributed = pytest.importorskip("distributed")
    with distributed.Client(processes=False, n_workers=1, threads_per_worker=2,
                            dashboard_address=None) as client:  # fmt: skip
        _same(_evaluate(tmp_path / "pred", tmp_path / "gt", num_classes=N, scheduler=client),
              expected)  # fmt: skip


def test_progress_counts_images(tmp_path, capsys, monkeypatch):
    import fastseg.progress as progress

    monkeypatch.setattr(progress, "DELAY", 0.0)
    monkeypatch.setattr(progress, "INTERVAL", 0.0)
    pred, true = _folders(tmp_path, ["a", "b"], ["a", "b"])
    fastseg.evaluate(true, pred, num_classes=2, progress=True)
    assert "2/2 images" in capsys.readouterr().err


# --------------------------------------------------------------------------------- CLI


def test_cli_folders_suffixes_and_lists(tmp_path, capsys):
    names = _script().write_cityscapes(tmp_path, images=3, size=(16, 32), workers=1)
    args = ["evaluate", "--true", str(tmp_path / "gtFine"), "--pred", str(tmp_path / "results"),
            "--pred-suffix", "_leftImg8bit.png", "--true-suffix", "_gtFine_labelIds.png",
            "--num-classes", "34", "--format", "json", "--per-image", "--no-progress"]  # fmt: skip
    assert main(args) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["images"]["ids"] == sorted(names)
    listing = tmp_path / "preds.txt"
    listing.write_text(
        "# predictions\n" + "".join(f"results/{n}_leftImg8bit.png\n" for n in names)
    )
    args[4] = f"@{listing}"
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["images"]["ids"] == sorted(names)
    code = main(["evaluate", "--true", str(tmp_path / "gtFine"),
                 "--pred", str(tmp_path / "results"),
                 "--num-classes", "34", "--no-progress"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert "--pred-suffix" in err
    assert err.count("\n") == 1


def test_cli_unpaired_and_skip(tmp_path, capsys):
    pred, true = _folders(tmp_path, ["a", "b"], ["a"])
    assert main(["evaluate", "--true", str(true), "--pred", str(pred), "--num-classes", "2"]) == 2
    assert "b.png" in capsys.readouterr().err
    assert main(["evaluate", "--true", str(true),
                 "--pred", str(pred), "--num-classes", "2", "--missing", "skip",
                 "--no-progress"]) == 0  # fmt: skip
    assert "INCOMPLETE" in capsys.readouterr().out


def test_cwd_relative_globs(tmp_path, monkeypatch):
    _folders(tmp_path, ["a", "b"], ["a", "b"])
    monkeypatch.chdir(tmp_path)
    report = _evaluate("pred/*.png", "true/**/*.png", num_classes=2)
    assert report.ids == ("a", "b")
    assert report.meta["pred"] == "glob 'pred/*.png' (2 png files)"


def test_transparency_chunk_does_not_add_a_channel(tmp_path):
    arr = np.arange(12, dtype=np.uint8).reshape(3, 4)
    PIL.fromarray(arr).save(tmp_path / "t.png", transparency=0)  # a tRNS chunk
    header = readers.read_header(str(tmp_path / "t.png"), "png")
    np.testing.assert_array_equal(readers.read_array(str(tmp_path / "t.png"), "png", header), arr)


@pytest.mark.parametrize("gz", [True, False])
def test_nifti_reader_matches_nibabel(tmp_path, gz):
    rng = np.random.default_rng(2)
    vol = rng.integers(-300, 300, (5, 7, 3)).astype(np.int16)  # (X, Y, Z) as stored
    path = tmp_path / ("v.nii.gz" if gz else "v.nii")
    image = nibabel.Nifti1Image(vol, np.eye(4))
    image.header.set_data_dtype(">i2")  # big-endian on disk
    image.header.set_slope_inter(0.5, 10.0)  # scaled: read as float64
    nibabel.save(image, path)
    header = readers.read_header(str(path), "nifti")
    arr = readers.read_array(str(path), "nifti", header)
    assert arr.shape == (3, 7, 5)
    assert arr.dtype == np.float64
    assert not arr.flags.writeable
    np.testing.assert_array_equal(arr, nibabel.load(path).get_fdata().T)
    plain = tmp_path / ("w.nii.gz" if gz else "w.nii")
    nibabel.save(nibabel.Nifti1Image(vol, np.eye(4)), plain)
    got = readers.read_array(str(plain), "nifti", readers.read_header(str(plain), "nifti"))
    assert got.dtype == np.int16
    assert got.flags.c_contiguous
    np.testing.assert_array_equal(got, vol.T)


def test_multi_member_and_truncated_gzip_volumes(tmp_path):
    import gzip

    vol = np.arange(4 * 5 * 6, dtype=np.uint8).reshape(4, 5, 6)
    nibabel.save(nibabel.Nifti1Image(vol, np.eye(4)), tmp_path / "v.nii")
    data = (tmp_path / "v.nii").read_bytes()
    half = len(data) // 2  # two gzip members, as pigz or cat of .gz files make
    (tmp_path / "m.nii.gz").write_bytes(gzip.compress(data[:half]) + gzip.compress(data[half:]))
    header = readers.read_header(str(tmp_path / "m.nii.gz"), "nifti")
    np.testing.assert_array_equal(
        readers.read_array(str(tmp_path / "m.nii.gz"), "nifti", header), vol.T
    )
    noise = np.random.default_rng(0).integers(0, 255, (40, 50, 60)).astype(np.uint8)
    nibabel.save(nibabel.Nifti1Image(noise, np.eye(4)), tmp_path / "n.nii")
    whole = gzip.compress((tmp_path / "n.nii").read_bytes())
    (tmp_path / "t.nii.gz").write_bytes(whole[: len(whole) // 2])  # the header is intact
    header = readers.read_header(str(tmp_path / "t.nii.gz"), "nifti")
    with pytest.raises(FileReadError, match=r"could not decode .*t\.nii\.gz"):
        readers.read_array(str(tmp_path / "t.nii.gz"), "nifti", header)


def test_swapped_folders_are_named_as_swapped(tmp_path):
    """Cityscapes folders given the other way round: the truth's files (by their suffix)
    are where the predictions were looked for, and the error says the inputs look
    swapped; the right order evaluates."""
    _script().write_cityscapes(tmp_path, images=2, size=(16, 32), workers=1)
    truth, pred = tmp_path / "gtFine", tmp_path / "results"
    with pytest.raises(ValueError, match="look swapped") as info:
        fastseg.evaluate(pred, truth, dataset="cityscapes", progress=False)
    assert "evaluate(y_true, y_pred)" in str(info.value)
    report = fastseg.evaluate(truth, pred, dataset="cityscapes", progress=False)
    assert report.n_images == 2


def test_evaluate_takes_the_truth_first(tmp_path):
    """evaluate(y_true, y_pred): support is the truth's pixel count per class, predicted
    the prediction's (label maps, where a swap would go unnoticed by the kinds)."""
    rng = np.random.default_rng(4)
    truth = rng.integers(0, 3, (3, 10, 8)).astype(np.uint8)
    pred = np.where(rng.random(truth.shape) < 0.4, 2, truth).astype(np.uint8)
    report = fastseg.evaluate(truth, pred, num_classes=3, progress=False)
    np.testing.assert_array_equal(report.support, np.bincount(truth.ravel(), minlength=3))
    np.testing.assert_array_equal(report.predicted, np.bincount(pred.ravel(), minlength=3))
    by_name = fastseg.evaluate(y_pred=pred, y_true=truth, num_classes=3, progress=False)
    np.testing.assert_array_equal(by_name.support, report.support)

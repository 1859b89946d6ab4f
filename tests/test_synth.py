"""fastseg.synth: the synthetic data-set generator, in memory and written to Zarr."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import zarr

import fastseg
from fastseg import synth

SIZE = (48, 40)
CLASSES = 6


# The checks below count with NumPy (argmax + bincount), which needs no Numba compile:
# the file stays fast with a cold kernel cache. One test ties it to fastseg.counts.


def confusion(true, pred, *, ignore_index=255, class_axis=-1):
    """Data-set confusion matrix (rows truth, columns argmax), ignored pixels left out."""
    n = pred.shape[class_axis]
    guess = pred.argmax(axis=class_axis)
    keep = true != ignore_index
    flat = true[keep].astype(np.int64) * n + guess[keep]
    return np.bincount(flat, minlength=n * n).reshape(n, n)


def dataset_iou(true, pred, *, ignore_index=255, soft=False):
    """Per-class IoU of the whole batch (channels-last), NaN where a class is in neither."""
    n = pred.shape[-1]
    keep = true != ignore_index
    if soft:
        p = pred[keep].astype(np.float64)  # (pixels, N)
        t = np.eye(n)[true[keep]]
        tp, pred_sum, true_sum = (p * t).sum(0), p.sum(0), t.sum(0)
    else:
        cm = confusion(true, pred, ignore_index=ignore_index)
        tp, pred_sum, true_sum = np.diag(cm), cm.sum(0), cm.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return tp / (pred_sum + true_sum - tp)


def chunk_files(array_dir: Path) -> list[Path]:
    return [
        p for p in array_dir.rglob("*") if p.is_file() and not p.name.startswith((".z", "zarr"))
    ]


# --------------------------------------------------------------------------------------
# In memory
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
@pytest.mark.parametrize("class_axis", [-1, 1])
def test_sample_shapes_and_dtypes(dtype, class_axis):
    true, pred = synth.sample(3, SIZE, CLASSES, dtype=dtype, class_axis=class_axis)
    assert true.shape == (3, 48, 40)
    assert true.dtype == np.uint8
    assert pred.dtype == np.dtype(dtype)
    assert pred.shape == ((3, 48, 40, 6) if class_axis == -1 else (3, 6, 48, 40))
    assert pred.flags.c_contiguous


def test_volumes():
    true, pred = synth.sample(2, (12, 16, 20), 4, seed=3)
    assert true.shape == (2, 12, 16, 20)
    assert pred.shape == (2, 12, 16, 20, 4)
    assert set(np.unique(true)) <= {0, 1, 2, 255}
    assert (true == 255).any()
    assert np.isin(true, [1, 2]).any()


def test_labels_absent_class_and_ignore_region():
    true, pred = synth.sample(8, SIZE, CLASSES, seed=5)
    values = set(np.unique(true).tolist())
    assert values <= {0, 1, 2, 3, 4, 255}
    assert {0, 255} <= values
    assert len(values) >= 5
    # every image has an ignore region and some foreground
    assert all((t == 255).any() for t in true)
    assert all(((t != 0) & (t != 255)).any() for t in true)
    # the absent class is never the argmax either: its IoU is 0/0
    assert not (pred.argmax(-1) == CLASSES - 1).any()
    assert np.isnan(dataset_iou(true, pred)[CLASSES - 1])


@pytest.mark.parametrize(("absent_class", "missing"), [(2, {2}), (-2, {4}), (False, set())])
def test_absent_class_is_configurable(absent_class, missing):
    true, _ = synth.sample(12, SIZE, CLASSES, absent_class=absent_class, seed=2)
    present = set(np.unique(true).tolist()) - {255}
    assert present == set(range(CLASSES)) - missing


def test_no_ignore_region():
    true, _ = synth.sample(4, SIZE, CLASSES, ignore_region=False)
    assert not (true == 255).any()
    # the truth under the ignore region is all that changes
    with_region, _ = synth.sample(4, SIZE, CLASSES)
    kept = with_region != 255
    assert np.array_equal(true[kept], with_region[kept])
    true_none, _ = synth.sample(4, SIZE, CLASSES, ignore_index=None)
    assert np.array_equal(true_none, true)


@pytest.mark.parametrize(
    ("dtype", "atol"), [("float16", 4e-3), ("float32", 1e-5), ("float64", 1e-5)]
)
@pytest.mark.parametrize("class_axis", [-1, 1])
def test_scores_are_probabilities(dtype, atol, class_axis):
    _, pred = synth.sample(2, SIZE, 19, dtype=dtype, class_axis=class_axis)
    assert np.isfinite(pred).all()
    assert pred.min() >= 0
    assert pred.max() <= 1
    np.testing.assert_allclose(pred.astype(np.float64).sum(axis=class_axis), 1.0, atol=atol)
    # a confident but not one-hot "model": mean probability of the argmax
    top = pred.astype(np.float32).max(axis=class_axis).mean()
    assert 0.8 < top < 0.97


@pytest.mark.parametrize("dtype", ["float16", "float64"])
def test_argmax_is_the_perturbed_label_map(dtype):
    # Noise is clipped below half the margin: every hard error is a shape error.
    spec = synth.make_spec(SIZE, 19, dtype=dtype, strength=0.5, noise=2.0)
    _, pred = synth.sample(4, SIZE, 19, dtype=dtype, strength=0.5, noise=2.0)
    for i in range(4):
        _, guess = synth.labels(spec, i)
        assert np.array_equal(pred[i].argmax(-1), guess)


def test_labels_independent_of_dtype_and_layout():
    t16, p16 = synth.sample(2, SIZE, CLASSES, dtype="float16")
    t32, p32 = synth.sample(2, SIZE, CLASSES, dtype="float32")
    t64, p64 = synth.sample(2, SIZE, CLASSES, dtype="float64", class_axis=1)
    assert np.array_equal(t16, t32)
    assert np.array_equal(t32, t64)
    assert np.array_equal(p16, p32.astype(np.float16))
    assert np.array_equal(np.moveaxis(p64, 1, -1), p32.astype(np.float64))


def test_seed_and_start():
    a_true, a_pred = synth.sample(4, SIZE, CLASSES, seed=7)
    b_true, b_pred = synth.sample(2, SIZE, CLASSES, seed=7, start=2)
    assert np.array_equal(a_true[2:], b_true)
    assert np.array_equal(a_pred[2:], b_pred)
    c_true, _ = synth.sample(4, SIZE, CLASSES, seed=8)
    assert not np.array_equal(a_true, c_true)
    # the truth does not depend on the prediction's options
    d_true, d_pred = synth.sample(4, SIZE, CLASSES, seed=7, errors=0.3, noise=0.5)
    assert np.array_equal(a_true, d_true)
    assert not np.array_equal(a_pred, d_pred)


def test_iou_is_realistic():
    true, pred = synth.sample(24, (96, 96), 8, seed=0)
    c = fastseg.counts(true, pred, ignore_index=255)
    assert np.array_equal(c.confusion, confusion(true, pred))
    iou = dataset_iou(true, pred)
    assert 0.9 < iou[0] < 0.99  # background
    foreground = iou[1:7]
    assert np.isfinite(foreground).all()
    assert 0.55 < foreground.mean() < 0.85
    assert foreground.min() > 0.3
    assert foreground.max() < 0.97
    assert np.isnan(iou[7])  # the absent class
    # soft scores are less confident than their argmax
    soft = dataset_iou(true, pred, soft=True)
    assert (soft[:7] < iou[:7]).all()


def test_no_errors_gives_perfect_hard_iou():
    true, pred = synth.sample(6, SIZE, CLASSES, errors=0.0, seed=4)
    cm = confusion(true, pred)
    assert np.array_equal(cm, np.diag(np.diag(cm)))  # every counted pixel is right
    assert (true == 255).sum() > 0
    iou = dataset_iou(true, pred)
    assert np.array_equal(iou[:5], np.ones(5))


def test_more_errors_lower_iou():
    true, pred_low = synth.sample(16, (64, 64), CLASSES, errors=0.5, seed=1)
    _, pred_high = synth.sample(16, (64, 64), CLASSES, errors=2.0, seed=1)
    low = np.nanmean(dataset_iou(true, pred_low)[1:])
    high = np.nanmean(dataset_iou(true, pred_high)[1:])
    assert high < low < 1.0


def test_many_classes_use_uint16_labels():
    true, pred = synth.sample(3, (24, 24), 300, ignore_index=65535, seed=1)
    assert true.dtype == np.uint16
    assert pred.shape == (3, 24, 24, 300)
    values = np.unique(true)
    assert values[-1] == 65535
    assert values[-2] < 299
    assert confusion(true, pred, ignore_index=65535).trace() > 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"classes": 1}, r"classes must be in \[2, 65535\]"),
        ({"classes": 2}, "absent class leaves only the background"),
        ({"classes": 2.0}, "classes must be an integer"),
        ({"ignore_index": 3}, "ignore_index 3 collides with a class"),
        ({"classes": 300}, "ignore_index 255 collides with a class.*65535"),
        ({"ignore_index": 70000}, "ignore_index must be in"),
        ({"dtype": "int8"}, "dtype must be one of float16, float32, float64; got 'int8'"),
        ({"dtype": "bogus"}, "dtype must be one of"),
        ({"size": (8,)}, "size must have 2 entries"),
        ({"size": (8, 0)}, "size entries must be >= 1"),
        ({"class_axis": 2}, "class_axis must be -1"),
        ({"absent_class": 0}, r"absent_class must be a class in \[1, 6\)"),
        ({"absent_class": 6}, "absent_class must be a class"),
        ({"seed": -1}, "seed must be >= 0"),
        ({"noise": -1.0}, "noise must be finite"),
        ({"strength": 0.0}, r"strength must be in \[0.1, 50\]"),
        ({"strength": 80.0}, "strength must be in"),
        ({"errors": float("nan")}, "errors must be finite"),
    ],
)
def test_bad_arguments(kwargs, message):
    args = {"size": SIZE, "classes": CLASSES} | kwargs
    with pytest.raises(ValueError, match=message):
        synth.sample(1, args.pop("size"), args.pop("classes"), **args)


def test_bad_arguments_of_write_dataset(tmp_path):
    good = {"images": 2, "size": SIZE, "classes": CLASSES}
    for kwargs, message in [
        ({"images": 0}, "images must be >= 1"),
        ({"zarr_format": 4}, "zarr_format must be 2 or 3"),
        ({"workers": 0}, "workers must be >= 1"),
        ({"chunks": (1, 8)}, "chunks must have 3 entries"),
        ({"chunks": (1, 0, 8)}, "chunks entries must be >= 1 or -1"),
        ({"classes": 1}, "classes must be in"),
    ]:
        with pytest.raises(ValueError, match=message):
            synth.write_dataset(tmp_path / "bad.zarr", **(good | kwargs))
    assert not (tmp_path / "bad.zarr").exists()  # checked before anything is written


# --------------------------------------------------------------------------------------
# Zarr
# --------------------------------------------------------------------------------------


def test_write_dataset_attributes_and_layout(tmp_path):
    group = synth.write_dataset(tmp_path / "d.zarr", images=3, size=SIZE, classes=CLASSES,
                                seed=11)  # fmt: skip
    attrs = dict(group.attrs)
    assert attrs["num_classes"] == 6
    assert attrs["ignore_index"] == 255
    assert attrs["class_axis"] == -1
    assert attrs["class_names"] == ["background", "class1", "class2", "class3", "class4",
                                    "class5"]  # fmt: skip
    assert attrs["absent_class"] == 5
    assert attrs["fastseg_synth"]["seed"] == 11
    assert attrs["fastseg_synth"]["version"] == synth.GENERATOR_VERSION
    assert attrs["fastseg_synth"]["complete"] is True
    pred, true = group["pred"], group["true"]
    assert pred.shape == (3, 48, 40, 6)
    assert pred.dtype == np.float16
    assert true.shape == (3, 48, 40)
    assert true.dtype == np.uint8
    assert pred.chunks == (1, 48, 40, 6)
    assert true.chunks == (1, 48, 40)
    assert pred.metadata.dimension_names == ("image", "y", "x", "class")
    assert pred.attrs["num_classes"] == 6
    assert true.attrs["ignore_index"] == 255
    assert group.metadata.zarr_format == 3
    assert np.isnan(pred.fill_value)
    assert group.read_only
    s_true, s_pred = synth.sample(3, SIZE, CLASSES, seed=11)
    assert np.array_equal(true[:], s_true)
    assert np.array_equal(pred[:], s_pred)


@pytest.mark.parametrize(
    ("chunks", "zarr_format", "workers"),
    [
        ((1, 16, 16), 3, 2),  # spatial tiles, ragged at the edges
        ((3, -1, -1), 3, 3),  # three images per chunk, 5 images: a partial last chunk
        ((2, 48, 20, 4), 3, 1),  # the class axis split over two chunks
        (None, 2, 2),
        ((2, 24, 40), 2, 1),
    ],
)
def test_same_data_whatever_the_chunks_format_and_threads(tmp_path, chunks, zarr_format, workers):
    group = synth.write_dataset(tmp_path / "d.zarr", images=5, size=SIZE, classes=CLASSES,
                                chunks=chunks, zarr_format=zarr_format, workers=workers,
                                seed=3)  # fmt: skip
    assert group.metadata.zarr_format == zarr_format
    if chunks is not None:
        expected = tuple(n if c == -1 else c for c, n in zip(chunks, (5, 48, 40, 6), strict=False))
        assert group["pred"].chunks[: len(chunks)] == expected
        assert group["true"].chunks == expected[:3]
    reread = zarr.open_group(tmp_path / "d.zarr", mode="r")
    s_true, s_pred = synth.sample(5, SIZE, CLASSES, seed=3)
    assert np.array_equal(reread["true"][:], s_true)
    assert np.array_equal(reread["pred"][:], s_pred)
    assert dict(reread.attrs)["num_classes"] == CLASSES


def test_channels_first_float64_volume(tmp_path):
    group = synth.write_dataset(tmp_path / "v.zarr", images=2, size=(8, 12, 10), classes=4,
                                class_axis=1, dtype="float64", zarr_format=2)  # fmt: skip
    assert group["pred"].shape == (2, 4, 8, 12, 10)
    assert group["pred"].dtype == np.float64
    assert group["pred"].chunks == (1, 4, 8, 12, 10)
    assert group.attrs["class_axis"] == 1
    s_true, s_pred = synth.sample(2, (8, 12, 10), 4, class_axis=1, dtype="float64")
    assert np.array_equal(group["pred"][:], s_pred)
    assert np.array_equal(group["true"][:], s_true)
    assert confusion(group["true"][:], group["pred"][:], class_axis=1).trace() > 0


def test_every_chunk_is_written(tmp_path):
    # Tiles of 8x8 are often pure background (equal to the fill value 0), which Zarr 3
    # would skip by default: a reader must never mistake a written chunk for a missing one.
    group = synth.write_dataset(tmp_path / "d.zarr", images=3, size=(32, 32), classes=3,
                                chunks=(1, 8, 8), errors=0.0)  # fmt: skip
    n_chunks = 3 * 4 * 4
    assert len(chunk_files(tmp_path / "d.zarr" / "true")) == n_chunks
    assert len(chunk_files(tmp_path / "d.zarr" / "pred")) == n_chunks
    tiles = group["true"][:].reshape(3, 4, 8, 4, 8)
    assert (tiles == 0).all(axis=(2, 4)).any()  # some chunks are indeed all background


def test_progress_is_reported(tmp_path):
    calls = []
    synth.write_dataset(tmp_path / "d.zarr", images=7, size=(16, 16), classes=3,
                        absent_class=False, chunks=(2, 16, 16),
                        progress=lambda done, total: calls.append((done, total)))  # fmt: skip
    assert [total for _, total in calls] == [7] * 4
    done = [d for d, _ in calls]
    assert done == sorted(done)
    assert done[-1] == 7


def test_existing_paths(tmp_path):
    path = tmp_path / "d.zarr"
    synth.write_dataset(path, images=2, size=(16, 16), classes=4)
    with pytest.raises(FileExistsError, match="pass overwrite=True"):
        synth.write_dataset(path, images=2, size=(16, 16), classes=4)
    group = synth.write_dataset(path, images=1, size=(8, 8), classes=3, absent_class=False,
                                overwrite=True)  # fmt: skip
    assert group["pred"].shape == (1, 8, 8, 3)
    assert len(chunk_files(path / "pred")) == 1  # the old chunks are gone
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a Zarr group; refusing"):
        synth.write_dataset(other, images=1, size=(8, 8), classes=4, overwrite=True)
    assert (other / "keep.txt").read_text() == "mine"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert synth.write_dataset(empty, images=1, size=(8, 8), classes=4)["true"].shape == (1, 8, 8)


def test_memory_is_bounded_by_chunks(tmp_path):
    # 64 images of 64x64x16 float32: 16 MiB of scores, 4 MiB of float32 work per slab
    # window at most; the whole array must never be held at once.
    kwargs = {"images": 64, "size": (64, 64), "classes": 16, "dtype": "float32", "workers": 1}
    total = 64 * 64 * 64 * 16 * 4
    synth.write_dataset(tmp_path / "warm.zarr", **(kwargs | {"images": 2}))
    tracemalloc.start()
    try:
        synth.write_dataset(tmp_path / "d.zarr", **kwargs)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < total / 4, (peak, total)


@pytest.mark.parametrize(
    ("size", "classes", "dtype", "class_axis", "expected"),
    [
        ((512, 512), 19, "float16", -1, (1, 512, 512, 19)),
        ((1024, 1024), 19, "float16", -1, (1, 512, 512, 19)),
        ((1024, 2048), 19, "float16", 1, (1, 19, 512, 512)),
        ((512, 512), 19, "float32", -1, (1, 256, 512, 19)),
        ((256, 256, 256), 14, "float16", -1, (1, 64, 64, 128, 14)),
    ],
)
def test_default_chunks(size, classes, dtype, class_axis, expected):
    spec = synth.make_spec(size, classes, dtype=dtype, class_axis=class_axis)
    chunks = synth.default_chunks(spec)
    assert chunks == expected
    assert np.prod(chunks) * np.dtype(dtype).itemsize <= synth.CHUNK_TARGET_BYTES


def test_an_interrupted_write_is_marked_incomplete(tmp_path):
    def stop(done, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        synth.write_dataset(tmp_path / "d.zarr", images=40, size=(16, 16), classes=4,
                            workers=2, progress=stop)  # fmt: skip
    group = zarr.open_group(tmp_path / "d.zarr", mode="r")
    assert group.attrs["fastseg_synth"]["complete"] is False
    # the run stopped early: later slabs were never generated
    assert len(chunk_files(tmp_path / "d.zarr" / "pred")) < 40

"""Label-id maps: counting through a map equals remapping the data first, then counting.

The oracle is plain NumPy: remap the stored ids with a lookup table (``lut[ids]``), then
count with ``np.bincount`` (per image tp / pred / true, and the confusion matrix),
skipping truth pixels equal to the ignore index.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastseg
from fastseg import inputs
from fastseg.cli import main
from fastseg.counting import count_prepared
from fastseg.inputs import prepare
from fastseg.labelmaps import (
    LabelMap,
    as_label_map,
    lookup,
    read_label_map,
    reduce_zero_label_map,
)


def bincount_counts(truth, pred, n, ignore=None):
    """tp, pred, true per image and the confusion matrix, by np.bincount."""
    b = truth.shape[0]
    t = truth.reshape(b, -1).astype(np.int64)
    p = pred.reshape(b, -1).astype(np.int64)
    tp = np.zeros((b, n), np.int64)
    pc = np.zeros((b, n), np.int64)
    tc = np.zeros((b, n), np.int64)
    confusion = np.zeros((n, n), np.int64)
    for i in range(b):
        keep = np.ones(t.shape[1], bool) if ignore is None else t[i] != ignore
        ti, pi = t[i][keep], p[i][keep]
        assert np.all((ti >= 0) & (ti < n)), "oracle: bad truth"
        assert np.all((pi >= 0) & (pi < n)), "oracle: bad prediction"
        tc[i] = np.bincount(ti, minlength=n)
        pc[i] = np.bincount(pi, minlength=n)
        tp[i] = np.bincount(ti[ti == pi], minlength=n)
        confusion += np.bincount(ti * n + pi, minlength=n * n).reshape(n, n)
    return tp, pc, tc, confusion


def remapped(ids, mapping, default):
    """`ids` remapped by a dict, every other id to `default` (the oracle's remap)."""
    flat = ids.astype(np.int64).ravel()
    out = np.full(flat.shape, default, np.int64)
    for k, v in mapping.items():
        out[flat == k] = v
    return out.reshape(ids.shape)


def count_with(truth, pred, **options):
    return count_prepared(prepare(truth, pred, **options))


def assert_counts(c, expected, ignored=None):
    tp, pc, tc, confusion = expected
    assert c.tp.tolist() == tp.tolist()
    assert c.pred.tolist() == pc.tolist()
    assert c.true.tolist() == tc.tolist()
    assert c.confusion.tolist() == confusion.tolist()
    if ignored is not None:
        assert c.ignored == ignored


CITYSCAPES = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10,
              24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}  # fmt: skip


@pytest.fixture(scope="module")
def cityscapes_like():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 34, (3, 40, 30)).astype(np.uint8)
    evaluated = np.array(sorted(CITYSCAPES))
    pred = rng.choice(evaluated, truth.shape).astype(np.uint8)
    return truth, pred


# ---------------------------------------------------------------- maps and the oracle


def test_truth_map_equals_remap_then_bincount(cityscapes_like):
    truth, pred_ids = cityscapes_like
    pred = remapped(pred_ids, CITYSCAPES, -1)  # class indices
    c = count_with(truth, pred, num_classes=19, ignore_index=255, label_map=CITYSCAPES)
    t = remapped(truth, CITYSCAPES, 255)
    assert_counts(c, bincount_counts(t, pred, 19, 255), ignored=int((t == 255).sum()))


def test_prediction_map_same_and_own(cityscapes_like):
    truth, pred_ids = cityscapes_like
    t = remapped(truth, CITYSCAPES, 255)
    expected = bincount_counts(t, remapped(pred_ids, CITYSCAPES, -1), 19, 255)
    own = LabelMap(list(CITYSCAPES), list(CITYSCAPES.values()))
    for pred_map in (True, "same", CITYSCAPES, own):
        c = count_with(truth, pred_ids, num_classes=19, ignore_index=255, label_map=CITYSCAPES,
                       label_map_pred=pred_map)  # fmt: skip
        assert_counts(c, expected)


@pytest.mark.parametrize(
    "dtype", ["uint8", "int8", "uint16", "<i2", ">i2", ">u2", "int32", ">u4", "int64", "uint64",
              ">i8"])  # fmt: skip
def test_every_integer_dtype(dtype):
    rng = np.random.default_rng(1)
    high = 120 if np.dtype(dtype).itemsize == 1 else 3000
    ids = rng.integers(0, high, (2, 17, 9))
    mapping = {int(k): int(v) for k, v in zip(rng.choice(high, 40, replace=False),
                                              rng.integers(0, 5, 40), strict=True)}  # fmt: skip
    mapping[int(ids[0, 0, 0])] = 3  # at least one mapped pixel
    truth = ids.astype(dtype)
    pred = rng.integers(0, 5, ids.shape)
    c = count_with(truth, pred, num_classes=5, ignore_index=99, label_map=mapping)
    t = remapped(ids, mapping, 99)
    assert_counts(c, bincount_counts(t, pred, 5, 99), ignored=int((t == 99).sum()))
    # the same map on the prediction
    pred_ids = np.array(list(mapping))[rng.integers(0, len(mapping), ids.shape)].astype(dtype)
    c = count_with(truth, pred_ids, num_classes=5, ignore_index=99, label_map=mapping,
                   label_map_pred=True)  # fmt: skip
    assert_counts(c, bincount_counts(t, remapped(pred_ids, mapping, -1), 5, 99))


def test_negative_ids_are_unmapped():
    pred = np.array([[[1, 0, 0, 1]]])
    # negative stored ids are no id of any map: ignored
    signed = np.array([[[-1, 5, -128, 5]]], np.int8)
    c = count_with(signed, pred, num_classes=2, ignore_index=255, label_map={5: 1})
    assert c.ignored == 2
    assert c.true.tolist() == [[0, 2]]


@settings(max_examples=60, deadline=None)
@given(
    data=st.data(),
    dtype=st.sampled_from(["uint8", "int16", "uint16", "int32", "uint64"]),
    n=st.integers(1, 6),
    with_ignore=st.booleans(),
)
def test_random_maps_property(data, dtype, n, with_ignore):
    info = np.iinfo(dtype)
    top = min(int(info.max), 600)
    ids = data.draw(st.lists(st.integers(0, top), min_size=1, max_size=12, unique=True))
    classes = data.draw(st.lists(st.integers(0, n - 1), min_size=len(ids), max_size=len(ids)))
    mapping = dict(zip(ids, classes, strict=True))
    shape = (data.draw(st.integers(1, 3)), data.draw(st.integers(1, 5)), 3)
    pool = ids + ([top] if with_ignore else [])
    draws = data.draw(st.lists(st.sampled_from(pool), min_size=math.prod(shape),
                               max_size=math.prod(shape)))  # fmt: skip
    truth = np.array(draws).reshape(shape).astype(dtype)
    pred = np.array(data.draw(st.lists(st.integers(0, n - 1), min_size=math.prod(shape),
                                       max_size=math.prod(shape)))).reshape(shape)  # fmt: skip
    ignore = 1000 if with_ignore else None
    if with_ignore and top in mapping:
        del mapping[top]
    c = count_with(truth, pred, num_classes=n, ignore_index=ignore, label_map=mapping)
    t = remapped(truth, mapping, 1000)
    assert_counts(c, bincount_counts(t, pred, n, ignore))


def test_reduce_zero_label_equals_mmseg():
    rng = np.random.default_rng(2)
    n = 150
    truth = rng.integers(0, n + 1, (2, 31, 29)).astype(np.uint8)
    truth[0, :3] = 255
    pred = rng.integers(0, n, truth.shape)
    # mmseg's LoadAnnotations(reduce_zero_label=True)
    gt = truth.copy()
    gt[gt == 0] = 255
    gt = gt - 1
    gt[gt == 254] = 255
    expected = bincount_counts(gt, pred, n, 255)
    c = count_with(truth, pred, num_classes=n, ignore_index=255, reduce_zero_label=True)
    assert_counts(c, expected, ignored=int((gt == 255).sum()))
    acc = fastseg.Accumulator(n, ignore_index=255, reduce_zero_label=True).update(truth, pred)
    assert acc.counts == c
    assert reduce_zero_label_map(3).as_dict() == {1: 0, 2: 1, 3: 2}


def test_reduce_zero_label_needs_an_ignore_index():
    with pytest.raises(ValueError, match="reduce_zero_label sends id 0 to the ignore index"):
        count_with(np.zeros((1, 2, 2), np.uint8), np.zeros((1, 2, 2), int), num_classes=2,
                   reduce_zero_label=True)  # fmt: skip
    with pytest.raises(ValueError, match="ignore_index"):
        fastseg.Accumulator(2, reduce_zero_label=True)
    with pytest.raises(ValueError, match="not both"):
        fastseg.Accumulator(2, ignore_index=255, reduce_zero_label=True, label_map={1: 0})


def test_label_map_with_scores_prediction(cityscapes_like):
    truth, pred_ids = cityscapes_like
    classes = remapped(pred_ids, CITYSCAPES, -1)
    scores = np.eye(19, dtype=np.float32)[classes]
    c = count_with(truth, scores, ignore_index=255, label_map=CITYSCAPES, label_map_pred=True)
    t = remapped(truth, CITYSCAPES, 255)
    assert_counts(c, bincount_counts(t, classes, 19, 255))  # True: label maps only
    with pytest.raises(ValueError, match="label_map_pred maps the ids of a label map, but y_pred"):
        count_with(truth, scores, ignore_index=255, label_map=CITYSCAPES,
                   label_map_pred=CITYSCAPES)  # fmt: skip
    with pytest.raises(ValueError, match="label_map maps the ids of a label map, but y_true"):
        count_with(scores, truth, ignore_index=255, label_map=CITYSCAPES)


# ------------------------------------------------------------------ unmapped ids


def test_unmapped_truth_without_ignore_index_is_an_error():
    truth = np.array([[[7, 3, 3, 8]]], np.uint8)
    with pytest.raises(ValueError, match=r"y_true has 2 pixels .* \(ids 3\); pass ignore_index"):
        count_with(truth, np.zeros((1, 1, 4), int), num_classes=2, label_map={7: 0, 8: 1})
    # every id mapped: no ignore index needed
    full = {k: k % 2 for k in range(256)}
    c = count_with(truth, np.zeros((1, 1, 4), int), num_classes=2, label_map=full)
    assert c.true.tolist() == [[1, 3]]  # 7, 3, 3 -> 1; 8 -> 0


def test_unmapped_prediction_is_an_error(cityscapes_like):
    truth, pred_ids = cityscapes_like
    pred = pred_ids.copy()
    pred[0, 0, :5] = [0, 0, 4, 9, 255]  # void ids: no class
    # Checked where the truth counts (as any prediction label): not where it is ignored.
    counted = np.isin(truth[0, 0, :5], list(CITYSCAPES))
    ids = ", ".join(str(i) for i in np.unique(pred[0, 0, :5][counted]))
    with pytest.raises(ValueError,
                       match=rf"y_pred has {counted.sum()} pixels .*\(ids {ids}\); a pre"):
        count_with(truth, pred, num_classes=19, ignore_index=255, label_map=CITYSCAPES,
                   label_map_pred=True)  # fmt: skip
    # a prediction id mapped to the ignore index is no class either
    with pytest.raises(ValueError, match=r"y_pred has \d+ pixels .* \(ids 26\)"):
        count_with(truth, pred_ids, num_classes=19, ignore_index=255, label_map=CITYSCAPES,
                   label_map_pred={**CITYSCAPES, 26: 255, 27: 14} | {28: 15})  # fmt: skip


# ------------------------------------------------------------------ validation


@pytest.mark.parametrize(
    ("mapping", "dtype", "message"),
    [
        ({300: 1}, "uint8", "lists id 300, which y_true of dtype uint8 cannot hold"),
        ({200: 1}, "int8", "lists id 200, which y_true of dtype int8 cannot hold"),
        ({3: 5}, "uint8", r"maps id 3 to 5, which is not a class in \[0, 2\) nor the ignore"),
        ({3: -1}, "uint8", "maps id 3 to -1"),
        ({-3: 1}, "uint8", "negative"),
        ({"x": 1}, "uint8", "id 'x' is not an integer"),
        ({3: 1.5}, "uint8", "is not an integer"),
        ({"3": 1, 3: 0}, "uint8", "id 3 is listed twice"),
    ],
)
def test_bad_maps_are_refused_up_front(mapping, dtype, message):
    with pytest.raises((ValueError, TypeError), match=message):
        prepare(np.zeros((1, 2, 2), dtype), np.zeros((1, 2, 2), int), num_classes=2,
                ignore_index=255, label_map=mapping)  # fmt: skip


def test_option_errors():
    with pytest.raises(ValueError, match="label_map_pred=True applies the truth's label map"):
        fastseg.Accumulator(2, label_map_pred=True)
    with pytest.raises(TypeError, match="reduce_zero_label must be True or False"):
        fastseg.Accumulator(2, reduce_zero_label="yes")
    with pytest.raises(TypeError, match="label_map must be a dict"):
        fastseg.Accumulator(2, label_map=3.5)
    with pytest.raises(ValueError, match="must be 1-D"):
        as_label_map(np.zeros((2, 2), int))
    with pytest.raises(TypeError, match="must hold integers"):
        as_label_map(np.zeros(3))


def test_lookup_tables_cover_the_dtype():
    m = as_label_map({7: 0, 8: 1})
    assert lookup(m, np.dtype("uint8"), 2, 255, "y_true", "label_map").table.shape == (256,)
    assert lookup(m, np.dtype("int16"), 2, 255, "y_true", "label_map").table.shape == (65536,)
    big = lookup(m, np.dtype("int32"), 2, 255, "y_true", "label_map")
    assert big.table is None
    assert big.keys.tolist() == [7, 8]
    assert big.keys.dtype == np.int32
    # codes: uint8 when they fit, int32 for a negative ignore index
    assert lookup(m, np.dtype("uint8"), 2, 255, "y_true", "label_map").table.dtype == np.uint8
    assert lookup(m, np.dtype("uint8"), 2, -1, "y_true", "label_map").table.dtype == np.int32


# ------------------------------------------------------------------ forms and files


def test_forms_give_the_same_map(tmp_path):
    expected = {0: 255, 7: 0, 8: 1}
    table = [255, -1, -1, -1, -1, -1, -1, 0, 1]
    (tmp_path / "m.json").write_text(json.dumps({str(k): v for k, v in expected.items()}))
    (tmp_path / "t.json").write_text(json.dumps([255, None, None, None, None, None, None, 0, 1]))
    (tmp_path / "m.csv").write_text("id,class\n0,255\n\n# comment\n7,0\n8,1\n")
    (tmp_path / "n.csv").write_text("0,255\n7,0\n8,1\n")
    (tmp_path / "m.txt").write_text('{"ids": [8, 7, 0], "classes": [1, 0, 255]}')
    forms = [expected, table, np.array(table), LabelMap([0, 7, 8], [255, 0, 1]),
             {"ids": [0, 7, 8], "classes": [255, 0, 1]}, tmp_path / "m.json",
             str(tmp_path / "t.json"), tmp_path / "m.csv", tmp_path / "n.csv",
             tmp_path / "m.txt"]  # fmt: skip
    for form in forms:
        assert as_label_map(form).as_dict() == expected, form
    m = read_label_map(tmp_path / "m.json")
    assert as_label_map(m.to_json()) == m


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("a.json", "{not json", "not JSON"),
        ("a.json", '"text"', "not an object or a list"),
        ("a.csv", "id,class\n1,2,3\n", "row 2"),
        ("a.csv", "id,class\n1,x\n", "row 2"),
        ("a.json", '{"1": "a"}', "is not an integer"),
    ],
)
def test_bad_files_name_themselves(tmp_path, name, text, message):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ValueError, match=message) as info:
        read_label_map(path)
    assert str(path) in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(ValueError, match="cannot be read"):
        as_label_map(tmp_path / "nope.json")


# ------------------------------------------------------------------ memory: slab by slab


def test_applied_in_the_kernel_on_the_raw_ids(cityscapes_like):
    """The kernels read the stored ids and the map's table: no remapped copy is made."""
    truth, pred_ids = cityscapes_like
    prep = prepare(truth, pred_ids, num_classes=19, ignore_index=255, label_map=CITYSCAPES,
                   label_map_pred=True)  # fmt: skip
    assert np.shares_memory(prep.true, truth)
    assert np.shares_memory(prep.pred, pred_ids)
    assert prep.true_convert is None
    assert prep.pred_convert is None
    assert prep.kernel_lookups == (prep.true_lut, prep.pred_lut)
    t = remapped(truth, CITYSCAPES, 255)
    assert_counts(count_prepared(prep), bincount_counts(t, remapped(pred_ids, CITYSCAPES, -1),
                                                        19, 255))  # fmt: skip


_PEAKS = """
import json, sys, tracemalloc
import numpy as np
from fastseg.counting import count_prepared
from fastseg.inputs import prepare

label_map = {int(k): v for k, v in json.loads(sys.argv[1]).items()}
rng = np.random.default_rng(5)
ids = np.array(sorted(label_map), np.uint8)
peaks = []
for n_images in (2, 8):
    truth = ids[rng.integers(0, ids.size, (n_images, 512, 1024))]
    pred = ids[rng.integers(0, ids.size, (n_images, 512, 1024))]
    options = dict(num_classes=19, ignore_index=255, label_map=label_map, label_map_pred=True)
    count_prepared(prepare(truth, pred, **options))  # compiled before tracing
    tracemalloc.start()
    count_prepared(prepare(truth, pred, **options))
    peaks.append(tracemalloc.get_traced_memory()[1])
    tracemalloc.stop()
print(json.dumps(peaks))
"""


def test_extra_memory_does_not_grow_with_the_input():
    """Counting through label maps allocates no array the size of the input (NumPy's
    allocations are traced; the kernels' block buffers are of fixed size).

    In a process of its own: tracemalloc traces every thread, and inside the suite the peak
    of the same call moved by 0.3 MiB with what earlier tests left running (zarr's event
    loop, tqdm's monitor, Dask's offload thread); alone it repeats within 3 KiB.
    """
    run = subprocess.run([sys.executable, "-c", _PEAKS, json.dumps(CITYSCAPES)],
                         capture_output=True, text=True, timeout=600)  # fmt: skip
    assert run.returncode == 0, run.stderr
    small, large = json.loads(run.stdout)
    # 4x the input (4 MiB per uint8 input at 8 images), the same extra memory (~0.85 MiB).
    assert large < small + 2**16
    assert large < 2**20


def test_widely_spread_ids_are_mapped_slab_by_slab(monkeypatch):
    """Ids spread wider than a kernel table (KERNEL_TABLE_ENTRIES) are mapped by the
    Lookup slab by slab: extra memory that of a slab."""
    rng = np.random.default_rng(6)
    big = {3_000_000 + 7 * k: k for k in range(5)}
    stored = np.array(sorted(big), np.int64)
    truth = stored[rng.integers(0, 5, (3, 20, 30))]
    pred = rng.integers(0, 5, (3, 20, 30))
    prep = prepare(truth, pred, num_classes=5, label_map=big)
    assert prep.true_lut is not None
    assert prep.true_lut.dense is None
    assert prep.true_convert is prep.true_lut
    assert prep.kernel_lookups == (None, None)
    expected = count_prepared(prep)
    assert_counts(expected, bincount_counts(remapped(truth, big, -1), pred, 5, None))
    monkeypatch.setattr(inputs, "SLAB_BYTES", truth[0].nbytes)  # one image per slab
    seen = []
    lut = prep.true_lut

    def spy(slab):
        seen.append(slab.shape[0])
        return lut(slab)

    spied = prepare(truth, pred, num_classes=5, label_map=big)
    object.__setattr__(spied, "true_convert", spy)
    assert count_prepared(spied) == expected
    assert seen == [1, 1, 1]


def test_strided_input(cityscapes_like):
    truth, pred_ids = cityscapes_like
    t, p = truth[:, ::2, 1::3], pred_ids[:, ::2, 1::3]
    c = count_with(t, p, num_classes=19, ignore_index=255, label_map=CITYSCAPES,
                   label_map_pred=True)  # fmt: skip
    tt = remapped(t, CITYSCAPES, 255)
    assert_counts(c, bincount_counts(tt, remapped(p, CITYSCAPES, -1), 19, 255))


# ------------------------------------------------------------------ entry points


def test_accumulator_save_load_and_merge(cityscapes_like, tmp_path):
    truth, pred_ids = cityscapes_like
    acc = fastseg.Accumulator(19, ignore_index=255, label_map=CITYSCAPES, label_map_pred=True)
    acc.update(truth[:2], pred_ids[:2]).update(truth[2:], pred_ids[2:])
    acc.save(tmp_path / "a.npz")
    back = fastseg.Accumulator.load(tmp_path / "a.npz")
    assert back == acc
    assert back.label_map == acc.label_map
    assert back.label_map_pred is True
    back.update(truth, pred_ids)  # a loaded accumulator maps as the saved one did
    assert back.counts.tp[3:].tolist() == acc.counts.tp.tolist()
    other = fastseg.Accumulator(19, ignore_index=255, label_map={7: 0})
    with pytest.raises(ValueError, match="label_map"):
        acc + other
    merged = acc + acc.copy()
    assert merged.n_images == 6


def test_evaluate_and_checkpoint(cityscapes_like, tmp_path):
    truth, pred_ids = cityscapes_like
    acc = fastseg.Accumulator(19, ignore_index=255, label_map=CITYSCAPES, label_map_pred=True)
    expected = acc.update(truth, pred_ids).compute()
    for path in (None, tmp_path / "ck"):
        r = fastseg.evaluate(truth, pred_ids, num_classes=19, ignore_index=255,
                             label_map=CITYSCAPES, label_map_pred=True, progress=False,
                             checkpoint=path)  # fmt: skip
        assert r.counts == expected.counts
    manifest = json.loads((tmp_path / "ck" / "manifest.json").read_text())
    assert manifest["fingerprint"]["label_map"]["ids"] == sorted(CITYSCAPES)
    with pytest.raises(ValueError, match="lists id 300"):
        fastseg.evaluate(truth, pred_ids, num_classes=19, ignore_index=255, label_map={300: 1},
                         progress=False)  # fmt: skip


def test_cli_label_map_and_reduce_zero_label(tmp_path, capsys):
    import zarr

    rng = np.random.default_rng(3)
    truth = rng.integers(0, 6, (2, 16, 16)).astype(np.uint8)
    pred = rng.integers(0, 5, (2, 16, 16)).astype(np.uint8)
    group = zarr.open_group(tmp_path / "d.zarr", mode="w")
    group.create_array("true", data=truth)
    group.create_array("pred", data=pred)
    store = str(tmp_path / "d.zarr")
    (tmp_path / "map.csv").write_text("id,class\n1,0\n2,1\n3,2\n4,3\n5,4\n")
    runs = {}
    for name, extra in (("map", ["--label-map", str(tmp_path / "map.csv")]),
                        ("reduce", ["--reduce-zero-label"])):  # fmt: skip
        args = ["evaluate", "--true", store,
                "--pred", store, "--num-classes", "5", "--ignore-index", "255",
                "--format", "json", "--no-progress", *extra]  # fmt: skip
        assert main(args) == 0
        runs[name] = json.loads(capsys.readouterr().out)
    assert runs["map"]["summary"] == runs["reduce"]["summary"]
    gt = truth.astype(np.int64) - 1
    gt[gt < 0] = 255
    _tp, _pc, tc, _ = bincount_counts(gt, pred, 5, 255)
    assert [r["support"] for r in runs["map"]["classes"]] == tc.sum(0).tolist()
    assert runs["map"]["ignored"] == int((truth == 0).sum())
    # a bad map: exit 2, one line naming the CLI's flag
    args = ["evaluate", "--true", store,
            "--pred", store, "--num-classes", "5", "--ignore-index", "255",
            "--label-map-pred", str(tmp_path / "map.csv"), "--no-progress"]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "y_pred has" in err or "--label-map-pred" in err

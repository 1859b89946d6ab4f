"""The Accumulator: updates, merging, files, pickling, array-likes."""

from __future__ import annotations

import itertools
import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastseg
from fastseg.stream import Accumulator


def _batch(rng, b=6, h=9, w=7, n=4, dtype=np.float32):
    truth = rng.integers(0, n, (b, h, w)).astype(np.uint8)
    truth[:, 0, :2] = 255
    scores = rng.random((b, h, w, n)).astype(dtype)
    return truth, scores


def _bincount_confusion(truth, labels, n, ignore=255):
    keep = truth != ignore
    return np.bincount(truth[keep].astype(np.int64) * n + labels[keep], minlength=n * n).reshape(
        n, n
    )


def test_update_counts_match_an_independent_bincount():
    rng = np.random.default_rng(0)
    truth, scores = _batch(rng)
    acc = (
        Accumulator(4, ignore_index=255).update(truth[:4], scores[:4]).update(truth[4:], scores[4:])
    )
    labels = scores.argmax(-1)
    c = acc.counts
    np.testing.assert_array_equal(c.confusion, _bincount_confusion(truth, labels, 4))
    for b in range(truth.shape[0]):
        keep = truth[b] != 255
        t, p = truth[b][keep], labels[b][keep]
        np.testing.assert_array_equal(c.tp[b], np.bincount(t[t == p], minlength=4))
        np.testing.assert_array_equal(c.true[b], np.bincount(t, minlength=4))
        np.testing.assert_array_equal(c.pred[b], np.bincount(p, minlength=4))
    assert c.ignored == 2 * truth.shape[0]
    assert acc.n_images == 6
    assert acc.ids == [str(i) for i in range(6)]


def test_update_returns_self_and_keeps_given_ids():
    rng = np.random.default_rng(1)
    truth, scores = _batch(rng, b=2)
    acc = Accumulator(4, ignore_index=255)
    assert acc.update(truth, scores, ids=["a.png", "b.png"]) is acc
    acc.update(truth[:1], scores[:1])
    assert acc.ids == ["a.png", "b.png", "2"]


def test_every_input_kind_gives_the_same_counts():
    rng = np.random.default_rng(2)
    truth, scores = _batch(rng, b=3)
    truth[truth == 255] = 0
    one_hot = np.eye(4, dtype=np.float32)[truth]
    first = np.moveaxis(scores, -1, 1).copy()
    labels = scores.argmax(-1).astype(np.int16)
    expected = Accumulator(4).update(truth, scores).counts
    assert Accumulator(4).update(one_hot, scores).counts == expected
    assert Accumulator(4, class_axis=1).update(truth, first).counts == expected
    assert Accumulator(4).update(truth, scores.astype(np.float16)).counts == Accumulator(4).update(
        truth, scores.astype(np.float16).astype(np.float32)).counts  # fmt: skip
    assert Accumulator(4).update(truth, labels).counts == expected
    volume = rng.random((2, 3, 4, 5, 4))
    vtruth = rng.integers(0, 4, (2, 3, 4, 5))
    assert Accumulator(4).update(vtruth, volume).counts == fastseg.counts(vtruth, volume)


def test_soft_accumulator_sums_match_numpy():
    rng = np.random.default_rng(3)
    truth, scores = _batch(rng, b=3)
    truth[truth == 255] = 1
    acc = Accumulator(4, soft=True).update(truth, scores)
    one_hot = np.eye(4)[truth]
    c = acc.counts
    assert c.confusion is None
    np.testing.assert_allclose(c.tp, (scores * one_hot).sum(axis=(1, 2)), rtol=1e-12)
    np.testing.assert_allclose(c.pred, scores.astype(np.float64).sum(axis=(1, 2)), rtol=1e-12)
    np.testing.assert_array_equal(c.true, one_hot.sum(axis=(1, 2)))


def test_per_image_false_keeps_only_totals():
    rng = np.random.default_rng(4)
    truth, scores = _batch(rng)
    full = Accumulator(4, ignore_index=255).update(truth, scores)
    small = Accumulator(4, ignore_index=255, per_image=False)
    for b in range(truth.shape[0]):
        small.update(truth[b : b + 1], scores[b : b + 1])
    assert small.counts == full.counts.total()
    assert small.n_images == 6
    with pytest.raises(ValueError, match="per_image=False"):
        small.ids  # noqa: B018


@settings(max_examples=40, deadline=None)
@given(
    cuts=st.lists(st.integers(1, 9), min_size=1, max_size=5, unique=True),
    order=st.permutations(range(3)),
    per_image=st.booleans(),
)
def test_any_split_and_merge_order_gives_identical_totals(cuts, order, per_image):
    rng = np.random.default_rng(5)
    truth, scores = _batch(rng, b=10, h=5, w=4)
    edges = [0, *sorted(cuts), 10]
    parts = [
        Accumulator(4, ignore_index=255, per_image=per_image).update(truth[a:b], scores[a:b])
        for a, b in itertools.pairwise(edges)
        if b > a
    ]
    whole = Accumulator(4, ignore_index=255, per_image=per_image).update(truth, scores)
    merged = parts[0]
    for p in parts[1:]:
        merged = merged + p
    assert merged == whole
    # Merge order permutes images but never changes the data-set totals.
    groups = [parts[i % len(parts)] for i in order]
    shuffled = groups[0].copy()
    for g in groups[1:]:
        shuffled += g
    assert shuffled.counts.total() == (groups[0] + groups[1] + groups[2]).counts.total()
    # The reports: identical in full for any split, and in every data-set value for any
    # merge order (which only permutes the per-image rows).
    assert merged.compute().to_dict() == whole.compute().to_dict()
    in_order = (groups[0] + groups[1] + groups[2]).compute().to_dict()
    reordered = shuffled.compute().to_dict()
    for key in ("summary", "classes", "confusion_matrix", "pixels", "ignored", "n_images"):
        assert reordered[key] == in_order[key]


def test_merge_refuses_different_classes():
    with pytest.raises(ValueError, match="num_classes: 3 vs 4"):
        Accumulator(3) + Accumulator(4)
    with pytest.raises(ValueError, match="ignore_index"):
        Accumulator(3, ignore_index=255) + Accumulator(3)
    with pytest.raises(ValueError, match="class_names"):
        Accumulator(2, class_names=["a", "b"]) + Accumulator(2, class_names=["a", "c"])


def test_add_does_not_modify_operands_and_reset_clears():
    rng = np.random.default_rng(6)
    truth, scores = _batch(rng, b=2)
    a = Accumulator(4, ignore_index=255).update(truth, scores)
    b = Accumulator(4, ignore_index=255).update(truth, scores)
    before = a.counts.tp.copy()
    c = a + b
    np.testing.assert_array_equal(a.counts.tp, before)
    assert c.n_images == 4
    c.reset()
    assert c.n_images == 0
    assert c.counts.n_images == 0
    assert a.n_images == 2


def test_pickle_round_trip():
    rng = np.random.default_rng(7)
    truth, scores = _batch(rng)
    acc = Accumulator(4, ignore_index=255, class_names=list("abcd")).update(
        truth, scores, ids=list("uvwxyz")
    )
    again = pickle.loads(pickle.dumps(acc))
    assert again == acc
    assert again.ids == list("uvwxyz")


@pytest.mark.parametrize("per_image", [True, False])
@pytest.mark.parametrize("soft", [True, False])
def test_save_load_round_trip(tmp_path, per_image, soft):
    rng = np.random.default_rng(8)
    truth, scores = _batch(rng)
    acc = Accumulator(4, ignore_index=255, class_names=list("abcd"), per_image=per_image, soft=soft)
    acc.update(truth, scores, ids=[f"img{i}" for i in range(6)])
    acc.save(tmp_path / "acc.npz")
    again = Accumulator.load(tmp_path / "acc.npz")
    assert again == acc
    assert again.n_images == 6
    assert list(tmp_path.iterdir()) == [tmp_path / "acc.npz"]  # no temporary left behind


def test_load_refuses_other_and_corrupt_files(tmp_path):
    counts_file = tmp_path / "counts.npz"
    fastseg.counts(np.zeros((1, 2, 2), np.uint8), np.ones((1, 2, 2, 2))).save(counts_file)
    with pytest.raises(ValueError, match="not a fastseg accumulator"):
        Accumulator.load(counts_file)
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="not a readable fastseg accumulator"):
        Accumulator.load(garbage)

    acc = Accumulator(2).update(np.zeros((3, 2, 2), np.uint8), np.ones((3, 2, 2, 2)))
    acc.save(tmp_path / "good.npz")
    with np.load(tmp_path / "good.npz") as f:
        arrays = dict(f)
    arrays["tp"] = arrays["tp"][:2]
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ValueError, match="corrupt"):
        Accumulator.load(tmp_path / "bad.npz")
    arrays = {k: v for k, v in arrays.items() if k != "confusion"}
    arrays["meta"] = np.array(str(arrays["meta"]).replace('"version": 1', '"version": 99'))
    np.savez(tmp_path / "future.npz", **arrays)
    with pytest.raises(ValueError, match="version 99"):
        Accumulator.load(tmp_path / "future.npz")


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="positive"):
        Accumulator(0)
    with pytest.raises(TypeError, match="positive integer"):
        Accumulator(2.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="2 names for 3 classes"):
        Accumulator(3, class_names=["a", "b"])
    acc = Accumulator(3)
    with pytest.raises(ValueError, match="2 ids for a batch of 1"):
        acc.update(np.zeros((1, 2, 2), np.uint8), np.ones((1, 2, 2, 3)), ids=["a", "b"])
    with pytest.raises(ValueError, match="num_classes=3 but y_pred has 4"):
        acc.update(np.zeros((1, 2, 2), np.uint8), np.ones((1, 2, 2, 4)))
    assert acc.n_images == 0


class _DLPackOnly:
    """An array producer that speaks only DLPack (as a CPU tensor from another library)."""

    def __init__(self, arr):
        self._arr = arr

    def __dlpack__(self, **kwargs):
        return self._arr.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return self._arr.__dlpack_device__()


class _ArrayLike:
    def __init__(self, arr):
        self._arr = arr
        self.device = "cpu"

    def __array__(self, dtype=None, copy=None):
        return self._arr


class _GpuTensor:
    """A PyTorch CUDA tensor, as far as fastseg looks."""

    __module__ = "torch"

    class _Device:
        type = "cuda"

        def __str__(self):
            return "cuda:0"

    device = _Device()

    def __array__(self, dtype=None, copy=None):  # pragma: no cover - must not be called
        raise AssertionError("a GPU tensor must be refused before it is read")


def test_array_likes_and_dlpack_are_read_without_copy_semantics_change():
    rng = np.random.default_rng(9)
    truth, scores = _batch(rng, b=2)
    expected = Accumulator(4, ignore_index=255).update(truth, scores).counts
    via_dlpack = Accumulator(4, ignore_index=255).update(_DLPackOnly(truth), _DLPackOnly(scores))
    via_array = Accumulator(4, ignore_index=255).update(_ArrayLike(truth), _ArrayLike(scores))
    assert via_dlpack.counts == expected
    assert via_array.counts == expected


def test_gpu_tensor_is_refused_with_advice():
    with pytest.raises(TypeError, match=r"cuda:0.*\.cpu\(\)"):
        Accumulator(4).update(np.zeros((1, 2, 2), np.uint8), _GpuTensor())


# ------------------------------------------------- files: golden v1, damage, dtypes

from damaged_files import DAMAGES, DATA, golden_counts  # noqa: E402


def test_golden_version_1_accumulators_still_load(tmp_path):
    acc = Accumulator.load(DATA / "accumulator_hard_v1.npz")
    hard = golden_counts(False)
    one = fastseg.Counts(hard.tp[:1], hard.pred[:1], hard.true[:1], np.zeros((4, 4), np.int64))
    assert acc.counts == hard + one
    assert acc.counts.ignored == 17
    assert acc.n_images == 4
    assert acc.ids == ["a.png", "b.png", "c.png", "3"]
    assert acc.class_names == ["bg", "road", "car", "sky"]
    assert acc.ignore_index == 255
    assert (acc.per_image, acc.soft, acc.class_axis) == (True, False, None)
    totals = Accumulator.load(DATA / "accumulator_soft_totals_v1.npz")
    assert (totals.per_image, totals.soft, totals.n_images) == (False, True, 3)
    assert totals.counts == golden_counts(True).total()
    for old in (acc, totals):  # saved again by this fastseg, they read back the same
        old.save(tmp_path / "again.npz")
        assert Accumulator.load(tmp_path / "again.npz") == old


def test_save_writes_exactly_the_path_given(tmp_path):
    acc = Accumulator(2).add_counts(fastseg.Counts(np.ones((1, 2), np.int64),
                                                   np.ones((1, 2), np.int64),
                                                   np.ones((1, 2), np.int64),
                                                   np.eye(2, dtype=np.int64)))  # fmt: skip
    acc.save(tmp_path / "run")
    assert [p.name for p in tmp_path.iterdir()] == ["run"]
    assert Accumulator.load(tmp_path / "run") == acc


@pytest.mark.parametrize("how", DAMAGES)
def test_a_damaged_or_foreign_accumulator_is_a_value_error_naming_it(tmp_path, damaged, how):
    good = tmp_path / "good.npz"
    Accumulator.load(DATA / "accumulator_hard_v1.npz").save(good)
    path = damaged(good, how)
    with pytest.raises(ValueError, match="accumulator file") as info:
        Accumulator.load(path)
    assert str(path) in str(info.value)
    assert type(info.value) is ValueError


def _resaved(tmp_path, source, change):
    with np.load(source) as f:
        arrays = dict(f)
    change(arrays)
    path = tmp_path / "changed.npz"
    with path.open("wb") as f:
        np.savez(f, **arrays)
    return path


@pytest.mark.parametrize("name", ["tp", "pred", "true", "confusion"])
def test_hard_counts_stored_as_floats_are_refused(tmp_path, name):
    def as_float(arrays):
        arrays[name] = arrays[name].astype(np.float64)

    path = _resaved(tmp_path, DATA / "accumulator_hard_v1.npz", as_float)
    what = "confusion matrix" if name == "confusion" else f"hard counts with {name}"
    with pytest.raises(ValueError, match=f"corrupt fastseg accumulator file: {what} of dtype "
                                         "float64"):  # fmt: skip
        Accumulator.load(path)


@pytest.mark.parametrize("name", ["tp", "pred", "true"])
def test_soft_sums_stored_as_integers_are_refused(tmp_path, name):
    def as_int(arrays):
        arrays[name] = arrays[name].astype(np.int64)

    path = _resaved(tmp_path, DATA / "accumulator_soft_totals_v1.npz", as_int)
    with pytest.raises(ValueError, match=f"soft counts with {name} of dtype int64"):
        Accumulator.load(path)

    def with_confusion(arrays):
        arrays["confusion"] = np.zeros((4, 4), np.int64)

    path = _resaved(tmp_path, DATA / "accumulator_soft_totals_v1.npz", with_confusion)
    with pytest.raises(ValueError, match="soft sums with a confusion matrix"):
        Accumulator.load(path)


def test_metadata_that_disagrees_is_refused(tmp_path):
    import json

    def meta(change):
        def edit(arrays):
            m = json.loads(str(arrays["meta"]))
            change(m)
            arrays["meta"] = np.array(json.dumps(m))

        return edit

    source = DATA / "accumulator_hard_v1.npz"
    cases = [
        (meta(lambda m: m.pop("n_images")), r"bad metadata \(KeyError: 'n_images'\)"),
        (meta(lambda m: m.update(n_images=-2)), r"n_images is -2"),
        (meta(lambda m: m.update(num_classes=5, class_names=None)),
         r"arrays and metadata disagree: counts of shape \(4, 4\) for 5 classes"),
        (meta(lambda m: m.update(ignored="many")), "ignored pixels 'many' is not a count"),
        (lambda a: a.update(ids=a["ids"][:2]), "bad ids"),
        (lambda a: a.pop("named"), "bad ids"),
        (lambda a: a.pop("confusion"), "hard counts without their confusion matrix"),
    ]
    for change, message in cases:
        path = _resaved(tmp_path, source, change)
        with pytest.raises(ValueError, match=message):
            Accumulator.load(path)


def test_an_accumulator_file_whose_counts_start_after_image_0_is_refused(tmp_path):
    import json

    def moved(arrays):
        m = json.loads(str(arrays["meta"]))
        arrays["meta"] = np.array(json.dumps({**m, "b0": 2}))

    path = _resaved(tmp_path, DATA / "accumulator_hard_v1.npz", moved)
    with pytest.raises(ValueError, match="corrupt fastseg accumulator file: counts from image 2"):
        Accumulator.load(path)


def test_updates_and_merges_place_rows_after_the_images_so_far():
    rng = np.random.default_rng(9)
    truth, scores = _batch(rng, b=5)
    acc = Accumulator(4, ignore_index=255).update(truth[:2], scores[:2])
    moved = fastseg.counts(truth[2:], scores[2:], ignore_index=255).starting_at(40)
    acc.add_counts(moved)  # whatever image its rows started at: appended
    assert acc.counts == fastseg.counts(truth, scores, ignore_index=255)
    assert acc.counts.first_image == 0


def test_pending_confusion_matrices_are_folded_so_memory_does_not_grow_with_updates():
    n = 1500  # one confusion matrix is 18 MB, above PENDING_BYTES
    rng = np.random.default_rng(5)
    acc = Accumulator(n)
    truths, preds = [], []
    for _ in range(5):
        t = rng.integers(0, n, (1, 8, 8))
        p = rng.integers(0, n, (1, 8, 8))
        truths.append(t)
        preds.append(p)
        acc.update(t, p)
        assert len(acc._parts) <= 2
    t, p = np.concatenate(truths), np.concatenate(preds)
    expected = np.bincount(t.ravel() * n + p.ravel(), minlength=n * n).reshape(n, n)
    np.testing.assert_array_equal(acc.counts.confusion, expected)
    assert acc.counts.tp.shape == (5, n)


def test_compute_names_a_keyword_it_does_not_take():
    """Reading options belong to the Accumulator: compute() refuses them by name."""
    rng = np.random.default_rng(3)
    truth = rng.integers(0, 3, (2, 8, 8))
    pred = np.where(rng.random((2, 8, 8)) < 0.7, truth, rng.integers(0, 3, (2, 8, 8)))
    acc = Accumulator(3).update(truth, pred)
    with pytest.raises(TypeError, match="unexpected keyword argument 'ignore_index'"):
        acc.compute(ignore_index=255)
    # the policy keywords still reach the report
    assert acc.compute(exclude=[0]).miou == pytest.approx(np.mean(acc.compute().iou[1:]))

"""The Counts value: merging, totals, union, saving and loading."""

from __future__ import annotations

import errno
import itertools
import json
import re

import dask.array as da
import numpy as np
import pytest
from damaged_files import DAMAGES, DATA, golden_counts
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastseg
from fastseg import Counts
from fastseg.counts import FORMAT_VERSION, load_versioned, save_versioned
from fastseg.dataset import plan
from fastseg.stream import Accumulator


def hard(seed=0, b=2, n=3, ignored=0):
    rng = np.random.default_rng(seed)
    tp = rng.integers(0, 5, (b, n))
    pred = tp + rng.integers(0, 5, (b, n))
    true = tp + rng.integers(0, 5, (b, n))
    confusion = rng.integers(0, 9, (n, n))
    return Counts(tp, pred, true, confusion, ignored)


def soft(seed=0, b=2, n=3):
    rng = np.random.default_rng(seed)
    tp = rng.random((b, n))
    return Counts(tp, tp + rng.random((b, n)), tp + rng.random((b, n)))


def test_add_concatenates_images_and_adds_confusion():
    a, b = hard(0, b=2, ignored=3), hard(1, b=1, ignored=4)
    c = a + b
    assert c.n_images == 3
    assert c.num_classes == 3
    np.testing.assert_array_equal(c.tp, np.vstack([a.tp, b.tp]))
    np.testing.assert_array_equal(c.pred, np.vstack([a.pred, b.pred]))
    np.testing.assert_array_equal(c.true, np.vstack([a.true, b.true]))
    np.testing.assert_array_equal(c.confusion, a.confusion + b.confusion)
    assert c.ignored == 7
    # Operands are left alone.
    assert a == hard(0, b=2, ignored=3)
    assert b == hard(1, b=1, ignored=4)


def test_add_soft():
    a, b = soft(0), soft(1, b=3)
    c = a + b
    assert c.soft
    assert c.confusion is None
    assert c.n_images == 5
    np.testing.assert_array_equal(c.tp, np.vstack([a.tp, b.tp]))


def test_add_is_associative():
    a, b, c = hard(0), hard(1, b=1), hard(2, b=3)
    assert (a + b) + c == a + (b + c)


def test_merging_hard_and_soft_raises():
    with pytest.raises(ValueError, match=r"cannot merge counts of 3 classes \(hard\).*\(soft\)"):
        hard() + soft()
    with pytest.raises(ValueError, match=r"\(soft\).*\(hard\)"):
        soft() + hard()


def test_merging_different_class_counts_raises():
    with pytest.raises(ValueError, match=r"cannot merge counts of 3 classes.*4 classes"):
        hard(n=3) + hard(n=4)


def test_add_other_types():
    with pytest.raises(TypeError):
        hard() + 1
    with pytest.raises(TypeError):
        hard() + np.zeros((2, 3))  # not broadcast: Counts is not an array


def test_equality():
    assert hard(0) == hard(0)
    assert hard(0) != hard(1)
    assert hard(0, ignored=1) != hard(0, ignored=2)
    assert soft(0) == soft(0)
    assert hard(0) != Counts(hard(0).tp, hard(0).pred, hard(0).true)  # confusion missing
    assert hard(0) != "counts"
    assert (hard(0) == 1) is False
    with pytest.raises(TypeError):
        hash(hard(0))


def test_total():
    a = hard(0, b=4, ignored=5)
    t = a.total()
    assert t.n_images == 1
    np.testing.assert_array_equal(t.tp, a.tp.sum(0, keepdims=True))
    np.testing.assert_array_equal(t.pred, a.pred.sum(0, keepdims=True))
    np.testing.assert_array_equal(t.true, a.true.sum(0, keepdims=True))
    np.testing.assert_array_equal(t.confusion, a.confusion)
    assert t.ignored == 5
    assert t.total() == t


def test_total_of_real_counts_matches_confusion():
    rng = np.random.default_rng(3)
    scores = rng.standard_normal((3, 10, 12, 4)).astype(np.float32)
    truth = rng.integers(0, 4, (3, 10, 12))
    t = fastseg.counts(truth, scores).total()
    np.testing.assert_array_equal(t.tp[0], np.diag(t.confusion))
    np.testing.assert_array_equal(t.true[0], t.confusion.sum(1))
    np.testing.assert_array_equal(t.pred[0], t.confusion.sum(0))


def test_union():
    c = Counts(np.array([[1, 0, 2]]), np.array([[3, 0, 2]]), np.array([[2, 0, 5]]))
    np.testing.assert_array_equal(c.union, [[4, 0, 5]])
    s = Counts(np.array([[0.5]]), np.array([[1.0]]), np.array([[0.75]]))
    np.testing.assert_array_equal(s.union, [[1.25]])


def test_properties():
    assert not hard().soft
    assert soft().soft
    assert hard(n=5, b=7).num_classes == 5
    assert hard(n=5, b=7).n_images == 7


def test_shape_validation():
    z = np.zeros((2, 3), np.int64)
    with pytest.raises(ValueError, match="must share one"):
        Counts(z, np.zeros((2, 4), np.int64), z)
    with pytest.raises(ValueError, match="must share one"):
        Counts(np.zeros(3), np.zeros(3), np.zeros(3))
    with pytest.raises(ValueError, match=r"confusion must be \(3, 3\); got \(2, 2\)"):
        Counts(z, z, z, np.zeros((2, 2), np.int64))


@pytest.mark.parametrize(
    "make", [lambda: hard(5, ignored=11), lambda: soft(5)], ids=["hard", "soft"]
)
def test_save_load_round_trip(tmp_path, make):
    c = make()
    path = tmp_path / "counts.npz"
    c.save(path)
    loaded = Counts.load(path)
    assert loaded == c
    assert loaded.ignored == c.ignored
    assert loaded.soft == c.soft
    for a, b in ((loaded.tp, c.tp), (loaded.pred, c.pred), (loaded.true, c.true)):
        assert a.dtype == b.dtype
    assert (loaded.confusion is None) == (c.confusion is None)
    # str paths work too.
    c.save(str(tmp_path / "again.npz"))
    assert Counts.load(str(tmp_path / "again.npz")) == c


def test_save_load_real_counts(tmp_path):
    rng = np.random.default_rng(4)
    scores = rng.standard_normal((2, 8, 8, 3)).astype(np.float32)
    truth = rng.integers(0, 4, (2, 8, 8))
    c = fastseg.counts(truth, scores, ignore_index=3)
    c.save(tmp_path / "c.npz")
    assert Counts.load(tmp_path / "c.npz") == c


def test_load_of_another_npz_raises(tmp_path):
    path = tmp_path / "other.npz"
    np.savez(path, tp=np.zeros((1, 2)), x=np.arange(3))
    with pytest.raises(ValueError, match="is not a fastseg counts file"):
        Counts.load(path)


def test_load_of_wrong_format_raises(tmp_path):
    path = tmp_path / "wrong.npz"
    z = np.zeros((1, 2))
    meta = json.dumps({"format": "something.else", "version": FORMAT_VERSION, "ignored": 0})
    np.savez(path, tp=z, pred=z, true=z, meta=np.array(meta))
    with pytest.raises(ValueError, match="unsupported counts format"):
        Counts.load(path)
    meta = json.dumps({"format": "fastseg.counts", "version": FORMAT_VERSION + 1, "ignored": 0})
    np.savez(path, tp=z, pred=z, true=z, meta=np.array(meta))
    with pytest.raises(ValueError, match="unsupported counts format"):
        Counts.load(path)


def test_load_of_a_non_npz_file_raises(tmp_path):
    path = tmp_path / "text.npz"
    path.write_text("not a zip file")
    with pytest.raises(ValueError, match="is not a fastseg counts file"):
        Counts.load(path)
    with pytest.raises(ValueError, match="is not a fastseg counts file"):
        Counts.load(tmp_path / "missing.npz")


# ----------------------------------------------------- files: names, damage, versions

@pytest.mark.parametrize("soft", [False, True], ids=["hard", "soft"])
def test_golden_version_1_files_still_load(soft):
    name = "counts_soft_v1.npz" if soft else "counts_hard_v1.npz"
    loaded = Counts.load(DATA / name)
    expected = golden_counts(soft)
    assert loaded == expected
    assert loaded.ignored == expected.ignored
    assert loaded.soft is soft
    assert loaded.tp.dtype == (np.float64 if soft else np.int64)


def test_save_writes_exactly_the_path_given(tmp_path):
    c = hard(6, ignored=2)
    for name in ("x", "counts.bin", "c.npz"):
        c.save(tmp_path / name)
        assert Counts.load(tmp_path / name) == c
        c.save(str(tmp_path / name))
        assert Counts.load(str(tmp_path / name)) == c
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.npz", "counts.bin", "x"]


def test_a_failed_save_keeps_the_earlier_file(tmp_path, monkeypatch):
    path = tmp_path / "counts.npz"
    hard(1).save(path)
    before = path.read_bytes()

    def full(file, **arrays):
        file.write(b"PK\x03\x04 partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "savez", full)
    with pytest.raises(OSError, match="No space left on device") as info:
        hard(2).save(path)
    assert info.value.errno == errno.ENOSPC
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["counts.npz"]


@pytest.mark.parametrize("how", DAMAGES)
def test_a_damaged_or_foreign_file_is_a_value_error_naming_it(tmp_path, damaged, how):
    good = tmp_path / "good.npz"
    hard(3).save(good)
    path = damaged(good, how)
    with pytest.raises(ValueError, match="counts file") as info:
        Counts.load(path)
    message = str(info.value)
    assert str(path) in message
    expected = {
        "truncated": "truncated or damaged",
        "random bytes": r"not an \.npz \(zip\) archive",
        "empty": "the file is empty",
        "corrupted": "truncated or damaged",
        "other program's npz": r"no 'meta' entry \(an \.npz holding tp, weights\)",
        "npy": r"not an \.npz \(zip\) archive",
        "meta not JSON": "'meta' entry is not fastseg metadata",
        "meta not an object": "metadata is list, not a JSON object",
        "missing": r"cannot be read \(No such file or directory\)",
        "directory": r"cannot be read \(Is a directory\)",
    }[how]
    assert re.search(expected, message), message
    # Never the exception of the layer below.
    assert type(info.value) is ValueError


def test_counts_whose_arrays_disagree_are_refused(tmp_path):
    c = hard(4)
    path = tmp_path / "c.npz"
    cases = {
        "hard counts with pred of dtype float64": {
            "tp": c.tp, "pred": c.pred.astype(float), "true": c.true, "confusion": c.confusion
        },
        "confusion matrix of dtype float64": {
            "tp": c.tp, "pred": c.pred, "true": c.true, "confusion": c.confusion.astype(float)
        },
        r"array\(s\) true missing": {"tp": c.tp, "pred": c.pred},
        "must share one": {"tp": c.tp, "pred": c.pred[:1], "true": c.true},
    }
    for message, arrays in cases.items():
        save_versioned(path, "fastseg.counts", FORMAT_VERSION, {"ignored": 0}, arrays)
        with pytest.raises(ValueError, match=f"{re.escape(str(path))} is a corrupt fastseg "
                                             f"counts file: .*{message}"):  # fmt: skip
            Counts.load(path)
    s = soft(4)
    save_versioned(path, "fastseg.counts", FORMAT_VERSION, {"ignored": 0, "soft": False},
                   {"tp": s.tp, "pred": s.pred, "true": s.true})  # fmt: skip
    with pytest.raises(ValueError, match="hard counts with tp of dtype float64"):
        Counts.load(path)
    save_versioned(path, "fastseg.counts", FORMAT_VERSION, {"ignored": -1},
                   {"tp": c.tp, "pred": c.pred, "true": c.true})  # fmt: skip
    with pytest.raises(ValueError, match="ignored pixels -1 is not a count"):
        Counts.load(path)


def test_versioned_files_round_trip_and_name_their_problems(tmp_path):
    path = tmp_path / "thing"
    arrays = {"a": np.arange(4), "b": np.eye(2)}
    assert save_versioned(path, "fastseg.thing", 3, {"x": [1, "y"]}, arrays) == path
    meta, loaded = load_versioned(path, "fastseg.thing", (2, 3), what="thing")
    assert meta == {"format": "fastseg.thing", "version": 3, "x": [1, "y"]}
    assert loaded.keys() == arrays.keys()
    np.testing.assert_array_equal(loaded["b"], np.eye(2))
    with pytest.raises(ValueError, match=r"is not a fastseg other file: unsupported other "
                                         r"format \(format 'fastseg.thing'; expected "
                                         r"'fastseg.other'\)"):  # fmt: skip
        load_versioned(path, "fastseg.other", (3,), what="other")
    with pytest.raises(ValueError, match=r"has unsupported thing format version 3; this "
                                         r"fastseg reads version 1, 2; it was written by a "
                                         r"newer fastseg: upgrade fastseg"):  # fmt: skip
        load_versioned(path, "fastseg.thing", (1, 2), what="thing")
    with pytest.raises(ValueError, match=r"version 3; this fastseg reads version 4$"):
        load_versioned(path, "fastseg.thing", (4,), what="thing")
    with pytest.raises(ValueError, match="reserved"):
        save_versioned(path, "fastseg.thing", 1, {}, {"meta": np.arange(2)})


# ------------------------------------------------------- the one merge: Counts.merge


def _cuts(data, length):
    """Sorted edges that split ``range(length)`` into consecutive pieces (at least one)."""
    inner = data.draw(st.sets(st.integers(1, length - 1), max_size=3)) if length > 1 else set()
    return [0, *sorted(inner), length]


def _merge_in_a_random_tree(data, parts):
    """`parts` merged by a random tree: groups of consecutive parts, merged level by level."""
    if len(parts) == 1:
        return parts[0]
    cuts = sorted(data.draw(st.sets(st.integers(1, len(parts) - 1), max_size=4)))
    if not cuts:
        return Counts.merge(parts)
    edges = [0, *cuts, len(parts)]
    return Counts.merge([_merge_in_a_random_tree(data, parts[a:b])
                         for a, b in itertools.pairwise(edges)])  # fmt: skip


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**16),
    shape=st.tuples(st.integers(1, 4), st.integers(1, 6), st.integers(1, 5)),
    soft=st.booleans(),
    data=st.data(),
)
def test_merging_any_split_in_any_order_and_tree_equals_counting_the_whole(seed, shape, soft, data):
    """Blocks of images and of parts of images, counted apart, merge into the whole's counts."""
    n = 4
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, n, shape).astype(np.uint8)
    truth[rng.random(shape) < 0.2] = 255
    scores = rng.random((*shape, n)).astype(np.float32)
    whole = fastseg.counts(truth, scores, ignore_index=255, soft=soft)
    parts = []
    for edges in itertools.product(*(itertools.pairwise(_cuts(data, k)) for k in shape)):
        block = tuple(slice(a, b) for a, b in edges)
        c = fastseg.counts(truth[block].copy(), scores[block].copy(), ignore_index=255, soft=soft)
        parts.append(c.starting_at(edges[0][0]))
    parts = data.draw(st.permutations(parts))
    merged = _merge_in_a_random_tree(data, parts)
    assert merged.first_image == 0
    assert merged.n_images == shape[0]
    if soft:  # the same sums, added in another order
        assert merged.confusion is None
        assert merged.ignored == whole.ignored
        for a, b in ((merged.tp, whole.tp), (merged.pred, whole.pred), (merged.true, whole.true)):
            np.testing.assert_allclose(a, b, rtol=1e-12)
    else:
        assert merged == whole


@settings(max_examples=100, deadline=None)
@given(
    rows=st.lists(st.tuples(st.integers(0, 6), st.integers(0, 3)), min_size=1, max_size=8),
    soft=st.booleans(),
    data=st.data(),
)
def test_merge_places_rows_by_first_image_in_any_order_and_tree(rows, soft, data):
    """Exact even for soft sums: the values are multiples of 1/8, whose sums are exact."""
    n = 3
    rng = np.random.default_rng(len(rows))
    parts = []
    for first, count in rows:
        tp, pred, true = (rng.integers(0, 9, (count, n)) for _ in range(3))
        if soft:
            tp, pred, true = tp / 8, pred / 8, true / 8
        confusion = None if soft else rng.integers(0, 9, (n, n))
        parts.append(Counts(tp=tp, pred=pred, true=true, confusion=confusion,
                            ignored=int(rng.integers(0, 5)), first_image=first))  # fmt: skip
    start = min(f for f, _ in rows)
    stop = max(f + c for f, c in rows)
    expected = {k: np.zeros((stop - start, n)) for k in ("tp", "pred", "true")}
    for p in parts:
        for k in expected:
            expected[k][p.first_image - start : p.first_image - start + p.n_images] += getattr(p, k)
    merged = _merge_in_a_random_tree(data, data.draw(st.permutations(parts)))
    assert merged.first_image == start
    assert merged.n_images == stop - start
    assert merged.soft == soft
    for k, v in expected.items():
        np.testing.assert_array_equal(getattr(merged, k), v)
    assert merged.ignored == sum(p.ignored for p in parts)
    if soft:
        assert merged.confusion is None
    else:
        np.testing.assert_array_equal(merged.confusion, sum(p.confusion for p in parts))
    assert merged == Counts.merge(parts)  # flat, in the order given


def test_merge_fills_gaps_with_zero_rows_and_copies():
    a = hard(0, b=2, ignored=1).starting_at(5)
    b = hard(1, b=1, ignored=2).starting_at(1)
    m = Counts.merge([a, b])
    assert (m.first_image, m.n_images, m.ignored) == (1, 6, 3)
    np.testing.assert_array_equal(m.tp[0], b.tp[0])
    np.testing.assert_array_equal(m.tp[1:4], 0)
    np.testing.assert_array_equal(m.tp[4:], a.tp)
    np.testing.assert_array_equal(m.confusion, a.confusion + b.confusion)
    one = Counts.merge([a])  # a merge of one part is a copy
    assert one == a
    assert not np.shares_memory(one.tp, a.tp)
    assert not np.shares_memory(one.confusion, a.confusion)
    # A part without a confusion matrix: the merge has none (as with +).
    bare = Counts(a.tp, a.pred, a.true, first_image=7)
    assert Counts.merge([a, bare]).confusion is None


def test_merge_refuses_nothing_and_mismatched_parts():
    with pytest.raises(ValueError, match="nothing to merge"):
        Counts.merge([])
    with pytest.raises(ValueError, match=r"cannot merge counts of 3 classes \(hard\).*\(soft\)"):
        Counts.merge([hard(), hard(1), soft()])
    with pytest.raises(ValueError, match=r"3 classes.*4 classes"):
        Counts.merge([hard(n=3), hard(n=4)])
    with pytest.raises(TypeError, match="only Counts merge with Counts; got ndarray"):
        Counts.merge([hard(), np.zeros((2, 3))])


def test_add_is_the_merge_with_the_right_operand_after_the_left():
    a, b = hard(0, b=2, ignored=3).starting_at(4), hard(1, b=3).starting_at(9)
    c = a + b
    assert c == Counts.merge([a, b.starting_at(6)])
    assert (c.first_image, c.n_images) == (4, 5)
    np.testing.assert_array_equal(c.tp, np.vstack([a.tp, b.tp]))


def test_first_image_is_a_keyword_checked_compared_and_saved(tmp_path):
    c = hard(0)
    assert c.first_image == 0
    moved = c.starting_at(3)
    assert moved.first_image == 3
    assert moved.tp is c.tp  # arrays shared
    assert moved != c
    assert Counts(c.tp, c.pred, c.true, c.confusion, first_image=np.int64(2)).first_image == 2
    with pytest.raises(TypeError):
        Counts(c.tp, c.pred, c.true, c.confusion, 0, 3)  # keyword only
    for bad in (-1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="first_image must be an image index"):
            c.starting_at(bad)
    moved.save(tmp_path / "moved.npz")
    assert Counts.load(tmp_path / "moved.npz") == moved
    with np.load(tmp_path / "moved.npz") as f:
        assert json.loads(str(f["meta"]))["b0"] == 3
    c.save(tmp_path / "c.npz")  # at image 0: the version-1 layout, no b0 entry
    with np.load(tmp_path / "c.npz") as f:
        assert set(json.loads(str(f["meta"]))) == {"format", "version", "ignored", "soft"}
    arrays = {"tp": c.tp, "pred": c.pred, "true": c.true}
    save_versioned(tmp_path / "bad.npz", "fastseg.counts", FORMAT_VERSION,
                   {"ignored": 0, "b0": -2}, arrays)  # fmt: skip
    with pytest.raises(ValueError, match="corrupt fastseg counts file: first_image must be"):
        Counts.load(tmp_path / "bad.npz")


def test_zeros():
    z = Counts.zeros(3, 4)
    assert (z.n_images, z.num_classes, z.first_image, z.ignored, z.soft) == (3, 4, 0, 0, False)
    assert z.tp.dtype == z.confusion.dtype == np.int64
    assert not z.tp.any()
    assert not z.confusion.any()
    s = Counts.zeros(0, 2, soft=True, first_image=5)
    assert (s.n_images, s.first_image, s.soft, s.confusion) == (0, 5, True, None)
    assert s.tp.dtype == np.float64


def test_plus_the_accumulator_and_the_dask_plan_all_merge_through_counts_merge(monkeypatch):
    real = Counts.merge.__func__
    calls = []

    def spy(cls, parts):
        parts = list(parts)
        calls.append(len(parts))
        return real(cls, parts)

    monkeypatch.setattr(Counts, "merge", classmethod(spy))
    rng = np.random.default_rng(8)
    truth = rng.integers(0, 4, (6, 8, 6)).astype(np.uint8)
    scores = rng.random((6, 8, 6, 4)).astype(np.float32)
    whole = fastseg.counts(truth, scores)
    calls.clear()

    # Counts: +
    assert fastseg.counts(truth[:2], scores[:2]) + fastseg.counts(truth[2:], scores[2:]) == whole
    assert calls == [2]
    # The Accumulator: update (merged when read), +=, +, and per_image=False totals
    calls.clear()
    acc = Accumulator(4).update(truth[:3], scores[:3]).update(truth[3:], scores[3:])
    assert acc.counts == whole
    assert calls == [3]  # the empty start and the two batches, merged once
    calls.clear()
    other = Accumulator(4).update(truth[:1], scores[:1])
    other += Accumulator(4).update(truth[1:], scores[1:])
    assert other.counts == whole
    assert calls
    assert all(k >= 2 for k in calls)
    calls.clear()
    assert (Accumulator(4).update(truth[:4], scores[:4]) + Accumulator(4).update(
        truth[4:], scores[4:])).counts == whole  # fmt: skip
    assert calls
    calls.clear()
    totals = Accumulator(4, per_image=False)
    for b in range(6):
        totals.update(truth[b : b + 1], scores[b : b + 1])
    assert totals.counts == whole.total()
    assert calls == [2] * 6
    # The Dask plan: blocks that split images, merged by the plan's tree
    calls.clear()
    p = plan(truth, da.from_array(scores, chunks=(4, 3, 6, 4)), num_classes=4, ignore_index=None)
    merged = p.root.compute(scheduler="sync")
    assert merged == whole
    assert sum(calls) == len(p.parts) == 6

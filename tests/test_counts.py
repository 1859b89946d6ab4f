"""The Counts value: merging, totals, union, saving and loading."""

from __future__ import annotations

import errno
import json
import re

import numpy as np
import pytest
from conftest import DAMAGES, DATA, golden_counts

import fastseg
from fastseg import Counts
from fastseg.counts import FORMAT_VERSION, load_versioned, save_versioned


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


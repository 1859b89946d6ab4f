"""Out-of-core evaluation: Zarr / Dask inputs give the in-memory counts, faults are caught."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import dask
import dask.array as da
import numcodecs
import numpy as np
import pytest
import zarr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastseg
from fastseg.dataset import MissingChunksError, plan
from fastseg.stores import ChunkReadError
from fastseg.stream import Accumulator

N = 5


def _data(seed=0, b=6, h=24, w=20, n=N, dtype=np.float16):
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, n, (b, h, w)).astype(np.uint8)
    truth[:, :2] = 255
    scores = rng.random((b, h, w, n)).astype(dtype)
    return truth, scores


def _store(path, truth, scores, *, pred_chunks, true_chunks, zarr_format=3):
    g = zarr.open_group(path, mode="w", zarr_format=zarr_format)
    config = {"write_empty_chunks": True}
    p = g.create_array("pred", shape=scores.shape, dtype=scores.dtype, chunks=pred_chunks,
                       config=config)  # fmt: skip
    p[:] = scores
    t = g.create_array("true", shape=truth.shape, dtype=truth.dtype, chunks=true_chunks,
                       config=config)  # fmt: skip
    t[:] = truth
    return path


def _counts(pred, true, **kwargs):
    """The merged counts of an evaluation plan, computed on the synchronous scheduler."""
    kwargs.setdefault("ignore_index", 255)
    p = plan(true, pred, **kwargs)
    merged = p.root.compute(scheduler="sync")
    return fastseg.Counts(merged.tp, merged.pred, merged.true, merged.confusion, merged.ignored)


def _expected(truth, scores, **kwargs):
    kwargs.setdefault("ignore_index", 255)
    return fastseg.counts(truth, scores, **kwargs)


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_zarr_store_gives_the_in_memory_counts(tmp_path, zarr_format):
    truth, scores = _data()
    # Prediction chunks split every image in four; truth is chunked differently.
    path = _store(tmp_path / "ds.zarr", truth, scores, pred_chunks=(2, 12, 10, N),
                  true_chunks=(3, 24, 7), zarr_format=zarr_format)  # fmt: skip
    assert _counts(str(path), str(path)) == _expected(truth, scores)


def test_group_members_arrays_and_zip_stores_are_all_accepted(tmp_path):
    truth, scores = _data(1)
    path = _store(tmp_path / "ds.zarr", truth, scores, pred_chunks=(2, 24, 20, N),
                  true_chunks=(2, 24, 20))  # fmt: skip
    expected = _expected(truth, scores)
    group = zarr.open_group(path, mode="r")
    assert _counts(group["pred"], group["true"]) == expected
    assert _counts(group, group) == expected
    assert _counts(path, path, pred_array="pred", true_array="true") == expected
    store = zarr.storage.ZipStore(tmp_path / "ds.zip", mode="w")
    z = zarr.open_group(store, mode="w")
    z.create_array("pred", data=scores, chunks=(3, 24, 20, N))
    z.create_array("true", data=truth, chunks=(3, 24, 20))
    store.close()
    assert _counts(str(tmp_path / "ds.zip"), str(tmp_path / "ds.zip")) == expected


def test_numpy_and_dask_inputs(tmp_path):
    truth, scores = _data(2)
    expected = _expected(truth, scores)
    assert _counts(scores, truth) == expected
    assert _counts(da.from_array(scores, chunks=(4, 7, 20, N)), da.from_array(truth)) == expected


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    b=st.integers(1, 4),
    h=st.integers(1, 12),
    w=st.integers(1, 12),
    data=st.data(),
)
def test_any_chunking_gives_the_in_memory_counts(b, h, w, data):
    rng = np.random.default_rng(b * 1000 + h * 13 + w)
    truth = rng.integers(0, N, (b, h, w)).astype(np.int16)
    truth[rng.random(truth.shape) < 0.1] = 255
    scores = rng.standard_normal((b, h, w, N)).astype(np.float32)
    chunk = st.integers(1, 12)
    pc = (data.draw(st.integers(1, b)), data.draw(chunk), data.draw(chunk), N)
    tc = (data.draw(st.integers(1, b)), data.draw(chunk), data.draw(chunk))
    got = _counts(da.from_array(scores, chunks=pc), da.from_array(truth, chunks=tc))
    assert got == _expected(truth, scores)


def test_layouts_volumes_one_hot_and_label_predictions():
    truth, scores = _data(3, dtype=np.float32)
    first = np.moveaxis(scores, -1, 1).copy()
    assert _counts(da.from_array(first, chunks=(2, N, 12, 5)), truth, class_axis=1) == _expected(
        truth, first, class_axis=1)  # fmt: skip
    clean = np.where(truth == 255, 0, truth)
    one_hot = np.eye(N, dtype=np.float32)[clean]
    assert _counts(da.from_array(scores, chunks=(2, 5, 5, N)), one_hot, ignore_index=None) == (
        _expected(clean, scores, ignore_index=None))  # fmt: skip
    labels = scores.argmax(-1).astype(np.uint8)
    assert _counts(da.from_array(labels, chunks=(1, 7, 7)), truth, num_classes=N) == _expected(
        truth, labels, num_classes=N)  # fmt: skip
    rng = np.random.default_rng(4)
    vol = rng.random((2, 6, 5, 4, N))
    vtruth = rng.integers(0, N, (2, 6, 5, 4))
    assert _counts(da.from_array(vol, chunks=(1, 3, 5, 2, N)), vtruth) == _expected(vtruth, vol)


def test_soft_sums_match_in_memory():
    truth, scores = _data(5, dtype=np.float32)
    got = _counts(da.from_array(scores, chunks=(2, 12, 10, N)), truth, soft=True)
    exp = _expected(truth, scores, soft=True)
    np.testing.assert_allclose(got.tp, exp.tp, rtol=1e-12)
    np.testing.assert_allclose(got.pred, exp.pred, rtol=1e-12)
    np.testing.assert_array_equal(got.true, exp.true)


def test_class_axis_split_over_chunks_is_rechunked_with_a_warning(caplog):
    truth, scores = _data(6)
    with caplog.at_level(logging.WARNING, logger="fastseg"):
        got = _counts(da.from_array(scores, chunks=(2, 24, 20, 2)), truth)
    assert got == _expected(truth, scores)
    assert "chunked along its class axis" in caplog.text


def test_nothing_is_computed_while_the_plan_is_built(tmp_path):
    truth, scores = _data(7)
    calls = []

    def load(block):
        calls.append(block)
        return block

    meta = np.empty((0,) * 4, scores.dtype)
    lazy = da.from_array(scores, chunks=(2, 12, 10, N)).map_blocks(load, meta=meta)
    with dask.callbacks.Callback(start=lambda dsk, state: calls.append("compute")):
        p = plan(truth, lazy, ignore_index=255)
    assert calls == []
    merged = p.root.compute(scheduler="sync")
    assert len(calls) > 0
    assert merged.tp.sum() == _expected(truth, scores).tp.sum()


@pytest.mark.parametrize(
    ("pred_shape", "true_shape", "match"),
    [
        ((4, 8, 8, N), (4, 8, 9), "shapes do not fit"),
        ((4, 8, 8, N), (3, 8, 8), "shapes do not fit"),
        ((4, 8, 8), (4, 8, 8), "pass num_classes"),
    ],
)
def test_shape_and_kind_errors_come_before_any_compute(pred_shape, true_shape, match):
    pred = da.zeros(pred_shape, dtype=np.float32 if len(pred_shape) == 4 else np.uint8)
    with pytest.raises(ValueError, match=match):
        plan(da.zeros(true_shape, dtype=np.uint8), pred)


def _chunk_file(path, array, key):
    return Path(path) / array / "c" / Path(*key.split("/"))


def test_missing_chunks_are_listed_before_computing(tmp_path):
    truth, scores = _data(8)
    path = _store(tmp_path / "ds.zarr", truth, scores, pred_chunks=(2, 12, 20, N),
                  true_chunks=(2, 24, 20))  # fmt: skip
    _chunk_file(path, "pred", "1/1/0/0").unlink()
    _chunk_file(path, "true", "2/0/0").unlink()
    with pytest.raises(MissingChunksError, match=r"pred .* lacks 1 chunk\(s\): \(1, 1, 0, 0\)"):
        plan(path, path, ignore_index=255)
    with pytest.raises(MissingChunksError, match=r"true .* lacks 1 chunk\(s\): \(2, 0, 0\)"):
        plan(path, path, ignore_index=255)


def test_missing_chunks_skip_evaluates_the_rest_and_says_so(tmp_path):
    truth, scores = _data(9)
    path = _store(tmp_path / "ds.zarr", truth, scores, pred_chunks=(2, 12, 20, N),
                  true_chunks=(2, 24, 20))  # fmt: skip
    _chunk_file(path, "pred", "1/1/0/0").unlink()
    p = plan(path, path, ignore_index=255, missing="skip")
    assert p.meta["complete"] is False
    assert p.meta["skipped_blocks"] == [[1, 1, 0, 0]]
    merged = p.root.compute(scheduler="sync")
    # Images 2-3 lost their bottom half; everything else is counted as in memory.
    kept = truth.copy()
    kept[2:4, 12:] = 255
    expected = _expected(kept, scores)
    np.testing.assert_array_equal(merged.tp, expected.tp)
    np.testing.assert_array_equal(merged.confusion, expected.confusion)


def test_missing_fill_reads_fill_values(tmp_path):
    truth, scores = _data(10)
    truth[4:] = 0  # an all-zero truth chunk: with write_empty_chunks=False it is not stored
    g = zarr.open_group(tmp_path / "ds.zarr", mode="w")
    g.create_array("pred", data=scores, chunks=(2, 24, 20, N))
    g.create_array("true", data=truth, chunks=(2, 24, 20), fill_value=0)
    with pytest.raises(MissingChunksError, match="missing='fill'"):
        plan(tmp_path / "ds.zarr", tmp_path / "ds.zarr", ignore_index=255)
    got = _counts(tmp_path / "ds.zarr", tmp_path / "ds.zarr", missing="fill")
    assert got == _expected(truth, scores)


def test_a_chunk_that_fails_to_decode_is_named(tmp_path):
    truth, scores = _data(11)
    path = _store(tmp_path / "ds.zarr", truth, scores, pred_chunks=(2, 12, 20, N),
                  true_chunks=(2, 24, 20))  # fmt: skip
    _chunk_file(path, "pred", "2/1/0/0").write_bytes(b"\x00garbage, not zstd")
    p = plan(path, path, ignore_index=255)
    with pytest.raises(ChunkReadError, match=r"chunk \(2, 1, 0, 0\) of pred"):
        p.root.compute(scheduler="sync")


def test_bad_labels_name_their_block():
    truth, scores = _data(12)
    truth[3, 5, 5] = 77
    p = plan(truth, da.from_array(scores, chunks=(2, 24, 20, N)), ignore_index=255)
    with pytest.raises(ValueError, match=r"block \(1, 0, 0, 0\) \(images 2-3\).*e\.g\. 77"):
        p.root.compute(scheduler="sync")


def test_string_dtypes_and_pickle_codecs_are_refused_before_decoding(tmp_path):
    text = zarr.create_array(tmp_path / "s.zarr", shape=(2, 2, 2), dtype=str)
    with pytest.raises(TypeError, match="numeric arrays only"):
        plan(np.zeros((2, 2), np.uint8), text, num_classes=2)
    pickled = zarr.create_array(tmp_path / "p.zarr", shape=(2, 2, 2, 2), dtype="f4",
                                zarr_format=2, filters=[numcodecs.Pickle()])  # fmt: skip
    with pytest.raises(TypeError, match=r"codec\(s\) \['pickle'\]"):
        plan(np.zeros((2, 2, 2), np.uint8), pickled)


def test_a_path_with_no_store_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="no Zarr array or group"):
        plan(tmp_path / "nothing.zarr", tmp_path / "nothing.zarr")


def test_a_group_with_several_arrays_needs_an_array_path(tmp_path):
    g = zarr.open_group(tmp_path / "g.zarr", mode="w")
    g.create_array("a", shape=(1, 2, 2, 2), dtype="f4")
    g.create_array("b", shape=(1, 2, 2, 2), dtype="f4")
    with pytest.raises(ValueError, match=r"arrays \['a', 'b'\]: say which holds the pred"):
        plan(np.zeros((1, 2, 2), np.uint8), tmp_path / "g.zarr")


# -------------------------------------------------------------------- checkpoints

_KILLER = textwrap.dedent(
    """
    import os, sys
    import fastseg.dataset as d
    real = d._count_block
    def dying(*args, **kwargs):
        out = real(*args, **kwargs)
        if len(os.listdir(os.path.join(sys.argv[2], "blocks"))) >= 3:
            os._exit(17)  # killed mid-run, after three blocks were saved
        return out
    d._count_block = dying
    d.evaluate(sys.argv[1], sys.argv[1], ignore_index=255, checkpoint=sys.argv[2],
               scheduler="sync", progress=False)
    """
)


@pytest.mark.slow
def test_killed_run_resumes_from_its_checkpoint(tmp_path, monkeypatch):
    truth, scores = _data(13, b=8)
    path = _store(tmp_path / "ds.zarr", truth, scores, pred_chunks=(1, 12, 20, N),
                  true_chunks=(2, 24, 20))  # fmt: skip
    ckpt = tmp_path / "ckpt"
    run = subprocess.run([sys.executable, "-c", _KILLER, str(path), str(ckpt)],
                         capture_output=True, text=True, timeout=600)  # fmt: skip
    assert run.returncode == 17, run.stderr
    saved = sorted((ckpt / "blocks").glob("*.npz"))
    assert len(saved) == 3
    assert not list((ckpt / "blocks").glob(".*"))  # no half-written file left

    import fastseg.dataset as d

    counted = []
    real = d._count_block

    def counting(*args, **kwargs):
        counted.append(args[2])
        return real(*args, **kwargs)

    monkeypatch.setattr(d, "_count_block", counting)
    p = plan(path, path, ignore_index=255, checkpoint=ckpt)
    assert p.meta["blocks_resumed"] == 3
    merged = p.root.compute(scheduler="sync")
    assert len(counted) == 16 - 3
    expected = _expected(truth, scores)
    np.testing.assert_array_equal(merged.tp, expected.tp)
    np.testing.assert_array_equal(merged.true, expected.true)
    np.testing.assert_array_equal(merged.confusion, expected.confusion)
    assert len(list((ckpt / "blocks").glob("*.npz"))) == 16


def test_checkpoint_of_other_inputs_or_options_is_refused(tmp_path):
    truth, scores = _data(14)
    path = _store(tmp_path / "ds.zarr", truth, scores, pred_chunks=(2, 24, 20, N),
                  true_chunks=(2, 24, 20))  # fmt: skip
    plan(path, path, ignore_index=255, checkpoint=tmp_path / "ck")
    with pytest.raises(ValueError, match="differs in: ignore_index"):
        plan(path, path, ignore_index=0, checkpoint=tmp_path / "ck")
    other = _store(tmp_path / "other.zarr", truth, scores, pred_chunks=(2, 24, 20, N),
                   true_chunks=(2, 24, 20))  # fmt: skip
    with pytest.raises(ValueError, match="differs in: pred, true"):
        plan(other, other, ignore_index=255, checkpoint=tmp_path / "ck")


# --------------------------------------------------------------- schedulers


def test_threads_and_sync_schedulers_agree():
    truth, scores = _data(15, b=9)
    p = plan(truth, da.from_array(scores, chunks=(2, 12, 10, N)), ignore_index=255)
    with dask.config.set(num_workers=2):
        threaded = p.root.compute(scheduler="threads")
    sync = p.root.compute(scheduler="sync")
    np.testing.assert_array_equal(threaded.tp, sync.tp)
    np.testing.assert_array_equal(threaded.confusion, sync.confusion)


@pytest.fixture(scope="module")
def cluster():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None) as lc, \
            distributed.Client(lc) as client:  # fmt: skip
        yield client


@pytest.mark.slow
def test_local_cluster_gives_bit_identical_counts(cluster, tmp_path):
    truth, scores = _data(16, b=8)
    path = _store(tmp_path / "ds.zarr", truth, scores, pred_chunks=(1, 12, 20, N),
                  true_chunks=(2, 24, 20))  # fmt: skip
    p = plan(path, path, ignore_index=255)
    merged = cluster.compute(p.root).result()
    expected = _expected(truth, scores)
    np.testing.assert_array_equal(merged.tp, expected.tp)
    np.testing.assert_array_equal(merged.confusion, expected.confusion)


@pytest.mark.slow
def test_a_worker_killed_mid_run_is_retried(cluster, tmp_path):
    truth, scores = _data(17, b=16)

    def slow(block):
        import time

        time.sleep(0.2)
        return block

    meta = np.empty((0,) * 4, scores.dtype)
    lazy = da.from_array(scores, chunks=(1, 24, 20, N)).map_blocks(slow, meta=meta)
    p = plan(truth, lazy, ignore_index=255)
    future = cluster.compute(p.root)
    import time

    time.sleep(1.0)
    pids = cluster.run(os.getpid)
    victim = sorted(pids)[0]
    assert not future.done()
    os.kill(pids[victim], 9)
    merged = future.result(timeout=300)
    expected = _expected(truth, scores)
    np.testing.assert_array_equal(merged.tp, expected.tp)
    np.testing.assert_array_equal(merged.confusion, expected.confusion)


def test_unknown_missing_policy():
    with pytest.raises(ValueError, match="missing must be one of"):
        plan(np.zeros((1, 2, 2), np.uint8), np.zeros((1, 2, 2, 2), np.float32), missing="maybe")


def test_accumulator_and_plan_agree_for_hard_counts():
    truth, scores = _data(18)
    acc = Accumulator(N, ignore_index=255).update(truth, scores)
    assert _counts(da.from_array(scores, chunks=(3, 5, 20, N)), truth) == acc.counts


def test_evaluate_report_equals_the_accumulator_report(tmp_path):
    truth, scores = _data(19)
    path = _store(tmp_path / "ds.zarr", truth, scores, pred_chunks=(2, 12, 10, N),
                  true_chunks=(3, 24, 20))  # fmt: skip
    got = fastseg.evaluate(path, path, ignore_index=255, progress=False).to_dict()
    expected = Accumulator(N, ignore_index=255).update(truth, scores).compute().to_dict()
    assert got.pop("meta")["blocks"] == 12
    expected.pop("meta")
    assert got == expected
    mmseg = fastseg.evaluate(path, path, ignore_index=255, progress=False, preset="mmseg",
                             per_image=False, workers=1)  # fmt: skip
    assert mmseg.miou == Accumulator(N, ignore_index=255).update(truth, scores).compute(
        "mmseg").miou  # fmt: skip


def test_evaluate_with_skipped_blocks_reports_incomplete(tmp_path):
    truth, scores = _data(20)
    path = _store(tmp_path / "ds.zarr", truth, scores, pred_chunks=(2, 24, 20, N),
                  true_chunks=(2, 24, 20))  # fmt: skip
    _chunk_file(path, "true", "1/0/0").unlink()
    report = fastseg.evaluate(path, path, ignore_index=255, missing="skip", progress=False)
    assert report.to_dict()["complete"] is False
    assert "INCOMPLETE" in str(report)
    assert report.to_dict()["meta"]["skipped_blocks"] == [[1, 0, 0, 0]]
    np.testing.assert_array_equal(report.counts.true[2:4], 0)


@pytest.mark.slow
def test_evaluate_takes_a_scheduler_address(cluster, tmp_path):
    truth, scores = _data(21, b=4)
    path = _store(tmp_path / "ds.zarr", truth, scores, pred_chunks=(1, 24, 20, N),
                  true_chunks=(2, 24, 20))  # fmt: skip
    address = cluster.scheduler.address
    assert address.startswith("tcp://127.0.0.1")
    remote = fastseg.evaluate(path, path, ignore_index=255, scheduler=address, progress=False)
    local = fastseg.evaluate(path, path, ignore_index=255, progress=False)
    assert remote.to_dict()["summary"] == local.to_dict()["summary"]
    assert remote.to_dict()["confusion_matrix"] == local.to_dict()["confusion_matrix"]


# ------------------------------------------------- options checked before any compute


@pytest.fixture
def no_compute(monkeypatch):
    """Make reaching the compute a test failure."""
    import fastseg.dataset as d

    def fail(*args, **kwargs):
        pytest.fail("the graph was computed although an option was bad")

    monkeypatch.setattr(d, "_compute", fail)


NAMES = ["sky", "road", "car", "tree", "void"]
LAST_ = "last"


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"preset": "mmsegg"}, ValueError, "unknown preset 'mmsegg'; choose one of"),
        ({"aggregation": "images"}, ValueError, "aggregation must be one of"),
        ({"exclude": [5]}, ValueError, "exclude: class 5 is out of range for 5 classes"),
        ({"exclude": ["raod"], "class_names": NAMES}, ValueError,
         "exclude: unknown class name 'raod'; known names: sky, road, car, tree, void"),
        ({"exclude": ["road"]}, ValueError, "there are no class names to look it up in"),
        ({"class_names": ["a", "b"]}, ValueError, "class_names has 2 entries for 5 classes"),
        ({"class_names": "abcde"}, TypeError, "class_names must be a sequence of str"),
        ({"workers": 0}, ValueError, "workers=0: the local scheduler needs at least 1 thread"),
        ({"workers": 1.5}, TypeError, "workers=1.5: the number of threads must be an integer"),
    ],
)  # fmt: skip
def test_bad_options_are_refused_before_any_compute(tmp_path, no_compute, options, error,
                                                    message):  # fmt: skip
    truth, scores = _data(30)
    path = _store(tmp_path / "ds.zarr", truth, scores, pred_chunks=(2, 24, 20, N),
                  true_chunks=(2, 24, 20))  # fmt: skip
    with pytest.raises(error, match=re.escape(message)):
        fastseg.evaluate(path, path, checkpoint=tmp_path / "ck", progress=False, **options)
    assert not (tmp_path / "ck").exists()  # refused before the checkpoint was started


def test_plan_resolves_the_policy_against_the_class_names(tmp_path):
    truth, scores = _data(31)
    path = _store(tmp_path / "ds.zarr", truth, scores, pred_chunks=(2, 24, 20, N),
                  true_chunks=(2, 24, 20))  # fmt: skip
    zarr.open_group(path, mode="r+").attrs["class_names"] = NAMES
    p = plan(path, path, preset="post_standard", exclude=["road", "background", LAST_])
    assert p.class_names == NAMES
    assert p.policy == fastseg.Policy(aggregation="image", smooth=0.001, exclude=(1, 0, "last"))
    report = fastseg.evaluate(path, path, ignore_index=255, exclude=["road", "last"],
                              progress=False)  # fmt: skip
    expected = Accumulator(N, ignore_index=255, class_names=NAMES).update(truth, scores)
    assert report.to_dict() | {"meta": None} == expected.compute(exclude=[1, "last"]).to_dict() | {
        "meta": None}  # fmt: skip
    assert report.kept.tolist() == [True, False, True, True, False]


def test_store_attributes_are_the_library_defaults(tmp_path, caplog):
    truth, scores = _data(32)
    path = _store(tmp_path / "ds.zarr", truth, scores, pred_chunks=(2, 24, 20, N),
                  true_chunks=(2, 24, 20))  # fmt: skip
    g = zarr.open_group(path, mode="r+")
    g.attrs.update({"ignore_index": 255, "num_classes": N, "class_axis": -1})
    with caplog.at_level(logging.INFO, logger="fastseg"):
        report = fastseg.evaluate(path, path, progress=False)
    assert "ignore index 255, from the truth store's attributes" in caplog.text
    expected = Accumulator(N, ignore_index=255).update(truth, scores).compute()
    assert report.ignored == expected.ignored > 0
    assert report.miou == expected.miou
    # None says "ignore nothing": then the 255 labels are out of range, named with their block
    with pytest.raises(ValueError, match="255"):
        fastseg.evaluate(path, path, ignore_index=None, progress=False)
    g.attrs["ignore_index"] = "void"
    with pytest.raises(ValueError, match="the truth store's ignore_index attribute is 'void', "
                                         "not an integer; pass ignore_index=K"):  # fmt: skip
        plan(path, path)
    # a stale attribute is named in the error it causes
    g.attrs.update({"ignore_index": 255, "num_classes": N + 1})
    with pytest.raises(ValueError, match="num_classes=6 from the truth store's attributes"):
        plan(path, path)


def test_an_unreachable_scheduler_fails_within_seconds(tmp_path, no_compute):
    pytest.importorskip("distributed")
    import socket
    import time

    from fastseg.dataset import SchedulerConnectionError

    with socket.socket() as s:  # a free port: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    truth, scores = _data(33)
    started = time.monotonic()
    with pytest.raises(SchedulerConnectionError,
                       match=f"scheduler='tcp://127.0.0.1:{port}': no Dask scheduler answered"):
        fastseg.evaluate(truth, scores, ignore_index=255, scheduler=f"tcp://127.0.0.1:{port}",
                         checkpoint=tmp_path / "ck")  # fmt: skip
    assert time.monotonic() - started < 10
    assert not (tmp_path / "ck").exists()
    with pytest.raises(ValueError, match="is not a scheduler address"):
        fastseg.evaluate(truth, scores, ignore_index=255, scheduler="tcp://nowhere")


# ------------------------------------------------------------------------ progress

_LINE = re.compile(r"fastseg: \d+/\d+ blocks \(\d+%\), (\d+h)?(\d+m)?\d+s elapsed(, ~.* left)?")


def test_progress_off_a_terminal_is_a_few_plain_lines(monkeypatch, capsys):
    import fastseg.progress

    monkeypatch.setattr(fastseg.progress, "DELAY", 0.0)
    monkeypatch.setattr(fastseg.progress, "INTERVAL", 0.0)  # a line every 5 % of the blocks
    truth, scores = _data(34, b=20, h=16, w=16)
    lazy = da.from_array(scores, chunks=(1, 4, 8, N))  # 160 blocks
    report = fastseg.evaluate(truth, lazy, ignore_index=255, workers=2)
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert "\r" not in err
    assert "\x1b" not in err
    assert 2 <= len(lines) <= 21
    assert all(_LINE.fullmatch(line) for line in lines), lines
    assert lines[-1].startswith("fastseg: 160/160 blocks (100%), ")
    assert report.miou == Accumulator(N, ignore_index=255).update(truth, scores).compute().miou


def test_progress_false_prints_nothing(monkeypatch, capsys):
    import fastseg.progress

    monkeypatch.setattr(fastseg.progress, "DELAY", 0.0)
    monkeypatch.setattr(fastseg.progress, "INTERVAL", 0.0)
    truth, scores = _data(35, b=4)
    fastseg.evaluate(truth, da.from_array(scores, chunks=(1, 24, 20, N)), ignore_index=255,
                     progress=False)  # fmt: skip
    assert capsys.readouterr().err == ""


def test_progress_lines_stay_sparse_over_a_long_run():
    import io

    from fastseg.progress import Progress

    now = [0.0]
    out = io.StringIO()
    with Progress(4800, stream=out, clock=lambda: now[0]) as bar:
        assert not bar.live
        for _ in range(4800):  # one hour
            now[0] += 0.75
            bar.update()
    text = out.getvalue()
    assert len(text) < 2000  # a few KB per hour at most
    assert text.count("\n") == 21
    assert "\r" not in text
    assert text.splitlines()[1] == "fastseg: 280/4800 blocks (5%), 3m30s elapsed, ~56m30s left"
    assert text.splitlines()[-1] == "fastseg: 4800/4800 blocks (100%), 1h00m elapsed"


def test_a_terminal_gets_a_live_bar_and_plain_lines_without_tqdm(monkeypatch):
    import io

    import fastseg.progress
    from fastseg.progress import Progress

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    pytest.importorskip("tqdm")
    screen = Terminal()
    with Progress(10, stream=screen, delay=0) as bar:
        assert bar.live
        for _ in range(10):
            bar.update()
    assert "10/10" in screen.getvalue()
    assert "\r" in screen.getvalue()  # redrawn in place
    monkeypatch.setattr(fastseg.progress, "_tqdm", lambda: None)
    screen = Terminal()
    with Progress(10, stream=screen, delay=0) as bar:
        assert not bar.live
        for _ in range(10):
            bar.update()
    assert screen.getvalue() == "fastseg: 10/10 blocks (100%), 0s elapsed\n"


@pytest.mark.slow
def test_progress_under_a_distributed_scheduler_is_plain_and_exact(cluster, monkeypatch, capsys):
    import fastseg.progress

    monkeypatch.setattr(fastseg.progress, "DELAY", 0.0)
    monkeypatch.setattr(fastseg.progress, "INTERVAL", 0.0)
    truth, scores = _data(36, b=12)
    lazy = da.from_array(scores, chunks=(1, 12, 20, N))  # 24 blocks
    remote = fastseg.evaluate(truth, lazy, ignore_index=255, scheduler=cluster)
    err = capsys.readouterr().err
    assert "\r" not in err
    assert "\x1b" not in err
    assert err.splitlines()[-1].startswith("fastseg: 24/24 blocks (100%), ")
    assert all(_LINE.fullmatch(line) for line in err.splitlines())
    local = fastseg.evaluate(truth, lazy, ignore_index=255, progress=False)
    assert remote.to_dict()["summary"] == local.to_dict()["summary"]
    assert remote.to_dict()["confusion_matrix"] == local.to_dict()["confusion_matrix"]
    assert remote.to_dict()["classes"] == local.to_dict()["classes"]


# ----------------------------------------------------------------- kernel compile


def test_a_slow_first_compile_is_announced_once(monkeypatch, capsys):
    import time

    from numba.core import event

    import fastseg.counting

    real = fastseg.counting.count_prepared
    calls = []

    def first_call_slow(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:  # compiles, as with a cold Numba cache
            with event.trigger_event("numba:compile", data={}):
                time.sleep(1.0)
        return real(*args, **kwargs)

    monkeypatch.setattr(fastseg.counting, "count_prepared", first_call_slow)
    truth, scores = _data(37, b=4)
    fastseg.evaluate(truth, scores, ignore_index=255)
    assert capsys.readouterr().err == (
        "fastseg: compiling kernels for float16 channels-last scores and uint8 label maps "
        "(once, ~10 s; cached afterwards)\n"
    )
    fastseg.evaluate(truth, scores, ignore_index=255)  # compiled now: nothing to say
    assert capsys.readouterr().err == ""
    calls.clear()
    first = np.ascontiguousarray(np.moveaxis(scores, -1, 1)).astype(np.float32)
    fastseg.evaluate(truth, first, ignore_index=255, class_axis=1, soft=True)
    assert capsys.readouterr().err == (
        "fastseg: compiling soft kernels for float32 channels-first scores and uint8 label "
        "maps (once, ~10 s; cached afterwards)\n"
    )
    calls.clear()
    fastseg.evaluate(truth, scores, ignore_index=255, progress=False)
    assert capsys.readouterr().err == ""


def test_a_slow_load_from_the_cache_is_not_announced(monkeypatch, capsys):
    import time

    import fastseg.counting

    real = fastseg.counting.count_prepared
    calls = []

    def first_call_slow(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:  # loads from Numba's disk cache: slow, but no compile
            time.sleep(1.0)
        return real(*args, **kwargs)

    monkeypatch.setattr(fastseg.counting, "count_prepared", first_call_slow)
    truth, scores = _data(39, b=4)
    fastseg.evaluate(truth, scores, ignore_index=255)
    assert capsys.readouterr().err == ""


def test_the_warm_up_input_is_made_like_the_blocks():
    truth, scores = _data(38, b=4)
    first = np.ascontiguousarray(np.moveaxis(scores, -1, 1))
    p = plan(truth.astype(np.int32), first, ignore_index=255, class_axis=1)
    pred, true = p.example
    assert (pred.shape, pred.dtype) == ((1, N, 2, 2), np.float16)
    assert (true.shape, true.dtype) == ((1, 2, 2), np.int32)
    assert pred.flags.c_contiguous
    assert pred.flags.writeable
    assert (p.kinds, p.class_axis) == (("scores", "labels"), 1)


# ------------------------------------------- checkpoints: locations, lost manifests, reruns

import json  # noqa: E402
import stat  # noqa: E402

from fastseg._files import current_umask  # noqa: E402


def _four_blocks(tmp_path, seed, name="ds.zarr", truth=None):
    """A store of 4 images, one block each, and its in-memory counts."""
    t, scores = _data(seed, b=4)
    truth = t if truth is None else truth
    path = _store(tmp_path / name, truth, scores, pred_chunks=(1, 24, 20, N),
                  true_chunks=(1, 24, 20))  # fmt: skip
    return path, _expected(truth, scores)


def _run(pred, ckpt, **kwargs):
    kwargs.setdefault("ignore_index", 255)
    return fastseg.evaluate(pred, pred, checkpoint=ckpt, progress=False, scheduler="sync",
                            **kwargs)  # fmt: skip


def _same_counts(report, expected):
    np.testing.assert_array_equal(report.counts.tp, expected.tp)
    np.testing.assert_array_equal(report.counts.true, expected.true)
    np.testing.assert_array_equal(report.counts.confusion, expected.confusion)


def test_a_checkpoint_resumes_whatever_the_store_path_spelling(tmp_path, monkeypatch):
    path, expected = _four_blocks(tmp_path, 40)
    (tmp_path / "link.zarr").symlink_to(path)
    monkeypatch.chdir(tmp_path)
    ck = tmp_path / "ck"
    first = _run("./ds.zarr", ck)
    assert first.to_dict()["meta"]["blocks_resumed"] == 0
    _same_counts(first, expected)
    for spelling in ("ds.zarr", str(path), "./ds.zarr/", str(tmp_path / "link.zarr")):
        again = _run(spelling, ck)
        meta = again.to_dict()["meta"]
        assert meta["blocks_resumed"] == 4, spelling
        assert meta["pred"].startswith(spelling)  # reports say what was typed
        _same_counts(again, expected)
    manifest = json.loads((ck / "manifest.json").read_text())
    assert manifest["fingerprint"]["pred"] == f"{os.path.realpath(path)}/pred"
    assert manifest["fingerprint"]["true"] == f"{os.path.realpath(path)}/true"
    readable = 0o666 & ~current_umask()
    for f in [ck / "manifest.json", *(ck / "blocks").iterdir()]:
        assert stat.S_IMODE(f.stat().st_mode) == readable, f


def test_blocks_of_other_inputs_are_not_reused_when_the_manifest_is_gone(tmp_path):
    a, expected_a = _four_blocks(tmp_path, 41, "a.zarr")
    b, expected_b = _four_blocks(tmp_path, 42, "b.zarr")
    ck = tmp_path / "ck"
    _run(a, ck)
    (ck / "manifest.json").unlink()
    refused = (rf"checkpoint {re.escape(str(ck))} has no manifest.json, and .* holds 4 "
               r"block\(s\) of another evaluation .*Delete .* or use another checkpoint "
               r"directory")  # fmt: skip
    with pytest.raises(ValueError, match=refused):
        _run(b, ck)  # other inputs
    with pytest.raises(ValueError, match=refused):
        _run(a, ck, ignore_index=None)  # other options
    assert not (ck / "manifest.json").exists()
    again = _run(a, ck)  # the blocks' own inputs and options: reused
    assert again.to_dict()["meta"]["blocks_resumed"] == 4
    _same_counts(again, expected_a)
    import shutil

    shutil.rmtree(ck)
    _same_counts(_run(b, ck), expected_b)


def test_a_run_that_failed_on_its_first_block_does_not_block_the_corrected_rerun(
    tmp_path, caplog
):
    path, expected = _four_blocks(tmp_path, 43)
    ck = tmp_path / "ck"
    with pytest.raises(ValueError, match=r"block \(\d, 0, 0, 0\) .*labels outside \[0, 5\)"):
        _run(path, ck, ignore_index=None)  # forgot the ignore index: 255 is no class
    assert list((ck / "blocks").iterdir()) == []
    with caplog.at_level(logging.WARNING, logger="fastseg"):
        report = _run(path, ck)
    assert "left by a failed run" in caplog.text
    assert "replacing its manifest" in caplog.text
    _same_counts(report, expected)
    assert json.loads((ck / "manifest.json").read_text())["fingerprint"]["ignore_index"] == 255


def test_a_failed_run_with_finished_blocks_says_exactly_how_to_proceed(tmp_path, monkeypatch):
    truth, _ = _data(44, b=4)
    truth[truth == 255] = 0  # no ignored label: ignore_index=None counts every block
    path, expected = _four_blocks(tmp_path, 44, truth=truth)
    ck = tmp_path / "ck"
    import fastseg.dataset as d

    real, calls = d._count_block, []

    def fails_fourth(*args, **kwargs):
        calls.append(args[2])
        if len(calls) == 4:
            raise ValueError("the fourth block fails")
        return real(*args, **kwargs)

    monkeypatch.setattr(d, "_count_block", fails_fourth)
    with pytest.raises(ValueError, match="the fourth block fails"):
        _run(path, ck, ignore_index=None)
    monkeypatch.setattr(d, "_count_block", real)
    assert len(list((ck / "blocks").glob("*.npz"))) == 3
    with pytest.raises(ValueError, match="finished block") as info:
        _run(path, ck)
    assert str(info.value) == (
        f"checkpoint {ck} holds 3 finished block(s) of an evaluation of other inputs or "
        "options (differs in: ignore_index; ignore_index: null there, 255 here): they cannot "
        f"be used here. To evaluate these inputs with these options, delete {ck} to start "
        "over, or use another checkpoint directory (--checkpoint)"
    )
    import shutil

    shutil.rmtree(ck)
    _same_counts(_run(path, ck), expected)


def test_a_corrupt_block_is_named_and_stray_files_are_ignored(tmp_path, caplog):
    path, expected = _four_blocks(tmp_path, 45)
    ck = tmp_path / "ck"
    _run(path, ck)
    block = ck / "blocks" / "2_0_0_0.npz"
    block.write_bytes(block.read_bytes()[: block.stat().st_size // 2])
    strays = ["notes.txt", "foo.npz", "1_2.npz.bak", "9_0_0_0.npz", "1_0.npz"]
    for name in strays:
        (ck / "blocks" / name).write_text("not a block of this run")
    with pytest.raises(ValueError, match="unusable") as info:
        _run(path, ck)
    message = str(info.value)
    assert message.startswith(f"checkpoint block (2, 0, 0, 0) is unusable: {block} is not a "
                              "readable fastseg checkpoint block file")  # fmt: skip
    assert message.endswith(f"Delete {block} to recompute that block")
    block.unlink()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="fastseg"):
        report = _run(path, ck)
    assert report.to_dict()["meta"]["blocks_resumed"] == 3
    _same_counts(report, expected)
    [warning] = [r.getMessage() for r in caplog.records if "ignoring" in r.getMessage()]
    assert "ignoring 5 file(s)" in warning
    for name in strays:
        assert name in warning


def test_a_label_map_with_a_channel_axis_of_one_is_read_everywhere(tmp_path, capsys):
    """(B, 1, H, W) integer truth beside channels-first scores, with class_axis=1: read as
    the label map without that axis by evaluate (NumPy, Zarr with a missing chunk, files)
    and the command, as by the in-memory API."""
    import zarr

    from fastseg.cli import main

    rng = np.random.default_rng(12)
    truth = rng.integers(0, 4, (3, 1, 6, 7)).astype(np.uint8)
    scores = rng.random((3, 4, 6, 7)).astype(np.float32)
    expected = fastseg.confusion_matrix(truth[:, 0], scores, class_axis=1, num_classes=4)
    kw = {"class_axis": 1, "num_classes": 4, "progress": False}
    np.testing.assert_array_equal(fastseg.evaluate(truth, scores, **kw).confusion_matrix,
                                  expected)  # fmt: skip
    t = zarr.create_array(tmp_path / "t.zarr", shape=truth.shape, dtype=truth.dtype,
                          chunks=(1, 1, 3, 7))  # fmt: skip
    t[:] = truth
    p = zarr.create_array(tmp_path / "p.zarr", shape=scores.shape, dtype=scores.dtype,
                          chunks=(1, 4, 3, 7))  # fmt: skip
    p[:] = scores
    zarr_report = fastseg.evaluate(tmp_path / "t.zarr", tmp_path / "p.zarr", **kw)
    np.testing.assert_array_equal(zarr_report.confusion_matrix, expected)
    assert main(["evaluate", "--true", str(tmp_path / "t.zarr"), "--pred",
                 str(tmp_path / "p.zarr"), "--class-axis", "1", "--num-classes", "4",
                 "--format", "json", "--no-progress"]) == 0  # fmt: skip
    out = json.loads(capsys.readouterr().out)
    assert [c["support"] for c in out["classes"]] == expected.sum(axis=1).tolist()
    # a missing truth chunk (image 1, upper half) leaves out the one block it touches
    (tmp_path / "t.zarr" / "c" / "1" / "0" / "0" / "0").unlink()
    skipped = fastseg.evaluate(tmp_path / "t.zarr", tmp_path / "p.zarr", missing="skip", **kw)
    assert skipped.meta["skipped_blocks"] == [[1, 0, 0, 0]]
    kept = np.ones((3, 6, 7), bool)
    kept[1, :3] = False
    t_kept, p_kept = truth[:, 0][kept], scores.transpose(0, 2, 3, 1)[kept]
    np.testing.assert_array_equal(
        skipped.confusion_matrix,
        fastseg.confusion_matrix(t_kept[None, :, None], p_kept[None, :, None], num_classes=4))
    for side, arrays in (("t", truth), ("p", scores)):
        (tmp_path / side).mkdir()
        for i, a in enumerate(arrays):
            np.save(tmp_path / side / f"case{i}.npy", a)
    files = fastseg.evaluate(tmp_path / "t", tmp_path / "p", **kw)
    np.testing.assert_array_equal(files.confusion_matrix, expected)


def test_blocks_are_read_as_the_kinds_decided_for_the_arrays(tmp_path):
    # Two 3-D label-map stores: unambiguous as arrays (last axis 40, N = 6), but a block
    # whose last axis is 6 long would alone look like one-hot masks of 6 classes.
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 6, (1, 4, 40, 40)).astype(np.uint8)
    pred = rng.integers(0, 6, (1, 4, 40, 40)).astype(np.uint8)
    zarr.create_array(tmp_path / "p.zarr", data=pred, chunks=(1, 2, 40, 6))
    zarr.create_array(tmp_path / "t.zarr", data=truth, chunks=(1, 4, 40, 40))
    report = fastseg.evaluate(str(tmp_path / "t.zarr"), str(tmp_path / "p.zarr"),
                              num_classes=6, progress=False)  # fmt: skip
    assert report.counts == fastseg.counts(truth, pred, num_classes=6)

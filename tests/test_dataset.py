"""Out-of-core evaluation: Zarr / Dask inputs give the in-memory counts, faults are caught."""

from __future__ import annotations

import logging
import os
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
    p = plan(pred, true, **kwargs)
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
        p = plan(lazy, truth, ignore_index=255)
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
        plan(pred, da.zeros(true_shape, dtype=np.uint8))


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
    p = plan(da.from_array(scores, chunks=(2, 24, 20, N)), truth, ignore_index=255)
    with pytest.raises(ValueError, match=r"block \(1, 0, 0, 0\) \(images 2-3\).*e\.g\. 77"):
        p.root.compute(scheduler="sync")


def test_string_dtypes_and_pickle_codecs_are_refused_before_decoding(tmp_path):
    text = zarr.create_array(tmp_path / "s.zarr", shape=(2, 2, 2), dtype=str)
    with pytest.raises(TypeError, match="numeric arrays only"):
        plan(text, np.zeros((2, 2), np.uint8), num_classes=2)
    pickled = zarr.create_array(tmp_path / "p.zarr", shape=(2, 2, 2, 2), dtype="f4",
                                zarr_format=2, filters=[numcodecs.Pickle()])  # fmt: skip
    with pytest.raises(TypeError, match=r"codec\(s\) \['pickle'\]"):
        plan(pickled, np.zeros((2, 2, 2), np.uint8))


def test_a_path_with_no_store_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="no Zarr array or group"):
        plan(tmp_path / "nothing.zarr", tmp_path / "nothing.zarr")


def test_a_group_with_several_arrays_needs_an_array_path(tmp_path):
    g = zarr.open_group(tmp_path / "g.zarr", mode="w")
    g.create_array("a", shape=(1, 2, 2, 2), dtype="f4")
    g.create_array("b", shape=(1, 2, 2, 2), dtype="f4")
    with pytest.raises(ValueError, match=r"arrays \['a', 'b'\]: say which holds the pred"):
        plan(tmp_path / "g.zarr", np.zeros((1, 2, 2), np.uint8))


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
    p = plan(da.from_array(scores, chunks=(2, 12, 10, N)), truth, ignore_index=255)
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


def test_local_cluster_gives_bit_identical_counts(cluster, tmp_path):
    truth, scores = _data(16, b=8)
    path = _store(tmp_path / "ds.zarr", truth, scores, pred_chunks=(1, 12, 20, N),
                  true_chunks=(2, 24, 20))  # fmt: skip
    p = plan(path, path, ignore_index=255)
    merged = cluster.compute(p.root).result()
    expected = _expected(truth, scores)
    np.testing.assert_array_equal(merged.tp, expected.tp)
    np.testing.assert_array_equal(merged.confusion, expected.confusion)


def test_a_worker_killed_mid_run_is_retried(cluster, tmp_path):
    truth, scores = _data(17, b=16)

    def slow(block):
        import time

        time.sleep(0.2)
        return block

    meta = np.empty((0,) * 4, scores.dtype)
    lazy = da.from_array(scores, chunks=(1, 24, 20, N)).map_blocks(slow, meta=meta)
    p = plan(lazy, truth, ignore_index=255)
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
        plan(np.zeros((1, 2, 2, 2), np.float32), np.zeros((1, 2, 2), np.uint8), missing="maybe")


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

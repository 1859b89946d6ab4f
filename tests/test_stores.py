"""Store checks: a sharded Zarr store with an inner chunk never written is not complete."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import zarr

import fastseg
from fastseg.dataset import MissingChunksError
from fastseg.stores import missing_chunks

N = 4


def _sharded(path, truth, scores, *, write_images):
    """pred/true sharded by 2 images, inner chunks of one image; only `write_images` stored."""
    g = zarr.open_group(path, mode="w")
    p = g.create_array("pred", shape=scores.shape, dtype=scores.dtype,
                       chunks=(1, 8, 6, N), shards=(2, 16, 12, N))  # fmt: skip
    t = g.create_array("true", shape=truth.shape, dtype=truth.dtype,
                       chunks=(1, 8, 6), shards=(2, 16, 12))  # fmt: skip
    for region in write_images:
        p[region] = scores[region]
        t[region] = truth[region]
    return path


def _data(b=5):
    rng = np.random.default_rng(3)
    truth = rng.integers(0, N, (b, 16, 12)).astype(np.uint8)
    scores = rng.random((b, 16, 12, N)).astype(np.float32)
    return truth, scores


def test_missing_inner_chunks_are_found_from_the_shard_index(tmp_path):
    truth, scores = _data()
    # Image 2 only partly written: shard 1 is stored but lacks inner chunks. Image 4
    # (shard 2, whose second image lies past the array's edge) is not stored at all.
    path = _sharded(tmp_path / "s.zarr", truth, scores,
                    write_images=[np.s_[0:2], np.s_[2, :8, :6], np.s_[3]])  # fmt: skip
    g = zarr.open_group(path, mode="r")
    assert missing_chunks(g["pred"]) == [(1, 0, 0, 0), (2, 0, 0, 0)]
    assert missing_chunks(g["true"]) == [(1, 0, 0), (2, 0, 0)]
    # Zarr itself reads the holes as fill values: what fastseg must not count.
    assert (g["true"][2, 8:] == 0).all()


def test_evaluate_refuses_a_sharded_store_with_holes_and_skips_them_when_asked(tmp_path):
    truth, scores = _data()
    path = _sharded(tmp_path / "s.zarr", truth, scores,
                    write_images=[np.s_[0:2], np.s_[2, :8, :6], np.s_[3], np.s_[4]])  # fmt: skip
    with pytest.raises(MissingChunksError, match=r"shards missing an inner chunk: \(1, 0, 0"):
        fastseg.evaluate(path, path, progress=False)
    report = fastseg.evaluate(path, path, progress=False, missing="skip")
    assert report.complete is False
    expected = fastseg.Accumulator(N).update(truth[[0, 1, 4]], scores[[0, 1, 4]]).compute()
    np.testing.assert_array_equal(report.confusion_matrix, expected.confusion_matrix)


def test_a_fully_written_sharded_store_gives_the_in_memory_counts(tmp_path):
    truth, scores = _data()
    path = _sharded(tmp_path / "s.zarr", truth, scores, write_images=[np.s_[:]])
    g = zarr.open_group(path, mode="r")
    assert missing_chunks(g["pred"]) == []
    report = fastseg.evaluate(path, path, progress=False)
    assert report.complete is True
    expected = fastseg.Accumulator(N).update(truth, scores).compute()
    np.testing.assert_array_equal(report.confusion_matrix, expected.confusion_matrix)
    assert report.to_dict()["summary"] == expected.to_dict()["summary"]


# --------------------------------------------------------------------------------------
# Opening: a zip that is not a store, and a store's identity
# --------------------------------------------------------------------------------------


def _zipped_store(tmp_path, *, nested):
    import shutil

    src = tmp_path / "src" / "data.zarr"
    g = zarr.open_group(src, mode="w")
    g.create_array("true", data=np.zeros((1, 4, 4), np.uint8))
    root = src.parent if nested else src
    return shutil.make_archive(str(tmp_path / ("nested" if nested else "flat")), "zip", root)


def test_a_zip_that_is_not_a_zarr_store_is_a_value_error_naming_it(tmp_path):
    from fastseg.stores import open_source

    junk = tmp_path / "junk.zip"
    junk.write_bytes(np.random.default_rng(0).bytes(300))
    with pytest.raises(ValueError, match=r"true: '.*junk.zip' is not a Zarr store: not a "
                                         r"readable zip archive"):  # fmt: skip
        open_source(str(junk), "true")
    empty = tmp_path / "empty.zip"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty.zip' is not a Zarr store"):
        open_source(str(empty), "true")
    import zipfile

    other = tmp_path / "other.zip"
    with zipfile.ZipFile(other, "w") as z:
        z.writestr("notes.txt", "hello")
    with pytest.raises(ValueError, match=r"no Zarr metadata .*\(it holds notes.txt\)"):
        open_source(str(other), "true")
    nested = _zipped_store(tmp_path, nested=True)
    with pytest.raises(ValueError, match=r"seems to be in its folder 'data.zarr/'"):
        open_source(nested, "true")
    flat = _zipped_store(tmp_path, nested=False)
    assert open_source(flat, "true").array.shape == (1, 4, 4)


def test_the_command_exits_2_for_a_zip_that_is_not_a_store(tmp_path, capsys):
    from fastseg.cli import main

    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"PK\x03\x04 not really a zip")
    assert main(["evaluate", "--true", str(junk), "--pred", str(junk), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "junk.zip" in err
    assert "is not a Zarr store" in err
    assert "Traceback" not in err


def test_a_store_is_identified_by_its_resolved_location(tmp_path, monkeypatch):
    from fastseg.stores import open_source

    truth, scores = _data()
    path = _sharded(tmp_path / "ds.zarr", truth, scores, write_images=[np.s_[:]])
    link = tmp_path / "link.zarr"
    link.symlink_to(path)
    monkeypatch.chdir(tmp_path)
    real = f"{path.resolve()}/true"
    for spelling in ("ds.zarr", "./ds.zarr", "ds.zarr/", str(path), "link.zarr"):
        assert open_source(spelling, "true").location == real, spelling
    assert open_source("ds.zarr/true", "true").location == real
    assert open_source(zarr.open_group(path, mode="r"), "true").location == real
    # What the user typed stays in messages.
    assert open_source("./ds.zarr", "true").description == "./ds.zarr/true"
    assert open_source(np.zeros((1, 4, 4), np.uint8), "true").location is None


def test_a_url_without_its_fsspec_backend_names_the_extra(capsys):
    """s3:// without s3fs: an error naming fastseg's 'remote' extra (exit 2 in the CLI)."""
    pytest.importorskip("fsspec")
    if importlib.util.find_spec("s3fs") is not None:
        pytest.skip("s3fs is installed")
    from fastseg.cli import main
    from fastseg.stores import MissingReaderError

    with pytest.raises(MissingReaderError, match=r"pip install 'fastseg\[remote\]'"):
        fastseg.evaluate("s3://bucket/t.zarr", "s3://bucket/p.zarr", progress=False)
    assert main(["evaluate", "--true", "s3://bucket/t.zarr", "--pred", "s3://bucket/p.zarr",
                 "--no-progress"]) == 2  # fmt: skip
    assert "fastseg[remote]" in capsys.readouterr().err

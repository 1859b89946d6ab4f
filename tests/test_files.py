"""Atomic writes: a file appears complete or not at all."""

from __future__ import annotations

import numpy as np
import pytest

from fastseg._files import save_npz, write_atomically


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "out.json"
    target.write_text("old")

    def failing(tmp):
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomically(target, failing)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]
    with pytest.raises(OSError, match="disk full"):
        write_atomically(tmp_path / "new.json", failing)
    assert not (tmp_path / "new.json").exists()


def test_a_successful_write_replaces_the_file(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    assert write_atomically(target, lambda tmp: tmp.write_text("new")) == target
    assert target.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_save_npz_keeps_the_name_and_round_trips(tmp_path):
    path = save_npz(tmp_path / "counts.bin", {"a": np.arange(3), "b": np.eye(2)})
    assert path == tmp_path / "counts.bin"
    with np.load(path, allow_pickle=False) as f:
        np.testing.assert_array_equal(f["a"], np.arange(3))
        np.testing.assert_array_equal(f["b"], np.eye(2))
    assert [p.name for p in tmp_path.iterdir()] == ["counts.bin"]

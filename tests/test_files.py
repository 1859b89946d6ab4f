"""Atomic writes: a file appears complete or not at all, with the umask's permissions."""

from __future__ import annotations

import errno
import os
import stat
import tempfile

import numpy as np
import pytest

import fastseg
from fastseg import _files
from fastseg._files import save_npz, write_atomically
from fastseg.checkpoint import Checkpoint, save_block


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


# ------------------------------------------------------------------ permissions


@pytest.fixture
def umask():
    """Set the process umask for one test: ``umask(0o002)``; restored afterwards."""
    before = os.umask(0o022)
    os.umask(before)
    yield os.umask
    os.umask(before)


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_current_umask_is_read_without_changing_it(umask):
    for value in (0o022, 0o002, 0o077):
        umask(value)
        assert _files.current_umask() == value
        assert os.umask(value) == value  # unchanged by the read


def test_current_umask_falls_back_when_proc_is_missing(umask, monkeypatch):
    real_open = open

    def no_proc(name, *args, **kwargs):
        if str(name).startswith("/proc/"):
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", name)
        return real_open(name, *args, **kwargs)

    monkeypatch.setattr("builtins.open", no_proc)
    umask(0o027)
    assert _files.current_umask() == 0o027
    assert os.umask(0o027) == 0o027


@pytest.mark.parametrize(("mask", "expected"), [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
@pytest.mark.parametrize("exclusive", [False, True])
def test_a_new_file_gets_the_umask_permissions(tmp_path, umask, mask, expected, exclusive):
    umask(mask)
    target = tmp_path / "out.txt"
    write_atomically(target, lambda tmp: tmp.write_text("x"), exclusive=exclusive)
    assert mode(target) == expected
    assert target.read_text() == "x"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_a_replaced_file_keeps_its_mode(tmp_path, umask):
    umask(0o022)
    target = tmp_path / "out.txt"
    target.write_text("old")
    for kept in (0o640, 0o600, 0o664):
        target.chmod(kept)
        write_atomically(target, lambda tmp: tmp.write_text("new"))
        assert mode(target) == kept
        assert target.read_text() == "new"


def _report():
    rng = np.random.default_rng(0)
    tp = rng.integers(0, 20, (3, 4))
    counts = fastseg.Counts(tp, tp + 3, tp + 5, rng.integers(0, 9, (4, 4)))
    return fastseg.Accumulator(4).add_counts(counts).compute()


def _write_every_kind(folder):
    """Write each kind of file fastseg makes into `folder`; return their paths."""
    report = _report()
    acc = fastseg.Accumulator(4).add_counts(report.counts)
    paths = {
        "report json": report.to_json(folder / "report.json"),
        "report csv": report.to_csv(folder / "classes.csv"),
        "accumulator": folder / "acc.npz",
        "counts": folder / "counts.npz",
    }
    acc.save(paths["accumulator"])
    report.counts.save(paths["counts"])
    if _has_matplotlib():
        paths["plot png"] = report.plot(folder / "report.png")
    ckpt = Checkpoint(folder / "ckpt", {"pred": "p", "true": "t"})
    c = report.counts
    save_block(ckpt.block_file((0, 0)), c)
    paths["checkpoint block"] = ckpt.path((0, 0))
    paths["checkpoint manifest"] = ckpt.manifest
    return paths


def _has_matplotlib():
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.parametrize(("mask", "expected"), [(0o022, 0o644), (0o002, 0o664)])
def test_every_writer_gives_the_umask_permissions(tmp_path, umask, mask, expected):
    umask(mask)
    paths = _write_every_kind(tmp_path)
    if _has_matplotlib():
        assert "plot png" in paths
    assert {name: oct(mode(p)) for name, p in paths.items()} == {
        name: oct(expected) for name in paths
    }
    # Overwriting a file a user restricted keeps its mode.
    for p in paths.values():
        p.chmod(0o640)
    _write_every_kind(tmp_path)
    assert {name: oct(mode(p)) for name, p in paths.items()} == {
        name: oct(0o640) for name in paths
    }
    # No temporary left anywhere.
    assert not list(tmp_path.rglob(".*"))


# ------------------------------------------------------------ errors name the target


def _temporaries(folder):
    return [p.name for p in folder.iterdir() if p.name.startswith(".")]


def test_a_missing_folder_is_named_with_the_target(tmp_path):
    target = tmp_path / "no" / "such" / "out.json"
    with pytest.raises(FileNotFoundError) as info:
        write_atomically(target, lambda tmp: tmp.write_text("x"))
    assert info.value.filename == str(target)
    message = str(info.value)
    assert str(target) in message
    assert str(tmp_path / "no" / "such") in message
    assert ".tmp" not in message


def test_permission_denied_names_the_target(tmp_path, monkeypatch):
    target = tmp_path / "out.json"
    target.write_text("old")

    def denied(dir, prefix, suffix):  # as an unwritable folder would: root ignores modes
        raise PermissionError(errno.EACCES, "Permission denied", f"{dir}/{prefix}abc{suffix}")

    monkeypatch.setattr(tempfile, "mkstemp", denied)
    with pytest.raises(PermissionError) as info:
        write_atomically(target, lambda tmp: tmp.write_text("new"))
    assert info.value.filename == str(target)
    assert str(info.value) == f"[Errno 13] Permission denied: '{target}'"
    assert target.read_text() == "old"


def test_a_full_disk_names_the_target_and_keeps_the_old_file(tmp_path):
    target = tmp_path / "acc.npz"
    target.write_text("old")

    def full(tmp):
        with tmp.open("wb") as f:
            f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp))

    with pytest.raises(OSError, match="No space left") as info:
        write_atomically(target, full)
    assert type(info.value) is OSError
    assert info.value.errno == errno.ENOSPC
    assert str(info.value) == f"[Errno 28] No space left on device: '{target}'"
    assert target.read_text() == "old"
    assert _temporaries(tmp_path) == []


def test_a_failed_rename_names_the_target_only(tmp_path, monkeypatch):
    target = tmp_path / "out.json"

    def refuse(src, dst):
        raise PermissionError(errno.EPERM, "Operation not permitted", src, dst)

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(PermissionError) as info:
        write_atomically(target, lambda tmp: tmp.write_text("x"))
    assert str(info.value) == f"[Errno 1] Operation not permitted: '{target}'"
    assert info.value.filename2 is None
    assert _temporaries(tmp_path) == []
    assert not target.exists()


def test_other_errors_of_the_writer_name_the_target(tmp_path):
    target = tmp_path / "r.png"

    def unsupported(tmp):
        raise ValueError(f"cannot save {tmp}: format not supported")

    with pytest.raises(ValueError, match="format not supported") as info:
        write_atomically(target, unsupported)
    assert str(info.value) == f"cannot save {target}: format not supported"
    # An error about another file keeps that file's name.
    missing = tmp_path / "input.txt"
    with pytest.raises(FileNotFoundError) as info:
        write_atomically(target, lambda tmp: tmp.write_text(missing.read_text()))
    assert info.value.filename == str(missing)


def test_an_exclusive_write_never_replaces_a_file(tmp_path, monkeypatch):
    target = tmp_path / "manifest.json"
    write_atomically(target, lambda tmp: tmp.write_text("first"), exclusive=True)
    with pytest.raises(FileExistsError) as info:
        write_atomically(target, lambda tmp: tmp.write_text("second"), exclusive=True)
    assert info.value.filename == str(target)
    assert target.read_text() == "first"
    assert _temporaries(tmp_path) == []

    # Created by someone else while this write was under way: still refused.
    other = tmp_path / "raced.json"

    def slow(tmp):
        tmp.write_text("mine")
        other.write_text("theirs")

    with pytest.raises(FileExistsError):
        write_atomically(other, slow, exclusive=True)
    assert other.read_text() == "theirs"

    # A file system without hard links: created with O_EXCL instead.
    def no_links(src, dst):
        raise OSError(errno.EPERM, "Operation not permitted", src, dst)

    monkeypatch.setattr(os, "link", no_links)
    fallback = tmp_path / "fallback.json"
    write_atomically(fallback, lambda tmp: tmp.write_text("one"), exclusive=True)
    assert fallback.read_text() == "one"
    with pytest.raises(FileExistsError):
        write_atomically(fallback, lambda tmp: tmp.write_text("two"), exclusive=True)
    assert fallback.read_text() == "one"
    assert _temporaries(tmp_path) == []

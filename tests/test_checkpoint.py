"""Checkpoint directories: manifest, block files, fingerprints, damage, races, strays."""

from __future__ import annotations

import json
import logging
import re
import shutil
import threading

import numpy as np
import pytest
from damaged_files import DAMAGES, DATA

from fastseg.checkpoint import (
    FORMAT_VERSION,
    MANIFEST,
    Checkpoint,
    block_index,
    fingerprint_hash,
    load_block,
    save_block,
)
from fastseg.counts import Counts, save_versioned

FP = {"pred": "/data/a.zarr/pred", "true": "/data/a.zarr/true", "ignore_index": 255}
OTHER = {**FP, "ignore_index": 0}


def _counts(b0=0, rows=2, n=3, soft=False, seed=0):
    rng = np.random.default_rng(seed)
    if soft:
        tp = rng.random((rows, n))
        return Counts(tp=tp, pred=tp + 1, true=tp + 2, first_image=b0)
    tp = rng.integers(0, 9, (rows, n))
    return Counts(tp=tp, pred=tp + 1, true=tp + 2, confusion=rng.integers(0, 9, (n, n)),
                  ignored=4, first_image=b0)  # fmt: skip


def _save(ckpt, block, counts=None):
    save_block(ckpt.block_file(block), counts if counts is not None else _counts())
    return ckpt.path(block)


def _load(ckpt, block, b0=0, rows=2, n=3, soft=False):
    return load_block(ckpt.block_file(block), first_image=b0, rows=rows, num_classes=n, soft=soft)


@pytest.mark.parametrize("soft", [False, True])
def test_a_block_round_trips_with_its_fingerprint(tmp_path, soft):
    ckpt = Checkpoint(tmp_path / "ck", FP)
    c = _counts(b0=4, soft=soft)
    _save(ckpt, (2, 0), c)
    back = _load(ckpt, (2, 0), b0=4, soft=soft)
    assert back.first_image == 4
    assert back.ignored == c.ignored
    for a, b in ((back.tp, c.tp), (back.pred, c.pred), (back.true, c.true)):
        np.testing.assert_array_equal(a, b)
    assert (back.confusion is None) == soft
    with np.load(ckpt.path((2, 0))) as f:
        meta = json.loads(str(f["meta"]))
    assert meta["fingerprint"] == fingerprint_hash(FP) == ckpt.key
    assert meta["block"] == [2, 0]
    assert (meta["format"], meta["version"]) == ("fastseg.checkpoint-block", FORMAT_VERSION)
    manifest = json.loads((tmp_path / "ck" / MANIFEST).read_text())
    assert manifest["fingerprint"] == FP
    assert manifest["fingerprint_sha256"] == ckpt.key
    assert manifest["version"] == FORMAT_VERSION == 2


@pytest.mark.parametrize("how", DAMAGES)
def test_a_damaged_block_says_which_and_that_deleting_it_recomputes(tmp_path, damaged, how):
    ckpt = Checkpoint(tmp_path / "ck", FP)
    good = _save(ckpt, (0, 1))
    bad = damaged(good, how)
    if how == "directory":
        good.unlink()
        good.mkdir()
    else:
        good.unlink(missing_ok=True)
        if how != "missing":
            shutil.move(bad, good)
    with pytest.raises(ValueError, match="unusable") as info:
        _load(ckpt, (0, 1))
    message = str(info.value)
    assert type(info.value) is ValueError
    assert message.startswith("checkpoint block (0, 1) is unusable: ")
    assert message.endswith(f"Delete {good} to recompute that block")
    assert "checkpoint block file" in message


def test_a_block_that_does_not_fit_is_refused(tmp_path):
    ckpt = Checkpoint(tmp_path / "ck", FP)
    _save(ckpt, (0, 0))
    other = Checkpoint(tmp_path / "other", OTHER)
    save_block(other.block_file((0, 0)), _counts())
    shutil.copy(other.path((0, 0)), ckpt.path((1, 0)))
    cases = [
        ((1, 0), {}, "belongs to another evaluation"),
        ((0, 0), {"b0": 2}, r"it holds block \[0, 0\] from image 0"),
        ((0, 0), {"rows": 3}, r"counts of shape \(2, 3\), expected 3 image\(s\) x 3 classes"),
        ((0, 0), {"n": 4}, r"expected 2 image\(s\) x 4 classes"),
        ((0, 0), {"soft": True}, "soft counts with tp of dtype int64"),
    ]
    for block, expected, message in cases:
        pattern = f"{re.escape(f'checkpoint block {block}')}.*{message}.*to recompute that block"
        with pytest.raises(ValueError, match=pattern):
            _load(ckpt, block, **expected)
    # Hard counts stored as floats.
    c = _counts()
    save_block(ckpt.block_file((0, 0)), Counts(tp=c.tp.astype(float), pred=c.pred, true=c.true,
                                               confusion=c.confusion))  # fmt: skip
    with pytest.raises(ValueError, match="hard counts with tp of dtype float64"):
        _load(ckpt, (0, 0))


def test_the_version_2_block_layout_is_kept(tmp_path):
    """Blocks are Counts files of fastseg.counts; their layout is still version 2's."""
    ckpt = Checkpoint(tmp_path / "ck", FP)
    for block, b0 in (((0, 0), 0), ((1, 0), 2)):
        _save(ckpt, block, _counts(b0=b0))
        with np.load(ckpt.path(block)) as f:
            meta = json.loads(str(f["meta"]))
            assert sorted(f.files) == ["confusion", "meta", "pred", "tp", "true"]
        assert meta == {"format": "fastseg.checkpoint-block", "version": 2,
                        "fingerprint": ckpt.key, "block": list(block), "b0": b0,
                        "ignored": 4, "soft": False}  # fmt: skip
    # A block as the version-2 writer laid it out reads back as Counts.
    c = _counts(b0=6, soft=True)
    meta = {"fingerprint": ckpt.key, "block": [3, 1], "b0": 6, "ignored": 0, "soft": True}
    save_versioned(ckpt.path((3, 1)), "fastseg.checkpoint-block", 2, meta,
                   {"tp": c.tp, "pred": c.pred, "true": c.true})  # fmt: skip
    assert _load(ckpt, (3, 1), b0=6, soft=True) == c


def test_stray_files_in_blocks_are_ignored_and_named(tmp_path, caplog):
    ckpt = Checkpoint(tmp_path / "ck", FP)
    for block in ((0, 0), (1, 1)):
        _save(ckpt, block)
    strays = ["notes.txt", "foo.npz", "1_2.npz.bak", "01_0.npz", "5_0.npz", "0_0_0.npz",
              "1_-1.npz", "0_1.npz.tmp"]  # fmt: skip
    for name in strays:
        (ckpt.blocks / name).write_text("not a block")
    (ckpt.blocks / "1_0.npz").mkdir()
    (ckpt.blocks / ".0_1.npz.x1y2.tmp").write_text("a write in progress")
    with caplog.at_level(logging.WARNING, logger="fastseg"):
        done = ckpt.done((2, 2))
    assert done == {(0, 0), (1, 1)}
    [record] = [r for r in caplog.records if "ignoring" in r.getMessage()]
    message = record.getMessage()
    assert record.levelno == logging.WARNING
    assert "ignoring 9 file(s)" in message
    for name in [*strays, "1_0.npz"]:
        assert name in message
    assert ".0_1.npz" not in message  # temporaries of writes in progress are no strays
    assert block_index("12_0_3.npz") == (12, 0, 3)
    assert block_index("01_0.npz") is None
    assert block_index("1_2.npz.bak") is None


# -------------------------------------------------------------------- the manifest


def _manifest(ckpt_dir):
    return json.loads((ckpt_dir / MANIFEST).read_text())


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is damaged or not a fastseg checkpoint manifest: empty"),
        (b"{\"format\": ", "is damaged or not a fastseg checkpoint manifest: not JSON"),
        (b"\xff\xfe\x00garbage", "is damaged or not a fastseg checkpoint manifest: not JSON"),
        (b"[1, 2]", "is not a fastseg checkpoint manifest file: its metadata is list"),
        (b"\"text\"", "its metadata is str, not a JSON object"),
        (json.dumps({"format": "other.tool", "version": 2}).encode(),
         r"unsupported checkpoint manifest format \(format 'other.tool'; expected "
         r"'fastseg.checkpoint'\)"),
        (json.dumps({"version": 2}).encode(), r"\(no format tag"),
        (json.dumps({"format": "fastseg.checkpoint", "version": 3, "fingerprint": {}}).encode(),
         "version 3; this fastseg reads version 2; it was written by a newer fastseg"),
        (json.dumps({"format": "fastseg.checkpoint", "version": 2}).encode(),
         "is damaged: it has no fingerprint object"),
    ],
)  # fmt: skip
def test_a_damaged_or_foreign_manifest_is_a_value_error_naming_it(tmp_path, content, message):
    directory = tmp_path / "ck"
    directory.mkdir()
    (directory / MANIFEST).write_bytes(content)
    with pytest.raises(ValueError, match=message) as info:
        Checkpoint(directory, FP)
    assert str(directory / MANIFEST) in str(info.value)
    assert type(info.value) is ValueError


def test_a_checkpoint_of_an_older_version_is_refused_with_advice(tmp_path):
    old = tmp_path / "checkpoint_v1"
    shutil.copytree(DATA / "checkpoint_v1", old)  # written by fastseg 0.1.0
    with pytest.raises(ValueError, match="older fastseg") as info:
        Checkpoint(old, {"pred": "data.zarr/pred", "true": "data.zarr/true", "ignore_index": 255})
    assert str(info.value) == (
        f"{old / MANIFEST} has unsupported checkpoint manifest format version 1; this "
        "fastseg reads version 2 (it was written by an older fastseg, whose blocks cannot "
        f"be reused); delete {old} to start over"
    )
    # Its blocks, without their manifest, are not taken either.
    (old / MANIFEST).unlink()
    with pytest.raises(ValueError, match=r"1 unreadable or older block file\(s\) \(e.g. "
                                         r"0_0_0_0.npz\)"):  # fmt: skip
        Checkpoint(old, FP)
    assert not (old / MANIFEST).exists()


def test_a_path_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match=r"checkpoint .*file cannot be used"):
        Checkpoint(tmp_path / "file", FP)


# --------------------------------------------- other inputs, lost manifests, races


def test_other_options_with_finished_blocks_are_refused_with_what_to_do(tmp_path):
    directory = tmp_path / "ck"
    ckpt = Checkpoint(directory, FP)
    _save(ckpt, (0, 0))
    _save(ckpt, (0, 1))
    (ckpt.blocks / "notes.txt").write_text("stray files are not blocks")
    with pytest.raises(ValueError, match="finished block") as info:
        Checkpoint(directory, OTHER)
    assert str(info.value) == (
        f"checkpoint {directory} holds 2 finished block(s) of an evaluation of other inputs "
        "or options (differs in: ignore_index; ignore_index: 255 there, 0 here): they cannot "
        f"be used here. To evaluate these inputs with these options, delete {directory} to "
        "start over, or use another checkpoint directory (--checkpoint)"
    )
    ckpt.mark_failed()  # a failed run with finished blocks still protects them
    with pytest.raises(ValueError, match="holds 2 finished block"):
        Checkpoint(directory, OTHER)
    assert _manifest(directory)["fingerprint"] == FP


def test_a_manifest_in_use_without_blocks_is_refused(tmp_path):
    directory = tmp_path / "ck"
    Checkpoint(directory, FP)  # another run, still counting its first blocks
    with pytest.raises(ValueError, match=r"holds no finished block yet: another run may be "
                                         r"using it. If none is, delete"):  # fmt: skip
        Checkpoint(directory, OTHER)


def test_a_failed_run_without_blocks_gives_way_to_the_next(tmp_path, caplog):
    directory = tmp_path / "ck"
    first = Checkpoint(directory, OTHER)
    first.mark_failed()
    assert _manifest(directory)["failed"] is True
    with caplog.at_level(logging.WARNING, logger="fastseg"):
        second = Checkpoint(directory, FP)
    assert "replacing its manifest" in caplog.text
    assert "ignore_index: 0 there, 255 here" in caplog.text
    assert _manifest(directory)["fingerprint"] == FP
    assert "failed" not in _manifest(directory)
    assert second.done((1, 1)) == set()
    # The failed run's fingerprint is now the foreign one.
    with pytest.raises(ValueError, match="holds no finished block yet"):
        Checkpoint(directory, OTHER)
    # A failed run resumed with the same inputs clears the mark.
    second.mark_failed()
    Checkpoint(directory, FP)
    assert "failed" not in _manifest(directory)


def test_blocks_without_a_manifest_are_reused_only_for_their_own_evaluation(tmp_path, caplog):
    directory = tmp_path / "ck"
    ckpt = Checkpoint(directory, FP)
    _save(ckpt, (0, 0))
    _save(ckpt, (1, 0))
    (directory / MANIFEST).unlink()
    with pytest.raises(ValueError, match="no manifest") as info:
        Checkpoint(directory, OTHER)
    assert str(info.value) == (
        f"checkpoint {directory} has no {MANIFEST}, and {directory / 'blocks'} holds 2 "
        "block(s) of another evaluation (e.g. 0_0.npz): they cannot be used for these inputs "
        f"and options. Delete {directory} to start over, or use another checkpoint directory "
        "(--checkpoint)"
    )
    assert not (directory / MANIFEST).exists()
    with caplog.at_level(logging.INFO, logger="fastseg"):
        again = Checkpoint(directory, FP)
    assert "belong to this evaluation and are reused" in caplog.text
    assert again.done((2, 1)) == {(0, 0), (1, 0)}
    assert _manifest(directory)["fingerprint"] == FP


def test_two_runs_racing_on_one_directory_cannot_both_create_it(tmp_path):
    directory = tmp_path / "ck"
    runs = 8
    barrier = threading.Barrier(runs)
    outcome: dict[int, object] = {}

    def start(i):
        barrier.wait()
        try:
            Checkpoint(directory, {**FP, "run": i})
            outcome[i] = "created"
        except ValueError as exc:
            outcome[i] = exc

    threads = [threading.Thread(target=start, args=(i,)) for i in range(runs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [i for i, o in outcome.items() if o == "created"]
    assert len(winners) == 1
    assert _manifest(directory)["fingerprint"]["run"] == winners[0]
    for i, o in outcome.items():
        if i != winners[0]:
            assert "another run may be using it" in str(o)
    assert [p.name for p in directory.iterdir() if p.name.startswith(".")] == []


def test_the_loser_of_a_race_compares_with_the_winner(tmp_path, monkeypatch):
    directory = tmp_path / "ck"
    real = Checkpoint._check_orphans
    inside = []

    def winner_slips_in(self):
        real(self)
        if not inside:  # the winner creates it between our look and our link
            inside.append(True)
            Checkpoint(directory, FP)

    monkeypatch.setattr(Checkpoint, "_check_orphans", winner_slips_in)
    Checkpoint(directory, FP)  # same evaluation: the loser resumes the winner's
    assert inside
    assert _manifest(directory)["fingerprint"] == FP
    shutil.rmtree(directory)
    inside.clear()
    with pytest.raises(ValueError, match="another run may be using it"):
        Checkpoint(directory, OTHER)
    assert inside
    assert _manifest(directory)["fingerprint"] == FP

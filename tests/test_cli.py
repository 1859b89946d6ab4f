"""The fastseg command, run in-process through ``main``."""

from __future__ import annotations

import csv
import io
import json
import shlex
from pathlib import Path

import numpy as np
import pytest
import zarr

from fastseg.cli import main
from fastseg.stream import Accumulator


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "data.zarr"
    code = main(["synth", str(path), "--images", "6", "--size", "48", "40", "--classes", "5",
                 "--chunks", "2", "24", "40", "--no-progress"])  # fmt: skip
    assert code == 0
    return path


def _in_memory_report(path, **kwargs):
    g = zarr.open_group(path, mode="r")
    names = g.attrs["class_names"]
    acc = Accumulator(5, ignore_index=255, class_names=names).update(g["true"][:], g["pred"][:])
    return acc.compute(**kwargs)


def test_synth_writes_a_store_with_attributes(store):
    g = zarr.open_group(store, mode="r")
    assert g["pred"].shape == (6, 48, 40, 5)
    assert g["true"].shape == (6, 48, 40)
    assert g.attrs["num_classes"] == 5
    assert g.attrs["ignore_index"] == 255


def test_evaluate_json_equals_the_in_memory_report(store, capsys):
    assert main(["evaluate", "--true", str(store),
                 "--pred", str(store), "--format", "json", "--no-progress"]) == 0
    out = json.loads(capsys.readouterr().out)
    expected = _in_memory_report(store).to_dict()
    assert out["summary"] == expected["summary"]
    assert out["classes"] == expected["classes"]
    assert out["confusion_matrix"] == expected["confusion_matrix"]
    assert out["ignored"] == expected["ignored"] > 0  # the store's ignore_index was used
    assert out["images"] is None
    assert out["complete"] is True


def test_evaluate_table_csv_output_file_and_preset(store, tmp_path, capsys):
    assert main(["evaluate", "--true", str(store),
                 "--pred", str(store), "--no-progress", "--per-image"]) == 0
    text = capsys.readouterr().out
    assert "mIoU" in text
    assert "worst images by IoU" in text
    out = tmp_path / "r.csv"
    args = ["evaluate", "--true", str(store),
            "--pred", str(store), "--format", "csv", "--output", str(out),
            "--preset", "mmseg", "--no-progress"]  # fmt: skip
    assert main(args) == 0
    assert capsys.readouterr().out == ""
    rows = [r for r in csv.DictReader(io.StringIO(out.read_text())) if r["kind"] == "class"]
    expected = _in_memory_report(store, preset="mmseg")
    assert [float(r["iou"]) if r["iou"] else np.nan for r in rows] == pytest.approx(
        expected.iou.tolist(), nan_ok=True)  # fmt: skip


def test_exclude_class_changes_the_means(store, capsys):
    main(["evaluate", "--true", str(store),
          "--pred", str(store), "--format", "json", "--no-progress",
          "--exclude-class", "0"])  # fmt: skip
    out = json.loads(capsys.readouterr().out)
    assert out["summary"]["miou"] == pytest.approx(_in_memory_report(store, exclude=[0]).miou)


def test_checkpoint_resume_through_the_cli(store, tmp_path, capsys):
    args = ["evaluate", "--true", str(store),
            "--pred", str(store), "--format", "json", "--no-progress",
            "--checkpoint", str(tmp_path / "ck")]  # fmt: skip
    assert main(args) == 0
    first = json.loads(capsys.readouterr().out)
    assert len(list((tmp_path / "ck" / "blocks").glob("*.npz"))) == 6
    assert main(args) == 0
    second = json.loads(capsys.readouterr().out)
    assert second["meta"]["blocks_resumed"] == 6
    assert second["summary"] == first["summary"]


def test_demo_runs_and_prints_a_report(capsys):
    assert main(["demo", "--images", "4", "--size", "64", "64", "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "mIoU" in captured.out
    assert "synthetic images" in captured.err


def test_help_has_examples(capsys):
    assert main(["evaluate", "--help"]) == 0
    assert "examples:" in capsys.readouterr().out


def test_the_first_help_examples_run_as_written(tmp_path, monkeypatch, capsys):
    """`fastseg evaluate --help`'s first four examples: the synth line, then three runs
    on what it wrote (their report equals the one the plain run prints)."""
    from fastseg.cli import EVALUATE_EXAMPLES

    lines = EVALUATE_EXAMPLES.replace("\\\n", " ").splitlines()[1:5]
    monkeypatch.chdir(tmp_path)
    outputs = []
    for line in lines:
        argv = shlex.split(line.split("#")[0])
        assert argv[0] == "fastseg"
        assert main([*argv[1:], "--no-progress"]) == 0, line
        outputs.append(capsys.readouterr().out)
    assert "mIoU" in outputs[1]
    assert json.loads((tmp_path / "report.json").read_text())["num_classes"] == 5
    rows = list(csv.DictReader(io.StringIO(outputs[3])))
    assert [r["name"] for r in rows if r["kind"] == "class"][:2] == ["background", "class1"]


@pytest.fixture(scope="module")
def two_label_stores(tmp_path_factory):
    """Truth and prediction label maps in two stores: swapping them changes precision."""
    root = tmp_path_factory.mktemp("order")
    rng = np.random.default_rng(9)
    truth = rng.integers(0, 3, (2, 16, 12)).astype(np.uint8)
    pred = np.where(rng.random(truth.shape) < 0.3, 0, truth).astype(np.uint8)
    for name, x in (("t.zarr", truth), ("p.zarr", pred)):
        zarr.save_array(str(root / name), x)
    return root / "t.zarr", root / "p.zarr", truth, pred


def _report(argv, capsys):
    assert main([*argv, "--num-classes", "3", "--format", "json", "--no-progress"]) == 0
    captured = capsys.readouterr()
    return json.loads(captured.out), captured.err


def test_inputs_are_named_and_the_old_positional_form_warns(two_label_stores, capsys):
    t, p, truth, _ = two_label_stores
    named, err = _report(["evaluate", "--true", str(t), "--pred", str(p)], capsys)
    assert err == ""
    support = np.bincount(truth.ravel(), minlength=3)
    assert [c["support"] for c in named["classes"]] == support.tolist()
    swapped, _ = _report(["evaluate", "--true", str(p), "--pred", str(t)], capsys)
    assert swapped != named
    # fastseg 0.1's positional PRED TRUE: the same meaning, with a warning naming the fix
    old, err = _report(["evaluate", str(p), str(t)], capsys)
    assert old == named
    assert "positional PRED TRUE is deprecated" in err
    assert f"fastseg evaluate --true {t} --pred {p}" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["evaluate"], "--true and --pred are required"),
        (["evaluate", "--true", "t.zarr"], "--pred is required"),
        (["evaluate", "p.zarr", "--true", "t.zarr"], "unexpected argument(s) p.zarr"),
        (["evaluate", "a", "b", "c"], "unexpected argument(s) a b c"),
    ],
)
def test_inputs_missing_or_mixed_exit_2_naming_the_flags(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "fastseg evaluate --true TRUE --pred PRED" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["evaluate", "--true", "nowhere.zarr",
          "--pred", "nowhere.zarr", "--no-progress"], "no Zarr array or group"),
        (["synth", "x.zarr", "--images", "2", "--size", "8", "8", "--classes", "1"], "classes"),
    ],
)
def test_bad_input_exits_2_with_one_line(args, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1


def test_bad_usage_exits_2(capsys):
    assert main(["evaluate", "--no-such-option"]) == 2
    assert main([]) == 2


def test_missing_chunk_exits_2_and_decode_failure_exits_1(store, tmp_path, capsys):
    import shutil

    broken = tmp_path / "broken.zarr"
    shutil.copytree(store, broken)
    chunk = broken / "pred" / "c" / "1" / "0" / "0" / "0"
    chunk.unlink()
    assert main(["evaluate", "--true", str(broken), "--pred", str(broken), "--no-progress"]) == 2
    assert "lacks 1 chunk(s): (1, 0, 0, 0)" in capsys.readouterr().err
    chunk.write_bytes(b"corrupt")
    assert main(["evaluate", "--true", str(broken), "--pred", str(broken), "--no-progress"]) == 1
    assert "chunk (1, 0, 0, 0) of pred" in capsys.readouterr().err


def test_plot_is_written(store, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    png = tmp_path / "r.png"
    assert main(["evaluate", "--true", str(store),
                 "--pred", str(store), "--no-progress", "--plot", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_output_is_not_left_half_written(store, tmp_path, capsys):
    out = tmp_path / "r.json"
    assert main(["evaluate", "--true", str(store),
                 "--pred", str(store), "--format", "json", "--output", str(out),
                 "--no-progress"]) == 0  # fmt: skip
    assert json.loads(out.read_text())["complete"] is True
    assert [p.name for p in Path(tmp_path).iterdir()] == ["r.json"]


def test_soft_evaluation_matches_the_soft_accumulator(store, capsys):
    assert main(["evaluate", "--true", str(store),
                 "--pred", str(store), "--soft", "--format", "json",
                 "--no-progress"]) == 0  # fmt: skip
    out = json.loads(capsys.readouterr().out)
    g = zarr.open_group(store, mode="r")
    acc = Accumulator(5, ignore_index=255, soft=True).update(g["true"][:], g["pred"][:])
    assert out["kind"] == "soft"
    assert out["confusion_matrix"] is None
    assert out["summary"]["miou"] == pytest.approx(acc.compute().miou, rel=1e-12)


def test_channels_first_store_takes_its_class_axis_from_the_attributes(tmp_path, capsys):
    path = tmp_path / "first.zarr"
    assert main(["synth", str(path), "--images", "2", "--size", "32", "24", "--classes", "4",
                 "--class-axis", "1", "--no-progress"]) == 0  # fmt: skip
    assert main(["evaluate", "--true", str(path),
                 "--pred", str(path), "--format", "json", "--no-progress"]) == 0
    out = json.loads(capsys.readouterr().out)
    g = zarr.open_group(path, mode="r")
    acc = Accumulator(4, ignore_index=255, class_axis=1, class_names=g.attrs["class_names"])
    expected = acc.update(g["true"][:], g["pred"][:]).compute().to_dict()
    assert out["summary"] == expected["summary"]


# ------------------------------------------ every option checked before any compute


@pytest.fixture
def no_compute(monkeypatch):
    """Make reaching the compute a test failure."""
    import fastseg.dataset

    def fail(*args, **kwargs):
        pytest.fail("the graph was computed although an option was bad")

    monkeypatch.setattr(fastseg.dataset, "_compute", fail)


def _free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--preset", "mmsegg"], "argument --preset: invalid choice: 'mmsegg'"),
        (["--exclude-class", "7"], "fastseg: error: --exclude-class: class 7 is out of range "
                                   "for 5 classes (indices -5 to 4)"),
        (["--exclude-class", "raod"], "fastseg: error: --exclude-class: unknown class name 'raod'; "
         "known names: background, class1, class2, class3, class4 (or an index, 'background', "
         "'last')"),
        (["--workers", "0"], "fastseg: error: --workers 0: the local scheduler needs at least 1 "
                             "thread"),
        (["--plot", "{tmp}/r.xyz"], "fastseg: error: --plot {tmp}/r.xyz: matplotlib cannot write "
                                    ".xyz files; use one of "),
        (["--output", "{tmp}"], "fastseg: error: --output {tmp}: is a directory; give a file name"),
        (["--output", "{tmp}/new/"], "fastseg: error: --output {tmp}/new/: is a directory"),
        (["--output", "{tmp}/file.txt/r.json"], "fastseg: error: --output {tmp}/file.txt/r.json: "
         "{tmp}/file.txt is a file, not a directory, so the file cannot be created there"),
        (["--plot", "{tmp}/file.txt/sub/r.png"], "fastseg: error: --plot {tmp}/file.txt/sub/r.png: "
         "{tmp}/file.txt is a file, not a directory"),
        (["--num-classes", "6"], "fastseg: error: --num-classes 6 but PRED has 5 classes"),
    ],
)  # fmt: skip
def test_bad_options_exit_2_before_any_compute(store, tmp_path, no_compute, capsys, extra,
                                               message):  # fmt: skip
    (tmp_path / "file.txt").write_text("not a directory")
    extra = [x.replace("{tmp}", str(tmp_path)) for x in extra]
    args = ["evaluate", "--true", str(store), "--pred", str(store), "--no-progress",
            "--checkpoint", str(tmp_path / "ck"), *extra]  # fmt: skip
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message.replace("{tmp}", str(tmp_path)) in err
    assert err.count("\n") == 1 or "usage:" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt"]  # nothing created


def test_an_unreachable_scheduler_exits_2_within_seconds(store, no_compute, capsys):
    pytest.importorskip("distributed")
    import time

    address = f"tcp://127.0.0.1:{_free_port()}"
    started = time.monotonic()
    assert main(["evaluate", "--true", str(store),
                 "--pred", str(store), "--scheduler", address]) == 2
    assert time.monotonic() - started < 10
    err = capsys.readouterr().err
    assert err.startswith(f"fastseg: error: --scheduler {address}: no Dask scheduler answered "
                          "within 5 s")  # fmt: skip
    assert err.count("\n") == 1


def test_errors_use_the_cli_flag_names(store, tmp_path, no_compute, capsys):
    # a label-map prediction and truth without a class count
    labels = tmp_path / "labels.zarr"
    g = zarr.open_group(labels, mode="w")
    g.create_array("pred", shape=(2, 4, 4), dtype="u1")[:] = 0
    g.create_array("true", shape=(2, 4, 4), dtype="u1")[:] = 0
    assert main(["evaluate", "--true", str(labels), "--pred", str(labels), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "--num-classes N" in err
    assert "num_classes" not in err
    # a store attribute that is not an integer: named as the attribute, fixed with the flag
    g.attrs["ignore_index"] = "void"
    assert main(["evaluate", "--true", str(labels),
                 "--pred", str(labels), "--num-classes", "3"]) == 2
    assert capsys.readouterr().err == (
        "fastseg: error: the truth store's ignore_index attribute is 'void', not an integer; "
        "pass --ignore-index K to override it\n"
    )
    # two arrays, neither named pred
    other = tmp_path / "other.zarr"
    g = zarr.open_group(other, mode="w")
    g.create_array("a", shape=(2, 4, 4, 3), dtype="f4")
    g.create_array("b", shape=(2, 4, 4, 3), dtype="f4")
    assert main(["evaluate", "--true", str(store), "--pred", str(other), "--no-progress"]) == 2
    assert "(array path, e.g. --pred-array a)" in capsys.readouterr().err


# --------------------------------------------------------------- output targets


def test_missing_output_directories_are_created(store, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out = tmp_path / "a" / "b" / "r.json"
    plots = tmp_path / "plots"
    assert main(["evaluate", "--true", str(store),
                 "--pred", str(store), "--format", "json", "--no-progress",
                 "--output", str(out), "--plot", f"{plots}/"]) == 0  # fmt: skip
    assert json.loads(out.read_text())["complete"] is True
    assert (plots / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # an existing directory gets report.png too; another suffix, another format
    assert main(["evaluate", "--true", str(store),
                 "--pred", str(store), "--no-progress", "--plot", str(plots),
                 "--output", str(tmp_path / "r.txt")]) == 0  # fmt: skip
    assert main(["evaluate", "--true", str(store), "--pred", str(store), "--no-progress", "--plot",
                 str(plots / "r.svg"), "--output", str(tmp_path / "r.txt")]) == 0  # fmt: skip
    assert (plots / "r.svg").read_text().lstrip().startswith("<?xml")
    assert sorted(p.name for p in plots.iterdir()) == ["r.svg", "report.png"]


def test_a_missing_matplotlib_is_reported_up_front(store, tmp_path, no_compute, capsys,
                                                    monkeypatch):  # fmt: skip
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib.backend_bases", None)  # import fails
    assert main(["evaluate", "--true", str(store),
                 "--pred", str(store), "--plot", str(tmp_path / "r.png")]) == 2
    assert capsys.readouterr().err == (
        "fastseg: error: --plot needs matplotlib; install the plot extra: "
        "pip install 'fastseg[plot]'\n"
    )


def test_output_to_a_named_pipe_writes_into_it(store, tmp_path, capsys):
    import os
    import threading

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_text()), daemon=True)
    reader.start()
    assert main(["evaluate", "--true", str(store),
                 "--pred", str(store), "--format", "json", "--no-progress",
                 "--output", str(fifo)]) == 0  # fmt: skip
    reader.join(30)
    assert fifo.is_fifo()  # written into, not replaced by a regular file
    assert json.loads(received[0])["complete"] is True


# ------------------------------------------------------------- --exclude-class


def test_exclude_class_takes_names_background_last_and_negative_indices(store, capsys):
    args = ["evaluate", "--true", str(store),
            "--pred", str(store), "--format", "json", "--no-progress",
            "--exclude-class"]  # fmt: skip
    assert main([*args, "class2", "background", "last"]) == 0
    out = json.loads(capsys.readouterr().out)
    expected = _in_memory_report(store, exclude=[2, 0, "last"])
    assert out["summary"]["miou"] == pytest.approx(expected.miou, rel=1e-12)
    assert out["policy"]["excluded"] == [0, 2, 4]
    assert main([*args, "-2"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["policy"]["excluded"] == [3]
    assert out["summary"]["miou"] == pytest.approx(_in_memory_report(store, exclude=[3]).miou)


# ------------------------------------------------------------ batch-job manners


def test_progress_off_a_terminal_is_plain_lines(store, monkeypatch, capsys):
    import fastseg.progress

    monkeypatch.setattr(fastseg.progress, "DELAY", 0.0)
    monkeypatch.setattr(fastseg.progress, "INTERVAL", 0.0)
    assert main(["evaluate", "--true", str(store), "--pred", str(store), "--format", "json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["complete"] is True
    assert "\r" not in captured.err
    assert "\x1b" not in captured.err
    lines = captured.err.splitlines()
    assert 1 <= len(lines) <= 7  # 6 blocks
    assert lines[-1].startswith("fastseg: 6/6 blocks (100%), ")


def test_synth_progress_off_a_terminal_is_plain_lines(tmp_path, monkeypatch, capsys):
    import fastseg.progress

    monkeypatch.setattr(fastseg.progress, "DELAY", 0.0)
    assert main(["synth", str(tmp_path / "s.zarr"), "--images", "3", "--size", "8", "8",
                 "--classes", "3"]) == 0  # fmt: skip
    assert capsys.readouterr().err == "fastseg: 3/3 images (100%), 0s elapsed\n"


def test_verbose_says_how_many_blocks_were_resumed(store, tmp_path, capsys, caplog):
    import logging

    args = ["evaluate", "--true", str(store), "--pred", str(store), "--no-progress", "-v",
            "--checkpoint", str(tmp_path / "ck")]  # fmt: skip
    with caplog.at_level(logging.INFO, logger="fastseg"):
        assert main(args) == 0
        assert f"checkpoint {tmp_path / 'ck'}: 0 of 6 blocks resumed, 6 to count" in caplog.text
        caplog.clear()
        assert main(args) == 0
        assert f"checkpoint {tmp_path / 'ck'}: 6 of 6 blocks resumed, 0 to count" in caplog.text
        assert "ignore index 255, from the truth store's attributes" in caplog.text


def test_version_and_license(capsys):
    """`fastseg --version` names the package's version; the LICENSE file pyproject cites is
    in the repository."""
    import tomllib

    import fastseg

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"fastseg {fastseg.__version__}"
    root = Path(__file__).resolve().parents[1]
    meta = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    assert "MIT" in str(meta.get("license"))
    assert "MIT License" in (root / "LICENSE").read_text()

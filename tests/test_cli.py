"""The fastseg command, run in-process through ``main``."""

from __future__ import annotations

import csv
import io
import json
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
    assert main(["evaluate", str(store), str(store), "--format", "json", "--no-progress"]) == 0
    out = json.loads(capsys.readouterr().out)
    expected = _in_memory_report(store).to_dict()
    assert out["summary"] == expected["summary"]
    assert out["classes"] == expected["classes"]
    assert out["confusion_matrix"] == expected["confusion_matrix"]
    assert out["ignored"] == expected["ignored"] > 0  # the store's ignore_index was used
    assert out["images"] is None
    assert out["complete"] is True


def test_evaluate_table_csv_output_file_and_preset(store, tmp_path, capsys):
    assert main(["evaluate", str(store), str(store), "--no-progress", "--per-image"]) == 0
    text = capsys.readouterr().out
    assert "mIoU" in text
    assert "worst images by IoU" in text
    out = tmp_path / "r.csv"
    args = ["evaluate", str(store), str(store), "--format", "csv", "--output", str(out),
            "--preset", "mmseg", "--no-progress"]  # fmt: skip
    assert main(args) == 0
    assert capsys.readouterr().out == ""
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    expected = _in_memory_report(store, preset="mmseg")
    assert [float(r["iou"]) if r["iou"] else np.nan for r in rows] == pytest.approx(
        expected.iou.tolist(), nan_ok=True)  # fmt: skip


def test_exclude_class_changes_the_means(store, capsys):
    main(["evaluate", str(store), str(store), "--format", "json", "--no-progress",
          "--exclude-class", "0"])  # fmt: skip
    out = json.loads(capsys.readouterr().out)
    assert out["summary"]["miou"] == pytest.approx(_in_memory_report(store, exclude=[0]).miou)


def test_checkpoint_resume_through_the_cli(store, tmp_path, capsys):
    args = ["evaluate", str(store), str(store), "--format", "json", "--no-progress",
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


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["evaluate", "nowhere.zarr", "nowhere.zarr", "--no-progress"], "no Zarr array or group"),
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
    assert main(["evaluate", str(broken), str(broken), "--no-progress"]) == 2
    assert "lacks 1 chunk(s): (1, 0, 0, 0)" in capsys.readouterr().err
    chunk.write_bytes(b"corrupt")
    assert main(["evaluate", str(broken), str(broken), "--no-progress"]) == 1
    assert "chunk (1, 0, 0, 0) of pred" in capsys.readouterr().err


def test_plot_is_written(store, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    png = tmp_path / "r.png"
    assert main(["evaluate", str(store), str(store), "--no-progress", "--plot", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_output_is_not_left_half_written(store, tmp_path, capsys):
    out = tmp_path / "r.json"
    assert main(["evaluate", str(store), str(store), "--format", "json", "--output", str(out),
                 "--no-progress"]) == 0  # fmt: skip
    assert json.loads(out.read_text())["complete"] is True
    assert [p.name for p in Path(tmp_path).iterdir()] == ["r.json"]


def test_soft_evaluation_matches_the_soft_accumulator(store, capsys):
    assert main(["evaluate", str(store), str(store), "--soft", "--format", "json",
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
    assert main(["evaluate", str(path), str(path), "--format", "json", "--no-progress"]) == 0
    out = json.loads(capsys.readouterr().out)
    g = zarr.open_group(path, mode="r")
    acc = Accumulator(4, ignore_index=255, class_axis=1, class_names=g.attrs["class_names"])
    expected = acc.update(g["true"][:], g["pred"][:]).compute().to_dict()
    assert out["summary"] == expected["summary"]

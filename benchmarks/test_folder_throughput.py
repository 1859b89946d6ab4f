"""Folder-of-NIfTI benchmark (issue 10): ``fastseg.evaluate`` on two folders of ``.nii.gz``.

Group ``nifti``, on one nnU-Net-like folder pair (``scripts/make_folders.py nnunet``:
``labelsTs/case_XXXX.nii.gz`` truth and ``pred/case_XXXX.nii.gz`` predictions, uint8,
identical names, ragged sizes, voxel spacing):

``numpy_loop``  what a user writes: for each case, nibabel loads both volumes and
                ``np.bincount(true * N + pred)`` makes its confusion matrix (one thread);
``read``        nibabel loading (decompressing) both volumes of every case, nothing else,
                one thread: the decode floor of the loop;
``evaluate``    ``fastseg.evaluate(pred_dir, truth_dir, num_classes=N)`` (threads, all
                cores; planning, header checks and the report included).

Every method's numbers are checked against the loop's (identical per-case counts).
Sizes: full is 16 cases of up to 96 x 192 x 192 voxels, 5 classes; under
``--benchmark-disable`` 3 small cases, run once as a correctness test.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

import fastseg

nibabel = pytest.importorskip("nibabel")

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "make_folders.py"
CLASSES = 5
ROUNDS = 5


def _make_folders():
    spec = importlib.util.spec_from_file_location("make_folders", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def folders(tmp_path_factory, bench_size):
    cases, size = (16, (96, 192, 192)) if bench_size == "full" else (3, (8, 16, 16))
    out = tmp_path_factory.mktemp("nifti")
    names = _make_folders().write_nnunet(out, cases=cases, size=size, classes=CLASSES)
    return out / "pred", out / "labelsTs", names


def _load(path: Path) -> np.ndarray:
    return np.asanyarray(nibabel.load(path).dataobj)


def numpy_loop(pred_dir: Path, true_dir: Path, names: list[str]) -> np.ndarray:
    """Per-case confusion matrices (truth rows), nibabel + bincount: (cases, N, N)."""
    out = np.zeros((len(names), CLASSES, CLASSES), np.int64)
    for i, name in enumerate(names):
        t = _load(true_dir / f"{name}.nii.gz").astype(np.int64)
        p = _load(pred_dir / f"{name}.nii.gz")
        cm = np.bincount((t * CLASSES + p).ravel(), minlength=CLASSES * CLASSES)
        out[i] = cm.reshape(CLASSES, CLASSES)
    return out


def read_only(pred_dir: Path, true_dir: Path, names: list[str]) -> int:
    total = 0
    for name in names:
        total += _load(true_dir / f"{name}.nii.gz").size + _load(pred_dir / f"{name}.nii.gz").size
    return total


def _tag(benchmark, method: str) -> None:
    benchmark.group = "nifti"
    benchmark.extra_info.update(workload="nifti", layout="labels", method=method)


def _check(report: fastseg.Report, cms: np.ndarray, names: list[str]) -> None:
    diag = np.diagonal(cms, axis1=1, axis2=2)
    np.testing.assert_array_equal(report.counts.tp, diag)
    np.testing.assert_array_equal(report.counts.true, cms.sum(axis=2))
    np.testing.assert_array_equal(report.counts.pred, cms.sum(axis=1))
    np.testing.assert_array_equal(report.counts.confusion, cms.sum(axis=0))
    assert report.ids == tuple(names)


def test_numpy_loop(benchmark, folders):
    pred, true, names = folders
    _tag(benchmark, "numpy_loop")
    cms = benchmark.pedantic(numpy_loop, args=(pred, true, names), rounds=ROUNDS, iterations=1)
    assert cms.sum() == read_only(pred, true, names) // 2


def test_read(benchmark, folders):
    pred, true, names = folders
    _tag(benchmark, "read")
    voxels = benchmark.pedantic(read_only, args=(pred, true, names), rounds=ROUNDS, iterations=1)
    assert voxels == 2 * numpy_loop(pred, true, names).sum()


def test_evaluate(benchmark, folders):
    pred, true, names = folders
    _tag(benchmark, "evaluate")

    def run() -> fastseg.Report:
        return fastseg.evaluate(true, pred, num_classes=CLASSES, progress=False)

    run()  # compile or load the kernels, warm the page cache
    report = benchmark.pedantic(run, rounds=ROUNDS, iterations=1)
    _check(report, numpy_loop(pred, true, names), names)

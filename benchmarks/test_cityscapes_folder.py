"""Cityscapes folder benchmark: ``fastseg evaluate --dataset cityscapes --instances`` end to end.

Group ``cityscapes-folder``, on one Cityscapes-format folder written by
``scripts/make_folders.py cityscapes OUT --instances --images N`` (2048 x 1024 uint8
``*_gtFine_labelIds.png`` and uint16 ``*_gtFine_instanceIds.png`` in city sub-folders of
``OUT/gtFine/val``, uint8 ``*_leftImg8bit.png`` predictions in ``OUT/results``)::

``official``            cityscapesScripts' ``evalPixelLevelSemanticLabeling`` as a user
                        runs it: its ``main()`` in a fresh ``python -c`` process, with
                        ``CITYSCAPES_DATASET`` / ``CITYSCAPES_RESULTS`` pointed at the folder
                        (instance-level scoring, iIoU, is on by default); it writes its
                        ``resultPixelLevelSemanticLabeling.json`` to ``CITYSCAPES_EXPORT_DIR``.
                        Whether it found its optional Cython confusion-matrix extension
                        (``CSUPPORT``; built only with ``CYTHONIZE_EVAL`` set, else it counts with
                        ``np.unique``) is recorded in ``extra_info["official_csupport"]``;
``fastseg``             ``python -m fastseg evaluate --true OUT/gtFine/val --pred
                        OUT/results --dataset cityscapes --instances --format cityscapes
                        --output FILE --no-progress``, a fresh process (start-up, imports, planning,
                        every core, the report written), Numba cache warm;
``decode-floor``        a fresh process that decodes every PNG the evaluation needs (the
                        prediction, labelIds and instanceIds of each image) with
                        ``imagecodecs.png_decode`` (libpng, the well-kept decoder the
                        issue set the floor with) on as many threads as
                        fastseg uses (``os.cpu_count()``: 2 on the issue's machine), and
                        does nothing else: the floor;
``decode-floor-fastseg`` the same with fastseg's own decoder (``fastseg.png``: libdeflate
                        and a compiled unfilter, 5-9x faster than libpng on label maps),
                        which fastseg uses since that floor was set;
``fastseg-in-process``  ``fastseg.evaluate(...)`` and the Cityscapes JSON written, in this
                        process (no start-up): fastseg minus it is the start-up share.

Every process is timed as a whole, wall time (``subprocess.run``). The issue's targets:
official / fastseg >= 5 and fastseg / decode-floor <= 1.3 on 2 cores;
``python scripts/cityscapes_ratios.py bench.json`` prints them from the saved JSON.

``test_same_scores_as_official`` runs under ``--benchmark-disable`` too: fastseg's class
IoU, category IoU, class iIoU and category iIoU (and their averages, and the evaluated
block of the confusion matrix) equal the official evaluator's result JSON on the same
files, to a relative 1e-9 (the iIoU sums are float sums taken in another order).

Sizes: timed (``--benchmark-enable``), ``FASTSEG_BENCH_CITYSCAPES_IMAGES`` images (default
100) of 2048 x 1024; under ``--benchmark-disable`` (the default, CI) 4 images of 512 x 256,
each test run once as a correctness test (``FASTSEG_BENCH_SIZE=full|small`` overrides, as
in ``benchmarks/conftest.py``). The folder is written once into
``$TMPDIR/fastseg-bench-cityscapes-<images>x<H>x<W>-seed<seed>-<hash of fastseg/synth.py>``
and reused while complete (delete it to write it again).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

import fastseg
from fastseg import synth

pytest.importorskip("PIL")
imagecodecs = pytest.importorskip("imagecodecs")
labels_module = pytest.importorskip("cityscapesscripts.helpers.labels")
pytestmark = pytest.mark.slow  # subprocesses (skipped by -m "not slow"; CI runs them)

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
SCRIPT, RATIOS = SCRIPTS / "make_folders.py", SCRIPTS / "cityscapes_ratios.py"
#: Images of the timed run (the issue asks for at least 100); the env var lets one run fewer.
IMAGES = int(os.environ.get("FASTSEG_BENCH_CITYSCAPES_IMAGES", "100"))
#: The scene behind the objects: road (label id 7), as in a street scene, so most pixels
#: are evaluated (with 0, "unlabeled", most would be skipped by both evaluators).
BACKGROUND = 7
FULL_SIZE = (1024, 2048)  # (H, W): Cityscapes' 2048 x 1024
SMALL_IMAGES, SMALL_SIZE = 4, (256, 512)
SEED = 0
ROUNDS = 5
OFFICIAL_ROUNDS = 3  # the slowest run by far: fewer rounds
#: fastseg's default number of worker threads (``fastseg/dataset.py``), used by the floor.
THREADS = os.cpu_count() or 1
TIMEOUT = 3600
GROUP = "cityscapes-folder"
KEYS = ("classScores", "categoryScores", "classInstScores", "categoryInstScores")
AVERAGES = ("averageScoreClasses", "averageScoreCategories", "averageScoreInstClasses",
            "averageScoreInstCategories")  # fmt: skip

# The official evaluator in a fresh process, as its command (csEvalPixelLevelSemanticLabeling) runs
# it: main() finds the truth under $CITYSCAPES_DATASET/gtFine/val and the predictions under
# $CITYSCAPES_RESULTS. NumPy 2.4 removed np.in1d, which its instance-level scoring calls to
# build the category masks; the same shim as tests/test_instances.py puts it back (np.isin
# on the flattened prediction: what np.in1d computed), so the evaluator runs unchanged.
OFFICIAL = """\
import numpy as np
if not hasattr(np, "in1d"):
    np.in1d = lambda a, b, assume_unique=False, invert=False: np.isin(np.ravel(a), b, invert=invert)
from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as ev
ev.main()
"""

# The floor: decode every PNG of the list (one path a line) on THREADS threads, print the
# number of pixels decoded.
FLOOR = """\
import sys
from concurrent.futures import ThreadPoolExecutor
if sys.argv[3] == "fastseg":
    from fastseg.png import decode_gray as decode_bytes
else:
    from imagecodecs import png_decode as decode_bytes

def decode(path):
    with open(path, "rb") as f:
        return decode_bytes(f.read()).size

with open(sys.argv[1]) as f:
    paths = f.read().splitlines()
with ThreadPoolExecutor(int(sys.argv[2])) as pool:
    print(sum(pool.map(decode, paths)))
"""


def _make_folders():
    spec = importlib.util.spec_from_file_location("make_folders", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _cached_folder(images: int, size: tuple[int, int], seed: int) -> Path:
    """The folder of `images` pairs of `size`, written once into the temp dir, then reused.

    Written under a temporary name and renamed when complete, so an interrupted write is
    never reused; the name carries a hash of the generator's source.
    """
    digest = hashlib.sha256(Path(synth.__file__).read_bytes()).hexdigest()[:8]
    name = (f"fastseg-bench-cityscapes-{images}x{size[0]}x{size[1]}-seed{seed}"
            f"-bg{BACKGROUND}-{digest}")  # fmt: skip
    root = Path(tempfile.gettempdir()) / name
    if (root / "complete.json").is_file():
        return root
    shutil.rmtree(root, ignore_errors=True)
    partial = root.with_name(f"{name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    args = ["cityscapes", str(partial), "--instances", "--images", str(images),
            "--size", str(size[0]), str(size[1]), "--seed", str(seed),
            "--background", str(BACKGROUND)]  # fmt: skip
    assert _make_folders().main(args) == 0
    (partial / "complete.json").write_text(json.dumps({"images": images, "size": size}))
    try:
        partial.rename(root)
    except OSError:  # another session wrote it meanwhile
        shutil.rmtree(partial, ignore_errors=True)
    return root


@pytest.fixture(scope="module")
def folder(bench_size: str) -> dict:
    """The data folder, its image list and the files the runs write."""
    images, size = (IMAGES, FULL_SIZE) if bench_size == "full" else (SMALL_IMAGES, SMALL_SIZE)
    root = _cached_folder(images, size, SEED)
    gts = sorted((root / "gtFine" / "val").rglob("*_gtFine_labelIds.png"))
    assert len(gts) == images
    preds = [root / "results" / g.name.replace("_gtFine_labelIds", "_leftImg8bit") for g in gts]
    insts = [g.with_name(g.name.replace("_labelIds", "_instanceIds")) for g in gts]
    out = Path(tempfile.mkdtemp(prefix="fastseg-bench-cityscapes-out-"))
    pngs = out / "pngs.txt"
    pngs.write_text("".join(f"{p}\n" for trio in zip(preds, gts, insts, strict=True)
                            for p in trio))  # fmt: skip
    yield {"root": root, "images": images, "size": size, "out": out, "pngs": pngs,
           "pixels": 3 * images * size[0] * size[1]}  # fmt: skip
    shutil.rmtree(out, ignore_errors=True)


def _run(command: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=TIMEOUT,
                          check=False)  # fmt: skip
    assert done.returncode == 0, f"{command[:4]} failed:\n{done.stdout[-2000:]}\n{done.stderr}"
    return done


def _official_command(folder: dict) -> tuple[list[str], dict, Path]:
    export = folder["out"] / "official"
    export.mkdir(exist_ok=True)
    env = {**os.environ, "CITYSCAPES_DATASET": str(folder["root"]),
           "CITYSCAPES_RESULTS": str(folder["root"] / "results"),
           "CITYSCAPES_EXPORT_DIR": str(export)}  # fmt: skip
    return [sys.executable, "-c", OFFICIAL], env, export / "resultPixelLevelSemanticLabeling.json"


def _fastseg_command(folder: dict, output: Path) -> list[str]:
    root = folder["root"]
    return [sys.executable, "-m", "fastseg", "evaluate", "--true", str(root / "gtFine" / "val"),
            "--pred", str(root / "results"), "--dataset", "cityscapes", "--instances",
            "--format", "cityscapes", "--output", str(output), "--no-progress"]  # fmt: skip


def _floor_command(folder: dict, decoder: str = "imagecodecs") -> list[str]:
    return [sys.executable, "-c", FLOOR, str(folder["pngs"]), str(THREADS), decoder]


def _in_process(folder: dict, output: Path) -> Path:
    root = folder["root"]
    report = fastseg.evaluate(str(root / "gtFine" / "val"), str(root / "results"),
                              dataset="cityscapes", instances=True, progress=False)  # fmt: skip
    return report.to_json(output, "cityscapes")


@pytest.fixture(scope="module")
def official(folder: dict) -> dict:
    """The official evaluator's result JSON (one untimed run; it also warms the page cache)."""
    command, env, result = _official_command(folder)
    _run(command, env)
    return json.loads(result.read_text())


@pytest.fixture(scope="module")
def official_csupport() -> bool:
    """Whether the evaluator finds its Cython confusion-matrix extension (else NumPy)."""
    from cityscapesscripts.evaluation import evalPixelLevelSemanticLabeling as ev  # noqa: N813

    return bool(ev.CSUPPORT)


@pytest.fixture(scope="module")
def fastseg_result(folder: dict) -> dict:
    """The command's Cityscapes JSON from one untimed run, which compiles the Numba kernels
    (or loads them from the on-disk cache) so the timed runs only load them."""
    output = folder["out"] / "fastseg-warm.json"
    _run(_fastseg_command(folder, output))
    return json.loads(output.read_text())


def _tag(benchmark, method: str, folder: dict) -> None:
    benchmark.group = GROUP
    h, w = folder["size"]
    benchmark.extra_info.update(workload=GROUP, layout="labels", method=method,
                                images=folder["images"], size=f"{w}x{h}",
                                threads=THREADS)  # fmt: skip


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, rel=1e-9, abs=1e-15)


def _assert_same_scores(ours: dict, official: dict) -> None:
    for key in KEYS:
        assert set(ours[key]) == set(official[key]), key
        for name, value in official[key].items():
            assert _same(ours[key][name], value), (key, name, ours[key][name], value)
    for key in AVERAGES:
        assert _same(ours[key], official[key]), (key, ours[key], official[key])
    evaluated = [lab.id for lab in labels_module.labels if not lab.ignoreInEval and lab.id >= 0]
    block = np.ix_(evaluated, evaluated)
    assert (np.array(ours["confMatrix"])[block] == np.array(official["confMatrix"])[block]).all()


# ------------------------------------------------------------------------ correctness


def test_same_scores_as_official(folder, official, fastseg_result):
    """Class / category IoU and iIoU of the command and of the library = the official's."""
    inst = [v for v in official["classInstScores"].values() if not math.isnan(v)]
    assert inst, "no instance scored: the check would not test iIoU"
    assert not math.isnan(official["averageScoreInstCategories"])
    _assert_same_scores(fastseg_result, official)
    library = json.loads(_in_process(folder, folder["out"] / "library.json").read_text())
    _assert_same_scores(library, official)


# ------------------------------------------------------------------------- timed runs


def test_official(benchmark, folder, official, official_csupport):
    _tag(benchmark, "official", folder)
    benchmark.extra_info["official_csupport"] = official_csupport
    command, env, result = _official_command(folder)
    result.unlink(missing_ok=True)
    benchmark.pedantic(_run, args=(command, env), rounds=OFFICIAL_ROUNDS, iterations=1)
    _assert_same_scores(json.loads(result.read_text()), official)


def test_fastseg(benchmark, folder, official, fastseg_result):
    # fastseg_result ran the command once, untimed: the one-time Numba compile (when the
    # on-disk cache is cold) is not timed; every timed run loads the cached kernels.
    _tag(benchmark, "fastseg", folder)
    output = folder["out"] / "fastseg.json"
    benchmark.pedantic(_run, args=(_fastseg_command(folder, output),), rounds=ROUNDS,
                       iterations=1)  # fmt: skip
    _assert_same_scores(json.loads(output.read_text()), official)


def test_decode_floor(benchmark, folder):
    _tag(benchmark, "decode-floor", folder)
    command = _floor_command(folder)
    if not benchmark.disabled:
        _run(command)  # warm the page cache when this test runs alone
    done = benchmark.pedantic(_run, args=(command,), rounds=ROUNDS, iterations=1)
    assert int(done.stdout) == folder["pixels"]


def test_decode_floor_fastseg(benchmark, folder):
    _tag(benchmark, "decode-floor-fastseg", folder)
    command = _floor_command(folder, "fastseg")
    if not benchmark.disabled:
        _run(command)
    done = benchmark.pedantic(_run, args=(command,), rounds=ROUNDS, iterations=1)
    assert int(done.stdout) == folder["pixels"]


def test_fastseg_in_process(benchmark, folder, official):
    _tag(benchmark, "fastseg-in-process", folder)
    output = folder["out"] / "in-process.json"
    if not benchmark.disabled:
        _in_process(folder, output)  # compile or load the kernels, warm the page cache
        output.unlink()
    benchmark.pedantic(_in_process, args=(folder, output), rounds=ROUNDS, iterations=1)
    _assert_same_scores(json.loads(output.read_text()), official)


# ------------------------------------------------------------------ the ratios script


def test_ratios_script(tmp_path, capsys):
    """scripts/cityscapes_ratios.py reads this module's entries from a benchmark JSON."""
    spec = importlib.util.spec_from_file_location("cityscapes_ratios", RATIOS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    info = {"workload": GROUP, "layout": "labels", "images": 100, "size": "2048x1024",
            "threads": 2}  # fmt: skip
    seconds = {"official": 20.0, "fastseg": 2.0, "fastseg-in-process": 1.2, "decode-floor": 1.6}
    benchmarks = [{"group": GROUP, "name": f"test_{m}", "extra_info": {**info, "method": m},
                   "stats": {"median": t, "min": t, "mean": t, "max": t, "rounds": 5}}
                  for m, t in seconds.items()]  # fmt: skip
    path = tmp_path / "bench.json"
    machine = {"cpu": {"brand_raw": "cpu", "count": 2}}
    path.write_text(json.dumps({"benchmarks": benchmarks, "datetime": "now",
                                "machine_info": machine}))  # fmt: skip
    assert module.main([str(path)]) == 0
    out = capsys.readouterr().out
    assert "official / fastseg: 10.0x (target >= 5x: met)" in out
    assert "fastseg / decode-floor: 1.25 (target <= 1.3: met)" in out
    assert "| fastseg | 2.000 | 20.0 | 5 |" in out

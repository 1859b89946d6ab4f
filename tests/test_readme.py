"""Every code block of README.md runs as written.

How the README's fenced blocks are read (one pytest test per block, its id ``L<line>-<lang>-
<first line>``; a failure names the block by its line number and first line):

* ```` ```python ```` blocks run in this process, each alone: in a fresh namespace (so
  every block imports what it uses) and a fresh temporary working directory. The source
  is compiled under README.md's path and line numbers, so a traceback points at the
  README line that failed. Warnings are errors, as in the rest of the suite.
* ```` ```bash ```` (also ``sh``, ``shell``; ``console`` with ``$ `` prompts) blocks run
  in a subprocess, ``bash -euo pipefail`` (each command traced with its README line),
  with a timeout and ``check=True``, in a fresh temporary directory, where ``fastseg``
  and ``python3`` are this interpreter running this checkout's package (repository root
  first on ``PYTHONPATH``). ``pip install 'fastseg[EXTRA]'`` lines are not run (the test
  extra installs every reader); :func:`test_extras_exist` checks that the extras they
  name exist. A shell block must not print a deprecation warning.
* Markers, HTML comments on the line(s) right before a fence:

  - ``<!-- readme-test: skip: REASON -->``: the block is not run (reported as skipped
    with REASON, which is required and should be told to the reader in the prose too);
  - ``<!-- readme-test: inputs: NAME ... -->``: before the block runs, its directory gets
    the inputs NAME (the makers in :data:`MAKERS`: small synthetic files laid out as the
    README's examples name them); ``above`` runs the previous runnable block there first;
  - ``<!-- readme-test: output -->`` before a ```` ```text ```` block: the exact standard
    output of the Python block before it.

* Blocks without a language (file layouts) and unmarked ``text`` blocks are not run.

The makers write a few tiny files each; most of the time goes to starting the shell
blocks' ``fastseg`` processes (imports, loading the kernels from the on-disk Numba cache,
which the other tests fill). Numbers and file names are the README's: a block that
names a file nothing makes, prints other numbers than it shows, or raises, fails.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import subprocess
import sys
import tomllib
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
TIMEOUT = 300  # seconds per shell block (a cold Numba cache compiles for a while)

PYTHON_LANGS = {"python", "py", "python3"}
SHELL_LANGS = {"bash", "sh", "shell", "console"}
PLAIN_LANGS = {"", "text"}
MARKER_KEYS = {"skip", "inputs", "output"}

_FENCE = re.compile(r"^```\s*([\w+-]*)\s*$")
_MARKER = re.compile(r"^<!--\s*readme-test:\s*([\w-]+)\s*(?::(.*?))?\s*-->\s*$")
_PIP = re.compile(r"^\s*(?:python3 -m )?pip install\b")


@dataclass
class Block:
    """One fenced block of the README."""

    index: int
    line: int  # 1-based line of the opening fence
    lang: str
    source: str
    markers: dict[str, str] = field(default_factory=dict)

    @property
    def first(self) -> str:
        """The block's first non-empty line."""
        return next((ln.strip() for ln in self.source.splitlines() if ln.strip()), "")

    @property
    def kind(self) -> str | None:
        """``"python"``, ``"shell"`` or None (not run)."""
        if self.lang in PYTHON_LANGS:
            return "python"
        if self.lang in SHELL_LANGS:
            return "shell"
        return None

    @property
    def inputs(self) -> list[str]:
        return self.markers.get("inputs", "").split()

    def __str__(self) -> str:
        return f"README.md:{self.line} (```{self.lang} block starting {self.first!r})"


def parse(text: str) -> tuple[list[Block], list[str]]:
    """The fenced blocks of `text` with their markers, and the problems found."""
    blocks: list[Block] = []
    problems: list[str] = []
    pending: dict[str, str] = {}
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        marker = _MARKER.match(line.strip())
        if "readme-test" in line and marker is None:
            problems.append(f"README.md:{i + 1}: malformed readme-test marker: {line.strip()!r}")
        elif marker is not None:
            key, value = marker.group(1), (marker.group(2) or "").strip()
            if key in pending:
                problems.append(f"README.md:{i + 1}: a second {key!r} marker for one block")
            pending[key] = value
        fence = _FENCE.match(line)
        if fence is not None:
            end = i + 1
            while end < len(lines) and lines[end].rstrip() != "```":
                end += 1
            if end == len(lines):
                problems.append(f"README.md:{i + 1}: code block never closed")
            source = "\n".join(lines[i + 1 : end])
            blocks.append(Block(len(blocks), i + 1, fence.group(1), source, pending))
            pending = {}
            i = end + 1
            continue
        if pending and line.strip() and marker is None:
            problems.append(
                f"README.md:{i + 1}: marker(s) {sorted(pending)} not right before a code block"
            )
            pending = {}
        i += 1
    if pending:
        problems.append(f"marker(s) {sorted(pending)} at the end of README.md, before no block")
    return blocks, problems


BLOCKS, PARSE_PROBLEMS = parse(README.read_text(encoding="utf-8"))


def _previous_runnable(block: Block) -> Block | None:
    for other in reversed(BLOCKS[: block.index]):
        if other.kind is not None and "skip" not in other.markers:
            return other
    return None


def _expected_output(block: Block) -> str | None:
    """The ``output`` block right after `block`, if any."""
    if block.index + 1 < len(BLOCKS) and "output" in BLOCKS[block.index + 1].markers:
        return BLOCKS[block.index + 1].source
    return None


# --------------------------------------------------------------------------------------
# Inputs the README's examples name, tiny and synthetic
# --------------------------------------------------------------------------------------


def _png(path: Path, labels: np.ndarray, palette: bool = False) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(np.ascontiguousarray(labels, dtype=np.uint8))
    if palette:  # VOC's: class indices stored as palette indices
        image.putpalette(np.random.default_rng(0).integers(0, 256, 768).astype(np.uint8).tobytes())
    image.save(path)


def _pair(seed: int, classes: int, shape: tuple[int, ...] = (24, 32)) -> tuple[np.ndarray, ...]:
    """Truth labels in [0, classes) and a prediction right on about 80 % of the pixels."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, classes, shape)
    pred = np.where(rng.random(shape) < 0.8, truth, rng.integers(0, classes, shape))
    return truth.astype(np.uint8), pred.astype(np.uint8)


def _scores(pred: np.ndarray, classes: int) -> np.ndarray:
    """Softmax-like scores whose argmax is `pred`, classes last."""
    scores = np.random.default_rng(1).random((*pred.shape, classes), dtype=np.float32) * 0.5
    return scores + np.eye(classes, dtype=np.float32)[pred]


def make_cityscapes(where: Path) -> None:
    """gtFine/val/<city>/*_gtFine_{labelIds,instanceIds}.png, results/*_leftImg8bit.png."""
    from fastseg.synth import write_cityscapes

    write_cityscapes(where, 2, (64, 128), instances=True, background=7, workers=1)


def make_ade20k(where: Path) -> None:
    """annotations/validation/ADE_val_*.png (0 = other, 1-150), pred_dir/ (0-149)."""
    for k in (1, 2):
        truth, pred = _pair(k, 150)
        truth = truth + 1
        truth[:4] = 0  # "other", ignored
        _png(where / "annotations" / "validation" / f"ADE_val_{k:08d}.png", truth)
        _png(where / "pred_dir" / f"ADE_val_{k:08d}.png", pred)


def make_voc(where: Path) -> None:
    """SegmentationClass/ (palette PNGs, 255 on boundaries), ImageSets/Segmentation/, and
    pred_dir/ holding the validation images' predictions only."""
    names = {"train": ["2007_000032"], "val": ["2007_000033", "2007_000039"]}
    sets = where / "ImageSets" / "Segmentation"
    sets.mkdir(parents=True)
    for split, ids in names.items():
        (sets / f"{split}.txt").write_text("".join(f"{n}\n" for n in ids))
    for k, name in enumerate(names["train"] + names["val"]):
        truth, pred = _pair(k, 21)
        truth[:, 10] = 255  # a boundary
        _png(where / "SegmentationClass" / f"{name}.png", truth, palette=True)
        if name in names["val"]:
            _png(where / "pred_dir" / f"{name}.png", pred)


def make_nnunet(where: Path) -> None:
    """labelsTs/, nnUNet_pred/ (.nii.gz and nnU-Net's .npz probabilities), and
    Dataset001/dataset.json."""
    from fastseg.synth import write_nnunet

    write_nnunet(where, 2, (8, 16, 16), probabilities=True, workers=1)
    (where / "pred").rename(where / "nnUNet_pred")
    (where / "Dataset001").mkdir()
    (where / "dataset.json").rename(where / "Dataset001" / "dataset.json")


def make_label_pngs(where: Path) -> None:
    """Label PNGs of 21 classes: truth gt/a.png, gt/b.png (also in gt_pngs/, and listed
    in truth_files.txt), predictions a.png, b.png (also preds/day/, preds/night/, and as
    scores in the Zarr array scores.zarr)."""
    import zarr

    preds = []
    for k, (name, sub) in enumerate((("a", "day"), ("b", "night"))):
        truth, pred = _pair(10 + k, 21)
        for path in (f"gt/{name}.png", f"gt_pngs/{name}.png"):
            _png(where / path, truth)
        for path in (f"{name}.png", f"preds/{sub}/{name}.png"):
            _png(where / path, pred)
        preds.append(pred)
    (where / "truth_files.txt").write_text("gt/a.png\ngt/b.png\n")
    zarr.create_array(where / "scores.zarr", data=_scores(np.stack(preds), 21))


def make_label_map(where: Path) -> None:
    """gt.zarr (stored ids 0, 7, 8, 11; 0 unmapped), preds.zarr (scores of 3 classes),
    map.csv (id,class rows) and names.txt (one class name per line)."""
    import zarr

    truth, pred = _pair(20, 3, (2, 24, 32))
    ids = np.array([7, 8, 11], np.uint8)[truth]
    ids[:, :3] = 0
    zarr.create_array(where / "gt.zarr", data=ids)
    zarr.create_array(where / "preds.zarr", data=_scores(pred, 3))
    (where / "map.csv").write_text("id,class\n7,0\n8,1\n11,2\n")
    (where / "names.txt").write_text("road\nsidewalk\nbuilding\n")


MAKERS: dict[str, Callable[[Path], None]] = {
    "cityscapes": make_cityscapes,
    "ade20k": make_ade20k,
    "voc": make_voc,
    "nnunet": make_nnunet,
    "label-pngs": make_label_pngs,
    "label-map": make_label_map,
}


# --------------------------------------------------------------------------------------
# Running a block
# --------------------------------------------------------------------------------------


def _prepare(block: Block, where: Path) -> None:
    for name in block.inputs:
        if name == "above":
            previous = _previous_runnable(block)
            assert previous is not None, f"{block}: 'inputs: above' but no runnable block above"
            run(previous, where)
        else:
            MAKERS[name](where)


def _shell_script(block: Block) -> str:
    lines = block.source.splitlines()
    if block.lang == "console":  # commands are the lines after a "$ " prompt
        lines = [ln[2:] if ln.startswith("$ ") else "" for ln in lines]
    # pip lines become no-ops (":" with the same words), keeping the line numbers
    return "\n".join(f": {ln}" if _PIP.match(ln) else ln for ln in lines)


def run_python(block: Block, where: Path) -> str:
    """Run `block` in a fresh namespace with `where` as working directory; its stdout."""
    code = compile("\n" * block.line + block.source, str(README), "exec")
    out = io.StringIO()
    cwd = Path.cwd()
    os.chdir(where)
    failure = None
    try:
        with contextlib.redirect_stdout(out):
            exec(code, {"__name__": "__readme__"})
    except Exception as exc:
        failure = f"{block} raised {type(exc).__name__}:\n" + "".join(
            traceback.format_exception(exc)
        )
    finally:
        os.chdir(cwd)
    if failure is not None:
        pytest.fail(failure, pytrace=False)
    return out.getvalue()


def run_shell(block: Block, where: Path) -> str:
    """Run `block` with bash in `where`; its stdout."""
    # `fastseg` and `python3` are commands in a folder put first on PATH (not shell
    # functions, whose own lines the trace would show)
    bin_dir = where.parent / f"{where.name}-bin"
    bin_dir.mkdir(exist_ok=True)
    for name, command in (("fastseg", "-m fastseg"), ("python3", "")):
        wrapper = bin_dir / name
        wrapper.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} {command} "$@"\n')
        wrapper.chmod(0o755)
    # Each command is traced on stderr with its README line (the script's line 3 is the
    # block's first line, README line block.line + 1).
    script = f"PS4='+ README.md:$((LINENO + {block.line - 2})): '\nset -x\n"
    script += _shell_script(block) + "\n"
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
           "PYTHONPATH": path}  # fmt: skip
    failure = None
    try:
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=where, env=env, capture_output=True, text=True, timeout=TIMEOUT, check=True,
        )  # fmt: skip
    except subprocess.CalledProcessError as exc:
        failure = (f"{block} failed with exit code {exc.returncode}; its trace and "
                   f"stderr:\n{exc.stderr[-4000:]}")  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        err = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr
        failure = f"{block} took more than {TIMEOUT} s:\n{(err or '')[-4000:]}"
    if failure is not None:
        pytest.fail(failure, pytrace=False)
    warned = [ln for ln in done.stderr.splitlines() if "deprecat" in ln.lower()]
    if warned:
        pytest.fail(f"{block} uses a deprecated form:\n" + "\n".join(warned), pytrace=False)
    return done.stdout


def run(block: Block, where: Path) -> str:
    """Make `block`'s inputs in `where`, run it there, and return its standard output."""
    _prepare(block, where)
    if block.kind == "python":
        return run_python(block, where)
    return run_shell(block, where)


def _param(block: Block) -> object:
    slug = re.sub(r"[^A-Za-z0-9]+", "_", block.first)[:32].strip("_")
    marks = []
    if "skip" in block.markers:
        marks.append(pytest.mark.skip(reason=f"README.md:{block.line}: {block.markers['skip']}"))
    return pytest.param(block, id=f"L{block.line}-{block.lang}-{slug}", marks=marks)


RUNNABLE = [_param(b) for b in BLOCKS if b.kind is not None]


# --------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("block", RUNNABLE)
def test_block_runs(block: Block, tmp_path: Path) -> None:
    out = run(block, tmp_path)
    expected = _expected_output(block)
    if expected is not None:
        assert out.rstrip() == expected.rstrip(), (
            f"{block} printed:\n{out}\nbut README.md:{BLOCKS[block.index + 1].line} shows:\n"
            f"{expected}"
        )


def test_markers() -> None:
    """Markers are well formed, known, on blocks they apply to; skips give a reason."""
    problems = list(PARSE_PROBLEMS)
    for block in BLOCKS:
        unknown = set(block.markers) - MARKER_KEYS
        if unknown:
            problems.append(f"{block}: unknown marker(s) {sorted(unknown)}")
        if block.kind is None and block.lang not in PLAIN_LANGS:
            problems.append(f"{block}: language {block.lang!r} is neither run nor plain text")
        if "skip" in block.markers:
            reason = block.markers["skip"]
            if len(re.findall(r"[A-Za-z]{2,}", reason)) < 2:
                problems.append(f"{block}: a skip marker needs a reason, got {reason!r}")
            if block.kind is None:
                problems.append(f"{block}: skip marker on a block that is not run anyway")
            if "inputs" in block.markers:
                problems.append(f"{block}: both skip and inputs")
        for name in block.inputs:
            if name == "above":
                if _previous_runnable(block) is None:
                    problems.append(f"{block}: 'inputs: above' with no runnable block above")
            elif name not in MAKERS:
                problems.append(f"{block}: unknown input {name!r} (known: {sorted(MAKERS)})")
        if "inputs" in block.markers and (not block.inputs or block.kind is None):
            problems.append(f"{block}: an inputs marker needs names and a runnable block")
        if "output" in block.markers:
            before = BLOCKS[block.index - 1] if block.index else None
            if block.lang != "text" or block.markers["output"]:
                problems.append(f"{block}: 'output' takes no value and marks a text block")
            if before is None or before.kind != "python" or "skip" in before.markers:
                problems.append(f"{block}: an output block must follow a runnable python block")
    assert not problems, "\n".join(problems)


def test_blocks_found() -> None:
    """The parser sees the README's examples (a broken parser must not pass vacuously)."""
    kinds = [b.kind for b in BLOCKS]
    assert kinds.count("python") >= 5
    assert kinds.count("shell") >= 5
    assert any("skip" in b.markers for b in BLOCKS)
    assert any(_expected_output(b) is not None for b in BLOCKS)


def test_extras_exist() -> None:
    """Every extra the README names (``fastseg[x]``, ``'.[x]'``) is in pyproject.toml."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extras = set(project["optional-dependencies"])
    text = README.read_text(encoding="utf-8")
    named = {e.strip() for group in re.findall(r"(?:fastseg|\.)\[([\w,\s-]+)\]", text)
             for e in group.split(",")}  # fmt: skip
    assert named, "no extra found: the pattern is broken"
    assert named <= extras, f"README names extras not in pyproject.toml: {named - extras}"


def test_shell_blocks_do_not_install() -> None:
    """Runnable shell blocks install nothing but the extras (their pip lines are skipped)."""
    for block in BLOCKS:
        if block.kind != "shell" or "skip" in block.markers:
            continue
        for ln in block.source.splitlines():
            if _PIP.match(ln):
                words = shlex.split(ln, comments=True)
                packages = words[words.index("install") + 1 :]
                assert all(w.startswith("fastseg[") for w in packages), (
                    f"{block}: {ln.strip()!r} installs more than fastseg's extras"
                )

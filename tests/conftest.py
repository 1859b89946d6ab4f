"""Shared helpers of the file tests: golden values, damaged copies of a file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

#: The golden files of older formats (tests/data/make_golden_v1.py wrote them).
DATA = Path(__file__).parent / "data"

#: How a file fastseg reads can be wrong, beyond another format or version.
DAMAGES = (
    "truncated",
    "random bytes",
    "empty",
    "corrupted",
    "other program's npz",
    "npy",
    "meta not JSON",
    "meta not an object",
    "missing",
    "directory",
)


def golden_counts(soft: bool, rows: int = 3, n: int = 4) -> Any:
    """The Counts that tests/data/make_golden_v1.py wrote into the golden files."""
    from fastseg import Counts

    rng = np.random.default_rng(2026 + soft)
    if soft:
        tp = rng.random((rows, n))
        return Counts(tp, tp + rng.random((rows, n)), tp + rng.random((rows, n)))
    tp = rng.integers(0, 50, (rows, n))
    pred = tp + rng.integers(0, 50, (rows, n))
    true = tp + rng.integers(0, 50, (rows, n))
    return Counts(tp, pred, true, rng.integers(0, 99, (n, n)), 17)


def damaged_copy(good: Path, how: str, folder: Path) -> Path:
    """A copy of the fastseg file `good` damaged `how` (one of :data:`DAMAGES`)."""
    data = good.read_bytes()
    stem = "".join(c if c.isalnum() else "_" for c in how)
    path = folder / f"{stem}.npz"
    rng = np.random.default_rng(len(how))
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "random bytes":
        path.write_bytes(rng.bytes(len(data)))
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "corrupted":  # bytes overwritten in the middle: a CRC or header error
        middle = len(data) // 2
        path.write_bytes(data[:middle] + b"\xff" * 24 + data[middle + 24 :])
    elif how == "other program's npz":
        with path.open("wb") as f:
            np.savez(f, tp=np.arange(3), weights=np.ones((2, 2)))
    elif how == "npy":
        with path.open("wb") as f:
            np.save(f, np.arange(3))
    elif how in ("meta not JSON", "meta not an object"):
        with np.load(good) as f:
            arrays = dict(f)
        arrays["meta"] = np.array("{not json" if how == "meta not JSON" else json.dumps([1, 2]))
        with path.open("wb") as f:
            np.savez(f, **arrays)
    elif how == "missing":
        pass
    elif how == "directory":
        path.mkdir()
    else:
        raise ValueError(how)
    return path


@pytest.fixture
def damaged(tmp_path):
    """``damaged(good, how)``: a damaged copy of `good` in a fresh folder."""
    counter = iter(range(10**6))

    def make(good: Path, how: str) -> Path:
        folder = tmp_path / f"damaged{next(counter)}"
        folder.mkdir()
        return damaged_copy(good, how, folder)

    return make


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """One line: the kernel specialisations this session compiled or loaded from the cache.

    Every one must be in ``fastseg.kernels.SIGNATURES`` (tests/test_kernels.py checks);
    their number is what a cold CI run spends its compile time on.
    """
    import sys

    kernels = sys.modules.get("fastseg.kernels")
    if kernels is None:
        return
    counts = {name: len(getattr(f, "signatures", ())) for name, f in kernels.COMPILED.items()}
    unlisted = sum(len(v) for v in kernels.unlisted_signatures().values())
    terminalreporter.write_line(
        "fastseg kernel specialisations in this process: "
        + ", ".join(f"{name} {n}" for name, n in counts.items())
        + f" (outside SIGNATURES: {unlisted})"
    )

"""Fixtures shared by the file tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from damaged_files import damaged_copy


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

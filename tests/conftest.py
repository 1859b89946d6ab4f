"""Fixtures shared by the file tests."""

from __future__ import annotations

from pathlib import Path

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

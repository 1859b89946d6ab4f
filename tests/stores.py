"""Zarr stores for the tests of evaluate: a truth and a prediction array in one group."""

from __future__ import annotations

import os

import numpy as np
import zarr


def zarr_pair(
    path: str | os.PathLike[str],
    truth: np.ndarray,
    pred: np.ndarray,
    *,
    pred_chunks: tuple[int, ...],
    true_chunks: tuple[int, ...],
) -> str:
    """A Zarr v3 group at `path` with arrays ``pred`` and ``true`` in the given chunks.

    Every chunk is written, fill values included (no chunk reads as missing). Returns the
    path as a string.
    """
    group = zarr.open_group(path, mode="w", zarr_format=3)
    config = {"write_empty_chunks": True}
    for name, data, chunks in (("pred", pred, pred_chunks), ("true", truth, true_chunks)):
        array = group.create_array(name, shape=data.shape, dtype=data.dtype, chunks=chunks,
                                   config=config)  # fmt: skip
        array[:] = data
    return str(path)

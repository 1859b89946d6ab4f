"""Writing files so that no reader ever sees one half written."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np


def write_atomically(path: str | os.PathLike[str], write: Callable[[Path], object]) -> Path:
    """Run ``write(tmp)`` on a new temporary file beside `path`, then rename it to `path`.

    The file appears complete or not at all; a failed write leaves an earlier file at
    `path` untouched and no temporary behind. Returns `path`.
    """
    path = Path(path)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def save_npz(path: str | os.PathLike[str], arrays: Mapping[str, Any]) -> Path:
    """:func:`numpy.savez` (uncompressed, no pickles) to `path`, atomically."""

    def write(tmp: Path) -> None:
        with tmp.open("wb") as f:  # a file object: savez would add ".npz" to a name
            np.savez(f, **arrays)

    return write_atomically(path, write)

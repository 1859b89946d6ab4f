"""Per-block counts persisted to a directory, so a long evaluation can resume.

Layout of a checkpoint directory::

    manifest.json          {"format": "fastseg.checkpoint", "version": 1, "fingerprint": {...}}
    blocks/<i>_<j>_..npz   one finished block: its first image, counts and ignored pixels

Every file is written to a temporary name and renamed (:mod:`fastseg._files`), so a
killed run leaves only whole files. The fingerprint records the inputs and options; a
directory made for other inputs or options is refused rather than mixed in.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fastseg._files import save_npz, write_atomically

FORMAT_VERSION = 1
_FORMAT = "fastseg.checkpoint"


@dataclass
class BlockCounts:
    """Counts of one block, or of a contiguous run of images after merging.

    ``tp``, ``pred``, ``true`` hold rows for images ``b0 .. b0 + len - 1``.
    """

    b0: int
    tp: np.ndarray
    pred: np.ndarray
    true: np.ndarray
    confusion: np.ndarray | None
    ignored: int

    @property
    def b1(self) -> int:
        """One past the last image."""
        return self.b0 + self.tp.shape[0]


def merge_blocks(parts: list[BlockCounts]) -> BlockCounts:
    """Sum block counts into one covering all their images (chunks of one image add up)."""
    b0 = min(p.b0 for p in parts)
    b1 = max(p.b1 for p in parts)
    first = parts[0]
    shape = (b1 - b0, first.tp.shape[1])
    tp, pred, true = (np.zeros(shape, first.tp.dtype) for _ in range(3))
    confusion = None if first.confusion is None else np.zeros_like(first.confusion)
    for p in parts:
        rows = slice(p.b0 - b0, p.b1 - b0)
        tp[rows] += p.tp
        pred[rows] += p.pred
        true[rows] += p.true
        if confusion is not None and p.confusion is not None:
            confusion += p.confusion
    return BlockCounts(b0, tp, pred, true, confusion, sum(p.ignored for p in parts))


class Checkpoint:
    """A checkpoint directory for one evaluation.

    Parameters
    ----------
    directory : path
        Created if needed.
    fingerprint : dict
        JSON-safe description of the inputs and options; must match an existing manifest.

    Raises
    ------
    ValueError
        When the directory holds a checkpoint of other inputs or options, or is not a
        fastseg checkpoint.
    """

    def __init__(self, directory: str | os.PathLike[str], fingerprint: dict[str, Any]) -> None:
        self.directory = Path(directory)
        self.blocks = self.directory / "blocks"
        manifest = self.directory / "manifest.json"
        fingerprint = json.loads(json.dumps(fingerprint))  # normalise tuples to lists
        if manifest.exists():
            try:
                saved = json.loads(manifest.read_text())
            except (OSError, ValueError) as exc:
                raise ValueError(f"{manifest} is not a readable fastseg checkpoint") from exc
            if saved.get("format") != _FORMAT or saved.get("version") != FORMAT_VERSION:
                raise ValueError(
                    f"{self.directory} is not a fastseg checkpoint (version {FORMAT_VERSION})"
                )
            if saved.get("fingerprint") != fingerprint:
                diffs = sorted(
                    k
                    for k in set(fingerprint) | set(saved.get("fingerprint", {}))
                    if fingerprint.get(k) != saved.get("fingerprint", {}).get(k)
                )
                raise ValueError(
                    f"checkpoint {self.directory} was made for other inputs or options "
                    f"(differs in: {', '.join(diffs)}); use another directory or delete it"
                )
        else:
            self.directory.mkdir(parents=True, exist_ok=True)
            text = json.dumps(
                {"format": _FORMAT, "version": FORMAT_VERSION, "fingerprint": fingerprint}, indent=1
            )
            write_atomically(manifest, lambda tmp: tmp.write_text(text, encoding="utf-8"))
        self.blocks.mkdir(exist_ok=True)

    def path(self, block: tuple[int, ...]) -> Path:
        """File of one block's counts."""
        return self.blocks / ("_".join(map(str, block)) + ".npz")

    def done(self) -> set[tuple[int, ...]]:
        """Blocks whose counts are saved."""
        return {
            tuple(int(i) for i in p.stem.split("_"))
            for p in self.blocks.glob("*.npz")
            if not p.name.startswith(".")
        }


def save_block(path: Path, counts: BlockCounts) -> None:
    """Persist one block's counts atomically."""
    arrays = {
        "b0": np.int64(counts.b0),
        "tp": counts.tp,
        "pred": counts.pred,
        "true": counts.true,
        "ignored": np.int64(counts.ignored),
    }
    if counts.confusion is not None:
        arrays["confusion"] = counts.confusion
    save_npz(path, arrays)


def load_block(path: Path) -> BlockCounts:
    """Read one block's counts written by :func:`save_block`."""
    try:
        with np.load(path, allow_pickle=False) as f:
            return BlockCounts(
                int(f["b0"]),
                f["tp"],
                f["pred"],
                f["true"],
                f["confusion"] if "confusion" in f.files else None,
                int(f["ignored"]),
            )
    except (OSError, ValueError, KeyError) as exc:
        raise ValueError(
            f"checkpoint block {path} is unreadable ({exc}); delete it to recompute that block"
        ) from exc

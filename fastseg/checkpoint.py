"""Per-block counts persisted to a directory, so a long evaluation can resume.

Layout of a checkpoint directory (format version :data:`FORMAT_VERSION`)::

    manifest.json          {"format": "fastseg.checkpoint", "version": 2,
                            "fingerprint": {...}, "fingerprint_sha256": "..."}
    blocks/<i>_<j>_..npz   one finished block: its counts, first image and ignored
                           pixels, and the fingerprint hash of the evaluation it belongs to

The fingerprint records the inputs (resolved store locations, shapes, dtypes, chunks) and
the reading options. Every file is written to a temporary name and renamed
(:mod:`fastseg._files`), so a killed run leaves only whole files; the manifest is created
exclusively (hard-linked into place), so of two runs racing on one directory only one
creates it and the other compares its fingerprint with it. A block file holds one
block's :class:`~fastseg.counts.Counts` (its first image as ``b0``), written by
:func:`fastseg.counts.save_counts` and read back by
:func:`fastseg.counts.counts_from_arrays`; one whose fingerprint hash is not this
evaluation's is never counted. This module holds only the manifest and the block files'
paths and tags: what a block holds, and how blocks merge, is :mod:`fastseg.counts`'.

A directory made for other inputs or options is refused when it holds finished blocks
(the message says which options differ and what to do); a manifest left by a run that
failed before finishing any block is replaced.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastseg._files import write_atomically
from fastseg._version import __version__
from fastseg.counts import (
    FIRST_IMAGE_KEY,
    Counts,
    check_format,
    corrupt_file,
    counts_from_arrays,
    load_versioned,
    save_counts,
)

log = logging.getLogger("fastseg")

#: Version of the checkpoint layout: the manifest and the block files. Version 1 blocks
#: did not carry their fingerprint; such directories are refused.
FORMAT_VERSION = 2
_FORMAT = "fastseg.checkpoint"
_BLOCK_FORMAT = "fastseg.checkpoint-block"
MANIFEST = "manifest.json"
_BLOCK_NAME = re.compile(r"(\d+(?:_\d+)*)\.npz")
#: Stray file names listed in a warning, at most.
_SHOWN = 10


def fingerprint_hash(fingerprint: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON of a fingerprint (sorted keys, no spaces)."""
    text = json.dumps(fingerprint, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def block_index(name: str) -> tuple[int, ...] | None:
    """The block index a file name stands for (``"1_0_2.npz"``), else None.

    Only the canonical spelling counts (no leading zeros, no other suffix), so a
    name maps to exactly the file :meth:`Checkpoint.path` gives.
    """
    match = _BLOCK_NAME.fullmatch(name)
    if match is None:
        return None
    index = tuple(int(i) for i in match.group(1).split("_"))
    return index if "_".join(map(str, index)) == match.group(1) else None


@dataclass(frozen=True)
class BlockFile:
    """One block's file, and the evaluation (fingerprint hash) it belongs to.

    Small and picklable: each block task carries its own, not the whole checkpoint.
    """

    path: Path
    index: tuple[int, ...]
    fingerprint: str


class Checkpoint:
    """A checkpoint directory for one evaluation.

    Parameters
    ----------
    directory : path
        Created if needed.
    fingerprint : dict
        JSON-safe description of the inputs and options.

    Raises
    ------
    ValueError
        Naming the directory and what to do: its manifest is unreadable, of an older or
        newer format version, or of another evaluation that has finished blocks (or
        whose run may still be going); it has no manifest but holds blocks of another
        evaluation; or it is not a directory.
    """

    def __init__(self, directory: str | os.PathLike[str], fingerprint: dict[str, Any]) -> None:
        self.directory = Path(directory)
        self.blocks = self.directory / "blocks"
        self.manifest = self.directory / MANIFEST
        self.fingerprint = json.loads(json.dumps(fingerprint))  # normalise tuples to lists
        self.key = fingerprint_hash(self.fingerprint)
        try:
            self.blocks.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError) as exc:
            raise ValueError(
                f"checkpoint {self.directory} cannot be used: {exc.strerror} "
                f"({exc.filename}); pass a directory"
            ) from exc
        for _ in range(5):  # each round loses at most one race with another run
            saved = self._read_manifest()
            if saved is None:
                self._check_orphans()
                if self._write_manifest(exclusive=True):
                    return
                continue  # another run created it meanwhile: compare with theirs
            if self._accept(saved):
                return
        raise ValueError(
            f"checkpoint {self.directory}: its manifest keeps changing (several runs are "
            "starting in it at once); use one directory per run"
        )

    # ---------------------------------------------------------------- manifest

    def _manifest_text(self, **extra: Any) -> str:
        content = {
            "format": _FORMAT,
            "version": FORMAT_VERSION,
            "fingerprint": self.fingerprint,
            "fingerprint_sha256": self.key,
            "fastseg_version": __version__,
            **extra,
        }
        return json.dumps(content, indent=1) + "\n"

    def _write_manifest(self, *, exclusive: bool = False, **extra: Any) -> bool:
        """Write the manifest; with `exclusive`, False if one appeared meanwhile."""
        text = self._manifest_text(**extra)
        try:
            write_atomically(
                self.manifest, lambda tmp: tmp.write_text(text, "utf-8"), exclusive=exclusive
            )
        except FileExistsError:
            if exclusive:
                return False
            raise
        return True

    def _read_manifest(self) -> dict[str, Any] | None:
        """The manifest's content, checked; None when there is none."""
        where = f"{self.manifest}"
        try:
            raw = self.manifest.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ValueError(
                f"checkpoint manifest {where} cannot be read ({exc.strerror or exc})"
            ) from exc
        delete = f"; delete {self.directory} to start over"
        try:
            content = json.loads(raw.decode("utf-8"))
        except ValueError as exc:  # UnicodeDecodeError, JSONDecodeError
            what = "empty" if not raw.strip() else f"not JSON ({exc})"
            raise ValueError(
                f"checkpoint manifest {where} is damaged or not a fastseg checkpoint "
                f"manifest: {what}{delete}"
            ) from exc
        older = ""
        if isinstance(content, dict):
            version = content.get("version")
            if isinstance(version, int) and version < FORMAT_VERSION:
                older = (
                    f" (it was written by an older fastseg, whose blocks cannot be reused)"
                    f"{delete}"
                )
        content = check_format(
            where, content, _FORMAT, (FORMAT_VERSION,), "checkpoint manifest", hint=older
        )
        if not isinstance(content.get("fingerprint"), dict):
            raise ValueError(
                f"checkpoint manifest {where} is damaged: it has no fingerprint object{delete}"
            )
        return content

    def _accept(self, saved: dict[str, Any]) -> bool:
        """Resume a matching manifest, or replace one a failed run left; else refuse.

        False when the manifest changed under us (another run replaced it): read again.
        """
        old = saved["fingerprint"]
        if old == self.fingerprint:
            if saved.get("failed"):
                log.info("checkpoint %s: resuming after a failed run", self.directory)
                self._write_manifest()
            return True
        diffs = _differences(old, self.fingerprint)
        finished = self.finished()
        if not finished and saved.get("failed"):
            log.warning(
                "checkpoint %s was left by a failed run with other inputs or options (%s) "
                "that finished no block: replacing its manifest",
                self.directory,
                diffs,
            )
            self._write_manifest()
            return True
        again = self._read_manifest()
        if again is None or again.get("fingerprint") != old:
            return False
        how = f"delete {self.directory} to start over, or use another checkpoint directory"
        if finished:
            raise ValueError(
                f"checkpoint {self.directory} holds {len(finished)} finished block(s) of an "
                f"evaluation of other inputs or options ({diffs}): they cannot be used "
                f"here. To evaluate these inputs with these options, {how} (--checkpoint)"
            )
        raise ValueError(
            f"checkpoint {self.directory} was made for other inputs or options ({diffs}) "
            f"and holds no finished block yet: another run may be using it. If none is, "
            f"{how} (--checkpoint)"
        )

    def _check_orphans(self) -> None:
        """Without a manifest: blocks of this evaluation are kept, of another refused."""
        names = self.finished()
        if not names:
            return
        foreign, unreadable = [], []
        for path in names:
            try:
                key = _block_fingerprint(path)
            except ValueError:
                unreadable.append(path.name)
                continue
            if key != self.key:
                foreign.append(path.name)
        if not foreign and not unreadable:
            log.info(
                "checkpoint %s had no %s; its %d block(s) belong to this evaluation and "
                "are reused",
                self.directory,
                MANIFEST,
                len(names),
            )
            return
        parts = []
        if foreign:
            parts.append(f"{len(foreign)} block(s) of another evaluation")
        if unreadable:
            parts.append(f"{len(unreadable)} unreadable or older block file(s)")
        raise ValueError(
            f"checkpoint {self.directory} has no {MANIFEST}, and {self.blocks} holds "
            f"{' and '.join(parts)} (e.g. {(foreign or unreadable)[0]}): they cannot be "
            f"used for these inputs and options. Delete {self.directory} to start over, "
            f"or use another checkpoint directory (--checkpoint)"
        )

    def mark_failed(self) -> None:
        """Record that the run using this checkpoint failed (its manifest may be replaced).

        A later run with other inputs or options replaces the manifest if no block was
        finished; with finished blocks it is refused as usual. Never raises: the run's
        own error is the one to report.
        """
        try:
            saved = self._read_manifest()
            if saved is not None and saved.get("fingerprint") == self.fingerprint:
                self._write_manifest(failed=True)
        except (OSError, ValueError) as exc:
            log.warning("checkpoint %s: could not record the failed run: %s", self.directory, exc)

    # ------------------------------------------------------------------ blocks

    def path(self, block: tuple[int, ...]) -> Path:
        """File of one block's counts."""
        return self.blocks / ("_".join(map(str, block)) + ".npz")

    def block_file(self, block: tuple[int, ...]) -> BlockFile:
        """One block's file, tagged with this evaluation's fingerprint hash."""
        return BlockFile(self.path(block), tuple(block), self.key)

    def finished(self) -> list[Path]:
        """Files in ``blocks/`` named like a block (whatever their content)."""
        try:
            entries = sorted(self.blocks.iterdir())
        except FileNotFoundError:
            return []
        return [p for p in entries if block_index(p.name) is not None and p.is_file()]

    def done(self, grid: tuple[int, ...] | None = None) -> set[tuple[int, ...]]:
        """Blocks whose counts are saved; other files in ``blocks/`` are ignored.

        `grid` is the number of blocks along each axis: a block index outside it is
        ignored too. Ignored files are named in a warning (hidden files, the temporary
        files of writes in progress, are skipped silently).
        """
        found: set[tuple[int, ...]] = set()
        strays = []
        for p in sorted(self.blocks.iterdir()):
            if p.name.startswith("."):
                continue
            index = block_index(p.name)
            inside = index is not None and (
                grid is None
                or (
                    len(index) == len(grid)
                    and all(i < n for i, n in zip(index, grid, strict=True))
                )
            )
            if index is None or not inside or not p.is_file():
                strays.append(p.name)
                continue
            found.add(index)
        if strays:
            shown = ", ".join(strays[:_SHOWN]) + (" ..." if len(strays) > _SHOWN else "")
            log.warning(
                "checkpoint %s: ignoring %d file(s) in %s that are not blocks of this "
                "evaluation: %s",
                self.directory,
                len(strays),
                self.blocks,
                shown,
            )
        return found


def _differences(old: dict[str, Any], new: dict[str, Any]) -> str:
    """``differs in: a, b; a: X there, Y here; ...`` between two fingerprints."""
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))

    def shown(value: Any) -> str:
        text = json.dumps(value)
        return text if len(text) <= 60 else text[:57] + "..."

    values = "; ".join(
        f"{k}: {shown(old.get(k))} there, {shown(new.get(k))} here" for k in keys
    )
    return f"differs in: {', '.join(keys)}; {values}"


def _block_fingerprint(path: Path) -> str:
    """The fingerprint hash a block file carries (reads its metadata only)."""
    meta, _ = load_versioned(
        path, _BLOCK_FORMAT, (FORMAT_VERSION,), what="checkpoint block", arrays=False
    )
    key = meta.get("fingerprint")
    if not isinstance(key, str):
        raise corrupt_file(path, "checkpoint block", "no fingerprint")
    return key


def save_block(target: BlockFile, counts: Counts) -> None:
    """Persist one block's counts atomically, tagged with its evaluation's fingerprint.

    Meta: ``fingerprint``, ``block``, ``b0`` (the block's first image, always written),
    then :func:`fastseg.counts.save_counts`' ``ignored`` and ``soft``.
    """
    meta = {
        "fingerprint": target.fingerprint,
        "block": list(target.index),
        FIRST_IMAGE_KEY: counts.first_image,
    }
    save_counts(target.path, counts, _BLOCK_FORMAT, FORMAT_VERSION, meta)


def load_block(
    target: BlockFile, *, first_image: int, rows: int, num_classes: int, soft: bool
) -> Counts:
    """Read one block's counts written by :func:`save_block`, checking them.

    The block's `first_image`, its number of images `rows`, `num_classes` and `soft`
    are what this evaluation expects.

    Raises
    ------
    ValueError
        Saying which block, what is wrong (unreadable, damaged, of another evaluation,
        counts that do not fit) and that deleting the file recomputes that block.
    """
    what = "checkpoint block"
    path = target.path
    try:
        meta, arrays = load_versioned(path, _BLOCK_FORMAT, (FORMAT_VERSION,), what=what)
        if meta.get("fingerprint") != target.fingerprint:
            raise ValueError(
                f"{path} belongs to another evaluation (fingerprint "
                f"{str(meta.get('fingerprint'))[:12]}..., this checkpoint's "
                f"{target.fingerprint[:12]}...)"
            )
        held = meta.get(FIRST_IMAGE_KEY)
        if meta.get("block") != list(target.index) or held != first_image:
            raise corrupt_file(path, what, f"it holds block {meta.get('block')} from image {held}")
        c = counts_from_arrays(path, what, arrays, meta, soft=soft, strict=True)
        if c.tp.shape != (rows, num_classes):
            raise corrupt_file(
                path,
                what,
                f"counts of shape {c.tp.shape}, expected {rows} image(s) x {num_classes} classes",
            )
    except ValueError as exc:
        raise ValueError(
            f"checkpoint block {target.index} is unusable: {exc}. Delete {path} to "
            "recompute that block"
        ) from exc
    return c

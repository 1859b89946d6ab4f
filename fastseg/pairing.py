"""Folders, globs and lists of files: which files an input names, and which go together.

A side of an evaluation given as files (:func:`is_file_input`) is listed by
:func:`list_files`: every file of a readable format (:data:`fastseg.readers.SUFFIXES`)
under a folder (sub-folders included, hidden names skipped), matched by a glob
(``**`` spans folders), or named in a list. Each file gets an id: its name without its
suffix, the side's ``suffix`` when one is given (``"_gtFine_labelIds.png"``, or without
the extension, ``"_gtFine_labelIds"``), else its format's extension (``.png``,
``.nii.gz``). With a suffix, a folder or glob contributes only the files whose names end
with it. :func:`pair` then matches prediction and truth files by id.
"""

from __future__ import annotations

import glob as glob_
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from fastseg.readers import LOSSY, SUFFIXES, is_lossy, split_suffix

#: Names shown in a message, at most.
SHOWN = 5
#: Files that mark a directory as a Zarr store (v3, v2 group, v2 array).
ZARR_MARKERS = ("zarr.json", ".zgroup", ".zarray")
_GLOB_CHARS = frozenset("*?[")
_SIDE = {"pred": "prediction", "true": "truth"}


class UnpairedFilesError(ValueError):
    """Prediction or truth files without a partner (listed in the message)."""


@dataclass(frozen=True)
class FileEntry:
    """One file of an input.

    Attributes
    ----------
    path : str
        Absolute path (the folder's links resolved).
    key : str
        The id: the name without the side's suffix; pairs files and names the image.
    fmt : str
        Format name (:data:`fastseg.readers.SUFFIXES`).
    shown : str
        The path as the user would write it (relative to the folder, or as given).
    """

    path: str
    key: str
    fmt: str
    shown: str


@dataclass
class FileSet:
    """The files of one input, sorted by id.

    Attributes
    ----------
    name : {'pred', 'true'}
    description : str
        What was given and how many files it holds, for messages and the report.
    entries : list of FileEntry
    suffix : str or None
        The suffix ids were made with.
    lossy : list of str
        Lossy images found in a folder or glob and left out.
    """

    name: str
    description: str
    entries: list[FileEntry]
    suffix: str | None = None
    lossy: list[str] = field(default_factory=list)

    @property
    def formats(self) -> list[str]:
        """The formats of the entries, sorted."""
        return sorted({e.fmt for e in self.entries})


@dataclass
class Pairing:
    """Prediction and truth files matched by id.

    Attributes
    ----------
    cases : list of (FileEntry, FileEntry)
        ``(pred, true)`` pairs, sorted by id.
    pred_only, true_only : list of FileEntry
        Files without a partner (left out with ``missing='skip'``).
    """

    cases: list[tuple[FileEntry, FileEntry]]
    pred_only: list[FileEntry]
    true_only: list[FileEntry]


def _is_path(x: Any) -> bool:
    return isinstance(x, str | os.PathLike)


def _is_url(text: str) -> bool:
    return "://" in text or "::" in text


def is_zarr_dir(path: str) -> bool:
    """Whether the directory `path` has Zarr metadata at its root."""
    return any(os.path.exists(os.path.join(path, m)) for m in ZARR_MARKERS)


def is_file_input(x: Any) -> bool:
    """Whether `x` names files rather than a Zarr store or an array.

    A list or tuple of paths; a glob (``*``, ``?`` or ``[`` in a path that does not
    exist as such); a directory without Zarr metadata at its root; a path whose suffix
    is an image, volume or array format (existing or not: a missing one is reported by
    :func:`list_files`). URLs are Zarr stores.
    """
    if isinstance(x, list | tuple):
        return bool(x) and all(_is_path(i) for i in x)
    if not _is_path(x):
        return False
    text = os.fspath(x)
    if not isinstance(text, str) or _is_url(text):
        return False
    if os.path.isdir(text):
        return not is_zarr_dir(text)
    if os.path.exists(text):
        return split_suffix(os.path.basename(text))[1] is not None or is_lossy(text)
    if _GLOB_CHARS & set(text):
        return True
    return split_suffix(os.path.basename(text))[1] is not None or is_lossy(text)


def _key(name: str, suffix: str | None) -> tuple[str | None, str | None]:
    """``(id, format)`` of a file name under `suffix`; id None when it does not end with it."""
    stem, fmt = split_suffix(name)
    if not suffix:
        return stem, fmt
    if name.endswith(suffix) and len(name) > len(suffix):
        return name[: -len(suffix)], fmt
    if fmt is not None and stem.endswith(suffix) and len(stem) > len(suffix):
        return stem[: -len(suffix)], fmt
    return None, fmt


def _walk(root: str) -> list[str]:
    """Files under `root`, relative to it, sorted; hidden names skipped, links followed once."""
    found: list[str] = []
    seen: set[str] = set()
    for folder, dirs, files in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:  # a link back up the tree
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        rel = os.path.relpath(folder, root)
        for f in sorted(files):
            if not f.startswith("."):
                found.append(f if rel == "." else os.path.join(rel, f))
    return found


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _shown(items: Sequence[str]) -> str:
    more = f" and {len(items) - SHOWN} more" if len(items) > SHOWN else ""
    return ", ".join(items[:SHOWN]) + more


def list_files(x: Any, name: str, suffix: str | None = None) -> FileSet:
    """The files `x` names (a folder, a glob, a list of paths, one path), with their ids.

    Parameters
    ----------
    x : str, os.PathLike or sequence of them
    name : {'pred', 'true'}
    suffix : str, optional
        Removed from the file names to make the ids; a folder or glob then contributes
        only the files whose names end with it.

    Raises
    ------
    ValueError
        No file found (saying what was looked for and what was found instead), a
        listed file that is missing, lossy, of an unreadable format or without the
        suffix, or two files with one id.
    """
    if suffix is not None and (not isinstance(suffix, str) or not suffix):
        raise ValueError(f"{name}_suffix must be a non-empty string or None; got {suffix!r}")
    explicit = isinstance(x, list | tuple)
    text = "" if explicit else os.fspath(x)
    named = explicit or os.path.isfile(text)  # files named one by one
    if named:
        given = [os.fspath(p) for p in (x if explicit else [x])]
        what = f"{_plural(len(given), 'file')} ({_shown(given)})"
        for p in given:
            if not os.path.isfile(p):
                raise ValueError(f"{name}: {p} is not a file")
        candidates = [(os.path.abspath(p), p) for p in given]
    elif os.path.isdir(text):
        root = os.path.realpath(text)
        what = text.rstrip(os.sep) + os.sep
        candidates = [(os.path.join(root, rel), rel) for rel in _walk(root)]
    elif _GLOB_CHARS & set(text):
        what = f"glob {text!r}"
        matched = sorted(glob_.glob(text, recursive=True))
        candidates = [(os.path.abspath(p), p) for p in matched if os.path.isfile(p)]
    else:
        raise ValueError(f"{name}: no such file or directory: {text!r}")

    entries: list[FileEntry] = []
    lossy: list[str] = []
    others = 0
    for path, shown in candidates:
        base = os.path.basename(path)
        key, fmt = _key(base, suffix)
        if named:  # a file the user named: it must be readable and carry the suffix
            if is_lossy(base):
                raise ValueError(f"{name}: {_lossy_message([shown])}")
            if fmt is None:
                raise ValueError(f"{name}: {shown}: {_unsupported()}")
            if key is None:
                raise ValueError(f"{name}: {shown} does not end with {name}_suffix={suffix!r}")
        if key is None:
            continue
        if fmt is None:
            if is_lossy(base):
                lossy.append(shown)
            else:
                others += 1
            continue
        entries.append(FileEntry(path, key, fmt, shown))

    if not entries:
        looked = f"files ending with {suffix!r}" if suffix else "image, volume or array files"
        found = []
        if lossy:
            found.append(_lossy_message(lossy))
        if others:
            found.append(f"{_plural(others, 'other file')}; {_unsupported()}")
        detail = f": {'; '.join(found)}" if found else ""
        zarr = " and no Zarr metadata (zarr.json, .zgroup, .zarray)" if os.path.isdir(text) else ""
        raise ValueError(f"{name}: no {looked} in {what}{zarr}{detail}")
    _check_unique(name, entries)
    entries.sort(key=lambda e: e.key)
    formats = ", ".join(sorted({e.fmt for e in entries}))
    files = _plural(len(entries), f"{formats} file")
    description = f"{files} ({_shown(given)})" if named else f"{what} ({files})"
    return FileSet(name, description, entries, suffix, lossy)


def _unsupported() -> str:
    formats = ", ".join(s for s, _ in SUFFIXES)
    return f"fastseg reads {formats}"


def _lossy_message(files: Sequence[str]) -> str:
    return (
        f"{_plural(len(files), 'lossy image')} ({_shown(list(files))}) refused: a label "
        f"map saved as {'/'.join(s.lstrip('.').upper() for s in LOSSY[:2])} or WebP holds "
        "labels that were never drawn; save label maps as PNG (or TIFF, NIfTI, .npy)"
    )


def _check_unique(name: str, entries: list[FileEntry]) -> None:
    by_key: dict[str, list[FileEntry]] = {}
    for e in entries:
        by_key.setdefault(e.key, []).append(e)
    clashes = {k: v for k, v in by_key.items() if len(v) > 1}
    if not clashes:
        return
    examples = [f"{k!r}: {', '.join(e.shown for e in v)}" for k, v in sorted(clashes.items())]
    formats = {e.fmt for v in clashes.values() for e in v}
    hint = ""
    if len(formats) > 1:
        suffixes = sorted({s for e in entries for s, f in SUFFIXES if f == e.fmt
                           and e.shown.lower().endswith(s)})  # fmt: skip
        choices = " or ".join(f"{name}_suffix={x!r}" for x in suffixes)
        hint = f"; the files are of several formats: choose one with {choices}"
    shown = "; ".join(examples[:SHOWN]) + (" ..." if len(examples) > SHOWN else "")
    raise ValueError(
        f"{name}: {_plural(len(clashes), 'id')} given by several files ({shown}): ids (file "
        f"names without "
        f"{name}_suffix) must be unique{hint}"
    )


def pair(pred: FileSet, true: FileSet, *, skip: bool = False) -> Pairing:
    """Match prediction and truth files by id.

    Raises
    ------
    UnpairedFilesError
        A file on either side has no partner (unless `skip`), or no file pairs at all;
        the message lists the unmatched names (first few and their count).
    """
    p_keys = {e.key: e for e in pred.entries}
    t_keys = {e.key: e for e in true.entries}
    common = sorted(p_keys.keys() & t_keys.keys())
    pred_only = [p_keys[k] for k in sorted(p_keys.keys() - t_keys.keys())]
    true_only = [t_keys[k] for k in sorted(t_keys.keys() - p_keys.keys())]
    if common and (skip or not (pred_only or true_only)):
        return Pairing([(p_keys[k], t_keys[k]) for k in common], pred_only, true_only)
    parts = []
    for files, fs, other in ((pred_only, pred, "truth"), (true_only, true, "prediction")):
        if files:
            parts.append(
                f"{_plural(len(files), _SIDE[fs.name] + ' file')} without a {other} file: "
                f"{_shown([f.shown for f in files])}"
            )
    suffixes = f"pred_suffix={pred.suffix!r}, true_suffix={true.suffix!r}"
    if not common:
        p0, t0 = pred.entries[0], true.entries[0]
        raise UnpairedFilesError(
            f"no prediction file has the id of a truth file (ids are the file names without "
            f"the suffix; {suffixes}): e.g. prediction {p0.shown!r} has id {p0.key!r} and "
            f"truth {t0.shown!r} id {t0.key!r}. If the names differ by a suffix, pass "
            f"pred_suffix= and true_suffix= (e.g. '_leftImg8bit.png' and "
            f"'_gtFine_labelIds.png' for Cityscapes)"
        )
    lossy = [
        f"{_plural(len(fs.lossy), 'lossy ' + _SIDE[fs.name] + ' image')} were left out"
        for fs in (pred, true)
        if fs.lossy
    ]
    raise UnpairedFilesError(
        "; ".join(parts)
        + f" (ids are the file names without the suffix; {suffixes})"
        + (f"; {', '.join(lossy)}" if lossy else "")
        + ". To evaluate the pairs and list the others in the report, pass missing='skip'"
    )

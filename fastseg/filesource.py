"""Out-of-core evaluation of files: folders, globs and lists of images, volumes or arrays.

:func:`plan_files` is what :func:`fastseg.dataset.plan` runs when either input names
files (:func:`fastseg.pairing.is_file_input`). It lists the files, pairs prediction and
truth by id (or, when one side is a Zarr / Dask / NumPy array, pairs the files in id
order with the array's images by position), reads every file's header (shape, dtype,
NIfTI geometry; never the data) and checks each pair with the kind rules before anything
is computed. Each file is one image: it is read with a batch axis of 1 added, so sizes
may differ from file to file.

The graph has one task per pair of files (per batch chunk of the array side when mixed):
read both files, run :func:`fastseg.inputs.prepare` and
:func:`fastseg.counting.count_prepared` exactly as a Zarr block is counted, and return
:class:`~fastseg.counts.Counts` whose ``first_image`` is the pair's position. The tasks
are merged by the same fixed tree, run on the same schedulers, report the same progress
and write the same checkpoint blocks (one per task) as Zarr blocks. At most a few files
per worker are in memory at once, whatever the number of files.

With ``instances`` (Cityscapes' ``*_gtFine_instanceIds.png``), every truth file gets its
instance-id file (:func:`fastseg.instances.instance_files`: beside it, or from a folder,
glob or list, by id), whose header is checked with the others; each task then also
tallies the instances (:func:`fastseg.instances.tally`) into the counts'
:attr:`~fastseg.counts.Counts.instances`, and the files join the checkpoint fingerprint.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fastseg import counting as counting_
from fastseg import instances as instances_
from fastseg import readers
from fastseg.checkpoint import BlockFile, Checkpoint, load_block, save_block
from fastseg.counts import Counts
from fastseg.inputs import prepare, prepare_options
from fastseg.pairing import FileEntry, FileSet, is_file_input, list_files, pair
from fastseg.planning import (
    MissingChunksError,
    Plan,
    class_names_of,
    describe_missing,
    merge_tree,
    numba_threads,
    store_defaults,
    valid_example,
)
from fastseg.policy import Policy
from fastseg.readers import Header
from fastseg.stores import Source, missing_chunks, open_source, storage_chunks

log = logging.getLogger("fastseg")

#: Relative tolerance on NIfTI voxel spacing and affine between prediction and truth.
GEOMETRY_RTOL = 1e-4
#: Threads reading file headers while planning.
HEADER_THREADS = 8
#: Files whose headers one thread reads in a row.
HEADER_BATCH = 64
#: Image-format truth files are label maps: their axes are the spatial axes.
_LABEL_IMAGE_FORMATS = frozenset({"png", "tiff", "nifti"})
#: Reading options checked once, before the cases are.
_CHECKED = ("num_classes", "class_axis", "ignore_index", "threshold", "spatial_dims")


@dataclass(frozen=True)
class FileRef:
    """One file as a task reads it: where, its format, its header, how to name it.

    `size` and `mtime_ns` are part of the value, so a task's key (and a checkpoint's
    fingerprint) changes when the file does.
    """

    path: str
    fmt: str
    header: Header
    shown: str
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class _Side:
    """One input: files (`refs`, in id order) or an array (`source`)."""

    name: str
    description: str
    files: FileSet | None = None
    source: Source | None = None


def _swapped(pred: Any, true: Any, pred_suffix: str | None, true_suffix: str | None) -> bool:
    """Whether two file inputs hold each other's files (by their distinct suffixes)."""
    if not (pred_suffix and true_suffix) or pred_suffix == true_suffix:
        return False
    if not (is_file_input(pred) and is_file_input(true)):
        return False
    try:
        list_files(true, "pred", pred_suffix)
        list_files(pred, "true", true_suffix)
    except ValueError:
        return False
    return True


def _open_side(
    x: Any,
    name: str,
    suffix: str | None,
    array_path: str | None,
    storage_options: dict[str, Any] | None,
) -> _Side:
    if is_file_input(x):
        if array_path is not None:
            raise ValueError(
                f"{name}_array={array_path!r} names an array inside a Zarr group, but {name} "
                "names files"
            )
        files = list_files(x, name, suffix)
        return _Side(name, files.description, files=files)
    if suffix is not None:  # e.g. a data-set preset's suffix, with Zarr on this side
        log.warning("%s_suffix=%r ignored: %s is not a folder, glob or list of files "
                    "(its images pair with the files by position)", name, suffix, name)  # fmt: skip
    source = open_source(x, name, array_path, storage_options)
    return _Side(name, source.description, source=source)


def _read_headers(entries: list[FileEntry]) -> dict[str, FileRef]:
    """Every file's header and stat, read by a few threads; path -> FileRef."""
    for fmt in sorted({e.fmt for e in entries}):
        readers.require(fmt)

    def one(entry: FileEntry) -> FileRef:
        header = readers.read_header(entry.path, entry.fmt)
        try:
            size, mtime = readers.stat(entry.path)
        except OSError as exc:
            raise readers.FileReadError(f"could not stat {entry.path}: {exc}") from exc
        return FileRef(entry.path, entry.fmt, header, entry.shown, size, mtime)

    def some(batch: list[FileEntry]) -> list[FileRef]:
        return [one(e) for e in batch]

    step = HEADER_BATCH
    batches = [entries[i : i + step] for i in range(0, len(entries), step)]
    if len(batches) == 1:
        return {ref.path: ref for ref in some(batches[0])}
    with concurrent.futures.ThreadPoolExecutor(HEADER_THREADS) as pool:
        return {ref.path: ref for refs in pool.map(some, batches) for ref in refs}


def _stub(side: _Side) -> Source:
    """A Source for the attribute lookups of :mod:`fastseg.dataset` (files have none)."""
    if side.source is not None:
        return side.source
    return Source(side.name, None, side.description)


def _geometry_rtol_ok(a: Any, b: Any, scale: float) -> bool:
    return bool(
        np.allclose(np.asarray(a), np.asarray(b), rtol=GEOMETRY_RTOL, atol=GEOMETRY_RTOL * scale)
    )


def _check_geometry(case: str, p: FileRef, t: FileRef) -> None:
    """Same shape (when both are label maps of one ndim) and NIfTI spacing and affine."""
    ph, th = p.header, t.header
    differ = [k for k, (a, b) in enumerate(zip(ph.shape, th.shape, strict=False)) if a != b]
    # One axis of 1 against several: maybe a label map's channel axis, which the kind rules
    # read or refuse with the reason (fastseg.inputs, rule 1).
    channel = len(differ) == 1 and 1 in (ph.shape[differ[0]], th.shape[differ[0]])
    if len(ph.shape) == len(th.shape) and differ and not channel:
        raise ValueError(
            f"image {case!r}: prediction {p.shown} has shape {ph.shape} but truth {t.shown} "
            f"{th.shape}"
        )
    if ph.spacing is not None and th.spacing is not None:
        n = min(len(ph.spacing), len(th.spacing), 3)
        sp, st = ph.spacing[-n:], th.spacing[-n:]
        scale = max(max(map(abs, st)), 1e-12)
        if not _geometry_rtol_ok(sp, st, scale):
            raise ValueError(
                f"image {case!r}: prediction {p.shown} has voxel spacing {sp} but truth "
                f"{t.shown} {st} (relative tolerance {GEOMETRY_RTOL:g})"
            )
    if ph.affine is not None and th.affine is not None:
        scale = max(max(abs(v) for row in th.affine[:3] for v in row[:3]), 1e-12)
        if not _geometry_rtol_ok(np.ravel(ph.affine), np.ravel(th.affine), scale):
            raise ValueError(
                f"image {case!r}: prediction {p.shown} and truth {t.shown} have different "
                f"NIfTI affines (voxel to world, relative tolerance {GEOMETRY_RTOL:g}): "
                f"{np.round(np.asarray(ph.affine), 4).tolist()} and "
                f"{np.round(np.asarray(th.affine), 4).tolist()}"
            )


def _dummy(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    return np.broadcast_to(np.zeros((), dtype), (1, *shape))


def _example(shape: tuple[int, ...], dtype: np.dtype, kind: str, axis: int | None) -> np.ndarray:
    """A tiny zero image made like `shape` / `dtype`: batch of 1, 2 per spatial axis.

    Zero may be no class through a label-id map: :func:`fastseg.planning.valid_example`
    fills it with a mapped id.
    """
    dims = [1] + [2] * len(shape)
    if kind == "scores" and axis is not None:
        dims[axis] = int(shape[axis - 1])
    return np.zeros(dims, dtype)


def _defaults_from_files(options: dict[str, Any], cases: list[_Case]) -> None:
    """Options the files decide: nnU-Net's channels-first class axis, the truth's axes.

    ``class_axis`` (when None) is 1 when every prediction file holds nnU-Net
    probabilities (``.npz`` key ``probabilities`` / ``softmax``, channels first).
    ``spatial_dims`` (when None) is the truth files' number of axes when they are
    integer PNG, TIFF or NIfTI files of one ndim: an image file is a label map, so its
    axes are spatial, and same-ndim integer pairs are never taken for one-hot masks.
    """
    pred = [c.pred.header for c in cases if isinstance(c.pred, FileRef)]
    true = [c.true.header for c in cases if isinstance(c.true, FileRef)]
    true_formats = {c.true.fmt for c in cases if isinstance(c.true, FileRef)}
    if options["class_axis"] is None and pred and all(h.channels_first for h in pred):
        options["class_axis"] = 1
        log.info("class axis 1: the prediction files hold nnU-Net probabilities, "
                 "channels first")  # fmt: skip
    if options["spatial_dims"] is not None or not true:
        return
    ndims = {len(h.shape) for h in true}
    if (
        len(ndims) == 1
        and true_formats <= _LABEL_IMAGE_FORMATS
        and all(h.dtype.kind in "biu" for h in true)
    ):
        d = ndims.pop()
        if options["class_axis"] is not None and pred and all(len(h.shape) == d for h in pred):
            return  # class_axis with same-ndim files: one-hot masks on both sides
        options["spatial_dims"] = d


@dataclass
class _Case:
    """One image: its id, prediction and truth (a file, or a position in the array)."""

    id: str
    pred: FileRef | int
    true: FileRef | int


def _describe_item(item: FileRef | int, side: _Side) -> str:
    return item.shown if isinstance(item, FileRef) else f"image {item} of {side.description}"


def _shape_dtype(item: FileRef | int, side: _Side) -> tuple[tuple[int, ...], np.dtype]:
    if isinstance(item, FileRef):
        return item.header.shape, item.header.dtype
    assert side.source is not None
    arr = side.source.array
    return tuple(int(s) for s in arr.shape[1:]), np.dtype(arr.dtype)


def _check_cases(
    cases: list[_Case], pred: _Side, true: _Side, options: dict[str, Any]
) -> tuple[str, str, int, int | None]:
    """Geometry and kinds of every case, from headers; (pred kind, true kind, N, axis)."""
    seen: dict[tuple[Any, ...], tuple[str, str, int, int | None]] = {}
    first: tuple[str, str, int, int | None] | None = None
    first_id = ""
    for case in cases:
        if isinstance(case.pred, FileRef) and isinstance(case.true, FileRef):
            _check_geometry(case.id, case.pred, case.true)
        p_shape, p_dtype = _shape_dtype(case.pred, pred)
        t_shape, t_dtype = _shape_dtype(case.true, true)
        signature = (p_shape, p_dtype.str, t_shape, t_dtype.str)
        if signature not in seen:
            try:
                prep = prepare(_dummy(t_shape, t_dtype), _dummy(p_shape, p_dtype),
                               **counting_.reading_options(options))  # fmt: skip
                counting_.check_extras(prep, options)
            except (ValueError, TypeError) as exc:
                raise type(exc)(
                    f"image {case.id!r} (prediction {_describe_item(case.pred, pred)} "
                    f"{p_dtype} {p_shape}, truth {_describe_item(case.true, true)} {t_dtype} "
                    f"{t_shape}, read with a batch axis of 1): {exc}"
                ) from exc
            axis = None
            if "scores" in (prep.pred_kind, prep.true_kind):
                ndim = 1 + len(p_shape if prep.pred_kind == "scores" else t_shape)
                ca = options["class_axis"]
                axis = (-1 if ca is None else int(ca)) % ndim
            seen[signature] = (prep.pred_kind, prep.true_kind, prep.num_classes, axis)
        found = seen[signature]
        if first is None:
            first, first_id = found, case.id
        elif found[:3] != first[:3]:

            def said(f: tuple[str, str, int, int | None]) -> str:
                return f"{f[0]} against {f[1]}, {f[2]} classes"

            raise ValueError(
                f"image {case.id!r} reads as {said(found)}, but image {first_id!r} as "
                f"{said(first)}: every pair must be of one kind and class count"
            )
    assert first is not None
    return first


def _instance_refs(
    instances: Any, suffix: str | None, cases: list[_Case], true: _Side
) -> tuple[list[FileRef] | None, str]:
    """Each case's instance-id file, its header read and checked; (None, "") without.

    The truth must be files; an instance-id file must be an integer map of the truth
    file's shape (checked from the headers, before any compute).
    """
    if instances is None or instances is False:
        return None, ""
    if true.files is None:
        raise ValueError(
            "instances= pairs instance-id files with the truth files by name, but the truth "
            f"is {true.description}, not files"
        )
    truths = [c.true for c in cases if isinstance(c.true, FileRef)]
    entries, where = instances_.instance_files(
        instances, suffix, [(c.id, t.path, t.shown) for c, t in zip(cases, truths, strict=True)]
    )
    refs = _read_headers(entries)
    out = [refs[e.path] for e in entries]
    for case, t, ref in zip(cases, truths, out, strict=True):
        if ref.header.dtype.kind not in "iu":
            raise ValueError(
                f"image {case.id!r}: instance-id file {ref.shown} holds {ref.header.dtype}, "
                "not integer ids"
            )
        if ref.header.shape != t.header.shape:
            raise ValueError(
                f"image {case.id!r}: instance-id file {ref.shown} has shape "
                f"{ref.header.shape} but truth {t.shown} {t.header.shape}"
            )
    return out, where


def _fingerprint(
    pred: _Side, true: _Side, cases: list[_Case], groups: list[int], options: dict[str, Any]
) -> dict[str, Any]:
    """The inputs a checkpoint's blocks depend on: each file, its size and mtime."""

    def side(s: _Side, items: list[FileRef | int]) -> dict[str, Any]:
        if s.files is not None:
            files = [[f.path, f.size, f.mtime_ns] for f in items if isinstance(f, FileRef)]
            return {f"{s.name}_files": files, f"{s.name}_suffix": s.files.suffix}
        src = s.source
        assert src is not None
        return {
            s.name: src.description if src.location is None else src.location,
            f"{s.name}_shape": list(src.array.shape),
            f"{s.name}_dtype": str(src.array.dtype),
        }

    return {
        **side(pred, [c.pred for c in cases]),
        **side(true, [c.true for c in cases]),
        "ids": [c.id for c in cases],
        "blocks": [groups],
        **{k: options[k] for k in sorted(options)},
    }


def _case_options(
    options: dict[str, Any],
    true: list[FileRef] | np.ndarray,
    pred: list[FileRef] | np.ndarray,
    j: int,
) -> dict[str, Any]:
    """The options of case `j`: surface distances in its file's own voxel spacing.

    Without a ``spacing`` option, a surface score takes the spacing of the truth's NIfTI
    header (else the prediction's), as MONAI's and nnU-Net's users expect.
    """
    if options.get("surface") is None or options.get("spacing") is not None:
        return options
    for items in (true, pred):
        spacing = None if isinstance(items, np.ndarray) else items[j].header.spacing
        if spacing is not None:
            return {**options, "case_spacing": list(spacing)}
    return options


def _image(items: list[FileRef] | np.ndarray, j: int) -> np.ndarray:
    """Image `j` of a task's side, with its batch axis: a file read, or an array slice."""
    if isinstance(items, np.ndarray):
        return items[j : j + 1]
    ref = items[j]
    return readers.read_array(ref.path, ref.fmt, ref.header)[None]


def count_files(
    pred: list[FileRef] | np.ndarray,
    true: list[FileRef] | np.ndarray,
    first: int,
    names: list[str],
    options: dict[str, Any],
    threads: int,
    save_to: BlockFile | None,
    instances: list[FileRef] | None = None,
    rule: instances_.InstanceRule | None = None,
) -> Counts:
    """Task: count images ``first ..`` (one per file, or a batch chunk of the array side).

    Each image is read (prediction, then truth), counted with the in-memory path and
    dropped before the next; the counts start at image `first` and are saved to
    `save_to` when given. `names` says how to name each image in an error. With
    `instances` (one instance-id file per image) and their `rule`, the images' instances
    are tallied into the counts' instance sums.
    """
    parts = []
    for j, name in enumerate(names):
        p = _image(pred, j)
        t = _image(true, j)
        try:
            with numba_threads(threads):
                prep, c = counting_.count_arrays(t, p, _case_options(options, true, pred, j))
            if instances is not None and rule is not None:
                ids = _image(instances, j)
                values, codes = instances_.prediction_for_tally(prep, p, options["class_axis"])
                c = dataclasses.replace(c, instances=instances_.tally(ids, values, rule, codes))
                del ids, values
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from exc
        del p, t, prep
        parts.append(c.starting_at(first + j))
    counts = Counts.merge(parts)
    if save_to is not None:
        save_block(save_to, counts)
    return counts


class _CountTask:
    """A graph task: :func:`count_files` of one group, called with the array block if any.

    An opaque callable (not a list or a dataclass), so Dask neither walks its file list
    nor tokenises it: graphs of 10 000 files build in a fraction of a second.
    """

    __slots__ = ("first", "instances", "names", "options", "pred", "rule", "save_to",
                 "threads", "true")  # fmt: skip

    def __init__(
        self,
        pred: list[FileRef] | None,
        true: list[FileRef] | None,
        first: int,
        names: list[str],
        options: dict[str, Any],
        threads: int,
        save_to: BlockFile | None,
        instances: list[FileRef] | None = None,
        rule: instances_.InstanceRule | None = None,
    ) -> None:
        self.pred, self.true, self.first, self.names = pred, true, first, names
        self.options, self.threads, self.save_to = options, threads, save_to
        self.instances, self.rule = instances, rule

    def __call__(self, *block: np.ndarray) -> Counts:
        pred = block[0] if self.pred is None else self.pred
        true = block[0] if self.true is None else self.true
        return count_files(pred, true, self.first, self.names, self.options, self.threads,
                           self.save_to, self.instances, self.rule)  # fmt: skip


class _LoadTask:
    """A graph task: one group's counts loaded from the checkpoint."""

    __slots__ = ("kwargs", "target")

    def __init__(self, target: BlockFile, **kwargs: Any) -> None:
        self.target, self.kwargs = target, kwargs

    def __call__(self) -> Counts:
        return load_block(self.target, **self.kwargs)


def _first_key(keys: Any) -> Any:
    while isinstance(keys, list):
        keys = keys[0]
    return keys


def _token(fingerprint: dict[str, Any], *extra: Any) -> str:
    """A short hash of what the tasks compute, to name their keys."""
    text = json.dumps([fingerprint, *extra], sort_keys=True, default=repr)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def plan_files(
    pred: Any,
    true: Any,
    *,
    options: dict[str, Any],
    pred_suffix: str | None,
    true_suffix: str | None,
    pred_array: str | None,
    true_array: str | None,
    storage_options: dict[str, Any] | None,
    class_names: Sequence[str] | None,
    missing: str,
    checkpoint: str | os.PathLike[str] | None,
    kernel_threads: int,
    policy: Policy,
    preset: str | None,
    instances: Any = None,
    instance_suffix: str | None = None,
) -> Plan:
    """The lazy evaluation of inputs of which at least one names files; see the module.

    Parameters are those of :func:`fastseg.dataset.plan`, with `options` the reading
    options (store defaults not yet applied) and `policy` the unresolved report policy.
    """
    from dask.delayed import Delayed
    from dask.highlevelgraph import HighLevelGraph

    try:
        p_side = _open_side(pred, "pred", pred_suffix, pred_array, storage_options)
        t_side = _open_side(true, "true", true_suffix, true_array, storage_options)
    except ValueError as exc:
        if _swapped(pred, true, pred_suffix, true_suffix):
            raise ValueError(
                f"{exc}. The two inputs look swapped: the files ending with "
                f"{true_suffix!r} (truth) are where the predictions were expected, and those "
                f"ending with {pred_suffix!r} where the truth was; the truth comes first: "
                "evaluate(y_true, y_pred), fastseg evaluate --true TRUE --pred PRED"
            ) from exc
        raise
    both_files = p_side.files is not None and t_side.files is not None
    if both_files and missing == "fill":
        raise ValueError(
            "missing='fill' reads absent Zarr chunks as fill values; files have none. For "
            "files without a partner use missing='error' or missing='skip'"
        )

    # Cases: pairs of files by id, or files (in id order) and array images by position.
    pred_only: list[FileEntry] = []
    true_only: list[FileEntry] = []
    if both_files:
        assert p_side.files is not None
        assert t_side.files is not None
        pairing = pair(p_side.files, t_side.files, skip=missing == "skip")
        pred_only, true_only = pairing.pred_only, pairing.true_only
        entries = [e for case in pairing.cases for e in case]
        refs = _read_headers(entries)
        cases = [_Case(p.key, refs[p.path], refs[t.path]) for p, t in pairing.cases]
    else:
        files_side, array_side = (p_side, t_side) if p_side.files is not None else (t_side, p_side)
        assert files_side.files is not None
        assert array_side.source is not None
        entries = files_side.files.entries
        n_array = int(array_side.source.array.shape[0])
        if len(entries) != n_array:
            raise ValueError(
                f"{files_side.name} has {len(entries)} files ({files_side.description}) but "
                f"{array_side.name} has {n_array} images ({array_side.description}): files "
                f"mixed with an array are paired by position (files in order of their ids), "
                f"so both need the same number of images"
            )
        refs = _read_headers(entries)
        cases = []
        for i, e in enumerate(entries):
            pair_ = (refs[e.path], i) if files_side is p_side else (i, refs[e.path])
            cases.append(_Case(e.key, *pair_))

    from_store = store_defaults(options, _stub(p_side), _stub(t_side))
    _defaults_from_files(options, cases)
    try:
        prepare_options(**{k: options[k] for k in _CHECKED})
        pred_kind, true_kind, n, axis = _check_cases(cases, p_side, t_side, options)
    except ValueError as exc:
        if not from_store:
            raise
        raise ValueError(f"{exc} ({from_store})") from exc
    names = class_names_of(class_names, _stub(p_side), _stub(t_side), n)
    policy = policy.resolved(n, names)
    inst_refs, inst_where = _instance_refs(instances, instance_suffix, cases, t_side)
    rule = None if inst_refs is None else instances_.InstanceRule.from_options(options, n)

    # Tasks: one per case, or one per batch chunk of the array side.
    array_side = p_side if p_side.source is not None else t_side
    groups = [1] * len(cases)
    blocks: list[Any] = []
    arr: Any = None
    skipped_groups: set[int] = set()
    found: dict[str, list[tuple[int, ...]]] = {}
    if not both_files:
        src = array_side.source
        assert src is not None
        arr = src.array.rechunk(dict.fromkeys(range(1, src.array.ndim), -1))
        groups = [int(c) for c in arr.chunks[0]]
        blocks = [_first_key(k) for k in arr.__dask_keys__()]  # one block per batch chunk
        if src.zarr_array is not None:
            coords = missing_chunks(src.zarr_array)
            if coords:
                found[src.name] = coords
                batch = storage_chunks(src.zarr_array)[0]
                starts = np.cumsum((0, *groups))
                for c in coords:
                    lo, hi = c[0] * batch, (c[0] + 1) * batch
                    skipped_groups.update(
                        g for g in range(len(groups)) if starts[g] < hi and starts[g + 1] > lo
                    )
        if found and missing == "error":
            raise MissingChunksError(
                describe_missing(found, {src.name: src})
                + ". They would be read as fill values. If the store was written with "
                "write_empty_chunks=False, pass missing='fill'; to evaluate the rest and "
                "report what was left out, missing='skip'"
            )
        if missing != "skip":
            skipped_groups = set()

    fingerprint = _fingerprint(p_side, t_side, cases, groups, options)
    if inst_refs is not None:  # runs without instances keep their fingerprints
        fingerprint["instance_files"] = [[f.path, f.size, f.mtime_ns] for f in inst_refs]
        fingerprint["instance_suffix"] = instance_suffix
    ckpt = None
    done: set[tuple[int, ...]] = set()
    if checkpoint is not None:
        ckpt = Checkpoint(checkpoint, fingerprint)
        done = ckpt.done((len(groups),))

    # The graph, written directly (one layer): a task per group, then the merge tree.
    token = _token(fingerprint, None if checkpoint is None else os.fspath(checkpoint),
                   kernel_threads)  # fmt: skip
    name, merge_name = f"fastseg-files-{token}", f"fastseg-files-merge-{token}"
    layer: dict[Any, Any] = {}

    def files_of(items: list[FileRef | int]) -> list[FileRef] | None:
        refs = [i for i in items if isinstance(i, FileRef)]
        return refs if refs else None

    keys: list[Any] = []
    counting: set[Any] = set()
    resumed = 0
    start = 0
    for g, size in enumerate(groups):
        group = cases[start : start + size]
        group_instances = None if inst_refs is None else inst_refs[start : start + size]
        first, start = start, start + size
        if g in skipped_groups:
            continue
        key = (name, g)
        keys.append(key)
        if (g,) in done:
            assert ckpt is not None
            layer[key] = (_LoadTask(ckpt.block_file((g,)), first_image=first, rows=size,
                                    num_classes=n, soft=options["soft"]),)  # fmt: skip
            resumed += 1
            continue
        labels = [
            f"image {c.id!r} (prediction {_describe_item(c.pred, p_side)}, truth "
            f"{_describe_item(c.true, t_side)}"
            + ("" if group_instances is None else f", instances {group_instances[k].shown}")
            + ")"
            for k, c in enumerate(group)
        ]
        task = _CountTask(
            files_of([c.pred for c in group]),
            files_of([c.true for c in group]),
            first,
            labels,
            options,
            kernel_threads,
            None if ckpt is None else ckpt.block_file((g,)),
            group_instances,
            rule,
        )
        layer[key] = (task,) if both_files else (task, blocks[g])
        counting.add(key)

    def merge(group: list[Any]) -> Any:
        key = (merge_name, len(layer))
        layer[key] = (Counts.merge, list(group))
        return key

    root_key = merge_tree(keys, merge)
    dependencies = [] if both_files else [arr]
    graph = HighLevelGraph.from_collections(name, layer, dependencies=dependencies)
    root = None if root_key is None else Delayed(root_key, graph, layer=name)
    parts = [Delayed(k, graph, layer=name) for k in keys]

    ids = [c.id for c in cases]
    meta: dict[str, Any] = {
        "pred": p_side.description,
        "true": t_side.description,
        "images": len(cases),
        "blocks": len(groups),
        "blocks_counted": len(groups) - len(skipped_groups),
        "blocks_resumed": resumed,
        "missing_policy": missing,
        "pred_suffix": pred_suffix,
        "true_suffix": true_suffix,
    }
    if inst_refs is not None:
        meta["instances"] = inst_where
    if pred_only or true_only:
        meta["unpaired_pred"] = [e.shown for e in pred_only]
        meta["unpaired_true"] = [e.shown for e in true_only]
        meta["skipped"] = meta["unpaired_pred"] + meta["unpaired_true"]
        meta["complete"] = False
    if found:
        meta["missing_chunks"] = {k: [list(c) for c in v] for k, v in found.items()}
    if skipped_groups:
        starts = np.cumsum((0, *groups))
        meta["skipped_blocks"] = sorted([g] for g in skipped_groups)
        meta["skipped"] = [ids[i] for g in sorted(skipped_groups)
                           for i in range(starts[g], starts[g + 1])]  # fmt: skip
        meta["complete"] = False

    c0 = cases[0]
    p_shape, p_dtype = _shape_dtype(c0.pred, p_side)
    t_shape, t_dtype = _shape_dtype(c0.true, t_side)
    example = valid_example(_example(p_shape, p_dtype, pred_kind, axis),
                             _example(t_shape, t_dtype, true_kind, axis), options)  # fmt: skip
    for arr, item in zip(example, (c0.pred, c0.true), strict=True):
        arr.flags.writeable = not isinstance(item, FileRef)  # files are read read-only
    return Plan(
        root, len(cases), n, bool(options["soft"]), meta, names, policy=policy, preset=preset,
        options=options, parts=parts, counting=frozenset(counting), example=example,
        kinds=(pred_kind, true_kind), class_axis=axis, checkpoint=ckpt, ids=ids,
        unit="image" if both_files else "block")  # fmt: skip

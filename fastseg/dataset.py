"""Out-of-core evaluation: the core kernel mapped over Zarr / Dask chunks, counts tree-summed.

:func:`evaluate` opens both inputs as Dask arrays chunked as stored (nothing is read),
checks them (shapes, kinds, dtypes, codecs, missing chunks), aligns the truth to the
prediction's chunks, and builds one task per block: decode the block to counts with the
Numba kernel. Block counts carry their first image's global index, so blocks that split
an image spatially add up into it; they are merged by a fixed tree of additions, so the
result does not depend on the scheduler or the number of workers. Only then is anything
computed.
"""

from __future__ import annotations

import bisect
import contextlib
import itertools
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fastseg.checkpoint import BlockCounts, Checkpoint, load_block, merge_blocks, save_block
from fastseg.counts import Counts
from fastseg.stores import Source, chunk_region, iter_block_indices, missing_chunks, open_source

log = logging.getLogger("fastseg")

#: Block counts merged per task of the reduction tree.
FAN_IN = 16
MISSING_POLICIES = ("error", "skip", "fill")
#: Dask's own schedulers, by name; anything else is a distributed Client or address.
LOCAL_SCHEDULERS = ("threads", "sync", "synchronous")


class MissingChunksError(ValueError):
    """Chunks the arrays' shapes imply are absent from the store."""


@dataclass
class Plan:
    """An evaluation ready to run: the lazy merged counts and what was decided on the way.

    Attributes
    ----------
    root : dask.delayed.Delayed or None
        Merged :class:`~fastseg.checkpoint.BlockCounts` of every block to count or load;
        None when every block was skipped.
    n_images, num_classes : int
    soft : bool
    meta : dict
        Facts for the report: sources, block counts, resumed and skipped blocks.
    class_names : list of str or None
        From the stores' attributes, when they hold them.
    """

    root: Any
    n_images: int
    num_classes: int
    soft: bool
    meta: dict[str, Any] = field(default_factory=dict)
    class_names: list[str] | None = None


def _kinds(pred: Source, true: Source, options: dict[str, Any]) -> tuple[str, str, int, int | None]:
    """Kinds of both inputs, N and the normalised class axis, decided without reading data."""
    from fastseg.inputs import prepare

    dummy_pred = np.broadcast_to(np.zeros((), pred.array.dtype), pred.array.shape)
    dummy_true = np.broadcast_to(np.zeros((), true.array.dtype), true.array.shape)
    prep = prepare(dummy_true, dummy_pred, **options)
    axis = None
    if "scores" in (prep.pred_kind, prep.true_kind):
        ndim = pred.array.ndim if prep.pred_kind == "scores" else true.array.ndim
        axis = (-1 if options["class_axis"] is None else int(options["class_axis"])) % ndim
    return prep.pred_kind, prep.true_kind, prep.num_classes, axis


def _whole_class_axis(source: Source, axis: int) -> Any:
    arr = source.array
    if len(arr.chunks[axis]) > 1:
        log.warning(
            "%s (%s) is chunked along its class axis %d; rechunking so each chunk holds every "
            "class (store it with whole class chunks to avoid this extra copy)",
            source.name,
            source.description,
            axis,
        )
        arr = arr.rechunk({axis: -1})
    return arr


def _truth_chunks(
    pred_chunks: tuple, pred_kind: str, true_kind: str, axis: int | None, n: int
) -> tuple:
    if pred_kind == true_kind:
        return pred_chunks
    assert axis is not None
    if pred_kind == "scores":
        return pred_chunks[:axis] + pred_chunks[axis + 1 :]
    return (*pred_chunks[:axis], (n,), *pred_chunks[axis:])


def _convert_index(index: tuple, from_kind: str, to_kind: str, axis: int | None) -> tuple:
    """An index of a `from_kind` array as an index of a `to_kind` one of the same data.

    Going from a label map to scores inserts None (the whole class axis) at `axis`;
    going from scores to a label map drops the class axis.
    """
    if from_kind == to_kind or axis is None:
        return index
    if to_kind == "scores":
        return (*index[:axis], None, *index[axis:])
    return index[:axis] + index[axis + 1 :]


def _blocks_touching(regions: list[tuple], pred_chunks: tuple) -> set[tuple[int, ...]]:
    """Prediction blocks that overlap any of `regions` (None = every block on that axis)."""
    bounds = [np.cumsum((0, *c)).tolist() for c in pred_chunks]
    touched: set[tuple[int, ...]] = set()
    for region in regions:
        ranges = []
        for s, b in zip(region, bounds, strict=True):
            if s is None:
                ranges.append(range(len(b) - 1))
                continue
            lo = bisect.bisect_right(b, s.start) - 1
            hi = bisect.bisect_left(b, min(s.stop, b[-1]))
            ranges.append(range(lo, hi))
        touched.update(itertools.product(*ranges))
    return touched


def _missing(
    sources: list[tuple[Source, str]], pred_kind: str, axis: int | None, pred_chunks: tuple
) -> tuple[dict[str, list[tuple[int, ...]]], set[tuple[int, ...]]]:
    """Missing stored chunks, per source, and the prediction blocks they make uncountable."""
    found: dict[str, list[tuple[int, ...]]] = {}
    regions = []
    for source, kind in sources:
        if source.zarr_array is None:
            continue
        coords = missing_chunks(source.zarr_array)
        if not coords:
            continue
        found[source.name] = coords
        chunks = source.array.chunksize
        for c in coords:
            region = chunk_region(c, chunks)
            regions.append(_convert_index(region, kind, pred_kind, axis))
    return found, _blocks_touching(regions, pred_chunks) if regions else set()


def _describe_missing(found: dict[str, list[tuple[int, ...]]], sources: dict[str, Source]) -> str:
    parts = []
    for name, coords in found.items():
        shown = ", ".join(str(c) for c in coords[:10])
        more = f" and {len(coords) - 10} more" if len(coords) > 10 else ""
        parts.append(
            f"{name} ({sources[name].description}) lacks {len(coords)} chunk(s): {shown}{more}"
        )
    return "; ".join(parts)


@contextlib.contextmanager
def _numba_threads(n: int) -> Iterator[None]:
    import numba

    before = numba.get_num_threads()
    numba.set_num_threads(max(1, min(n, numba.config.NUMBA_NUM_THREADS)))  # type: ignore[attr-defined]
    try:
        yield
    finally:
        numba.set_num_threads(before)


def _count_block(
    p: np.ndarray,
    t: np.ndarray,
    block: tuple[int, ...],
    b0: int,
    options: dict[str, Any],
    threads: int,
    save_to: Any,
) -> BlockCounts:
    """Task: count one block (truth `t`, prediction `p`), optionally persisting the result."""
    from fastseg.counting import count_prepared
    from fastseg.inputs import prepare

    try:
        with _numba_threads(threads):
            prep = prepare(t, p, **options)
            c = count_prepared(prep, soft=options["soft"])
    except ValueError as exc:
        last = b0 + p.shape[0] - 1
        raise ValueError(f"block {block} (images {b0}-{last}): {exc}") from exc
    counts = BlockCounts(b0, c.tp, c.pred, c.true, c.confusion, c.ignored)
    if save_to is not None:
        save_block(save_to, counts)
    return counts


def _fingerprint(
    pred: Source, true: Source, pred_chunks: tuple, options: dict[str, Any]
) -> dict[str, Any]:
    return {
        "pred": pred.description,
        "true": true.description,
        "pred_shape": list(pred.array.shape),
        "true_shape": list(true.array.shape),
        "pred_dtype": str(pred.array.dtype),
        "true_dtype": str(true.array.dtype),
        "blocks": [list(c) for c in pred_chunks],
        **{k: options[k] for k in ("num_classes", "class_axis", "ignore_index", "soft")},
    }


def plan(
    pred: Any,
    true: Any,
    *,
    num_classes: int | None = None,
    class_axis: int | None = None,
    ignore_index: int | None = None,
    soft: bool = False,
    pred_array: str | None = None,
    true_array: str | None = None,
    missing: str = "error",
    checkpoint: str | os.PathLike[str] | None = None,
    kernel_threads: int = 1,
    storage_options: dict[str, Any] | None = None,
) -> Plan:
    """Check both inputs and build the lazy evaluation; nothing is computed.

    Parameters are those of :func:`evaluate`; `kernel_threads` is the Numba thread count
    each block task may use.
    """
    import dask

    if missing not in MISSING_POLICIES:
        raise ValueError(f"missing must be one of {MISSING_POLICIES}; got {missing!r}")
    p_src = open_source(pred, "pred", pred_array, storage_options)
    t_src = open_source(true, "true", true_array, storage_options)
    options = {
        "num_classes": num_classes,
        "class_axis": class_axis,
        "ignore_index": ignore_index,
        "soft": soft,
    }
    pred_kind, true_kind, n, axis = _kinds(p_src, t_src, options)

    p_arr, t_arr = p_src.array, t_src.array
    if axis is not None:
        p_arr = _whole_class_axis(p_src, axis) if pred_kind == "scores" else p_arr
        t_arr = _whole_class_axis(t_src, axis) if true_kind == "scores" else t_arr
    wanted = _truth_chunks(p_arr.chunks, pred_kind, true_kind, axis, n)
    if t_arr.chunks != wanted:
        t_arr = t_arr.rechunk(wanted)

    found, blocked = _missing(
        [(p_src, pred_kind), (t_src, true_kind)], pred_kind, axis, p_arr.chunks
    )
    if found and missing == "error":
        raise MissingChunksError(
            _describe_missing(found, {"pred": p_src, "true": t_src})
            + ". They would be read as fill values. If the store was written with "
            "write_empty_chunks=False (chunks equal to the fill value are not stored), pass "
            "missing='fill'; to evaluate the rest and report what was left out, "
            "missing='skip'"
        )
    skipped = blocked if missing == "skip" else set()

    ckpt = None
    done: set[tuple[int, ...]] = set()
    if checkpoint is not None:
        ckpt = Checkpoint(checkpoint, _fingerprint(p_src, t_src, p_arr.chunks, options))
        done = ckpt.done()

    p_blocks = p_arr.to_delayed()
    t_blocks = t_arr.to_delayed()
    starts = np.cumsum((0, *p_arr.chunks[0])).tolist()
    parts = []
    resumed = 0
    for block in iter_block_indices(p_arr.numblocks):
        if block in skipped:
            continue
        if block in done:
            assert ckpt is not None
            parts.append(dask.delayed(load_block)(ckpt.path(block)))
            resumed += 1
            continue
        t_index = _convert_index(block, pred_kind, true_kind, axis)
        t_index = tuple(0 if i is None else i for i in t_index)
        save_to = None if ckpt is None else ckpt.path(block)
        parts.append(
            dask.delayed(_count_block, pure=True)(
                p_blocks[block],
                t_blocks[t_index],
                block,
                starts[block[0]],
                options,
                kernel_threads,
                save_to,
            )
        )
    while len(parts) > 1:
        parts = [
            dask.delayed(merge_blocks, pure=True)(parts[i : i + FAN_IN])
            for i in range(0, len(parts), FAN_IN)
        ]

    n_blocks = int(np.prod(p_arr.numblocks))
    meta: dict[str, Any] = {
        "pred": p_src.description,
        "true": t_src.description,
        "blocks": n_blocks,
        "blocks_counted": n_blocks - len(skipped),
        "blocks_resumed": resumed,
        "missing_policy": missing,
    }
    if found:
        meta["missing_chunks"] = {k: [list(c) for c in v] for k, v in found.items()}
    if skipped:
        meta["skipped_blocks"] = sorted(list(b) for b in skipped)
        meta["complete"] = False
    names = p_src.attrs.get("class_names") or t_src.attrs.get("class_names")
    class_names = [str(x) for x in names] if names and len(names) == n else None
    return Plan(parts[0] if parts else None, int(p_arr.shape[0]), n, soft, meta, class_names)


def _compute(root: Any, scheduler: Any, workers: int, progress: bool) -> BlockCounts:
    """Run the graph on the threaded scheduler, a named local one, or a distributed client."""
    import dask

    if scheduler is None or scheduler in LOCAL_SCHEDULERS:
        import dask.threaded

        bar: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
        if progress:
            from dask.diagnostics import ProgressBar

            bar = ProgressBar(minimum=1.0, out=sys.stderr)
        with bar:
            # The scheduler's function, not its name: a name makes Dask import distributed
            # to look for a running client (0.3 s of a CLI's cold start, measured).
            get = dask.get if scheduler in ("sync", "synchronous") else dask.threaded.get
            (result,) = dask.compute(root, scheduler=get, num_workers=workers)
        return result
    from distributed import Client
    from distributed import progress as distributed_progress

    client = scheduler if isinstance(scheduler, Client) else Client(scheduler)
    try:
        future = client.compute(root)
        if progress:
            with contextlib.redirect_stdout(sys.stderr):
                distributed_progress(future)
        return future.result()
    finally:
        if client is not scheduler:
            client.close()


def evaluate(
    pred: Any,
    true: Any,
    *,
    num_classes: int | None = None,
    class_axis: int | None = None,
    ignore_index: int | None = None,
    soft: bool = False,
    pred_array: str | None = None,
    true_array: str | None = None,
    class_names: Sequence[str] | None = None,
    per_image: bool = True,
    missing: str = "error",
    scheduler: Any = None,
    workers: int | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    progress: bool = True,
    storage_options: dict[str, Any] | None = None,
    preset: str | None = None,
    **policies: Any,
) -> Any:
    """Evaluate predictions against truth chunk by chunk, in bounded memory.

    Parameters
    ----------
    pred, true : str, os.PathLike, zarr.Array, zarr.Group, dask.array.Array or array_like
        Scores or label maps (the kinds of :func:`fastseg.counts`): a Zarr path or URL
        (directory, ``.zip``, any fsspec URL; Zarr v2 or v3), an opened Zarr array or
        group, a Dask array or a NumPy array.
    num_classes, class_axis, ignore_index, soft
        As for :func:`fastseg.counts`.
    pred_array, true_array : str, optional
        Array paths inside a group (default ``"pred"`` / ``"true"``, or the only array).
    class_names : sequence of str, optional
        Default: the stores' ``class_names`` attribute, if any.
    per_image : bool, default True
        Keep per-image counts (for per-image metrics, ``worst`` and bootstrap intervals).
    missing : {'error', 'skip', 'fill'}
        A chunk absent from a store: fail before computing and list them (default); leave
        out the blocks it touches and say so in the report; or read it as fill values
        (right for stores written with ``write_empty_chunks=False``).
    scheduler : None, str or distributed.Client
        None: Dask's threaded scheduler on `workers` threads (default: all cores).
        A dask.distributed ``Client`` or scheduler address runs on that cluster.
    workers : int, optional
        Threads of the local scheduler.
    checkpoint : path, optional
        Directory where each finished block's counts are saved; a run started again
        with the same inputs and options counts only the blocks not saved yet.
    progress : bool, default True
        Show a progress bar (on stderr) for work longer than a second.
    storage_options : dict, optional
        fsspec options for remote URLs.
    preset, **policies
        Report conventions, as for :meth:`fastseg.Accumulator.compute`.

    Returns
    -------
    Report
        The same report as :class:`fastseg.Accumulator` gives on the same data in memory;
        its ``meta`` lists the sources and any skipped blocks.

    Raises
    ------
    ValueError, TypeError
        Before any compute, for inputs that do not fit or cannot be evaluated;
        :class:`MissingChunksError` for absent chunks. During the compute, a bad label or
        NaN names its block; :class:`~fastseg.stores.ChunkReadError` names a chunk that
        failed to decode.
    """
    from fastseg.stream import Accumulator

    cores = os.cpu_count() or 1
    workers = workers or cores
    local = scheduler is None or scheduler in LOCAL_SCHEDULERS
    threads = max(1, cores // workers) if local else 1
    p = plan(
        pred,
        true,
        num_classes=num_classes,
        class_axis=class_axis,
        ignore_index=ignore_index,
        soft=soft,
        pred_array=pred_array,
        true_array=true_array,
        missing=missing,
        checkpoint=checkpoint,
        kernel_threads=threads,
        storage_options=storage_options,
    )
    if p.root is None:
        raise ValueError("every block was skipped: nothing left to evaluate")
    merged = _compute(p.root, scheduler, workers, progress)
    counts = _full_counts(merged, p)
    names = class_names if class_names is not None else p.class_names
    acc = Accumulator(
        p.num_classes, ignore_index=ignore_index, class_names=names, per_image=per_image, soft=soft
    )
    acc.add_counts(counts)
    return acc.compute(preset, meta=p.meta, **policies)


def _full_counts(merged: BlockCounts, p: Plan) -> Counts:
    """Counts of every image; images whose blocks were all skipped keep zero rows."""
    if merged.b0 == 0 and merged.b1 == p.n_images:
        return Counts(merged.tp, merged.pred, merged.true, merged.confusion, merged.ignored)
    full = merge_blocks([merged, _zeros(p, 0), _zeros(p, p.n_images - 1)])
    return Counts(full.tp, full.pred, full.true, full.confusion, full.ignored)


def _zeros(p: Plan, b: int) -> BlockCounts:
    dtype = np.float64 if p.soft else np.int64
    rows = np.zeros((1, p.num_classes), dtype)
    confusion = None if p.soft else np.zeros((p.num_classes, p.num_classes), np.int64)
    return BlockCounts(b, rows, rows, rows, confusion, 0)

"""Out-of-core evaluation: the core kernel mapped over Zarr / Dask chunks, counts tree-summed.

:func:`evaluate` opens both inputs as Dask arrays chunked as stored (nothing is read),
checks them (shapes, kinds, dtypes, codecs, missing chunks), aligns the truth to the
prediction's chunks, and builds one task per block: decode the block to counts with the
Numba kernel. Block counts (:class:`~fastseg.counts.Counts`) carry their first image's
global index, so blocks that split an image spatially add up into it; they are merged by
a fixed tree of :meth:`~fastseg.counts.Counts.merge`, so the result does not depend on
the scheduler or the number of workers. Only then is anything computed.
"""

from __future__ import annotations

import bisect
import contextlib
import dataclasses
import itertools
import logging
import os
import socket
import threading
from collections.abc import Mapping, Sequence
from typing import Any, Literal, get_args

import numpy as np

from fastseg import counting as counting_
from fastseg import progress as progress_
from fastseg.boundary import BoundarySums, boundary_width
from fastseg.checkpoint import BlockFile, Checkpoint, load_block, save_block
from fastseg.counts import Counts
from fastseg.dataset_presets import DatasetPreset, dataset_preset
from fastseg.extras import extra_options
from fastseg.filesource import plan_files
from fastseg.formulas import Presence
from fastseg.inputs import label_map_options, prepare
from fastseg.instances import check_options as check_instance_options
from fastseg.instances import resolve_instance_sizes
from fastseg.pairing import is_file_input
from fastseg.planning import (
    FROM_STORE,
    MissingChunksError,
    Plan,
    class_names_of,
    describe_missing,
    merge_tree,
    numba_threads,
    store_defaults,
    valid_example,
)
from fastseg.policy import Aggregation, EmptyValue, Preset, resolve_groups, resolve_policy
from fastseg.report import Report
from fastseg.stores import Source, chunk_region, iter_block_indices, missing_chunks, open_source
from fastseg.stream import Accumulator

log = logging.getLogger("fastseg")

#: What to do with an absent chunk or an unpaired file (see :func:`evaluate`).
Missing = Literal["error", "skip", "fill"]
MISSING_POLICIES: tuple[Missing, ...] = get_args(Missing)
#: Dask's own schedulers, by name; anything else is a distributed Client or address.
LOCAL_SCHEDULERS = ("threads", "sync", "synchronous")
#: Seconds to wait for a distributed scheduler to answer before giving up.
CONNECT_TIMEOUT = 5.0
#: Seconds the kernel warm-up may take before the one-time compile is announced.
COMPILE_NOTICE_AFTER = 0.5


class SchedulerConnectionError(ConnectionError):
    """No distributed scheduler answered at the address given."""


def _kinds(
    pred: Source, true: Source, options: dict[str, Any]
) -> tuple[str, str, int, int | None, int | None, tuple[int | None, int | None]]:
    """Kinds of both inputs, N, the normalised class axis and its length, without reading.

    Last, the (truth, prediction) channel axis of 1 a label map leaves out, if any.
    """
    dummy_pred = np.broadcast_to(np.zeros((), pred.array.dtype), pred.array.shape)
    dummy_true = np.broadcast_to(np.zeros((), true.array.dtype), true.array.shape)
    prep = prepare(dummy_true, dummy_pred, **counting_.reading_options(options))
    counting_.check_extras(prep, options)
    axis = None
    if "scores" in (prep.pred_kind, prep.true_kind):
        ndim = pred.array.ndim if prep.pred_kind == "scores" else true.array.ndim
        axis = (-1 if options["class_axis"] is None else int(options["class_axis"])) % ndim
    return (prep.pred_kind, prep.true_kind, prep.num_classes, axis, prep.channels,
            prep.dropped_axes)  # fmt: skip


def _without_axis(source: Source, axis: int | None) -> Source:
    """`source` without its channel axis of 1 at `axis` (a lazy index: no data is read)."""
    if axis is None:
        return source
    index = (slice(None),) * axis + (0,)
    return dataclasses.replace(source, array=source.array[index], dropped_axis=axis)


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
        k = source.dropped_axis
        for c in coords:
            region = chunk_region(c if k is None else c[:k] + c[k + 1 :], chunks)
            regions.append(_convert_index(region, kind, pred_kind, axis))
    return found, _blocks_touching(regions, pred_chunks) if regions else set()


def _count_block(
    p: np.ndarray,
    t: np.ndarray,
    block: tuple[int, ...],
    b0: int,
    options: dict[str, Any],
    threads: int,
    save_to: BlockFile | None,
    halo: BlockHalo | None = None,
    wide: tuple[np.ndarray, np.ndarray] | None = None,
) -> Counts:
    """Task: count one block (truth `t`, prediction `p`) whose first image is `b0`.

    Its counts start at image `b0`; they are saved to `save_to` when it is given. With
    `halo`, `wide` holds the (prediction, truth) block with that halo around it: the
    boundary counts are made of it, the other counts of the block itself.
    """
    try:
        with numba_threads(threads):
            if halo is None:
                _, c = counting_.count_arrays(t, p, options)
            else:
                assert wide is not None
                plain = {k: v for k, v in options.items() if k != "boundary"}
                _, c = counting_.count_arrays(t, p, plain)
                c = dataclasses.replace(c, extras={**c.extras, "boundary": _count_boundaries(
                    *wide, options, halo, threads)})  # fmt: skip
    except ValueError as exc:
        last = b0 + p.shape[0] - 1
        raise ValueError(f"block {block} (images {b0}-{last}): {exc}") from exc
    counts = c.starting_at(b0)
    if save_to is not None:
        save_block(save_to, counts)
    return counts


@dataclasses.dataclass(frozen=True)
class BlockHalo:
    """The halo one block of a boundary count reads from its neighbours.

    Attributes
    ----------
    sides : tuple of (int, int)
        Extra pixels before and after the block along each spatial axis (0 at the
        image's edges).
    image_shape : tuple of int
        The spatial shape of the whole image (for widths given as a fraction).
    """

    sides: tuple[tuple[int, int], ...]
    image_shape: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class _Halo:
    """The halos of a boundary count out of core.

    `depth` pixels on the spatial axes that the blocks split, read from the neighbouring
    blocks (Dask's overlap).
    """

    depth: int
    image_shape: tuple[int, ...]

    @staticmethod
    def spatial_axes(ndim: int, kind: str, axis: int | None) -> list[int]:
        return [a for a in range(1, ndim) if not (kind == "scores" and a == axis)]

    def widen(self, arr: Any) -> Any:
        """`arr` rechunked so that every spatial chunk holds at least `depth` pixels."""
        from dask.array.overlap import ensure_minimum_chunksize

        chunks = list(arr.chunks)
        for a in range(1, arr.ndim):  # the class axis is whole: one chunk
            if len(chunks[a]) == 1 or min(chunks[a]) >= self.depth:
                continue
            if 2 * self.depth >= arr.shape[a]:
                chunks[a] = (arr.shape[a],)  # the halos would cover it: read it whole
            else:
                chunks[a] = ensure_minimum_chunksize(self.depth, chunks[a])
        return arr if tuple(chunks) == arr.chunks else arr.rechunk(tuple(chunks))

    def overlap(self, arr: Any, kind: str, axis: int | None) -> Any:
        """The blocks of `arr` with their halos, as Dask delayed objects."""
        import dask.array as da

        depth = {a: self.depth if arr.numblocks[a] > 1 else 0
                 for a in self.spatial_axes(arr.ndim, kind, axis)}  # fmt: skip
        depth |= {a: 0 for a in range(arr.ndim) if a not in depth}
        return da.overlap.overlap(arr, depth=depth, boundary="none").to_delayed()

    def block(
        self, block: tuple[int, ...], kind: str, axis: int | None, numblocks: tuple[int, ...]
    ) -> BlockHalo:
        """The halo of the prediction block `block` (spatial sides in image order)."""
        sides = []
        for a in self.spatial_axes(len(numblocks), kind, axis):
            if numblocks[a] == 1:
                sides.append((0, 0))
                continue
            sides.append((self.depth if block[a] > 0 else 0,
                          self.depth if block[a] < numblocks[a] - 1 else 0))  # fmt: skip
        return BlockHalo(tuple(sides), self.image_shape)


def _boundary_halo(p_arr: Any, kind: str, axis: int | None, width: float) -> _Halo | None:
    """How blocks of `p_arr` read their neighbours for boundary counts (None: no need)."""
    spatial = _Halo.spatial_axes(p_arr.ndim, kind, axis)
    image_shape = tuple(int(p_arr.shape[a]) for a in spatial)
    if all(p_arr.numblocks[a] == 1 for a in spatial):
        return None  # whole images in every block
    return _Halo(boundary_width(image_shape, width), image_shape)


def _count_boundaries(
    p: np.ndarray, t: np.ndarray, options: dict[str, Any], halo: BlockHalo, threads: int
) -> BoundarySums:
    """The boundary counts of a block given with its halo (the block is counted already)."""
    prep = prepare(t, p, **counting_.reading_options(options))
    return counting_.count_boundaries(prep, options["boundary"], threads, halo=halo.sides,
                                      image_shape=halo.image_shape)  # fmt: skip


def _fingerprint(
    pred: Source, true: Source, pred_chunks: tuple, options: dict[str, Any]
) -> dict[str, Any]:
    """What a checkpoint's blocks depend on: the inputs and every reading option.

    Stores are identified by their resolved location (``./data.zarr``, ``data.zarr`` and
    its absolute path are one store), not by the string typed.
    """
    return {
        "pred": pred.description if pred.location is None else pred.location,
        "true": true.description if true.location is None else true.location,
        "pred_shape": list(pred.array.shape),
        "true_shape": list(true.array.shape),
        "pred_dtype": str(pred.array.dtype),
        "true_dtype": str(true.array.dtype),
        "blocks": [list(c) for c in pred_chunks],
        **{k: options[k] for k in sorted(options)},
    }


def plan(
    y_true: Any,
    y_pred: Any,
    *,
    num_classes: int | None = None,
    class_axis: int | None = None,
    ignore_index: int | Literal["store"] | None = FROM_STORE,
    soft: bool = False,
    threshold: float | None = None,
    spatial_dims: int | None = None,
    pred_array: str | None = None,
    true_array: str | None = None,
    class_names: Sequence[str] | None = None,
    missing: Missing = "error",
    checkpoint: str | os.PathLike[str] | None = None,
    kernel_threads: int = 1,
    storage_options: dict[str, Any] | None = None,
    preset: Preset | None = None,
    aggregation: Aggregation | None = None,
    empty: EmptyValue | None = None,
    presence: Presence | None = None,
    exclude: Sequence[int | str] | None = None,
    smooth: float | None = None,
    pred_suffix: str | None = None,
    true_suffix: str | None = None,
    label_map: Any = None,
    label_map_pred: Any = None,
    reduce_zero_label: bool = False,
    instances: Any = None,
    instance_suffix: str | None = None,
    calibration: int | None = None,
    calibration_softmax: bool = False,
    boundary: float | None = None,
    surface: Any = None,
    spacing: Any = None,
    percentile: float | None = 95.0,
) -> Plan:
    """Check both inputs and every option, and build the lazy evaluation; nothing is computed.

    Parameters are those of :func:`evaluate`; `kernel_threads` is the Numba thread count
    each block task may use. The store-attribute defaults are applied, the class names
    checked and the report's policy resolved (preset, overrides, exclusions against the
    classes) here, before anything is written to `checkpoint`.
    """
    import dask

    pred, true = y_pred, y_true

    if missing not in MISSING_POLICIES:
        raise ValueError(f"missing must be one of {MISSING_POLICIES}; got {missing!r}")
    policy = resolve_policy(
        preset, aggregation=aggregation, empty=empty, presence=presence, exclude=exclude,
        smooth=smooth)  # fmt: skip
    if class_names is not None and (
        isinstance(class_names, str) or not all(isinstance(x, str) for x in class_names)
    ):
        raise TypeError(f"class_names must be a sequence of str; got {class_names!r}")
    options = {
        "num_classes": num_classes,
        "class_axis": class_axis,
        "ignore_index": ignore_index,
        "soft": soft,
        "threshold": threshold,
        "spatial_dims": spatial_dims,
        **label_map_options(label_map, label_map_pred, reduce_zero_label),
    }
    options |= extra_options(
        soft=soft, calibration=calibration, calibration_softmax=calibration_softmax,
        boundary=boundary, surface=surface, spacing=spacing, percentile=percentile)  # fmt: skip
    if instances is not None and instances is not False:
        check_instance_options(options)
    if is_file_input(pred) or is_file_input(true):  # folders, globs, lists of files
        return plan_files(
            pred, true, options=options, pred_suffix=pred_suffix, true_suffix=true_suffix,
            pred_array=pred_array, true_array=true_array, storage_options=storage_options,
            class_names=class_names, missing=missing, checkpoint=checkpoint,
            kernel_threads=kernel_threads, policy=policy, preset=preset, instances=instances,
            instance_suffix=instance_suffix)  # fmt: skip
    if instances is not None and instances is not False:
        raise ValueError(
            "instances= pairs instance-id files with the truth files by name, but the truth "
            "is not a folder, glob or list of files"
        )
    for name, suffix in (("pred", pred_suffix), ("true", true_suffix)):
        if suffix is not None:
            raise ValueError(
                f"{name}_suffix={suffix!r} pairs files by name, but {name} is not a folder, "
                "glob or list of files"
            )
    p_src = open_source(pred, "pred", pred_array, storage_options)
    t_src = open_source(true, "true", true_array, storage_options)
    from_store = store_defaults(options, p_src, t_src)
    try:
        pred_kind, true_kind, n, axis, channels, dropped = _kinds(p_src, t_src, options)
        if dropped != (None, None):  # blocks are read as the label map without that axis
            t_src, p_src = _without_axis(t_src, dropped[0]), _without_axis(p_src, dropped[1])
            if "scores" not in (pred_kind, true_kind):
                options["class_axis"] = None  # it named the axis now left out
            pred_kind, true_kind, n, axis, channels, _ = _kinds(p_src, t_src, options)
    except ValueError as exc:
        if not from_store:
            raise
        raise ValueError(f"{exc} ({from_store})") from exc
    names = class_names_of(class_names, p_src, t_src, n)
    policy = policy.resolved(n, names)

    p_arr, t_arr = p_src.array, t_src.array
    if axis is not None:
        p_arr = _whole_class_axis(p_src, axis) if pred_kind == "scores" else p_arr
        t_arr = _whole_class_axis(t_src, axis) if true_kind == "scores" else t_arr
    if options.get("surface") is not None:
        # Surface scores are per whole image: each block holds whole images.
        whole = dict.fromkeys(_Halo.spatial_axes(p_arr.ndim, pred_kind, axis), -1)
        if any(p_arr.numblocks[a] > 1 for a in whole):
            p_arr = p_arr.rechunk(whole)
    halo = None
    if options.get("boundary") is not None:
        halo = _boundary_halo(p_arr, pred_kind, axis, options["boundary"])
        if halo is not None:
            p_arr = halo.widen(p_arr)
    wanted = _truth_chunks(p_arr.chunks, pred_kind, true_kind, axis, channels or n)
    if t_arr.chunks != wanted:
        t_arr = t_arr.rechunk(wanted)

    found, blocked = _missing(
        [(p_src, pred_kind), (t_src, true_kind)], pred_kind, axis, p_arr.chunks
    )
    if found and missing == "error":
        raise MissingChunksError(
            describe_missing(found, {"pred": p_src, "true": t_src})
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
        done = ckpt.done(p_arr.numblocks)

    # The kinds were decided on the whole arrays: a block is read as the same kinds, even
    # where its own shape alone would be ambiguous (a last axis as long as N).
    block_options = options
    if options["spatial_dims"] is None and "scores" not in (pred_kind, true_kind):
        block_options = {**options, "spatial_dims": p_arr.ndim - 1}
    p_blocks = p_arr.to_delayed()
    t_blocks = t_arr.to_delayed()
    # With boundary counts over blocks that split images, each block also with its halo
    # (Dask reads each chunk once for both).
    p_wide = None if halo is None else halo.overlap(p_arr, pred_kind, axis)
    t_wide = None if halo is None else halo.overlap(t_arr, true_kind, axis)
    starts = np.cumsum((0, *p_arr.chunks[0])).tolist()
    parts = []
    counting = set()
    resumed = 0
    for block in iter_block_indices(p_arr.numblocks):
        if block in skipped:
            continue
        if block in done:
            assert ckpt is not None
            parts.append(
                dask.delayed(load_block)(
                    ckpt.block_file(block),
                    first_image=starts[block[0]],
                    rows=p_arr.chunks[0][block[0]],
                    num_classes=n,
                    soft=soft,
                )
            )
            resumed += 1
            continue
        t_index = _convert_index(block, pred_kind, true_kind, axis)
        t_index = tuple(0 if i is None else i for i in t_index)
        save_to = None if ckpt is None else ckpt.block_file(block)
        task = dask.delayed(_count_block, pure=True)(
            p_blocks[block],
            t_blocks[t_index],
            block,
            starts[block[0]],
            block_options,
            kernel_threads,
            save_to,
            None if halo is None else halo.block(block, pred_kind, axis, p_arr.numblocks),
            None if p_wide is None or t_wide is None else (p_wide[block], t_wide[t_index]),
        )
        parts.append(task)
        counting.add(task.key)
    root = merge_tree(parts, lambda group: dask.delayed(Counts.merge, pure=True)(group))

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
    return Plan(
        root, int(p_arr.shape[0]), n, soft, meta, names, policy=policy, preset=preset,
        options=options, parts=parts, counting=frozenset(counting),
        example=valid_example(_example(p_src, pred_kind, axis),
                               _example(t_src, true_kind, axis), options),
        kinds=(pred_kind, true_kind), class_axis=axis, checkpoint=ckpt)  # fmt: skip


def _example(source: Source, kind: str, axis: int | None) -> np.ndarray:
    """A tiny zero array made like the blocks of `source`: dtype, ndim, class axis, C order.

    Zero may be no class through a label-id map: :func:`valid_example` fills it with a
    mapped id.
    """
    shape = [1] + [2] * (source.array.ndim - 1)
    if kind == "scores" and axis is not None:
        shape[axis] = int(source.array.shape[axis])
    return np.zeros(shape, source.array.dtype)


def _compute(p: Plan, scheduler: Any, workers: int, progress: bool) -> Counts:
    """Run the plan on the threaded scheduler, a named local one, or a distributed client.

    With `progress`, one :class:`fastseg.progress.Progress` counts the finished block
    tasks, whichever runs them: a Dask callback on the local schedulers, the block
    futures as they complete on a cluster. Either way the counts are merged by the
    plan's fixed tree.
    """
    import dask

    reporter = (
        progress_.Progress(len(p.counting), unit=p.unit) if progress and p.counting else None
    )
    with reporter if reporter is not None else contextlib.nullcontext():
        if scheduler is None or isinstance(scheduler, str):
            import dask.threaded

            ticks: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
            if reporter is not None:
                from dask.callbacks import Callback

                def tick(key: Any, *_: Any) -> None:
                    if key in p.counting:
                        reporter.update()

                ticks = Callback(posttask=tick)
            with ticks:
                # The scheduler's function, not its name: a name makes Dask import
                # distributed to look for a running client (0.3 s of a CLI's cold start).
                get = dask.get if scheduler in ("sync", "synchronous") else dask.threaded.get
                (result,) = dask.compute(p.root, scheduler=get, num_workers=workers)
            merged: Counts = result
            return merged
        return _compute_distributed(p, scheduler, reporter)


def _compute_distributed(p: Plan, client: Any, reporter: progress_.Progress | None) -> Counts:
    """The plan on a distributed client: block futures, ticked as they finish, tree-merged."""
    from distributed import as_completed

    futures = client.compute(p.parts)
    finished = as_completed(futures) if reporter is not None else None
    root = merge_tree(futures, lambda group: client.submit(Counts.merge, group))
    del futures  # block results are released as soon as their merge has run
    if finished is not None and reporter is not None:
        for future in finished:
            if future.status == "error":
                break  # root.result() raises it
            if future.key in p.counting:
                reporter.update()
    merged: Counts = root.result()
    return merged


def _connect(scheduler: Any) -> tuple[Any, bool]:
    """A distributed client for `scheduler` and whether it was made here (to close it).

    An address is probed first (TCP) and the client given :data:`CONNECT_TIMEOUT`: an
    address nobody answers at fails in seconds, not after Dask's 30 s.
    """
    try:
        from distributed import Client
        from distributed.comm.addressing import parse_address, parse_host_port
    except ImportError as exc:
        raise ImportError(
            f"scheduler={scheduler!r} needs dask.distributed; install the distributed extra: "
            "pip install 'fastseg[distributed]'"
        ) from exc
    if isinstance(scheduler, Client):
        return scheduler, False
    if not isinstance(scheduler, str):
        raise TypeError(
            f"scheduler must be None, one of {LOCAL_SCHEDULERS}, a scheduler address or a "
            f"distributed.Client; got {type(scheduler).__name__}"
        )
    try:
        protocol, location = parse_address(scheduler)
        if protocol == "tcp":
            host, port = parse_host_port(location)
            with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT):
                pass
        client = Client(scheduler, timeout=CONNECT_TIMEOUT, set_as_default=False)
    except ValueError as exc:
        raise ValueError(f"scheduler={scheduler!r} is not a scheduler address: {exc}") from exc
    except (OSError, TimeoutError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise SchedulerConnectionError(
            f"scheduler={scheduler!r}: no Dask scheduler answered within "
            f"{CONNECT_TIMEOUT:g} s ({reason})"
        ) from exc
    return client, True


def _check_workers(workers: Any) -> int:
    """`workers` as a count of threads (None: every core), refusing anything below 1."""
    if workers is None:
        return os.cpu_count() or 1
    if isinstance(workers, bool) or not isinstance(workers, int | np.integer):
        raise TypeError(f"workers={workers!r}: the number of threads must be an integer")
    if workers < 1:
        raise ValueError(f"workers={workers}: the local scheduler needs at least 1 thread")
    return int(workers)


def _describe(array: np.ndarray, kind: str, axis: int | None) -> str:
    if kind != "scores":
        return f"{array.dtype} label maps"
    if axis == array.ndim - 1:
        layout = "channels-last"
    elif axis == 1:
        layout = "channels-first"
    else:
        layout = f"class-axis-{axis}"
    return f"{array.dtype} {layout} scores"


def _warm_up(p: Plan, announce: bool, wait: float = COMPILE_NOTICE_AFTER) -> Exception | None:
    """Compile the block kernel before the run, on a tiny input made like the blocks.

    Numba compiles a kernel once per input type, then loads it from its disk cache (which
    alone can take a second). When a real compile (Numba's ``numba:compile`` event, not
    a cache load) has run for `wait` seconds, it is announced on stderr (if `announce`)
    instead of the progress sitting still. Errors are left to the blocks, which report
    them with their position: the exception the warm-up met is only logged (debug) and
    returned, None when it counted its example (``p.example`` is valid input for every
    option, so a failure here is a bug, which the tests look for).
    """
    if p.example is None:
        return None
    from numba.core import event as numba_event

    pred, true = p.example
    compiling = threading.Event()
    failed: list[Exception] = []

    class Compiling(numba_event.Listener):
        def on_start(self, event: Any) -> None:
            compiling.set()

        def on_end(self, event: Any) -> None:
            pass

    def run() -> None:
        try:
            counting_.count_arrays(true, pred, p.options)
        except Exception as exc:  # the blocks raise it again, naming themselves
            log.debug("kernel warm-up failed: %s", exc)
            failed.append(exc)

    thread = threading.Thread(target=run, name="fastseg-compile", daemon=True)
    with numba_event.install_listener("numba:compile", Compiling()):
        thread.start()
        while thread.is_alive() and not compiling.is_set():
            thread.join(0.02)
        thread.join(wait)
    if thread.is_alive():
        if announce:
            what = " and ".join(
                _describe(a, k, p.class_axis) for a, k in zip(p.example, p.kinds, strict=True)
            )
            soft = "soft " if p.soft else ""
            progress_.note(f"compiling {soft}kernels for {what} (once, ~10 s; cached afterwards)")
        thread.join()
    return failed[0] if failed else None


def evaluate(
    y_true: Any,
    y_pred: Any,
    *,
    num_classes: int | None = None,
    class_axis: int | None = None,
    ignore_index: int | Literal["store"] | None = FROM_STORE,
    soft: bool = False,
    threshold: float | None = None,
    spatial_dims: int | None = None,
    pred_array: str | None = None,
    true_array: str | None = None,
    class_names: Sequence[str] | None = None,
    per_image: bool = True,
    missing: Missing = "error",
    scheduler: Any = None,
    workers: int | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    progress: bool = True,
    storage_options: dict[str, Any] | None = None,
    preset: Preset | None = None,
    aggregation: Aggregation | None = None,
    empty: EmptyValue | None = None,
    presence: Presence | None = None,
    exclude: Sequence[int | str] | None = None,
    smooth: float | None = None,
    pred_suffix: str | None = None,
    true_suffix: str | None = None,
    dataset: str | os.PathLike[str] | DatasetPreset | None = None,
    label_map: Any = None,
    label_map_pred: Any = None,
    reduce_zero_label: bool | None = None,
    groups: Mapping[str, Sequence[int | str]] | None = None,
    instances: Any = None,
    instance_suffix: str | None = None,
    instance_sizes: Mapping[str | int, float] | None = None,
    calibration: int | None = None,
    calibration_softmax: bool = False,
    boundary: float | None = None,
    surface: Any = None,
    spacing: Any = None,
    percentile: float | None = 95.0,
) -> Report:
    """Evaluate predictions against truth chunk by chunk, in bounded memory.

    Parameters
    ----------
    y_true, y_pred : str, os.PathLike, list of paths, zarr.Array, zarr.Group, dask or NumPy array
        The truth, then the predictions, in the order of every fastseg function (and of
        scikit-learn). Scores or label maps (the kinds of :func:`fastseg.counts`): a Zarr
        path or URL
        (directory, ``.zip``, any fsspec URL; Zarr v2 or v3), an opened Zarr array or
        group, a Dask array or a NumPy array; or files, one image (or volume) each, of
        any size: a folder (searched recursively), a glob or a list of paths of PNG,
        TIFF, NIfTI, ``.npy`` or ``.npz`` files (see :mod:`fastseg.filesource`). Files
        on both sides are paired by id (the file name without its suffix); files mixed
        with an array are paired with its images by position, in order of their ids.
    num_classes, class_axis, soft
        As for :func:`fastseg.counts`. When None, `num_classes` is the truth store's
        ``num_classes`` attribute (else the prediction store's) and `class_axis` the
        prediction store's ``class_axis`` attribute (else the truth store's), when they
        have one.
    threshold, spatial_dims : optional
        As for :func:`fastseg.counts`: one-channel scores need `threshold`; images have
        at least two spatial axes unless `spatial_dims` says otherwise.
    ignore_index : int, None or 'store', default 'store'
        Truth label whose pixels are skipped. ``'store'``: the truth store's
        ``ignore_index`` attribute, else none; None: no label is skipped.
    pred_array, true_array : str, optional
        Array paths inside a group (default ``"pred"`` / ``"true"``, or the only array).
    class_names : sequence of str, optional
        N names. Default: the stores' ``class_names`` attribute, if it has N entries.
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
        Threads of the local scheduler, at least 1.
    checkpoint : path, optional
        Directory where each finished block's counts are saved; a run started again
        with the same inputs and options counts only the blocks not saved yet.
    progress : bool, default True
        Report progress on stderr for work longer than a second (see
        :mod:`fastseg.progress`: a live bar in a terminal, a plain line every few percent
        or 30 s otherwise), and announce a one-time kernel compile. False: print nothing.
    storage_options : dict, optional
        fsspec options for remote URLs.
    preset, aggregation, empty, presence, exclude, smooth
        Report conventions, as for :class:`fastseg.report.Report`; `exclude` also takes
        class names (see :func:`fastseg.policy.resolve_exclusions`).
    pred_suffix, true_suffix : str, optional
        File inputs only: removed from the file names to make the ids that pair
        prediction and truth (e.g. ``"_leftImg8bit.png"`` and ``"_gtFine_labelIds.png"``
        for Cityscapes; the extension may be left out); a folder or glob then holds only
        the files ending with it. Default: the format's extension (``.png``,
        ``.nii.gz``). With files, `missing` says what to do with a file that has no
        partner: ``'error'`` lists them before any compute, ``'skip'`` leaves them out
        and lists them in the report's ``meta`` (``complete: false``).
    dataset : str, path or DatasetPreset, optional
        A data-set preset (:mod:`fastseg.dataset_presets`): ``"cityscapes"``,
        ``"ade20k"``, ``"voc"`` or a JSON file (fastseg's schema, or nnU-Net's
        ``dataset.json``). It supplies every option of this list left unset:
        `num_classes`, `ignore_index`, `class_names`, the label maps, `groups`, `preset`,
        the pairing suffixes, `instance_suffix` and `instance_sizes`.
    label_map, label_map_pred, reduce_zero_label
        Label-id maps of the truth and of label-map predictions (see
        :func:`fastseg.inputs.prepare`); a `label_map` or `reduce_zero_label` given
        replaces the preset's truth map.
    groups : mapping of str to sequence, optional
        Class groups scored from the confusion matrix (``Report.groups``).
    instances : True, str, path or list of paths, optional
        Instance-id maps of the truth (Cityscapes' ``*_gtFine_instanceIds.png``), for the
        instance-weighted iIoU (``Report.instances``, :mod:`fastseg.instances`); the truth
        must be files. True: each beside its truth file, named by the truth's id and
        `instance_suffix`; otherwise a folder, glob or list of files paired with the
        truth by id. Every truth file needs one (a missing one is an error naming it).
    instance_suffix : str, optional
        The instance-id files' name ending (the ``dataset`` preset's; Cityscapes
        ``"_gtFine_instanceIds.png"``).
    instance_sizes : mapping of class name or index to float, optional
        Average instance size in pixels of each class with instances (the weight of an
        instance is its class's average size over its own size); needed with
        `instances`. The ``cityscapes`` preset has the official evaluator's table.
    calibration : int, optional
        Number of confidence bins: histogram the confidence of each counted pixel's
        predicted class in the same pass as the counts, for ECE, MCE and the
        reliability diagram (``Report.ece``, ``Report.extra_summary``,
        :mod:`fastseg.calibration`). Needs float probabilities as predictions.
    calibration_softmax : bool, default False
        With `calibration`: the predictions are logits; confidences are their softmax.
    boundary : int or float, optional
        Also count boundary pixels for Boundary IoU (``Report.extra_columns``,
        :mod:`fastseg.boundary`) at this width: pixels (``>= 1``) or a fraction of the
        image diagonal (``< 1``; the paper's 0.02). Blocks that split an image read a
        halo of the width from their neighbours, so the counts equal the in-memory ones.
    surface : float or sequence of float, optional
        Also score each image's (case's) surfaces as MONAI does (``Report.extra_columns``,
        :mod:`fastseg.surface`): surface Dice at this tolerance (one, or one per class,
        in spacing units) and the Hausdorff distance at `percentile`. Each image is
        scored whole: blocks that split images are rechunked to whole images.
    spacing : float or sequence of float, optional
        Voxel size for the surface distances; default: each NIfTI file's own, else 1.
    percentile : float or None, default 95
        The Hausdorff distance's percentile (HD95); None: the maximum.

    Returns
    -------
    Report
        The same report as :class:`fastseg.Accumulator` gives on the same data in memory;
        its ``meta`` lists the sources and any skipped blocks.

    Raises
    ------
    ValueError, TypeError
        Before any compute, for inputs that do not fit or cannot be evaluated, and for
        any bad option (preset, policy fields, exclusions, class names, workers);
        :class:`MissingChunksError` for absent chunks; :class:`SchedulerConnectionError`
        when no scheduler answers at the address given. During the compute, a bad label or
        NaN names its block; :class:`~fastseg.stores.ChunkReadError` names a chunk that
        failed to decode.
    """
    if dataset is not None:
            (num_classes, ignore_index, class_names, label_map, label_map_pred, reduce_zero_label,
         groups, preset, pred_suffix, true_suffix, instance_suffix,
         instance_sizes) = dataset_preset(dataset).fill(
            {"ignore_index": FROM_STORE}, files=is_file_input(y_pred) or is_file_input(y_true),
            num_classes=num_classes, ignore_index=ignore_index,
            class_names=class_names, label_map=label_map, label_map_pred=label_map_pred,
            reduce_zero_label=reduce_zero_label, groups=groups, preset=preset,
            pred_suffix=pred_suffix, true_suffix=true_suffix, instance_suffix=instance_suffix,
            instance_sizes=instance_sizes).values()  # fmt: skip
    if instances is not None and instances is not False and not instance_sizes:
        raise ValueError(
            "instances= gives iIoU, which weighs each instance by its class's average size: "
            "pass instance_sizes={class: pixels}, or a dataset that has them "
            "(dataset='cityscapes', or a data-set file with \"instance_sizes\")"
        )
    cores = os.cpu_count() or 1
    workers = _check_workers(workers)
    local = scheduler is None or (isinstance(scheduler, str) and scheduler in LOCAL_SCHEDULERS)
    threads = max(1, cores // workers) if local else 1
    client, own_client = (scheduler, False) if local else _connect(scheduler)
    try:
        p = plan(
            y_true,
            y_pred,
            num_classes=num_classes,
            class_axis=class_axis,
            ignore_index=ignore_index,
            soft=soft,
            threshold=threshold,
            spatial_dims=spatial_dims,
            pred_array=pred_array,
            true_array=true_array,
            class_names=class_names,
            missing=missing,
            checkpoint=checkpoint,
            kernel_threads=threads,
            storage_options=storage_options,
            preset=preset,
            aggregation=aggregation,
            empty=empty,
            presence=presence,
            exclude=exclude,
            smooth=smooth,
            pred_suffix=pred_suffix,
            true_suffix=true_suffix,
            label_map=label_map,
            label_map_pred=label_map_pred,
            reduce_zero_label=bool(reduce_zero_label),
            instances=instances,
            instance_suffix=instance_suffix,
            calibration=calibration,
            calibration_softmax=calibration_softmax,
            boundary=boundary,
            surface=surface,
            spacing=spacing,
            percentile=percentile,
        )
        resolve_groups(groups, p.num_classes, p.class_names)  # before any compute
        resolve_instance_sizes(instance_sizes, p.num_classes, p.class_names)
        if p.root is None:
            raise ValueError("every block was skipped: nothing left to evaluate")
        if checkpoint is not None:
            log.info(
                "checkpoint %s: %d of %d blocks resumed, %d to count", checkpoint,
                p.meta["blocks_resumed"], p.meta["blocks_counted"], len(p.counting))  # fmt: skip
        _warm_up(p, announce=progress)
        try:
            merged = _compute(p, client, workers, progress)
        except BaseException:
            if p.checkpoint is not None:  # so a corrected rerun may take the directory
                p.checkpoint.mark_failed()
            raise
    finally:
        if own_client:
            client.close()
    counts = _full_counts(merged, p)
    acc = Accumulator(
        p.num_classes,
        ignore_index=p.options["ignore_index"],
        class_names=p.class_names,
        per_image=per_image,
        soft=soft,
        **{k: p.options[k] for k in counting_.EXTRA_OPTIONS if k in p.options},
    )
    acc.add_counts(counts, p.ids)
    policy = p.policy
    return acc.compute(
        p.preset, meta=p.meta, aggregation=policy.aggregation, empty=policy.empty,
        presence=policy.presence, exclude=policy.exclude, smooth=policy.smooth,
        groups=groups, instance_sizes=instance_sizes)  # fmt: skip


def _full_counts(merged: Counts, p: Plan) -> Counts:
    """Counts of every image; images whose blocks were all skipped keep zero rows."""
    if merged.first_image == 0 and merged.n_images == p.n_images:
        return merged
    first, last = (
        Counts.zeros(1, p.num_classes, soft=p.soft, first_image=b) for b in (0, p.n_images - 1)
    )
    return Counts.merge([merged, first, last])

"""Opening evaluation inputs as Dask arrays, and checking Zarr stores before any compute.

A Zarr input is checked without decoding a chunk: its dtype must be numeric, no codec may
need pickle, and every chunk the array's shape implies must be stored (a missing chunk
would otherwise be read as fill values and counted as if it were data). Chunks are read
through :class:`ChunkReader`, which names the array and the chunk when one fails to
decode.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fastseg.inputs import as_array

#: Codecs that run arbitrary code (pickle) or make object arrays; never decoded.
UNSAFE_CODECS = frozenset(
    {"pickle", "json2", "msgpack2", "vlen-utf8", "vlen-bytes", "vlen-array", "categorize", "object"}
)

#: Target bytes per Dask chunk when a NumPy array is evaluated.
NUMPY_CHUNK_BYTES = 64 * 2**20


class MissingReaderError(ImportError):
    """The optional package that reads a format or a URL is not installed; names the extra."""


class ChunkReadError(RuntimeError):
    """A stored chunk could not be read or decoded."""


@dataclass
class Source:
    """One evaluation input: its Dask array and where it came from.

    Attributes
    ----------
    name : str
        ``"pred"`` or ``"true"``, for messages.
    array : dask.array.Array
        The data, chunked as stored.
    description : str
        The store path and array path, or the kind of in-memory array.
    zarr_array : zarr.Array or None
        The opened Zarr array, when the input is one.
    attrs : dict
        The Zarr array's attributes, then its group's (the array's win).
    location : str or None
        Where the data is, resolved, to identify it (checkpoints): a local store's real
        path (``./data.zarr``, ``data.zarr`` and its absolute path are one store) or a
        URL as given, then the array's path in the store. None for in-memory inputs,
        which only `description` names.
    """

    name: str
    array: Any
    description: str
    zarr_array: Any = None
    attrs: dict[str, Any] = field(default_factory=dict)
    location: str | None = None
    #: The stored array's axis of length 1 that `array` leaves out (a label map with a
    #: channel axis of 1, the kind rules' rule 1), or None.
    dropped_axis: int | None = None


class ChunkReader:
    """Array-like view of a Zarr array whose read errors name the array and the chunk.

    Dask reads each block through ``__getitem__`` with the block's slices, which are
    aligned to the stored chunks (the Dask array is chunked as stored).
    """

    def __init__(self, array: Any, label: str, chunks: tuple[int, ...]) -> None:
        self._array = array
        self._label = label
        self._chunks = chunks
        self.shape = tuple(array.shape)
        self.dtype = np.dtype(array.dtype)
        self.ndim = len(self.shape)

    def __getitem__(self, key: tuple[slice, ...]) -> np.ndarray:
        try:
            return np.asarray(self._array[key])
        except Exception as exc:
            index = tuple(
                (s.start or 0) // c if isinstance(s, slice) else "?"
                for s, c in zip(key, self._chunks, strict=False)
            )
            raise ChunkReadError(
                f"could not read chunk {index} of {self._label}: {type(exc).__name__}: {exc}"
            ) from exc


def _is_url(path: str) -> bool:
    return "://" in path or "::" in path


def _resolved(path: str) -> str:
    """A local path resolved (links, ``.``, the working directory); a URL as given."""
    return path if _is_url(path) else os.path.realpath(path)


def _store_location(store: Any) -> str:
    """Where an opened Zarr store keeps its data, resolved like :func:`_resolved`."""
    root = getattr(store, "root", None)  # LocalStore
    if root is not None:
        return os.path.realpath(root)
    fs, path = getattr(store, "fs", None), getattr(store, "path", None)
    if fs is not None and path is not None:  # FsspecStore
        return str(fs.unstrip_protocol(path))
    if path is not None:  # ZipStore
        return os.path.realpath(path)
    return str(store)  # e.g. memory://<id>: one process only


def _array_location(base: str, array_path: str) -> str:
    return f"{base.rstrip('/')}/{array_path}" if array_path else base


def _zip_entries(path: str) -> list[str]:
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            return z.namelist()
    except (OSError, zipfile.BadZipFile):
        return []


def _open_zarr(path: str, storage_options: dict[str, Any] | None, name: str = "input") -> Any:
    import zipfile

    import zarr

    if str(path).endswith(".zip") and not os.path.isdir(path):
        not_a_store = f"{name}: {path!r} is not a Zarr store"
        try:
            store = zarr.storage.ZipStore(path, mode="r")
        except FileNotFoundError:
            raise
        except (OSError, zipfile.BadZipFile) as exc:
            raise ValueError(f"{not_a_store}: not a readable zip archive ({exc})") from exc
        try:
            return zarr.open(store, mode="r")
        except (zipfile.BadZipFile, zarr.errors.NodeNotFoundError) as exc:
            # NodeNotFoundError is a FileNotFoundError: the archive exists, no store in it.
            with contextlib.suppress(Exception):  # never opened, if not a zip archive
                store.close()
            if isinstance(exc, zipfile.BadZipFile):
                raise ValueError(f"{not_a_store}: not a readable zip archive ({exc})") from exc
            entries = _zip_entries(path)
            nested = sorted(
                e.rsplit("/", 1)[0] + "/"
                for e in entries
                if "/" in e and e.rsplit("/", 1)[1] in ("zarr.json", ".zgroup", ".zarray")
            )
            held = ", ".join(entries[:5]) + (" ..." if len(entries) > 5 else "")
            hint = (
                f"; the store seems to be in its folder {nested[0]!r}: zip the store's "
                "content, not the folder holding it"
                if nested
                else ""
            )
            raise ValueError(
                f"{not_a_store}: the zip archive has no Zarr metadata (zarr.json, .zgroup "
                f"or .zarray) at its root (it holds {held or 'nothing'}){hint}"
            ) from exc
    return zarr.open(path, mode="r", storage_options=storage_options)


def _pick_member(group: Any, name: str, array_path: str | None, where: str) -> Any:
    import zarr

    if array_path is not None:
        try:
            member = group[array_path]
        except KeyError:
            raise ValueError(f"{where} has no array {array_path!r}") from None
        if not isinstance(member, zarr.Array):
            raise ValueError(f"{where}/{array_path} is a group, not an array")
        return member
    arrays = sorted(k for k, v in group.members() if isinstance(v, zarr.Array))
    if name in arrays:
        return group[name]
    if len(arrays) == 1:
        return group[arrays[0]]
    raise ValueError(
        f"{where} is a Zarr group with arrays {arrays}: say which holds the {name} "
        f"(array path, e.g. --{name}-array {arrays[0] if arrays else 'NAME'})"
    )


def storage_chunks(zarr_array: Any) -> tuple[int, ...]:
    """The chunk shape Dask should use: the shard shape for sharded arrays."""
    shards = getattr(zarr_array, "shards", None)
    return tuple(shards if shards is not None else zarr_array.chunks)


def _codec_names(zarr_array: Any) -> list[str]:
    names = []
    meta = zarr_array.metadata
    codecs = list(getattr(meta, "codecs", ()) or ())
    codecs += list(getattr(meta, "filters", None) or ())
    compressor = getattr(meta, "compressor", None)
    if compressor is not None:
        codecs.append(compressor)
    for codec in codecs:
        name = getattr(codec, "codec_id", None)
        if name is None and hasattr(codec, "to_dict"):
            name = codec.to_dict().get("name")
        if name is None:
            name = type(codec).__name__
        names.append(str(name).split(".")[-1].lower())
    return names


def check_zarr_array(zarr_array: Any, label: str) -> None:
    """Refuse a Zarr array fastseg must not decode: non-numeric dtype, pickle codecs.

    Raises
    ------
    TypeError
        With the array's label and the offending dtype or codec.
    """
    try:
        dtype = np.dtype(zarr_array.dtype)
    except TypeError:
        dtype = np.dtype(object)
    if dtype.kind not in "biuf":
        raise TypeError(
            f"{label} has dtype {zarr_array.dtype}; fastseg evaluates numeric arrays only "
            f"(float scores, integer label maps)"
        )
    unsafe = sorted(set(_codec_names(zarr_array)) & UNSAFE_CODECS)
    if unsafe:
        raise TypeError(f"{label} uses codec(s) {unsafe}, which fastseg refuses to decode")


def _stored_keys(zarr_array: Any) -> set[str]:
    from zarr.core.sync import sync

    prefix = f"{zarr_array.path}/" if zarr_array.path else ""

    async def collect() -> set[str]:
        return {k[len(prefix) :] async for k in zarr_array.store.list_prefix(prefix)}

    return sync(collect())


def _sharding_codec(zarr_array: Any) -> Any:
    """The array's sharding codec, or None for an unsharded array."""
    from zarr.codecs.sharding import ShardingCodec

    codecs = getattr(zarr_array.metadata, "codecs", None) or ()
    return next((c for c in codecs if isinstance(c, ShardingCodec)), None)


def _shards_with_holes(zarr_array: Any, present: list[tuple[int, ...]]) -> list[tuple[int, ...]]:
    """Stored shards that lack an inner chunk inside the array's bounds.

    A shard's index (read alone, a few bytes at its end or start) marks each inner chunk
    never written; zarr would read those as fill values.
    """
    from zarr.core.sync import sync
    from zarr.storage import StorePath

    codec = _sharding_codec(zarr_array)
    shard = tuple(zarr_array.shards)
    inner = tuple(codec.chunk_shape)
    per_shard = tuple(s // c for s, c in zip(shard, inner, strict=True))
    encode = zarr_array.metadata.encode_chunk_key
    prefix = f"{zarr_array.path}/" if zarr_array.path else ""
    # Shard-local inner-chunk starts, to leave out inner chunks past the array's edge.
    local = np.indices(per_shard).reshape(len(per_shard), -1).T * np.array(inner)

    async def holes(coords: tuple[int, ...]) -> bool:
        getter = StorePath(zarr_array.store, prefix + encode(coords))
        index = await codec._load_shard_index_maybe(getter, per_shard)
        if index is None:
            return True
        written = index.get_full_chunk_map().reshape(-1)
        inside = np.all(local + np.array(coords) * np.array(shard) < zarr_array.shape, axis=1)
        return bool(np.any(inside & ~written))

    async def scan() -> list[bool]:
        import asyncio

        return list(await asyncio.gather(*(holes(c) for c in present)))

    return [c for c, bad in zip(present, sync(scan()), strict=True) if bad]


def missing_chunks(zarr_array: Any) -> list[tuple[int, ...]]:
    """Grid coordinates of the chunks (shards) the array's shape implies but the store lacks.

    For a sharded array, a stored shard that lacks one of its inner chunks counts as
    missing too (its index says so), since those inner chunks would read as fill values.
    """
    chunks = storage_chunks(zarr_array)
    grid = [range(math.ceil(s / c)) for s, c in zip(zarr_array.shape, chunks, strict=True)]
    stored = _stored_keys(zarr_array)
    encode = zarr_array.metadata.encode_chunk_key
    absent: list[tuple[int, ...]] = []
    present: list[tuple[int, ...]] = []
    for coords in itertools.product(*grid):
        (present if encode(coords) in stored else absent).append(coords)
    if present and _sharding_codec(zarr_array) is not None:
        absent = sorted(absent + _shards_with_holes(zarr_array, present))
    return absent


def chunk_region(coords: tuple[int, ...], chunks: tuple[int, ...]) -> tuple[slice, ...]:
    """Slices covered by the chunk at grid `coords`."""
    return tuple(slice(i * c, (i + 1) * c) for i, c in zip(coords, chunks, strict=True))


def _numpy_chunks(arr: np.ndarray) -> tuple[int, ...]:
    per_image = max(1, arr[0].nbytes) if arr.shape[0] else 1
    return (max(1, NUMPY_CHUNK_BYTES // per_image), *arr.shape[1:])


def open_source(
    x: Any,
    name: str,
    array_path: str | None = None,
    storage_options: dict[str, Any] | None = None,
) -> Source:
    """Open an evaluation input as a Dask array without reading any chunk.

    Parameters
    ----------
    x : str, os.PathLike, zarr.Array, zarr.Group, dask.array.Array or array_like
        A Zarr path or URL (local directory, ``.zip`` store, anything fsspec opens; Zarr
        v2 or v3), an opened Zarr array or group, a Dask array or an in-memory array.
    name : {'pred', 'true'}
        Which input this is; also the default array name inside a group.
    array_path : str, optional
        The array inside a group (default: `name`, or the group's only array).
    storage_options : dict, optional
        Passed to fsspec for remote URLs.
    """
    import dask.array as da
    import zarr
    from dask.base import tokenize

    description = type(x).__name__
    node = x
    base = None
    if isinstance(x, str | os.PathLike):
        description = os.fspath(x)
        base = _resolved(description)
        try:
            node = _open_zarr(description, storage_options, name)
        except (FileNotFoundError, zarr.errors.NodeNotFoundError) as exc:
            raise ValueError(f"{name}: no Zarr array or group at {description!r}") from exc
        except ImportError as exc:  # fsspec names the back-end a URL needs (s3fs, gcsfs...)
            extra = " (pip install 'fastseg[remote]')" if "s3fs" in str(exc) else ""
            raise MissingReaderError(f"{name}: {description!r}: {exc}{extra}") from exc
    group_attrs: dict[str, Any] = {}
    if isinstance(node, zarr.Group):
        group_attrs = dict(node.attrs)
        node = _pick_member(node, name, array_path, description)
        description = f"{description}/{node.path.rsplit('/', 1)[-1]}"
    elif array_path is not None:
        raise ValueError(f"{name}: array path {array_path!r} given but the input is not a group")
    if isinstance(node, zarr.Array):
        check_zarr_array(node, f"{name} ({description})")
        chunks = storage_chunks(node)
        reader = ChunkReader(node, f"{name} ({description})", chunks)
        token = tokenize(description, node.shape, str(node.dtype), chunks, node.path)
        array = da.from_array(
            reader,
            chunks=chunks,
            lock=False,
            fancy=False,
            meta=np.empty((0,) * node.ndim, node.dtype),
            name=f"fastseg-read-{name}-{token}",
        )
        location = _array_location(base or _store_location(node.store), node.path)
        attrs = {**group_attrs, **dict(node.attrs)}
        return Source(name, array, description, node, attrs, location=location)
    if isinstance(node, da.Array):
        if node.dtype.kind not in "biuf":
            raise TypeError(f"{name} has dtype {node.dtype}; fastseg needs a numeric array")
        return Source(name, node, "Dask array")
    arr = as_array(node, name)
    return Source(name, da.from_array(arr, chunks=_numpy_chunks(arr)), f"{description} in memory")


def iter_block_indices(numblocks: tuple[int, ...]) -> Iterator[tuple[int, ...]]:
    """Block indices in C order (batch axis slowest)."""
    return itertools.product(*(range(n) for n in numblocks))

"""Image and volume files: which format a name has, its header, its array.

One file is one image (or one volume), read without a batch axis. Each format has a
header reader (shape and dtype, and for NIfTI the affine and voxel spacing, without
decoding the data) and an array reader; both raise :class:`FileReadError` naming the
file when it cannot be read.

=========================  =====================  ==========================================
suffix                     extra                  read as
=========================  =====================  ==========================================
``.png``                   ``images`` (Pillow)    grayscale (8/16-bit) or palette indices
``.tif``, ``.tiff``        ``images`` (tifffile)  the first series
``.nii``, ``.nii.gz``      ``nifti`` (nibabel)    axes reversed: ``(Z, Y, X)`` as SimpleITK
                                                  and nnU-Net read them
``.npy``                   -                      as stored (memory-mapped)
``.npz``                   -                      ``probabilities`` / ``softmax`` (nnU-Net,
                                                  channels-first), else the only array
=========================  =====================  ==========================================

Lossy formats (JPEG, WebP, ...) are refused: a label map stored lossily has labels that
were never drawn. 8- and 16-bit grayscale PNGs are decoded by imagecodecs when it is
installed (part of the ``images`` extra; about 1.5x faster than Pillow on a
2048 x 1024 label map), everything else by Pillow.
"""

from __future__ import annotations

import math
import os
import struct
import zipfile
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from fastseg import png
from fastseg.stores import ChunkReadError, MissingReaderError

#: Suffix -> format name; longest suffixes first (``.nii.gz`` before ``.gz``).
SUFFIXES: tuple[tuple[str, str], ...] = (
    (".nii.gz", "nifti"),
    (".nii", "nifti"),
    (".png", "png"),
    (".tiff", "tiff"),
    (".tif", "tiff"),
    (".npy", "npy"),
    (".npz", "npz"),
)
#: Lossy (or possibly lossy) image formats, refused.
LOSSY = (".jpg", ".jpeg", ".jpe", ".jfif", ".webp", ".heic", ".heif", ".avif")
#: Format -> (module to import, extra that installs it).
NEEDS = {"png": ("PIL", "images"), "tiff": ("tifffile", "images"), "nifti": ("nibabel", "nifti")}
#: Keys of channels-first probabilities in nnU-Net's ``.npz`` files (v2, v1).
NNUNET_KEYS = ("probabilities", "softmax")

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_GRAY, _PNG_PALETTE = 0, 3


class FileReadError(ChunkReadError):
    """A file could not be read or decoded; the message names it."""


@dataclass(frozen=True)
class Header:
    """What a file holds, read without decoding the data.

    Attributes
    ----------
    shape : tuple of int
        The array's shape (no batch axis), in the order it is read.
    dtype : numpy.dtype
        The array's dtype once read.
    affine : tuple of tuple of float or None
        NIfTI only: the voxel-to-world affine (4 x 4).
    spacing : tuple of float or None
        NIfTI only: the voxel sizes, in the order of `shape`.
    key : str or None
        ``.npz`` only: the array read.
    channels_first : bool
        The array holds nnU-Net probabilities, class axis first.
    png : tuple of int or None
        PNG only: (bit depth, colour type).
    nifti : tuple or None
        NIfTI only: where and how the voxels are stored, ``(offset, dtype, shape,
        slope, inter)`` (dtype as stored, shape in the file's ``(X, Y, Z)`` order,
        Fortran order), so the data is read without parsing the header again.
    """

    shape: tuple[int, ...]
    dtype: np.dtype
    affine: tuple[tuple[float, ...], ...] | None = None
    spacing: tuple[float, ...] | None = None
    key: str | None = None
    channels_first: bool = False
    png: tuple[int, int] | None = None
    nifti: tuple[int, str, tuple[int, ...], float, float] | None = None


def split_suffix(name: str) -> tuple[str, str | None]:
    """``(stem, format)`` of a file name; format None when the suffix is not read."""
    lower = name.lower()
    for suffix, fmt in SUFFIXES:
        if lower.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)], fmt
    return name, None


def is_lossy(name: str) -> bool:
    """Whether `name` has the suffix of a lossy image format."""
    return name.lower().endswith(LOSSY)


def require(fmt: str) -> None:
    """Import the reader of `fmt`, or raise :class:`MissingReaderError` naming the extra."""
    if fmt not in NEEDS:
        return
    module, extra = NEEDS[fmt]
    try:
        __import__(module)
    except ImportError:
        package = {"PIL": "Pillow"}.get(module, module)
        raise MissingReaderError(
            f"reading {fmt.upper() if fmt != 'nifti' else 'NIfTI'} files needs {package}: "
            f"pip install 'fastseg[{extra}]'"
        ) from None


def _fail(path: str, what: str, exc: BaseException | str) -> FileReadError:
    detail = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
    return FileReadError(f"could not {what} {path}: {detail}")


# ------------------------------------------------------------------------- headers


def _png_header(path: str) -> Header:
    with open(path, "rb") as f:
        head = f.read(33)
    if len(head) < 33 or head[:8] != _PNG_SIGNATURE or head[12:16] != b"IHDR":
        raise ValueError("not a PNG file (no PNG signature and IHDR chunk)")
    width, height, depth, colour = struct.unpack(">IIBB", head[16:26])
    if colour not in (_PNG_GRAY, _PNG_PALETTE):
        kind = {2: "an RGB", 4: "a grayscale + alpha", 6: "an RGBA"}.get(colour, "a colour")
        raise ValueError(
            f"{kind} image; label maps are single-channel PNGs (grayscale or palette) "
            f"holding class ids, not colours"
        )
    dtype = np.dtype(np.uint16 if depth == 16 else np.uint8)
    return Header((height, width), dtype, png=(depth, colour))


def _tiff_header(path: str) -> Header:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        return Header(tuple(int(s) for s in series.shape), np.dtype(series.dtype))


def _nifti_image(path: str) -> Any:
    import nibabel

    return nibabel.load(path)


def _nifti_scaled(image: Any) -> bool:
    proxy = image.dataobj
    slope, inter = getattr(proxy, "slope", 1.0), getattr(proxy, "inter", 0.0)
    return not (
        (slope == 1 or not math.isfinite(slope)) and (inter == 0 or not math.isfinite(inter))
    )


def _nifti_header(path: str) -> Header:
    image = _nifti_image(path)
    proxy = image.dataobj
    stored = np.dtype(proxy.dtype)
    if getattr(proxy, "order", "F") != "F":
        raise ValueError("its data is not in Fortran (NIfTI) order")
    scaled = _nifti_scaled(image)
    file_shape = tuple(int(s) for s in proxy.shape)
    slope = float(proxy.slope) if scaled else 1.0
    inter = float(proxy.inter) if scaled else 0.0
    zooms = tuple(float(z) for z in image.header.get_zooms())[::-1]
    affine = tuple(tuple(float(v) for v in row) for row in np.asarray(image.affine))
    return Header(
        file_shape[::-1],
        np.dtype(np.float64) if scaled else stored,
        affine=affine,
        spacing=zooms,
        nifti=(int(proxy.offset), stored.str, file_shape, slope, inter),
    )


def _npy_header(f: Any) -> tuple[tuple[int, ...], np.dtype]:
    from numpy.lib import format as npformat

    version = npformat.read_magic(f)
    if version == (1, 0):
        shape, _, dtype = npformat.read_array_header_1_0(f)
    else:
        shape, _, dtype = npformat.read_array_header_2_0(f)
    if dtype.hasobject:
        raise ValueError("it holds Python objects; fastseg reads numeric arrays only")
    return tuple(int(s) for s in shape), dtype


def _npz_key(names: list[str]) -> str:
    keys = [n[: -len(".npy")] for n in names if n.endswith(".npy")]
    for key in NNUNET_KEYS:
        if key in keys:
            return key
    if len(keys) == 1:
        return keys[0]
    raise ValueError(
        f"it holds {len(keys)} arrays ({', '.join(keys[:8])}{' ...' if len(keys) > 8 else ''}):"
        f" fastseg reads the only array, or {' / '.join(NNUNET_KEYS)} (nnU-Net's probabilities)"
    )


def _npz_header(path: str) -> Header:
    with zipfile.ZipFile(path) as z:
        key = _npz_key(z.namelist())
        with z.open(key + ".npy") as f:
            shape, dtype = _npy_header(f)
    return Header(shape, dtype, key=key, channels_first=key in NNUNET_KEYS)


def _npy_file_header(path: str) -> Header:
    with open(path, "rb") as f:
        shape, dtype = _npy_header(f)
    return Header(shape, dtype)


_HEADERS = {
    "png": _png_header,
    "tiff": _tiff_header,
    "nifti": _nifti_header,
    "npy": _npy_file_header,
    "npz": _npz_header,
}


def read_header(path: str, fmt: str) -> Header:
    """The header of the file `path` of format `fmt` (see :data:`SUFFIXES`).

    Raises
    ------
    FileReadError
        Naming the file: missing, unreadable, not of its format, or not a label map /
        score array (an RGB PNG, an array of objects).
    MissingReaderError
        The format's optional reader is not installed.
    """
    require(fmt)
    try:
        header = _HEADERS[fmt](path)
    except MissingReaderError:
        raise
    except Exception as exc:
        raise _fail(path, "read the header of", exc) from exc
    if not header.shape or 0 in header.shape:
        raise _fail(path, "use", f"it holds an empty array of shape {header.shape}")
    return header


# -------------------------------------------------------------------------- arrays


def _png_array(path: str, header: Header) -> np.ndarray:
    assert header.png is not None
    depth, colour = header.png
    if colour == _PNG_GRAY and depth in (8, 16):
        try:
            import imagecodecs
        except ImportError:
            pass
        else:
            with open(path, "rb") as f:
                data = f.read()
            gray = png.decode_gray(data)  # libdeflate + a compiled unfilter: 6-9x libpng
            if gray is not None:
                return gray
            arr: np.ndarray = imagecodecs.png_decode(data)  # interlaced
            if arr.shape == header.shape:
                return arr
            # e.g. a tRNS chunk, which libpng expands to an alpha channel: Pillow does not
    from PIL import Image

    with Image.open(path) as image:
        arr = np.asarray(image)
    if arr.dtype == np.bool_:  # 1-bit grayscale: Pillow's mode "1" (True stored as 255)
        return (arr.view(np.uint8) != 0).view(np.uint8)
    if colour == _PNG_GRAY and depth < 8:  # 2- and 4-bit grayscale are scaled to 0..255
        return arr // np.uint8(255 // (2**depth - 1))
    if depth == 16 and arr.dtype.kind in "iu" and arr.dtype.itemsize != 2:
        return arr.astype(np.uint16)  # a Pillow that widens 16-bit grayscale
    return arr


def _tiff_array(path: str, header: Header) -> np.ndarray:
    import tifffile

    return np.asarray(tifffile.imread(path, series=0, maxworkers=1))


def _gunzip(data: bytes, expected: int) -> bytes:
    """The content of a gzip file, decompressed in C with the GIL released.

    One ``zlib.decompress`` call sized by the gzip trailer (no copy of the result) for
    the usual single-member file; member by member when there are several.
    """
    hint = int.from_bytes(data[-4:], "little") if len(data) >= 4 else 0
    raw = zlib.decompress(data, 31, hint or zlib.DEF_BUF_SIZE)
    if len(raw) >= expected:
        return raw
    parts, rest = [], data
    while rest:
        member = zlib.decompressobj(31)
        parts.append(member.decompress(rest))
        if not member.eof:
            raise ValueError("the gzip stream is truncated")
        rest = member.unused_data.lstrip(b"\0")
    return b"".join(parts)


def _nifti_array(path: str, header: Header) -> np.ndarray:
    # Read from the header kept since planning (offset, dtype, shape, scaling), not
    # through nibabel again: nibabel's gzip reading holds the GIL in a Python loop (two
    # threads read slower than one), one zlib call does not.
    assert header.nifti is not None
    offset, stored, shape, slope, inter = header.nifti
    dtype = np.dtype(stored)
    count = math.prod(shape)
    need = offset + count * dtype.itemsize
    if path.lower().endswith(".gz"):
        with open(path, "rb") as f:
            raw = _gunzip(f.read(), need)
        if len(raw) < need:
            raise ValueError(f"the volume is truncated: {len(raw)} bytes of {need}")
        arr = np.frombuffer(raw, dtype, count, offset)
    else:
        if os.path.getsize(path) < need:
            raise ValueError(f"the volume is truncated: {os.path.getsize(path)} bytes of {need}")
        arr = np.memmap(path, dtype, "r", offset, (count,))
    vol = arr.reshape(shape, order="F")
    if (slope, inter) != (1.0, 0.0):
        vol = vol * slope + inter  # nibabel's scaling, in float64
    # (X, Y, Z) in Fortran order, transposed: (Z, Y, X) in C order, no copy.
    return np.asarray(vol).T


def _npy_array(path: str, header: Header) -> np.ndarray:
    return np.load(path, mmap_mode="r", allow_pickle=False)


def _npz_array(path: str, header: Header) -> np.ndarray:
    with np.load(path, allow_pickle=False) as z:
        return np.asarray(z[header.key])


_ARRAYS = {
    "png": _png_array,
    "tiff": _tiff_array,
    "nifti": _nifti_array,
    "npy": _npy_array,
    "npz": _npz_array,
}


def read_array(path: str, fmt: str, header: Header) -> np.ndarray:
    """The array of one file (read-only), checked against its `header` (read earlier).

    Raises
    ------
    FileReadError
        Naming the file: it cannot be read or decoded, or it no longer matches its
        header (changed since the evaluation was planned).
    """
    try:
        arr = _ARRAYS[fmt](path, header)
    except Exception as exc:
        hint = ""
        if "imagecodecs" in str(exc):
            hint = " (pip install 'fastseg[images]')"
        raise _fail(path, "decode", f"{type(exc).__name__}: {exc}{hint}") from exc
    # Read-only, whatever the reader (a decompressed buffer, a memory map, Pillow's
    # buffer are read-only anyway): one compiled kernel type per dtype for every file.
    arr.flags.writeable = False
    if arr.shape != header.shape or arr.dtype.newbyteorder("=") != header.dtype.newbyteorder("="):
        raise _fail(
            path,
            "use",
            f"it holds {arr.dtype} {arr.shape} but its header said {header.dtype} "
            f"{header.shape} (was it changed during the run?)",
        )
    return arr


def stat(path: str) -> tuple[int, int]:
    """``(size, mtime_ns)`` of a file, to fingerprint it."""
    st = os.stat(path)
    return int(st.st_size), int(st.st_mtime_ns)

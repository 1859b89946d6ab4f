"""fastseg.png: grayscale PNG label maps decoded with libdeflate and a compiled unfilter."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest

from fastseg import png, readers

pytest.importorskip("imagecodecs")
Image = pytest.importorskip("PIL.Image")


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _filtered(rows: np.ndarray, kinds: list[int], bpp: int) -> bytes:
    """PNG-filter each byte row with its filter type (the encoder's side of the spec)."""
    out = bytearray()
    prev = np.zeros(rows.shape[1], np.int32)
    for row, kind in zip(rows.astype(np.int32), kinds, strict=True):
        left = np.concatenate([np.zeros(bpp, np.int32), row[:-bpp]])
        upleft = np.concatenate([np.zeros(bpp, np.int32), prev[:-bpp]])
        if kind == 0:
            f = row
        elif kind == 1:
            f = row - left
        elif kind == 2:
            f = row - prev
        elif kind == 3:
            f = row - (left + prev) // 2
        else:
            p = left + prev - upleft
            pa, pb, pc = abs(p - left), abs(p - prev), abs(p - upleft)
            pred = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, prev, upleft))
            f = row - pred
        out.append(kind)
        out += (f % 256).astype(np.uint8).tobytes()
        prev = row
    return bytes(out)


def encode(image: np.ndarray, kinds: list[int], *, idat_parts: int = 1,
           extra: bytes = b"", interlace: int = 0) -> bytes:  # fmt: skip
    """A grayscale PNG of `image` (uint8 or uint16) with the given row filters."""
    h, w = image.shape
    depth = 8 * image.itemsize
    rows = image.astype(">u2").view(np.uint8).reshape(h, -1) if depth == 16 else image
    data = zlib.compress(_filtered(rows, kinds, image.itemsize))
    step = -(-len(data) // idat_parts)
    idats = b"".join(_chunk(b"IDAT", data[i : i + step]) for i in range(0, len(data), step))
    head = _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, 0, 0, 0, interlace))
    return b"\x89PNG\r\n\x1a\n" + head + extra + idats + _chunk(b"IEND", b"")


def _image(dtype, shape=(37, 29), seed=0) -> np.ndarray:
    """Runs of labels with noise: every filter meets equal and different neighbours."""
    rng = np.random.default_rng(seed)
    top = np.iinfo(dtype).max
    base = np.repeat(rng.integers(0, top, (shape[0], shape[1] // 4 + 1)), 4, axis=1)
    noise = rng.random(shape) < 0.2
    out = base[:, : shape[1]].copy()
    out[noise] = rng.integers(0, top, int(noise.sum()))
    return out.astype(dtype)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("kind", [0, 1, 2, 3, 4, "mixed"])
def test_every_row_filter_decodes_to_the_image(dtype, kind):
    image = _image(dtype)
    kinds = [r % 5 for r in range(image.shape[0])] if kind == "mixed" else [kind] * len(image)
    data = encode(image, kinds, idat_parts=3, extra=_chunk(b"tEXt", b"Comment\0label map"))
    got = png.decode_gray(data)
    assert got is not None
    assert got.dtype == dtype
    np.testing.assert_array_equal(got, image)
    with Image.open(io.BytesIO(data)) as im:  # Pillow reads our encoder's files alike
        np.testing.assert_array_equal(np.asarray(im).astype(dtype), image)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_pillow_written_pngs_decode_as_pillow_reads_them(dtype, tmp_path):
    image = _image(dtype, (64, 300), seed=2)
    path = tmp_path / "a.png"
    Image.fromarray(image).save(path)  # Pillow's adaptive filters and compression
    data = path.read_bytes()
    np.testing.assert_array_equal(png.decode_gray(data), image)
    header = readers.read_header(str(path), "png")
    np.testing.assert_array_equal(readers.read_array(str(path), "png", header), image)


def test_other_pngs_are_left_to_the_general_decoders():
    image = _image(np.uint8)
    assert png.decode_gray(encode(image, [0] * len(image), interlace=1)) is None
    palette = encode(image, [0] * len(image)).replace(
        _chunk(b"IHDR", struct.pack(">IIBBBBB", 29, 37, 8, 0, 0, 0, 0)),
        _chunk(b"IHDR", struct.pack(">IIBBBBB", 29, 37, 8, 3, 0, 0, 0)))  # fmt: skip
    assert png.decode_gray(palette) is None


def test_damaged_files_are_refused_with_the_reason(tmp_path):
    image = _image(np.uint8)
    good = encode(image, [2] * len(image))
    at = good.index(b"IDAT") + 6
    flipped = good[:at] + bytes([good[at] ^ 1]) + good[at + 1 :]
    with pytest.raises(ValueError, match=r"IDAT.*fails its CRC"):
        png.decode_gray(flipped)
    with pytest.raises(ValueError, match="truncated"):
        png.decode_gray(good[: len(good) // 2])
    # an IHDR one row taller than the image data: the data inflates short
    head = _chunk(b"IHDR", struct.pack(">IIBBBBB", 29, 38, 8, 0, 0, 0, 0))
    short = good[:8] + head + good[8 + len(head) :]
    with pytest.raises(ValueError, match="inflate"):
        png.decode_gray(short)
    bad_filter = encode(image, [2] * len(image))
    raw = bytearray(zlib.decompress(b"".join(
        bad_filter[p + 8 : p + 8 + struct.unpack(">I", bad_filter[p : p + 4])[0]]
        for p in [bad_filter.index(b"IDAT") - 4])))  # fmt: skip
    raw[5 * 30] = 7  # row 5's filter type
    head = bad_filter[: bad_filter.index(b"IDAT") - 4]
    with pytest.raises(ValueError, match="row 5 has an unknown filter type"):
        png.decode_gray(head + _chunk(b"IDAT", zlib.compress(bytes(raw))) + _chunk(b"IEND", b""))
    path = tmp_path / "broken.png"
    path.write_bytes(flipped)
    header = readers.read_header(str(path), "png")
    with pytest.raises(readers.FileReadError, match=r"broken\.png.*CRC"):
        readers.read_array(str(path), "png", header)


def test_a_large_image_does_not_pin_its_buffer(monkeypatch):
    """Images above KEPT_BUFFER get a buffer of their own; smaller ones share the
    thread's, and both decode to the image."""
    png._scratch.__dict__.pop("raw", None)
    image = _image(np.uint16, (40, 50))
    data = encode(image, [4] * len(image))
    monkeypatch.setattr(png, "KEPT_BUFFER", 100)  # this image's 40 * 101 bytes are above
    np.testing.assert_array_equal(png.decode_gray(data), image)
    assert getattr(png._scratch, "raw", None) is None
    monkeypatch.setattr(png, "KEPT_BUFFER", 2**20)
    np.testing.assert_array_equal(png.decode_gray(data), image)
    assert png._scratch.raw.size == 40 * 101


def test_decoding_first_leaves_scipy_unimported(tmp_path):
    """A process whose first compiled call is the PNG unfilter skips Numba's SciPy import
    too (as the kernels do)."""
    import subprocess
    import sys

    image = _image(np.uint8)
    path = tmp_path / "a.png"
    path.write_bytes(encode(image, [2] * len(image)))
    code = (f"import sys; from fastseg import png; png.decode_gray(open({str(path)!r}, 'rb')"
            ".read()); print('scipy.linalg' in sys.modules)")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)  # fmt: skip
    assert done.stdout.strip() == "False"

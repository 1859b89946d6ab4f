"""Synthetic segmentation data sets: label maps of shapes and noisy softmax predictions.

The generator of ``fastseg demo``, ``fastseg synth``, the benchmarks and the
larger-than-memory run. Each image is a background (class 0) with random circles,
diamonds and rectangles (as in the post's figures; spheres, octahedra and boxes in 3-D)
of classes drawn from ``1 .. N-1``, except one class that never appears in the truth; a
band or box of truth pixels carries the ignore index. The prediction is a "model" that
sees every shape slightly shifted and resized, now and then confuses its class, misses
it or adds one that is not there; its scores are the softmax of a one-hot of that
perturbed label map times a margin, plus Gaussian noise.

Three entry points share one per-image generator:

* :func:`sample` returns ``(true, pred)`` NumPy arrays, for tests and demos;
* :func:`write_dataset` writes a Zarr group with arrays ``pred`` and ``true`` image by
  image (a slab of one batch chunk at a time, on a few threads), so its size is bounded
  by the disk, not the memory;
* :func:`write_cityscapes` and :func:`write_nnunet` write folders of files laid out as
  those data sets' are (PNG label ids in city sub-folders; NIfTI volumes and nnU-Net's
  ``dataset.json``), the truth and the label map the scores would be built around (the
  prediction), for ``fastseg demo --folders``, ``scripts/make_folders.py``, the tests and
  the benchmarks.

Image ``i`` depends only on ``(seed, i)`` and the generator options, never on chunking,
threads, dtype or class axis, so every way of writing a data set gives the same data.
"""

from __future__ import annotations

import concurrent.futures
import functools
import importlib
import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from fastseg._version import __version__
from fastseg.label_tables import CITYSCAPES_LABELS
from fastseg.readers import MissingReaderError

if TYPE_CHECKING:
    import zarr

__all__ = [
    "CHUNK_TARGET_BYTES",
    "CITYSCAPES_CITIES",
    "GENERATOR_VERSION",
    "SCORE_DTYPES",
    "SynthSpec",
    "default_chunks",
    "labels",
    "make_spec",
    "sample",
    "scores",
    "write_cityscapes",
    "write_dataset",
    "write_nnunet",
]

#: Version of the generator's algorithm, stored in the data set's attributes; changes
#: whenever the same seed and options would produce other data.
GENERATOR_VERSION = 2
#: Side, in pixels, of the cells over which the score noise is constant.
NOISE_CELL = 8
#: Standard deviation of the per-pixel part of the noise, relative to the cells' part.
FINE_NOISE = 0.01

#: Score dtypes that may be written.
SCORE_DTYPES = ("float16", "float32", "float64")

#: Default upper bound of one ``pred`` chunk, uncompressed (see :func:`default_chunks`).
CHUNK_TARGET_BYTES = 16 * 2**20

#: Shape kinds, by the norm whose unit ball they are: circle / sphere (L2), diamond /
#: octahedron (L1), rectangle / box (L-infinity).
_CIRCLE, _DIAMOND, _BOX = 0, 1, 2

# Shape model (fractions of the image's smallest side, probabilities per shape). Chosen
# so that, with ``errors=1``, the data-set IoU of the foreground classes averages about
# 0.7 (spread over roughly 0.4-0.9 by a per-class difficulty) and the background's about
# 0.95, as for a decent real model (measured on 32 images of 19 and 5 classes, 2-D and
# 3-D).
_SHAPES_PER_IMAGE = (3, 9)  # [low, high) shapes per image
_RADIUS = (0.04, 0.2)  # radius / half-side as a fraction of the smallest side
_SHIFT = 0.06  # standard deviation of the predicted shape's shift, in radii
_RESIZE = 0.08  # standard deviation of its relative change of radius
_MISSED = 0.03  # probability that the prediction misses a shape
_CONFUSED = 0.05  # probability that it gives a shape another class
_FALSE_SHAPES = 0.3  # mean number of predicted shapes that are not in the truth
_DIFFICULTY = (0.4, 1.6)  # range of the per-class factor on the error scale
_BAND = (0.05, 0.12)  # ignore band: thickness as a fraction of the first spatial side
_BOX_SIDE = (0.1, 0.3)  # ignore box: side as a fraction of each spatial side

#: Noise is clipped to this fraction of ``strength``: the margin of the predicted class
#: then always exceeds any difference of two noise values, so the argmax of the scores
#: is exactly the perturbed label map (hard errors are whole-shape errors, as a real
#: model's are, rather than salt-and-pepper pixels), and the absent class is never
#: predicted.
_NOISE_CLIP = 0.49


@dataclass(frozen=True)
class SynthSpec:
    """Validated options of the generator; build it with :func:`make_spec`.

    Attributes
    ----------
    size : tuple of int
        Spatial shape of one image, ``(H, W)`` or ``(D, H, W)``.
    classes : int
        Number of classes N, background (0) included.
    dtype : numpy.dtype
        Score dtype.
    class_axis : int
        ``-1`` (channels-last) or ``1`` (channels-first).
    ignore_index : int or None
        Truth label of the ignore region.
    seed : int
        Base seed; image ``i`` uses ``numpy.random.default_rng([seed, i, stream])``.
    ignore_region : bool
        Whether each image has an ignore band or box.
    absent_class : int or None
        The class that never appears in the truth.
    noise, strength, errors : float
        Logit noise standard deviation, logit margin of the predicted class, and scale
        of the shape errors (0 gives perfect predictions).
    """

    size: tuple[int, ...]
    classes: int
    dtype: np.dtype
    class_axis: int
    ignore_index: int | None
    seed: int
    ignore_region: bool
    absent_class: int | None
    noise: float
    strength: float
    errors: float

    @property
    def label_dtype(self) -> np.dtype:
        """uint8 when every label and the ignore index fit, else uint16."""
        top = max(self.classes - 1, self.ignore_index or 0)
        return np.dtype(np.uint8 if top <= 255 else np.uint16)

    @property
    def present_classes(self) -> np.ndarray:
        """Classes that shapes may take: ``1 .. N-1`` without the absent class."""
        labels = np.arange(1, self.classes)
        return labels[labels != self.absent_class]

    def pred_shape(self, images: int) -> tuple[int, ...]:
        """Shape of the score array of `images` images."""
        if self.class_axis == 1:
            return (images, self.classes, *self.size)
        return (images, *self.size, self.classes)

    def class_names(self) -> list[str]:
        """``"background"``, then ``"class1"``, ``"class2"``, ..."""
        return ["background"] + [f"class{k}" for k in range(1, self.classes)]


def make_spec(
    size: Sequence[int],
    classes: int,
    *,
    dtype: Any = "float16",
    class_axis: int = -1,
    ignore_index: int | None = 255,
    seed: int = 0,
    ignore_region: bool = True,
    absent_class: bool | int = True,
    noise: float = 1.0,
    strength: float = 6.0,
    errors: float = 1.0,
) -> SynthSpec:
    """Check the generator's options and gather them; see :func:`write_dataset`.

    Raises
    ------
    ValueError
        For any option out of range, with what was expected.
    """
    size = _int_tuple(size, "size")
    if len(size) not in (2, 3):
        raise ValueError(f"size must have 2 entries (H, W) or 3 (D, H, W); got {len(size)}: {size}")
    if min(size) < 1:
        raise ValueError(f"size entries must be >= 1; got {size}")
    classes = _int(classes, "classes")
    if not 2 <= classes <= 65535:
        raise ValueError(f"classes must be in [2, 65535] (background included); got {classes}")
    try:
        np_dtype = np.dtype(dtype)
    except TypeError:
        np_dtype = None
    if np_dtype is None or np_dtype.name not in SCORE_DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(SCORE_DTYPES)}; got {dtype!r}")
    class_axis = _int(class_axis, "class_axis")
    if class_axis == len(size) + 1:
        class_axis = -1
    if class_axis not in (-1, 1):
        raise ValueError(
            f"class_axis must be -1 (channels-last) or 1 (channels-first); got {class_axis}"
        )
    if ignore_index is not None:
        ignore_index = _int(ignore_index, "ignore_index")
        if 0 <= ignore_index < classes:
            raise ValueError(
                f"ignore_index {ignore_index} collides with a class label in [0, {classes}); "
                f"pass an ignore_index >= classes (e.g. {255 if classes <= 255 else 65535})"
            )
        if not 0 <= ignore_index <= 65535:
            raise ValueError(
                f"ignore_index must be in [{classes}, 65535] to fit the uint8/uint16 truth; "
                f"got {ignore_index}"
            )
    seed = _int(seed, "seed")
    if seed < 0:
        raise ValueError(f"seed must be >= 0; got {seed}")
    absent: int | None
    if isinstance(absent_class, bool | np.bool_):
        absent = classes - 1 if absent_class else None
    else:
        absent = _int(absent_class, "absent_class")
        if absent < 0:
            absent += classes
        if not 1 <= absent < classes:
            raise ValueError(
                f"absent_class must be a class in [1, {classes}) (0 is the background), "
                f"True (the last class) or False (none); got {absent_class}"
            )
    if absent is not None and classes < 3:
        raise ValueError(
            f"with classes={classes} an absent class leaves only the background; "
            "pass absent_class=False or more classes"
        )
    for name, value in (("noise", noise), ("errors", errors)):
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be finite and >= 0; got {value}")
    if not (math.isfinite(strength) and 0.1 <= strength <= 50):
        # Below 0.1 float16 rounding could tie the top two scores; above 50 exp(1.49 s)
        # would overflow float32.
        raise ValueError(f"strength must be in [0.1, 50]; got {strength}")
    return SynthSpec(
        size=size,
        classes=classes,
        dtype=np_dtype,
        class_axis=class_axis,
        ignore_index=ignore_index,
        seed=seed,
        ignore_region=bool(ignore_region) and ignore_index is not None,
        absent_class=absent,
        noise=float(noise),
        strength=float(strength),
        errors=float(errors),
    )


# --------------------------------------------------------------------------------------
# One image
# --------------------------------------------------------------------------------------


def _draw(out: np.ndarray, kind: int, center: np.ndarray, radii: np.ndarray, label: int) -> None:
    """Set the pixels of one shape (a unit ball of an L2, L1 or L-inf norm) to `label`.

    Only the shape's bounding box is visited, so a shape costs its own area.
    """
    lo = np.maximum(np.floor(center - radii), 0).astype(np.intp)
    hi = np.minimum(np.ceil(center + radii) + 1, out.shape).astype(np.intp)
    if np.any(hi <= lo):
        return  # entirely outside the image
    box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
    grids = np.ogrid[box]
    rel = [np.abs(g - c) / r for g, c, r in zip(grids, center, radii, strict=True)]
    if kind == _CIRCLE:
        inside = functools.reduce(np.add, [d * d for d in rel]) <= 1.0
    elif kind == _DIAMOND:
        inside = functools.reduce(np.add, rel) <= 1.0
    else:
        inside = functools.reduce(np.maximum, rel) <= 1.0
    out[box][inside] = label


@functools.lru_cache(maxsize=8)
def _difficulty(seed: int, classes: int) -> np.ndarray:
    """Per-class factor on the error scale, so that classes differ in IoU as real ones do.

    Drawn from ``default_rng([seed])``, a stream no image uses; read-only.
    """
    factor = np.random.default_rng([seed]).uniform(*_DIFFICULTY, classes)
    factor.setflags(write=False)
    return factor


def labels(spec: SynthSpec, index: int) -> tuple[np.ndarray, np.ndarray]:
    """Truth and predicted label maps of image `index`.

    Parameters
    ----------
    spec : SynthSpec
        Generator options (:func:`make_spec`).
    index : int
        Global image index; with ``spec.seed`` it determines the image.

    Returns
    -------
    true : ndarray, shape ``spec.size``
        Truth labels (uint8 or uint16), ignore region included.
    guess : ndarray, shape ``spec.size``
        The label map the scores are built around (their argmax); under the ignore
        region it continues the shapes, as a model's prediction would.

    Notes
    -----
    Three independent streams, ``default_rng([seed, index, s])``: s = 0 draws the truth
    (shapes, ignore region), s = 1 the prediction's errors, s = 2 the score noise (in
    :func:`scores`). The truth therefore does not change with `errors` or `noise`. A
    shape of class c is predicted with errors scaled by ``errors * difficulty[c]``, a
    per-class factor in [0.4, 1.6] fixed by the seed.
    """
    truth_rng = np.random.default_rng([spec.seed, index, 0])
    error_rng = np.random.default_rng([spec.seed, index, 1])
    shape = np.array(spec.size)
    side = float(shape.min())
    ndim = len(spec.size)
    true = np.zeros(spec.size, spec.label_dtype)
    guess = np.zeros(spec.size, spec.label_dtype)
    present = spec.present_classes
    difficulty = _difficulty(spec.seed, spec.classes)

    def random_shape(rng: np.random.Generator) -> tuple[int, int, np.ndarray, np.ndarray]:
        kind = int(rng.integers(3))
        label = int(present[rng.integers(len(present))])
        center = rng.uniform(0, shape)
        radius = max(side * rng.uniform(*_RADIUS), 1.0)
        aspect = rng.uniform(0.5, 1.0, ndim) if kind == _BOX else np.ones(ndim)
        return kind, label, center, radius * aspect

    for _ in range(int(truth_rng.integers(*_SHAPES_PER_IMAGE))):
        kind, label, center, radii = random_shape(truth_rng)
        _draw(true, kind, center, radii, label)
        # The prediction of this shape; the same draws whatever `errors` is, so the
        # errors grow smoothly with it.
        e = spec.errors * difficulty[label]
        shift = error_rng.normal(0.0, _SHIFT, ndim) * radii.max()
        resize = float(np.clip(1.0 + _RESIZE * error_rng.normal(), 0.5, 1.5))
        missed = error_rng.random() < _MISSED * e
        confused = error_rng.random() < _CONFUSED * e
        other = int(present[error_rng.integers(len(present))])
        if not missed:
            guess_label = other if confused else label
            _draw(guess, kind, center + e * shift, radii * (1.0 + e * (resize - 1.0)),
                  guess_label)  # fmt: skip
    for _ in range(int(error_rng.poisson(_FALSE_SHAPES * spec.errors))):
        kind, label, center, radii = random_shape(error_rng)
        _draw(guess, kind, center, radii, label)

    if spec.ignore_region:
        assert spec.ignore_index is not None
        if truth_rng.random() < 0.5:
            # A band along the far end of the first spatial axis, like the ego-vehicle's
            # hood that driving data sets label "ignore".
            thickness = max(1, round(spec.size[0] * truth_rng.uniform(*_BAND)))
            true[-thickness:] = spec.ignore_index
        else:
            sides = np.maximum(1, np.round(shape * truth_rng.uniform(*_BOX_SIDE, ndim)))
            start = np.floor(truth_rng.uniform(0, 1, ndim) * (shape - sides + 1))
            box = tuple(slice(int(a), int(a + s)) for a, s in zip(start, sides, strict=True))
            true[box] = spec.ignore_index
    return true, guess


def scores(spec: SynthSpec, index: int, guess: np.ndarray) -> np.ndarray:
    """Softmax scores of image `index` around the label map `guess`, channels-last float32.

    ``softmax(strength * one_hot(guess) + noise * z)`` over the last axis, where ``z`` is
    standard normal, constant over cells of :data:`NOISE_CELL` pixels per spatial axis
    (stream 2 of the image, see :func:`labels`), clipped to
    ``+-0.49 * strength / noise`` so that the argmax is exactly `guess`.

    Returns
    -------
    ndarray of float32, shape ``(*spec.size, N)``
    """
    n = spec.classes
    if spec.noise > 0:
        rng = np.random.default_rng([spec.seed, index, 2])
        # Noise mostly constant over cells of NOISE_CELL pixels per axis, as a model's
        # scores vary smoothly in space, plus a little per-pixel noise in the low bits as
        # in real outputs. (Without it the stores compress 50x with zstd, unlike real
        # float16 outputs; with it 1.16x, as independent noise gave: measured, 1024^2 x 19.)
        coarse = tuple(-(-d // NOISE_CELL) for d in spec.size)
        logits = rng.standard_normal((*coarse, n), dtype=np.float32)
        for axis, d in enumerate(spec.size):
            logits = np.repeat(logits, NOISE_CELL, axis=axis)[(slice(None),) * axis + (slice(d),)]
        logits = np.ascontiguousarray(logits)
        # Plus a little per-pixel noise, as in real outputs (the low mantissa bits vary).
        fine = rng.standard_normal(logits.shape, dtype=np.float32)
        logits += np.float32(FINE_NOISE) * fine
        logits *= np.float32(spec.noise)
        limit = np.float32(_NOISE_CLIP * spec.strength)
        np.clip(logits, -limit, limit, out=logits)
    else:
        logits = np.zeros((*spec.size, n), np.float32)
    flat = logits.reshape(-1)
    at = np.arange(guess.size, dtype=np.intp) * n + guess.reshape(-1)
    flat[at] += np.float32(spec.strength)
    # The logits lie in [-0.49 s, 1.49 s] with s <= 50: exp cannot overflow float32,
    # so the usual max-subtraction pass is not needed.
    np.exp(logits, out=logits)
    # einsum sums the short class axis ~5x faster than ndarray.sum (1.1 vs 5.6 ms for
    # 512x512x19), and unlike a matmul it starts no BLAS threads.
    total = np.einsum("...c->...", logits)
    np.reciprocal(total, out=total)
    logits *= total[..., None]
    return logits


def _fill(spec: SynthSpec, index: int, true_out: np.ndarray, pred_out: np.ndarray) -> None:
    """Generate image `index` into the preallocated views `true_out` and `pred_out`."""
    true, guess = labels(spec, index)
    true_out[...] = true
    p = scores(spec, index, guess)
    # The cast (and, channels-first, the transpose) happens in this one assignment.
    pred_out[...] = np.moveaxis(p, -1, 0) if spec.class_axis == 1 else p


def sample(
    images: int,
    size: Sequence[int],
    classes: int,
    *,
    dtype: Any = "float16",
    class_axis: int = -1,
    ignore_index: int | None = 255,
    seed: int = 0,
    ignore_region: bool = True,
    absent_class: bool | int = True,
    noise: float = 1.0,
    strength: float = 6.0,
    errors: float = 1.0,
    start: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic batch in memory: the images `start` .. `start + images - 1`.

    Parameters
    ----------
    images : int
        Number of images B.
    size : sequence of int
        ``(H, W)`` or ``(D, H, W)``.
    classes : int
        Number of classes N, background included.
    dtype, class_axis, ignore_index, seed, ignore_region, absent_class, noise, strength, errors
        As for :func:`write_dataset`.
    start : int, default 0
        Global index of the first image; ``sample(..., start=k)`` equals images
        ``k ..`` of a data set written by :func:`write_dataset` with the same options.

    Returns
    -------
    true : ndarray of uint8 (uint16 beyond 255 labels), shape ``(B, *size)``
        Truth label maps.
    pred : ndarray, shape ``(B, *size, N)`` (``(B, N, *size)`` when ``class_axis=1``)
        Softmax scores.

    Examples
    --------
    >>> from fastseg import synth
    >>> true, pred = synth.sample(2, (64, 64), 5, seed=1)
    >>> true.shape, true.dtype.name, pred.shape, pred.dtype.name
    ((2, 64, 64), 'uint8', (2, 64, 64, 5), 'float16')
    >>> bool((true == 4).any())  # the last class never appears
    False
    """
    spec = make_spec(size, classes, dtype=dtype, class_axis=class_axis,
                     ignore_index=ignore_index, seed=seed, ignore_region=ignore_region,
                     absent_class=absent_class, noise=noise, strength=strength,
                     errors=errors)  # fmt: skip
    images = _int(images, "images")
    start = _int(start, "start")
    if images < 1 or start < 0:
        raise ValueError(f"images must be >= 1 and start >= 0; got {images}, {start}")
    true = np.empty((images, *spec.size), spec.label_dtype)
    pred = np.empty(spec.pred_shape(images), spec.dtype)
    for j in range(images):
        _fill(spec, start + j, true[j], pred[j])
    return true, pred


# --------------------------------------------------------------------------------------
# Zarr
# --------------------------------------------------------------------------------------


def default_chunks(spec: SynthSpec) -> tuple[int, ...]:
    """Default chunk shape of ``pred``: one image, every class, tiles of <= 16 MiB.

    Starting from the whole image, the largest spatial side is halved (rounding up)
    until a chunk holds at most :data:`CHUNK_TARGET_BYTES` uncompressed. A
    512x512x19 float16 image (9.5 MiB) is one chunk; a 1024x1024x19 one becomes four
    512x512 tiles. ``true`` uses the same chunks without the class axis.

    Notes
    -----
    One image per chunk along B lets writers and readers work image by image and keeps
    per-image counts in one task. The whole class axis in a chunk is what the
    evaluation's argmax needs. About 16 MiB keeps the per-chunk cost (a task, a file,
    a decoder call; about a millisecond) a few percent of decoding and counting it, and
    a few chunks per worker far below a 1 GiB memory budget.
    """
    spatial = list(spec.size)
    per_pixel = spec.classes * spec.dtype.itemsize
    while math.prod(spatial) * per_pixel > CHUNK_TARGET_BYTES and max(spatial) > 1:
        k = spatial.index(max(spatial))
        spatial[k] = -(-spatial[k] // 2)
    return _with_class_axis(spec, (1, *spatial), spec.classes)


def _with_class_axis(spec: SynthSpec, batch_spatial: tuple[int, ...], c: int) -> tuple[int, ...]:
    if spec.class_axis == 1:
        return (batch_spatial[0], c, *batch_spatial[1:])
    return (*batch_spatial, c)


def _resolve_chunks(
    spec: SynthSpec, images: int, chunks: Sequence[int] | None
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Chunk shapes of ``pred`` and ``true`` from the user's `chunks`."""
    pred_shape = spec.pred_shape(images)
    if chunks is None:
        pred_chunks = default_chunks(spec)
    else:
        given = _int_tuple(chunks, "chunks")
        ndim = len(pred_shape)
        if len(given) == ndim - 1:  # batch + spatial: the class axis is whole
            given = _with_class_axis(spec, given, -1)
        if len(given) != ndim:
            raise ValueError(
                f"chunks must have {ndim - 1} entries (batch and spatial axes) or {ndim} "
                f"(every axis of pred {pred_shape}); got {len(given)}: {tuple(given)}"
            )
        if any(c == 0 or c < -1 for c in given):
            raise ValueError(f"chunks entries must be >= 1 or -1 (whole axis); got {given}")
        pred_chunks = tuple(
            n if c == -1 else min(c, n) for c, n in zip(given, pred_shape, strict=True)
        )
    class_dim = 1 if spec.class_axis == 1 else len(pred_chunks) - 1
    true_chunks = tuple(c for k, c in enumerate(pred_chunks) if k != class_dim)
    return pred_chunks, true_chunks


def _dimension_names(spec: SynthSpec) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Zarr 3 dimension names of ``pred`` and ``true``."""
    spatial = ("y", "x") if len(spec.size) == 2 else ("z", "y", "x")
    if spec.class_axis == 1:
        return ("image", "class", *spatial), ("image", *spatial)
    return ("image", *spatial, "class"), ("image", *spatial)


def _prepare_path(path: Path, overwrite: bool) -> None:
    """Refuse to replace anything but an empty directory or a Zarr store."""
    if not path.exists():
        return
    if not path.is_dir():
        raise FileExistsError(f"{path} exists and is not a directory")
    if not any(path.iterdir()):
        return
    is_store = (path / "zarr.json").exists() or (path / ".zgroup").exists()
    if not overwrite:
        raise FileExistsError(f"{path} is not empty; pass overwrite=True to replace it")
    if not is_store:
        raise FileExistsError(
            f"{path} is not empty and is not a Zarr group; refusing to overwrite it"
        )


def write_dataset(
    path: str | os.PathLike[str],
    *,
    images: int,
    size: Sequence[int],
    classes: int,
    dtype: Any = "float16",
    chunks: Sequence[int] | None = None,
    class_axis: int = -1,
    ignore_index: int | None = 255,
    seed: int = 0,
    zarr_format: Literal[2, 3] = 3,
    ignore_region: bool = True,
    absent_class: bool | int = True,
    noise: float = 1.0,
    strength: float = 6.0,
    errors: float = 1.0,
    compressors: Any = "auto",
    workers: int | None = None,
    overwrite: bool = False,
    progress: Callable[[int, int], object] | None = None,
) -> zarr.Group:
    """Write a synthetic data set, ``pred`` scores and ``true`` labels, to a Zarr group.

    Memory stays bounded: each worker generates and writes one batch chunk of images at
    a time (``workers`` slabs of ``chunks[0]`` images live at once, plus one image's
    float32 scores each), so the data set may be far larger than RAM.

    Parameters
    ----------
    path : str or path-like
        Local directory of the new group. It must not exist, or be empty, or (with
        `overwrite`) be a Zarr group.
    images : int
        Number of images B.
    size : sequence of int
        Spatial shape: ``(H, W)``, or ``(D, H, W)`` for volumes.
    classes : int
        Number of classes N >= 2, background (0) included.
    dtype : {'float16', 'float32', 'float64'}, default 'float16'
        Score dtype. Scores are computed in float32 and then cast.
    chunks : sequence of int, optional
        Chunk shape of ``pred``: every axis, or only batch and spatial axes (the class
        axis is then whole); -1 means a whole axis. ``true`` gets the same chunks
        without the class axis. Default :func:`default_chunks`: one image, every class,
        spatial tiles of at most 16 MiB. A class axis split over chunks is allowed
        (stores that test rechunking).
    class_axis : {-1, 1}, default -1
        ``pred`` is ``(B, *size, N)`` with -1, ``(B, N, *size)`` with 1.
    ignore_index : int or None, default 255
        Label of the ignore region; must not be a class (``>= classes``; with more than
        255 classes pass e.g. 65535). None: no ignore index and no ignore region.
    seed : int, default 0
        Image ``i`` is drawn from ``default_rng([seed, i, stream])``: the same seed
        gives the same data whatever the chunks, workers, zarr format, dtype (before
        rounding) or class axis.
    zarr_format : {3, 2}, default 3
        Zarr format of the store.
    ignore_region : bool, default True
        Give each image a band or a box of truth pixels equal to `ignore_index`.
    absent_class : bool or int, default True
        A class that never appears in the truth: True the last class, an int that class
        (``1 .. N-1``), False none. By construction it is never the argmax either, so
        its IoU is NaN (absent from truth and prediction).
    noise : float, default 1.0
        Standard deviation of the Gaussian logit noise (clipped to ``+-0.49 * strength``).
    strength : float, default 6.0
        Logit margin of the predicted class, in [0.1, 50]. With the defaults the
        predicted class gets a mean probability of about 0.9 with 19 classes (0.96
        with 8), and the soft IoU is roughly 0.6x the hard one, as the post describes.
    errors : float, default 1.0
        Scale of the prediction's shape errors (shift, resize, missed, confused and
        false shapes). 0 gives a perfect argmax; 1 a data-set foreground IoU of about
        0.6-0.8.
    compressors : optional
        Passed to ``zarr.create_array`` (default: Zarr's, Zstd).
    workers : int, optional
        Threads generating and writing batch chunks (default: usable CPUs). NumPy's
        generators, ufuncs and the codecs release the GIL; each thread writes its own
        chunks, so no two writes touch one chunk.
    overwrite : bool, default False
        Replace an existing Zarr group at `path`.
    progress : callable, optional
        Called as ``progress(done, total)`` (images) from the calling thread after
        each written batch chunk.

    Returns
    -------
    zarr.Group
        The written group, opened read-only.

    Raises
    ------
    ValueError
        For options out of range (classes < 2, an ignore index that is a class, an
        unknown dtype, ...), with the expected values.
    FileExistsError
        When `path` holds something that may not be replaced.

    Notes
    -----
    The group's attributes say how to evaluate it: ``num_classes``, ``ignore_index``,
    ``class_axis``, ``class_names``, ``absent_class``, and under ``fastseg_synth`` the
    generator's version, seed and options; ``complete`` turns true when every chunk is
    written. ``pred`` carries ``num_classes`` / ``class_axis`` / ``class_names`` and
    ``true`` carries ``num_classes`` / ``ignore_index`` too. Both arrays write chunks
    equal to the fill value (Zarr 3 skips them by default), so a missing chunk always
    means an unfinished or damaged store; ``pred``'s fill value is NaN, so such a chunk
    read by mistake fails the NaN check instead of counting as class 0.

    Examples
    --------
    >>> import tempfile, numpy as np
    >>> from fastseg import synth
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     g = synth.write_dataset(f"{tmp}/d.zarr", images=3, size=(32, 32), classes=4)
    ...     true, pred = synth.sample(3, (32, 32), 4)
    ...     print(g["pred"].shape, g.attrs["num_classes"], np.array_equal(g["pred"][:], pred))
    (3, 32, 32, 4) 4 True
    """
    import zarr

    spec = make_spec(size, classes, dtype=dtype, class_axis=class_axis,
                     ignore_index=ignore_index, seed=seed, ignore_region=ignore_region,
                     absent_class=absent_class, noise=noise, strength=strength,
                     errors=errors)  # fmt: skip
    images = _int(images, "images")
    if images < 1:
        raise ValueError(f"images must be >= 1; got {images}")
    if zarr_format not in (2, 3):
        raise ValueError(f"zarr_format must be 2 or 3; got {zarr_format!r}")
    if workers is None:
        workers = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
            os.cpu_count() or 1)  # fmt: skip
    workers = _int(workers, "workers")
    if workers < 1:
        raise ValueError(f"workers must be >= 1; got {workers}")
    pred_chunks, true_chunks = _resolve_chunks(spec, images, chunks)
    path = Path(path)
    _prepare_path(path, overwrite)

    # Zarr 3 skips chunks equal to the fill value by default; write them all, so that a
    # missing chunk always means an unfinished or damaged store.
    common: dict[str, Any] = {"compressors": compressors, "config": {"write_empty_chunks": True}}
    if zarr_format == 3:
        pred_dims, true_dims = _dimension_names(spec)
        pred_options = {**common, "dimension_names": pred_dims}
        true_options = {**common, "dimension_names": true_dims}
    else:
        pred_options = true_options = common
    group = zarr.open_group(path, mode="w", zarr_format=zarr_format)
    class_axis_attr = spec.class_axis
    pred_arr = group.create_array(
        "pred", shape=spec.pred_shape(images), chunks=pred_chunks,
        dtype=spec.dtype, fill_value=float("nan"),
        attributes={"num_classes": spec.classes, "class_axis": class_axis_attr,
                    "class_names": spec.class_names()},
        **pred_options,
    )  # fmt: skip
    true_arr = group.create_array(
        "true", shape=(images, *spec.size), chunks=true_chunks,
        dtype=spec.label_dtype, fill_value=0,
        attributes={"num_classes": spec.classes, "ignore_index": spec.ignore_index},
        **true_options,
    )  # fmt: skip
    synth_attrs: dict[str, Any] = {
        "generator": "fastseg.synth",
        "version": GENERATOR_VERSION,
        "fastseg_version": __version__,
        "seed": spec.seed,
        "images": images,
        "size": list(spec.size),
        "dtype": spec.dtype.name,
        "ignore_region": spec.ignore_region,
        "noise": spec.noise,
        "strength": spec.strength,
        "errors": spec.errors,
        "complete": False,
    }
    attrs: dict[str, Any] = {
        "num_classes": spec.classes,
        "ignore_index": spec.ignore_index,
        "class_axis": class_axis_attr,
        "class_names": spec.class_names(),
        "absent_class": spec.absent_class,
        "pred": "pred",
        "true": "true",
        "fastseg_synth": synth_attrs,
    }
    group.attrs.update(attrs)

    step = pred_chunks[0]

    def write_slab(b0: int) -> int:
        b1 = min(b0 + step, images)
        true = np.empty((b1 - b0, *spec.size), spec.label_dtype)
        pred = np.empty(spec.pred_shape(b1 - b0), spec.dtype)
        for j in range(b1 - b0):
            _fill(spec, b0 + j, true[j], pred[j])
        true_arr[b0:b1] = true
        pred_arr[b0:b1] = pred
        return b1 - b0

    starts = iter(range(0, images, step))
    done = 0
    with concurrent.futures.ThreadPoolExecutor(workers, "fastseg-synth") as pool:
        # A bounded window of slabs in flight keeps memory bounded and lets an error
        # stop the run without generating the rest.
        running = {pool.submit(write_slab, b0) for b0 in _take(starts, 2 * workers)}
        try:
            while running:
                finished, running = concurrent.futures.wait(
                    running, return_when=concurrent.futures.FIRST_COMPLETED
                )
                for future in finished:
                    done += future.result()
                    if progress is not None:
                        progress(done, images)
                running |= {pool.submit(write_slab, b0) for b0 in _take(starts, len(finished))}
        finally:
            for future in running:
                future.cancel()
    group.attrs["fastseg_synth"] = {**synth_attrs, "complete": True}
    return zarr.open_group(path, mode="r")


# --------------------------------------------------------------------------------------
# Folders of files
# --------------------------------------------------------------------------------------

#: City sub-folders of a Cityscapes-like folder, used in turn.
CITYSCAPES_CITIES = ("frankfurt", "lindau", "munster", "aachen", "bochum")


@functools.lru_cache(maxsize=1)
def _cityscapes_ids() -> tuple[int, tuple[int, ...], tuple[int, ...]]:
    """Number of stored label ids, the evaluated ids and the ids with instances.

    From Cityscapes' label table (``fastseg.label_tables``): 34 ids, 19
    evaluated (those with a train id), instances on ids 24-33.
    """
    evaluated = tuple(label.id for label in CITYSCAPES_LABELS if label.train_id != 255)
    instances = tuple(label.id for label in CITYSCAPES_LABELS if label.has_instances)
    return len(CITYSCAPES_LABELS), evaluated, instances


def _sizes(size: Sequence[int], n: int, ragged: bool, seed: int) -> list[tuple[int, ...]]:
    """`n` sizes: all `size`, or (`ragged`) each side drawn in [size / 2, size]."""
    if not ragged:
        return [tuple(size)] * n
    rng = np.random.default_rng([seed, 99])
    return [tuple(int(rng.integers(max(s // 2, 2), s + 1)) for s in size) for _ in range(n)]


def _map_images(fn: Callable[[int], None], n: int, workers: int | None) -> None:
    """``fn(i)`` for every image, on `workers` threads (default: every core; 1: here)."""
    if workers == 1:
        for i in range(n):
            fn(i)
        return
    with concurrent.futures.ThreadPoolExecutor(workers or os.cpu_count()) as pool:
        list(pool.map(fn, range(n)))


def _instances(labels: np.ndarray, instance_ids: Sequence[int]) -> np.ndarray:
    """Cityscapes instanceIds: ``id * 1000 + k`` on instance classes, else the label id."""
    try:  # scipy is not a dependency (the test extra has it, through scikit-learn)
        ndimage = importlib.import_module("scipy.ndimage")
    except ImportError:
        raise ImportError("instances=True needs scipy: pip install scipy") from None

    out = labels.astype(np.uint16)
    for label in instance_ids:
        mask = labels == label
        if mask.any():
            components, _ = ndimage.label(mask)
            out[mask] = label * 1000 + components[mask] - 1
    return out


def _png_writer() -> Callable[[Path, np.ndarray], None]:
    """A function writing a grayscale (or RGB) uint8 / uint16 array as a PNG file.

    Pillow, else imagecodecs (either is in the ``images`` extra).

    Raises
    ------
    fastseg.readers.MissingReaderError
        When neither is installed, naming the extra.
    """
    try:
        from PIL import Image
    except ImportError:
        pass
    else:

        def pillow(path: Path, arr: np.ndarray) -> None:
            Image.fromarray(arr).save(path)

        return pillow
    try:
        import imagecodecs
    except ImportError:
        raise MissingReaderError(
            "writing PNG files needs Pillow or imagecodecs: pip install 'fastseg[images]'"
        ) from None

    def codecs(path: Path, arr: np.ndarray) -> None:
        path.write_bytes(imagecodecs.png_encode(arr))

    return codecs


def write_cityscapes(
    out: str | os.PathLike[str],
    images: int = 100,
    size: Sequence[int] = (1024, 2048),
    *,
    ragged: bool = False,
    instances: bool = False,
    color: bool = False,
    cities: int = 3,
    evaluated_only: bool = True,
    background: int = 0,
    seed: int = 0,
    workers: int | None = None,
) -> list[str]:
    """Write a Cityscapes-like folder of PNG label ids; return the image names (ids).

    ::

        out/gtFine/val/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png     truth, uint8 0..33
        out/gtFine/val/<city>/<city>_<seq>_<frame>_gtFine_instanceIds.png  (instances) uint16
        out/gtFine/val/<city>/<city>_<seq>_<frame>_gtFine_color.png        (color) RGB
        out/results/<city>_<seq>_<frame>_leftImg8bit.png                   prediction, uint8

    Predictions are flat (the official evaluator finds them by name anywhere under its
    results folder); the truth is in city sub-folders. Image ``i`` is
    ``labels(make_spec(size_i, 34, ignore_index=None, seed=seed), i)``: shapes of the
    label ids 1 to 32 on a background (id 0, "unlabeled", ignored by the Cityscapes
    preset, unless `background` says otherwise), the prediction made around them with
    realistic errors.

    Parameters
    ----------
    out : path
        Folder to write into (created; existing files of the same names are replaced).
    images : int
        Number of images.
    size : (H, W)
        Image size; with `ragged`, the largest (each side drawn in ``[size / 2, size]``).
    instances, color : bool
        Also write ``*_gtFine_instanceIds.png`` (``id * 1000 + k`` on the classes with
        instances; needs scipy) and ``*_gtFine_color.png`` (a fixed random palette).
    cities : int
        City sub-folders used in turn (at most 5).
    evaluated_only : bool
        The predictions hold only the 19 evaluated ids, as a model trained on the 19
        classes predicts (a void id predicted by the generator becomes an evaluated one);
        the truth keeps every id.
    background : int
        Label id of the pixels no shape covers, in the truth and the prediction: 0
        ("unlabeled": the benchmark ignores most of the truth) or e.g. 7 ("road": most
        pixels are evaluated, as in a street scene).
    seed : int
        The generator's seed; the same seed gives the same files.
    workers : int, optional
        Writer threads (default: every core; 1 writes in the calling thread).

    Raises
    ------
    fastseg.readers.MissingReaderError
        Without Pillow or imagecodecs (the ``images`` extra), before anything is written.
    """
    write_png = _png_writer()
    n_ids, evaluated, instance_ids = _cityscapes_ids()
    if not (isinstance(background, int | np.integer) and 0 <= background < n_ids):
        raise ValueError(
            f"background must be a Cityscapes label id in [0, {n_ids}); got {background!r}"
        )
    # Label id -> itself when evaluated, else an evaluated id (for predictions).
    to_evaluated = np.array(
        [i if i in evaluated else evaluated[i % len(evaluated)] for i in range(256)], np.uint8
    )
    palette = np.random.default_rng(7).integers(0, 256, (256, 3), dtype=np.uint8)
    root = Path(out)
    sizes = _sizes(size, images, ragged, seed)
    used = CITYSCAPES_CITIES[: max(1, min(cities, len(CITYSCAPES_CITIES)))]
    names = []
    for i in range(images):
        city = used[i % len(used)]
        names.append((city, f"{city}_{i // len(CITYSCAPES_CITIES):06d}_{19 + i:06d}"))
    for city in {c for c, _ in names}:
        (root / "gtFine" / "val" / city).mkdir(parents=True, exist_ok=True)
    (root / "results").mkdir(parents=True, exist_ok=True)

    def one(i: int) -> None:
        spec = make_spec(sizes[i], n_ids, ignore_index=None, seed=seed)
        true, guess = labels(spec, i)
        if background:  # shapes are never id 0
            true[true == 0] = background
            guess[guess == 0] = background
        if evaluated_only:
            guess = to_evaluated[guess]
        city, name = names[i]
        gt = root / "gtFine" / "val" / city
        write_png(gt / f"{name}_gtFine_labelIds.png", true)
        write_png(root / "results" / f"{name}_leftImg8bit.png", guess)
        if instances:
            write_png(gt / f"{name}_gtFine_instanceIds.png", _instances(true, instance_ids))
        if color:
            write_png(gt / f"{name}_gtFine_color.png", palette[true])

    _map_images(one, images, workers)
    return [name for _, name in names]


def write_nnunet(
    out: str | os.PathLike[str],
    cases: int = 10,
    size: Sequence[int] = (64, 128, 128),
    *,
    classes: int = 4,
    probabilities: bool = False,
    ragged: bool = True,
    seed: int = 0,
    workers: int | None = None,
) -> list[str]:
    """Write an nnU-Net-like folder of NIfTI volumes; return the case names (ids).

    ::

        out/labelsTs/case_0000.nii.gz       truth volume, uint8, with voxel spacing
        out/pred/case_0000.nii.gz           prediction, same geometry, same name
        out/pred/case_0000.npz              (probabilities) key 'probabilities', (C, Z, Y, X)
        out/dataset.json                    nnU-Net's labels and file ending

    Volumes are written as nnU-Net (SimpleITK) writes them: the NumPy volume
    ``(Z, Y, X)`` is the NIfTI's ``(X, Y, Z)`` data, so fastseg (which reads NIfTI in
    ``(Z, Y, X)`` order) and the ``.npz`` probabilities line up. Each case has its own
    voxel spacing and origin, the same on both sides. Case ``i`` is
    ``labels(make_spec(size_i, classes, ignore_index=None, absent_class=False,
    seed=seed), i)``; the probabilities are :func:`scores` around the prediction, so
    their argmax is the predicted volume.

    Parameters
    ----------
    out : path
        Folder to write into (created; existing files of the same names are replaced).
    cases : int
        Number of volumes.
    size : (D, H, W)
        The largest volume (`ragged`: each side drawn in ``[size / 2, size]``), else the
        size of every one.
    classes : int
        Number of classes, background (0) included: ``dataset.json`` names them
        ``background``, ``class1``, ...
    probabilities : bool
        Also write nnU-Net's ``.npz`` probabilities (float32) next to the predictions.
    seed : int
        The generator's seed; the same seed gives the same files.
    workers : int, optional
        Writer threads (default: every core; 1 writes in the calling thread).

    Raises
    ------
    fastseg.readers.MissingReaderError
        Without nibabel (the ``nifti`` extra), before anything is written.
    """
    try:
        import nibabel
    except ImportError:
        raise MissingReaderError(
            "writing NIfTI files needs nibabel: pip install 'fastseg[nifti]'"
        ) from None

    root = Path(out)
    for sub in ("labelsTs", "pred"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    sizes = _sizes(size, cases, ragged, seed)
    rng = np.random.default_rng([seed, 7])
    spacings = [tuple(np.round(rng.uniform(0.5, 3.0, 3), 3)) for _ in range(cases)]
    names = [f"case_{i:04d}" for i in range(cases)]

    def one(i: int) -> None:
        spec = make_spec(sizes[i], classes, ignore_index=None, absent_class=False, seed=seed,
                         dtype="float32")  # fmt: skip
        true, guess = labels(spec, i)
        sz, sy, sx = spacings[i]
        affine = np.diag([sx, sy, sz, 1.0])
        affine[:3, 3] = (-10.0 * i, 20.0, -30.0)
        for folder, vol in (("labelsTs", true), ("pred", guess)):
            image = nibabel.Nifti1Image(vol.T, affine)  # (Z, Y, X) -> NIfTI (X, Y, Z)
            image.header.set_data_dtype(np.uint8)
            nibabel.save(image, root / folder / f"{names[i]}.nii.gz")
        if probabilities:
            p = scores(spec, i, guess)  # (Z, Y, X, C) float32
            np.savez_compressed(root / "pred" / f"{names[i]}.npz",
                                probabilities=np.moveaxis(p, -1, 0))  # fmt: skip

    _map_images(one, cases, workers)
    labels_json = {"background": 0, **{f"class{k}": k for k in range(1, classes)}}
    dataset = {"labels": labels_json, "file_ending": ".nii.gz", "numTraining": 0,
               "channel_names": {"0": "CT"}}  # fmt: skip
    (root / "dataset.json").write_text(json.dumps(dataset, indent=1) + "\n")
    return names


# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------


def _take(iterator: Any, n: int) -> list[int]:
    return [b0 for _, b0 in zip(range(n), iterator, strict=False)]


def _int(value: Any, name: str) -> int:
    if isinstance(value, bool | np.bool_) or not isinstance(value, int | np.integer):
        raise ValueError(f"{name} must be an integer; got {value!r}")
    return int(value)


def _int_tuple(value: Any, name: str) -> tuple[int, ...]:
    if isinstance(value, int | np.integer) and not isinstance(value, bool):
        return (int(value),)
    try:
        items = tuple(value)
    except TypeError:
        raise ValueError(f"{name} must be a sequence of integers; got {value!r}") from None
    return tuple(_int(v, name) for v in items)

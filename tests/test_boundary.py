"""Boundary IoU counts (fastseg.boundary) against an independent SciPy reference.

The reference is the paper's ``mask_to_boundary``, per image and class: the mask padded
with one pixel of zeros, eroded ``d`` times with a 3 x 3 (x 3) square, cropped, and
``mask & ~eroded``; ``scipy.ndimage.binary_erosion`` does the erosions.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import ndimage

from fastseg import boundary
from fastseg.boundary import BoundaryCounts, boundary_counts, boundary_width

ALL_DTYPES = ("uint8", "uint16", "int16", "int32", "int64", "int8", "uint32", "uint64")


# ------------------------------------------------------------------------ reference


def boundary_region(mask: np.ndarray, d: int) -> np.ndarray:
    """The paper's mask_to_boundary at d pixels (any number of dimensions)."""
    k = mask.ndim
    padded = np.pad(mask, 1)
    eroded = ndimage.binary_erosion(padded, structure=np.ones((3,) * k, bool), iterations=d)
    return mask & ~eroded[(slice(1, -1),) * k]


def reference(truth, pred, n, d, ignore=None, halo=None) -> np.ndarray:
    """(B, 3, N): true, pred, both boundary pixels, counted outside `halo` and ignore."""
    truth, pred = np.asarray(truth), np.asarray(pred)
    out = np.zeros((truth.shape[0], 3, n), np.int64)
    for b in range(truth.shape[0]):
        counted = np.ones(truth.shape[1:], bool)
        if ignore is not None:
            counted &= truth[b] != ignore
        if halo is not None:
            inner = np.zeros_like(counted)
            pairs = zip(halo, counted.shape, strict=True)
            inner[tuple(slice(lo, s - hi) for (lo, hi), s in pairs)] = True
            counted &= inner
        for c in range(n):
            gb = boundary_region(truth[b] == c, d)
            pb = boundary_region(pred[b] == c, d)
            out[b, 0, c] = np.count_nonzero(gb & counted)
            out[b, 1, c] = np.count_nonzero(pb & counted)
            out[b, 2, c] = np.count_nonzero(gb & pb & counted)
    return out


def stacked(counts: BoundaryCounts) -> np.ndarray:
    return np.stack([counts.true, counts.pred, counts.both], axis=1)


def label_maps(rng, shape, n, block, noise, dtype="int64"):
    """(truth, pred) of `shape` (B, *spatial): blocky maps (blocks of `block` pixels per
    spatial axis) with noise."""
    small = (shape[0], *(-(-s // block) for s in shape[1:]))
    truth = rng.integers(0, n, small)
    for axis in range(1, len(shape)):
        truth = np.repeat(truth, block, axis=axis)
    truth = truth[tuple(slice(0, s) for s in shape)]
    pred = np.where(rng.random(shape) < noise, rng.integers(0, n, shape), truth)
    truth = np.where(rng.random(shape) < noise / 2, rng.integers(0, n, shape), truth)
    return truth.astype(dtype), pred.astype(dtype)


# ------------------------------------------------------------------------ worked cases


def square_pair() -> tuple[np.ndarray, np.ndarray]:
    """A 5 x 5 square (class 1) in a 9 x 9 image; the prediction one column right."""
    truth = np.zeros((1, 9, 9), np.uint8)
    truth[0, 2:7, 2:7] = 1
    pred = np.zeros((1, 9, 9), np.uint8)
    pred[0, 2:7, 3:8] = 1
    return truth, pred


def test_square_width_1():
    # Class 1: the square's 25 pixels but its 3 x 3 core: 16, in both maps; the two rings
    # share their top and bottom rows over columns 3..6: 8. Class 0: every truth
    # background pixel is next to the square or the image's edge (56); in the prediction
    # column 1, rows 1..7, sees background only (56 - 7 = 49); both: the 51 pixels
    # background in both maps, but those 7: 44.
    truth, pred = square_pair()
    c = boundary_counts(truth, pred, 2, 1)
    assert c.true.tolist() == [[56, 16]]
    assert c.pred.tolist() == [[49, 16]]
    assert c.both.tolist() == [[44, 8]]
    np.testing.assert_array_equal(stacked(c), reference(truth, pred, 2, 1))


def test_square_width_2():
    # Class 1: 25 but the centre (4, 4) (prediction: (4, 5)); both: the 20 pixels of the
    # overlap but those two centres: 18. Class 0: every background pixel is within 2 of
    # the square or the edge in both maps: 56, 56, and 51 in both.
    truth, pred = square_pair()
    c = boundary_counts(truth, pred, 2, 2)
    assert c.true.tolist() == [[56, 24]]
    assert c.pred.tolist() == [[56, 24]]
    assert c.both.tolist() == [[51, 18]]
    np.testing.assert_array_equal(stacked(c), reference(truth, pred, 2, 2))


def test_square_with_ignored_centre():
    # An ignored truth centre is no class: every pixel of the square touches it or the
    # background, so all 24 counted ones are boundary pixels, and the prediction's ring
    # now also meets the truth's in column 3, rows 3..5 (8 + 3). The centre itself is
    # counted nowhere (the prediction's (4, 4) is interior anyway).
    truth, pred = square_pair()
    truth[0, 4, 4] = 255
    c = boundary_counts(truth, pred, 2, 1, ignore_index=255)
    assert c.true.tolist() == [[56, 24]]
    assert c.pred.tolist() == [[49, 16]]
    assert c.both.tolist() == [[44, 11]]
    np.testing.assert_array_equal(stacked(c), reference(truth, pred, 2, 1, ignore=255))


def test_ignored_pixels_are_not_counted_in_the_prediction():
    truth, pred = square_pair()
    truth[0, 0, :] = 7  # the top row: all boundary pixels of class 0 in the prediction
    c = boundary_counts(truth, pred, 2, 1, ignore_index=7)
    assert c.pred.tolist() == [[49 - 9, 16]]
    assert c.true.tolist() == [[56 - 9, 16]]


def test_cube_3d():
    # A 3 x 3 x 3 cube in a 5 x 5 x 5 volume: at d = 1 only its centre is interior; the
    # 98 background pixels all touch the cube or the volume's faces. At d = 2 the cube has
    # no interior pixel.
    truth = np.zeros((1, 5, 5, 5), np.uint8)
    truth[0, 1:4, 1:4, 1:4] = 1
    c = boundary_counts(truth, truth, 2, 1)
    assert c.true.tolist() == c.pred.tolist() == c.both.tolist() == [[98, 26]]
    assert boundary_counts(truth, truth, 2, 2).true.tolist() == [[98, 27]]


def test_interior_far_from_every_edge():
    # One class over a 12 x 20 image: interior pixels are those >= d from every edge.
    truth = np.zeros((1, 12, 20), np.int32)
    for d in range(1, 8):
        interior = max(12 - 2 * d, 0) * max(20 - 2 * d, 0)
        assert boundary_counts(truth, truth, 1, d).true.tolist() == [[240 - interior]]


# ------------------------------------------------------------------------ width


def test_width_pixels():
    assert boundary_width((10, 10), 5) == 5
    assert boundary_width((10, 10), 5.0) == 5
    assert boundary_width((10, 10), np.int64(3)) == 3
    assert boundary_width((10, 10), 1000) == 1000  # wider than the image: kept


def test_width_fraction_of_the_diagonal():
    # Cityscapes: diagonal 2289.7, 0.02 of it 45.8 -> 46.
    assert boundary_width((1024, 2048), 0.02) == 46
    assert boundary_width((512, 512), 0.02) == round(0.02 * math.hypot(512, 512)) == 14
    # 3-D: the diagonal of the volume, sqrt(3) * 100 = 173.2; 0.02 of it 3.46 -> 3.
    assert boundary_width((100, 100, 100), 0.02) == 3
    # At least one pixel.
    assert boundary_width((10, 10), 0.02) == 1
    # Python's round, as the paper's int(round(...)): halves go to even.
    assert boundary_width((3, 4), 0.5) == 2  # 2.5
    assert boundary_width((3, 4), 0.3) == 2  # 1.5


@pytest.mark.parametrize("width", [0, -1, -0.5, 1.5, 2.25, float("nan"), float("inf"),
                                   True, False, "3", None])  # fmt: skip
def test_width_refused(width):
    with pytest.raises(ValueError, match="width"):
        boundary_width((10, 10), width)


# ------------------------------------------------------------------------ random maps


@st.composite
def cases(draw):
    k = draw(st.sampled_from([2, 3]))
    side = st.integers(1, 12) if k == 2 else st.integers(1, 7)
    shape = tuple(draw(side) for _ in range(k))
    return {
        "shape": shape,
        "batch": draw(st.integers(1, 3)),
        "n": draw(st.integers(1, 20)),
        "d": draw(st.integers(1, 6)),
        "block": draw(st.integers(1, 5)),
        "noise": draw(st.sampled_from([0.0, 0.05, 0.3])),
        "dtype": draw(st.sampled_from(ALL_DTYPES)),
        "ignore": draw(st.sampled_from([None, "in-range", "out-of-range"])),
        "layout": draw(st.sampled_from(["c", "readonly", "strided", "fortran", "swapped"])),
        "threads": draw(st.integers(1, 3)),
        "seed": draw(st.integers(0, 2**32 - 1)),
    }


def _layout(x: np.ndarray, layout: str) -> np.ndarray:
    """`x` (same values) as a readonly, strided, Fortran-ordered or byte-swapped array."""
    if layout == "readonly":
        x = x.copy()
        x.flags.writeable = False
    elif layout == "strided":
        wide = np.zeros((*x.shape[:-1], 2 * x.shape[-1]), x.dtype)
        wide[..., ::2] = x
        x = wide[..., ::2]
    elif layout == "fortran":
        x = np.asfortranarray(x)
    elif layout == "swapped":
        x = x.astype(x.dtype.newbyteorder(">" if x.dtype.byteorder != ">" else "<"))
    return x


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_random_maps_match_the_reference(case):
    rng = np.random.default_rng(case["seed"])
    n, d = case["n"], case["d"]
    truth, pred = label_maps(rng, (case["batch"], *case["shape"]), n, case["block"],
                             case["noise"])  # fmt: skip
    ignore = None
    if case["ignore"] is not None:
        signed = np.dtype(case["dtype"]).kind == "i"
        ignore = {"in-range": 0, "out-of-range": -1 if signed else 100}[case["ignore"]]
        if ignore == 0:
            n = max(n, 2)
        truth = np.where(rng.random(truth.shape) < 0.15, ignore, truth)
    truth, pred = truth.astype(case["dtype"]), pred.astype(case["dtype"])
    expected = reference(truth, pred, n, d, ignore)
    got = boundary_counts(_layout(truth, case["layout"]), _layout(pred, case["layout"]), n, d,
                          ignore_index=ignore, n_threads=case["threads"])  # fmt: skip
    for a in got:
        assert a.dtype == np.int64
        assert a.shape == (truth.shape[0], n)
        assert a.flags.c_contiguous
    np.testing.assert_array_equal(stacked(got), expected)


@pytest.mark.parametrize("dtype", ALL_DTYPES)
def test_every_dtype(dtype):
    rng = np.random.default_rng(3)
    truth, pred = label_maps(rng, (2, 17, 23), 6, 4, 0.05, dtype)
    expected = reference(truth, pred, 6, 2)
    np.testing.assert_array_equal(stacked(boundary_counts(truth, pred, 6, 2)), expected)


def test_bool_masks():
    rng = np.random.default_rng(4)
    truth, pred = label_maps(rng, (2, 15, 15), 2, 5, 0.05)
    truth, pred = truth.astype(bool), pred.astype(bool)
    expected = reference(truth.astype(np.uint8), pred.astype(np.uint8), 2, 2)
    np.testing.assert_array_equal(stacked(boundary_counts(truth, pred, 2, 2)), expected)


def test_mixed_dtypes():
    rng = np.random.default_rng(5)
    truth, pred = label_maps(rng, (2, 16, 16), 5, 4, 0.05)
    expected = reference(truth, pred, 5, 1)
    for a, b in [("uint8", "int16"), ("uint16", "int16"), ("uint64", "int8"), ("uint8", "uint32")]:
        got = boundary_counts(truth.astype(a), pred.astype(b), 5, 1)
        np.testing.assert_array_equal(stacked(got), expected)


@pytest.mark.parametrize("n", [255, 256, 70000])
def test_many_classes(n):
    # Keys widen with N (uint8 up to 255 classes, then uint16, then int32): the top class
    # must never read as the sentinel.
    rng = np.random.default_rng(6)
    truth, pred = label_maps(rng, (1, 20, 20), 3, 5, 0.0)
    truth, pred = truth + (n - 3), pred + (n - 3)
    got = stacked(boundary_counts(truth, pred, n, 2))[..., n - 3:]
    np.testing.assert_array_equal(got, reference(truth - (n - 3), pred - (n - 3), 3, 2))


@pytest.mark.parametrize("threads", [1, 2, 3, 5])
def test_threads_give_the_same_counts(threads):
    rng = np.random.default_rng(7)
    for shape in [(1, 40, 33), (3, 40, 33), (2, 9, 14, 11), (4, 3, 3)]:
        truth, pred = label_maps(rng, shape, 4, 4, 0.05)
        expected = reference(truth, pred, 4, 3)
        got = boundary_counts(truth, pred, 4, 3, n_threads=threads)
        np.testing.assert_array_equal(stacked(got), expected)


def test_equal_maps():
    rng = np.random.default_rng(8)
    truth, _ = label_maps(rng, (2, 30, 30), 5, 6, 0.0)
    c = boundary_counts(truth, truth, 5, 2)
    np.testing.assert_array_equal(c.true, c.pred)
    np.testing.assert_array_equal(c.true, c.both)
    assert c.true.sum() > 0
    assert c.true.sum() < truth.size  # some interior pixels


def test_cityscapes_like_pair():
    # A realistic size: a 256 x 512 pair of blocky maps (rectangles) with ignore pixels.
    rng = np.random.default_rng(9)
    truth = np.zeros((1, 256, 512), np.uint8)
    for _ in range(60):
        y, x = rng.integers(0, 256), rng.integers(0, 512)
        h, w = rng.integers(4, 80), rng.integers(4, 160)
        truth[0, y : y + h, x : x + w] = rng.integers(0, 19)
    pred = np.roll(truth, (2, -3), axis=(1, 2))
    truth[0, 200:, :40] = 255
    d = boundary_width((256, 512), 0.02)
    assert d == 11
    got = boundary_counts(truth, pred, 19, d, ignore_index=255)
    np.testing.assert_array_equal(stacked(got), reference(truth, pred, 19, d, 255))


# ------------------------------------------------------------------------ blocks and halos


def _cuts(draw, size: int) -> list[int]:
    inner = draw(st.lists(st.integers(1, max(size - 1, 1)), max_size=3, unique=True))
    return sorted({0, size, *[c for c in inner if 0 < c < size]})


@st.composite
def block_cases(draw):
    k = draw(st.sampled_from([2, 3]))
    shape = tuple(draw(st.integers(1, 16 if k == 2 else 8)) for _ in range(k))
    return {
        "shape": shape,
        "cuts": [_cuts(draw, s) for s in shape],
        "n": draw(st.integers(1, 6)),
        "d": draw(st.integers(1, 6)),
        "block": draw(st.integers(1, 5)),
        "ignore": draw(st.booleans()),
        "threads": draw(st.integers(1, 3)),
        "seed": draw(st.integers(0, 2**32 - 1)),
    }


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(block_cases())
def test_blocks_with_halos_add_up_to_the_image(case):
    """Split an image into blocks, each with a halo of d (clipped at the image's edge)."""
    rng = np.random.default_rng(case["seed"])
    n, d, shape = case["n"], case["d"], case["shape"]
    truth, pred = label_maps(rng, (2, *shape), n, case["block"], 0.1, "int32")
    ignore = -1 if case["ignore"] else None
    if ignore is not None:
        truth = np.where(rng.random(truth.shape) < 0.1, ignore, truth).astype(np.int32)
    whole = stacked(boundary_counts(truth, pred, n, d, ignore_index=ignore))
    np.testing.assert_array_equal(whole, reference(truth, pred, n, d, ignore))
    total = np.zeros_like(whole)
    ranges = [list(itertools.pairwise(c)) for c in case["cuts"]]
    for block in np.ndindex(*(len(r) for r in ranges)):
        spans = [ranges[axis][j] for axis, j in enumerate(block)]
        halo = tuple((min(d, a), min(d, s - b)) for (a, b), s in zip(spans, shape, strict=True))
        index = (slice(None), *(slice(a - h0, b + h1)
                                for (a, b), (h0, h1) in zip(spans, halo, strict=True)))  # fmt: skip
        part = boundary_counts(truth[index], pred[index], n, d, ignore_index=ignore,
                               halo=halo, n_threads=case["threads"])  # fmt: skip
        np.testing.assert_array_equal(
            stacked(part), reference(truth[index], pred[index], n, d, ignore, halo)
        )
        total += stacked(part)
    np.testing.assert_array_equal(total, whole)


def test_halo_counts_only_the_inner_part():
    # The block is the whole 9 x 9 image, so the decisions are the image's; only the inner
    # 5 x 5 (the truth's square) is counted. Truth: its 16 ring pixels. Prediction: its
    # ring's rows 2 and 6 over columns 3..6 (8) and column 3, rows 3..5 (3); column 2 is
    # background next to its square (5). Both: the 8 shared ring pixels.
    truth, pred = square_pair()
    halo = ((2, 2), (2, 2))
    c = boundary_counts(truth, pred, 2, 1, halo=halo)
    assert c.true.tolist() == [[0, 16]]
    assert c.pred.tolist() == [[5, 11]]
    assert c.both.tolist() == [[0, 8]]
    np.testing.assert_array_equal(stacked(c), reference(truth, pred, 2, 1, halo=halo))


def test_halo_covering_the_block_counts_nothing():
    truth, pred = square_pair()
    c = boundary_counts(truth, pred, 2, 1, halo=((4, 5), (0, 0)))
    assert stacked(c).sum() == 0


# ------------------------------------------------------------------------ errors


def test_prediction_out_of_range():
    truth, pred = square_pair()
    pred[0, 3, 3] = 9
    message = r"y_pred: 1 pixel\(s\) hold labels outside \[0, 2\), e\.g\. 9$"
    with pytest.raises(ValueError, match=message):
        boundary_counts(truth, pred, 2, 1)
    # The ignore index is the truth's only.
    pred[0, 3, 3] = 255
    with pytest.raises(ValueError, match=r"y_pred: .* e\.g\. 255$"):
        boundary_counts(truth, pred, 2, 1, ignore_index=255)


def test_truth_out_of_range():
    truth, pred = square_pair()
    truth = truth.astype(np.int16)
    truth[0, 8, 8] = -3
    with pytest.raises(ValueError, match=r"y_true: 1 pixel\(s\) hold labels outside \[0, 2\) "
                                         r"that are not the ignore index, e\.g\. -3$"):  # fmt: skip
        boundary_counts(truth, pred, 2, 1, ignore_index=255)
    truth[0, 8, 8] = 255
    assert boundary_counts(truth, pred, 2, 1, ignore_index=255).true.sum() > 0


def test_out_of_range_in_a_halo_is_reported():
    truth, pred = square_pair()
    pred = pred.astype(np.int32)
    pred[0, 0, 0] = 5
    with pytest.raises(ValueError, match=r"e\.g\. 5$"):
        boundary_counts(truth, pred, 2, 1, halo=((4, 4), (4, 4)))
    with pytest.raises(ValueError, match=r"e\.g\. 5$"):
        boundary_counts(truth, pred, 2, 1, halo=((9, 0), (0, 0)))


def test_uint64_label_too_large():
    truth, pred = square_pair()
    pred = pred.astype(np.uint64)
    pred[0, 1, 1] = 2**64 - 1
    with pytest.raises(ValueError, match=rf"e\.g\. {2**64 - 1}$"):
        boundary_counts(truth, pred, 2, 1)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"width": 0}, "width"),
        ({"width": -2}, "width"),
        ({"width": 1.5}, "width"),
        ({"width": True}, "width"),
        ({"num_classes": 0}, "num_classes"),
        ({"num_classes": 2.0}, "num_classes"),
        ({"n_threads": 0}, "n_threads"),
        ({"ignore_index": 2**70}, "ignore_index"),
        ({"halo": ((1, 1),)}, "one .* pair per spatial axis"),
        ({"halo": ((1, 1), (1,))}, "pair"),
        ({"halo": ((-1, 0), (0, 0))}, "does not fit"),
        ({"halo": ((5, 5), (0, 0))}, "does not fit"),
    ],
)
def test_arguments_refused(kwargs, match):
    truth, pred = square_pair()
    args = {"num_classes": 2, "width": 1, **kwargs}
    with pytest.raises(ValueError, match=match):
        boundary_counts(truth, pred, **args)


def test_shapes_refused():
    truth, pred = square_pair()
    with pytest.raises(ValueError, match="differ in shape"):
        boundary_counts(truth, pred[:, :8], 2, 1)
    with pytest.raises(ValueError, match=r"\(B, H, W\) or \(B, D, H, W\)"):
        boundary_counts(truth[0], pred[0], 2, 1)
    with pytest.raises(ValueError, match=r"\(B, H, W\) or \(B, D, H, W\)"):
        boundary_counts(truth[None, None], pred[None, None], 2, 1)


def test_float_maps_refused():
    truth, pred = square_pair()
    with pytest.raises(TypeError, match="integers"):
        boundary_counts(truth.astype(np.float32), pred, 2, 1)


def test_empty_inputs():
    empty = np.zeros((0, 5, 5), np.uint8)
    c = boundary_counts(empty, empty, 3, 1)
    assert c.true.shape == (0, 3)
    flat = np.zeros((2, 0, 5), np.uint8)
    assert boundary_counts(flat, flat, 3, 1).true.tolist() == [[0, 0, 0]] * 2


def test_compiled_signatures_are_listed():
    # Runs after the tests above in file order; at least one specialisation exists.
    rng = np.random.default_rng(10)
    truth, pred = label_maps(rng, (1, 8, 8), 3, 2, 0.1, "uint16")
    boundary_counts(truth, pred, 3, 1)
    compiled = set(boundary._share.signatures)
    assert compiled
    assert compiled <= boundary.SIGNATURES

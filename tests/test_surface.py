"""fastseg.surface against MONAI: surface Dice and the percentile Hausdorff distance."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from fastseg import surface
from fastseg.surface import SurfaceScores, surface_scores

monai_metrics = pytest.importorskip("monai.metrics")
torch = pytest.importorskip("torch")


# ------------------------------------------------------------------ MONAI, the oracle


def _one_hot(labels: np.ndarray, n: int) -> torch.Tensor:
    """(B, *spatial) labels -> float one-hot (B, n, *spatial); values >= n: no channel."""
    eye = np.eye(n + 1, dtype=np.float32)[:, :n]
    x = eye[np.clip(labels.astype(np.int64), 0, n)]
    return torch.from_numpy(np.ascontiguousarray(np.moveaxis(x, -1, 1)))


def monai_scores(truth, pred, n, *, spacing=None, tolerance=None, percentile=95.0,
                 ignore_index=None):  # fmt: skip
    """MONAI's (dice, hd) per image and class (float32 -> float64), include_background.

    Ignored truth voxels: no channel in the truth's one-hot; MONAI's own ``ignore_index``
    (a sentinel outside the channels) then masks both inputs there.
    """
    truth = np.asarray(truth)
    if ignore_index is not None:
        truth = np.where(truth == ignore_index, n, truth)
    yt, yp = _one_hot(truth, n), _one_hot(np.asarray(pred), n)
    sentinel = None if ignore_index is None else n
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MONAI warns for every empty class
        dice = None
        if tolerance is not None:
            taus = [float(v) for v in np.broadcast_to(tolerance, (n,))]
            dice = monai_metrics.compute_surface_dice(
                yp, yt, taus, include_background=True, spacing=spacing, ignore_index=sentinel
            ).numpy().astype(np.float64)
        metric = monai_metrics.HausdorffDistanceMetric(
            include_background=True, percentile=percentile, reduction="none",
            ignore_index=sentinel,
        )  # fmt: skip
        hd = metric(yp, yt, spacing=spacing).numpy().astype(np.float64)
    return dice, hd


def assert_monai(got: SurfaceScores, truth, pred, n, **kw) -> None:
    dice, hd = monai_scores(truth, pred, n, **kw)
    # MONAI's Hausdorff values are float32 numbers: fastseg's are the same numbers.
    np.testing.assert_array_equal(got.hd, hd)
    if dice is None:
        assert got.dice is None
    else:
        # MONAI stores the ratio in float32; fastseg's float64 ratio rounds to it.
        np.testing.assert_array_equal(got.dice.astype(np.float32), dice.astype(np.float32))
        np.testing.assert_allclose(got.dice, dice, rtol=1e-7, atol=0)


# ------------------------------------------------------------------ label maps


def _inside(axes, centre, radii):
    return sum(((a - m) / r) ** 2 for a, m, r in zip(axes, centre, radii, strict=True)) <= 1


def ellipsoids(shape, n, objects, seed, *, blobs=True):
    """(truth, pred) uint8: random ellipsoids of classes 1..n-1 on 0; the prediction
    shifted, scaled, plus wrong blobs."""
    rng = np.random.default_rng(seed)
    size = np.array(shape)
    truth = np.zeros(shape, np.uint8)
    pred = np.zeros(shape, np.uint8)
    axes = np.ogrid[tuple(slice(0, s) for s in shape)]
    for k in range(objects):
        c = 1 + k % max(1, n - 1)
        centre = rng.uniform(0.1, 0.9, len(shape)) * size
        radii = rng.uniform(0.06, 0.25, len(shape)) * size
        shift = rng.normal(0, 1.2, len(shape))
        scale = rng.uniform(0.85, 1.15)
        truth[_inside(axes, centre, radii)] = c
        pred[_inside(axes, centre + shift, radii * scale)] = c
    if blobs:
        for _ in range(max(1, objects // 3)):
            c = rng.integers(0, n)
            centre = rng.uniform(0, 1, len(shape)) * size
            radii = rng.uniform(0.03, 0.08, len(shape)) * size
            pred[_inside(axes, centre, radii)] = c
    return truth, pred


def smooth_field(shape, n, seed, passes=2):
    """(truth, pred) uint8 from the argmax of box-smoothed noise; the prediction from the
    same noise plus some of its own."""
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((n, *shape))
    other = noise + 0.6 * rng.standard_normal((n, *shape))

    def smooth(x):
        for _ in range(passes):
            for axis in range(1, x.ndim):
                x = (np.roll(x, 1, axis) + x + np.roll(x, -1, axis)) / 3
        return x

    return smooth(noise).argmax(0).astype(np.uint8), smooth(other).argmax(0).astype(np.uint8)


def batch(maker, b, *args):
    pairs = [maker(*args[:-1], args[-1] + i) for i in range(b)]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


# ------------------------------------------------------------------ against MONAI

CASES = {
    "2d-ellipsoids": (lambda: batch(ellipsoids, 3, (40, 52), 5, 6, 1), 5, (0.7, 1.3)),
    "2d-field-2": (lambda: batch(smooth_field, 2, (33, 47), 2, 2), 2, (1.0, 1.0)),
    "2d-field-7": (lambda: batch(smooth_field, 2, (48, 40), 7, 3), 7, 0.5),
    "3d-ellipsoids": (lambda: batch(ellipsoids, 2, (18, 24, 20), 6, 5, 4), 6, (2.0, 0.8, 1.1)),
    "3d-field-4": (lambda: batch(smooth_field, 2, (16, 20, 18), 4, 5), 4, (1.5, 1.0, 0.75)),
    "3d-ellipsoids-14": (lambda: batch(ellipsoids, 1, (40, 36, 32), 14, 16, 6), 14, None),
}


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request):
    make, n, spacing = CASES[request.param]
    truth, pred = make()
    return truth, pred, n, spacing


@pytest.mark.parametrize("tolerance", [1.0, "per-class"])
def test_matches_monai(case, tolerance) -> None:
    truth, pred, n, spacing = case
    tau = np.linspace(0.0, 3.0, n) if tolerance == "per-class" else tolerance
    got = surface_scores(truth, pred, n, spacing=spacing, tolerance=tau)
    assert got.hd.shape == got.dice.shape == (truth.shape[0], n)
    assert got.hd.dtype == got.dice.dtype == np.float64
    assert_monai(got, truth, pred, n, spacing=spacing, tolerance=tau)


@pytest.mark.parametrize("percentile", [50.0, 99.0, 100.0, None])
def test_percentiles_match_monai(case, percentile) -> None:
    truth, pred, n, spacing = case
    got = surface_scores(truth, pred, n, spacing=spacing, percentile=percentile)
    assert got.dice is None
    assert_monai(got, truth, pred, n, spacing=spacing, percentile=percentile)


def test_ignored_voxels_match_monai(case) -> None:
    truth, pred, n, spacing = case
    rng = np.random.default_rng(7)
    truth = truth.copy()
    # a slab and scattered voxels of the truth are ignored
    truth[:, 2:5] = 255
    truth[rng.random(truth.shape) < 0.03] = 255
    got = surface_scores(truth, pred, n, spacing=spacing, tolerance=1.5, ignore_index=255)
    assert_monai(got, truth, pred, n, spacing=spacing, tolerance=1.5, ignore_index=255)
    # ignored voxels belong to no class in the prediction either
    masked = np.where(truth == 255, n, pred)
    np.testing.assert_array_equal(got.hd, monai_scores(truth, masked, n, spacing=spacing)[1])


def test_empty_classes_match_monai() -> None:
    truth, pred = batch(ellipsoids, 2, (30, 34), 4, 4, 9)
    truth, pred = truth.copy(), pred.copy()
    n = 7  # classes 4..6 never occur in the truth
    pred[0, :5, :5] = 5  # in the prediction only
    pred[pred == 3] = 0  # class 3 in the truth only
    truth[1][truth[1] == 2] = 1  # class 2 gone from the truth of image 1
    for percentile in (95.0, None):
        got = surface_scores(truth, pred, n, spacing=(1.0, 0.6), tolerance=1.0,
                             percentile=percentile)  # fmt: skip
        assert_monai(got, truth, pred, n, spacing=(1.0, 0.6), tolerance=1.0,
                     percentile=percentile)  # fmt: skip
    got = surface_scores(truth, pred, n, tolerance=1.0)
    # neither map: NaN; one map only: surface Dice 0, HD95 NaN, the maximum inf
    assert np.isnan(got.dice[:, 6]).all()
    assert np.isnan(got.hd[:, 6]).all()
    assert got.dice[0, 5] == 0  # prediction only
    assert np.isnan(got.hd[0, 5])
    assert (got.dice[:, 3] == 0).all()  # truth only
    assert np.isnan(got.hd[:, 3]).all()
    maximum = surface_scores(truth, pred, n, percentile=None)
    assert maximum.hd[0, 5] == np.inf
    assert (maximum.hd[:, 3] == np.inf).all()
    assert np.isnan(maximum.hd[0, 6])


def test_far_apart_and_the_tree_path(monkeypatch) -> None:
    """Surfaces far apart (no probe hits) and every distance from the KD-tree."""
    truth = np.zeros((2, 20, 40, 36), np.uint8)
    pred = np.zeros_like(truth)
    truth[:, 2:6, 3:9, 4:10] = 1
    pred[:, 12:18, 25:37, 20:33] = 1
    truth[1, 10:19, 30:39, 2:8] = 2
    pred[1, 1:4, 1:4, 30:35] = 2
    pred[1, 8:12, 8:12, 8:12] = 2
    spacing = (1.7, 0.9, 1.2)
    got = surface_scores(truth, pred, 3, spacing=spacing, tolerance=[0.0, 2.0, 25.0])
    assert_monai(got, truth, pred, 3, spacing=spacing, tolerance=[0.0, 2.0, 25.0])
    rich = batch(ellipsoids, 1, (24, 30, 26), 5, 8, 3)
    expected = surface_scores(*rich, 5, spacing=spacing, tolerance=1.2)
    monkeypatch.setattr(surface, "PROBES", 1)  # the voxel itself only
    for maps in ((truth, pred), rich):
        n = 3 if maps[0] is truth else 5
        again = surface_scores(*maps, n, spacing=spacing, tolerance=1.2)
        assert_monai(again, *maps, n, spacing=spacing, tolerance=1.2)
    np.testing.assert_array_equal(again.hd, expected.hd)
    np.testing.assert_array_equal(again.dice, expected.dice)


def test_objects_touching_the_image_side() -> None:
    """Border value 0: a mask's voxels on the image side are edge voxels."""
    truth = np.ones((1, 9, 11), np.uint8)
    pred = np.ones_like(truth)
    pred[0, :, 6:] = 0
    got = surface_scores(truth, pred, 2, tolerance=1.0, percentile=None)
    assert_monai(got, truth, pred, 2, tolerance=1.0, percentile=None)
    three = np.zeros((1, 1, 5, 6), np.uint8)  # 3-D, one slice deep: every voxel an edge
    got = surface_scores(three, three, 1, tolerance=0.0)
    assert got.dice[0, 0] == 1
    assert got.hd[0, 0] == 0
    assert_monai(got, three, three, 1, tolerance=0.0)


# ------------------------------------------------------------------ by hand


def squares(offset: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """A 4 x 4 square of class 1 and the same square `offset` columns to the right."""
    truth = np.zeros((1, 12, 14), np.uint8)
    pred = np.zeros_like(truth)
    truth[0, 2:6, 2:6] = 1
    pred[0, 2:6, 2 + offset : 6 + offset] = 1
    return truth, pred


def test_two_squares_by_hand() -> None:
    # Each square's edge is its 12 boundary pixels. From each edge pixel of one square to
    # the other's edge: 4 at 0 (the shared columns, top and bottom rows), 4 at 1, 4 at 2
    # (the far column and the row ends), in both directions. Sorted: 0 0 0 0 1 1 1 1 2 2
    # 2 2; the 95th percentile: rank 0.95 * 11 = 10.45 between two 2s -> 2.
    truth, pred = squares(2)
    got = surface_scores(truth, pred, 2, tolerance=[0.0, 1.0])
    assert got.hd[0, 1] == 2.0
    assert got.dice[0, 1] == pytest.approx(16 / 24)  # tau = 1: 8 of 12, both directions
    assert surface_scores(truth, pred, 2, tolerance=2.0).dice[0, 1] == 1.0
    assert surface_scores(truth, pred, 2, tolerance=0.0).dice[0, 1] == pytest.approx(8 / 24)
    assert surface_scores(truth, pred, 2, percentile=None).hd[0, 1] == 2.0
    assert surface_scores(truth, pred, 2, percentile=50).hd[0, 1] == 1.0  # rank 5.5
    assert_monai(got, truth, pred, 2, tolerance=[0.0, 1.0])
    # columns 0.5 apart: distances 0, 0.5, 1 (the pixel beside the other square's side
    # is 0.5 away across, 1 away along its column)
    half = surface_scores(truth, pred, 2, spacing=(1.0, 0.5), tolerance=0.5)
    assert half.hd[0, 1] == 1.0
    assert half.dice[0, 1] == pytest.approx(16 / 24)
    assert_monai(half, truth, pred, 2, spacing=(1.0, 0.5), tolerance=0.5)
    same = surface_scores(truth, truth, 2, tolerance=0.0)
    np.testing.assert_array_equal(same.dice, [[1.0, 1.0]])
    np.testing.assert_array_equal(same.hd, [[0.0, 0.0]])


def test_two_cubes_by_hand() -> None:
    truth = np.zeros((1, 8, 8, 8), np.uint8)
    pred = np.zeros_like(truth)
    truth[0, 2:5, 2:5, 2:5] = 1  # 27 voxels, 26 on the surface
    pred[0, 2:5, 2:5, 3:6] = 1  # one voxel along the last axis
    got = surface_scores(truth, pred, 2, spacing=(1.0, 1.0, 3.0), tolerance=[0.0, 2.9],
                         percentile=None)  # fmt: skip
    # the far face (9 voxels) of each cube is 3 away (spacing 3 on that axis) from the
    # other's nearest face; every other surface voxel lies on the other's surface
    assert got.hd[0, 1] == 3.0
    assert got.dice[0, 1] == pytest.approx((17 + 17) / 52)
    assert_monai(got, truth, pred, 2, spacing=(1.0, 1.0, 3.0), tolerance=[0.0, 2.9],
                 percentile=None)  # fmt: skip


# ------------------------------------------------------------------ inputs


def test_dtypes_threads_and_batches_agree() -> None:
    truth, pred = batch(ellipsoids, 3, (26, 31), 4, 5, 2)
    expected = surface_scores(truth, pred, 4, spacing=(1.2, 0.8), tolerance=1.0)
    for t, p in ((truth.astype(np.int64), pred.astype(np.int16)),
                 (truth.astype(np.int16), pred.astype(np.int16)),
                 (truth.tolist(), pred.tolist())):  # fmt: skip
        got = surface_scores(t, p, 4, spacing=(1.2, 0.8), tolerance=1.0)
        np.testing.assert_array_equal(got.hd, expected.hd)
        np.testing.assert_array_equal(got.dice, expected.dice)
    for threads in (1, 2, 3):
        got = surface_scores(truth, pred, 4, spacing=(1.2, 0.8), tolerance=1.0,
                             n_threads=threads)  # fmt: skip
        np.testing.assert_array_equal(got.hd, expected.hd)
        np.testing.assert_array_equal(got.dice, expected.dice)
    one = surface_scores(truth[1:2], pred[1:2], 4, spacing=(1.2, 0.8), tolerance=1.0)
    np.testing.assert_array_equal(one.hd, expected.hd[1:2])
    readonly = truth.copy()
    readonly.flags.writeable = False
    got = surface_scores(readonly, pred, 4, spacing=(1.2, 0.8), tolerance=1.0)
    np.testing.assert_array_equal(got.hd, expected.hd)
    assert pred.flags.writeable  # the input itself is left writable


def test_many_classes() -> None:
    """More classes than a uint8 edge map holds: int32 edge maps."""
    truth, pred = batch(smooth_field, 1, (30, 28), 6, 11)
    truth = truth.astype(np.int32) * 50  # classes 0, 50, ..., 250 of 300
    pred = pred.astype(np.int32) * 50
    got = surface_scores(truth, pred, 300, tolerance=1.0)
    assert_monai(got, truth, pred, 300, tolerance=1.0)
    assert np.isnan(got.hd[0, 1:50]).all()


def test_ignore_index_outside_the_dtype() -> None:
    truth, pred = squares(1)
    got = surface_scores(truth, pred, 2, tolerance=1.0, ignore_index=-1)
    np.testing.assert_array_equal(got.dice, surface_scores(truth, pred, 2, tolerance=1.0).dice)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"spacing": (1.0, 1.0, 1.0)}, "spacing must be a number or 2 values"),
        ({"spacing": (1.0, 0.0)}, "finite and > 0"),
        ({"spacing": -1.0}, "finite and > 0"),
        ({"spacing": (1.0, np.nan)}, "finite and > 0"),
        ({"spacing": True}, "spacing must be"),
        ({"spacing": "wide"}, "spacing must be"),
        ({"tolerance": [1.0, 2.0, 3.0]}, "2 values"),
        ({"tolerance": -0.5}, "finite and >= 0"),
        ({"tolerance": [1.0, np.inf]}, "finite and >= 0"),
        ({"percentile": 0}, r"percentile must be in \(0, 100\]"),
        ({"percentile": 100.5}, "percentile must be"),
        ({"ignore_index": 1}, "is a class"),
        ({"ignore_index": 2.5}, "must be an integer"),
        ({"n_threads": 0}, "n_threads"),
    ],
)
def test_bad_options(kwargs, message) -> None:
    truth, pred = squares()
    with pytest.raises(ValueError, match=message):
        surface_scores(truth, pred, 2, **kwargs)


def test_bad_inputs() -> None:
    truth, pred = squares()
    with pytest.raises(ValueError, match="differ in shape"):
        surface_scores(truth, pred[:, :-1], 2)
    with pytest.raises(ValueError, match=r"\(B, H, W\) or \(B, D, H, W\)"):
        surface_scores(truth[0], pred[0], 2)
    with pytest.raises(ValueError, match=r"\(B, H, W\) or \(B, D, H, W\)"):
        surface_scores(truth[None, None], pred[None, None], 2)
    with pytest.raises(TypeError, match="integer label map"):
        surface_scores(truth.astype(np.float32), pred, 2)
    with pytest.raises(ValueError, match="num_classes"):
        surface_scores(truth, pred, 0)
    bad = truth.copy()
    bad[0, 0, 0] = 7
    with pytest.raises(ValueError, match=r"1 truth voxels are no class in \[0, 2\).*e\.g\. 7"):
        surface_scores(bad, pred, 2)
    bad = pred.copy()
    bad[0, 5, 5] = 9
    with pytest.raises(ValueError, match=r"predicted voxels are no class.*e\.g\. 9"):
        surface_scores(truth, bad, 2)
    # a prediction that is no class where the truth is ignored is not looked at
    t, p = truth.copy(), pred.copy()
    t[0, 0, 0], p[0, 0, 0] = 255, 9
    surface_scores(t, p, 2, ignore_index=255)
    empty = surface_scores(np.zeros((0, 4, 4), np.uint8), np.zeros((0, 4, 4), np.uint8), 3,
                           tolerance=1.0)  # fmt: skip
    assert empty.hd.shape == empty.dice.shape == (0, 3)

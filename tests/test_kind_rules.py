"""The kind rules hold in every entry point: counts, Accumulator, evaluate and the CLI.

One-hot integer masks, a missing batch axis, one-channel scores and their threshold,
exact uint64 scores and option types are decided by ``fastseg.inputs.prepare`` alone;
these tests run each case through all four entry points and compare the confusion
matrix with ``np.bincount`` (or the refusal's message).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import zarr

import fastseg
from fastseg.cli import main

RNG = np.random.default_rng(7)
N = 3
LAB = RNG.integers(0, N, (4, 12, 10)).astype(np.uint8)
PRED = np.where(RNG.random(LAB.shape) < 0.6, LAB, RNG.integers(0, N, LAB.shape)).astype(np.uint8)


def bincount_confusion(truth, pred, n, ignore=None):
    t, p = np.asarray(truth).ravel().astype(np.int64), np.asarray(pred).ravel().astype(np.int64)
    keep = np.ones(t.shape, bool) if ignore is None else t != ignore
    return np.bincount(t[keep] * n + p[keep], minlength=n * n).reshape(n, n)


def _cli_options(kwargs):
    args = []
    for key, value in kwargs.items():
        if key == "num_classes":
            args += ["--num-classes", str(value)]
        elif key == "class_axis":
            args += ["--class-axis", str(value)]
        elif key == "threshold":
            args += ["--threshold", str(value)]
        elif key == "spatial_dims":
            args += ["--spatial-dims", str(value)]
        elif key == "ignore_index":
            args += ["--ignore-index", str(value)]
        else:
            raise AssertionError(key)
    return args


class Entry:
    """One entry point: returns the confusion matrix, or raises ValueError/TypeError."""

    def __init__(self, name, tmp_path, capsys):
        self.name, self.tmp_path, self.capsys = name, tmp_path, capsys

    def __call__(self, truth, pred, **kw):
        n = kw.get("num_classes")
        if self.name == "counts":
            return fastseg.counts(truth, pred, **kw).confusion
        if self.name == "accumulator":
            kw.pop("num_classes", None)
            acc = fastseg.Accumulator(n if n is not None else _n(kw), **kw)
            return acc.update(truth, pred).counts.confusion
        if self.name == "evaluate":
            report = fastseg.evaluate(truth, pred, progress=False, ignore_index=None, **kw)
            return report.confusion_matrix
        root = self.tmp_path / f"s{RNG.integers(1 << 30)}.zarr"
        g = zarr.open_group(root, mode="w")
        g.create_array("pred", data=np.asarray(pred))
        g.create_array("true", data=np.asarray(truth))
        out = self.tmp_path / "r.json"
        code = main(["evaluate", "--true", str(root),
                     "--pred", str(root), "--format", "json", "--output", str(out),
                     "--no-progress", *_cli_options(kw)])  # fmt: skip
        if code != 0:
            raise ValueError(self.capsys.readouterr().err)
        return np.array(json.loads(out.read_text())["confusion_matrix"])


def _n(kw):
    return 2 if "threshold" in kw else N


@pytest.fixture(params=["counts", "accumulator", "evaluate", "cli"])
def entry(request, tmp_path, capsys):
    return Entry(request.param, tmp_path, capsys)


# --------------------------------------------------------------------------------------
# Integer one-hot masks
# --------------------------------------------------------------------------------------


def test_integer_one_hot_masks_count_with_class_axis(entry):
    t = np.eye(N, dtype=np.uint8)[LAB]
    p = np.eye(N, dtype=np.uint8)[PRED]
    expected = bincount_confusion(LAB, PRED, N)
    np.testing.assert_array_equal(entry(t, p, class_axis=-1), expected)
    first_t, first_p = np.moveaxis(t, -1, 1).copy(), np.moveaxis(p, -1, 1).copy()
    np.testing.assert_array_equal(entry(first_t, first_p, class_axis=1), expected)


def test_integer_one_hot_masks_with_num_classes_only_are_refused_as_ambiguous(entry):
    t = np.eye(N, dtype=np.uint8)[LAB]
    p = np.eye(N, dtype=np.uint8)[PRED]
    with pytest.raises(ValueError, match=r"ambiguous.*class.axis.*-1.*spatial.dims.*3"):
        entry(t, p, num_classes=N)
    # Channels-first one-hot masks would read as volumes of depth N: refused as well.
    with pytest.raises(ValueError, match=r"ambiguous.*axis 1"):
        entry(np.moveaxis(t, -1, 1).copy(), np.moveaxis(p, -1, 1).copy(), num_classes=N)


def test_label_map_volumes_are_read_as_such_when_no_axis_has_num_classes_entries(entry):
    t = RNG.integers(0, N, (2, 4, 5, 6))
    p = RNG.integers(0, N, (2, 4, 5, 6))
    np.testing.assert_array_equal(entry(t, p, num_classes=N), bincount_confusion(t, p, N))


def test_spatial_dims_resolves_the_ambiguity_towards_label_maps(entry):
    t = RNG.integers(0, N, (2, 4, 5, N))
    p = RNG.integers(0, N, (2, 4, 5, N))
    got = entry(t, p, num_classes=N, spatial_dims=3)
    np.testing.assert_array_equal(got, bincount_confusion(t, p, N))


def test_accumulator_one_hot_reading_matches_its_label_reading():
    t = np.eye(N, dtype=np.uint8)[LAB]
    p = np.eye(N, dtype=np.uint8)[PRED]
    one_hot = fastseg.Accumulator(N, class_axis=-1).update(t, p).compute()
    labels = fastseg.Accumulator(N).update(LAB, PRED).compute()
    assert one_hot.to_dict()["summary"] == labels.to_dict()["summary"]
    # Hand-checked against the mIoU the issue reports for this mistake: the label-map
    # misreading gave a different (wrong) value.
    assert one_hot.miou == pytest.approx(labels.miou)


# --------------------------------------------------------------------------------------
# Batch axis
# --------------------------------------------------------------------------------------


def test_one_image_without_its_batch_axis_is_refused(entry):
    scores = RNG.random((12, 10, N)).astype(np.float32)
    with pytest.raises(ValueError, match=r"batch.*x\[None\]"):
        entry(LAB[0], scores, num_classes=N)


def test_one_image_with_its_batch_axis_is_one_image():
    scores = RNG.random((12, 10, N)).astype(np.float32)
    acc = fastseg.Accumulator(N)
    for i in range(3):
        acc.update(LAB[i][None], scores[None])
    assert acc.n_images == 3
    assert acc.counts.tp.shape == (3, N)
    expected = bincount_confusion(LAB[:3], np.broadcast_to(scores.argmax(-1), (3, 12, 10)), N)
    np.testing.assert_array_equal(acc.counts.confusion, expected)


def test_one_dimensional_data_only_when_asked(entry):
    t = RNG.integers(0, N, (5, 40))
    p = RNG.integers(0, N, (5, 40))
    with pytest.raises(ValueError, match=r"spatial_dims=1|spatial-dims"):
        entry(t, p, num_classes=N)
    np.testing.assert_array_equal(entry(t, p, num_classes=N, spatial_dims=1),
                                  bincount_confusion(t, p, N))  # fmt: skip


def test_per_image_values_follow_the_batch_axis():
    scores = np.eye(N, dtype=np.float32)[PRED]
    acc = fastseg.Accumulator(N).update(LAB, scores)
    assert acc.n_images == LAB.shape[0]
    for b in range(LAB.shape[0]):
        cm = bincount_confusion(LAB[b], PRED[b], N)
        np.testing.assert_array_equal(acc.counts.tp[b], np.diag(cm))


# --------------------------------------------------------------------------------------
# One channel: binary segmentation with a sigmoid
# --------------------------------------------------------------------------------------

BIN = (RNG.random((3, 16, 12)) < 0.4).astype(np.uint8)
PROB = np.clip(BIN * 0.7 + RNG.random(BIN.shape) * 0.5, 0, 1).astype(np.float32)


def test_one_channel_scores_need_a_threshold(entry):
    with pytest.raises(ValueError, match=r"one channel.*threshold"):
        entry(BIN, PROB[..., None], num_classes=2)


def test_one_channel_scores_are_thresholded(entry):
    expected = bincount_confusion(BIN, PROB > 0.5, 2)
    np.testing.assert_array_equal(entry(BIN, PROB[..., None], threshold=0.5), expected)
    # Channels-first (B, 1, H, W), and a one-channel mask as truth.
    np.testing.assert_array_equal(
        entry(BIN[:, None], PROB[:, None], threshold=0.5, class_axis=1), expected
    )


def test_probability_maps_without_a_channel_axis_are_thresholded(entry):
    expected = bincount_confusion(BIN, PROB > 0.25, 2)
    np.testing.assert_array_equal(entry(BIN, PROB, threshold=0.25), expected)


def test_binary_iou_is_one_for_a_perfect_sigmoid():
    # The case: probabilities of a perfect model counted at > 0 gave IoU 0.30.
    prob = np.where(BIN == 1, 0.9, 0.1).astype(np.float32)[..., None]
    report = fastseg.Accumulator(2, threshold=0.5).update(BIN, prob).compute()
    assert report.iou.tolist() == [1.0, 1.0]


def test_threshold_with_several_channels_is_refused():
    with pytest.raises(ValueError, match=r"threshold=0.5 is for one-channel scores.*3 channels"):
        fastseg.counts(LAB, RNG.random((*LAB.shape, N)), threshold=0.5)


def test_nan_in_thresholded_scores_is_reported():
    prob = PROB.copy()
    prob[0, 0, :3] = np.nan
    with pytest.raises(ValueError, match="NaN scores at 3 pixels"):
        fastseg.counts(BIN, prob[..., None], threshold=0.5)


def test_the_post_api_keeps_the_posts_one_class_rule():
    from fastseg.reference import metrics_np

    t = BIN[..., None].astype(np.float32)
    p = (PROB[..., None] - 0.5).astype(np.float32)  # logits: the post thresholds at > 0
    for name in ("iou", "dice"):
        assert fastseg.metrics(t, p, name, drop_last=False) == pytest.approx(
            metrics_np(t, p, name, drop_last=False), rel=1e-6
        )


# --------------------------------------------------------------------------------------
# Exact scores and option types
# --------------------------------------------------------------------------------------


def test_uint64_scores_above_2_53_are_compared_exactly(entry):
    scores = np.zeros((2, 4, 4, 2), np.uint64)
    scores[..., 0] = 2**60
    scores[..., 1] = 2**60 + 1  # equal as float64
    scores[1, :2, :, 0] = 2**64 - 1
    truth = np.ones((2, 4, 4), np.uint8)
    pred = scores.argmax(-1)
    assert pred.sum() == 24
    np.testing.assert_array_equal(entry(truth, scores, num_classes=2),
                                  bincount_confusion(truth, pred, 2))  # fmt: skip


def test_big_endian_uint64_scores():
    scores = RNG.integers(2**62, 2**62 + 4, (2, 5, 5, 3), dtype=np.uint64)
    c = fastseg.counts(LAB[:2, :5, :5], scores.astype(">u8"))
    np.testing.assert_array_equal(c.confusion, bincount_confusion(LAB[:2, :5, :5],
                                                                  scores.argmax(-1), 3))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"ignore_index": 255.7}, TypeError, r"ignore_index must be an integer.*255.7"),
        ({"class_axis": "1"}, TypeError, r"class_axis must be an integer"),
        ({"threshold": float("nan")}, ValueError, r"threshold must be finite"),
        ({"spatial_dims": 0}, ValueError, r"spatial_dims must be a positive integer"),
    ],
)
def test_accumulator_options_are_checked_when_it_is_made(kwargs, error, match):
    with pytest.raises(error, match=match):
        fastseg.Accumulator(N, **kwargs)


def test_an_impossible_class_count_is_a_message_about_classes():
    with pytest.raises(ValueError, match=r"num_classes=2147483648 needs a 2147483648 x "):
        fastseg.Accumulator(2**31)
    with pytest.raises(ValueError, match=r"num_classes=2147483648"):
        fastseg.counts(LAB, PRED, num_classes=2**31)


def test_class_axis_hint_when_the_class_count_is_on_another_axis():
    scores = RNG.random((2, N, 12, 10)).astype(np.float32)
    with pytest.raises(ValueError, match=r"class axis looks like axis 1: pass class_axis=1"):
        fastseg.counts(LAB[:2], scores, num_classes=N)


# --------------------------------------------------------------------------------------
# Soft metrics need probabilities
# --------------------------------------------------------------------------------------


class SoftEntry(Entry):
    def __call__(self, truth, pred, **kw):
        if self.name == "counts":
            return fastseg.counts(truth, pred, soft=True, **kw).tp
        if self.name == "accumulator":
            return fastseg.Accumulator(N, soft=True, **kw).update(truth, pred).counts.tp
        if self.name == "evaluate":
            return fastseg.evaluate(truth, pred, soft=True, progress=False, ignore_index=None,
                                    **kw).counts.tp  # fmt: skip
        root = self.tmp_path / "soft.zarr"
        g = zarr.open_group(root, mode="w")
        g.create_array("pred", data=np.asarray(pred))
        g.create_array("true", data=np.asarray(truth))
        code = main(["evaluate", "--true", str(root),
                     "--pred", str(root), "--soft", "--format", "json",
                     "--no-progress", *_cli_options(kw)])  # fmt: skip
        if code != 0:
            raise ValueError(self.capsys.readouterr().err)
        return None


@pytest.fixture(params=["counts", "accumulator", "evaluate", "cli"])
def soft_entry(request, tmp_path, capsys):
    return SoftEntry(request.param, tmp_path, capsys)


def test_soft_metrics_refuse_logits_with_their_count(soft_entry):
    logits = RNG.standard_normal((*LAB.shape, N)).astype(np.float32)
    outside = int(((logits < 0) | (logits > 1)).sum())
    with pytest.raises(ValueError, match=rf"{outside} soft scores outside \[0, 1\].*softmax"):
        soft_entry(LAB, logits)
    inf = RNG.random((*LAB.shape, N)).astype(np.float32)
    inf[0, 0, 0, 1] = np.inf
    with pytest.raises(ValueError, match=r"1 soft scores outside \[0, 1\] \(e.g. inf\)"):
        soft_entry(LAB, inf)


def test_soft_metrics_of_probabilities_equal_numpy(soft_entry):
    probs = RNG.random((*LAB.shape, N)).astype(np.float32)
    probs /= probs.sum(-1, keepdims=True)
    got = soft_entry(LAB, probs)
    if got is not None:
        expected = np.stack([(probs[b] * np.eye(N)[LAB[b]]).sum((0, 1)) for b in range(4)])
        np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_the_post_api_keeps_soft_sums_of_logits():
    from fastseg.reference import metrics_np

    logits = RNG.standard_normal((2, 6, 5, N)).astype(np.float32)
    truth = np.eye(N, dtype=np.float32)[LAB[:2, :6, :5]]
    got = fastseg.metrics(truth, logits, "iou", "soft", drop_last=False)
    assert got == pytest.approx(metrics_np(truth, logits, "iou", "soft", drop_last=False),
                                rel=1e-5)  # fmt: skip

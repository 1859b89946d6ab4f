"""Bad input: every refusal is an exception whose message names the problem."""

from __future__ import annotations

import re

import numpy as np
import pytest

import fastseg
from fastseg.inputs import prepare

RNG = np.random.default_rng(0)
SCORES = RNG.standard_normal((2, 5, 6, 3)).astype(np.float32)
LABELS = RNG.integers(0, 3, (2, 5, 6))


# --------------------------------------------------------------------------------------
# Shapes
# --------------------------------------------------------------------------------------


def test_same_ndim_different_shape():
    with pytest.raises(ValueError, match=r"different shapes: \(2, 5, 6, 3\) and \(2, 5, 7, 3\)"):
        fastseg.counts(SCORES, np.zeros((2, 5, 7, 3), np.float32))


def test_label_map_does_not_fit_the_scores():
    with pytest.raises(ValueError, match=r"do not fit.*\(2, 5, 6\)"):
        fastseg.counts(LABELS[:, :4], SCORES)
    # Predicted label map vs one-hot truth.
    with pytest.raises(ValueError, match="do not fit"):
        fastseg.counts(SCORES, LABELS[:, :, :5])


def test_ndim_differs_by_two():
    with pytest.raises(ValueError, match=r"shapes do not fit: \(2, 5\) and \(2, 5, 6, 3\)"):
        fastseg.counts(LABELS[:, :, 0], SCORES)


def test_two_dimensional_scores():
    # (B, N) scores with a (B,) truth: no spatial axis.
    with pytest.raises(ValueError, match=r"y_pred has shape \(4, 3\).*spatial axis"):
        fastseg.counts(np.array([0, 1, 2, 0]), np.zeros((4, 3), np.float32))


def test_one_dimensional_label_maps():
    with pytest.raises(ValueError, match=r"have shape \(5,\).*batch.*spatial_dims=1"):
        fastseg.counts(np.arange(5) % 2, np.arange(5) % 2, num_classes=2)
    # (B, P) label maps are 1-D data: counted only when asked.
    with pytest.raises(ValueError, match=r"spatial_dims=1"):
        fastseg.counts(LABELS[:, 0], LABELS[:, 0], num_classes=3)
    c = fastseg.counts(LABELS[:, 0], LABELS[:, 0], num_classes=3, spatial_dims=1)
    assert c.tp.sum() == LABELS[:, 0].size


def test_empty_arrays():
    with pytest.raises(ValueError, match=r"y_true is empty \(shape \(0, 5, 6\)\)"):
        fastseg.counts(LABELS[:0], SCORES[:0])
    with pytest.raises(ValueError, match=r"y_pred is empty"):
        fastseg.counts(LABELS, np.zeros((2, 5, 6, 0), np.float32))


# --------------------------------------------------------------------------------------
# Dtypes
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("array", "dtype_name"),
    [
        (np.array([[[object()]]], dtype=object), "object"),
        (np.array([[["a", "b"]]]), "<U1"),
        (np.array([[[b"a", b"b"]]]), "|S1"),
        (np.zeros((2, 5, 6, 3), np.complex64), "complex64"),
        (np.zeros((2, 5, 6, 3), "datetime64[s]"), "datetime64"),
    ],
    ids=["object", "unicode", "bytes", "complex", "datetime"],
)
def test_non_numeric_dtypes(array, dtype_name):
    with pytest.raises(TypeError, match=rf"y_pred has dtype {re.escape(dtype_name)}.*numeric"):
        fastseg.counts(SCORES, array)
    with pytest.raises(TypeError, match=rf"y_true has dtype {re.escape(dtype_name)}"):
        fastseg.counts(array, SCORES)


def test_float_truth_label_map():
    with pytest.raises(TypeError, match=r"y_true .*label map.*must hold integers; got float32"):
        fastseg.counts(LABELS.astype(np.float32), SCORES)


def test_float_predicted_label_map():
    with pytest.raises(TypeError, match=r"y_pred .*must hold integers; got float64"):
        fastseg.counts(SCORES, LABELS.astype(np.float64))


def test_both_label_maps_need_num_classes():
    with pytest.raises(ValueError, match="num_classes"):
        fastseg.counts(LABELS, LABELS)
    with pytest.raises(ValueError, match="num_classes"):
        fastseg.confusion_matrix(LABELS, LABELS)


def test_same_shape_integer_arrays_are_ambiguous():
    # (B, H, W, C) integers: label-map volumes or one-hot images; nothing says which.
    volumes = LABELS[..., None].repeat(4, axis=-1)
    with pytest.raises(ValueError, match=r"num_classes=N.*class_axis=K") as info:
        fastseg.counts(volumes, volumes)
    assert "same shape" in str(info.value)
    # (B, H, W) integers have no room for a class axis: label maps, which need N.
    with pytest.raises(ValueError, match=r"label maps: pass num_classes=N"):
        fastseg.counts(LABELS, LABELS)
    with pytest.raises(ValueError, match=r"class_axis=-1 was given.*no room for a class axis"):
        fastseg.counts(LABELS, LABELS, num_classes=3, class_axis=-1)


def test_same_shape_integer_one_hot_with_class_axis():
    one_hot = np.eye(3, dtype=np.int64)[LABELS]
    c = fastseg.counts(one_hot, one_hot, class_axis=-1)
    np.testing.assert_array_equal(c.confusion, np.diag(np.bincount(LABELS.ravel(), minlength=3)))


# --------------------------------------------------------------------------------------
# Keywords
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("class_axis", [4, 7, -5])
def test_class_axis_out_of_range(class_axis):
    with pytest.raises(ValueError, match=rf"class_axis={class_axis} is out of range.*4 dim"):
        fastseg.counts(LABELS, SCORES, class_axis=class_axis)


@pytest.mark.parametrize("class_axis", [0, -4])
def test_class_axis_zero_is_the_batch(class_axis):
    with pytest.raises(ValueError, match="class_axis=0 is the batch axis"):
        fastseg.counts(LABELS, SCORES, class_axis=class_axis)


def test_class_axis_with_label_map_shape_mismatch():
    # class_axis=1 makes the scores (B, N=5, W, C): the label map no longer fits.
    with pytest.raises(ValueError, match="do not fit"):
        fastseg.counts(LABELS, SCORES, class_axis=1)


def test_num_classes_disagrees_with_class_axis():
    with pytest.raises(ValueError, match=r"num_classes=4 but y_pred has 3 classes"):
        fastseg.counts(LABELS, SCORES, num_classes=4)
    with pytest.raises(ValueError, match=r"num_classes=2 but y_true has 3 classes"):
        fastseg.counts(SCORES, LABELS, num_classes=2)


@pytest.mark.parametrize(
    ("num_classes", "error"),
    [(0, ValueError), (-1, ValueError), (2.0, TypeError), (True, TypeError), ("3", TypeError)],
)
def test_num_classes_must_be_a_positive_integer(num_classes, error):
    with pytest.raises(error, match="num_classes must be a positive integer"):
        fastseg.counts(LABELS, LABELS, num_classes=num_classes)


@pytest.mark.parametrize("ignore_index", [255.0, "255", True, [255]])
def test_ignore_index_must_be_an_integer(ignore_index):
    with pytest.raises(TypeError, match=r"ignore_index must be an integer or None; got"):
        fastseg.counts(LABELS, SCORES, ignore_index=ignore_index)


def test_ignore_index_beyond_int64():
    # An ignore index no label can equal: either no pixel is ignored, or a ValueError /
    # TypeError naming ignore_index (not an OverflowError from the kernel's dispatcher).
    def count(ignore_index):
        try:
            return fastseg.counts(LABELS, SCORES, ignore_index=ignore_index), None
        except (TypeError, ValueError) as exc:
            return None, exc

    for ignore_index in (2**70, -(2**70)):
        c, exc = count(ignore_index)
        if exc is None:
            assert c == fastseg.counts(LABELS, SCORES)
        else:
            assert "ignore_index" in str(exc)


def test_soft_needs_score_predictions():
    with pytest.raises(ValueError, match="soft metrics need scores for y_pred, not a label map"):
        fastseg.counts(SCORES, LABELS, soft=True)
    with pytest.raises(ValueError, match="soft metrics need scores"):
        fastseg.counts(LABELS, LABELS, num_classes=3, soft=True)


# --------------------------------------------------------------------------------------
# Values found by the kernels
# --------------------------------------------------------------------------------------


def test_truth_labels_out_of_range():
    truth = LABELS.copy()
    truth[0, 0, :3] = 7
    truth[1, 2, 2] = 7
    with pytest.raises(ValueError, match=r"y_true has 4 labels outside \[0, 3\).*\(e\.g\. 7\)"):
        fastseg.counts(truth, SCORES)
    # The message suggests ignore_index when none was given ...
    with pytest.raises(ValueError, match="pass ignore_index"):
        fastseg.counts(truth, SCORES)
    # ... and says the labels are not the ignore index when one was.
    with pytest.raises(ValueError, match=r"4 labels outside \[0, 3\) that are not the ignore"):
        fastseg.counts(truth, SCORES, ignore_index=255)
    # No error with the right ignore index.
    assert fastseg.counts(truth, SCORES, ignore_index=7).ignored == 4


def test_negative_truth_labels():
    truth = LABELS.copy()
    truth[1, 4, 5] = -1
    with pytest.raises(ValueError, match=r"y_true has 1 labels outside \[0, 3\).*\(e\.g\. -1\)"):
        fastseg.counts(truth, SCORES)


def test_example_value_is_one_of_the_bad_labels():
    truth = LABELS.copy()
    truth[0, 0, 0] = 3
    truth[1, 1, 1] = 9
    with pytest.raises(ValueError, match=r"2 labels outside \[0, 3\)") as info:
        fastseg.counts(truth, SCORES)
    example = int(re.search(r"e\.g\. (-?\d+)", str(info.value)).group(1))
    assert example in (3, 9)


def test_uint64_labels_at_or_above_2_63_are_out_of_range():
    truth = LABELS.astype(np.uint64)
    truth[0, 0, 0] = 2**63
    truth[0, 0, 1] = 2**64 - 1
    with pytest.raises(ValueError, match=r"y_true has 2 labels outside \[0, 3\)"):
        fastseg.counts(truth, SCORES)


def test_uint64_example_value_is_the_label_itself():
    # The example value must be one found in y_true, not its int64 reinterpretation.
    truth = LABELS.astype(np.uint64)
    truth[0, 0, 0] = 2**63
    with pytest.raises(
        ValueError, match=r"1 labels outside \[0, 3\).*\(e\.g\. 9223372036854775808\)"
    ):
        fastseg.counts(truth, SCORES)


def test_uint8_labels_255_without_ignore_index():
    truth = LABELS.astype(np.uint8)
    truth[0, 1, 1] = 255
    with pytest.raises(ValueError, match=r"1 labels outside \[0, 3\).*\(e\.g\. 255\)"):
        fastseg.counts(truth, SCORES)


def test_predicted_labels_out_of_range():
    pred = LABELS.copy()
    pred[0, 0, 0] = 5
    pred[1, 0, 0] = 5
    with pytest.raises(ValueError, match=r"y_pred has 2 labels outside \[0, 3\) \(e\.g\. 5\)"):
        fastseg.counts(LABELS, pred, num_classes=3)


def test_truth_and_prediction_problems_are_both_reported():
    truth = LABELS.copy()
    truth[0, 0, 0] = 8
    scores = SCORES.copy()
    scores[1, 1, 1, 0] = np.nan
    with pytest.raises(ValueError, match=r"y_true has 1 labels.*; y_pred has NaN scores at 1 "):
        fastseg.counts(truth, scores)


@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("class_axis", [None, 1])
def test_nan_predictions(dtype, class_axis):
    scores = SCORES.astype(dtype)
    scores[0, 0, 0, 1] = np.nan
    scores[0, 3, 2, :] = np.nan  # several NaN classes: still one pixel
    scores[1, 4, 5, 2] = np.nan
    if class_axis == 1:
        scores = np.ascontiguousarray(np.moveaxis(scores, -1, 1))
    with pytest.raises(ValueError, match=r"y_pred has NaN scores at 3 pixels"):
        fastseg.counts(LABELS, scores, class_axis=class_axis)


def test_nan_in_one_hot_truth():
    truth = np.eye(3, dtype=np.float32)[LABELS]
    truth[0, 1, 1, 0] = np.nan
    truth[1, 1, 1, 2] = np.nan
    with pytest.raises(ValueError, match=r"y_true has NaN scores at 2 pixels"):
        fastseg.counts(truth, SCORES)


def test_nan_in_soft_predictions_counts_pixels():
    scores = SCORES.copy()
    scores[0, 3, 2, :] = np.nan  # one pixel, three NaN classes
    with pytest.raises(ValueError, match=r"y_pred has NaN scores at 1 pixels"):
        fastseg.counts(LABELS, scores, soft=True)


def test_nan_in_soft_one_hot_truth_counts_pixels():
    truth = np.eye(3, dtype=np.float32)[LABELS]
    truth[1, 0, 0, :] = np.nan  # one pixel, three NaN classes
    with pytest.raises(ValueError, match=r"y_true has NaN scores at 1 pixels"):
        fastseg.counts(truth, SCORES, soft=True)


def test_errors_leave_nothing_behind():
    # An error is raised, not a partial result; the next call is unaffected.
    truth = LABELS.copy()
    truth[0, 0, 0] = 5
    with pytest.raises(ValueError, match="labels outside"):
        fastseg.counts(truth, SCORES)
    assert fastseg.counts(LABELS, SCORES).confusion.sum() == LABELS.size


# --------------------------------------------------------------------------------------
# Array-likes
# --------------------------------------------------------------------------------------


class FakeDevice:
    def __init__(self, type_):
        self.type = type_

    def __str__(self):
        return f"{self.type}:0"


class FakeTensor:
    """Enough of a torch tensor: a `device` and ``__array__``."""

    __module__ = "torch"

    def __init__(self, array, device):
        self._array = array
        self.device = device

    def __array__(self, dtype=None, copy=None):
        return self._array if dtype is None else self._array.astype(dtype)


class FakeJaxDevice:
    """A JAX device: ``platform``, and a name that is not "cpu"."""

    def __init__(self, platform):
        self.platform = platform

    def __str__(self):
        return "TFRT_CPU_0" if self.platform == "cpu" else f"{self.platform}:0"


class FakeJaxArray(FakeTensor):
    __module__ = "jaxlib.xla_extension"


def test_jax_arrays_on_the_cpu_are_read_and_others_named_with_the_call_to_make():
    expected = fastseg.counts(LABELS, SCORES)
    assert fastseg.counts(LABELS, FakeJaxArray(SCORES, FakeJaxDevice("cpu"))) == expected
    with pytest.raises(TypeError, match=r"y_pred is on device gpu:0; .*jax\.device_get\(array\)"):
        fastseg.counts(LABELS, FakeJaxArray(SCORES, FakeJaxDevice("gpu")))


@pytest.mark.parametrize("device", [FakeDevice("cuda"), FakeDevice("mps"), "cuda:1"])
def test_gpu_tensor_is_refused(device):
    with pytest.raises(TypeError, match=r"y_pred is on device .*\.cpu\(\)"):
        fastseg.counts(LABELS, FakeTensor(SCORES, device))
    with pytest.raises(TypeError, match=r"y_true is on device .*\.cpu\(\)"):
        fastseg.counts(FakeTensor(LABELS, device), SCORES)


def test_cpu_tensor_is_accepted():
    c = fastseg.counts(FakeTensor(LABELS, FakeDevice("cpu")), FakeTensor(SCORES, "cpu"))
    assert c == fastseg.counts(LABELS, SCORES)


def test_nested_lists_are_accepted():
    c = fastseg.counts([[[0, 1, 1]]], [[[[0.9, 0.1], [0.2, 0.8], [0.7, 0.3]]]])
    np.testing.assert_array_equal(c.confusion, [[1, 0], [1, 1]])


def test_prepare_kinds():
    p = prepare(LABELS, SCORES)
    assert (p.pred_kind, p.true_kind, p.num_classes) == ("scores", "labels", 3)
    p = prepare(SCORES, LABELS)
    assert (p.pred_kind, p.true_kind) == ("labels", "scores")
    p = prepare(LABELS, LABELS, num_classes=4)
    assert (p.pred_kind, p.true_kind, p.num_classes) == ("labels", "labels", 4)
    p = prepare(SCORES, SCORES, ignore_index=np.uint8(255))
    assert (p.pred_kind, p.true_kind, p.ignore_index) == ("scores", "scores", 255)
    assert type(p.ignore_index) is int

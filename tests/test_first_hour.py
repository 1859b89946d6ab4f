"""The first hour with fastseg (issue 13): errors that suggest the fix, and typed options.

The messages are asserted by substring (``re.escape``): each names what was found and
the option that fixes it, and says so when the two inputs look swapped. Accepted inputs
are checked against ``np.bincount`` of the labels.
"""

from __future__ import annotations

import inspect
import re
import typing

import numpy as np
import pytest

import fastseg
from fastseg import render
from fastseg.formulas import (
    METRICS,
    POST_METRIC_TYPES,
    PRESENCES,
    SUMMARIES,
    Metric,
    PostMetricType,
    Presence,
    Summary,
)
from fastseg.policy import AGGREGATIONS, PRESET_NAMES, PRESETS, Aggregation, EmptyValue, Preset
from fastseg.report import JsonLayout

RNG = np.random.default_rng(13)
N = 4
TRUTH = RNG.integers(0, N, (3, 6, 7))
PRED = np.where(RNG.random(TRUTH.shape) < 0.6, TRUTH, RNG.integers(0, N, TRUTH.shape))
#: Channels-first scores whose argmax is PRED.
SCORES_FIRST = np.moveaxis(np.eye(N, dtype=np.float32)[PRED] + 0.1, -1, 1).copy()


def bincount_confusion(truth, pred, n=N):
    t = np.asarray(truth).ravel().astype(np.int64)
    p = np.asarray(pred).ravel().astype(np.int64)
    return np.bincount(t * n + p, minlength=n * n).reshape(n, n)


def message(call, error=ValueError):
    with pytest.raises(error) as info:
        call()
    return str(info.value)


def has(text, *parts):
    for part in parts:
        assert re.search(re.escape(part), text), f"{part!r} not in {text!r}"


# --------------------------------------------------------------------------------------
# 1. The class axis: errors name the axis that holds the classes
# --------------------------------------------------------------------------------------


def test_num_classes_mismatch_names_the_one_axis_that_has_n():
    one_hot_first = np.moveaxis(np.eye(N, dtype=np.float32)[TRUTH], -1, 1).copy()
    got = message(lambda: fastseg.confusion_matrix(one_hot_first, SCORES_FIRST, num_classes=N))
    has(got, "num_classes=4 but y_pred has 7 classes along class_axis=-1; its axis 1 has 4: "
             "pass class_axis=1 (channels-first)")  # fmt: skip
    # ... and the fix it names works.
    fixed = fastseg.confusion_matrix(one_hot_first, SCORES_FIRST, num_classes=N, class_axis=1)
    np.testing.assert_array_equal(fixed, bincount_confusion(TRUTH, PRED))


def test_num_classes_mismatch_guesses_nothing_when_several_or_no_axes_fit():
    square = RNG.random((2, N, N, 7)).astype(np.float32)  # axes 1 and 2 both have N
    got = message(lambda: fastseg.counts(square, square, num_classes=N))
    has(got, "num_classes=4 but y_pred has 7 classes along class_axis=-1; its axes 1 and 2 "
             "all have 4: pass class_axis= the one that holds the classes")  # fmt: skip
    assert "pass class_axis=1" not in got
    assert "pass class_axis=2" not in got
    none = RNG.random((2, 5, 6, 7)).astype(np.float32)
    got = message(lambda: fastseg.counts(none, none, num_classes=N))
    has(got, "num_classes=4 but y_pred has 7 classes along class_axis=-1; no other axis of its "
             "shape (2, 5, 6, 7) has 4: is num_classes right?")  # fmt: skip


def test_channels_first_scores_beside_a_label_map_name_class_axis_1():
    # Without num_classes: the shapes alone show where the class axis is.
    got = message(lambda: fastseg.confusion_matrix(TRUTH, SCORES_FIRST))
    has(got, "shapes do not fit: (3, 6, 7) and (3, 4, 6, 7)",
        "its class axis looks like axis 1: pass class_axis=1 (channels-first)")  # fmt: skip
    # With num_classes whose axis would not make the shapes fit: what was found, no guess.
    wide = RNG.random((3, N, 6, 9)).astype(np.float32)
    got = message(lambda: fastseg.confusion_matrix(TRUTH, wide, num_classes=N))
    has(got, "y_pred's axis 1 has num_classes=4 entries, but without it the shape (3, 6, 9) "
             "is not the label map's either")  # fmt: skip
    assert "pass class_axis" not in got
    # The shapes fit without axis 1, but that axis does not have num_classes entries.
    got = message(lambda: fastseg.confusion_matrix(TRUTH, SCORES_FIRST, num_classes=5))
    has(got, "it would fit without axis 1, but that axis has 4 entries, not num_classes=5")
    assert "pass class_axis" not in got


# --------------------------------------------------------------------------------------
# 2. Label maps with a channel axis of one: (B, 1, H, W)
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.int64])
def test_one_channel_truth_beside_channels_first_scores(dtype):
    truth = TRUTH[:, None].astype(dtype)  # what a PyTorch data loader gives
    expected = bincount_confusion(TRUTH, PRED)
    cm = fastseg.confusion_matrix(truth, SCORES_FIRST, class_axis=1)
    np.testing.assert_array_equal(cm, expected)
    c = fastseg.counts(truth, SCORES_FIRST, class_axis=1, num_classes=N)
    np.testing.assert_array_equal(c.confusion, expected)
    for b in range(TRUTH.shape[0]):
        np.testing.assert_array_equal(c.tp[b], np.diag(bincount_confusion(TRUTH[b], PRED[b])))
    acc = fastseg.Accumulator(N, class_axis=1)
    acc.update(truth[:2], SCORES_FIRST[:2]).update(truth[2:], SCORES_FIRST[2:])
    np.testing.assert_array_equal(acc.counts.confusion, expected)
    assert acc.n_images == 3


def test_one_channel_inputs_beside_channels_last_scores_and_label_maps():
    scores_last = np.moveaxis(SCORES_FIRST, 1, -1)
    expected = bincount_confusion(TRUTH, PRED)
    # Channels-last, class axis by default; a bool mask is two classes.
    cm = fastseg.confusion_matrix(TRUTH[..., None], scores_last)
    np.testing.assert_array_equal(cm, expected)
    bool_truth = TRUTH > 1
    two = SCORES_FIRST[:, :2]
    cm = fastseg.confusion_matrix(bool_truth[:, None], two, class_axis=1)
    np.testing.assert_array_equal(cm, bincount_confusion(bool_truth, two.argmax(1), 2))
    # Beside a label map (B, H, W), on either side.
    cm = fastseg.confusion_matrix(TRUTH[:, None], PRED, class_axis=1, num_classes=N)
    np.testing.assert_array_equal(cm, expected)
    acc = fastseg.Accumulator(N, class_axis=1).update(TRUTH, PRED[:, None].astype(np.int32))
    np.testing.assert_array_equal(acc.counts.confusion, expected)
    # A strided view of a channels-last batch, read in place.
    strided = np.moveaxis(TRUTH[..., None].copy(), -1, 1)[:, :, ::2]
    cm = fastseg.confusion_matrix(strided, SCORES_FIRST[:, :, ::2], class_axis=1)
    np.testing.assert_array_equal(cm, bincount_confusion(TRUTH[:, ::2], PRED[:, ::2]))
    # With threshold, one channel is still a score thresholded into two classes.
    binary = (TRUTH > 1).astype(np.uint8)
    cm = fastseg.confusion_matrix(TRUTH[:, None], binary, class_axis=1, threshold=1.5)
    np.testing.assert_array_equal(cm, bincount_confusion(TRUTH > 1.5, binary, 2))


def test_one_channel_inputs_that_stay_ambiguous_are_refused_with_the_fix():
    float_truth = TRUTH[:, None].astype(np.float32)
    got = message(lambda: fastseg.counts(float_truth, SCORES_FIRST, class_axis=1))
    has(got, "y_true has one channel along class_axis=1 beside y_pred's 4, but holds "
             "float32: a label map with a channel axis of 1 must hold integers",
        "cast it (e.g. y_true.astype(np.int64), tensor.long())")  # fmt: skip
    with pytest.raises(ValueError, match="holds float32"):
        fastseg.Accumulator(N, class_axis=1).update(float_truth, SCORES_FIRST)
    # Both one channel: binary masks or two label maps? Refused, naming both fixes.
    both = lambda: fastseg.counts(TRUTH[:, None], PRED[:, None], class_axis=1, num_classes=N)  # noqa: E731
    has(message(both), "pass threshold=t",
        "for two such label maps, drop the axis from both (np.squeeze(y, 1), "
        "tensor.squeeze(1)) and pass num_classes=N")  # fmt: skip
    # Two label maps, one with a channel axis, and no num_classes.
    got = message(lambda: fastseg.counts(TRUTH, PRED[:, None], class_axis=1))
    has(got, "both inputs are label maps (y_pred without its channel axis of 1): pass "
             "num_classes=N")  # fmt: skip


def test_one_channel_truth_without_class_axis_names_it():
    got = message(lambda: fastseg.confusion_matrix(TRUTH[:, None], SCORES_FIRST))
    has(got, "different shapes: (3, 1, 6, 7) and (3, 4, 6, 7); y_true has one channel on axis 1 "
             "where y_pred has 4: pass class_axis=1 (channels-first) to read y_true as a label "
             "map without that axis")  # fmt: skip


# --------------------------------------------------------------------------------------
# 3. Inputs that look swapped
# --------------------------------------------------------------------------------------

SWAPPED = "y_true holds scores and y_pred a label map: the two look swapped; pass (y_true, y_pred)"


def test_scores_as_truth_beside_a_label_map_look_swapped():
    scores = np.moveaxis(SCORES_FIRST, 1, -1)
    got = message(lambda: fastseg.counts(scores, TRUTH, soft=True))
    has(got, "soft metrics need scores for y_pred, not a label map; " + SWAPPED)
    got = message(lambda: fastseg.Accumulator(N, soft=True).update(scores, TRUTH))
    has(got, SWAPPED)
    got = message(lambda: fastseg.counts(scores, TRUTH, label_map={k: k for k in range(N)}))
    has(got, "its classes are already indices; " + SWAPPED)
    # The truth's ignore label (255) in the "prediction": blamed on y_pred before.
    truth = TRUTH.astype(np.uint8)
    truth[0, 0, :3] = 255
    got = message(lambda: fastseg.counts(scores, truth, ignore_index=255))
    has(got, "y_pred has 3 labels outside [0, 4) (e.g. 255); " + SWAPPED)
    # In the right order, nothing is said about swapping.
    got = message(lambda: fastseg.counts(truth, scores))
    has(got, "y_true has 3 labels outside [0, 4) that are not the ignore index (e.g. 255)")
    assert "swapped" not in got


def test_a_predicted_ignore_label_the_truth_lacks_looks_swapped():
    truth = TRUTH.astype(np.uint8)
    truth[1, 2, :4] = 255  # the real truth, with its ignore label
    # Swapped: the "prediction" holds the ignore label, the "truth" none.
    got = message(lambda: fastseg.counts(PRED, truth, num_classes=N, ignore_index=255))
    has(got, "y_pred has 4 labels outside [0, 4) (e.g. 255); each is the ignore index 255, "
             "which y_true never holds: the two look swapped")  # fmt: skip
    got = message(lambda: fastseg.Accumulator(N, ignore_index=255).update(PRED, truth))
    has(got, "look swapped")
    # A genuine bad prediction does not get the hint ...
    bad = PRED.copy()
    bad[0, 0, 0] = 7
    got = message(lambda: fastseg.counts(TRUTH, bad, num_classes=N, ignore_index=255))
    has(got, "y_pred has 1 labels outside [0, 4) (e.g. 7)")
    assert "swapped" not in got
    # ... nor one holding the ignore label beside other bad values ...
    mixed = truth.copy()
    mixed[0, 0, 0] = 9
    got = message(lambda: fastseg.counts(PRED, mixed, num_classes=N, ignore_index=255))
    assert "swapped" not in got
    # ... nor a prediction of the ignore label beside a truth that holds it too.
    pred = TRUTH.astype(np.uint8)
    pred[0, 0, :2] = 255
    got = message(lambda: fastseg.counts(truth, pred, num_classes=N, ignore_index=255))
    has(got, "y_pred has 2 labels outside [0, 4) (e.g. 255)")
    assert "swapped" not in got


# --------------------------------------------------------------------------------------
# 4. A wrong keyword lists the accepted ones
# --------------------------------------------------------------------------------------


def test_accumulator_compute_lists_its_keywords_and_where_reading_options_go():
    acc = fastseg.Accumulator(N).update(TRUTH, PRED)
    got = message(lambda: acc.compute(ignore_index=255), TypeError)
    has(got, "Accumulator.compute() got an unexpected keyword argument 'ignore_index'. It "
             "takes: preset, aggregation, empty, presence, exclude, smooth, meta, groups, "
             "instance_sizes. ignore_index is a reading option: pass it to the Accumulator "
             "(Accumulator(..., ignore_index=...)), which reads every batch update() gets "
             "with it")  # fmt: skip
    for name in ("num_classes", "class_axis", "threshold", "label_map"):
        has(message(lambda name=name: acc.compute(**{name: 1}), TypeError),
            f"{name} is a reading option")  # fmt: skip
    has(message(lambda: acc.compute(soft=True), TypeError), "soft is the Accumulator's")
    got = message(lambda: acc.compute("dataset", "image"), TypeError)
    has(got, "positional argument", "It takes: preset, aggregation")
    # The signature stays visible; errors raised inside compute are left as they are.
    params = inspect.signature(fastseg.Accumulator.compute).parameters
    assert list(params) == ["self", "preset", "aggregation", "empty", "presence", "exclude",
                            "smooth", "meta", "groups", "instance_sizes"]  # fmt: skip
    got = message(lambda: acc.compute(meta=[1]), TypeError)
    assert got == "meta must be a mapping; got list"
    assert acc.compute(exclude=[0]).miou == pytest.approx(np.nanmean(acc.compute().iou[1:]))


def test_report_methods_list_their_keywords():
    report = fastseg.Accumulator(N).update(TRUTH, PRED).compute()
    got = message(lambda: report.worst(3, metric="dice"), TypeError)
    has(got, "Report.worst() got an unexpected keyword argument 'metric'. It takes: k, by. "
             "metric is by= here (worst(k, by='dice'))")  # fmt: skip
    got = message(lambda: report.confidence_interval(alpha=0.05), TypeError)
    has(got, "It takes: metric, level, n_boot, seed. alpha is level= here")
    got = message(lambda: report.to_json("r.json", format="cityscapes"), TypeError)
    has(got, "It takes: path, layout. format is layout= here")
    assert list(inspect.signature(fastseg.Report.bootstrap).parameters) == [
        "self", "metric", "n_boot", "seed"]  # fmt: skip


# --------------------------------------------------------------------------------------
# 5. The post API's signatures are spelled out
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("function", "name"), [(fastseg.mean_iou, "iou"),
                                                (fastseg.mean_dice, "dice")])  # fmt: skip
def test_mean_iou_and_mean_dice_list_every_option_of_metrics(function, name):
    signature = inspect.signature(function)
    assert all(p.kind is not p.VAR_KEYWORD for p in signature.parameters.values())
    full = inspect.signature(fastseg.metrics).parameters
    expected = [p for p in full.values() if p.name != "metric_name"]
    assert [(p.name, p.kind, p.default) for p in signature.parameters.values()] == [
        (p.name, p.kind, p.default) for p in expected]  # fmt: skip
    has(function.__doc__, "drop_last : bool, default True", "Leave the last class out of the",
        "treats the last class as the background")  # fmt: skip
    scores = np.moveaxis(SCORES_FIRST, 1, -1)
    one_hot = np.eye(N, dtype=np.float32)[TRUTH]
    for args, kwargs in [((), {}), (("naive", False), {}), (("standard", True, True), {}),
                         ((), {"metric_type": "soft", "drop_last": False}),
                         ((), {"class_axis": 1, "ignore_index": 3}),
                         ((), {"num_classes": N})]:  # fmt: skip
        truth, pred = (one_hot, scores)
        if kwargs.get("class_axis") == 1:
            truth, pred = TRUTH, SCORES_FIRST
        if "num_classes" in kwargs:
            truth, pred = TRUTH, PRED
        got = function(truth, pred, *args, **kwargs)
        np.testing.assert_array_equal(got, fastseg.metrics(truth, pred, name, *args, **kwargs))


# --------------------------------------------------------------------------------------
# 6. Option strings are Literal types that match the values checked at run time
# --------------------------------------------------------------------------------------


def test_literal_aliases_match_the_runtime_choices():
    assert typing.get_args(Aggregation) == AGGREGATIONS
    assert typing.get_args(Presence) == PRESENCES
    assert typing.get_args(Metric) == METRICS
    assert typing.get_args(PostMetricType) == POST_METRIC_TYPES
    assert typing.get_args(Summary) == SUMMARIES
    assert typing.get_args(Preset) == PRESET_NAMES == tuple(PRESETS)
    assert typing.get_args(JsonLayout) == render.JSON_LAYOUTS


def test_public_signatures_use_the_aliases():
    hints = typing.get_type_hints(fastseg.metrics)
    assert (hints["metric_name"], hints["metric_type"]) == (Metric, PostMetricType)
    for function in (fastseg.mean_iou, fastseg.mean_dice):
        assert typing.get_type_hints(function)["metric_type"] == PostMetricType
    hints = typing.get_type_hints(fastseg.Accumulator.compute)
    assert hints["return"] is fastseg.Report
    assert hints["aggregation"] == Aggregation | None
    assert hints["empty"] == EmptyValue | None
    assert hints["presence"] == Presence | None
    assert typing.get_type_hints(fastseg.Report.bootstrap)["metric"] == Summary
    assert typing.get_type_hints(fastseg.Report.confidence_interval)["metric"] == Summary
    assert typing.get_type_hints(fastseg.Report.to_json)["layout"] == JsonLayout

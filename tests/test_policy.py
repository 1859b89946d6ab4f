"""Policies: validation, class exclusion, and the formulas on small hand-worked rows."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from fastseg.policy import (
    LAST,
    PRESET_SOURCES,
    PRESETS,
    Policy,
    image_class_means,
    image_mean,
    nanmean,
    present,
    ratio,
    resolve_exclusions,
    resolve_policy,
    row_values,
    totals_summary,
)

nan = math.nan

# One row, four classes:             c0  c1  c2  c3
TP = np.array([[3, 0, 0, 0]])  #      3   0   0   0
PRED = np.array([[4, 2, 0, 0]])  #    4   2   0   0   (c1 predicted only)
TRUE = np.array([[5, 0, 1, 0]])  #    5   0   1   0   (c2 missed, c3 absent)
# union = pred + true - tp            6   2   1   0


def approx(values):
    return pytest.approx(values, rel=1e-12, nan_ok=True)


def test_default_policy_is_the_dataset_convention():
    p = Policy()
    assert (p.aggregation, p.presence, p.exclude, p.smooth) == ("dataset", "truth_or_pred", (), 0)
    assert math.isnan(p.empty)
    assert resolve_policy(None) == PRESETS["dataset"] == p


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("aggregation", "images", "aggregation must be one of"),
        ("presence", "pred", "presence must be one of"),
        ("empty", 0.5, "empty must be 'nan', 0 or 1"),
        ("empty", "zero", "empty must be 'nan', 0 or 1"),
        ("empty", True, "empty must be 'nan', 0 or 1"),
        ("exclude", ("",), "exclude takes class indices, class names, 'background' or 'last'"),
        ("exclude", (1.0,), "exclude takes class indices, class names, 'background' or 'last'"),
        ("smooth", -1.0, "smooth must be a number >= 0"),
    ],
)
def test_bad_policy_fields_raise(field, value, message):
    with pytest.raises(ValueError, match=message):
        Policy(**{field: value})


def test_empty_accepts_nan_spellings_and_zero_one():
    assert math.isnan(Policy(empty="NaN").empty)
    assert math.isnan(Policy(empty=float("nan")).empty)
    assert Policy(empty=0).empty == 0.0
    assert Policy(empty=1.0).empty == 1.0


def test_resolve_policy_overrides_only_given_fields():
    p = resolve_policy("monai", exclude=[0], empty=None)
    assert p == Policy(aggregation="sample", presence="truth", exclude=(0,))
    with pytest.raises(ValueError, match="unknown preset 'mmsegmentation'; choose one of"):
        resolve_policy("mmsegmentation")


def test_every_preset_has_a_source():
    assert set(PRESETS) == set(PRESET_SOURCES)


def test_kept_resolves_negative_indices_and_last():
    assert Policy(exclude=(0,)).kept(4).tolist() == [False, True, True, True]
    assert Policy(exclude=(-1, 1)).kept(4).tolist() == [True, False, True, False]
    assert Policy(exclude=(LAST,)).kept(3).tolist() == [True, True, False]
    # The post drops the last class only when there is more than one.
    assert Policy(exclude=(LAST,)).kept(1).tolist() == [True]
    with pytest.raises(ValueError, match="exclude: class 4 is out of range for 4 classes"):
        Policy(exclude=(4,)).kept(4)
    with pytest.raises(ValueError, match="exclude: class -5 is out of range"):
        Policy(exclude=(-5,)).kept(4)


NAMES = ("sky", "road", "car", "tree", "void")


def test_exclude_takes_class_names_background_and_last():
    p = Policy(exclude=("road", LAST, "background", -2))
    assert p.resolved(5, NAMES).exclude == (1, LAST, 0, -2)
    assert p.kept(5, NAMES).tolist() == [False, False, True, False, False]
    assert resolve_exclusions(["background"], 3) == (0,)  # no names needed for the words
    # a class's own name wins over the word
    assert resolve_exclusions(["background", "last"], 3, ["a", "background", "last"]) == (1, 2)
    # resolving keeps the preset's 'last' as it is (what to_dict shows)
    assert resolve_policy("post_standard").resolved(5, NAMES).exclude == (LAST,)


@pytest.mark.parametrize(
    ("exclude", "names", "message"),
    [
        (["raod"], NAMES, "exclude: unknown class name 'raod'; known names: sky, road, car, tree, "
                          "void (or an index, 'background', 'last')"),
        (["road"], None, "exclude: 'road' is not a class index, 'background' or 'last', and "
                         "there are no class names"),
        ([5], NAMES, "exclude: class 5 is out of range for 5 classes (indices -5 to 4)"),
        (["car"], ("car", "car", "x", "y", "z"), "classes [0, 1] are all named 'car'"),
        ([0], ("a", "b"), "class_names has 2 entries for 5 classes"),
    ],
)
def test_bad_exclusions_name_the_problem(exclude, names, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        Policy(exclude=tuple(exclude)).resolved(5, names)


def test_to_dict_and_describe():
    p = Policy(exclude=(0, LAST), empty=1)
    assert p.to_dict() == {
        "aggregation": "dataset", "empty": 1.0, "presence": "truth_or_pred",
        "exclude": [0, "last"], "smooth": 0.0}  # fmt: skip
    assert Policy().to_dict()["empty"] == "nan"
    assert p.describe() == (
        "aggregation=dataset, empty=1, presence=truth_or_pred, exclude=0,last, smooth=0"
    )


def test_ratio_and_nanmean_give_nan_without_warning():
    assert ratio(np.array([1.0, 0.0]), np.array([2.0, 0.0])).tolist()[0] == 0.5
    assert math.isnan(ratio(np.array([1.0, 0.0]), np.array([2.0, 0.0]))[1])
    values = np.array([[1.0, nan, 3.0], [nan, nan, nan]])
    assert nanmean(values, axis=1) == approx([2.0, nan])
    assert nanmean(values, axis=0) == approx([1.0, nan, 3.0])


def test_presence_rules():
    assert present(TP, PRED, TRUE, "truth_or_pred").tolist() == [[True, True, True, False]]
    assert present(TP, PRED, TRUE, "truth").tolist() == [[True, False, True, False]]
    assert present(TP, PRED, TRUE, "all").tolist() == [[True, True, True, True]]


def test_row_values_default():
    # iou = tp / union = 3/6, 0/2, 0/1, (absent) nan; dice = 2 tp / (pred + true) = 6/9, 0, 0
    assert row_values("iou", TP, PRED, TRUE, Policy())[0] == approx([1 / 2, 0, 0, nan])
    assert row_values("dice", TP, PRED, TRUE, Policy())[0] == approx([2 / 3, 0, 0, nan])


@pytest.mark.parametrize("empty", [0, 1])
def test_row_values_empty_value(empty):
    assert row_values("iou", TP, PRED, TRUE, Policy(empty=empty))[0] == approx([1 / 2, 0, 0, empty])


def test_row_values_truth_presence_drops_false_positive_only_classes():
    # c1 has prediction but no truth: not present, so it takes the empty value.
    assert row_values("iou", TP, PRED, TRUE, Policy(presence="truth"))[0] == approx(
        [1 / 2, nan, 0, nan]
    )
    assert row_values("dice", TP, PRED, TRUE, Policy(presence="truth", empty=1))[0] == approx(
        [2 / 3, 1, 0, 1]
    )


def test_row_values_smoothed_like_the_post():
    s = 0.001
    policy = Policy(presence="all", smooth=s)
    # iou = (tp + s) / (union + s); the absent class scores s / s = 1
    assert row_values("iou", TP, PRED, TRUE, policy)[0] == approx(
        [(3 + s) / (6 + s), s / (2 + s), s / (1 + s), 1.0]
    )
    # dice = 2 (tp + s) / (pred + true + s); the absent class scores 2 s / s = 2
    assert row_values("dice", TP, PRED, TRUE, policy)[0] == approx(
        [2 * (3 + s) / (9 + s), 2 * s / (2 + s), 2 * s / (1 + s), 2.0]
    )


def test_row_values_all_present_without_smoothing_is_nan_for_empty_union():
    assert math.isnan(row_values("iou", TP, PRED, TRUE, Policy(presence="all"))[0, 3])


def test_row_values_rejects_unknown_metric():
    with pytest.raises(ValueError, match="metric must be one of"):
        row_values("f1", TP, PRED, TRUE, Policy())


def test_totals_summary_by_hand():
    kept = np.ones(4, bool)
    s = totals_summary(TP, PRED, TRUE, Policy(), kept)
    assert s["miou"] == approx([(1 / 2 + 0 + 0) / 3])  # c3 NaN, left out
    assert s["mdice"] == approx([(2 / 3 + 0 + 0) / 3])
    assert s["aacc"] == approx([3 / 6])  # sum tp / sum true
    assert s["macc"] == approx([(3 / 5 + 0) / 2])  # recall 3/5, nan (c1), 0/1, nan (c3)
    # fwIoU = (5 * 1/2 + 0 * 0 + 1 * 0) / (5 + 0 + 1)
    assert s["fwiou"] == approx([5 / 2 / 6])


def test_totals_summary_excluding_classes():
    kept = np.array([False, True, True, True])
    s = totals_summary(TP, PRED, TRUE, Policy(), kept)
    assert s["miou"] == approx([0.0])  # c1 0, c2 0, c3 nan
    assert s["aacc"] == approx([3 / 6])  # pixel accuracy counts every class
    assert s["macc"] == approx([0.0])  # only c2 has truth: 0/1
    assert s["fwiou"] == approx([0.0])  # only c2 weighs


def test_totals_summary_is_vectorised_over_rows():
    tp = np.vstack([TP, 2 * TP])
    pred = np.vstack([PRED, 2 * PRED])
    true = np.vstack([TRUE, 2 * TRUE])
    s = totals_summary(tp, pred, true, Policy(), np.ones(4, bool))
    for values in s.values():
        assert values.shape == (2,)
        assert values[0] == approx(values[1])  # doubling every count changes no ratio


def test_totals_summary_of_nothing_is_nan():
    zeros = np.zeros((1, 3))
    s = totals_summary(zeros, zeros, zeros, Policy(), np.ones(3, bool))
    assert all(math.isnan(v[0]) for v in s.values())


def test_weighted_image_means():
    values = np.array([[1.0, nan], [0.5, 0.25], [0.0, nan]])
    # plain means: class 0 (1 + 0.5 + 0) / 3, class 1 0.25 / 1
    assert image_class_means(values, np.ones((1, 3)))[0] == approx([0.5, 0.25])
    # image 1 twice, image 2 not at all: class 0 (1 + 2 * 0.5) / 3, class 1 2 * 0.25 / 2
    assert image_class_means(values, np.array([[1.0, 2.0, 0.0]]))[0] == approx([2 / 3, 0.25])
    scores = np.array([0.2, nan, 0.6])
    assert image_mean(scores, np.array([[1.0, 5.0, 3.0], [0.0, 1.0, 0.0]])) == approx([0.5, nan])

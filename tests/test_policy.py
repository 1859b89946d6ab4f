"""Policies: validation, class exclusion, presets (their formulas: tests/test_formulas.py)."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from fastseg.formulas import metric_values
from fastseg.policy import (
    LAST,
    PRESET_SOURCES,
    PRESETS,
    Policy,
    resolve_exclusions,
    resolve_policy,
)


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


def test_value_rules_are_the_formulas_keywords():
    p = Policy(presence="truth", empty=0, smooth=0.5, aggregation="image", exclude=(0,))
    assert p.value_rules() == {"smooth": 0.5, "presence": "truth", "empty": 0.0}
    assert math.isnan(Policy().value_rules()["empty"])
    tp, pred, true = np.array([[1, 0]]), np.array([[2, 3]]), np.array([[1, 0]])
    # class 1 has no truth: not present under 'truth', so it takes empty = 0
    assert metric_values("iou", tp, pred, true, **p.value_rules()).tolist() == [
        [(1 + 0.5) / (2 + 0.5), 0.0]
    ]

"""Data-set metric policies: the choices peers disagree on, and the presets that name them.

A :class:`Policy` holds four orthogonal choices (how to aggregate, the value of a class that
is not present, what "present" means, which classes the means leave out) plus the post's
smoothing; :data:`PRESETS` names the policies that reproduce the post and the peers, and
:func:`resolve_policy` / :meth:`Policy.resolved` turn a preset, overrides and class names
into a checked policy. The formulas that apply a policy to counts are in
:mod:`fastseg.formulas`, which takes the policy's fields as plain arguments.
:func:`explain_keywords` makes the methods that take these options answer a keyword they
do not take with the list of those they do.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, cast, get_args

import numpy as np

from fastseg.formulas import POST_SMOOTH, PRESENCES, Presence, ValueRules

#: How counts become per-class values: summed first, or per image (see :class:`Policy`).
Aggregation = Literal["dataset", "image", "sample"]
#: What ``empty`` accepts: NaN (or the string ``"nan"``, any case), 0 or 1.
EmptyValue = float | Literal["nan"]

AGGREGATIONS: tuple[Aggregation, ...] = get_args(Aggregation)
#: In ``exclude``: the last class, when there is more than one (the post's ``drop_last``).
LAST = "last"
#: In ``exclude``: class 0, the usual background (unless a class has this name).
BACKGROUND = "background"


@dataclass(frozen=True)
class Policy:
    """How data-set IoU and Dice are computed from counts.

    Attributes
    ----------
    aggregation : {'dataset', 'image', 'sample'}
        ``'dataset'``: counts summed over the images, then one value per class.
        ``'image'``: one value per image and class, each class averaged over the images,
        then the classes averaged (the post's order). ``'sample'``: one value per image and
        class, each image averaged over the classes, then the images averaged (MONAI's
        ``reduction='mean'``, scikit-learn's ``average='samples'``).
    empty : float
        Value of a class that is not present in a row: NaN (left out of every mean), 0.0
        or 1.0 (both enter the means).
    presence : {'truth_or_pred', 'truth', 'all'}
        A class is present in a row when its union is not empty (``'truth_or_pred'``),
        when it has truth pixels (``'truth'``), or always (``'all'``: the post's naive
        mean, where an empty class scores its smoothed value).
    exclude : tuple of int or str
        Classes left out of the class means (they keep their per-class values): indices
        (negative from the end), class names (resolved against the class names by
        :meth:`resolved`), ``'background'`` (class 0, unless a class has that name) and
        ``'last'`` (the last class when there are more than one: the post's
        ``drop_last``).
    smooth : float
        Pixels added to numerator and denominator (the post: 0.001; peers: 0).

    Notes
    -----
    Per row ``r`` and class ``c``, with ``s = smooth``, ``I = tp``, ``S = pred + true``
    and ``U = S - I``::

        iou[r, c]  = (I + s) / (U + s)
        dice[r, c] = 2 (I + s) / (S + s)

    replaced by ``empty`` where ``c`` is not present in ``r``; ``0 / 0`` is NaN. NaN values
    are left out of every mean, and a mean over nothing is NaN. With ``K`` the classes not
    excluded and ``mean`` over the non-NaN values::

        dataset: v[c] = value of the summed counts;     mIoU = mean_{c in K} v[c]
        image:   v[c] = mean_b iou[b, c];               mIoU = mean_{c in K} v[c]
        sample:  v[c] = mean_b iou[b, c];               mIoU = mean_b mean_{c in K} iou[b, c]

    Precision, recall and the accuracies do not depend on the policy (except ``exclude``
    for mAcc and fwIoU): see :func:`fastseg.formulas.totals_summary`. The formulas take
    ``smooth``, ``presence`` and ``empty`` as plain arguments (:meth:`value_rules`).
    """

    aggregation: Aggregation = "dataset"
    empty: float = math.nan
    presence: Presence = "truth_or_pred"
    exclude: tuple[int | str, ...] = ()
    smooth: float = 0.0

    def __post_init__(self) -> None:
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {AGGREGATIONS}; got {self.aggregation!r}")
        if self.presence not in PRESENCES:
            raise ValueError(f"presence must be one of {PRESENCES}; got {self.presence!r}")
        object.__setattr__(self, "empty", _empty_value(self.empty))
        object.__setattr__(self, "exclude", _exclusions(self.exclude))
        if not (isinstance(self.smooth, int | float) and self.smooth >= 0):
            raise ValueError(f"smooth must be a number >= 0; got {self.smooth!r}")
        object.__setattr__(self, "smooth", float(self.smooth))

    def with_overrides(self, **overrides: Any) -> Policy:
        """A copy with the fields given (not None) replaced."""
        return dataclasses.replace(self, **{k: v for k, v in overrides.items() if v is not None})

    def resolved(self, num_classes: int, class_names: Sequence[str] | None = None) -> Policy:
        """A copy whose ``exclude`` holds only indices and ``'last'``, checked for N classes.

        Class names and ``'background'`` become indices; an index out of range or an
        unknown name raises a ValueError (listing the known names).
        """
        return dataclasses.replace(
            self, exclude=resolve_exclusions(self.exclude, num_classes, class_names)
        )

    def kept(self, num_classes: int, class_names: Sequence[str] | None = None) -> np.ndarray:
        """Boolean mask of the classes that enter the class means."""
        kept = np.ones(num_classes, bool)
        for item in resolve_exclusions(self.exclude, num_classes, class_names):
            if item == LAST:
                if num_classes > 1:
                    kept[-1] = False
                continue
            kept[item] = False
        return kept

    def value_rules(self) -> ValueRules:
        """The fields the formulas take as keywords: ``smooth``, ``presence``, ``empty``.

        For :func:`fastseg.formulas.metric_values` and
        :func:`~fastseg.formulas.totals_summary`: ``metric_values("iou", tp, pred, true,
        **policy.value_rules())``.
        """
        return {"smooth": self.smooth, "presence": self.presence, "empty": self.empty}

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (``empty`` as ``"nan"``, 0.0 or 1.0)."""
        return {
            "aggregation": self.aggregation,
            "empty": "nan" if math.isnan(self.empty) else self.empty,
            "presence": self.presence,
            "exclude": list(self.exclude),
            "smooth": self.smooth,
        }

    def describe(self) -> str:
        """One line: ``aggregation=dataset, empty=nan, ...``."""
        exclude = ",".join(map(str, self.exclude)) or "none"
        return (
            f"aggregation={self.aggregation}, empty={self.empty:g}, presence={self.presence}, "
            f"exclude={exclude}, smooth={self.smooth:g}"
        )


def _empty_value(value: Any) -> float:
    if isinstance(value, str) and value.lower() == "nan":
        return math.nan
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if number and (math.isnan(value) or value in (0, 1)):
        return float(value)
    raise ValueError(f"empty must be 'nan', 0 or 1; got {value!r}")


def _exclusions(items: Sequence[int | str]) -> tuple[int | str, ...]:
    if isinstance(items, str | int):
        items = (items,)
    out: list[int | str] = []
    for item in items:
        if isinstance(item, str) and item:
            out.append(item)
        elif isinstance(item, int | np.integer) and not isinstance(item, bool):
            out.append(int(item))
        else:
            raise ValueError(
                f"exclude takes class indices, class names, {BACKGROUND!r} or {LAST!r}; "
                f"got {item!r}"
            )
    return tuple(out)


def resolve_exclusions(
    exclude: Sequence[int | str], num_classes: int, class_names: Sequence[str] | None = None
) -> tuple[int | str, ...]:
    """`exclude` with class names and ``'background'`` as indices, checked against N.

    A class name wins over the words ``'background'`` (class 0) and ``'last'`` (kept as
    is: the last class when N > 1). Indices keep their sign.

    Raises
    ------
    ValueError
        An index out of range, a name that is no class's (the message lists the known
        names), a name two classes share, or `class_names` not of length N.
    """
    names = None if class_names is None else [str(x) for x in class_names]
    if names is not None and len(names) != num_classes:
        raise ValueError(f"class_names has {len(names)} entries for {num_classes} classes")
    out: list[int | str] = []
    for item in _exclusions(exclude):
        if isinstance(item, int):
            if not -num_classes <= item < num_classes:
                raise ValueError(
                    f"exclude: class {item} is out of range for {num_classes} classes "
                    f"(indices {-num_classes} to {num_classes - 1})"
                )
            out.append(item)
        elif names is not None and item in names:
            if names.count(item) > 1:
                where = [i for i, x in enumerate(names) if x == item]
                raise ValueError(f"exclude: classes {where} are all named {item!r}; use an index")
            out.append(names.index(item))
        elif item == LAST:
            out.append(LAST)
        elif item == BACKGROUND:
            out.append(0)
        elif names is None:
            raise ValueError(
                f"exclude: {item!r} is not a class index, {BACKGROUND!r} or {LAST!r}, and "
                "there are no class names to look it up in"
            )
        else:
            raise ValueError(
                f"exclude: unknown class name {item!r}; known names: {', '.join(names)} "
                f"(or an index, {BACKGROUND!r}, {LAST!r})"
            )
    return tuple(out)


def resolve_groups(
    groups: Mapping[str, Sequence[int | str]] | None,
    num_classes: int,
    class_names: Sequence[str] | None = None,
) -> dict[str, tuple[int, ...]]:
    """Class groups as ``{name: class indices}``, class names resolved, checked against N.

    Each group is a non-empty list of class indices (negative from the end) or class
    names; groups may overlap (nnU-Net's regions). Members come back sorted, once each.

    Raises
    ------
    TypeError, ValueError
        `groups` not a mapping of names to lists, an empty group, an index out of range,
        or a name that is no class's (listing the known names).
    """
    if groups is None:
        return {}
    if not isinstance(groups, Mapping):
        raise TypeError(
            f"groups must be a mapping {{name: [classes]}}; got {type(groups).__name__}"
        )
    names = None if class_names is None else [str(x) for x in class_names]
    out: dict[str, tuple[int, ...]] = {}
    for name, members in groups.items():
        if not isinstance(name, str) or not name:
            raise TypeError(f"groups: a group name must be a non-empty string; got {name!r}")
        if isinstance(members, str | int | np.integer) or not isinstance(members, Sequence):
            raise TypeError(f"groups: {name!r} must be a list of classes; got {members!r}")
        if not members:
            raise ValueError(f"groups: {name!r} has no class")
        indices = set()
        for item in members:
            if isinstance(item, int | np.integer) and not isinstance(item, bool):
                if not -num_classes <= item < num_classes:
                    raise ValueError(
                        f"groups: {name!r} has class {item}, out of range for {num_classes} "
                        "classes"
                    )
                indices.add(int(item) % num_classes)
            elif isinstance(item, str) and names is not None and item in names:
                if names.count(item) > 1:
                    raise ValueError(f"groups: {name!r}: several classes are named {item!r}")
                indices.add(names.index(item))
            elif isinstance(item, str):
                known = f"; known names: {', '.join(names)}" if names else (
                    "; there are no class names: use indices")  # fmt: skip
                raise ValueError(f"groups: {name!r} has unknown class {item!r}{known}")
            else:
                raise TypeError(f"groups: {name!r} has {item!r}, not a class index or name")
        out[name] = tuple(sorted(indices))
    return out


#: The names of the :data:`PRESETS`.
Preset = Literal[
    "dataset", "post_standard", "post_naive", "mmseg", "cityscapes", "torchmetrics", "monai"
]
PRESET_NAMES: tuple[Preset, ...] = get_args(Preset)

#: The conventions fastseg reproduces, by name (``None`` is ``"dataset"``).
PRESETS: dict[str, Policy] = {
    "dataset": Policy(),
    "post_standard": Policy(aggregation="image", exclude=(LAST,), smooth=POST_SMOOTH),
    "post_naive": Policy(aggregation="image", presence="all", exclude=(LAST,), smooth=POST_SMOOTH),
    "mmseg": Policy(),
    "cityscapes": Policy(),
    "torchmetrics": Policy(),
    "monai": Policy(aggregation="sample", presence="truth"),
}

#: What each preset reproduces (shown in the README and in reports).
PRESET_SOURCES: dict[str, str] = {
    "dataset": "fastseg's default: summed counts, empty class left out",
    "post_standard": "the post's metrics_np(metric_type='standard', drop_last=True)",
    "post_naive": "the post's metrics_np(metric_type='naive', drop_last=True)",
    "mmseg": "mmsegmentation IoUMetric (nan_to_num=None)",
    "cityscapes": "Cityscapes evalPixelLevelSemanticLabeling, class IoU average",
    "torchmetrics": "torchmetrics MulticlassJaccardIndex(average='macro')",
    "monai": "MONAI DiceMetric(include_background=True, ignore_empty=True, reduction='mean')",
}


def resolve_policy(preset: str | None = None, **overrides: Any) -> Policy:
    """The policy of `preset` (None: ``"dataset"``) with the keyword fields not None replaced."""
    name = "dataset" if preset is None else preset
    if name not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name].with_overrides(**overrides)


_F = TypeVar("_F", bound=Callable[..., Any])


def explain_keywords(hints: Mapping[str, str] | None = None) -> Callable[[_F], _F]:
    """Decorator: a call that does not fit the signature lists the parameters it takes.

    For the methods that take policy options (:meth:`fastseg.Accumulator.compute`, the
    :class:`~fastseg.report.Report` methods), where a misplaced keyword is a common
    mistake. The function is called as is; only when that raises a TypeError and the
    arguments do not bind to its signature (an unknown keyword, too many positional
    arguments: the function never ran) is it re-raised with Python's message, the
    parameters the function takes and, for each unknown keyword in `hints`, the sentence
    given there (where that keyword belongs). The wrapper keeps the function's signature
    for ``inspect.signature``, ``help`` and editors (``functools.wraps``).

    Parameters
    ----------
    hints : mapping of str to str, optional
        Keyword -> sentence added when a call passes that keyword.
    """
    notes = dict(hints or {})

    def decorate(func: _F) -> _F:
        signature = inspect.signature(func)
        params = list(signature.parameters.values())
        if params and params[0].name in ("self", "cls"):
            params = params[1:]
        takes = ", ".join(p.name for p in params)

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return func(*args, **kwargs)
            except TypeError as exc:
                try:
                    signature.bind(*args, **kwargs)
                except TypeError:
                    unknown = [k for k in kwargs if k not in signature.parameters]
                    extra = "".join(f". {notes[k]}" for k in unknown if k in notes)
                    raise TypeError(f"{exc}. It takes: {takes}{extra}") from None
                raise

        return cast(_F, wrapper)

    return decorate

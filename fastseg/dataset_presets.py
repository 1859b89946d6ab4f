"""Data-set presets: class names, label-id maps, ignore index, class groups, file pairing.

A :class:`DatasetPreset` holds, as plain values, what a data set's own evaluation assumes:
the evaluated classes and their names, the map from stored ids to class indices, the
ignore index, class groups (Cityscapes' categories, nnU-Net's regions), the file-name
suffixes that pair prediction and truth files, and the metric convention
(:data:`fastseg.policy.PRESETS`). :func:`fastseg.evaluate` (``dataset=``) and the command
(``--dataset``) take them as defaults that any option given explicitly overrides
(:meth:`DatasetPreset.fill`).

Built in: ``cityscapes``, ``ade20k``, ``voc`` (:data:`BUILT_IN`). A JSON file describes a
user's own data set (:func:`read_dataset_file`, schema in its docstring), and nnU-Net's
``dataset.json`` is read as such a file. The data sets' own tables (labels, class names)
are in :mod:`fastseg.label_tables`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fastseg.instances import resolve_instance_sizes
from fastseg.label_tables import (
    ADE20K_CLASSES,
    CITYSCAPES_CATEGORIES,
    CITYSCAPES_INSTANCE_SIZES,
    CITYSCAPES_LABELS,
    VOC_CLASSES,
)
from fastseg.labelmaps import LabelMap, as_label_map
from fastseg.policy import resolve_groups
from fastseg.stream import Accumulator

#: Keys of a fastseg data-set file (:func:`read_dataset_file`).
FILE_KEYS = ("name", "class_names", "ignore_index", "label_map", "label_map_pred",
             "reduce_zero_label", "groups", "pred_suffix", "true_suffix", "preset",
             "instance_suffix", "instance_sizes")  # fmt: skip


@dataclass(frozen=True, eq=False)
class DatasetPreset:
    """What a data set's evaluation assumes, as plain values.

    Attributes
    ----------
    name : str
    class_names : tuple of str
        The evaluated classes, by class index (so N = ``len(class_names)``).
    ignore_index : int or None
        Truth id whose pixels are skipped (after the label map: ids it leaves unmapped
        become this too).
    label_map : LabelMap or None
        Stored truth id -> class index (None: the ids are the class indices).
    label_map_pred : LabelMap, True or None
        The same for label-map predictions; True: predictions are stored in the truth's
        ids (applied to label-map predictions only).
    reduce_zero_label : bool
        mmsegmentation's ``reduce_zero_label`` as the truth's map.
    groups : dict of str to tuple of int
        Class groups (by class index), scored from the confusion matrix.
    pred_suffix, true_suffix : str or None
        File-name endings removed to pair prediction and truth files by name.
    preset : str or None
        The metric convention (a key of :data:`fastseg.policy.PRESETS`).
    source : str
        ``"built-in"`` or the file it was read from.
    instance_suffix : str or None
        Name ending of the instance-id files beside the truth (Cityscapes'
        ``_gtFine_instanceIds.png``), for iIoU (:mod:`fastseg.instances`).
    instance_sizes : dict of str to float
        Average instance size in pixels of each class with instances (iIoU's weights).
    """

    name: str
    class_names: tuple[str, ...]
    ignore_index: int | None = None
    label_map: LabelMap | None = None
    label_map_pred: LabelMap | bool | None = None
    reduce_zero_label: bool = False
    groups: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    pred_suffix: str | None = None
    true_suffix: str | None = None
    preset: str | None = None
    source: str = "built-in"
    instance_suffix: str | None = None
    instance_sizes: Mapping[str, float] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        """N, the number of evaluated classes."""
        return len(self.class_names)

    def options(self) -> dict[str, Any]:
        """The preset as keyword arguments of :func:`fastseg.evaluate`.

        ``num_classes``, ``class_names``, ``ignore_index``, ``label_map``,
        ``label_map_pred``, ``reduce_zero_label``, ``groups``, ``preset``,
        ``pred_suffix``, ``true_suffix``, ``instance_suffix``, ``instance_sizes`` (None
        when the preset has none).
        """
        return {
            "num_classes": self.num_classes,
            "class_names": list(self.class_names),
            "ignore_index": self.ignore_index,
            "label_map": self.label_map,
            "label_map_pred": self.label_map_pred,
            "reduce_zero_label": self.reduce_zero_label,
            "groups": {k: list(v) for k, v in self.groups.items()},
            "preset": self.preset,
            "pred_suffix": self.pred_suffix,
            "true_suffix": self.true_suffix,
            "instance_suffix": self.instance_suffix,
            "instance_sizes": dict(self.instance_sizes) or None,
        }

    def fill(
        self, unset: Mapping[str, Any] | None = None, *, files: bool = True, **given: Any
    ) -> dict[str, Any]:
        """`given` options with the preset's values where they were left unset.

        An option is unset when it equals its entry in `unset` (e.g. ``{"ignore_index":
        "store"}``, :func:`fastseg.evaluate`'s default, where None means "no ignore
        index"), else when it is None. A
        ``label_map`` or ``reduce_zero_label`` given replaces the preset's truth map
        (both). Without `files` (the inputs are arrays or stores, not files to pair) the
        pairing suffixes are left as given. Only the keys in `given` are returned, in
        their order.
        """
        unset = dict(unset or {})
        mine = self.options()

        def is_unset(key: str) -> bool:
            value = given[key]
            return _same(value, unset[key]) if key in unset else value is None

        out = dict(given)
        own_map = any(k in given and not is_unset(k) and given[k] is not False
                      for k in ("label_map", "reduce_zero_label"))  # fmt: skip
        for key in given:
            if key not in mine or not is_unset(key):
                continue
            if key in ("label_map", "reduce_zero_label") and own_map:
                continue
            if key == "ignore_index" and mine[key] is None:
                continue  # the preset has none: leave it to the default (e.g. the store)
            if key in ("pred_suffix", "true_suffix", "instance_suffix") and not files:
                continue
            out[key] = mine[key]
        return out

    def accumulator(self, **options: Any) -> Any:
        """An :class:`~fastseg.stream.Accumulator` with this preset's values.

        `options` (``per_image``, ``soft``, ``class_axis``, ...) are passed on and may
        override the preset's.
        """
        settings = self.options()
        for key in ("preset", "pred_suffix", "true_suffix", "instance_suffix", "instance_sizes"):
            settings.pop(key)
        settings.update(options)
        return Accumulator(settings.pop("num_classes"), **settings)

    def __repr__(self) -> str:
        return (
            f"DatasetPreset({self.name!r}: {self.num_classes} classes, ignore_index="
            f"{self.ignore_index}, label_map={'yes' if self.label_map is not None else 'no'}, "
            f"reduce_zero_label={self.reduce_zero_label}, {len(self.groups)} groups, "
            f"source={self.source!r})"
        )


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except (TypeError, ValueError):
        return False


def _cityscapes() -> DatasetPreset:
    evaluated = [label for label in CITYSCAPES_LABELS if label.train_id != 255]
    evaluated.sort(key=lambda label: label.train_id)
    groups = {}
    for category in CITYSCAPES_CATEGORIES:
        members = tuple(label.train_id for label in evaluated if label.category == category)
        if members:
            groups[category] = members
    ids = [label.id for label in evaluated]
    return DatasetPreset(
        name="cityscapes",
        class_names=tuple(label.name for label in evaluated),
        ignore_index=255,
        label_map=LabelMap(
            np.array(ids),
            np.array([label.train_id for label in evaluated]),
            "cityscapes labelIds -> trainIds",
        ),
        label_map_pred=True,
        groups=groups,
        pred_suffix="_leftImg8bit.png",
        true_suffix="_gtFine_labelIds.png",
        preset="cityscapes",
        instance_suffix="_gtFine_instanceIds.png",
        instance_sizes=dict(CITYSCAPES_INSTANCE_SIZES),
    )


def _ade20k() -> DatasetPreset:
    return DatasetPreset(
        name="ade20k",
        class_names=ADE20K_CLASSES,
        ignore_index=255,
        reduce_zero_label=True,
        pred_suffix=".png",
        true_suffix=".png",
        preset="mmseg",
    )


def _voc() -> DatasetPreset:
    return DatasetPreset(
        name="voc",
        class_names=VOC_CLASSES,
        ignore_index=255,  # the boundary and "difficult" pixels of the truth
        pred_suffix=".png",
        true_suffix=".png",
        preset="mmseg",
    )


#: The built-in presets, by name.
BUILT_IN = {"cityscapes": _cityscapes, "ade20k": _ade20k, "voc": _voc}


def dataset_preset(name: str | os.PathLike[str] | DatasetPreset) -> DatasetPreset:
    """The preset of a built-in name (:data:`BUILT_IN`) or of a JSON file.

    Raises
    ------
    ValueError
        An unknown name that is not a readable file (listing the names), or a file that is
        not a valid data-set description.
    """
    if isinstance(name, DatasetPreset):
        return name
    if isinstance(name, str) and name.lower() in BUILT_IN:
        return BUILT_IN[name.lower()]()
    path = Path(os.fspath(name)).expanduser()
    if path.suffix.lower() != ".json" and not path.is_file():
        raise ValueError(
            f"unknown dataset {os.fspath(name)!r}: choose one of {', '.join(BUILT_IN)}, or "
            f"give a data-set JSON file (fastseg's schema or nnU-Net's dataset.json)"
        )
    return read_dataset_file(path)


def read_dataset_file(path: str | os.PathLike[str]) -> DatasetPreset:
    """A data set described by a JSON file: fastseg's schema, or nnU-Net's ``dataset.json``.

    fastseg's schema (only ``class_names`` is required; unknown keys are refused)::

        {
          "name": "my-data",
          "class_names": ["background", "road", "car"],
          "ignore_index": 255,
          "label_map": {"0": 0, "7": 1, "26": 2},     (or a list, or a CSV/JSON file name
                                                       relative to this file)
          "label_map_pred": "same",                   ("same", "none", or a map)
          "reduce_zero_label": false,
          "groups": {"vehicle": ["car"], "all": [1, 2]},   (class names or indices)
          "pred_suffix": "_pred.png", "true_suffix": "_gt.png",
          "preset": "mmseg",
          "instance_suffix": "_instances.png",        (iIoU's instance-id files beside
          "instance_sizes": {"car": 12794.0}           the truth, and average instance
        }                                              sizes in pixels)

    nnU-Net's ``dataset.json`` (recognised by its ``labels`` object, name -> id):
    ``labels`` gives the classes (ids 0 to N - 1; other ids are mapped to them in order,
    truth and predictions alike), a label named ``ignore`` is the ignore index, and when
    some label maps to a list of ids the data set is region-based: every label but the
    background becomes a class group (a region: whole tumor = [1, 2, 3], ...) and the
    classes are the ids; ``file_ending`` is both pairing suffix (nnU-Net pairs identical
    names).

    Raises
    ------
    ValueError
        Naming the file and the problem.
    """
    shown = os.fspath(path)
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8-sig"))
    except OSError as exc:
        raise ValueError(f"dataset file {shown}: cannot be read ({exc.strerror or exc})") from exc
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"dataset file {shown}: not JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise ValueError(f"dataset file {shown}: a JSON {type(data).__name__}, not an object")
    try:
        if "labels" in data and "class_names" not in data:
            return _nnunet(data, shown)
        return _fastseg_file(data, shown, Path(path).parent)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"dataset file {shown}: {exc}") from exc


def _fastseg_file(data: dict[str, Any], shown: str, folder: Path) -> DatasetPreset:
    unknown = sorted(set(data) - set(FILE_KEYS))
    if unknown:
        raise ValueError(f"unknown keys {unknown}; the keys are {', '.join(FILE_KEYS)}")
    names = data.get("class_names")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise ValueError("class_names must be a non-empty list of strings")
    ignore = data.get("ignore_index")
    if ignore is not None and (isinstance(ignore, bool) or not isinstance(ignore, int)):
        raise ValueError(f"ignore_index must be an integer or null; got {ignore!r}")

    def a_map(value: Any, key: str) -> LabelMap | None:
        if isinstance(value, str):
            value = folder / value
        return as_label_map(value, key)

    pred_map: LabelMap | bool | None
    raw_pred = data.get("label_map_pred")
    if raw_pred is None or raw_pred is False or raw_pred == "none":
        pred_map = None
    elif raw_pred is True or raw_pred == "same":
        pred_map = True
    else:
        pred_map = a_map(raw_pred, "label_map_pred")
    reduce = data.get("reduce_zero_label", False)
    if not isinstance(reduce, bool):
        raise ValueError(f"reduce_zero_label must be true or false; got {reduce!r}")
    groups = _file_groups(data.get("groups") or {}, names)
    sizes = data.get("instance_sizes") or {}
    if not isinstance(sizes, dict):
        raise ValueError(f"instance_sizes must be an object {{class: pixels}}; got {sizes!r}")
    resolve_instance_sizes(sizes, len(names), names)  # checked now
    suffixes = {}
    for key in ("pred_suffix", "true_suffix", "preset", "name", "instance_suffix"):
        value = data.get(key)
        if value is not None and not isinstance(value, str):
            raise ValueError(f"{key} must be a string; got {value!r}")
        suffixes[key] = value
    return DatasetPreset(
        name=suffixes["name"] or Path(shown).stem,
        class_names=tuple(names),
        ignore_index=ignore,
        label_map=a_map(data.get("label_map"), "label_map"),
        label_map_pred=pred_map,
        reduce_zero_label=reduce,
        groups=groups,
        pred_suffix=suffixes["pred_suffix"],
        true_suffix=suffixes["true_suffix"],
        preset=suffixes["preset"],
        source=shown,
        instance_suffix=suffixes["instance_suffix"],
        instance_sizes=sizes,
    )


def _file_groups(groups: Any, names: Sequence[str]) -> dict[str, tuple[int, ...]]:
    if not isinstance(groups, dict):
        raise ValueError(f"groups must be an object {{name: [classes]}}; got {groups!r}")
    return resolve_groups(groups, len(names), names)


def _nnunet(data: dict[str, Any], shown: str) -> DatasetPreset:
    labels = data["labels"]
    if not isinstance(labels, dict) or not labels:
        raise ValueError("'labels' must be a non-empty object {name: id or [ids]}")
    ignore = None
    entries: dict[str, list[int]] = {}
    regions = False
    for name, value in labels.items():
        if isinstance(value, list):
            regions = True
            ids = value
        else:
            ids = [value]
        if not ids or not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0
                              for i in ids):  # fmt: skip
            raise ValueError(f"label {name!r}: {value!r} is not an id >= 0 or a list of them")
        if name == "ignore":
            if len(ids) != 1:
                raise ValueError(f"the ignore label must be one id; got {value!r}")
            ignore = ids[0]
            continue
        entries[name] = [int(i) for i in ids]
    stored = sorted({i for ids in entries.values() for i in ids} | {0})
    index = {stored_id: k for k, stored_id in enumerate(stored)}
    named = {ids[0]: name for name, ids in entries.items() if len(ids) == 1}
    if not regions and len(named) != len(entries):
        raise ValueError("two labels share an id")
    class_names = tuple(named.get(i, str(i)) for i in stored)
    groups: dict[str, tuple[int, ...]] = {}
    if regions:
        groups = {name: tuple(index[i] for i in ids) for name, ids in entries.items()
                  if ids != [0]}  # fmt: skip
    label_map = None
    if stored != list(range(len(stored))):
        label_map = LabelMap(np.array(stored), np.arange(len(stored)), "dataset.json labels")
    ending = data.get("file_ending")
    if ending is not None and not isinstance(ending, str):
        raise ValueError(f"file_ending must be a string; got {ending!r}")
    return DatasetPreset(
        name=str(data.get("name") or Path(shown).parent.name or "nnunet"),
        class_names=class_names,
        ignore_index=ignore,
        label_map=label_map,
        label_map_pred=None if label_map is None else True,
        groups=groups,
        pred_suffix=ending,
        true_suffix=ending,
        source=shown,
    )


def read_class_names(path: str | os.PathLike[str]) -> list[str]:
    """Class names from a file: a JSON list of strings, or one name per line.

    Lines are stripped of surrounding white space; blank lines are skipped.

    Raises
    ------
    ValueError
        Naming the file: unreadable, empty, or a JSON value that is not a list of strings.
    """
    shown = os.fspath(path)
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ValueError(f"class names {shown}: cannot be read ({exc.strerror or exc})") from exc
    except UnicodeDecodeError as exc:
        raise ValueError(f"class names {shown}: not a text file ({exc.reason})") from exc
    if text.lstrip().startswith("["):
        try:
            names = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"class names {shown}: not JSON ({exc})") from exc
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ValueError(f"class names {shown}: the JSON must be a list of strings")
    else:
        names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names:
        raise ValueError(f"class names {shown}: no name in the file")
    return names

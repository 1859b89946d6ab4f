"""A Report's outputs: the text table, the dict / JSON / CSV forms, and the plot.

Every function takes a :class:`~fastseg.report.Report` (imported here only for types) and
reads its public values; the Report's ``__str__``, ``class_rows``, ``to_dict``,
``per_case``, ``cityscapes``, ``to_json``, ``to_csv`` and ``plot`` delegate here. Files
are written atomically (:func:`fastseg._files.write_atomically`).

JSON layouts (:data:`JSON_LAYOUTS`): fastseg's own report (:func:`to_dict`, strict JSON),
nnU-Net's per-case ``summary.json`` (:func:`per_case_dict`) and the official Cityscapes
evaluator's result file (:func:`cityscapes_dict`); the last two keep NaN as ``NaN``, as
those tools write it.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fastseg._files import write_atomically
from fastseg._version import __version__
from fastseg.formulas import Summary, case_counts, group_values, nanmean, ratio
from fastseg.instances import group_instance_values
from fastseg.label_tables import CITYSCAPES_CATEGORIES, CITYSCAPES_LABELS
from fastseg.policy import PRESET_SOURCES

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.colors import Normalize
    from matplotlib.figure import Figure

    from fastseg.report import Report

#: Version of the dict / JSON layout written by :func:`to_dict`.
FORMAT_VERSION = 1
#: Summary names, in display order, with their labels.
SUMMARY_LABELS: dict[Summary, str] = {
    "miou": "mIoU", "mdice": "mDice", "aacc": "aAcc", "macc": "mAcc", "fwiou": "fwIoU"}  # fmt: skip
#: Per-class columns of the table, the CSV and the dict.
COLUMNS = ("iou", "dice", "precision", "recall", "support", "predicted")
#: Columns of the CSV (:func:`csv_rows`).
CSV_FIELDS = ("index", "name", "excluded", *COLUMNS, "kind", "classes", "value")
#: The JSON layouts of :func:`write_json`.
JSON_LAYOUTS = ("report", "per-case", "cityscapes")
#: Group means, in display order, with their labels.
GROUP_SUMMARY_LABELS = {"miou": "mIoU", "mdice": "mDice", "mprecision": "mPrecision",
                        "mrecall": "mRecall"}  # fmt: skip
#: Labels of the extras' columns and summaries in the text table (a Hausdorff column, hd95
#: or another percentile, is labelled by :func:`extra_label`).
EXTRA_LABELS = {"boundary_iou": "BIoU", "surface_dice": "NSD", "mboundary_iou": "mBIoU",
                "msurface_dice": "mNSD", "ece": "ECE", "mce": "MCE"}  # fmt: skip
#: The summaries of each kind of extra beyond the means of its columns.
EXTRA_SUMMARIES = {"calibration": ("ece", "mce")}
#: nnU-Net's per-case metrics, in its order.
CASE_METRICS = ("Dice", "IoU", "FP", "TP", "FN", "TN", "n_pred", "n_ref")


# ------------------------------------------------------------------ dict, JSON, CSV


def class_rows(report: Report) -> list[dict[str, Any]]:
    """One dict per class: index, name, excluded, :data:`COLUMNS`, then the others.

    ``iiou`` and the extras' columns (``Report.extra_columns``) when the report has them.
    """
    columns = {name: getattr(report, name) for name in COLUMNS}
    if report.instances is not None:
        columns["iiou"] = report.instances.iiou
    columns.update(report.extra_columns)
    number = float if report.counts.soft else int
    rows = []
    for c, name in enumerate(report.class_names):
        row: dict[str, Any] = {"index": c, "name": name, "excluded": not report.kept[c]}
        for col, values in columns.items():
            value = values[c]
            row[col] = number(value) if col in ("support", "predicted") else float(value)
        rows.append(row)
    return rows


def instances_dict(report: Report) -> dict[str, Any] | None:
    """The report's instance scores as a dict (None without them).

    ``summary`` (``miiou``, ``group_miiou``), ``classes`` (per class: ``index``, ``name``,
    ``size``, ``instances``, ``tp_weighted``, ``fn_weighted``, ``fp``, ``iiou``) and
    ``groups`` (per group: ``index``, ``name``, ``tp_weighted``, ``fn_weighted``, ``fp``,
    ``iiou``; None without groups).
    """
    scores = report.instances
    if scores is None:
        return None
    return {
        "summary": dict(scores.summary),
        "classes": scores.class_rows(report.class_names),
        "groups": scores.group_rows() if report.groups is not None else None,
    }


def to_dict(report: Report) -> dict[str, Any]:
    """Everything in `report` as JSON-safe Python objects (NaN as None).

    See :meth:`fastseg.report.Report.to_dict` for the keys.
    """
    confusion = report.confusion_matrix
    images = None
    if report.per_image:
        images = {"ids": list(report.ids or ()), "miou": report.image_means("iou").tolist(),
                  "mdice": report.image_means("dice").tolist()}  # fmt: skip
    out = {
        "format": "fastseg.report",
        "format_version": FORMAT_VERSION,
        "fastseg_version": __version__,
        "complete": report.complete,
        "kind": "soft" if report.counts.soft else "hard",
        "preset": report.preset,
        "policy": report.policy.to_dict() | {"excluded": np.flatnonzero(~report.kept).tolist()},
        "num_classes": report.num_classes,
        "class_names": list(report.class_names),
        "per_image": report.per_image,
        "n_images": report.n_images,
        "pixels": report.pixels,
        "ignored": report.ignored,
        "summary": dict(report.summary),
        "classes": class_rows(report),
        "confusion_matrix": None if confusion is None else confusion.tolist(),
        "post_means": report.post_means() if report.per_image else None,
        "images": images,
        "groups": None if report.groups is None else report.groups.rows(),
        "group_summary": None if report.groups is None else dict(report.groups.summary),
        "instances": instances_dict(report),
        "extras": extras_dict(report),
        "meta": report.meta,
    }
    safe: dict[str, Any] = json_safe(out)
    return safe


def extras_dict(report: Report) -> dict[str, Any] | None:
    """The per-image statistics' part of the report (None without them).

    ``summary`` (``Report.extra_summary``) and, per kind, the statistic's
    ``report_dict()``: its setting (the calibration adds ECE, MCE and its bins).
    """
    extras = report.counts.extras
    if not extras:
        return None
    out: dict[str, Any] = {"summary": dict(report.extra_summary)}
    for kind, x in extras.items():
        out[kind] = x.report_dict()
    return out


def json_text(report: Report, layout: str = "report") -> str:
    """The JSON text of one of the :data:`JSON_LAYOUTS`, ending in a newline.

    ``"report"``: :func:`to_dict`, strict JSON (NaN as null). ``"per-case"``:
    :func:`per_case_dict`; ``"cityscapes"``: :func:`cityscapes_dict` (keys sorted, indent
    4, as the official evaluator writes it); both keep NaN as ``NaN``.
    """
    if layout == "report":
        return json.dumps(to_dict(report), indent=1, allow_nan=False) + "\n"
    if layout == "per-case":
        return json.dumps(per_case_dict(report), indent=4) + "\n"
    if layout == "cityscapes":
        return json.dumps(cityscapes_dict(report), indent=4, sort_keys=True) + "\n"
    raise ValueError(f"layout must be one of {JSON_LAYOUTS}; got {layout!r}")


def write_json(report: Report, path: str | os.PathLike[str], layout: str = "report") -> Path:
    """Write :func:`json_text` of `layout` atomically; return the path."""
    text = json_text(report, layout)
    return write_atomically(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def csv_rows(report: Report) -> list[dict[str, Any]]:
    """The CSV's rows: classes, then groups, then the summaries (NaN as None).

    Columns :func:`csv_fields`: ``index``, ``name``, ``excluded``, the per-class
    :data:`COLUMNS`, then ``kind``, ``classes`` and ``value`` (:data:`CSV_FIELDS`), and
    ``iiou`` last when the report has instance scores. ``kind`` is ``class`` (one
    row per class, as :func:`class_rows`), ``group`` (one per class group: ``index`` is
    its position, ``classes`` its class indices joined by spaces, ``support`` /
    ``predicted`` its truth / predicted pixels), ``summary`` (``name`` a key of
    ``Report.summary``: miou, mdice, aacc, macc, fwiou, with instance scores miiou, and
    the extras' summaries, ``Report.extra_summary``; the number in ``value``) or
    ``group_summary`` (miou, mdice, mprecision, mrecall over the groups, and miiou).
    Cells a row does not use are None.
    """
    rows: list[dict[str, Any]] = []
    blank = dict.fromkeys(csv_fields(report))
    scores = report.instances
    for row in class_rows(report):
        rows.append(blank | row | {"kind": "class"})
    groups = report.groups
    if groups is not None:
        for k, row in enumerate(groups.rows()):
            classes = " ".join(str(c) for c in row.pop("classes"))
            if scores is not None:
                row["iiou"] = scores.group_iiou[k]
            rows.append(blank | row | {"kind": "group", "classes": classes})
    summary = dict(report.summary)
    if scores is not None:
        summary["miiou"] = scores.summary["miiou"]
    summary.update(report.extra_summary)
    for key, value in summary.items():
        rows.append(blank | {"kind": "summary", "name": key, "value": value})
    if groups is not None:
        group_summary = dict(groups.summary)
        if scores is not None:
            group_summary["miiou"] = scores.summary["group_miiou"]
        for key, value in group_summary.items():
            rows.append(blank | {"kind": "group_summary", "name": key, "value": value})
    safe: list[dict[str, Any]] = json_safe(rows)
    return safe


def csv_fields(report: Report) -> tuple[str, ...]:
    """The CSV's columns: :data:`CSV_FIELDS`, then ``iiou`` and the extras' columns.

    ``iiou`` with instance scores; the extras' per-class columns are
    ``Report.extra_columns``.
    """
    fields = CSV_FIELDS if report.instances is None else (*CSV_FIELDS, "iiou")
    return (*fields, *report.extra_columns)


def write_csv(report: Report, path: str | os.PathLike[str]) -> Path:
    """Write :func:`csv_rows` as CSV (None as an empty field), atomically."""

    def write(tmp: Path) -> None:
        with tmp.open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=csv_fields(report))
            writer.writeheader()
            for row in csv_rows(report):
                writer.writerow({k: "" if v is None else v for k, v in row.items()})

    return write_atomically(path, write)


def per_case_dict(report: Report) -> dict[str, Any]:
    """Per image and class values in nnU-Net's ``summary.json`` layout.

    Keys ``metric_per_case`` (a list, one entry per image: ``{"id": id, "metrics": {class
    index: {Dice, IoU, FP, TP, FN, TN, n_pred, n_ref}}}``), ``mean`` (class index -> the
    same keys, each averaged over the images with NaN left out, as nnU-Net's
    ``np.nanmean``), ``foreground_mean`` (each key averaged over the classes of ``mean``
    but class 0 and the classes the policy excludes, with ``np.mean`` as nnU-Net: one NaN
    class makes it NaN), and ``class_names`` (class index -> name), ``format``,
    ``format_version``, ``fastseg_version``, ``complete``.

    Class keys are the indices as strings (nnU-Net's label keys). ``Dice`` and ``IoU``
    follow the report's policy per image (the default policy gives nnU-Net's: NaN where
    TP + FP + FN = 0); the counts are :func:`fastseg.formulas.case_counts`. Class groups
    are not listed per case (they would need a confusion matrix per image). Values are
    Python numbers; NaN stays NaN.

    Raises
    ------
    ValueError
        Without per-image counts.
    """
    report._require_images("the per-case layout")
    c = report.counts
    number = float if c.soft else int
    n = report.num_classes
    counts = case_counts(c.tp, c.pred, c.true)
    values: dict[str, np.ndarray] = {"Dice": report.per_image_values("dice"),
                                     "IoU": report.per_image_values("iou"),
                                     **counts}  # fmt: skip
    cases = []
    for b, image_id in enumerate(report.ids or ()):
        metrics = {
            str(k): {m: (float if m in ("Dice", "IoU") else number)(values[m][b, k])
                     for m in CASE_METRICS}
            for k in range(n)
        }  # fmt: skip
        cases.append({"id": image_id, "metrics": metrics})
    means = {m: nanmean(np.asarray(values[m], np.float64), axis=0) for m in CASE_METRICS}
    mean = {str(k): {m: float(means[m][k]) for m in CASE_METRICS} for k in range(n)}
    foreground = [k for k in range(1, n) if report.kept[k]]
    foreground_mean = {
        m: float(np.mean(means[m][foreground])) if foreground else math.nan
        for m in CASE_METRICS
    }
    return {
        "format": "fastseg.per_case",
        "format_version": FORMAT_VERSION,
        "fastseg_version": __version__,
        "complete": report.complete,
        "class_names": {str(k): name for k, name in enumerate(report.class_names)},
        "metric_per_case": cases,
        "mean": mean,
        "foreground_mean": foreground_mean,
    }


def _is_cityscapes(report: Report) -> bool:
    """Whether the classes are Cityscapes' 19 evaluated classes, in train-id order."""
    evaluated = sorted((lab for lab in CITYSCAPES_LABELS if lab.train_id != 255),
                       key=lambda lab: lab.train_id)  # fmt: skip
    return list(report.class_names) == [lab.name for lab in evaluated]


def cityscapes_dict(report: Report) -> dict[str, Any]:
    """The official Cityscapes evaluator's result dict, from the report's counts.

    The keys of cityscapesScripts' ``createResultDict``: ``confMatrix`` (rows truth,
    columns prediction), ``priors`` (class -> truth pixels / all truth pixels, the ignored
    ones included), ``labels`` (class -> id), ``classScores`` (class -> IoU),
    ``categoryScores`` (group -> IoU), ``averageScoreClasses`` and
    ``averageScoreCategories`` (means of the non-NaN scores), and the instance-level
    ``classInstScores``, ``categoryInstScores`` (iIoU, NaN for classes and categories
    without instances, as the official file), ``averageScoreInstClasses`` and
    ``averageScoreInstCategories`` (their means); all NaN when the report has no
    instance scores (``Report.instances``: instance-id files were not counted). A
    category has an iIoU when every class in it has instances (an average size).

    When the classes are Cityscapes' 19 evaluated ones (the ``cityscapes`` data-set
    preset), the layout is the official one: every label of ids 0 to 33 is listed
    (``labels`` gives its labelId; classes the benchmark does not evaluate score NaN), the
    categories are Cityscapes' eight (``void`` NaN) and ``confMatrix`` is 34 x 34 over
    labelIds. Its rows of labels that are not evaluated are zero and their priors NaN:
    fastseg skips ignored truth without counting it per id (the official matrix counts
    it). Otherwise classes are keyed by name with their index as id, the report's
    groups are the categories and ``confMatrix`` is the N x N matrix.

    Raises
    ------
    ValueError
        For soft counts (no confusion matrix), or class names that repeat.
    """
    confusion = report.confusion_matrix
    if confusion is None:
        raise ValueError("the Cityscapes layout needs hard counts (a confusion matrix)")
    if len(set(report.class_names)) != report.num_classes:
        raise ValueError("the Cityscapes layout keys classes by name: class names must differ")
    everything = float(report.pixels) + report.ignored
    priors = ratio(report.support, everything) if everything else np.full(report.num_classes,
                                                                          math.nan)  # fmt: skip
    iou = report.iou
    iiou = report.iiou
    if _is_cityscapes(report):
        labels = CITYSCAPES_LABELS
        size = max(lab.id for lab in labels) + 1
        matrix = np.zeros((size, size), np.int64)
        train = [lab.id for lab in sorted((lab for lab in labels if lab.train_id != 255),
                                          key=lambda lab: lab.train_id)]  # fmt: skip
        matrix[np.ix_(train, train)] = confusion
        ids = {lab.name: lab.id for lab in labels}
        class_scores = {lab.name: math.nan for lab in labels}
        class_inst_scores = dict(class_scores)
        prior = {lab.name: math.nan for lab in labels}
        for k, label_id in enumerate(train):
            name = labels[label_id].name
            class_scores[name] = float(iou[k])
            class_inst_scores[name] = float(iiou[k])
            prior[name] = float(priors[k])
        categories = {cat: tuple(lab.train_id for lab in labels
                                 if lab.category == cat and lab.train_id != 255)
                      for cat in CITYSCAPES_CATEGORIES}  # fmt: skip
    else:
        matrix = np.asarray(confusion)
        ids = {name: k for k, name in enumerate(report.class_names)}
        class_scores = {name: float(iou[k]) for k, name in enumerate(report.class_names)}
        class_inst_scores = {name: float(iiou[k]) for k, name in enumerate(report.class_names)}
        prior = {name: float(priors[k]) for k, name in enumerate(report.class_names)}
        categories = dict(report.group_classes)
    scored = {cat: members for cat, members in categories.items() if members}
    values = group_values(confusion, list(scored.values()), **report.policy.value_rules())
    category_scores = dict.fromkeys(categories, math.nan)
    category_scores.update({cat: float(v) for cat, v in zip(scored, values["iou"], strict=True)})
    category_inst_scores = dict.fromkeys(categories, math.nan)
    sums, sizes = report.counts.instances, report.instance_sizes
    if sums is not None and sizes is not None:
        inst = group_instance_values(sums, sizes, confusion, list(scored.values()))
        category_inst_scores.update(
            {cat: float(v) for cat, v in zip(scored, inst["iiou"], strict=True)})  # fmt: skip

    def average(scores: dict[str, float]) -> float:
        valid = [v for v in scores.values() if not math.isnan(v)]
        return sum(valid) / len(valid) if valid else math.nan

    return {
        "confMatrix": matrix.tolist(),
        "priors": prior,
        "labels": ids,
        "classScores": class_scores,
        "classInstScores": class_inst_scores,
        "categoryScores": category_scores,
        "categoryInstScores": category_inst_scores,
        "averageScoreClasses": average(class_scores),
        "averageScoreInstClasses": average(class_inst_scores),
        "averageScoreCategories": average(category_scores),
        "averageScoreInstCategories": average(category_inst_scores),
    }


def json_safe(obj: Any) -> Any:
    """Python / NumPy values as JSON types; NaN and infinities as None."""
    if isinstance(obj, Mapping):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | np.ndarray):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


# ---------------------------------------------------------------------------- text


def text(report: Report) -> str:
    """``str(report)``: a header, the aligned per-class table and the summaries."""
    soft = report.counts.soft
    n_images = "?" if report.n_images is None else report.n_images
    pixels = _count(report.pixels, soft)
    lines = []
    if not report.complete:
        skipped = report.meta.get("skipped") or []
        what = f"{len(skipped)} skipped: {skipped[:3]}{' ...' if len(skipped) > 3 else ''}"
        lines.append(f"INCOMPLETE: {what if skipped else 'marked incomplete'} (see meta)")
    lines.append(
        f"fastseg report: {report.num_classes} classes, {n_images} images, {pixels} pixels "
        f"counted, {report.ignored} ignored ({'soft' if soft else 'hard'} counts)"
    )
    source = PRESET_SOURCES.get(report.preset, "")
    lines.append(f"preset {report.preset} ({source}): {report.policy.describe()}")
    lines.append("")
    scores = report.instances
    header = ["#", "class", "IoU", "Dice", "Precision", "Recall", "Support", "Predicted"]
    rows = [
        [f"{c}{'' if report.kept[c] else '*'}", name[:24], _fmt(report.iou[c]),
         _fmt(report.dice[c]), _fmt(report.precision[c]), _fmt(report.recall[c]),
         _count(report.support[c], soft), _count(report.predicted[c], soft)]
        for c, name in enumerate(report.class_names)
    ]  # fmt: skip
    if scores is not None:
        header.append("iIoU")
        for c, row in enumerate(rows):
            row.append(_fmt(scores.iiou[c]))
    for column, values in report.extra_columns.items():
        header.append(extra_label(column))
        for c, row in enumerate(rows):
            row.append(_fmt(values[c]))
    lines += _aligned(header, rows, left=2)
    if not report.kept.all():
        lines.append("* excluded from the means")
    lines.append("")
    summary = report.summary
    lines.append("  ".join(f"{label} {_fmt(summary[k])}" for k, label in SUMMARY_LABELS.items()))
    groups = report.groups
    if groups is not None:
        lines.append("")
        header = ["#", "group", "classes", "IoU", "Dice", "Precision", "Recall", "Support",
                  "Predicted"]  # fmt: skip
        rows = [
            [str(k), name[:24], _members(groups.classes[k]), _fmt(groups.iou[k]),
             _fmt(groups.dice[k]), _fmt(groups.precision[k]), _fmt(groups.recall[k]),
             str(int(groups.true[k])), str(int(groups.pred[k]))]
            for k, name in enumerate(groups.names)
        ]  # fmt: skip
        if scores is not None:
            header.append("iIoU")
            for k, row in enumerate(rows):
                row.append(_fmt(scores.group_iiou[k]))
        lines += _aligned(header, rows, left=3)
        lines.append("")
        lines.append("groups (from the summed confusion matrix): " + "  ".join(
            f"{label} {_fmt(groups.summary[k])}" for k, label in GROUP_SUMMARY_LABELS.items()))
    if scores is not None:
        with_size = int(np.count_nonzero(~np.isnan(scores.sizes)))
        counted = int(scores.instances.sum())
        line = (f"instance-weighted (iIoU, {with_size} classes with instances, {counted} "
                f"instances): miIoU {_fmt(scores.summary['miiou'])}")  # fmt: skip
        if groups is not None:
            line += f"  groups miIoU {_fmt(scores.summary['group_miiou'])}"
        lines += ["", line]
    lines += _extras_lines(report)
    return "\n".join(lines)


def _extras_lines(report: Report) -> list[str]:
    """The text's lines about the per-image statistics (none without them)."""
    extras = report.counts.extras
    if not extras:
        return []
    summary = report.extra_summary
    lines = [""]
    for kind, x in extras.items():
        setting = ", ".join(f"{k} {v}" for k, v in x.setting().items())
        names = ["m" + column for column in x.class_values()] + list(
            EXTRA_SUMMARIES.get(kind, ()))  # fmt: skip
        shown = "  ".join(f"{extra_label(k)} {_fmt(summary[k])}" for k in names if k in summary)
        lines.append(f"{kind} ({setting}): {shown}")
    return lines


def extra_label(name: str) -> str:
    """The table's label of an extra column or summary (``hd90`` -> ``HD90``)."""
    if name in EXTRA_LABELS:
        return EXTRA_LABELS[name]
    mean, base = ("m", name[1:]) if name.startswith("mhd") else ("", name)
    if base.startswith("hd"):
        return mean + base.upper()
    return name


def _members(classes: Sequence[int], width: int = 20) -> str:
    """Class indices joined by commas, cut to `width` characters."""
    text = ",".join(str(c) for c in classes)
    return text if len(text) <= width else text[: width - 3] + "..."


def _fmt(value: float) -> str:
    return "nan" if math.isnan(value) else f"{value:.4f}"


def _count(value: float, soft: bool) -> str:
    return f"{value:.1f}" if soft else str(int(value))


def _aligned(header: list[str], rows: list[list[str]], left: int) -> list[str]:
    """Columns padded to one width each; the first `left` columns left-aligned."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(
            cell.ljust(w) if i < left else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return [line(header), rule, *(line(r) for r in rows)]


# ---------------------------------------------------------------------------- plot


def write_plot(report: Report, path: str | os.PathLike[str], *, dpi: int = 150) -> Path:
    """Save :func:`figure` to `path` atomically, in the format of its suffix (PNG default)."""
    fig = figure(report)
    fmt = Path(path).suffix.lstrip(".").lower() or "png"
    return write_atomically(path, lambda tmp: fig.savefig(tmp, format=fmt, dpi=dpi))


def figure(report: Report) -> Figure:
    """Per-class IoU bars (sorted), the row-normalised confusion heat map, reliability.

    The reliability diagram (accuracy per confidence bin) is drawn when the counts carry
    confidence histograms (``calibration``).

    A matplotlib Figure made without pyplot (so no GUI backend); soft counts have no
    confusion matrix, so only the bars are drawn.

    Raises
    ------
    ImportError
        matplotlib is not installed (naming the ``plot`` extra).
    """
    try:  # the plot extra is optional: imported only when a plot is asked for
        from matplotlib.colors import PowerNorm
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError(
            "Report.plot needs matplotlib; install the plot extra: pip install 'fastseg[plot]'"
        ) from exc
    n = report.num_classes
    confusion = report.confusion_matrix
    # 0.13 inch (9 pt) per class keeps a 6.5 pt label per row readable at 150 classes.
    height = max(3.0, 0.13 * n)
    fontsize = float(np.clip(72 * height / max(n, 1) * 0.7, 4, 10))
    widths = [6.0] if confusion is None else [6.0, height + 1.5]
    calibration = report.counts.calibration
    if calibration is not None:
        widths.append(min(height, 6.0) + 0.5)
    fig = Figure(figsize=(sum(widths) + 1.0, height + 1.5), layout="constrained")
    axes = fig.subplots(1, len(widths), width_ratios=widths, squeeze=False)[0]
    _iou_bars(axes[0], report, fontsize)
    if confusion is not None:
        # A square-root colour scale: confusions of a few percent stay visible beside the
        # diagonal of 150 classes, where a linear scale leaves them black.
        norm = PowerNorm(gamma=0.5, vmin=0, vmax=1)
        _confusion_map(fig, axes[1], confusion, report.class_names, fontsize, norm)
    if calibration is not None:
        _reliability(axes[-1], report)
    return fig


def _reliability(ax: Axes, report: Report) -> None:
    """The reliability diagram: accuracy per confidence bin against the diagonal."""
    cal = report.counts.calibration
    bins = cal.bins()
    edges = cal.edges
    n = cal.n_bins
    filled = bins["pixels"][:n] > 0
    lower, width = edges[:-1], np.diff(edges)
    ax.bar(lower[filled], bins["accuracy"][:n][filled], width=width[filled], align="edge",
           color="tab:blue", edgecolor="white", label="accuracy")  # fmt: skip
    ax.bar(lower[filled], (bins["confidence"] - bins["accuracy"])[:n][filled],
           bottom=bins["accuracy"][:n][filled], width=width[filled], align="edge",
           color="tab:red", alpha=0.3, label="gap to confidence")  # fmt: skip
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_aspect("equal")
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.legend(loc="upper left", fontsize=8)
    ones = int(bins["pixels"][n])
    note = f"; {ones} pixels at confidence 1" if ones else ""
    ax.set_title(f"reliability (ECE {_fmt(report.ece)}, MCE {_fmt(report.mce)}{note})",
                 fontsize=10)  # fmt: skip


def _iou_bars(ax: Axes, report: Report, fontsize: float) -> None:
    iou = report.iou
    shown = [c for c in np.argsort(iou, kind="stable") if not np.isnan(iou[c])]
    names = [report.class_names[c] + ("" if report.kept[c] else " *") for c in shown]
    bars = ax.barh(np.arange(len(shown)), iou[shown], color="tab:blue")
    if len(shown) <= 40:  # values beside the bars, so a zero IoU is visible too
        ax.bar_label(bars, [_fmt(iou[c]) for c in shown], padding=2, fontsize=fontsize)
    ax.set_yticks(np.arange(len(shown)), names, fontsize=fontsize)
    ax.set_ylim(len(shown) - 0.5, -0.5)  # lowest IoU at the top
    ax.set_xlim(0, 1)
    ax.grid(axis="x", alpha=0.4)
    hidden = len(iou) - len(shown)
    note = f"; {hidden} with empty union not shown" if hidden else ""
    ax.set_title(f"IoU per class, sorted (mIoU {_fmt(report.miou)}{note})", fontsize=10)
    ax.set_xlabel("IoU (* excluded from the means)" if not report.kept.all() else "IoU")


def _confusion_map(
    fig: Figure,
    ax: Axes,
    confusion: np.ndarray,
    names: Sequence[str],
    fontsize: float,
    norm: Normalize,
) -> None:
    rows = ratio(confusion, confusion.sum(axis=1, keepdims=True))
    image = ax.imshow(np.ma.masked_invalid(rows), norm=norm, cmap="viridis",
                      interpolation="nearest")  # fmt: skip
    ticks = np.arange(len(names))
    ax.set_xticks(ticks, names, fontsize=fontsize, rotation=90)
    ax.set_yticks(ticks, names, fontsize=fontsize)
    ax.set_xlabel("prediction")
    ax.set_ylabel("truth (blank row: no truth pixels)")
    ax.set_title("row-normalised confusion (sqrt colour scale)", fontsize=10)
    fig.colorbar(image, ax=ax, shrink=0.5)

"""A Report's outputs: the text table, the dict / JSON / CSV forms, and the plot.

Every function takes a :class:`~fastseg.report.Report` (imported here only for types) and
reads its public values; the Report's ``__str__``, ``class_rows``, ``to_dict``,
``to_json``, ``to_csv`` and ``plot`` delegate here. Files are written atomically
(:func:`fastseg._files.write_atomically`).
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
from fastseg.formulas import Summary, ratio
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


# ------------------------------------------------------------------ dict, JSON, CSV


def class_rows(report: Report) -> list[dict[str, Any]]:
    """One dict per class: index, name, excluded, and the :data:`COLUMNS`."""
    columns = {name: getattr(report, name) for name in COLUMNS}
    number = float if report.counts.soft else int
    rows = []
    for c, name in enumerate(report.class_names):
        row: dict[str, Any] = {"index": c, "name": name, "excluded": not report.kept[c]}
        for col, values in columns.items():
            value = values[c]
            row[col] = number(value) if col in ("support", "predicted") else float(value)
        rows.append(row)
    return rows


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
        "meta": report.meta,
    }
    safe: dict[str, Any] = json_safe(out)
    return safe


def write_json(report: Report, path: str | os.PathLike[str]) -> Path:
    """Write :func:`to_dict` as strict JSON (no NaN), atomically; return the path."""
    text = json.dumps(to_dict(report), indent=1, allow_nan=False)
    return write_atomically(path, lambda tmp: tmp.write_text(text + "\n", encoding="utf-8"))


def write_csv(report: Report, path: str | os.PathLike[str]) -> Path:
    """Write one row per class (:func:`class_rows`; NaN as an empty field), atomically."""
    fields = ["index", "name", "excluded", *COLUMNS]

    def write(tmp: Path) -> None:
        with tmp.open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            for row in json_safe(class_rows(report)):
                writer.writerow({k: "" if v is None else v for k, v in row.items()})

    return write_atomically(path, write)


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
    header = ["#", "class", "IoU", "Dice", "Precision", "Recall", "Support", "Predicted"]
    rows = [
        [f"{c}{'' if report.kept[c] else '*'}", name[:24], _fmt(report.iou[c]),
         _fmt(report.dice[c]), _fmt(report.precision[c]), _fmt(report.recall[c]),
         _count(report.support[c], soft), _count(report.predicted[c], soft)]
        for c, name in enumerate(report.class_names)
    ]  # fmt: skip
    lines += _aligned(header, rows, left=2)
    if not report.kept.all():
        lines.append("* excluded from the means")
    lines.append("")
    summary = report.summary
    lines.append("  ".join(f"{label} {_fmt(summary[k])}" for k, label in SUMMARY_LABELS.items()))
    return "\n".join(lines)


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
    """Per-class IoU bars (sorted) and the row-normalised confusion heat map.

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
    fig = Figure(figsize=(sum(widths) + 1.0, height + 1.5), layout="constrained")
    axes = fig.subplots(1, len(widths), width_ratios=widths, squeeze=False)[0]
    _iou_bars(axes[0], report, fontsize)
    if confusion is not None:
        # A square-root colour scale: confusions of a few percent stay visible beside the
        # diagonal of 150 classes, where a linear scale leaves them black.
        norm = PowerNorm(gamma=0.5, vmin=0, vmax=1)
        _confusion_map(fig, axes[1], confusion, report.class_names, fontsize, norm)
    return fig


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

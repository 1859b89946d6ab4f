"""The ``fastseg`` command: evaluate stores, run the demo, write synthetic data sets.

A thin layer: it parses arguments, calls :func:`fastseg.evaluate` or
:func:`fastseg.synth.write_dataset`, and prints or writes the report. Exit codes: 0 ok,
2 bad usage or bad input (one-line error on stderr), 1 any other failure.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from fastseg._files import write_atomically
from fastseg._version import __version__
from fastseg.dataset import FROM_STORE, MissingChunksError, SchedulerConnectionError, evaluate
from fastseg.dataset_presets import BUILT_IN, read_class_names
from fastseg.policy import PRESETS
from fastseg.progress import Progress
from fastseg.readers import MissingReaderError, require
from fastseg.render import json_text as report_json_text
from fastseg.stores import ChunkReadError
from fastseg.synth import write_cityscapes, write_dataset, write_nnunet

log = logging.getLogger("fastseg")

#: File name written by ``--plot DIR/``.
PLOT_NAME = "report.png"

#: ``fastseg demo``'s defaults: images, image size and classes of the Zarr store, and
#: (``--folders``) images (and volumes), Cityscapes-like image size and the volumes'
#: classes; the volumes' largest size (D, H, W).
DEMO_ZARR = (24, (256, 256), 6)
DEMO_FOLDERS = (6, (512, 1024), 4)
DEMO_VOLUME = (48, 96, 96)
#: Cityscapes' label id of "road": the background of the demo's street scenes.
ROAD = 7
#: The file marking a ``--keep`` folder as the demo's, so a later demo may replace its data.
DEMO_MARK = ".fastseg-demo"
#: What the demo writes in its folder; only these are replaced when the demo runs again.
DEMO_PARTS = ("demo.zarr", "cityscapes", "nnunet")
_DEMO_NAMES = dict(zip(("zarr", "cityscapes", "nnunet"), DEMO_PARTS, strict=True))

EVALUATE_EXAMPLES = """\
examples:
  fastseg synth data.zarr --images 8 --size 128 128 --classes 5   # arrays true and pred
  fastseg evaluate --true data.zarr --pred data.zarr
  fastseg evaluate --true data.zarr --pred data.zarr --preset mmseg --format json \\
      --output report.json
  fastseg evaluate --true data.zarr --true-array true --pred data.zarr --pred-array pred \\
      --checkpoint ckpt/ --workers 2 --format csv
  fastseg evaluate --true gt.zarr --pred preds.zarr --scheduler tcp://10.0.0.5:8786
  fastseg evaluate --true gtFine/val/ --pred results/ --dataset cityscapes --instances
  fastseg evaluate --true labelsTs/ --pred predsTs/ --dataset dataset.json --format per-case
  fastseg evaluate --true annotations/validation/ --pred preds/ --dataset ade20k
  fastseg evaluate --true @truth_files.txt --pred 'preds/*.png' --num-classes 21

The first four run as written (the synth line makes data.zarr); the others show the
options for a cluster and for folders of Cityscapes, nnU-Net and ADE20K files.
"""

DEMO_EXAMPLES = """\
examples:
  fastseg demo                       # a Zarr store of scores and labels
  fastseg demo --folders             # Cityscapes-like PNGs and nnU-Net-like NIfTI volumes
  fastseg demo --folders --keep demo/ --format cityscapes
"""

SYNTH_EXAMPLES = """\
examples:
  fastseg synth data.zarr --images 64 --size 512 512 --classes 19
  fastseg synth vols.zarr --images 4 --size 64 128 128 --classes 14 --dtype float16
"""


class UsageError(Exception):
    """Bad arguments or bad input: exit code 2."""


def _int_or_none(text: str) -> int | None:
    if text.lower() in ("none", "off", "no"):
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer or 'none', got {text!r}") from None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fastseg",
        description="Fast, exact IoU and Dice for semantic segmentation, in memory or out of "
        "core (Zarr + Dask).",
    )
    parser.add_argument("--version", action="version", version=f"fastseg {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    ev = sub.add_parser(
        "evaluate",
        help="score predictions (Zarr stores or folders of files) against truth",
        description="Score a model's predictions (scores or label maps in Zarr, v2 or v3, "
        "or folders of PNG, TIFF, NIfTI, .npy or .npz files) against the truth, chunk by "
        "chunk or file by file, in bounded memory.",
        epilog=EVALUATE_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _evaluate_arguments(ev)

    demo = sub.add_parser(
        "demo",
        help="build a small synthetic data set and evaluate it (Zarr; --folders: PNG and "
        "NIfTI files)",
        description="Write a small synthetic data set, evaluate it with 'fastseg evaluate' and\n"
        "print the command to type for your own data. By default a Zarr store of scores\n"
        "and labels (shapes, noisy softmax scores, an ignore region, a class never\n"
        "present); with --folders a Cityscapes-like folder of PNG label ids (truth in city\n"
        "sub-folders, evaluated with --dataset cityscapes) and an nnU-Net-like folder of\n"
        "NIfTI volumes with its dataset.json. The data is written to a temporary folder,\n"
        "deleted at the end, unless --keep DIR.",
        epilog=DEMO_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_argument(
        "--folders",
        action="store_true",
        help="folders of files instead of a Zarr store: Cityscapes-like PNGs (needs the "
        "images extra) and nnU-Net-like NIfTI volumes (needs the nifti extra)",
    )
    demo.add_argument(
        "--images",
        type=int,
        metavar="N",
        help=f"images (default {DEMO_ZARR[0]}; --folders: {DEMO_FOLDERS[0]} images and as "
        "many volumes)",
    )
    demo.add_argument(
        "--size",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        help=f"image size (default {DEMO_ZARR[1][0]} {DEMO_ZARR[1][1]}; --folders: the "
        f"Cityscapes-like images, default {DEMO_FOLDERS[1][0]} {DEMO_FOLDERS[1][1]}; the "
        f"volumes are at most {' x '.join(map(str, DEMO_VOLUME))})",
    )
    demo.add_argument(
        "--classes",
        type=int,
        metavar="N",
        help=f"classes (default {DEMO_ZARR[2]}; --folders: the volumes' classes, default "
        f"{DEMO_FOLDERS[2]}; the Cityscapes-like images have Cityscapes' ids)",
    )
    demo.add_argument(
        "--keep",
        type=Path,
        metavar="DIR",
        help="write the data here and keep it (a new or empty folder, or one an earlier "
        "demo wrote); default: a temporary folder, deleted at the end",
    )
    _output_arguments(demo)

    syn = sub.add_parser(
        "synth",
        help="write a synthetic data set of any size",
        description="Write synthetic 'pred' scores and 'true' labels to a Zarr group, image "
        "by image (any size, bounded memory).",
        epilog=SYNTH_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    syn.add_argument("out", type=Path, help="the Zarr group to create")
    syn.add_argument("--images", type=int, required=True, help="number of images")
    syn.add_argument(
        "--size",
        type=int,
        nargs="+",
        required=True,
        metavar="N",
        help="spatial size: H W, or D H W for volumes",
    )
    syn.add_argument("--classes", type=int, required=True, help="number of classes")
    syn.add_argument(
        "--dtype",
        default="float16",
        choices=("float16", "float32", "float64"),
        help="score dtype (default float16)",
    )
    syn.add_argument(
        "--chunks",
        type=int,
        nargs="+",
        metavar="N",
        help="chunk shape of pred (default: one image, all classes, <=16 MiB)",
    )
    syn.add_argument(
        "--class-axis",
        type=int,
        default=-1,
        choices=(-1, 1),
        help="class axis of pred: -1 channels-last (default), 1 channels-first",
    )
    syn.add_argument(
        "--ignore-index",
        type=_int_or_none,
        default=255,
        metavar="K",
        help="label of the ignore region (default 255; 'none' for no region)",
    )
    syn.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    syn.add_argument(
        "--zarr-format", type=int, default=3, choices=(2, 3), help="Zarr format (default 3)"
    )
    syn.add_argument("--workers", type=int, help="writer threads (default: all cores)")
    syn.add_argument("--overwrite", action="store_true", help="replace an existing group")
    syn.add_argument("--no-progress", action="store_true", help="no progress bar")
    syn.add_argument("-v", "--verbose", action="store_true", help="log what is done")
    return parser


def _evaluate_arguments(ev: argparse.ArgumentParser) -> None:
    ev.add_argument(
        "--true",
        metavar="TRUE",
        help="the truth: a Zarr store path or URL (group or array), or files: a folder "
        "(searched recursively), a quoted glob, or @LIST (a text file of paths, one per "
        "line) of PNG, TIFF, NIfTI, .npy or .npz files, one image each",
    )
    ev.add_argument(
        "--pred",
        metavar="PRED",
        help="the predictions (scores or label maps): as TRUE (may be the same group); "
        "files are paired with TRUE's by name, or by position with a Zarr array's images",
    )
    # In 0.1 the inputs were positional, predictions first (the reverse of the Python API's
    # y_true, y_pred). Still read, with a warning, so batch scripts keep working.
    ev.add_argument("positional", nargs="*", metavar="PRED TRUE", help=argparse.SUPPRESS)
    ev.add_argument(
        "--pred-suffix",
        metavar="SUFFIX",
        help="removed from PRED's file names to make the ids that pair them with TRUE's "
        "(e.g. _leftImg8bit.png); a folder then holds only the files ending with it "
        "(default: the format's extension)",
    )
    ev.add_argument(
        "--true-suffix",
        metavar="SUFFIX",
        help="removed from TRUE's file names (e.g. _gtFine_labelIds.png); as --pred-suffix",
    )
    ev.add_argument(
        "--pred-array",
        metavar="PATH",
        help="array inside the pred group (default 'pred' or its only array)",
    )
    ev.add_argument(
        "--true-array",
        metavar="PATH",
        help="array inside the true group (default 'true' or its only array)",
    )
    ev.add_argument(
        "--num-classes",
        type=int,
        metavar="N",
        help="number of classes (needed when both are label maps; default: the "
        "stores' num_classes attribute)",
    )
    ev.add_argument(
        "--class-axis",
        type=int,
        metavar="K",
        help="class axis of score arrays (default: the prediction store's class_axis "
        "attribute, else last)",
    )
    ev.add_argument(
        "--ignore-index",
        type=_int_or_none,
        default=argparse.SUPPRESS,  # absent: the library reads the store's attribute
        metavar="K",
        help="truth label to skip (default: the stores' ignore_index attribute, "
        "else none; 'none' to ignore nothing)",
    )
    ev.add_argument("--soft", action="store_true", help="soft IoU / Dice from probabilities")
    ev.add_argument(
        "--threshold",
        type=float,
        metavar="T",
        help="one-channel scores (binary segmentation): foreground where score > T "
        "(2 classes: 0 background, 1 foreground); required for one-channel inputs",
    )
    ev.add_argument(
        "--spatial-dims",
        type=int,
        metavar="K",
        help="number of spatial axes after the batch axis (default: at least 2; 3 to "
        "read integer arrays as label-map volumes rather than one-hot images)",
    )
    _dataset_arguments(ev)
    ev.add_argument(
        "--missing",
        choices=("error", "skip", "fill"),
        default="error",
        help="chunks absent from a store: fail (default), leave their blocks out "
        "(reported), or read fill values",
    )
    ev.add_argument(
        "--checkpoint",
        type=Path,
        metavar="DIR",
        help="save each finished block here; rerun to resume",
    )
    where = ev.add_mutually_exclusive_group()
    where.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="dask.distributed scheduler address (default: local threads)",
    )
    where.add_argument(
        "--workers", type=int, metavar="N", help="local threads, at least 1 (default: all cores)"
    )
    _output_arguments(ev)


def _dataset_arguments(ev: argparse.ArgumentParser) -> None:
    """Data-set presets, class names and label-id maps."""
    ev.add_argument(
        "--dataset",
        metavar="NAME|FILE",
        help=f"data-set preset: {', '.join(BUILT_IN)}, or a JSON file (fastseg's schema or "
        "nnU-Net's dataset.json): sets the class names, label map, ignore index, class "
        "groups, file pairing and metric preset unless given",
    )
    ev.add_argument(
        "--class-names",
        metavar="FILE",
        help="class names: one per line, or a JSON list (default: the stores' class_names "
        "attribute)",
    )
    ev.add_argument(
        "--label-map",
        metavar="FILE",
        help="map from stored truth ids to class indices, as JSON ({\"7\": 0, ...} or a "
        "list) or CSV (id,class rows); other ids become the ignore index",
    )
    ev.add_argument(
        "--label-map-pred",
        metavar="FILE|same|none",
        help="the same for label-map predictions: a file, 'same' (the truth's map) or "
        "'none' (predictions hold class indices); a predicted id not mapped is an error",
    )
    ev.add_argument(
        "--reduce-zero-label",
        action="store_true",
        help="mmsegmentation's reduce_zero_label on the truth: id 0 is ignored, id k is "
        "class k-1 (needs --ignore-index, e.g. 255)",
    )
    ev.add_argument(
        "--instances",
        nargs="?",
        const=True,
        metavar="PATH",
        help="instance-id maps of the truth (Cityscapes' *_gtFine_instanceIds.png) for the "
        "instance-weighted iIoU: alone, beside each truth file (named by --instance-suffix); "
        "or a folder, quoted glob or @LIST paired with the truth by id. Needs average "
        "instance sizes (--dataset cityscapes has them)",
    )
    ev.add_argument(
        "--instance-suffix",
        metavar="SUFFIX",
        help="name ending of the instance-id files (default: the --dataset's; Cityscapes "
        "_gtFine_instanceIds.png)",
    )
    ev.add_argument(
        "--calibration",
        type=int,
        metavar="BINS",
        help="also measure calibration: bin each pixel's confidence (its largest score) "
        "into BINS equal bins (torchmetrics uses 15) in the same pass; the report gets ECE, "
        "MCE and a reliability diagram. Needs probabilities as predictions",
    )
    ev.add_argument(
        "--calibration-softmax",
        action="store_true",
        help="with --calibration: the predictions are logits; confidences are their softmax",
    )
    ev.add_argument(
        "--boundary",
        type=float,
        metavar="D",
        help="also count Boundary IoU (Cheng et al. 2021) with boundaries D wide: D >= 1 "
        "pixels, or D < 1 a fraction of the image diagonal (the paper uses 0.02)",
    )
    ev.add_argument(
        "--surface",
        type=float,
        nargs="+",
        metavar="TAU",
        help="also score each image's surfaces as MONAI does: normalised surface Dice at "
        "tolerance TAU (one, or one per class; in spacing units, e.g. mm) and the "
        "Hausdorff distance at --percentile (HD95)",
    )
    ev.add_argument(
        "--spacing",
        type=float,
        nargs="+",
        metavar="S",
        help="with --surface: voxel size, one or one per spatial axis in array order "
        "(default: each NIfTI file's own, else 1)",
    )
    ev.add_argument(
        "--percentile",
        type=_percentile,
        default=95.0,
        metavar="P",
        help="with --surface: the Hausdorff distance's percentile (default 95); 'max' for "
        "the maximum",
    )


def _class_names_file(path: str | None) -> list[str] | None:
    return None if path is None else read_class_names(path)


def _output_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        metavar="NAME",
        help=f"metric convention: {', '.join(sorted(PRESETS))} (default dataset)",
    )
    p.add_argument(
        "--exclude-class",
        nargs="+",
        default=None,
        metavar="C",
        help="classes left out of the means: indices (negative from the end), class names "
        "(the stores' class_names attribute), 'background' (class 0) or 'last'",
    )
    p.add_argument(
        "--per-image",
        action="store_true",
        help="also list the worst images (table) / every image (json)",
    )
    p.add_argument(
        "--format",
        choices=("table", "json", "csv", "per-case", "cityscapes"),
        default="table",
        help="report format (default table): json (fastseg's report), csv (classes, groups, "
        "summaries), per-case (nnU-Net's summary.json layout: per image and class TP, FP, "
        "FN, TN, n_pred, n_ref, IoU, Dice; means; foreground mean), cityscapes (the "
        "official Cityscapes evaluator's result JSON)",
    )
    p.add_argument(
        "--output",
        metavar="FILE",
        help="write the report here (missing directories are created)",
    )
    p.add_argument(
        "--plot",
        metavar="FILE.png",
        help="save per-class IoU bars and the confusion matrix (needs matplotlib); the "
        f"format follows the suffix; a directory gets {PLOT_NAME}",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("-v", "--verbose", action="store_true", help="log what is done")


def _exclusions(items: Sequence[str] | None) -> list[int | str] | None:
    if items is None:
        return None
    return [int(x) if x.lstrip("-").isdigit() else x for x in items]


def _inputs(args: argparse.Namespace) -> tuple[str, str]:
    """(TRUE, PRED) of ``fastseg evaluate``: its --true / --pred flags.

    Or, deprecated, the positional PRED TRUE of fastseg 0.1, with a warning.
    """
    given = args.positional
    if not given:
        missing = [flag for flag, value in (("--true", args.true), ("--pred", args.pred))
                   if value is None]  # fmt: skip
        if missing:
            raise UsageError(
                f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} required: "
                "fastseg evaluate --true TRUE --pred PRED [options]"
            )
        return args.true, args.pred
    if args.true is not None or args.pred is not None or len(given) != 2:
        raise UsageError(
            f"unexpected argument(s) {shlex.join(given)}: name the inputs, "
            "fastseg evaluate --true TRUE --pred PRED [options]"
        )
    pred, true = given
    sys.stderr.write(
        "fastseg: warning: positional PRED TRUE is deprecated (predictions first, the "
        "reverse of the Python API); name the inputs: "
        f"fastseg evaluate --true {shlex.quote(true)} --pred {shlex.quote(pred)}\n"
    )
    return true, pred


def _run_evaluate(args: argparse.Namespace) -> int:
    # CLI-only options first (cheap, no store opened); the library checks its own options,
    # the stores and their attribute defaults before it computes anything.
    output = None if args.output is None else _output_target(args.output)
    plot = None if args.plot is None else _plot_target(args.plot)
    true, pred = _inputs(args)
    started = time.perf_counter()
    report = evaluate(
        _file_list(true),
        _file_list(pred),
        num_classes=getattr(args, "num_classes", None),
        class_axis=getattr(args, "class_axis", None),
        ignore_index=getattr(args, "ignore_index", FROM_STORE),
        soft=getattr(args, "soft", False),
        threshold=getattr(args, "threshold", None),
        spatial_dims=getattr(args, "spatial_dims", None),
        pred_array=getattr(args, "pred_array", None),
        pred_suffix=getattr(args, "pred_suffix", None),
        true_suffix=getattr(args, "true_suffix", None),
        true_array=getattr(args, "true_array", None),
        missing=getattr(args, "missing", "error"),
        scheduler=getattr(args, "scheduler", None),
        workers=getattr(args, "workers", None),
        checkpoint=getattr(args, "checkpoint", None),
        progress=not args.no_progress,
        preset=args.preset,
        exclude=_exclusions(args.exclude_class),
        dataset=getattr(args, "dataset", None),
        class_names=_class_names_file(getattr(args, "class_names", None)),
        label_map=getattr(args, "label_map", None),
        label_map_pred=getattr(args, "label_map_pred", None),
        reduce_zero_label=True if getattr(args, "reduce_zero_label", False) else None,
        instances=_instances_arg(getattr(args, "instances", None)),
        instance_suffix=getattr(args, "instance_suffix", None),
        calibration=getattr(args, "calibration", None),
        calibration_softmax=getattr(args, "calibration_softmax", False),
        boundary=getattr(args, "boundary", None),
        surface=_one_or_many(getattr(args, "surface", None)),
        spacing=_one_or_many(getattr(args, "spacing", None)),
        percentile=getattr(args, "percentile", 95.0),
    )
    log.info("evaluated %s images in %.2f s", report.n_images, time.perf_counter() - started)
    _emit(report, args, output, plot)
    return 0


def _percentile(text: str) -> float | None:
    """``--percentile``: a number, or ``max``."""
    if text.strip().lower() == "max":
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a percentile or 'max': {text!r}") from None


def _one_or_many(values: list[float] | None) -> float | list[float] | None:
    """A list option of one value as that value."""
    if values is None:
        return None
    return values[0] if len(values) == 1 else values


def _instances_arg(value: str | bool | None) -> str | list[str] | bool | None:
    """``--instances``: None (absent), True (beside the truth), or files (``@LIST`` read)."""
    return _file_list(value) if isinstance(value, str) else value


def _file_list(arg: str) -> str | list[str]:
    """PRED / TRUE as given, or the paths an ``@LIST`` file names (one per line).

    Blank lines and lines starting with ``#`` are skipped; relative paths are taken
    from the list file's folder.
    """
    if not arg.startswith("@") or os.path.exists(arg):
        return arg
    listing = Path(arg[1:]).expanduser()
    try:
        lines = listing.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise UsageError(f"{arg}: cannot read the list of files ({exc.strerror or exc})") from None
    paths = [
        str(listing.parent / line.strip())
        for line in lines
        if line.strip() and not line.lstrip().startswith("#")
    ]
    if not paths:
        raise UsageError(f"{arg}: the list of files is empty")
    return paths


def _emit(report: Any, args: argparse.Namespace, output: Path | None, plot: Path | None) -> None:
    if args.format in ("per-case", "cityscapes"):
        text = report_json_text(report, args.format)
    elif args.format == "json":
        data = report.to_dict()
        if not args.per_image:
            data["images"] = None
        text = json.dumps(data, indent=1, allow_nan=False) + "\n"
    elif args.format == "csv":
        with tempfile.TemporaryDirectory() as tmp:
            text = report.to_csv(Path(tmp) / "report.csv").read_text(encoding="utf-8")
    else:
        text = str(report) + "\n"
        if args.per_image and report.per_image:
            worst = report.worst(min(10, report.n_images))
            text += "\nworst images by IoU:\n" + "".join(
                f"  {w.id:>12}  {w.score:.4f}\n" for w in worst
            )
    if output is not None:
        if _special(output):  # /dev/stdout, a named pipe: written to, never replaced
            with output.open("w", encoding="utf-8") as f:
                f.write(text)
        else:
            output.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(output, lambda tmp: tmp.write_text(text, encoding="utf-8"))
        log.info("report written to %s", output)
    else:
        sys.stdout.write(text)
    if plot is not None:
        plot.parent.mkdir(parents=True, exist_ok=True)
        report.plot(plot)
        log.info("plot written to %s", plot)


def _special(path: Path) -> bool:
    """An existing target that is neither a regular file nor a directory (device, pipe)."""
    return path.exists() and not path.is_file() and not path.is_dir()


def _output_target(text: str, flag: str = "--output") -> Path:
    """The file `flag` names, checked before any compute: not a directory, and writable.

    Missing parent directories are allowed (they are created when the file is written):
    the nearest existing one must be a directory where a file can be created.
    """
    path = Path(text).expanduser()
    if text.endswith(("/", os.sep)) or path.is_dir():
        raise UsageError(f"{flag} {text}: is a directory; give a file name")
    if _special(path):
        return path
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise UsageError(
            f"{flag} {text}: {ancestor} is a file, not a directory, so the file cannot be "
            "created there"
        )
    try:  # what the atomic writer will do: a temporary file beside the target
        fd, name = tempfile.mkstemp(dir=ancestor, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        raise UsageError(
            f"{flag} {text}: cannot write in {ancestor} ({exc.strerror or exc})"
        ) from None
    return path


def _plot_target(text: str) -> Path:
    """The image file of ``--plot``, checked before any compute.

    A directory (existing, or written with a trailing slash) gets :data:`PLOT_NAME`; the
    suffix must be a format matplotlib writes (none: PNG); matplotlib must be installed.
    """
    path = Path(text).expanduser()
    if text.endswith(("/", os.sep)) or path.is_dir():
        path = path / PLOT_NAME
    try:
        from matplotlib.backend_bases import FigureCanvasBase
    except ImportError:
        raise UsageError(
            "--plot needs matplotlib; install the plot extra: pip install 'fastseg[plot]'"
        ) from None
    supported = FigureCanvasBase.get_supported_filetypes()
    fmt = path.suffix.lstrip(".").lower() or "png"
    if fmt not in supported:
        raise UsageError(
            f"--plot {text}: matplotlib cannot write .{fmt} files; use one of "
            + ", ".join(f".{x}" for x in sorted(supported))
        )
    if _special(path):
        raise UsageError(f"--plot {text}: not a regular file")
    return _output_target(str(path), "--plot")


def _progress_printer(unit: str) -> Callable[[int, int], None]:
    """A ``progress(done, total)`` callback drawing a :class:`fastseg.progress.Progress`."""
    state: dict[str, Progress] = {}

    def show(done: int, total: int) -> None:
        if "bar" not in state:
            state["bar"] = Progress(total, unit=unit)
        bar = state["bar"]
        bar.update(done - bar.done)
        if done >= total:
            bar.close()

    return show


def _run_synth(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    write_dataset(
        args.out,
        images=args.images,
        size=tuple(args.size),
        classes=args.classes,
        dtype=args.dtype,
        chunks=args.chunks,
        class_axis=args.class_axis,
        ignore_index=args.ignore_index,
        seed=args.seed,
        zarr_format=args.zarr_format,
        workers=args.workers,
        overwrite=args.overwrite,
        progress=None if args.no_progress else _progress_printer("image"),
    )
    log.info("wrote %s in %.1f s", args.out, time.perf_counter() - started)
    return 0


def _run_demo(args: argparse.Namespace) -> int:
    """Write the demo's data, evaluate it as ``fastseg evaluate`` does, say how to run it.

    Each part (the Zarr store; with ``--folders`` the Cityscapes-like PNGs and the
    nnU-Net-like NIfTI volumes) is evaluated by parsing the very ``evaluate`` command that
    is printed, the demo's output options appended. Paths are printed only when they
    outlive the command (``--keep``).
    """
    if args.images is not None and args.images < 1:
        raise UsageError(f"--images {args.images}: at least 1 image")
    if args.folders and (args.output is not None or args.plot is not None):
        raise UsageError(
            "fastseg demo --folders prints two reports; --output and --plot take one: run "
            "the 'fastseg evaluate' command it prints with them (and --keep DIR)"
        )
    parts = ["zarr"]
    if args.folders:
        parts = _demo_folder_parts()
    if args.keep is None:
        with tempfile.TemporaryDirectory(prefix="fastseg-demo-") as tmp:
            code = _run_demo_parts(parts, Path(tmp), args, kept=False)
        _say("the data was in a temporary folder, now deleted; --keep DIR keeps it")
    else:
        code = _run_demo_parts(parts, _demo_folder(args.keep, parts), args, kept=True)
    if not args.folders:
        _say("'fastseg demo --folders' does the same with folders of PNG and NIfTI files")
    return code


def _say(text: str) -> None:
    """A line of the demo's narration on stderr, after the report lines written so far."""
    sys.stdout.flush()
    sys.stderr.write(f"fastseg demo: {text}\n")
    sys.stderr.flush()


def _demo_folder_parts() -> list[str]:
    """The parts of ``--folders`` whose readers are installed; a note for each missing one."""
    parts = []
    for part, fmt in (("cityscapes", "png"), ("nnunet", "nifti")):
        try:
            require(fmt)  # Pillow, which also writes the PNGs; nibabel
        except MissingReaderError as exc:
            _say(f"skipping the {'PNG' if fmt == 'png' else 'NIfTI'} folders: {exc}")
        else:
            parts.append(part)
    if not parts:
        raise UsageError(
            "fastseg demo --folders needs a reader of PNG or NIfTI files: pip install "
            "'fastseg[images,nifti]'"
        )
    return parts


def _demo_folder(keep: Path, parts: list[str]) -> Path:
    """The ``--keep`` folder, checked: new, empty, or written by an earlier demo.

    An earlier demo's data of the `parts` about to be written is removed, so that no
    stale file pairs with the new ones (its other parts are kept); a folder holding
    anything else is refused, never emptied.
    """
    root = keep.expanduser()
    if root.exists() and not root.is_dir():
        raise UsageError(f"--keep {keep}: is a file, not a folder")
    if root.is_dir() and any(root.iterdir()):
        if not (root / DEMO_MARK).is_file():
            raise UsageError(
                f"--keep {keep}: the folder holds files fastseg demo did not write; give a "
                "new or empty folder"
            )
        for part in parts:
            old = root / _DEMO_NAMES[part]
            if old.is_dir() and not old.is_symlink():
                shutil.rmtree(old)
            elif old.exists() or old.is_symlink():
                old.unlink()
    root.mkdir(parents=True, exist_ok=True)
    (root / DEMO_MARK).write_text(
        "Written by 'fastseg demo --keep'; a later demo with this folder replaces "
        + ", ".join(DEMO_PARTS)
        + ".\n",
        encoding="utf-8",
    )
    return root


def _demo_data(part: str, root: Path, args: argparse.Namespace) -> tuple[str, list[str], list[str]]:
    """Write one part's data under `root`.

    Returns what it is, the ``evaluate`` arguments that score it, and those arguments for
    data of one's own (the same options, the paths of the usual layout).
    """
    defaults = DEMO_FOLDERS if args.folders else DEMO_ZARR
    images = defaults[0] if args.images is None else args.images
    h, w = defaults[1] if args.size is None else args.size
    classes = defaults[2] if args.classes is None else args.classes
    if part == "zarr":
        path = str(root / "demo.zarr")
        write_dataset(path, images=images, size=(h, w), classes=classes)
        said = (
            f"{images} synthetic images of {h}x{w}, {classes} classes (float16 scores, class "
            f"{classes - 1} never present, an ignore region labelled 255) in a Zarr store"
        )
        ignore = ["--ignore-index", "255"]  # also the store's attribute; not your store's
        return (said, ["--true", path, "--pred", path, *ignore],
                ["--true", "labels.zarr", "--pred", "preds.zarr", *ignore])
    if part == "cityscapes":
        folder = root / "cityscapes"
        write_cityscapes(folder, images, (h, w), background=ROAD)
        said = (
            f"{images} Cityscapes-like images of {h}x{w}: truth labelIds PNGs in city "
            "folders (gtFine/val/<city>/*_gtFine_labelIds.png), predictions in labelIds "
            "(results/*_leftImg8bit.png); void ids are ignored"
        )
        run = ["--true", str(folder / "gtFine" / "val"), "--pred", str(folder / "results"),
               "--dataset", "cityscapes"]  # fmt: skip
        return said, run, ["--true", "gtFine/val/", "--pred", "results/", "--dataset", "cityscapes"]
    folder = root / "nnunet"
    write_nnunet(folder, images, DEMO_VOLUME, classes=classes)
    said = (
        f"{images} nnU-Net-like volumes of up to {' x '.join(map(str, DEMO_VOLUME))} "
        f"voxels, {classes} classes: truth and predicted NIfTI files of one name "
        "(labelsTs/case_0000.nii.gz, pred/case_0000.nii.gz) and dataset.json"
    )
    run = ["--true", str(folder / "labelsTs"), "--pred", str(folder / "pred"), "--dataset",
           str(folder / "dataset.json")]  # fmt: skip
    return said, run, ["--true", "labelsTs/", "--pred", "nnUNet_predictions/", "--dataset",
                       "Dataset001/dataset.json"]  # fmt: skip


def _demo_flags(args: argparse.Namespace) -> list[str]:
    """The demo's output options, as ``fastseg evaluate`` flags."""
    flags = []
    if args.preset is not None:
        flags += ["--preset", args.preset]
    if args.exclude_class is not None:
        flags += ["--exclude-class", *args.exclude_class]
    if args.per_image:
        flags.append("--per-image")
    if args.format != "table":
        flags += ["--format", args.format]
    if args.output is not None:
        flags += ["--output", args.output]
    if args.plot is not None:
        flags += ["--plot", args.plot]
    if args.no_progress:
        flags.append("--no-progress")
    if args.verbose:
        flags.append("-v")
    return flags


def _run_demo_parts(parts: list[str], root: Path, args: argparse.Namespace, kept: bool) -> int:
    code = 0
    for part in parts:
        said, run, yours = _demo_data(part, root, args)
        _say(said + (f", in {root / _DEMO_NAMES[part]}" if kept else ""))
        flags = _demo_flags(args)
        argv = ["evaluate", *run, *flags]
        evaluate_args = _parser().parse_args(argv)
        code = max(code, _run_evaluate(evaluate_args))
        if kept:
            _say(f"to run it again: {shlex.join(['fastseg', *argv])}")
        _say(f"on your own data: {shlex.join(['fastseg', 'evaluate', *yours, *flags])}")
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or bad usage (2)
        return int(exc.code or 0)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="fastseg: %(message)s",
        stream=sys.stderr,
    )
    try:
        if args.command == "evaluate":
            return _run_evaluate(args)
        if args.command == "demo":
            return _run_demo(args)
        return _run_synth(args)
    except ChunkReadError as exc:
        sys.stderr.write(f"fastseg: error: {_cli_words(_one_line(exc))}\n")
        return 1
    except (
        UsageError,
        ValueError,
        TypeError,
        FileExistsError,
        FileNotFoundError,
        MissingChunksError,
        MissingReaderError,
        SchedulerConnectionError,
    ) as exc:
        sys.stderr.write(f"fastseg: error: {_cli_words(_one_line(exc))}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("fastseg: interrupted\n")
        return 130
    except Exception as exc:
        sys.stderr.write(f"fastseg: failed: {type(exc).__name__}: {_cli_words(_one_line(exc))}\n")
        if args.verbose:
            raise
        return 1


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


#: Python parameter names that have no flag of the same name.
_RENAMED = {"exclude": "--exclude-class", "y_pred": "PRED", "y_true": "TRUE"}


def _flags() -> dict[str, str]:
    """Python parameter name -> CLI spelling, from the parsers' own long options."""
    flags: dict[str, str] = {}
    parser = _parser()
    for action in parser._actions:  # the subcommands and their options
        for sub in getattr(action, "choices", None) or {}:
            sub_parser = action.choices[sub]  # type: ignore[index]
            for option in getattr(sub_parser, "_actions", ()):
                for string in option.option_strings:
                    if string.startswith("--") and string not in ("--help", "--version"):
                        flags.setdefault(string[2:].replace("-", "_"), string)
    return flags | _RENAMED


def _cli_words(message: str) -> str:
    """`message` with the library's parameter names spelled as the CLI's flags.

    ``num_classes=21`` becomes ``--num-classes 21`` (a quoted value loses its quotes),
    a name with an underscore becomes its flag wherever it stands (``class_axis`` ->
    ``--class-axis``) unless it names a store attribute, other names only before ``=``
    (``workers=0``), ``exclude:`` is ``--exclude-class:``, and ``y_pred`` / ``y_true``
    are the positional ``PRED`` / ``TRUE``.
    """
    flags = _flags()
    names = "|".join(sorted(map(re.escape, flags), key=len, reverse=True))

    def valued(m: re.Match[str]) -> str:
        value = m.group(2)
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        return f"{flags[m.group(1)]} {value}"

    message = re.sub(rf"(?<![\w-])({names})=('[^']*'|\"[^\"]*\"|[^\s,;:)]+)", valued, message)
    message = re.sub(r"(?<![\w-])exclude:", f"{flags['exclude']}:", message)
    bare = "|".join(re.escape(k) for k in sorted(flags, key=len, reverse=True) if "_" in k)
    # not a store attribute of that name ("the truth store's ignore_index attribute")
    return re.sub(
        rf"(?<![\w\-./'])({bare})(?![\w/]| attribute)", lambda m: flags[m.group(1)], message
    )


if __name__ == "__main__":
    sys.exit(main())

"""Markdown table of the issue-2 benchmarks, from pytest-benchmark JSON and memory figures.

Usage::

    python -m pytest benchmarks --benchmark-json=/tmp/bench.json -q
    python benchmarks/memory.py --json /tmp/mem.json
    python scripts/bench_table.py /tmp/bench.json --memory /tmp/mem.json [--stat min]

Several JSON files (runs of the same suite) may be given: each entry then takes the
best (lowest) value of the statistic over the runs, which filters out runs disturbed by
other processes on a shared machine.

Entries are recognised by the ``extra_info`` that ``benchmarks/test_throughput.py`` sets
(workload, layout, method). Times are in ms, of the chosen statistic (default: min over
the rounds, the least noisy figure on a shared machine). Columns:

* ratio fastseg / read: how far fastseg is from a bare parallel read of the scores;
* speed-up vs bincount: NumPy argmax + bincount time / fastseg time;
* speed-up vs reference (voc channels-last only): the post's ``mean_iou_np`` / fastseg,
  both on the same first 2 images (reference run once; fastseg ``mean_iou`` on the
  same one-hot inputs, and in brackets ``counts`` on the label map);
* extra memory: fastseg's peak RSS growth during the call (``benchmarks/memory.py``).

Then, when their entries are present: the Accumulator overhead and out-of-core tables,
and the label-map table (``benchmarks/test_label_map_tally.py``: fastseg against a parallel
read of both maps plus a one-map histogram, and against ``np.bincount``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

WORKLOAD_ORDER = ("voc", "ade", "ade16", "cityscapes", "volume")
LAYOUT_ORDER = ("channels_last", "channels_first")


def load_times(paths: list[str], stat: str) -> tuple[dict, dict]:
    """Return ({(workload, layout, method): seconds}, {meta}) from pytest-benchmark JSONs.

    Over several files, the lowest value of each entry is kept.
    """
    times: dict[tuple[str, str, str], float] = {}
    meta: dict[str, str] = {}
    for path in paths:
        data = json.loads(Path(path).read_text())
        _merge(times, data, stat)
        cpu = (data.get("machine_info") or {}).get("cpu", {})
        meta = {
            "datetime": data.get("datetime", "?"),
            "cpu": cpu.get("brand_raw", "?"),
            "cores": cpu.get("count", "?"),
        }
    return times, meta


def _merge(times: dict, data: dict, stat: str) -> None:
    for b in data["benchmarks"]:
        info = b.get("extra_info") or {}
        if not {"workload", "layout", "method"} <= info.keys():
            continue
        key = (info["workload"], info["layout"], info["method"])
        if b.get("group", "").endswith("-sub2"):
            key = (info["workload"], info["layout"], "sub2_" + info["method"])
        value = float(b["stats"][stat])
        times[key] = min(value, times.get(key, value))


def load_memory(path: str | None) -> dict[tuple[str, str], float]:
    """{(workload, layout): fastseg extra MiB} from benchmarks/memory.py's JSON."""
    if not path:
        return {}
    rows = json.loads(Path(path).read_text())
    return {(r["workload"], r["layout"]): float(r["fastseg_extra_mib"]) for r in rows}


def _ms(t: float | None) -> str:
    if t is None:
        return "-"
    return f"{t * 1e3:.1f}" if t < 10 else f"{t * 1e3:.0f}"


def _x(num: float | None, den: float | None, fmt: str = "{:.1f}x") -> str:
    if num is None or den is None or den == 0:
        return "-"
    return fmt.format(num / den)


def table(times: dict, memory: dict) -> str:
    """The Markdown table."""
    head = (
        "| workload | layout | fastseg ms | read ms | fastseg / read | bincount ms "
        "| speed-up vs bincount | speed-up vs reference | extra memory MiB |"
    )
    lines = [head, "|" + "---|" * 2 + "---:|" * 7]
    workloads = [w for w in WORKLOAD_ORDER if any(k[0] == w for k in times)]
    for w in workloads:
        for layout in LAYOUT_ORDER:
            get = times.get
            f, r, b = (get((w, layout, m)) for m in ("fastseg", "read", "bincount"))
            if f is None and r is None and b is None:
                continue
            ref = get((w, layout, "sub2_reference"))
            if ref is None:
                vs_ref = "-"
            else:
                vs_ref = _x(ref, get((w, layout, "sub2_fastseg_mean_iou")), "{:.0f}x")
                counts = _x(ref, get((w, layout, "sub2_fastseg")), "{:.0f}x")
                vs_ref = f"{vs_ref} ({counts})"
            mem = memory.get((w, layout))
            lines.append(
                f"| {w} | {layout} | {_ms(f)} | {_ms(r)} | {_x(f, r, '{:.2f}')} | {_ms(b)} "
                f"| {_x(b, f)} | {vs_ref} | {'-' if mem is None else f'{mem:.1f}'} |"
            )
    return "\n".join(lines)


def stream_and_zarr_tables(times: dict) -> str:
    """Tables of issues 3 and 4: Accumulator overhead, out-of-core evaluate vs read."""
    lines = []
    kernel = times.get(("stream-voc", "channels_last", "kernel"))
    acc = times.get(("stream-voc", "channels_last", "accumulator"))
    if kernel and acc:
        lines += [
            "| stream (voc, 4 batches of 2) | kernel ms | Accumulator ms | overhead |",
            "|---|---:|---:|---:|",
            f"| channels_last | {_ms(kernel)} | {_ms(acc)} | {(acc / kernel - 1) * 100:+.1f} % |",
            "",
        ]
    rows = []
    for layout in LAYOUT_ORDER:
        read = times.get(("zarr", layout, "read"))
        ev = times.get(("zarr", layout, "evaluate"))
        if read and ev:
            rows.append(f"| {layout} | {_ms(read)} | {_ms(ev)} | {ev / read:.2f} "
                        f"| {(1 - read / ev) * 100:.0f} % |")  # fmt: skip
    if rows:
        lines += [
            "| Zarr float16 store | read + decompress ms | evaluate ms | evaluate / read "
            "| compute share |",
            "|---|---:|---:|---:|---:|",
            *rows,
        ]
    return "\n".join(lines)


def label_map_table(times: dict) -> str:
    """Table of issue 11's label maps: fastseg against the read + histogram floor."""
    rows = []
    for pattern in ("random", "blocky"):
        f, r, h, b = (times.get(("labels", pattern, m)) for m in ("fastseg", "read", "hist",
                                                                    "bincount"))  # fmt: skip
        if f is None:
            continue
        floor = None if r is None or h is None else r + h
        rows.append(f"| {pattern} | {_ms(f)} | {_ms(r)} | {_ms(h)} | {_x(f, floor, '{:.2f}')} "
                    f"| {_ms(b)} | {_x(b, f)} |")  # fmt: skip
    if not rows:
        return ""
    return "\n".join([
        "| label maps (16 x 1024 x 2048 uint8, 19 classes) | fastseg ms | read both ms "
        "| histogram ms | fastseg / (read + histogram) | bincount ms | speed-up vs bincount |",
        "|---|---:|---:|---:|---:|---:|---:|",
        *rows,
    ])  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Print the table to stdout."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("json", nargs="+", help="pytest-benchmark JSON(s) (--benchmark-json=FILE)")
    p.add_argument("--memory", help="JSON written by benchmarks/memory.py --json")
    p.add_argument("--stat", default="min", choices=("min", "median", "mean", "max"))
    args = p.parse_args(argv)
    times, meta = load_times(args.json, args.stat)
    if not times:
        print(f"no issue-2 benchmarks found in {' '.join(args.json)}", file=sys.stderr)
        return 1
    memory = load_memory(args.memory)
    runs = f", best of {len(args.json)} runs" if len(args.json) > 1 else ""
    print(table(times, memory))
    print()
    for extra in (stream_and_zarr_tables(times), label_map_table(times)):
        if extra:
            print(extra)
            print()
    print(
        f"Times: {args.stat} over the rounds{runs}, ms; {meta['cpu']}, {meta['cores']} cores, "
        f"last run {meta['datetime']}. Reference speed-up: voc first 2 images, post's mean_iou_np "
        f"(1 round) / fastseg.mean_iou on the same one-hot inputs (in brackets: / "
        f"fastseg.counts on the label map). Extra memory: peak RSS growth of one "
        f"fastseg.counts call beyond its inputs."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

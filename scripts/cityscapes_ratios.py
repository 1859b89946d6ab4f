"""Ratios of the Cityscapes folder benchmark, from pytest-benchmark JSON.

Usage::

    python -m pytest benchmarks/test_cityscapes_folder.py --benchmark-enable \\
        -p no:randomly --benchmark-json=cs.json
    python scripts/cityscapes_ratios.py cs.json [more.json ...] [--stat median]

Reads the entries of group ``cityscapes-folder`` (``benchmarks/test_cityscapes_folder.py``:
``official``, ``fastseg``, ``decode-floor``, ``decode-floor-fastseg``,
``fastseg-in-process``) and prints their times
(whole, and per image), then the issue's ratios and whether their targets are met:

* official / fastseg, the speed-up of the command over cityscapesScripts' evaluator, both
  whole processes (target >= 5x on 2 cores);
* fastseg / decode-floor, the command against a process that only decodes the PNGs on as
  many threads (target <= 1.3);
* the start-up share: fastseg (a process) minus fastseg-in-process (a call), and the
  in-process call against the floor.

With several files (runs of the same benchmark) each entry takes its lowest value of the
statistic over the runs. Default statistic: the median over the rounds (every round is a
whole process, so its wall time is what a user waits).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

GROUP = "cityscapes-folder"
METHODS = ("official", "fastseg", "fastseg-in-process", "decode-floor", "decode-floor-fastseg")
SPEEDUP_TARGET = 5.0
FLOOR_TARGET = 1.3


def load(paths: list[str], stat: str) -> tuple[dict[str, float], dict[str, object]]:
    """({method: seconds}, facts of the run) from pytest-benchmark JSON files."""
    times: dict[str, float] = {}
    facts: dict[str, object] = {}
    for path in paths:
        data = json.loads(Path(path).read_text())
        for bench in data.get("benchmarks", []):
            info = bench.get("extra_info") or {}
            if bench.get("group") != GROUP or info.get("method") not in METHODS:
                continue
            value = float(bench["stats"][stat])
            times[info["method"]] = min(value, times.get(info["method"], value))
            rounds = bench["stats"].get("rounds")
            facts.update({k: info[k] for k in ("images", "size", "threads") if k in info})
            if "official_csupport" in info:
                facts["official_csupport"] = info["official_csupport"]
            facts[f"rounds {info['method']}"] = rounds
        cpu = (data.get("machine_info") or {}).get("cpu", {})
        facts.update(datetime=data.get("datetime", "?"), cpu=cpu.get("brand_raw", "?"),
                     cores=cpu.get("count", "?"))  # fmt: skip
    return times, facts


def report(times: dict[str, float], facts: dict[str, object], stat: str, runs: int) -> str:
    """The table and the ratios, as Markdown."""
    images = int(facts.get("images", 0) or 0)
    lines = [
        f"Cityscapes folder: {images} images of {facts.get('size', '?')}, "
        f"{facts.get('threads', '?')} threads; {facts['cpu']}, {facts['cores']} cores; "
        f"{stat} over the rounds"
        + (f", best of {runs} runs" if runs > 1 else "")
        + f"; last run {facts['datetime']}",
        "",
        "| method | s | ms per image | rounds |",
        "|---|---:|---:|---:|",
    ]
    for method in METHODS:
        t = times.get(method)
        if t is None:
            continue
        per = f"{t * 1e3 / images:.1f}" if images else "-"
        lines.append(f"| {method} | {t:.3f} | {per} | {facts.get(f'rounds {method}', '?')} |")
    lines.append("")
    get = times.get
    official, command, call, floor, own = (get(m) for m in METHODS)
    if official and command:
        speedup = official / command
        verdict = "met" if speedup >= SPEEDUP_TARGET else "NOT met"
        lines.append(f"- official / fastseg: {speedup:.1f}x (target >= {SPEEDUP_TARGET:g}x: "
                     f"{verdict})")  # fmt: skip
    if command and floor:
        ratio = command / floor
        verdict = "met" if ratio <= FLOOR_TARGET else "NOT met"
        lines.append(f"- fastseg / decode-floor: {ratio:.2f} (target <= {FLOOR_TARGET:g}: "
                     f"{verdict})")  # fmt: skip
    if command and call:
        start = command - call
        lines.append(f"- start-up share: fastseg - fastseg-in-process = {start:.3f} s "
                     f"({100 * start / command:.0f} % of fastseg)")  # fmt: skip
    if call and floor:
        lines.append(f"- fastseg-in-process / decode-floor: {call / floor:.2f} (no start-up "
                     "on fastseg's side; the floor still a whole process)")  # fmt: skip
    if official and floor:
        lines.append(f"- official / decode-floor: {official / floor:.1f}x")
    if command and own:
        lines.append(f"- fastseg / decode-floor-fastseg: {command / own:.2f} (the floor of "
                     "fastseg's own PNG decoder, a whole process)")  # fmt: skip
    if facts.get("official_csupport") is False:
        lines.append("- the official evaluator ran without its Cython extension "
                     "(CSUPPORT False: NumPy's np.unique path)")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Print the table and ratios to stdout."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("json", nargs="+", help="pytest-benchmark JSON(s) (--benchmark-json=FILE)")
    p.add_argument("--stat", default="median", choices=("min", "median", "mean", "max"))
    args = p.parse_args(argv)
    times, facts = load(args.json, args.stat)
    if not times:
        print(f"no {GROUP} benchmarks found in {' '.join(args.json)}", file=sys.stderr)
        return 1
    print(report(times, facts, args.stat, len(args.json)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

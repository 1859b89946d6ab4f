"""Extra peak memory of fastseg.counts (and of the NumPy bincount idiom) per workload.

tracemalloc does not see Numba's allocations (NRT), and ``ru_maxrss`` only grows over a
process's life, so each workload x layout is measured in a fresh subprocess:

1. build the inputs (:mod:`workloads`; deterministic, same data as the benchmarks) and,
   for channels-first, drop the channels-last original;
2. compile / load fastseg's kernels on a tiny C-contiguous copy of the same dtype and
   layout, so compilation is not counted;
3. reset the peak RSS to the current RSS (``/proc/self/clear_refs`` 5, Linux >= 4.0),
   run ``fastseg.counts`` on the big input and report ``VmHWM - VmRSS before`` in MiB:
   everything the call made resident beyond its inputs (outputs are a few KiB);
4. the same for the NumPy idiom (argmax + bincount), for comparison.

Children run with glibc's ``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_`` set to
128 KiB: every larger block is mmap-ed and returned to the system when freed, so memory
freed earlier (e.g. generation temporaries) cannot hide a new allocation.

Where the peak cannot be reset, ``ru_maxrss`` growth is reported instead (an under-estimate
when building the inputs peaked higher; the output says which method was used).

``--classes`` measures instead how the extra memory of one ``fastseg.counts`` call grows
with the number of classes and threads (issue 8 section 4): N = 1 000 and 4 000 classes,
``NUMBA_NUM_THREADS`` = 2 and 16, on random int64 label maps (4 x 256 x 256: every cell
of the confusion matrix is likely hit) and channels-first float32 scores (2 x N x 64 x 64)
with int64 truth. It prints the size of the outputs (the N x N confusion matrix and three
B x N rows), the extra peak memory of the call (outputs included) and their ratio. The
fastseg measured is the one the children import: set ``PYTHONPATH`` to the tree to
measure (the output names it).

Usage::

    python benchmarks/memory.py [--json FILE] [--size full|small] [--workloads voc,ade]
    PYTHONPATH=. python benchmarks/memory.py --classes [--json FILE]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
MIB = 2**20
#: glibc tunables of the child processes (see the module docstring).
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "131072", "MALLOC_TRIM_THRESHOLD_": "131072"}


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def _measure(fn, *args) -> tuple[float, str]:
    """Extra peak memory (MiB) of ``fn(*args)`` over the RSS before the call."""
    gc.collect()
    if _reset_peak():
        before = _status_kib("VmRSS")
        fn(*args)
        return (_status_kib("VmHWM") - before) / 1024, "VmHWM"
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    fn(*args)
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024, "ru_maxrss"


def child(name: str, layout: str, size: str) -> dict:
    """Measure one workload x layout in this (fresh) process."""
    sys.path.insert(0, str(HERE))
    import numpy as np
    import workloads

    import fastseg

    truth, scores = workloads.build(name, size)
    if layout == "channels_first":
        scores = workloads.channels_first(scores)
    axis = workloads.class_axis(layout)
    n = scores.shape[axis]
    tiny_t = np.ascontiguousarray(truth[:1, :4])
    tiny_s = np.ascontiguousarray(scores[:1, :4] if axis == -1 else scores[:1, :, :4])
    fastseg.counts(tiny_t, tiny_s, class_axis=axis)  # compile / load from the cache
    workloads.bincount_counts(tiny_t, tiny_s, axis, n)
    inputs = (truth.nbytes + scores.nbytes) / MIB
    rss = _status_kib("VmRSS") / 1024
    t0 = time.perf_counter()
    fastseg_mib, how = _measure(lambda: fastseg.counts(truth, scores, class_axis=axis))
    t1 = time.perf_counter()
    bincount_mib, _ = _measure(workloads.bincount_counts, truth, scores, axis, n)
    return {
        "workload": name,
        "layout": layout,
        "size": size,
        "inputs_mib": round(inputs, 1),
        "rss_before_mib": round(rss, 1),
        "fastseg_extra_mib": round(fastseg_mib, 1),
        "bincount_extra_mib": round(bincount_mib, 1),
        "fastseg_seconds": round(t1 - t0, 3),
        "method": how,
    }


#: (kind, classes, NUMBA_NUM_THREADS) measured by ``--classes``.
CLASS_CASES = [
    (kind, n, threads)
    for kind in ("labels", "channels_first")
    for n in (1000, 4000)
    for threads in (2, 16)
]


def child_classes(kind: str, n: int) -> dict:
    """Extra peak memory of one fastseg.counts call with `n` classes, in this process."""
    import numba
    import numpy as np

    import fastseg

    rng = np.random.default_rng(n)
    if kind == "labels":
        b, shape = 4, (256, 256)
        truth = rng.integers(0, n, (b, *shape))
        pred = rng.integers(0, n, (b, *shape))
        kw: dict = {"num_classes": n}
    else:
        b, shape = 2, (64, 64)
        truth = rng.integers(0, n, (b, *shape))
        pred = rng.random((b, n, *shape), np.float32)
        kw = {"class_axis": 1}
    tiny = (np.ascontiguousarray(truth[:1, :2, :2]), np.ascontiguousarray(pred[:1, ..., :2, :2]))
    fastseg.counts(*tiny, **kw)  # compile / load from the cache, same kernel as below
    outputs = (n * n + 3 * b * n) * 8 / MIB
    extra, how = _measure(lambda: fastseg.counts(truth, pred, **kw))
    return {
        "kind": kind,
        "classes": n,
        "threads": numba.get_num_threads(),
        "images": b,
        "inputs_mib": round((truth.nbytes + pred.nbytes) / MIB, 1),
        "outputs_mib": round(outputs, 1),
        "extra_mib": round(extra, 1),
        "ratio": round(extra / outputs, 2),
        "method": how,
        "fastseg": fastseg.__file__,
    }


def main_classes(json_path: str | None) -> int:
    """One subprocess per CLASS_CASES entry; print a table and optionally write JSON."""
    results = []
    for kind, n, threads in CLASS_CASES:
        cmd = [sys.executable, __file__, "--child-classes", kind, str(n)]
        env = {**os.environ, **MALLOC_ENV, "NUMBA_NUM_THREADS": str(threads)}
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
        r = json.loads(out.strip().splitlines()[-1])
        if not results:
            print(f"fastseg: {r['fastseg']}", flush=True)
        results.append(r)
        print(
            f"{kind:>14} N={n:<5} threads={r['threads']:<3} outputs {r['outputs_mib']:7.1f} MiB  "
            f"extra {r['extra_mib']:8.1f} MiB  ratio {r['ratio']:6.2f}  ({r['method']})",
            flush=True,
        )
    if json_path:
        Path(json_path).write_text(json.dumps(results, indent=1) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run one subprocess per workload x layout; print a table and optionally write JSON."""
    sys.path.insert(0, str(HERE))
    import workloads

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--json", help="write the figures to this JSON file")
    p.add_argument("--size", default=workloads.size_from_env("full"), choices=("full", "small"))
    p.add_argument("--workloads", default=",".join(workloads.NAMES))
    p.add_argument("--classes", action="store_true",
                   help="extra memory at N = 1000 / 4000 classes and 2 / 16 threads")  # fmt: skip
    p.add_argument("--child", nargs=2, metavar=("WORKLOAD", "LAYOUT"), help=argparse.SUPPRESS)
    p.add_argument("--child-classes", nargs=2, metavar=("KIND", "N"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.child:
        print(json.dumps(child(*args.child, args.size)))
        return 0
    if args.child_classes:
        kind, n = args.child_classes
        print(json.dumps(child_classes(kind, int(n))))
        return 0
    if args.classes:
        return main_classes(args.json)

    results = []
    for name in args.workloads.split(","):
        for layout in workloads.LAYOUTS:
            cmd = [sys.executable, __file__, "--size", args.size, "--child", name, layout]
            env = {**os.environ, **MALLOC_ENV}
            out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
            r = json.loads(out.strip().splitlines()[-1])
            results.append(r)
            print(
                f"{name:>10} {layout:<14} inputs {r['inputs_mib']:8.1f} MiB  "
                f"fastseg extra {r['fastseg_extra_mib']:7.1f} MiB  "
                f"bincount extra {r['bincount_extra_mib']:8.1f} MiB  ({r['method']})",
                flush=True,
            )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

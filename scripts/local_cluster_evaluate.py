"""Evaluate a Zarr data set on a dask.distributed LocalCluster, and check it against threads.

The same code path a cluster run takes (``fastseg.evaluate(..., scheduler=client)``), on
worker processes talking over loopback TCP. CI runs it on a small synthetic data set
(``tests/test_scripts.py``); point it at your own store to try a cluster set-up locally.

Usage::

    python scripts/local_cluster_evaluate.py [STORE] [--workers 2] [--images 8]

Without STORE a synthetic data set is written to a temporary folder first. Exits 1 if
the distributed report differs from the threaded one in any number.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from distributed import Client, LocalCluster

import fastseg
from fastseg.synth import write_dataset


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("store", nargs="?", type=Path, help="Zarr group with pred and true")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--images", type=int, default=8, help="synthetic images (default 8)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="fastseg-cluster-") as tmp:
        store = args.store
        if store is None:
            store = Path(tmp) / "data.zarr"
            write_dataset(store, images=args.images, size=(128, 96), classes=7,
                          chunks=(1, 64, 96))  # fmt: skip
        with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                          host="127.0.0.1", dashboard_address=None) as cluster, \
                Client(cluster) as client:  # fmt: skip
            started = time.perf_counter()
            remote = fastseg.evaluate(store, store, ignore_index=255, scheduler=client,
                                      progress=False)  # fmt: skip
            remote_s = time.perf_counter() - started
        started = time.perf_counter()
        local = fastseg.evaluate(store, store, ignore_index=255, progress=False)
        local_s = time.perf_counter() - started

    a, b = remote.to_dict(), local.to_dict()
    same = all(a[k] == b[k] for k in ("summary", "classes", "confusion_matrix", "images"))
    print(remote)
    print(json.dumps({"distributed_s": round(remote_s, 2), "threads_s": round(local_s, 2),
                      "identical": same}))  # fmt: skip
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())

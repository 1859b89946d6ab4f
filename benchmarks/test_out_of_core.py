"""Out-of-core benchmark (issue 4): ``fastseg.evaluate`` on a float16 Zarr store vs reading it.

Group ``zarr-<layout>``, on one synthetic store per layout (``fastseg.synth``):

``read``      Dask reads and decompresses every chunk of both arrays (pred and true) and
              drops it: the floor for any evaluation of the store;
``evaluate``  ``fastseg.evaluate`` on the same store, same scheduler (threads, all cores).

Both run on warm page cache (the store is read once before timing), so the comparison is
decode + count against decode alone. ``scripts/bench_table.py`` reports the ratio and
the compute share ``1 - read / evaluate``.

Sizes: full is 24 images of 1024 x 1024 x 19 float16 (0.9 GiB of scores) per layout;
under ``--benchmark-disable`` 2 images of 64 x 64, run once as a correctness test.
"""

from __future__ import annotations

import numpy as np
import pytest

import fastseg
from fastseg.stores import open_source
from fastseg.synth import write_dataset

LAYOUTS = {"channels_last": -1, "channels_first": 1}
ROUNDS = 5


@pytest.fixture(scope="module", params=list(LAYOUTS))
def store(request, tmp_path_factory, bench_size):
    layout = request.param
    images, size = (24, (1024, 1024)) if bench_size == "full" else (2, (64, 64))
    path = tmp_path_factory.mktemp("ooc") / f"{layout}.zarr"
    write_dataset(path, images=images, size=size, classes=19, dtype="float16",
                  class_axis=LAYOUTS[layout])  # fmt: skip
    return layout, path


def _decode_only(block: np.ndarray) -> np.ndarray:
    return np.full((1,) * block.ndim, block.nbytes, np.int64)


def _read(path) -> int:
    import dask

    totals = []
    for name in ("pred", "true"):
        arr = open_source(path, name).array
        totals.append(arr.map_blocks(_decode_only, chunks=(1,) * arr.ndim, dtype=np.int64).sum())
    return int(sum(dask.compute(*totals, scheduler="threads")))


def _tag(benchmark, layout: str, method: str) -> None:
    benchmark.group = f"zarr-{layout}"
    benchmark.extra_info.update(workload="zarr", layout=layout, method=method)


def test_read(benchmark, store):
    layout, path = store
    _tag(benchmark, layout, "read")
    nbytes = _read(path)  # warm the page cache
    assert benchmark.pedantic(_read, args=(path,), rounds=ROUNDS, iterations=1) == nbytes
    pred = open_source(path, "pred").array
    true = open_source(path, "true").array
    assert nbytes == pred.nbytes + true.nbytes


def test_evaluate(benchmark, store):
    layout, path = store
    _tag(benchmark, layout, "evaluate")

    def run() -> fastseg.Report:
        return fastseg.evaluate(path, path, class_axis=LAYOUTS[layout], ignore_index=255,
                                progress=False)  # fmt: skip

    first = run()  # compile or load the kernel, warm the page cache
    report = benchmark.pedantic(run, rounds=ROUNDS, iterations=1)
    assert report.to_dict()["summary"] == first.to_dict()["summary"]
    true = open_source(path, "true").array.compute()
    assert report.pixels + report.ignored == true.size
    assert report.ignored == int((true == 255).sum())

"""Write the version-1 golden files in this folder (run once, with the fastseg that wrote v1).

These files freeze formats fastseg must keep reading (accumulator and counts version 1) or
must refuse with a clear message (checkpoint version 1). They were written with fastseg
0.1.0 at commit 7462d6d by ``PYTHONPATH=<that checkout> python3 tests/data/make_golden_v1.py``;
do not regenerate them with a newer fastseg. ``tests/test_counts.py`` and
``tests/test_checkpoint.py`` rebuild the same values with :func:`golden_counts`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent


def golden_counts(soft: bool, rows: int = 3, n: int = 4) -> tuple:
    """The (tp, pred, true, confusion, ignored) every golden file holds."""
    rng = np.random.default_rng(2026 + soft)
    if soft:
        tp = rng.random((rows, n))
        return tp, tp + rng.random((rows, n)), tp + rng.random((rows, n)), None, 0
    tp = rng.integers(0, 50, (rows, n))
    pred = tp + rng.integers(0, 50, (rows, n))
    true = tp + rng.integers(0, 50, (rows, n))
    return tp, pred, true, rng.integers(0, 99, (n, n)), 17


def main() -> None:
    import fastseg
    from fastseg.checkpoint import BlockCounts, Checkpoint, save_block

    print("writing with fastseg", fastseg.__version__, "from", fastseg.__file__, file=sys.stderr)
    hard = fastseg.Counts(*golden_counts(False))
    soft = fastseg.Counts(*golden_counts(True))
    hard.save(HERE / "counts_hard_v1.npz")
    soft.save(HERE / "counts_soft_v1.npz")

    acc = fastseg.Accumulator(4, ignore_index=255, class_names=["bg", "road", "car", "sky"])
    acc.add_counts(hard, ids=["a.png", "b.png", "c.png"])
    one = fastseg.Counts(hard.tp[:1], hard.pred[:1], hard.true[:1], np.zeros((4, 4), np.int64))
    acc.add_counts(one)  # an image without an id
    acc.save(HERE / "accumulator_hard_v1.npz")
    totals = fastseg.Accumulator(4, per_image=False, soft=True)
    totals.add_counts(soft)
    totals.save(HERE / "accumulator_soft_totals_v1.npz")

    fingerprint = {"pred": "data.zarr/pred", "true": "data.zarr/true", "ignore_index": 255}
    ckpt = Checkpoint(HERE / "checkpoint_v1", fingerprint)
    tp, pred, true, confusion, ignored = golden_counts(False, rows=1)
    save_block(ckpt.path((0, 0, 0, 0)), BlockCounts(0, tp, pred, true, confusion, ignored))


if __name__ == "__main__":
    main()

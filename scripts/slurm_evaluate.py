"""Evaluate a Zarr data set on a Slurm cluster with dask-jobqueue (batch-job example).

Run it from a login node (or inside a small Slurm job); it submits worker jobs, scores
the stores on them and writes the report. The numbers are bit-identical to a local run
on the same stores: counts are exact integers merged by addition. Needs the
``distributed`` extra (``pip install 'fastseg[distributed]'``) on the login node and the
workers, and stores on a file system every node sees (or an object store URL).

Usage::

    python scripts/slurm_evaluate.py --true TRUE --pred PRED --jobs 8 --cores 16 \
        --memory 64GB --walltime 02:00:00 --queue normal --account myproject \
        --output report.json

    # print the job script that would be submitted, submit nothing:
    python scripts/slurm_evaluate.py --true TRUE --pred PRED --dry-run

Each job runs one worker process per ``--processes`` with ``cores / processes`` threads;
fastseg's kernels release the GIL, so threads share a worker's cores. ``--checkpoint DIR``
(on the shared file system) lets a run cut short by the wall time resume where it
stopped.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--true", required=True, help="truth store (path or URL)")
    p.add_argument("--pred", required=True, help="prediction store (path or URL)")
    p.add_argument("--pred-array", help="array inside the pred group")
    p.add_argument("--true-array", help="array inside the true group")
    p.add_argument(
        "--ignore-index",
        type=int,
        default=None,
        help="truth label to skip (default: the truth store's ignore_index attribute)",
    )
    p.add_argument("--preset", default=None, help="report convention (see README)")
    p.add_argument("--jobs", type=int, default=4, help="Slurm jobs to start (default 4)")
    p.add_argument("--cores", type=int, default=8, help="cores per job (default 8)")
    p.add_argument("--processes", type=int, default=1, help="worker processes per job")
    p.add_argument("--memory", default="16GB", help="memory per job (default 16GB)")
    p.add_argument("--walltime", default="01:00:00", help="wall time per job")
    p.add_argument("--queue", default=None, help="Slurm partition (-p)")
    p.add_argument("--account", default=None, help="Slurm account (-A)")
    p.add_argument("--interface", default=None, help="network interface, e.g. ib0")
    p.add_argument("--checkpoint", type=Path, default=None, help="checkpoint directory")
    p.add_argument("--output", type=Path, default=Path("report.json"), help="report JSON")
    p.add_argument("--dry-run", action="store_true", help="print the job script and stop")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from dask_jobqueue import SLURMCluster
    from distributed import Client

    cluster = SLURMCluster(
        cores=args.cores,
        processes=args.processes,
        memory=args.memory,
        walltime=args.walltime,
        queue=args.queue,
        account=args.account,
        interface=args.interface,
        job_name="fastseg-eval",
    )
    try:
        if args.dry_run:
            print(cluster.job_script())
            return 0
        import fastseg

        cluster.scale(jobs=args.jobs)
        with Client(cluster) as client:
            client.wait_for_workers(1, timeout=1800)
            report = fastseg.evaluate(
                args.true, args.pred, pred_array=args.pred_array, true_array=args.true_array,
                ignore_index="store" if args.ignore_index is None else args.ignore_index,
                scheduler=client, checkpoint=args.checkpoint,
                preset=args.preset,
            )  # fmt: skip
        report.to_json(args.output)
        print(report)
        print(f"report written to {args.output}")
        return 0
    finally:
        cluster.close()


if __name__ == "__main__":
    sys.exit(main())

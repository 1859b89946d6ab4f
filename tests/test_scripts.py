"""The example scripts run: the LocalCluster evaluation, and the Slurm job script."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_local_cluster_evaluation_matches_threads():
    pytest.importorskip("distributed")
    run = _run(str(SCRIPTS / "local_cluster_evaluate.py"), "--images", "4")
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout.strip().splitlines()[-1])
    assert summary["identical"] is True
    assert "mIoU" in run.stdout


def test_slurm_script_writes_a_job_script():
    pytest.importorskip("dask_jobqueue")
    run = _run(str(SCRIPTS / "slurm_evaluate.py"), "--true", "t.zarr", "--pred", "p.zarr",
               "--dry-run",
               "--queue", "gpu", "--account", "proj", "--cores", "16")  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "#SBATCH -p gpu" in run.stdout
    assert "#SBATCH -A proj" in run.stdout
    assert "--cpus-per-task=16" in run.stdout

"""Snakemake on Batch: the demo pipeline over BENCH_SAMPLES samples, each Snakemake job a Batch task job on
the embedded local stack (the real orchestrator, executor plugin, storage plugin and local Batch service),
against the same bundle with every job inside the head VM (ARC_SNAKEMAKE_EXECUTOR=local), and against the
floor: Snakemake running the same jobs directly on local files (no stack, no storage, no Batch, --cores 2).

Figures: wall seconds from POST /runs to the run's end, per mode (median of BENCH_REPEAT runs); the task
jobs created; what the fan-out adds per task job ((batch - floor) / task jobs); `ratio_to_floor` =
floor / batch and `local_ratio_to_floor` = floor / local; and whether the three summaries are identical.
On this machine every "VM" shares its 2 cores, so the fan-out cannot win here: the figure to watch is the
overhead per task job (a Snakemake process per job, the context fetch, the storage round trips, Batch's
queueing), which a real Batch run pays once per VM. One JSON line."""

from __future__ import annotations

import csv
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "functions"))
os.environ["NO_GCE_CHECK"] = "true"

SAMPLES = int(os.environ.get("BENCH_SAMPLES", "12"))
REPEAT = int(os.environ.get("BENCH_REPEAT", "3"))
PIPELINE = ROOT / "examples" / "pipelines" / "fastq-stats"
DATA = ROOT / "examples" / "data"


def samplesheet(prefix: str) -> str:
    """SAMPLES rows over the demo's three FASTQ pairs (`prefix` is where they are: gs:// or a folder)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["sample", "fastq_1", "fastq_2"])
    for i in range(SAMPLES):
        k = i % 3 + 1
        writer.writerow([f"s{i:03d}", f"{prefix}/sample{k}_R1.fastq.gz", f"{prefix}/sample{k}_R2.fastq.gz"])
    return out.getvalue()


def floor_run() -> tuple[float, bytes]:
    """Snakemake on local files, in a fresh folder: the same jobs, nothing else."""
    with tempfile.TemporaryDirectory(prefix="arc-bench-floor-") as tmp:
        work = Path(tmp)
        (work / "samplesheet.csv").write_text(samplesheet(str(DATA)), encoding="utf-8")
        (work / "params.yaml").write_text(
            "input: samplesheet.csv\noutdir: results\nmin_quality: 20\n", encoding="utf-8"
        )
        argv = [
            sys.executable, "-m", "snakemake", "--snakefile", str(PIPELINE / "Snakefile"), "--directory",
            str(work), "--configfile", str(work / "params.yaml"), "--cores", "2", "--quiet", "all",
        ]  # fmt: skip
        started = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True)
        return time.perf_counter() - started, (work / "results" / "summary.tsv").read_bytes()


def stack_run(session: Any, base: str, sheet: str) -> tuple[float, str, str]:
    """One run through the API: (seconds to its end, final status, run id)."""
    body = {"pipeline": "arc/fastq-stats", "samplesheet": sheet, "params": {"min_quality": 20}}
    started = time.perf_counter()
    resp = session.post(f"{base}/runs", json=body, timeout=30)
    resp.raise_for_status()
    run_id = resp.json()["id"]
    deadline = started + 600
    status = ""
    while time.perf_counter() < deadline:
        status = session.get(f"{base}/runs/{run_id}", timeout=10).json()["status"]
        if status in ("completed", "failed", "cancelled"):
            break
        time.sleep(0.05)
    return time.perf_counter() - started, status, run_id


def main() -> None:
    import requests
    from _parts import throwaway_dir

    from arc_reactor.core.ids import job_id_of
    from arc_reactor.core.labels import run_label_filter
    from arc_reactor.local.demo import upload_demo_data
    from arc_reactor.local.stack import LocalStack
    from arc_reactor.settings import get_settings
    from arc_reactor.wiring import get_deps, reset_deps

    floors = [floor_run() for _ in range(REPEAT)]
    floor_s = statistics.median(t for t, _ in floors)
    state = throwaway_dir("arc-bench-fanout-")
    stack = LocalStack(state_dir=state, persistent_storage=False).start()
    figures: dict[str, Any] = {}
    try:
        upload_demo_data(stack)
        session = requests.Session()
        session.trust_env = False
        base = stack.url("runs_api").rstrip("/")
        sheet = samplesheet("gs://arc-demo-data/fastq")
        storage = get_deps().storage
        summaries: dict[str, bytes | None] = {}
        for mode in ("batch", "local"):
            os.environ["ARC_SNAKEMAKE_EXECUTOR"] = mode
            get_settings.cache_clear()
            reset_deps()
            runs = [stack_run(session, base, sheet) for _ in range(REPEAT)]
            figures[f"{mode}_s"] = round(statistics.median(t for t, _, _ in runs), 3)
            figures[f"{mode}_failed_runs"] = sum(status != "completed" for _, status, _ in runs)
            run_id = runs[-1][2]
            summaries[mode] = storage.read_bytes("arc-runs", f"runs/{run_id}/results/summary.tsv")
            jobs = get_deps().batch.list_jobs(run_label_filter(run_id))
            figures[f"{mode}_task_jobs"] = sum(job_id_of(j.name).startswith("smk-") for j in jobs)
        os.environ.pop("ARC_SNAKEMAKE_EXECUTOR", None)
    finally:
        stack.stop()
    task_jobs = figures["batch_task_jobs"] or 1
    print(
        json.dumps(
            {
                "bench": "snakemake_fanout",
                "samples": SAMPLES,
                "repeat": REPEAT,
                **figures,
                "floor_s": round(floor_s, 3),
                "overhead_per_task_job_s": round((figures["batch_s"] - floor_s) / task_jobs, 3),
                "ratio_to_floor": round(floor_s / figures["batch_s"], 3),
                "local_ratio_to_floor": round(floor_s / figures["local_s"], 3),
                "results_identical": summaries["batch"] == summaries["local"] == floors[0][1],
                "cores": os.cpu_count(),
            }
        )
    )


if __name__ == "__main__":
    main()

"""Where a run's files live in the runs bucket (pure).

gs://<runs>/runs/<run_id>/inputs/      samplesheet.csv, params.yaml, nextflow.config   (permanent)
gs://<runs>/runs/<run_id>/results/     pipeline outputs                               (permanent)
gs://<runs>/runs/<run_id>/logs/        nextflow.log / snakemake.log, trace, timeline, report (permanent)
gs://<runs>/work/<lineage_id>/         engine work dir; the bucket's lifecycle deletes it after 30 days
gs://<runs>/cache/<lineage_id>/        engine resume cache (NXF_CLOUDCACHE_PATH)       (permanent)

The work dir sits under its own top-level prefix because a GCS lifecycle rule matches object names by
prefix only (`matchesPrefix` cannot wildcard `runs/*/work/`). A recovery run shares its parent's work
dir and cache, so both are keyed by the lineage id: the id of the first run in a chain of recoveries.
"""

from __future__ import annotations

from dataclasses import dataclass

WORK_PREFIX = "work/"
CACHE_PREFIX = "cache/"
RUNS_PREFIX = "runs/"
INPUT_FILES = ("samplesheet.csv", "params.yaml", "nextflow.config")


@dataclass(frozen=True)
class RunLocations:
    """The gs:// locations of one run."""

    inputs: str
    results: str
    logs: str
    work_dir: str
    cache_dir: str


def run_locations(runs_bucket: str, run_id: str, lineage_id: str | None = None) -> RunLocations:
    """Locations for a run; a recovery passes its lineage id so it reuses the parent's work dir and cache."""
    lineage = lineage_id or run_id
    base = f"gs://{runs_bucket}/{RUNS_PREFIX}{run_id}"
    return RunLocations(
        inputs=f"{base}/inputs/",
        results=f"{base}/results/",
        logs=f"{base}/logs/",
        work_dir=f"gs://{runs_bucket}/{WORK_PREFIX}{lineage}/",
        cache_dir=f"gs://{runs_bucket}/{CACHE_PREFIX}{lineage}/",
    )


def hook_marker_name(run_id: str) -> str:
    """The runs-bucket object where the orchestrator's hook leaves the outcome it could not record (the
    database was unreachable past its retries); reconcile applies it when Batch reports the job failed."""
    return f"{RUNS_PREFIX}{run_id}/hook-status.json"


def split_gs_uri(uri: str) -> tuple[str, str]:
    """Split gs://bucket/name into (bucket, name); raise ValueError on anything else."""
    if not uri.startswith("gs://"):
        raise ValueError(f"not a gs:// URI: {uri!r}")
    bucket, _, name = uri[5:].partition("/")
    if not bucket:
        raise ValueError(f"gs:// URI without a bucket: {uri!r}")
    return bucket, name

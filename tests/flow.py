"""Helpers for integration tests: real functions-framework apps, CloudEvents, bundles in the emulator."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import requests
from cloudevents.conversion import to_binary
from cloudevents.http import CloudEvent

ROOT = Path(__file__).resolve().parents[1]
MAIN = ROOT / "functions" / "main.py"
DEMO_BUNDLE = ROOT / "examples" / "demo-bundle"
DEMO_DATA = ROOT / "examples" / "data"


def function_client(target: str, signature: str = "cloudevent"):
    """A test client of the real functions-framework app for an entry point of functions/main.py."""
    from functions_framework import create_app

    return create_app(target, str(MAIN), signature).test_client()


def binary_event(attrs: dict, data: dict) -> tuple[dict, bytes]:
    """Headers and body of a binary-mode CloudEvent."""
    return to_binary(CloudEvent(attrs, data))


def upload_bundle(
    gcs, submission: str, files: dict[str, bytes] | None = None, bucket: str = "arc-inbox"
) -> str:
    """Upload a bundle (default: the demo bundle), the manifest last; return the manifest name."""
    files = files or {p.name: p.read_bytes() for p in DEMO_BUNDLE.iterdir() if p.is_file()}
    for name in sorted(files, key=lambda n: n == "run.yaml"):
        gcs.write_bytes(bucket, f"{submission}/{name}", files[name])
    return f"{submission}/run.yaml"


def upload_demo_data(gcs) -> None:
    """The demo FASTQ files, where the demo samplesheet names them."""
    for path in sorted(DEMO_DATA.glob("*.fastq.gz")):
        gcs.upload_file(path, f"gs://arc-demo-data/fastq/{path.name}")


def finalize_event(
    gcs, name: str, bucket: str = "arc-inbox", time: datetime | None = None
) -> tuple[dict, bytes]:
    """The finalize CloudEvent Eventarc would send for the object as it is now."""
    from arc_reactor.core.events import storage_cloudevent

    info = gcs.stat(bucket, name)
    obj = {
        "bucket": bucket,
        "name": name,
        "generation": str(info.generation),
        "size": str(info.size),
        "timeCreated": (time or datetime.now(UTC)).isoformat(),
    }
    attrs, data = storage_cloudevent(obj)
    attrs["time"] = obj["timeCreated"]
    return binary_event(attrs, data)


def run_row(run_id: str, **extra: object) -> dict:
    """The columns of a minimal demo-pipeline run, for tests that insert runs with runs_repo.insert_run."""
    return {
        "id": run_id, "pipeline": "arc/fastq-stats", "revision": "1.0.0", "engine": "snakemake",
        "lineage_id": run_id, "work_dir": "gs://w/", "cache_dir": "gs://c/", "inputs_uri": "gs://i/",
        "results_uri": "gs://r/", "logs_uri": "gs://l/", **extra,
    }  # fmt: skip


# --- the served local stack (LocalStack) ----------------------------------------------------------------


def http_session():
    """A requests session that ignores proxy settings (everything is on loopback)."""
    session = requests.Session()
    session.trust_env = False
    return session


def wait_until_ended(session, base, run_id, timeout=120.0, progress=None):
    """Follow the run's SSE stream until its `end` message; the final status. `progress`, a list, gets the
    data of every `progress` event."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        headers = {"Last-Event-ID": last} if last else {}
        with session.get(
            f"{base}/runs/{run_id}/events", headers=headers, stream=True, timeout=(5, 30)
        ) as resp:
            assert resp.status_code == 200
            event = None
            for line in resp.iter_lines(chunk_size=1, decode_unicode=True):
                if line.startswith("id: "):
                    last = line[4:]
                elif line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: ") and event == "end":
                    return json.loads(line[6:])["status"]
                elif line.startswith("data: ") and event == "progress" and progress is not None:
                    progress.append(json.loads(line[6:]))
    raise AssertionError(f"run {run_id} did not end in {timeout} s")


def demo_body(**params):
    from arc_reactor.local.demo import DEMO_BUNDLE

    return {
        "pipeline": "arc/fastq-stats",
        "samplesheet": (DEMO_BUNDLE / "samplesheet.csv").read_text(),
        "params": {"min_quality": 20, **params},
    }


def task_jobs(stack, run_id):
    """The run's Snakemake task jobs as Batch lists them (by the run's label), oldest first."""
    from google.cloud import batch_v1

    from arc_reactor.adapters.batch import make_batch_client
    from arc_reactor.core.jobspec import parent_for
    from arc_reactor.core.labels import run_label_filter

    client = make_batch_client(stack.settings)
    request = batch_v1.ListJobsRequest(parent=parent_for(stack.settings), filter=run_label_filter(run_id))
    return [j for j in client.list_jobs(request=request) if j.name.rsplit("/", 1)[1].startswith("smk-")]


def task_command(job):
    """The task's shell script (its container's `bash -c` argument)."""
    return job.task_groups[0].task_spec.runnables[0].container.commands[1]

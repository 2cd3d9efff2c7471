"""`arc demo`: start the local stack, drop the demo bundle into the inbox, show the run's status changes as
they happen, and say where the results and logs are."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from arc_reactor.core.status import is_terminal
from arc_reactor.local.stack import DEMO_DATA_BUCKET, ROOT, LocalStack

DEMO_BUNDLE = ROOT / "examples" / "demo-bundle"
DEMO_DATA = ROOT / "examples" / "data"
BUNDLE_ORDER = ("samplesheet.csv", "params.yaml", "nextflow.config", "run.yaml")  # the manifest last


def upload_demo_data(stack: LocalStack) -> int:
    """Put the demo FASTQ files where the demo samplesheet says they are."""
    from arc_reactor.wiring import get_deps

    storage = get_deps().storage
    count = 0
    for path in sorted(DEMO_DATA.glob("*.fastq.gz")):
        storage.upload_file(path, f"gs://{DEMO_DATA_BUCKET}/fastq/{path.name}")
        count += 1
    return count


def drop_bundle(stack: LocalStack, bundle: Path, submission: str) -> str:
    """Upload a bundle folder into the inbox, manifest last; return the manifest's object name."""
    from arc_reactor.wiring import get_deps

    storage = get_deps().storage
    inbox = stack.settings.inbox_bucket
    for name in BUNDLE_ORDER:
        path = bundle / name
        if path.is_file():
            storage.upload_file(path, f"gs://{inbox}/{submission}/{name}")
    return f"{submission}/run.yaml"


def wait_for_feedback(stack: LocalStack, manifest: str, timeout: float = 60.0) -> dict[str, object]:
    """Wait (bounded) for run.yaml.accepted.json or run.yaml.rejected.json next to the manifest."""
    from arc_reactor.wiring import get_deps

    storage = get_deps().storage
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for suffix in (".accepted.json", ".rejected.json"):
            data = storage.read_bytes(stack.settings.inbox_bucket, manifest + suffix)
            if data is not None:
                return dict(json.loads(data), feedback=manifest + suffix)
        time.sleep(0.1)
    raise TimeoutError(f"no feedback for {manifest} after {timeout:.0f} s")


def watch_run(
    run_id: str,
    out: TextIO,
    timeout: float = 600.0,
    poll: float = 0.2,
    on_event: Callable[[dict[str, object]], None] | None = None,
) -> str:
    """Print each status change of a run as it is recorded; return the final status (bounded wait)."""
    from arc_reactor.adapters import runs_repo
    from arc_reactor.wiring import get_deps

    engine = get_deps().engine
    last_id, status = 0, "pending"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for ev in runs_repo.list_events(engine, run_id, after_id=last_id):
            last_id = int(ev["id"])
            if on_event:
                on_event(dict(ev))
            stamp = ev["created_at"].astimezone(UTC).strftime("%H:%M:%S.%f")[:-3]
            if ev["kind"] == "transition":
                status = str(ev["to_status"])
                out.write(f"  {stamp}  {status:<11} by {ev['source']}\n")
            elif ev["kind"] == "conflict":
                out.write(f"  {stamp}  (conflict: {ev['source']} said {ev['to_status']}, kept {status})\n")
            out.flush()
        if is_terminal(status):
            return status
        time.sleep(poll)
    return status


def export_outputs(stack: LocalStack, run_id: str, dest: Path) -> list[Path]:
    """Copy the run's results/ and logs/ out of the local bucket into `dest` for easy reading."""
    from arc_reactor.wiring import get_deps

    storage = get_deps().storage
    bucket = stack.settings.runs_bucket
    written = []
    for name in storage.list_names(bucket, f"runs/{run_id}/"):
        rel = name.split(f"runs/{run_id}/", 1)[1]
        if rel.startswith(("results/", "logs/")):
            target = dest / rel
            storage.download_file(f"gs://{bucket}/{name}", target)
            written.append(target)
    return written


def run_demo(out: TextIO = sys.stdout, state_dir: Path | None = None, timeout: float = 600.0) -> int:
    """The whole flow on the local stack; exit code 0 when the run completed."""
    started = time.monotonic()
    stack = LocalStack(state_dir=state_dir) if state_dir else LocalStack()
    stack.log_file = stack.state_dir / "logs" / "functions.log"
    out.write("Starting the local stack (PostgreSQL, storage emulator, Batch service, functions)...\n")
    stack.start()
    try:
        out.write(f"  ready in {time.monotonic() - started:.1f} s; API at {stack.url('runs_api')}runs\n")
        upload_demo_data(stack)
        submission = "demo-" + datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        manifest = drop_bundle(stack, DEMO_BUNDLE, submission)
        out.write(
            f"Dropped {DEMO_BUNDLE.relative_to(ROOT)} into gs://{stack.settings.inbox_bucket}/{submission}/\n"
        )
        feedback = wait_for_feedback(stack, manifest)
        run_id = feedback.get("run_id")
        if feedback.get("outcome") == "rejected" or not isinstance(run_id, str):
            out.write(f"Bundle rejected: {json.dumps(feedback.get('problems'), indent=2)}\n")
            return 1
        out.write(f"Run {run_id} ({feedback.get('pipeline')} {feedback.get('revision')}):\n")
        final = watch_run(run_id, out, timeout=timeout)
        return _report(stack, run_id, final, out, started)
    finally:
        stack.stop()
        out.write("Stopped the local stack (functions, Batch service, storage emulator, PostgreSQL).\n")


def _report_task_jobs(run_id: str, out: TextIO) -> None:
    """The Batch jobs of the run's Snakemake jobs, as ListJobs finds them by the run's label."""
    from arc_reactor.core.ids import job_id_of
    from arc_reactor.core.labels import run_label_filter
    from arc_reactor.core.snakemake_batch import RULE_LABEL, TASK_JOB_PREFIX
    from arc_reactor.wiring import get_deps

    query = run_label_filter(run_id)
    jobs = [j for j in get_deps().batch.list_jobs(query) if job_id_of(j.name).startswith(TASK_JOB_PREFIX)]
    if not jobs:
        return
    out.write(f"  Batch task jobs ({query}):\n")
    for job in jobs:
        out.write(f"    {job_id_of(job.name)}  {job.state}  rule {job.labels.get(RULE_LABEL, '?')}\n")


def _report(stack: LocalStack, run_id: str, final: str, out: TextIO, started: float) -> int:
    from arc_reactor.adapters import runs_repo
    from arc_reactor.adapters.tasks_repo import task_counts
    from arc_reactor.cli.runs import describe_cost
    from arc_reactor.core.progress import describe as describe_progress
    from arc_reactor.services.run_cost import run_cost
    from arc_reactor.wiring import get_deps

    run = runs_repo.get_run(get_deps().engine, run_id)
    dest = stack.state_dir / "demo" / run_id
    files = export_outputs(stack, run_id, dest)
    out.write(f"Run {run_id} ended {final} in {time.monotonic() - started:.1f} s.\n")
    out.write(f"  results: {run['results_uri']}\n  logs:    {run['logs_uri']}\n")
    counts = task_counts(get_deps().engine, run_id)  # the ledger Snakemake filled (--logger arc)
    if counts:
        per_rule = ", ".join(
            f"{rule} {sum(v for k, v in c.items() if k != 'retries')}" for rule, c in sorted(counts.items())
        )
        out.write(f"  tasks:   {per_rule} (each one: arc runs tasks {run_id})\n")
    if run.progress:
        out.write(f"  progress: {describe_progress(run.progress)}\n")
    _report_task_jobs(run_id, out)
    estimate = run_cost(get_deps().engine, stack.settings, run)["estimate"]
    out.write(f"  cost:    {describe_cost({'estimate': estimate})} (prices {estimate['prices']})\n")
    out.write(f"  copied to {dest} ({len(files)} files)\n")
    out.write(f"  function logs: {stack.log_file}; job output: {stack.state_dir / 'jobs'}\n")
    summary = dest / "results" / "summary.tsv"
    if summary.is_file():
        out.write("\n" + summary.read_text(encoding="utf-8"))
    if final != "completed":
        out.write(f"  error: {run['error_code']}: {run['error_message']}\n")
        return 1
    return 0

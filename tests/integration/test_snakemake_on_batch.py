"""Snakemake on Batch, end to end on the embedded local stack: the real orchestrator runs Snakemake with our
executor plugin, which creates one Batch task job per Snakemake job on the local Batch service through the
real BatchServiceClient; each task job runs Snakemake's own job command as a local process (no Docker:
the image is recorded), and its inputs and outputs go through snakemake-storage-plugin-gcs to the storage
emulator. Nothing is mocked."""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

import pytest
from flow import demo_body as _body
from flow import http_session as _session
from flow import task_jobs, wait_until_ended

pytestmark = pytest.mark.integration

SAMPLES = ("sample1", "sample2", "sample3")
RUN_LABELS = ("app", "run-id", "pipeline", "user-email")


def _results(run_id):
    from arc_reactor.wiring import get_deps

    storage = get_deps().storage
    prefix = f"runs/{run_id}/results/"
    return {
        name[len(prefix) :]: storage.read_bytes("arc-runs", name)
        for name in storage.list_names("arc-runs", prefix)
    }


def _submit(session, base, **params):
    resp = session.post(f"{base}/runs", json=_body(**params), timeout=30)
    assert resp.status_code == 201, resp.text
    return resp.json()["id"]


def _wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout} s")


def test_the_demo_fans_out_as_task_jobs_with_the_single_vm_runs_results(stack, monkeypatch):
    """The demo on Batch task jobs, one of them preempted (Batch retries it), against the same bundle run
    with every job inside the orchestrator's VM."""
    from arc_reactor.adapters.batch_status import job_status_from_proto
    from arc_reactor.settings import get_settings
    from arc_reactor.wiring import reset_deps

    session, base = _session(), stack.url("runs_api").rstrip("/")
    run_id = _submit(session, base)
    # Once the orchestrator's own attempt has started, the next attempt to start is a task job's.
    _wait_for(
        lambda: session.get(f"{base}/runs/{run_id}", timeout=10).json()["status"] == "running",
        60,
        "the run running",
    )
    stack.batch.faults.preempt_next(1)
    assert wait_until_ended(session, base, run_id) == "completed"

    jobs = task_jobs(stack, run_id)
    rules = Counter(j.labels["snakemake-rule"] for j in jobs)
    assert rules == {"stats": 3, "summary": 1}, rules  # every rule a Batch job (`all` runs nothing)
    statuses = [job_status_from_proto(j) for j in jobs]
    retried = [s for s in statuses if s.retries]
    assert len(retried) == 1, [(s.name, s.exit_codes) for s in statuses]  # preempted, then run again
    assert [r.cause for r in retried[0].retries] == ["spot_preempted"]
    for job in jobs:
        assert job.status.state.name == "SUCCEEDED"
        assert {k: job.labels[k] for k in RUN_LABELS} == {
            "app": "arc-reactor", "run-id": run_id, "pipeline": "arc_fastq-stats", "user-email": "",
        }  # fmt: skip
        assert dict(job.allocation_policy.labels) == dict(job.labels)  # on its VMs too
        (runnable,) = job.task_groups[0].task_spec.runnables
        assert runnable.container.image_uri == stack.settings.orchestrator_image  # our task image
        assert "--target-jobs" in runnable.container.commands[1]  # Snakemake's own job command
    stats_targets = sorted(
        next(
            c for c in j.task_groups[0].task_spec.runnables[0].container.commands[1].split() if "sample=" in c
        )
        for j in jobs
        if j.labels["snakemake-rule"] == "stats"
    )
    assert stats_targets == [f"'stats:sample={s}'" for s in SAMPLES]
    on_batch = _results(run_id)
    assert sorted(on_batch) == [
        "stats/sample1.json",
        "stats/sample2.json",
        "stats/sample3.json",
        "summary.tsv",
    ]

    # The same bundle with every job inside the orchestrator's VM (ARC_SNAKEMAKE_EXECUTOR=local): the
    # same results, byte for byte, and no task job.
    monkeypatch.setenv("ARC_SNAKEMAKE_EXECUTOR", "local")
    get_settings.cache_clear()
    reset_deps()
    try:
        single = _submit(session, base)
        assert wait_until_ended(session, base, single) == "completed"
    finally:
        monkeypatch.delenv("ARC_SNAKEMAKE_EXECUTOR")
        get_settings.cache_clear()
        reset_deps()
    assert task_jobs(stack, single) == []
    alone = _results(single)
    assert alone["summary.tsv"] == on_batch["summary.tsv"]
    # The stats are the same figures; each names the path its job read the FASTQ from, which on Batch is
    # the storage plugin's local copy of the work/ prefix's object.
    for sample in SAMPLES:
        ours, theirs = (json.loads(r[f"stats/{sample}.json"]) for r in (on_batch, alone))
        paths = [f.pop("path") for f in ours["files"].values()] + [
            f.pop("path") for f in theirs["files"].values()
        ]
        assert ours == theirs
        assert all(
            p.endswith(f"inputs/arc-demo-data/fastq/{sample}_R{i}.fastq.gz")
            for p, i in zip(paths, (1, 2, 1, 2), strict=True)
        )

    # What the run shows: its trace and the rules' logs, from the task jobs.
    from arc_reactor.wiring import get_deps

    logs = set(get_deps().storage.list_names("arc-runs", f"runs/{run_id}/logs/"))
    expected = {"trace.txt", "rules/summary.log", *(f"rules/stats/{s}.log" for s in SAMPLES)}
    assert {f"runs/{run_id}/logs/{name}" for name in expected} <= logs, logs
    ledger = session.get(f"{base}/runs/{run_id}/tasks", params={"page_size": 100}, timeout=10).json()
    assert sorted(t["process"] for t in ledger["tasks"]) == ["all", "stats", "stats", "stats", "summary"]
    # Each job's ledger row names its Batch job and starts when Batch ran it (the executor told the logger
    # plugin): the cost estimate counts them as tasks on VMs of their own, unpriced (Batch chose the VM).
    names = {j.name.rsplit("/", 1)[1] for j in jobs}
    ran = [t for t in ledger["tasks"] if t["process"] != "all"]
    assert {t["native_id"].rsplit("/", 1)[1] for t in ran} == names, ran
    created = {j.name.rsplit("/", 1)[1]: j.create_time for j in jobs}
    for t in ran:  # from when Batch ran it, not from when Snakemake decided to submit it
        started = datetime.fromisoformat(t["started_at"])
        assert (
            created[t["native_id"].rsplit("/", 1)[1]] < started <= datetime.fromisoformat(t["completed_at"])
        )
    estimate = session.get(f"{base}/runs/{run_id}", timeout=10).json()["cost"]["estimate"]
    assert estimate["unpriced_tasks"] >= 4, estimate


def test_cancel_mid_run_leaves_no_task_job_running(stack):
    session, base = _session(), stack.url("runs_api").rstrip("/")
    run_id = _submit(session, base, pace_seconds=30)
    _wait_for(
        lambda: [j for j in task_jobs(stack, run_id) if j.status.state.name == "RUNNING"],
        60,
        "a running task job",
    )
    resp = session.post(f"{base}/runs/{run_id}:cancel", timeout=30)
    assert resp.status_code in (200, 202), resp.text
    assert wait_until_ended(session, base, run_id) == "cancelled"
    active = ("QUEUED", "SCHEDULED", "RUNNING")
    _wait_for(
        lambda: not any(j.status.state.name in active for j in task_jobs(stack, run_id)),
        30,
        "every task job stopped",
    )
    states = Counter(j.status.state.name for j in task_jobs(stack, run_id))
    assert states["CANCELLED"] >= 1 and states["SUCCEEDED"] == 0, states  # paced 30 s: none had finished
    assert "summary" not in {j.labels["snakemake-rule"] for j in task_jobs(stack, run_id)}


def test_a_retried_head_job_cancels_the_task_jobs_its_earlier_attempt_left_going(stack, tmp_path):
    """The head VM died without Snakemake cancelling its jobs: the next attempt's prepare cancels them
    before Snakemake submits them again, and leaves other runs' jobs alone."""
    from arc_reactor.core.engine_command import Workspace
    from arc_reactor.core.ids import new_run_id
    from arc_reactor.core.job_env import JobEnv
    from arc_reactor.core.labels import run_labels
    from arc_reactor.core.nextflow_config import TaskPolicy
    from arc_reactor.core.snakemake_batch import TaskRequest, TaskSetup, task_job_request
    from arc_reactor.orchestrator.engines import cancel_stale_task_jobs
    from arc_reactor.orchestrator.storage_io import Context
    from arc_reactor.wiring import get_deps

    batch, settings = get_deps().batch, stack.settings
    policy = TaskPolicy.from_settings(settings)
    runs = [new_run_id(), new_run_id()]
    for run_id in runs:  # one attempt-0 task job of each run, still running
        setup = TaskSetup(policy, "local/task", run_labels(run_id, "arc/fastq-stats", None))
        request = TaskRequest(rule="stats", jobid=2, command="sleep 60")
        create = task_job_request(request, setup, run_id=run_id, attempt=0, submission=0, script="sleep 60")
        batch.create_job(create, run_id)
    _wait_for(
        lambda: all(j.status.state.name == "RUNNING" for r in runs for j in task_jobs(stack, r)),
        30,
        "running",
    )

    env = JobEnv(
        run_id=runs[0], pipeline="arc/fastq-stats", pipeline_version="1.0.0", engine="snakemake",
        config_uri="", params_uri="gs://arc-runs/x/params.yaml", retry_attempt=1,
    )  # fmt: skip
    cancelled = cancel_stale_task_jobs(Context(env, Workspace.at(tmp_path), settings))
    assert [c.rsplit("/", 1)[1] for c in cancelled] == [f"smk-{runs[0]}-stats-2-0-0"]
    _wait_for(lambda: task_jobs(stack, runs[0])[0].status.state.name == "CANCELLED", 30, "cancelled")
    assert task_jobs(stack, runs[1])[0].status.state.name == "RUNNING"  # another run's: left alone
    batch.cancel_job(task_jobs(stack, runs[1])[0].name)


def test_finish_after_a_failed_prepare_delivers_nothing_of_the_lineage(gcs, tmp_path):
    """finish delivers from the work/ prefix only when this attempt ran there (its task context was
    uploaded: the rule `command` follows too). Without it, as after a prepare that failed before the upload,
    the lineage's prefix holds only the parent's outputs, which are not this run's results and rule logs.
    (The entrypoint does not run finish after a failed prepare; this holds finish to the rule for any
    caller.)"""
    from arc_reactor.core.engine_command import Workspace
    from arc_reactor.core.ids import new_run_id
    from arc_reactor.core.job_env import JobEnv
    from arc_reactor.orchestrator.engines import Snakemake
    from arc_reactor.orchestrator.storage_io import Context
    from arc_reactor.settings import Settings

    gcs.write_bytes("arc-runs", "work/r-parent/results/summary.tsv", b"the parent's summary\n")
    gcs.write_bytes("arc-runs", "work/r-parent/logs/stats/sample1.log", b"the parent's log\n")
    run_id = new_run_id()
    env = JobEnv(
        run_id=run_id, pipeline="arc/fastq-stats", pipeline_version="1.0.0", engine="snakemake",
        config_uri="", params_uri=f"gs://arc-runs/runs/{run_id}/inputs/params.yaml",
        work_dir="gs://arc-runs/work/r-parent/", is_recovery=True,
        results_dir=f"gs://arc-runs/runs/{run_id}/results/", logs_dir=f"gs://arc-runs/runs/{run_id}/logs/",
    )  # fmt: skip
    settings = Settings(local=True, snakemake_executor="batch", runs_bucket="arc-runs")
    assert Snakemake().finish(Context(env, Workspace.at(tmp_path), settings)) == (0, 0)
    assert gcs.list_names("arc-runs", f"runs/{run_id}/") == []


def test_an_input_missing_from_storage_is_named_when_it_is_copied_to_the_work_prefix(gcs, tmp_path):
    """On Batch, prepare copies each input inside Cloud Storage instead of downloading it: a missing one is
    the same `input_missing` failure, naming the samplesheet's line and column."""
    from arc_reactor.core.engine_command import Workspace
    from arc_reactor.core.job_env import JobEnv
    from arc_reactor.errors import OrchestrationError
    from arc_reactor.orchestrator.engines import _copy_to_work
    from arc_reactor.orchestrator.storage_io import Context
    from arc_reactor.settings import Settings

    env = JobEnv(
        run_id="r0copy", pipeline="arc/fastq-stats", pipeline_version="1.0.0", engine="snakemake",
        config_uri="", params_uri="gs://arc-runs/runs/r0copy/inputs/params.yaml", work_dir="gs://arc-runs/work/r0copy/",
    )  # fmt: skip
    ctx = Context(env, Workspace.at(tmp_path), Settings(local=True))
    what = "input file (samplesheet line 2, fastq_1)"
    with pytest.raises(OrchestrationError) as err:
        _copy_to_work(ctx, "gs://arc-demo-data/nowhere.fastq.gz", Path("inputs/nowhere.fastq.gz"), what)
    assert err.value.code == "input_missing"
    assert str(err.value) == f"{what} gs://arc-demo-data/nowhere.fastq.gz does not exist"
    assert gcs.list_names("arc-runs", "work/r0copy/") == []

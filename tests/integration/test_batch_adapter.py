"""BatchService (adapters/batch.py) with the real BatchServiceClient against the local Batch service."""

from __future__ import annotations

import itertools
import os
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace

import grpc
import pytest
from google.cloud import batch_v1

from arc_reactor.adapters.batch import BatchService, CancelSummary, make_batch_client
from arc_reactor.core.job_env import JobEnv
from arc_reactor.core.jobspec import OrchestratorJob, create_job_request
from arc_reactor.core.status import RunStatus
from arc_reactor.errors import (
    BatchJobCreationError,
    BatchJobNotFoundError,
)
from arc_reactor.local.batch_server import LocalBatchServer, command_launcher
from arc_reactor.local.batch_state import canonical_name, project_number
from arc_reactor.settings import Settings

pytestmark = pytest.mark.integration

RUN = "r0000000000abcdefgh"


def run_id(n: int) -> str:
    return f"r0000000000{n:08d}"


def spec(run: str = RUN, **kw: object) -> OrchestratorJob:
    base = OrchestratorJob(
        JobEnv(
            run_id=run,
            pipeline="demo/readstats",
            pipeline_version="1.0.0",
            engine="snakemake",
            config_uri=f"gs://arc-runs/runs/{run}/inputs/nextflow.config",
            params_uri=f"gs://arc-runs/runs/{run}/inputs/params.yaml",
            work_dir=f"gs://arc-runs/work/{run}/",
        ),
        submitter_email="jane@example.org",
    )
    return replace(base, **kw)  # type: ignore[arg-type]


@dataclass
class Stack:
    server: LocalBatchServer
    settings: Settings
    service: BatchService
    sleeps: list[float]


def _stack(launcher_argv: list[str], run_jobs: bool) -> Iterator[Stack]:
    server = LocalBatchServer(command_launcher(launcher_argv), lambda a, d: None, run_jobs=run_jobs).start()
    settings = Settings(
        project="arc-test",
        region="us-central1",
        batch_endpoint=server.address,
        batch_topic="projects/arc-test/topics/batch",
        database_url="",
    )
    client = make_batch_client(settings)
    sleeps: list[float] = []
    try:
        yield Stack(server, settings, BatchService(client, settings, sleep=sleeps.append), sleeps)
    finally:
        client.transport.close()
        server.stop()


@pytest.fixture
def held() -> Iterator[Stack]:
    """Jobs stay QUEUED until the test sets their state."""
    yield from _stack(["true"], run_jobs=False)


@pytest.fixture
def sleeper() -> Iterator[Stack]:
    """Jobs run `sleep 30` until cancelled."""
    yield from _stack(["sleep", "30"], run_jobs=True)


@pytest.fixture
def quick() -> Iterator[Stack]:
    """Jobs run a process that exits 0 at once."""
    yield from _stack([sys.executable, "-c", "pass"], run_jobs=True)


def test_make_batch_client_never_looks_up_credentials(monkeypatch: pytest.MonkeyPatch, held: Stack) -> None:
    import google.auth

    def no_adc(*a: object, **k: object) -> None:
        raise AssertionError("google.auth.default must not be called")

    monkeypatch.setattr(google.auth, "default", no_adc)
    client = make_batch_client(held.settings)
    with pytest.raises(Exception, match="not found"):
        client.get_job(name=f"projects/arc-test/locations/us-central1/jobs/arc-{RUN}", retry=None)
    client.transport.close()


def test_submit_stores_the_spec(held: Stack) -> None:
    name = held.service.submit_orchestrator_job(spec())
    # Batch answers with the project's number where the request named its id.
    assert held.service.job_name(RUN) == f"projects/arc-test/locations/us-central1/jobs/arc-{RUN}"
    assert name == canonical_name(held.service.job_name(RUN))
    assert name == f"projects/{project_number('arc-test')}/locations/us-central1/jobs/arc-{RUN}"
    [stored] = held.server.jobs()
    expected = create_job_request(spec(), held.settings).job
    assert stored.name == name
    assert stored.uid
    assert stored.status.state == batch_v1.JobStatus.State.QUEUED
    assert stored.create_time is not None
    assert stored.task_groups[0].task_spec == expected.task_groups[0].task_spec
    assert stored.task_groups[0].task_count == 1
    assert stored.allocation_policy == expected.allocation_policy
    assert stored.logs_policy == expected.logs_policy
    assert list(stored.notifications) == list(expected.notifications)
    assert dict(stored.labels) == {
        "app": "arc-reactor",
        "run-id": RUN,
        "pipeline": "demo_readstats",
        "user-email": "jane-at-example_org",
    }
    env = stored.task_groups[0].task_spec.environment.variables
    assert (env["RUN_ID"], env["PIPELINE"], env["ENGINE"], env["IS_RECOVERY"]) == (
        RUN,
        "demo/readstats",
        "snakemake",
        "false",
    )


def test_resubmit_is_idempotent(held: Stack) -> None:
    first = held.service.submit_orchestrator_job(spec())
    assert held.service.submit_orchestrator_job(spec()) == first
    assert len(held.server.jobs()) == 1


def test_already_exists_is_success(held: Stack) -> None:
    # Someone else created the job with another request id: CreateJob answers ALREADY_EXISTS.
    request = create_job_request(spec(), held.settings)
    request.request_id = "11111111-1111-4111-8111-111111111111"
    held.service._client.create_job(request=request)
    assert held.service.submit_orchestrator_job(spec()) == canonical_name(held.service.job_name(RUN))
    assert len(held.server.jobs()) == 1


def test_get_and_list_with_label_filter(held: Stack) -> None:
    for n in range(3):
        extra = {"team": "a"} if n < 2 else {"team": "b"}
        held.service.submit_orchestrator_job(spec(run_id(n), extra_labels=extra))
    held.server.set_job_state(held.service.job_name(run_id(0)), "RUNNING")
    status = held.service.get_job(held.service.job_name(run_id(1)))
    assert status.labels["run-id"] == run_id(1)
    assert status.state == "QUEUED"
    assert status.run_status is RunStatus.SUBMITTED
    assert {s.labels["run-id"] for s in held.service.list_jobs('labels.team="a"')} == {run_id(0), run_id(1)}
    [one] = held.service.list_jobs(f'labels.run-id="{run_id(2)}"')
    assert one.name == canonical_name(held.service.job_name(run_id(2)))
    [running] = held.service.list_jobs('labels.app="arc-reactor" AND status.state="RUNNING"')
    assert running.labels["run-id"] == run_id(0)
    assert len(held.service.list_jobs(page_size=1)) == 3  # three pages
    assert len(held.service.list_jobs(page_size=1, limit=2)) == 2


def test_get_accepts_a_bare_job_id(held: Stack) -> None:
    held.service.submit_orchestrator_job(spec())
    assert held.service.get_job_status(f"arc-{RUN}").name == canonical_name(held.service.job_name(RUN))


def test_get_missing_job(held: Stack) -> None:
    with pytest.raises(BatchJobNotFoundError):
        held.service.get_job(held.service.job_name(RUN))


EXPECTED_STATUS = {
    "QUEUED": RunStatus.SUBMITTED,
    "SCHEDULED": RunStatus.SUBMITTED,
    "RUNNING": RunStatus.RUNNING,
    "SUCCEEDED": RunStatus.COMPLETED,
    "FAILED": RunStatus.FAILED,
    "CANCELLATION_IN_PROGRESS": RunStatus.CANCELLING,
    "CANCELLED": RunStatus.CANCELLED,
    "DELETION_IN_PROGRESS": None,
}


def test_status_mapping_for_every_batch_state(held: Stack) -> None:
    states = [s.name for s in batch_v1.JobStatus.State if s.name != "STATE_UNSPECIFIED"]
    assert set(states) == set(EXPECTED_STATUS)
    name = held.service.submit_orchestrator_job(spec())
    for state in states:
        held.server.set_job_state(name, state)
        status = held.service.get_job(name)
        assert (status.state, status.run_status) == (state, EXPECTED_STATUS[state])
        assert status.terminal == (state in {"SUCCEEDED", "FAILED", "CANCELLED"})


@pytest.mark.parametrize(
    ("exit_code", "failure"),
    [
        (50001, "spot_preempted"),
        (50002, "vm_lost"),
        (50003, "vm_rebooted"),
        (50004, "vm_unresponsive"),
        (50005, "max_runtime_exceeded"),
        (50006, "vm_recreated"),
        (1, "pipeline_error"),
        (50000, "pipeline_error"),
    ],
)
def test_failure_classification(held: Stack, exit_code: int, failure: str) -> None:
    name = held.service.submit_orchestrator_job(spec())
    held.server.set_job_state(name, "FAILED", exit_code=exit_code)
    status = held.service.get_job(name)
    assert (status.exit_codes, status.failure, status.exit_code) == ([exit_code], failure, exit_code)
    assert status.events[-1].new_state == "FAILED"
    assert any(e.exit_code == exit_code and e.time is not None for e in status.events)


def test_no_failure_unless_failed(held: Stack) -> None:
    name = held.service.submit_orchestrator_job(spec())
    held.server.set_job_state(name, "RUNNING", exit_code=50001)  # preempted, being retried
    status = held.service.get_job(name)
    assert (status.exit_codes, status.failure) == ([50001], None)


def test_cancel_running_job_kills_it(sleeper: Stack) -> None:
    name = sleeper.service.submit_orchestrator_job(spec())
    deadline = time.monotonic() + 5
    while sleeper.service.get_job(name).state != "RUNNING" and time.monotonic() < deadline:
        time.sleep(0.02)
    assert sleeper.service.cancel_job(name) is True
    job = sleeper.server.wait_for_job(name, timeout=5)
    assert job.status.state.name == "CANCELLED"
    assert sleeper.service.get_job(name).run_status is RunStatus.CANCELLED


def test_cancel_gone_and_terminal_jobs_is_success(held: Stack) -> None:
    assert held.service.cancel_job(held.service.job_name(RUN)) is True  # never existed
    name = held.service.submit_orchestrator_job(spec())
    held.server.set_job_state(name, "SUCCEEDED")
    assert held.service.cancel_job(name) is True
    assert held.service.get_job(name).state == "SUCCEEDED"


def test_cancel_queued_job(held: Stack) -> None:
    name = held.service.submit_orchestrator_job(spec())
    assert held.service.cancel_job(name) is True
    assert held.service.get_job(name).state == "CANCELLED"
    assert held.service.cancel_job(name) is True  # twice is fine


def test_poll_until_terminal(quick: Stack) -> None:
    service = BatchService(quick.service._client, quick.settings)  # real sleep
    name = service.submit_orchestrator_job(spec())
    status = service.poll_job_until_terminal(name, interval=0.05, timeout=10)
    assert (status.state, status.run_status, status.exit_codes, status.failure) == (
        "SUCCEEDED",
        RunStatus.COMPLETED,
        [0],
        None,
    )


def test_poll_is_bounded(held: Stack) -> None:
    service = BatchService(held.service._client, held.settings)
    name = service.submit_orchestrator_job(spec())
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="QUEUED"):
        service.poll_job_until_terminal(name, interval=0.05, timeout=0.3)
    assert time.monotonic() - started < 2.0


def test_no_network_beyond_loopback(held: Stack) -> None:
    assert held.settings.batch_endpoint.startswith("127.0.0.1:")
    assert os.environ["NO_GCE_CHECK"] == "true"


def test_a_password_in_database_url_is_a_permanent_creation_error(held: Stack) -> None:
    # As deployed (no local Batch endpoint); the client is still the one on the local service.
    cloud = {"database_url": "postgresql://arc:secret@10.0.0.5/arc", "batch_endpoint": ""}
    settings = held.settings.model_copy(update=cloud)
    with pytest.raises(BatchJobCreationError, match="password"):
        BatchService(held.service._client, settings).submit_orchestrator_job(spec())
    assert held.server.jobs() == []


# ---- task retries as jobs.get shows them ---------------------------------------------------------------
def test_retries_are_read_from_the_job(held: Stack) -> None:
    name = held.service.submit_orchestrator_job(spec())
    held.server.set_job_state(name, "RUNNING")
    held.server.retry_task(name, 50001)
    assert [(r.attempt, r.exit_code, r.cause) for r in held.service.get_job(name).retries] == [
        (1, 50001, "spot_preempted")
    ]
    held.server.retry_task(name, 50002)
    held.server.set_job_state(name, "SUCCEEDED", exit_code=0)
    status = held.service.get_job(name)
    assert [(r.attempt, r.cause) for r in status.retries] == [(1, "spot_preempted"), (2, "vm_lost")]
    assert (status.exit_codes, status.failure) == ([50001, 50002, 0], None)


def test_a_pipeline_exit_code_is_never_a_retry(held: Stack) -> None:
    name = held.service.submit_orchestrator_job(spec())
    held.server.set_job_state(name, "RUNNING", exit_code=3)  # the job is about to fail
    assert held.service.get_job(name).retries == []
    held.server.set_job_state(name, "FAILED")
    exhausted = held.service.submit_orchestrator_job(spec(run_id(1)))
    for _ in range(2):
        held.server.retry_task(exhausted, 50001)
    held.server.set_job_state(exhausted, "FAILED", exit_code=50001)
    status = held.service.get_job(exhausted)
    assert ([r.attempt for r in status.retries], status.failure) == ([1, 2], "spot_preempted")


# ---- cancelling a run: the orchestrator and every task job labelled with its run id ---------------------
PARENT = "projects/arc-test/locations/us-central1"


def task_job(stack: Stack, job_id: str, run: str = RUN, state: str | None = None) -> str:
    """A job like the ones Nextflow launches for a run: another id, the run's labels."""
    request = create_job_request(spec(run), stack.settings)
    request.job_id, request.request_id = job_id, str(uuid.uuid4())
    stack.service._client.create_job(request=request)
    name = f"{PARENT}/jobs/{job_id}"
    if state:
        stack.server.set_job_state(name, state)
    return canonical_name(name)  # as ListJobs names it


def states(stack: Stack) -> dict[str, str]:
    return {job.name: job.status.state.name for job in stack.server.jobs()}


def test_cancel_run_jobs_cancels_the_orchestrator_and_every_active_task_job(held: Stack) -> None:
    orchestrator = held.service.submit_orchestrator_job(spec())
    held.server.set_job_state(orchestrator, "RUNNING")
    queued = task_job(held, "nf-task-1")
    running = task_job(held, "nf-task-2", state="RUNNING")
    done = task_job(held, "nf-task-3", state="SUCCEEDED")
    other = task_job(held, "nf-task-4", run=run_id(7), state="RUNNING")
    summary = held.service.cancel_run_jobs(RUN)
    assert summary == CancelSummary(True, [queued, running], [])
    assert summary.complete
    assert states(held) == {
        orchestrator: "CANCELLED",
        queued: "CANCELLED",
        running: "CANCELLED",
        done: "SUCCEEDED",  # finished task jobs are left alone
        other: "RUNNING",  # another run's
    }
    assert held.service.cancel_run_jobs(RUN) == CancelSummary(True, [], [])  # again: nothing to do


def test_cancel_run_jobs_when_the_orchestrator_is_gone_or_finished(held: Stack) -> None:
    straggler = task_job(held, "nf-task-1", state="RUNNING")
    assert held.service.cancel_run_jobs(RUN) == CancelSummary(True, [straggler], [])  # never created
    orchestrator = held.service.submit_orchestrator_job(spec(run_id(2)))
    held.server.set_job_state(orchestrator, "SUCCEEDED")
    late = task_job(held, "nf-task-2", run=run_id(2), state="RUNNING")
    assert held.service.cancel_run_jobs(run_id(2)) == CancelSummary(True, [late], [])
    assert states(held)[orchestrator] == "SUCCEEDED"


def test_cancel_run_jobs_reports_failures_instead_of_raising(held: Stack) -> None:
    held.service.submit_orchestrator_job(spec())
    task = task_job(held, "nf-task-1", state="RUNNING")
    held.server.faults.fail_next(
        "CancelJob", grpc.StatusCode.PERMISSION_DENIED, message="no batch.jobs.cancel"
    )
    summary = held.service.cancel_run_jobs(RUN)
    assert (summary.orchestrator_cancelled, summary.task_jobs_cancelled) == (False, [task])
    [failure] = summary.failures
    assert f"arc-{RUN}" in failure and "permission denied" in failure
    assert not summary.complete
    held.server.faults.fail_next("ListJobs", grpc.StatusCode.UNAVAILABLE, n=10)
    summary = held.service.cancel_run_jobs(RUN)
    assert summary.orchestrator_cancelled
    assert len(summary.failures) == 1 and "listing the run's task jobs" in summary.failures[0]


def test_cancel_run_jobs_is_bounded_in_jobs_and_time(held: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    from arc_reactor.adapters import batch

    tasks = [task_job(held, f"nf-task-{n}", state="RUNNING") for n in range(3)]
    monkeypatch.setattr(batch, "MAX_TASK_JOBS", 2)
    first = held.service.cancel_run_jobs(RUN)
    assert first.task_jobs_cancelled == tasks[:2]
    assert first.failures == ["more than 2 active jobs: cancel again for the rest"]
    assert held.service.cancel_run_jobs(RUN).task_jobs_cancelled == tasks[2:]
    late = [task_job(held, f"nf-late-{n}", state="RUNNING") for n in range(2)]
    ticks = itertools.chain([0.0], itertools.repeat(1000.0))  # the deadline passes after the orchestrator
    slow = BatchService(
        held.service._client, held.settings, sleep=held.sleeps.append, clock=lambda: next(ticks)
    )
    summary = slow.cancel_run_jobs(RUN)
    assert summary.task_jobs_cancelled == []
    assert [f.split(":")[0] for f in summary.failures] == late
    assert all("not attempted" in f for f in summary.failures)
    assert {states(held)[n] for n in late} == {"RUNNING"}

"""Faults, end to end with the real BatchServiceClient and the local Batch service: every error class of the
adapter, retries that stop, refused creates that leave no job behind (also through the real submit_bundle
app), and the local service's notification faults (dropped, duplicated, reordered)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import pytest
from flow import binary_event, finalize_event, function_client, upload_bundle, upload_demo_data

from arc_reactor.adapters.batch import BatchService, make_batch_client
from arc_reactor.adapters.retry import retry_call
from arc_reactor.core.job_env import JobEnv
from arc_reactor.core.jobspec import OrchestratorJob
from arc_reactor.errors import (
    BatchError,
    BatchJobCreationError,
    BatchJobNotFoundError,
    BatchPermissionError,
    BatchQuotaExceededError,
    BatchUnavailableError,
)
from arc_reactor.local.batch_server import LocalBatchServer, command_launcher
from arc_reactor.local.batch_state import canonical_name
from arc_reactor.local.notifications import NotificationLog, states
from arc_reactor.settings import Settings

pytestmark = pytest.mark.integration

RUN = "r0000000000abcdefgh"
NAME = f"projects/arc-test/locations/us-central1/jobs/arc-{RUN}"
BATCH_NAME = canonical_name(NAME)  # how Batch names it in answers: the project's number
TOPIC = "projects/arc-test/topics/batch"
Code = grpc.StatusCode


def spec(run: str = RUN) -> OrchestratorJob:
    return OrchestratorJob(
        JobEnv(run, "demo", "1", "snakemake", "", f"gs://b/{run}/params.yaml", "gs://b/w/")
    )


def kinds(items: list[tuple[dict[str, str], bytes]]) -> list[tuple[str, str]]:
    """Notifications as ("job" or "task", new state)."""
    return [("job" if kind == "JOB_STATE_CHANGED" else "task", state) for kind, state in states(items)]


@dataclass
class Stack:
    server: LocalBatchServer
    service: BatchService
    sleeps: list[float]
    notes: NotificationLog


@pytest.fixture
def held() -> Iterator[Stack]:
    """The local service with jobs held (states set by the test), the adapter with a recorded sleep."""
    notes = NotificationLog()
    server = LocalBatchServer(command_launcher(["true"]), notes, run_jobs=False).start()
    s = Settings(
        project="arc-test",
        batch_endpoint=server.address,
        batch_topic="projects/arc-test/topics/batch",
        database_url="",
    )
    client = make_batch_client(s)
    sleeps: list[float] = []
    yield Stack(server, BatchService(client, s, sleep=sleeps.append), sleeps, notes)
    client.transport.close()
    server.stop()


# ---- error classes -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("code", "error"),
    [
        (Code.RESOURCE_EXHAUSTED, BatchQuotaExceededError),
        (Code.PERMISSION_DENIED, BatchPermissionError),
        (Code.UNAUTHENTICATED, BatchPermissionError),
        (Code.INVALID_ARGUMENT, BatchJobCreationError),
        (Code.FAILED_PRECONDITION, BatchJobCreationError),
    ],
)
def test_permanent_create_errors_are_not_retried(held: Stack, code: Code, error: type) -> None:
    held.server.faults.fail_next_create(code, "no")
    with pytest.raises(error) as info:
        held.service.submit_orchestrator_job(spec())
    assert getattr(info.value, "code", None) in {"quota_exceeded", "permission_denied", "job_creation_failed"}
    assert held.sleeps == []
    assert held.server.jobs() == []


@pytest.mark.parametrize(
    ("method", "code", "error"),
    [
        ("GetJob", Code.PERMISSION_DENIED, BatchPermissionError),
        ("GetJob", Code.NOT_FOUND, BatchJobNotFoundError),
        ("GetJob", Code.RESOURCE_EXHAUSTED, BatchUnavailableError),  # request-rate quota: transient
        ("GetJob", Code.INVALID_ARGUMENT, BatchError),
        ("ListJobs", Code.PERMISSION_DENIED, BatchPermissionError),
        ("CancelJob", Code.PERMISSION_DENIED, BatchPermissionError),
        ("CancelJob", Code.RESOURCE_EXHAUSTED, BatchUnavailableError),
    ],
)
def test_error_classes_of_reads_and_cancels(held: Stack, method: str, code: Code, error: type) -> None:
    name = held.service.submit_orchestrator_job(spec())
    held.server.faults.fail_next(method, code)
    call = {
        "GetJob": lambda: held.service.get_job(name),
        "ListJobs": lambda: held.service.list_jobs('labels."app"="arc-reactor"'),
        "CancelJob": lambda: held.service.cancel_job(name),
    }[method]
    with pytest.raises(error):
        call()
    assert held.sleeps == []  # none of these is retried in-process
    assert held.service.get_job(name).state == "QUEUED"


@pytest.mark.parametrize("code", [Code.UNAVAILABLE, Code.DEADLINE_EXCEEDED, Code.INTERNAL, Code.ABORTED])
def test_transient_errors_are_retried_then_succeed(held: Stack, code: Code) -> None:
    held.server.faults.fail_next("CreateJob", code, n=2)
    assert held.service.submit_orchestrator_job(spec()) == BATCH_NAME
    held.server.faults.fail_next("GetJob", code, n=2)
    assert held.service.get_job(NAME).state == "QUEUED"
    assert len(held.sleeps) == 4
    assert len(held.server.jobs()) == 1


def test_retries_stop_after_five_attempts(held: Stack) -> None:
    held.server.faults.fail_next("GetJob", Code.INTERNAL, n=100)
    started = time.monotonic()
    with pytest.raises(BatchUnavailableError) as info:
        held.service.get_job(NAME)
    assert time.monotonic() - started < 2.0
    assert len(held.sleeps) == 4 and all(0 <= s <= 5.0 for s in held.sleeps)
    assert "gave up after 5 attempt(s)" in " ".join(getattr(info.value.__cause__, "__notes__", []))


def test_unavailable_for_every_method_gives_up_quickly(held: Stack) -> None:
    held.server.faults.unavailable_next(1000)
    started = time.monotonic()
    with pytest.raises(BatchUnavailableError):
        held.service.submit_orchestrator_job(spec())
    with pytest.raises(BatchUnavailableError):
        held.service.get_job(NAME)
    assert time.monotonic() - started < 2.0
    assert len(held.sleeps) == 8  # 5 attempts each, 4 sleeps each


def test_connection_refused_is_unavailable() -> None:
    server = LocalBatchServer(command_launcher(["true"]), lambda a, d: None).start()
    address = server.address
    server.stop()  # nothing listens there any more
    s = Settings(project="arc-test", batch_endpoint=address, database_url="")
    client = make_batch_client(s)
    with pytest.raises(BatchUnavailableError):
        BatchService(client, s, sleep=lambda _: None).get_job("arc-" + RUN)
    client.transport.close()


def test_server_side_invalid_argument(held: Stack) -> None:
    s = held.service._settings.model_copy(update={"region": "europe-west4"})  # the server is us-central1
    with pytest.raises(BatchJobCreationError, match="us-central1"):
        BatchService(held.service._client, s, sleep=held.sleeps.append).submit_orchestrator_job(spec())


def test_retry_call_is_bounded_by_its_deadline() -> None:
    now = [0.0]
    calls: list[float] = []

    def failing() -> None:
        calls.append(now[0])
        raise ConnectionError("down")

    def sleep(seconds: float) -> None:
        now[0] += seconds

    with pytest.raises(ConnectionError) as info:
        retry_call(failing, attempts=100, base=1.0, cap=4.0, deadline=10.0, sleep=sleep, clock=lambda: now[0])
    assert now[0] <= 10.0
    assert len(calls) < 100
    assert "gave up after" in info.value.__notes__[0]


def test_retry_call_does_not_retry_other_errors() -> None:
    calls: list[int] = []

    def wrong() -> None:
        calls.append(1)
        raise ValueError("bad")

    with pytest.raises(ValueError, match="bad"):
        retry_call(wrong, sleep=lambda _: None)
    assert calls == [1]


@pytest.mark.parametrize("code", [Code.FAILED_PRECONDITION, Code.UNIMPLEMENTED])
def test_cancel_falls_back_to_delete_where_cancel_is_not_possible(held: Stack, code: Code) -> None:
    name = held.service.submit_orchestrator_job(spec())
    held.server.set_job_state(name, "RUNNING")
    held.server.faults.fail_next("CancelJob", code)
    assert held.service.cancel_job(name) is True
    assert held.server.jobs() == []  # deleted: its VMs are gone with it


def test_cancel_refused_both_ways_is_false(held: Stack) -> None:
    name = held.service.submit_orchestrator_job(spec())
    held.server.set_job_state(name, "RUNNING")
    held.server.faults.fail_next("CancelJob", Code.FAILED_PRECONDITION)
    held.server.faults.fail_next("DeleteJob", Code.FAILED_PRECONDITION)
    assert held.service.cancel_job(name) is False
    assert held.service.get_job(name).state == "RUNNING"


# ---- a refused create leaves no job behind --------------------------------------------------------------
@pytest.mark.parametrize("code", [Code.RESOURCE_EXHAUSTED, Code.PERMISSION_DENIED])
def test_a_job_made_by_a_create_that_was_refused_is_cancelled(held: Stack, code: Code) -> None:
    held.server.faults.fail_next_create(code, "refused after the fact", created=True)
    with pytest.raises((BatchQuotaExceededError, BatchPermissionError)):
        held.service.submit_orchestrator_job(spec())
    [job] = held.server.jobs()
    assert (job.name, job.status.state.name) == (BATCH_NAME, "CANCELLED")


def test_a_failed_cleanup_is_logged_and_the_refusal_still_raised(
    held: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    held.server.faults.fail_next_create(Code.RESOURCE_EXHAUSTED, created=True)
    held.server.faults.fail_next("CancelJob", Code.PERMISSION_DENIED)
    with caplog.at_level(logging.WARNING, logger="arc_reactor"), pytest.raises(BatchQuotaExceededError):
        held.service.submit_orchestrator_job(spec())
    assert [r.event for r in caplog.records if getattr(r, "event", "") == "orphan_cleanup_failed"]


# ---- notification faults of the local service -----------------------------------------------------------
def _walk(held: Stack) -> None:
    """QUEUED (on create), SCHEDULED, RUNNING, task SUCCEEDED, SUCCEEDED: five notifications."""
    held.service.submit_orchestrator_job(spec())
    for state in ("SCHEDULED", "RUNNING"):
        held.server.set_job_state(NAME, state)
    held.server.set_job_state(NAME, "SUCCEEDED", exit_code=0)


IN_ORDER = [
    ("job", "QUEUED"),
    ("job", "SCHEDULED"),
    ("job", "RUNNING"),
    ("task", "SUCCEEDED"),
    ("job", "SUCCEEDED"),
]


def test_notifications_dropped(held: Stack) -> None:
    held.server.faults.drop_notifications(2)
    _walk(held)
    held.server.stop()  # flushes the dispatcher
    assert kinds(held.notes.items) == IN_ORDER[2:]


def test_notifications_duplicated(held: Stack) -> None:
    held.server.faults.duplicate_notifications(2)
    _walk(held)
    assert kinds(held.notes.wait(7)) == [IN_ORDER[0], IN_ORDER[0], IN_ORDER[1], IN_ORDER[1], *IN_ORDER[2:]]


def test_notifications_reordered(held: Stack) -> None:
    held.server.faults.reorder_notifications(3)
    _walk(held)
    assert kinds(held.notes.wait(5)) == [IN_ORDER[2], IN_ORDER[1], IN_ORDER[0], IN_ORDER[3], IN_ORDER[4]]


def test_a_reorder_window_never_holds_notifications_forever(held: Stack) -> None:
    held.server.faults.reorder_notifications(50)  # far more than will come
    _walk(held)
    assert kinds(held.notes.wait(5, timeout=3)) == IN_ORDER[::-1]


def test_faults_clear(held: Stack) -> None:
    faults = held.server.faults
    faults.drop_notifications(5)
    faults.fail_next("GetJob", Code.INTERNAL, n=3)
    faults.preempt_next(2)
    faults.clear()
    _walk(held)
    assert kinds(held.notes.wait(5)) == IN_ORDER
    assert held.sleeps == []


class JsonLines(logging.Handler):
    """The package's log lines as Cloud Logging would receive them (logs.JsonFormatter), parsed."""

    def __init__(self) -> None:
        from arc_reactor.logs import JsonFormatter

        super().__init__()
        self.setFormatter(JsonFormatter())
        self.lines: list[dict[str, object]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))

    def events(self, name: str) -> list[dict[str, object]]:
        return [line for line in self.lines if line.get("event") == name]


@pytest.fixture
def json_logs() -> Iterator[JsonLines]:
    handler, logger = JsonLines(), logging.getLogger("arc_reactor")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


# ---- through the real submit_bundle and reconcile_batch_event apps --------------------------------------
@pytest.mark.parametrize(
    ("code", "created", "error_code"),
    [
        (Code.RESOURCE_EXHAUSTED, False, "quota_exceeded"),
        (Code.PERMISSION_DENIED, False, "permission_denied"),
        (Code.PERMISSION_DENIED, True, "permission_denied"),  # the job was made anyway: it is cancelled
    ],
)
def test_submission_refused_by_batch_fails_the_run_and_leaves_no_running_job(
    app_env, gcs, engine, batch_server, json_logs: JsonLines, code: Code, created: bool, error_code: str
) -> None:
    from arc_reactor.adapters import runs_repo

    upload_demo_data(gcs)
    manifest = upload_bundle(gcs, "refused")
    headers, body = finalize_event(gcs, manifest)
    batch_server.run_jobs = False  # a job a raced create made stays QUEUED until someone cancels it
    batch_server.faults.fail_next_create(code, "Batch says no", created=created)
    client = function_client("submit_bundle")
    for _ in range(2):  # a redelivery changes nothing
        assert client.post("/", headers=headers, data=body).status_code == 200
    [run] = runs_repo.list_runs(engine)
    assert (run["status"], run["error_code"]) == ("failed", error_code)
    assert "Batch says no" in run["error_message"]
    assert {j.status.state.name for j in batch_server.jobs()} <= {"CANCELLED"}
    assert len(batch_server.jobs()) == int(created)
    feedback = json.loads(gcs.read_bytes("arc-inbox", manifest + ".rejected.json"))
    assert (feedback["run_id"], feedback["status"]) == (run["id"], "failed")
    events = runs_repo.list_events(engine, run["id"])
    assert [e["to_status"] for e in events if e["kind"] == "transition"] == ["pending", "failed"]
    [refused] = json_logs.events("batch_job_create_failed")
    [changed] = json_logs.events("status_changed")
    assert refused["logging.googleapis.com/labels"]["run_id"] == run["id"]
    assert (changed["severity"], changed["to_status"], changed["error_code"]) == (
        "ERROR",
        "failed",
        error_code,
    )
    assert changed["logging.googleapis.com/labels"] == {"run_id": run["id"]}


def test_a_preempted_orchestrator_is_retried_and_noted_once(
    app_env, gcs, engine, batch_server, json_logs: JsonLines
) -> None:
    from arc_reactor.adapters import runs_repo
    from arc_reactor.core.events import pubsub_cloudevent

    upload_demo_data(gcs)
    manifest = upload_bundle(gcs, "preempted")
    batch_server.faults.preempt_next(1)
    headers, body = finalize_event(gcs, manifest)
    assert function_client("submit_bundle").post("/", headers=headers, data=body).status_code == 200
    job = batch_server.wait_for_job(batch_server.jobs()[-1].name, timeout=30)
    assert job.status.state.name == "SUCCEEDED"
    deadline = time.monotonic() + 5  # the last notification follows the state change
    while batch_server.notifications.items[-1][0].get("NewJobState") != "SUCCEEDED":
        assert time.monotonic() < deadline
        time.sleep(0.01)
    reconcile = function_client("reconcile_batch_event")
    for n, (attributes, data) in enumerate(batch_server.notifications.items * 2):  # each one twice
        event = pubsub_cloudevent(
            "projects/arc-test/topics/batch", f"m{n}", attributes, data, job.update_time
        )
        assert (
            reconcile.post("/", headers=binary_event(*event)[0], data=binary_event(*event)[1]).status_code
            == 200
        )
    [run] = runs_repo.list_runs(engine)
    assert run["status"] == "completed"
    notes = [e["detail"] for e in runs_repo.list_events(engine, run["id"]) if e["kind"] == "note"]
    assert notes == [
        {
            "key": "task_retry:1",  # the dedupe key: duplicate notifications record no second note
            "reason": "task_retry",
            "attempt": 1,
            "exit_code": 50001,
            "cause": "spot_preempted",
            "message": "preempted, retrying (retry 1 of 2, exit code 50001)",
        }
    ]
    [retried] = json_logs.events("task_retried")
    assert retried["logging.googleapis.com/labels"] == {"run_id": run["id"]}

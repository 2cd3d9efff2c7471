"""The local Batch service (local/batch_server.py) driven by the real BatchServiceClient over loopback."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from google.api_core import exceptions as gexc
from google.cloud import batch_v1

from arc_reactor.adapters.batch import job_status_from_proto, make_batch_client
from arc_reactor.core.job_env import JobEnv
from arc_reactor.core.jobspec import OrchestratorJob, create_job_request
from arc_reactor.local.batch_server import LocalBatchServer, command_launcher
from arc_reactor.local.batch_state import parse_filter, project_number, should_retry
from arc_reactor.local.notifications import NotificationLog, states
from arc_reactor.settings import Settings

pytestmark = pytest.mark.integration

RUN = "r0000000000abcdefgh"
NAME = f"projects/arc-test/locations/us-central1/jobs/arc-{RUN}"
DUMP_ENV = (
    "import json, os, sys; json.dump(dict(os.environ), open(sys.argv[1], 'w')); sys.exit(int(sys.argv[2]))"
)


def settings(address: str, topic: str = "projects/arc-test/topics/batch") -> Settings:
    return Settings(
        project="arc-test", region="us-central1", batch_endpoint=address, batch_topic=topic, database_url=""
    )


def request(s: Settings, run: str = RUN) -> batch_v1.CreateJobRequest:
    spec = OrchestratorJob(
        JobEnv(
            run_id=run,
            pipeline="demo",
            pipeline_version="1",
            engine="snakemake",
            config_uri="gs://b/c",
            params_uri="gs://b/p",
            work_dir="gs://b/w/",
        )
    )
    return create_job_request(spec, s)


def start(
    argv: list[str], recorder: NotificationLog | None = None
) -> tuple[LocalBatchServer, batch_v1.BatchServiceClient, Settings]:
    server = LocalBatchServer(command_launcher(argv), recorder or (lambda a, d: None)).start()
    s = settings(server.address)
    return server, make_batch_client(s), s


@pytest.fixture
def cleanup() -> Iterator[list[object]]:
    things: list[object] = []
    yield things
    for thing in things:
        if isinstance(thing, LocalBatchServer):
            thing.stop()
        else:
            thing.transport.close()  # type: ignore[attr-defined]


def test_success_walks_every_state_with_notifications_in_order(tmp_path: Path, cleanup: list[object]) -> None:
    rec = NotificationLog()
    server, client, s = start([sys.executable, "-c", DUMP_ENV, str(tmp_path / "env.json"), "0"], rec)
    cleanup += [client, server]
    created = client.create_job(request=request(s))
    assert created.status.state.name == "QUEUED"
    job = server.wait_for_job(NAME, timeout=10)
    assert job.status.state.name == "SUCCEEDED"
    job_events = [e.description for e in job.status.status_events if "Job state" in e.description]
    assert [d.split(" for job")[0] for d in job_events] == [
        "Job state is set from QUEUED to SCHEDULED",
        "Job state is set from SCHEDULED to RUNNING",
        "Job state is set from RUNNING to SUCCEEDED",
    ]
    assert states(rec.wait(6)) == [
        ("JOB_STATE_CHANGED", "QUEUED"),
        ("JOB_STATE_CHANGED", "SCHEDULED"),
        ("JOB_STATE_CHANGED", "RUNNING"),
        ("TASK_STATE_CHANGED", "RUNNING"),
        ("TASK_STATE_CHANGED", "SUCCEEDED"),
        ("JOB_STATE_CHANGED", "SUCCEEDED"),
    ]
    attrs, data = rec.items[-1]
    assert created.name == NAME.replace("arc-test", project_number("arc-test"))  # as Batch names it
    assert attrs == {
        "Type": "JOB_STATE_CHANGED",
        "JobName": created.name,
        "JobUID": created.uid,
        "NewJobState": "SUCCEEDED",
        "Region": "us-central1",
    }
    assert data.startswith(b"Job state was updated: jobUID=" + created.uid.encode())
    task_attrs = rec.items[3][0]
    assert task_attrs["TaskName"] == f"{created.name}/taskGroups/group0/tasks/0"
    assert task_attrs["TaskUID"] == f"{created.uid}-group0-0"
    env = json.loads((tmp_path / "env.json").read_text())
    assert env["RUN_ID"] == RUN
    assert (env["BATCH_TASK_INDEX"], env["BATCH_TASK_COUNT"], env["BATCH_TASK_RETRY_ATTEMPT"]) == (
        "0",
        "1",
        "0",
    )
    assert env["BATCH_JOB_UID"] == created.uid


def test_spot_preemption_is_retried_with_the_next_attempt_number(
    tmp_path: Path, cleanup: list[object]
) -> None:
    rec = NotificationLog()
    server, client, s = start([sys.executable, "-c", DUMP_ENV, str(tmp_path / "env.json"), "0"], rec)
    cleanup += [client, server]
    server.faults.preempt_next(1)
    client.create_job(request=request(s))
    job = server.wait_for_job(NAME, timeout=10)
    status = job_status_from_proto(job)
    assert (status.state, status.exit_codes, status.failure) == ("SUCCEEDED", [50001, 0], None)
    assert json.loads((tmp_path / "env.json").read_text())["BATCH_TASK_RETRY_ATTEMPT"] == "1"
    assert any("with exit code 50001" in e.description for e in job.status.status_events)
    assert states(rec.wait(8))[3:7] == [
        ("TASK_STATE_CHANGED", "RUNNING"),
        ("TASK_STATE_CHANGED", "FAILED"),
        ("TASK_STATE_CHANGED", "RUNNING"),
        ("TASK_STATE_CHANGED", "SUCCEEDED"),
    ]


SHAPES = json.loads((Path(__file__).resolve().parents[1] / "batch_notifications.json").read_text())


def test_every_message_has_the_attributes_batch_publishes_and_no_others(cleanup: list[object]) -> None:
    """A preempted attempt, a retry, success, then a failing job and a cancelled one: every message the
    service publishes has exactly the attribute set of Batch's messages of its type, each value in Batch's
    form (tests/batch_notifications.json, cited there)."""
    for kind in SHAPES["messages"].values():  # the file's own examples fit its patterns
        assert set(kind["example"]) == set(kind["attributes"])
        for key, pattern in kind["attributes"].items():
            assert re.fullmatch(pattern, kind["example"][key]), (key, kind["example"][key])
    rec = NotificationLog()
    server, client, s = start(["sh", "-c", 'sleep 0.2; exit "${EXIT:-0}"'], rec)
    cleanup += [client, server]
    server.faults.preempt_next(1)
    client.create_job(request=request(s))
    failing = request(s, "r0000000000failing1")
    failing.job.task_groups[0].task_spec.runnables[0].environment.variables["EXIT"] = "3"
    client.create_job(request=failing)
    cancelled = client.create_job(request=request(s, "r0000000000cancel01"))
    client.cancel_job(name=cancelled.name.replace(project_number("arc-test"), "arc-test")).result(timeout=10)
    for run in (RUN, "r0000000000failing1"):
        server.wait_for_job(f"projects/arc-test/locations/us-central1/jobs/arc-{run}", timeout=10)
    items = rec.wait(30, timeout=2)
    seen = {attrs["Type"] for attrs, _ in items}
    assert seen == {"JOB_STATE_CHANGED", "TASK_STATE_CHANGED"}
    for attrs, data in items:
        shape = SHAPES["messages"][attrs["Type"]]["attributes"]
        assert set(attrs) == set(shape), attrs
        for key, pattern in shape.items():
            assert re.fullmatch(pattern, attrs[key]), (key, attrs[key])
        assert data.decode().startswith(
            ("Job state was updated: jobUID=", "Task state was updated: taskUID=")
        )
        job_uid = attrs["JobUID"]
        assert not re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}", job_uid)
        if attrs["Type"] == "TASK_STATE_CHANGED":
            assert attrs["TaskUID"].startswith(job_uid + "-") and attrs["TaskName"].startswith("projects/")
    # Names compare equal however the request named the project: GetJob answers with the number form.
    by_id = client.get_job(name=NAME)
    assert (
        by_id.name
        == client.get_job(name=by_id.name).name
        == NAME.replace("arc-test", project_number("arc-test"))
    )


def test_pipeline_exit_code_fails_without_retry(cleanup: list[object]) -> None:
    rec = NotificationLog()
    server, client, s = start(["sh", "-c", "exit 3"], rec)
    cleanup += [client, server]
    client.create_job(request=request(s))
    job = server.wait_for_job(NAME, timeout=10)
    status = job_status_from_proto(job)
    assert (status.state, status.exit_codes, status.failure) == ("FAILED", [3], "pipeline_error")
    last = job.status.status_events[-1].description
    assert "Job state is set from RUNNING to FAILED" in last
    assert "task with index 0 failed" in last and "with exit code 3." in last
    assert states(rec.wait(6))[-1] == ("JOB_STATE_CHANGED", "FAILED")


def test_retries_stop_at_max_retry_count(cleanup: list[object]) -> None:
    server, client, s = start(["sh", "-c", "exit 3"])
    cleanup += [client, server]
    server.faults.preempt_next(3)  # max_retry_count 2: three attempts, all preempted
    client.create_job(request=request(s))
    status = job_status_from_proto(server.wait_for_job(NAME, timeout=10))
    assert (status.state, status.exit_codes, status.failure) == ("FAILED", [50001] * 3, "spot_preempted")


def test_max_run_duration_ends_the_task_with_50005(cleanup: list[object]) -> None:
    server, client, s = start(["sleep", "30"])
    cleanup += [client, server]
    req = request(s)
    req.job.task_groups[0].task_spec.max_run_duration = timedelta(seconds=0.3)
    client.create_job(request=req)
    status = job_status_from_proto(server.wait_for_job(NAME, timeout=10))
    assert (status.state, status.exit_codes, status.failure) == ("FAILED", [50005], "max_runtime_exceeded")


def test_cancel_kills_the_process_group(tmp_path: Path, cleanup: list[object]) -> None:
    pid_file = tmp_path / "pid"
    rec = NotificationLog()
    server, client, s = start(["sh", "-c", f'sleep 30 & echo $$ > "{pid_file}"; wait'], rec)
    cleanup += [client, server]
    client.create_job(request=request(s))
    deadline = time.monotonic() + 5
    while not pid_file.exists() or not pid_file.read_text().strip():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    pgid = int(pid_file.read_text())
    operation = client.cancel_job(name=NAME)
    assert server.wait_for_job(NAME, timeout=5).status.state.name == "CANCELLED"
    assert operation.result(timeout=10) is not None  # Operations/GetOperation now reports it done
    deadline = time.monotonic() + 5
    while True:  # the background `sleep` went with its group
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            break
        assert time.monotonic() < deadline, "process group still alive"
        time.sleep(0.02)
    seen = states(rec.wait(6))
    assert seen[-2:] == [
        ("JOB_STATE_CHANGED", "CANCELLATION_IN_PROGRESS"),
        ("JOB_STATE_CHANGED", "CANCELLED"),
    ]
    with pytest.raises(gexc.FailedPrecondition):
        client.cancel_job(name=NAME)


def test_launcher_failure_fails_the_job(cleanup: list[object]) -> None:
    def broken(job: batch_v1.Job, env: dict[str, str]) -> subprocess.Popen[bytes]:
        raise OSError("no such image")

    server = LocalBatchServer(broken, lambda a, d: None).start()
    client = make_batch_client(settings(server.address))
    cleanup += [client, server]
    client.create_job(request=request(settings(server.address)))
    job = server.wait_for_job(NAME, timeout=5)
    assert job.status.state.name == "FAILED"
    assert "no such image" in job.status.status_events[-1].description


def test_create_is_idempotent_by_request_id_and_refuses_a_second_job_id(cleanup: list[object]) -> None:
    server, client, s = start(["true"])
    cleanup += [client, server]
    server.run_jobs = False
    first = client.create_job(request=request(s))
    assert client.create_job(request=request(s)).uid == first.uid
    other = request(s)
    other.request_id = "22222222-2222-4222-8222-222222222222"
    with pytest.raises(gexc.AlreadyExists):
        client.create_job(request=other)
    assert len(server.jobs()) == 1


def test_get_list_and_delete(cleanup: list[object]) -> None:
    server, client, s = start(["true"])
    cleanup += [client, server]
    server.run_jobs = False
    for n in range(3):
        client.create_job(request=request(s, f"r0000000000{n:08d}"))
    parent = "projects/arc-test/locations/us-central1"
    listing = batch_v1.ListJobsRequest(parent=parent, filter='labels.run-id="r000000000000000001"')
    assert [j.labels["run-id"] for j in client.list_jobs(request=listing)] == ["r000000000000000001"]
    paged = client.list_jobs(request=batch_v1.ListJobsRequest(parent=parent, page_size=2))
    assert len(list(paged)) == 3
    assert (
        list(client.list_jobs(request=batch_v1.ListJobsRequest(parent=parent.replace("arc-test", "x")))) == []
    )
    with pytest.raises(gexc.InvalidArgument):
        list(client.list_jobs(request=batch_v1.ListJobsRequest(parent=parent, filter="labels.a ~ b")))
    name = f"{parent}/jobs/arc-r000000000000000001"
    client.delete_job(name=name).result(timeout=5)
    with pytest.raises(gexc.NotFound):
        client.get_job(name=name, retry=None)
    assert len(server.jobs()) == 2


def test_no_notifications_when_the_job_asks_for_none(cleanup: list[object]) -> None:
    rec = NotificationLog()
    server = LocalBatchServer(command_launcher(["true"]), rec).start()
    s = settings(server.address, topic="")
    client = make_batch_client(s)
    cleanup += [client, server]
    client.create_job(request=request(s))
    server.wait_for_job(NAME, timeout=5)
    server.stop()  # flushes the dispatcher
    assert rec.items == []


def test_a_failing_notification_handler_does_not_stop_the_others(cleanup: list[object]) -> None:
    seen: list[str] = []

    def flaky(attributes: dict[str, str], data: bytes) -> None:
        seen.append(attributes.get("NewJobState", attributes.get("NewTaskState", "")))
        if len(seen) == 1:
            raise RuntimeError("consumer bug")

    server = LocalBatchServer(command_launcher(["true"]), flaky).start()
    client = make_batch_client(settings(server.address))
    cleanup += [client, server]
    client.create_job(request=request(settings(server.address)))
    server.wait_for_job(NAME, timeout=5)
    server.stop()
    assert seen[0] == "QUEUED" and seen[-1] == "SUCCEEDED"


@pytest.mark.parametrize(
    ("policy", "codes", "exit_code", "attempt", "retry"),
    [
        (None, [], 3, 0, True),  # no policy: any non-zero exit is retried
        (None, [], 3, 2, False),  # ... up to max_retry_count
        ("RETRY_TASK", [50001], 50001, 0, True),
        ("RETRY_TASK", [50001], 3, 0, False),
        ("FAIL_TASK", [3], 3, 0, False),
        ("FAIL_TASK", [3], 4, 0, True),
        ("RETRY_TASK", [50001], 0, 0, False),  # success never retries
    ],
)
def test_retry_rule(policy: str | None, codes: list[int], exit_code: int, attempt: int, retry: bool) -> None:
    spec = batch_v1.TaskSpec(max_retry_count=2)
    if policy:
        action = batch_v1.LifecyclePolicy.Action.__members__[policy]
        condition = batch_v1.LifecyclePolicy.ActionCondition(exit_codes=codes)
        spec.lifecycle_policies = [batch_v1.LifecyclePolicy(action=action, action_condition=condition)]
    assert should_retry(spec, exit_code, attempt) is retry


def test_filter_parsing() -> None:
    clauses = parse_filter('labels.run-id="r1" AND status.state=RUNNING and labels.x!="y"')
    assert [[(t.field, t.op, t.value) for t in c] for c in clauses] == [
        [("labels.run-id", "=", "r1")],
        [("status.state", "=", "RUNNING")],
        [("labels.x", "!=", "y")],
    ]
    assert parse_filter("") == []
    with pytest.raises(ValueError, match="unsupported"):
        parse_filter("labels.a < b")
    with pytest.raises(ValueError, match="unsupported"):
        parse_filter("NOT labels.a = b")
    with pytest.raises(ValueError, match="unsupported"):
        parse_filter('(labels.a = "b" AND labels.c = "d")')
    with pytest.raises(ValueError, match="unsupported"):
        parse_filter('labels.a = "b" AND')


def test_filter_with_quoted_keys_and_or_groups() -> None:
    # The form cancel_run_jobs sends, as Google's dsub writes Batch filters: quoted label keys, OR groups.
    text = 'labels."run-id" = "r1" AND (status.state="QUEUED" OR status.state="RUNNING")'
    clauses = parse_filter(text)
    assert [[(t.field, t.value) for t in c] for c in clauses] == [
        [("labels.run-id", "r1")],
        [("status.state", "QUEUED"), ("status.state", "RUNNING")],
    ]
    # OR binds tighter than AND (AIP-160), with or without parentheses
    assert parse_filter('labels.a="1" OR labels.b="2" AND name="n"') == parse_filter(
        '(labels.a="1" OR labels.b="2") AND name="n"'
    )


def test_list_filters_on_quoted_label_and_state(cleanup: list[object]) -> None:
    server, client, s = start(["true"])
    cleanup += [client, server]
    server.run_jobs = False
    parent = "projects/arc-test/locations/us-central1"
    for n in range(3):
        client.create_job(request=request(s, f"r0000000000{n:08d}"))
    server.set_job_state(f"{parent}/jobs/arc-r000000000000000001", "RUNNING")
    server.set_job_state(f"{parent}/jobs/arc-r000000000000000002", "SUCCEEDED")
    active = 'labels."app"="arc-reactor" AND (status.state="QUEUED" OR status.state="RUNNING")'
    found = client.list_jobs(request=batch_v1.ListJobsRequest(parent=parent, filter=active))
    assert sorted(j.labels["run-id"] for j in found) == ["r000000000000000000", "r000000000000000001"]

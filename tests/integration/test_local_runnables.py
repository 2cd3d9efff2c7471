"""The local Batch service runs any job's runnables (local/runnables.py), not only the orchestrator's: task
jobs shaped as an engine's executor makes them (script and container runnables, a barrier, per-runnable
environment) run as local processes through the real BatchServiceClient, with Batch's states,
notifications, labels, retries, cancel and fault injection."""

from __future__ import annotations

import json
import time

import pytest
from google.cloud import batch_v1

from arc_reactor.adapters.batch import make_batch_client
from arc_reactor.local.batch_server import LocalBatchServer
from arc_reactor.local.notifications import NotificationLog, states
from arc_reactor.local.runnables import UnsupportedRunnable, runnable_launcher, steps
from arc_reactor.settings import Settings

pytestmark = pytest.mark.integration

PARENT = "projects/arc-test/locations/us-central1"


def script(text: str, **env: str) -> batch_v1.Runnable:
    r = batch_v1.Runnable(script=batch_v1.Runnable.Script(text=text))
    r.environment.variables = env
    return r


def container(image: str, entrypoint: str = "", commands: list[str] | None = None) -> batch_v1.Runnable:
    return batch_v1.Runnable(
        container=batch_v1.Runnable.Container(image_uri=image, entrypoint=entrypoint, commands=commands or [])
    )


def job(
    *runnables: batch_v1.Runnable, retries: int = 0, labels: dict[str, str] | None = None
) -> batch_v1.Job:
    spec = batch_v1.TaskSpec(runnables=list(runnables), max_retry_count=retries)
    spec.environment.variables = {"TASK_LEVEL": "t"}
    if retries:
        spec.lifecycle_policies = [
            batch_v1.LifecyclePolicy(
                action=batch_v1.LifecyclePolicy.Action.RETRY_TASK,
                action_condition=batch_v1.LifecyclePolicy.ActionCondition(exit_codes=[50001]),
            )
        ]
    return batch_v1.Job(
        task_groups=[batch_v1.TaskGroup(task_spec=spec, task_count=1)],
        labels=labels or {"app": "arc-reactor", "run-id": "r0000000000abcdefgh"},
        notifications=[
            batch_v1.JobNotification(
                pubsub_topic="projects/arc-test/topics/batch",
                message=batch_v1.JobNotification.Message(
                    type_=batch_v1.JobNotification.Type.JOB_STATE_CHANGED
                ),
            )
        ],
    )


@pytest.fixture
def local(tmp_path):
    notes = NotificationLog()
    server = LocalBatchServer(runnable_launcher(tmp_path / "jobs"), notes, queue_delay=0.0).start()
    client = make_batch_client(
        Settings(project="arc-test", region="us-central1", batch_endpoint=server.address, database_url="")
    )
    yield server, client, notes, tmp_path / "jobs"
    client.transport.close()
    server.stop()


def _create(client, name: str, j: batch_v1.Job) -> str:
    return client.create_job(parent=PARENT, job_id=name, job=j).name


def test_an_executors_task_job_runs_its_runnables_in_order_with_their_own_environment(local):
    server, client, notes, jobs = local
    out = jobs / "task-1" / "attempt-0"
    name = _create(
        client,
        "task-1",
        job(
            script("echo setup:$TASK_LEVEL:${OWN:-none} > order.txt", OWN="setup"),
            batch_v1.Runnable(barrier=batch_v1.Runnable.Barrier(name="wait-for-setup")),
            script(
                "#!/usr/bin/env python3\nimport os\n"
                "open('order.txt', 'a').write('py:' + os.environ['BATCH_TASK_INDEX'] + '\\n')\n"
            ),
            container(
                "europe-docker.pkg.dev/p/r/task:1", "/bin/sh", ["-c", "echo container:$OWN >> order.txt"]
            ),
        ),
    )
    done = server.wait_for_job(name, timeout=30)
    assert done.status.state.name == "SUCCEEDED"
    assert (out / "order.txt").read_text().splitlines() == ["setup:t:setup", "py:0", "container:"]
    log = (jobs / "task-1" / "attempt-0.log").read_text()
    assert "image europe-docker.pkg.dev/p/r/task:1 (not pulled: run as a local process)" in log
    assert states(notes.wait(4))[-1] == ("JOB_STATE_CHANGED", "SUCCEEDED")  # only job changes asked for
    found = batch_v1.ListJobsRequest(parent=PARENT, filter='labels."run-id"="r0000000000abcdefgh"')
    listed = client.list_jobs(request=found)
    assert [j.name for j in listed] == [name]


def test_a_failing_runnable_fails_the_task_with_its_code_and_only_always_run_ones_follow(local):
    server, client, _, jobs = local
    always = script("echo cleanup >> trail.txt")
    always.always_run = True
    ignored = script("exit 9")
    ignored.ignore_exit_status = True
    name = _create(
        client,
        "task-2",
        job(ignored, script("echo one >> trail.txt; exit 3"), script("echo never >> trail.txt"), always),
    )
    done = server.wait_for_job(name, timeout=30)
    assert done.status.state.name == "FAILED"
    assert (jobs / "task-2" / "attempt-0" / "trail.txt").read_text().splitlines() == ["one", "cleanup"]
    assert any("exit code 3" in e.description for e in done.status.status_events), done.status.status_events


def test_a_preempted_task_is_retried_by_batchs_rules_and_cancel_stops_a_running_one(local):
    server, client, _, jobs = local
    server.faults.preempt_next(1)
    name = _create(client, "task-3", job(script("echo attempt $BATCH_TASK_RETRY_ATTEMPT > a.txt"), retries=2))
    assert server.wait_for_job(name, timeout=30).status.state.name == "SUCCEEDED"
    assert (jobs / "task-3" / "attempt-1" / "a.txt").read_text().strip() == "attempt 1"

    name = _create(client, "task-4", job(script("echo started > s.txt; sleep 60; echo finished >> s.txt")))
    marker = jobs / "task-4" / "attempt-0" / "s.txt"
    deadline = time.monotonic() + 20
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    client.cancel_job(name=name).result(timeout=20)
    assert server.wait_for_job(name, timeout=20).status.state.name == "CANCELLED"
    time.sleep(0.3)
    assert marker.read_text().splitlines() == ["started"]  # the whole task's process group was stopped


def test_what_cannot_run_locally_fails_the_task_and_says_why(local):
    server, client, _, _ = local
    name = _create(client, "task-5", job(container("ubuntu:24.04")))
    done = server.wait_for_job(name, timeout=30)
    assert done.status.state.name == "FAILED"
    assert any("has no entrypoint or commands" in e.description for e in done.status.status_events)


def test_steps_of_a_job():
    background = script("sleep 5")
    background.background = True
    found = steps(job(script("echo hi"), background, container("img", "", ["python3", "-V"])))
    assert [(s.argv, s.script, s.background) for s in found] == [
        ([], "echo hi", False), ([], "sleep 5", True), (["python3", "-V"], None, False)
    ]  # fmt: skip
    with pytest.raises(UnsupportedRunnable, match="no runnable to run in the foreground"):
        steps(job(background))
    with pytest.raises(UnsupportedRunnable, match="needs a text or a path"):
        steps(job(batch_v1.Runnable(script=batch_v1.Runnable.Script())))
    assert json.dumps([vars(s) for s in found])  # the supervisor's plan is plain JSON

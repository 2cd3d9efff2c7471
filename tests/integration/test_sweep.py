"""The sweeper against the local Batch service (jobs left QUEUED; tests set their state), real PostgreSQL."""

from datetime import UTC, datetime, timedelta

import pytest
from flow import run_row
from sqlalchemy import text

from arc_reactor.adapters import runs_repo
from arc_reactor.core.batch_policy import LONGEST_RUN, MAX_RUN_DURATION
from arc_reactor.core.status import RunStatus
from arc_reactor.local.batch_state import canonical_name

pytestmark = pytest.mark.integration


@pytest.fixture
def quiet_batch():
    from arc_reactor.local.batch_server import LocalBatchServer

    server = LocalBatchServer(lambda job, env: None, lambda a, d: None, run_jobs=False).start()
    yield server
    server.stop()


@pytest.fixture
def deps(engine, gcs, quiet_batch):
    from arc_reactor.adapters.batch import BatchService, make_batch_client
    from arc_reactor.settings import Settings
    from arc_reactor.wiring import Deps

    settings = Settings(
        local=True, batch_endpoint=quiet_batch.address, project="arc-test", stale_after_seconds=600
    )
    return Deps(
        settings,
        engine_override=engine,
        storage_override=gcs,
        batch_override=BatchService(make_batch_client(settings), settings, sleep=lambda s: None),
    )


def _run_with_job(deps, server, run_id, status, age, create_job=True):
    from arc_reactor.core.job_env import JobEnv
    from arc_reactor.core.jobspec import OrchestratorJob

    values = run_row(run_id)
    runs_repo.insert_run(deps.engine, values)
    name = deps.batch.job_name(run_id)
    if create_job:
        name = deps.batch.submit_orchestrator_job(
            OrchestratorJob(
                JobEnv(
                    run_id=run_id,
                    pipeline="arc/fastq-stats",
                    pipeline_version="1.0.0",
                    engine="snakemake",
                    config_uri="",
                    params_uri="gs://i/params.yaml",
                    work_dir="gs://w/",
                    is_recovery=False,
                )
            )
        )
    runs_repo.transition(deps.engine, run_id, RunStatus.SUBMITTED, "submit", fields={"batch_job_name": name})
    if status == RunStatus.RUNNING:
        runs_repo.transition(deps.engine, run_id, RunStatus.RUNNING, "hook")
    past = datetime.now(UTC) - age
    with deps.engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE runs SET updated_at = :t, submitted_at = :t, started_at = "
                "CASE WHEN started_at IS NULL THEN NULL ELSE CAST(:t AS timestamptz) END "
                "WHERE id = :id"
            ),
            {"t": past, "id": run_id},
        )
    return name


def test_sweep_applies_the_truth_to_stale_runs_and_fails_missing_jobs(deps, quiet_batch):
    from arc_reactor.services.sweep import sweep

    done = _run_with_job(deps, quiet_batch, "r0000000000000000s1", RunStatus.RUNNING, timedelta(hours=1))
    quiet_batch.set_job_state(done, "SUCCEEDED", exit_code=0)
    _run_with_job(
        deps, quiet_batch, "r0000000000000000s2", RunStatus.SUBMITTED, timedelta(hours=1), create_job=False
    )
    fresh = _run_with_job(deps, quiet_batch, "r0000000000000000s3", RunStatus.SUBMITTED, timedelta(seconds=5))
    quiet_batch.set_job_state(fresh, "SUCCEEDED", exit_code=0)
    report = sweep(deps)
    assert report.checked == 2  # the fresh run is not stale yet
    get = lambda rid: runs_repo.get_run(deps.engine, rid)  # noqa: E731
    assert get("r0000000000000000s1")["status"] == "completed"
    missing = get("r0000000000000000s2")
    assert (missing["status"], missing["error_code"]) == ("failed", "job_missing")
    assert get("r0000000000000000s3")["status"] == "submitted"
    assert sweep(deps).checked == 0  # nothing left to do: sweeping again changes nothing


def test_sweep_enforces_batch_queue_and_runtime_limits(deps, quiet_batch):
    from arc_reactor.services.sweep import sweep

    queued = _run_with_job(deps, quiet_batch, "r0000000000000000q1", RunStatus.SUBMITTED, timedelta(days=3))
    _run_with_job(
        deps, quiet_batch, "r0000000000000000q2", RunStatus.RUNNING, LONGEST_RUN + timedelta(hours=1)
    )
    # Past one attempt's max_run_duration but not past all attempts': a retried head job may still be running.
    _run_with_job(deps, quiet_batch, "r0000000000000000q3", RunStatus.RUNNING, MAX_RUN_DURATION * 2)
    sweep(deps)
    q1 = runs_repo.get_run(deps.engine, "r0000000000000000q1")
    q2 = runs_repo.get_run(deps.engine, "r0000000000000000q2")
    assert (q1["status"], q1["error_code"]) == ("failed", "queued_too_long")
    assert (q2["status"], q2["error_code"]) == ("failed", "max_runtime_exceeded")
    assert runs_repo.get_run(deps.engine, "r0000000000000000q3")["status"] == "running"
    assert deps.batch.get_job(queued).state in ("CANCELLATION_IN_PROGRESS", "CANCELLED")


def test_the_sweepers_run_limit_is_the_job_specs():
    """One source for the limit: the sweeper's bound is what the orchestrator job's spec allows."""
    from arc_reactor.core.job_env import JobEnv
    from arc_reactor.core.jobspec import OrchestratorJob, build_job
    from arc_reactor.settings import Settings

    job = build_job(
        OrchestratorJob(
            JobEnv("r0000000000000000z1", "arc/fastq-stats", "1.0.0", "snakemake", "", "gs://i/p")
        ),
        Settings(),
    )
    task = job.task_groups[0].task_spec
    per_attempt = timedelta(seconds=task.max_run_duration.total_seconds())
    assert per_attempt * (task.max_retry_count + 1) == LONGEST_RUN


def test_sweep_work_per_call_is_bounded(deps, quiet_batch):
    from arc_reactor.services.sweep import sweep
    from arc_reactor.wiring import Deps

    for i in range(5):
        _run_with_job(deps, quiet_batch, f"r00000000000000000b{i}", RunStatus.SUBMITTED, timedelta(hours=1))
    small = Deps(
        deps.settings.model_copy(update={"sweep_batch_size": 2}),
        engine_override=deps.engine,
        storage_override=deps.storage,
        batch_override=deps.batch,
    )
    assert sweep(small).checked == 2


def test_one_run_batch_refuses_to_show_does_not_stop_the_sweep(deps, quiet_batch):
    import grpc

    from arc_reactor.services.sweep import sweep

    first = _run_with_job(deps, quiet_batch, "r0000000000000000e1", RunStatus.RUNNING, timedelta(hours=2))
    second = _run_with_job(deps, quiet_batch, "r0000000000000000e2", RunStatus.RUNNING, timedelta(hours=1))
    quiet_batch.set_job_state(first, "SUCCEEDED", exit_code=0)
    quiet_batch.set_job_state(second, "SUCCEEDED", exit_code=0)
    quiet_batch.faults.fail_next("GetJob", grpc.StatusCode.PERMISSION_DENIED)  # the oldest run's read
    report = sweep(deps)
    assert (report.checked, report.errors, report.changed) == (2, 1, 1)
    assert runs_repo.get_run(deps.engine, "r0000000000000000e1")["status"] == "running"
    assert runs_repo.get_run(deps.engine, "r0000000000000000e2")["status"] == "completed"
    assert sweep(deps).changed == 1  # the next sweep picks the first one up


def test_sweep_stops_starting_checks_when_its_time_budget_is_spent(deps, quiet_batch):
    from arc_reactor.services.sweep import sweep

    for i in range(3):
        _run_with_job(deps, quiet_batch, f"r00000000000000000t{i}", RunStatus.SUBMITTED, timedelta(hours=1))
    ticks = iter([0.0, 0.0, 0.0, 99.0, 99.0])  # start, run 1, run 2, then past the budget
    report = sweep(deps, budget_s=10.0, clock=lambda: next(ticks))
    assert (report.checked, report.deferred) == (2, 1)


def test_limits_cancel_the_task_jobs_too(deps, quiet_batch):
    from arc_reactor.core.job_env import JobEnv
    from arc_reactor.core.jobspec import OrchestratorJob, create_job_request
    from arc_reactor.services.sweep import sweep

    run_id = "r0000000000000000l1"
    name = _run_with_job(deps, quiet_batch, run_id, RunStatus.RUNNING, LONGEST_RUN + timedelta(hours=1))
    quiet_batch.set_job_state(name, "RUNNING")
    task = create_job_request(
        OrchestratorJob(
            JobEnv(run_id, "arc/fastq-stats", "1.0.0", "snakemake", "", "gs://i/p.yaml", "gs://w/")
        ),
        deps.settings,
    )
    task.job_id, task.request_id = "nf-0a1b2c3d", "33333333-3333-4333-8333-333333333333"
    deps.batch._client.create_job(request=task)
    quiet_batch.set_job_state(f"{task.parent}/jobs/nf-0a1b2c3d", "RUNNING")
    sweep(deps)
    assert runs_repo.get_run(deps.engine, run_id)["error_code"] == "max_runtime_exceeded"
    assert {j.name.rsplit("/", 1)[1]: j.status.state.name for j in quiet_batch.jobs()} == {
        f"arc-{run_id}": "CANCELLED",
        "nf-0a1b2c3d": "CANCELLED",
    }


def test_a_cancelling_run_whose_job_was_deleted_is_cancelled_not_failed(deps, quiet_batch):
    from arc_reactor.services.sweep import sweep

    run_id = "r0000000000000000c1"
    name = _run_with_job(deps, quiet_batch, run_id, RunStatus.RUNNING, timedelta(hours=1))
    runs_repo.transition(deps.engine, run_id, RunStatus.CANCELLING, "api")
    with deps.engine.begin() as conn:  # stale again
        conn.execute(
            text("UPDATE runs SET updated_at = now() - interval '1 hour' WHERE id = :id"), {"id": run_id}
        )
    deps.batch._client.delete_job(name=name).result(timeout=5)  # Batch deletes where it cannot cancel
    sweep(deps)
    run = runs_repo.get_run(deps.engine, run_id)
    assert (run["status"], run["error_code"]) == ("cancelled", None)


def test_a_stuck_cancelling_run_has_its_jobs_cancelled_again(deps, quiet_batch):
    from arc_reactor.core.job_env import JobEnv
    from arc_reactor.core.jobspec import OrchestratorJob, create_job_request
    from arc_reactor.services.sweep import sweep

    run_id = "r0000000000000000c2"
    name = _run_with_job(deps, quiet_batch, run_id, RunStatus.RUNNING, timedelta(hours=1))
    quiet_batch.set_job_state(name, "RUNNING")
    runs_repo.transition(deps.engine, run_id, RunStatus.CANCELLING, "api")  # the cancel never reached Batch
    spec = OrchestratorJob(JobEnv(run_id, "arc/fastq-stats", "1.0.0", "snakemake", "", "gs://i/p", "gs://w/"))
    task = create_job_request(spec, deps.settings)
    task.job_id, task.request_id = "nf-launched-late", "44444444-4444-4444-8444-444444444444"
    deps.batch._client.create_job(request=task)
    stale = text("UPDATE runs SET updated_at = now() - interval '1 hour' WHERE id = :id")
    with deps.engine.begin() as conn:
        conn.execute(stale, {"id": run_id})
    sweep(deps)
    assert {j.status.state.name for j in quiet_batch.jobs()} == {"CANCELLED"}
    sweep(deps)  # the next sweep sees the job cancelled
    assert runs_repo.get_run(deps.engine, run_id)["status"] == "cancelled"


def _pending(deps, run_id, age=timedelta(hours=1), inputs=True):
    values = run_row(run_id, inputs_uri=f"gs://arc-runs/runs/{run_id}/inputs/")
    runs_repo.insert_run(deps.engine, values)
    if inputs:
        deps.storage.write_bytes("arc-runs", f"runs/{run_id}/inputs/params.yaml", b"input: x\n")
    with deps.engine.begin() as conn:
        conn.execute(
            text("UPDATE runs SET updated_at = :t, created_at = :t WHERE id = :id"),
            {"t": datetime.now(UTC) - age, "id": run_id},
        )


def test_a_run_left_pending_without_a_job_is_submitted_by_the_sweeper(deps, quiet_batch):
    """Its submit delivery was dropped after the inputs were written: the same job (same id) is created."""
    from arc_reactor.services.sweep import sweep

    _pending(deps, "r0000000000000000p1")
    report = sweep(deps)
    run = runs_repo.get_run(deps.engine, "r0000000000000000p1")
    assert (report.changed, run.status) == (1, "submitted")
    assert run.batch_job_name == canonical_name(deps.batch.job_name("r0000000000000000p1"))  # Batch's form
    env = dict(quiet_batch.jobs()[0].task_groups[0].task_spec.environment.variables)
    assert env["PARAMS_GCS_PATH"] == "gs://arc-runs/runs/r0000000000000000p1/inputs/params.yaml"
    assert "CONFIG_GCS_PATH" not in env
    sweep(deps)  # again: the run is submitted now, nothing is created twice
    assert len(quiet_batch.jobs()) == 1


def test_a_pending_run_whose_inputs_were_never_written_fails_saying_so(deps, quiet_batch):
    from arc_reactor.services.sweep import sweep

    _pending(deps, "r0000000000000000p2", inputs=False)
    sweep(deps)
    run = runs_repo.get_run(deps.engine, "r0000000000000000p2")
    assert (run.status, run.error_code) == ("failed", "submission_incomplete")
    assert "submit the bundle again" in run.error_message
    assert quiet_batch.jobs() == []


def test_a_pending_run_whose_job_exists_takes_the_jobs_state(deps, quiet_batch):
    """The job was created but the run was never marked submitted: Batch's truth applies, no new job."""
    from arc_reactor.services.sweep import sweep

    name = _run_with_job(deps, quiet_batch, "r0000000000000000p3", RunStatus.SUBMITTED, timedelta(hours=1))
    with deps.engine.begin() as conn:
        conn.execute(text("UPDATE runs SET status = 'pending' WHERE id = 'r0000000000000000p3'"))
    quiet_batch.set_job_state(name, "RUNNING")
    sweep(deps)
    assert runs_repo.get_run(deps.engine, "r0000000000000000p3").status == "running"
    assert len(quiet_batch.jobs()) == 1


def test_jobs_that_outlive_their_run_are_cancelled_and_no_others(deps, quiet_batch):
    """An engine's task jobs left behind by a run that ended (nextflow-io/nextflow#3847): the sweeper
    cancels them after ORPHAN_GRACE, notes it on the run, and leaves alone the jobs of runs still going, of
    runs that ended a moment ago, and of runs it does not know (another deployment's)."""
    from google.cloud import batch_v1

    from arc_reactor.adapters.batch import make_batch_client
    from arc_reactor.services.sweep import ORPHAN_GRACE, ORPHAN_NOTE, sweep

    client = make_batch_client(deps.settings)
    parent = f"projects/{deps.settings.project}/locations/{deps.settings.region}"

    def task_job(job_id: str, **labels: str) -> str:
        spec = batch_v1.TaskSpec(
            runnables=[batch_v1.Runnable(script=batch_v1.Runnable.Script(text="sleep 1"))]
        )
        job = batch_v1.Job(task_groups=[batch_v1.TaskGroup(task_spec=spec)], labels=labels)
        return client.create_job(parent=parent, job_id=job_id, job=job).name

    ended, recent, going = "r00000000000000ended", "r0000000000000recent", "r00000000000000going"
    for run_id in (ended, recent, going):
        _run_with_job(deps, quiet_batch, run_id, RunStatus.RUNNING, timedelta(seconds=1))
    runs_repo.transition(deps.engine, ended, RunStatus.COMPLETED, "hook")
    runs_repo.transition(deps.engine, recent, RunStatus.FAILED, "hook")
    with deps.engine.begin() as conn:
        late = datetime.now(UTC) - ORPHAN_GRACE - timedelta(minutes=1)
        conn.execute(
            text("UPDATE runs SET completed_at = :t, updated_at = :t WHERE id = :id"),
            {"t": late, "id": ended},
        )
    orphans = [task_job(f"nf-{i}", app="arc-reactor", **{"run-id": ended}) for i in range(2)]
    kept = [
        task_job("nf-recent", app="arc-reactor", **{"run-id": recent}),
        task_job("nf-going", app="arc-reactor", **{"run-id": going}),
        task_job("nf-unknown", app="arc-reactor", **{"run-id": "r0000000000000other"}),
        task_job("not-ours", **{"run-id": ended}),
    ]
    report = sweep(deps)
    # The ended run's orchestrator job was still listed as active too (the quiet service never runs one).
    head = runs_repo.get_run(deps.engine, ended).batch_job_name
    assert set(report.orphans_cancelled) == {*orphans, head}
    states = {j.name: j.status.state.name for j in client.list_jobs(parent=parent)}
    assert all(states[name] in ("CANCELLATION_IN_PROGRESS", "CANCELLED") for name in orphans)
    assert all(states[name] == "QUEUED" for name in kept)
    notes = runs_repo.notes_of(deps.engine, ended, ORPHAN_NOTE)
    assert len(notes) == 1 and set(orphans) <= set(notes[0]["detail"]["cancelled"])
    assert sweep(deps).orphans_cancelled == []  # nothing active is left of it: a second sweep does nothing

"""The sweeper against the local Batch service (jobs left QUEUED; tests set their state), real PostgreSQL."""

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from arc_reactor.adapters import runs_repo
from arc_reactor.core.status import RunStatus

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
    from arc_reactor.services.deps import Deps
    from arc_reactor.settings import Settings

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
    from arc_reactor.core.jobspec import OrchestratorJob

    values = dict(
        id=run_id,
        pipeline="arc/fastq-stats",
        revision="1.0.0",
        engine="snakemake",
        lineage_id=run_id,
        work_dir="gs://w/",
        cache_dir="gs://c/",
        inputs_uri="gs://i/",
        results_uri="gs://r/",
        logs_uri="gs://l/",
    )
    runs_repo.insert_run(deps.engine, values)
    name = deps.batch.job_name(run_id)
    if create_job:
        name = deps.batch.submit_orchestrator_job(
            OrchestratorJob(
                run_id=run_id,
                pipeline="arc/fastq-stats",
                pipeline_version="1.0.0",
                engine="snakemake",
                config_gcs_path="",
                params_gcs_path="gs://i/params.yaml",
                work_dir="gs://w/",
                is_recovery=False,
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
    _run_with_job(deps, quiet_batch, "r0000000000000000q2", RunStatus.RUNNING, timedelta(days=15))
    sweep(deps)
    q1 = runs_repo.get_run(deps.engine, "r0000000000000000q1")
    q2 = runs_repo.get_run(deps.engine, "r0000000000000000q2")
    assert (q1["status"], q1["error_code"]) == ("failed", "queued_too_long")
    assert (q2["status"], q2["error_code"]) == ("failed", "max_runtime_exceeded")
    assert deps.batch.get_job(queued).state in ("CANCELLATION_IN_PROGRESS", "CANCELLED")


def test_sweep_work_per_call_is_bounded(deps, quiet_batch):
    from arc_reactor.services.deps import Deps
    from arc_reactor.services.sweep import sweep

    for i in range(5):
        _run_with_job(deps, quiet_batch, f"r00000000000000000b{i}", RunStatus.SUBMITTED, timedelta(hours=1))
    small = Deps(
        deps.settings.model_copy(update={"sweep_batch_size": 2}),
        engine_override=deps.engine,
        storage_override=deps.storage,
        batch_override=deps.batch,
    )
    assert sweep(small).checked == 2

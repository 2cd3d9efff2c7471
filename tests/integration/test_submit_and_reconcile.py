"""Submission and reconciliation through the real functions-framework apps, on real PostgreSQL, the storage
emulator and the local Batch service. Nothing is mocked."""

import itertools
import json
import random
import threading
from datetime import UTC, datetime, timedelta

import pytest
from flow import binary_event, finalize_event, function_client, upload_bundle, upload_demo_data
from sqlalchemy import text

from arc_reactor.core.events import pubsub_cloudevent

pytestmark = pytest.mark.integration


def _count(engine, sql):
    with engine.connect() as conn:
        return conn.execute(text(sql)).scalar()


def _runs(engine):
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(text("SELECT * FROM runs ORDER BY created_at")).mappings()]


def test_same_finalize_event_three_times_makes_one_run_and_one_job(app_env, gcs, engine, batch_server):
    upload_demo_data(gcs)
    manifest = upload_bundle(gcs, "sub1")
    headers, body = finalize_event(gcs, manifest)
    client = function_client("submit_bundle")
    for _ in range(3):
        assert client.post("/", headers=headers, data=body).status_code == 200
    runs = _runs(engine)
    assert len(runs) == 1
    assert len(batch_server.jobs()) == 1
    run = runs[0]
    assert run["status"] in ("submitted", "running", "completed")
    assert run["batch_job_name"].endswith(f"/jobs/arc-{run['id']}")
    assert run["source_object"] == manifest
    feedback = json.loads(gcs.read_bytes("arc-inbox", manifest + ".accepted.json"))
    assert feedback["run_id"] == run["id"]
    inputs = gcs.list_names("arc-runs", f"runs/{run['id']}/inputs/")
    assert sorted(n.rsplit("/", 1)[1] for n in inputs) == ["params.yaml", "samplesheet.csv"]
    assert _count(engine, "SELECT count(*) FROM run_events WHERE to_status = 'submitted'") == 1


def test_concurrent_deliveries_of_one_event_make_one_run_and_one_job(app_env, gcs, engine, batch_server):
    upload_demo_data(gcs)
    manifest = upload_bundle(gcs, "race")
    headers, body = finalize_event(gcs, manifest)
    statuses = []

    def deliver():
        statuses.append(function_client("submit_bundle").post("/", headers=headers, data=body).status_code)

    threads = [threading.Thread(target=deliver) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert statuses == [200] * 4
    assert len(_runs(engine)) == 1
    assert len(batch_server.jobs()) == 1


def test_reuploaded_manifest_is_a_new_run(app_env, gcs, engine, batch_server):
    upload_demo_data(gcs)
    client = function_client("submit_bundle")
    manifest = upload_bundle(gcs, "again")
    headers, body = finalize_event(gcs, manifest)
    assert client.post("/", headers=headers, data=body).status_code == 200
    gcs.write_bytes("arc-inbox", manifest, gcs.read_bytes("arc-inbox", manifest))  # new generation
    headers2, body2 = finalize_event(gcs, manifest)
    assert client.post("/", headers=headers2, data=body2).status_code == 200
    assert client.post("/", headers=headers, data=body).status_code == 200  # the old generation: superseded
    assert len(_runs(engine)) == 2
    assert len(batch_server.jobs()) == 2


def test_invalid_bundle_is_rejected_with_every_problem_and_no_job(app_env, gcs, engine, batch_server):
    files = {
        "run.yaml": b"pipeline: nf-core/nosuch\nrevison: 1\n",
        "samplesheet.csv": b"sample,fastq_1\na,b.fastq.gz,extra\n",
    }
    manifest = upload_bundle(gcs, "bad", files)
    headers, body = finalize_event(gcs, manifest)
    client = function_client("submit_bundle")
    for _ in range(2):
        assert client.post("/", headers=headers, data=body).status_code == 200
    rejected = json.loads(gcs.read_bytes("arc-inbox", manifest + ".rejected.json"))
    files_named = {p["file"] for p in rejected["problems"]}
    assert {"run.yaml", "samplesheet.csv"} <= files_named
    assert any("nf-core/nosuch" in p["message"] for p in rejected["problems"])
    assert gcs.read_bytes("arc-inbox", manifest + ".accepted.json") is None
    runs = _runs(engine)
    assert len(runs) == 1  # the redelivery did not record a second failure
    assert runs[0]["status"] == "failed"
    assert runs[0]["error_code"] == "invalid_bundle"
    assert batch_server.jobs() == []
    assert gcs.read_bytes("arc-inbox", "bad/samplesheet.csv") is not None  # nothing in the inbox is deleted


def test_a_folder_fixed_and_uploaded_again_tells_the_whole_story(app_env, gcs, engine, batch_server):
    """Rejected (the run keeps what the user meant), fixed (the refusal is marked superseded), and run.yaml
    uploaded once more (a second run, and the feedback says so and why)."""
    from flow import DEMO_BUNDLE

    upload_demo_data(gcs)
    client = function_client("submit_bundle")

    def deliver(manifest):
        headers, body = finalize_event(gcs, manifest)
        assert client.post("/", headers=headers, data=body).status_code == 200

    files = {p.name: p.read_bytes() for p in DEMO_BUNDLE.iterdir() if p.is_file()}
    good_manifest = files["run.yaml"]
    files["run.yaml"] = b"pipeline: arc/fastq-stats\nname: atlas S1\nsubmitter: ana@example.org\n"
    files["run.yaml"] += b"labels: {project: atlas}\nrevison: 1\n"  # a typo: refused
    manifest = upload_bundle(gcs, "story", files)
    deliver(manifest)
    rejected = json.loads(gcs.read_bytes("arc-inbox", manifest + ".rejected.json"))
    assert rejected["outcome"] == "rejected" and not {"inputs", "results", "logs"} & rejected.keys()
    [failed] = _runs(engine)
    assert (failed["name"], failed["submitter"], failed["labels"]) == (
        "atlas S1", "ana@example.org", {"project": "atlas"},
    )  # fmt: skip

    gcs.write_bytes("arc-inbox", manifest, good_manifest)  # fixed
    deliver(manifest)
    accepted = json.loads(gcs.read_bytes("arc-inbox", manifest + ".accepted.json"))
    assert accepted["outcome"] == "submitted" and "previous_run_id" not in accepted
    superseded = json.loads(gcs.read_bytes("arc-inbox", manifest + ".rejected.json"))
    assert (superseded["outcome"], superseded["superseded_by_run_id"]) == ("superseded", accepted["run_id"])
    assert superseded["see"] == "run.yaml.accepted.json" and superseded["rejected"] == rejected

    gcs.write_bytes("arc-inbox", manifest, good_manifest)  # uploaded once more: a new generation
    deliver(manifest)
    second = json.loads(gcs.read_bytes("arc-inbox", manifest + ".accepted.json"))
    assert second["run_id"] != accepted["run_id"] and second["previous_run_id"] == accepted["run_id"]
    assert f"arc runs recover {accepted['run_id']}" in second["note"]
    assert json.loads(gcs.read_bytes("arc-inbox", manifest + ".rejected.json")) == superseded  # once


def test_objects_that_are_not_manifests_are_ignored(app_env, gcs, engine, batch_server):
    gcs.write_bytes("arc-inbox", "sub/samplesheet.csv", b"sample\n")
    headers, body = finalize_event(gcs, "sub/samplesheet.csv")
    assert function_client("submit_bundle").post("/", headers=headers, data=body).status_code == 200
    assert _runs(engine) == []


def test_events_older_than_the_limit_are_dropped(app_env, gcs, engine, batch_server):
    upload_demo_data(gcs)
    manifest = upload_bundle(gcs, "old")
    headers, body = finalize_event(gcs, manifest, time=datetime.now(UTC) - timedelta(hours=25))
    assert function_client("submit_bundle").post("/", headers=headers, data=body).status_code == 200
    assert _runs(engine) == []


def test_malformed_event_is_acknowledged_not_retried(app_env, gcs, engine, batch_server):
    headers, body = binary_event(
        {
            "type": "google.cloud.storage.object.v1.finalized",
            "source": "//storage",
            "id": "1",
            "specversion": "1.0",
        },
        {"bucket": "arc-inbox", "name": "x/run.yaml", "generation": "not-a-number"},
    )
    assert function_client("submit_bundle").post("/", headers=headers, data=body).status_code == 200
    assert _runs(engine) == []


def test_database_down_is_a_500_so_the_event_is_redelivered(
    app_env, gcs, batch_server, monkeypatch, tmp_path
):
    from arc_reactor.wiring import reset_deps

    upload_demo_data(gcs)
    manifest = upload_bundle(gcs, "nodb")
    headers, body = finalize_event(gcs, manifest)
    monkeypatch.setenv(
        "DATABASE_URL", f"postgresql+pg8000://postgres@/postgres?unix_sock={tmp_path}/.s.PGSQL.1"
    )
    reset_deps()
    assert function_client("submit_bundle").post("/", headers=headers, data=body).status_code == 500
    assert batch_server.jobs() == []


def _submit_and_finish(gcs, batch_server, submission):
    upload_demo_data(gcs)
    manifest = upload_bundle(gcs, submission)
    headers, body = finalize_event(gcs, manifest)
    assert function_client("submit_bundle").post("/", headers=headers, data=body).status_code == 200
    job = batch_server.jobs()[-1]
    batch_server.wait_for_job(job.name, timeout=30)
    return job.name


def _deliver_notifications(notes, order):
    client = function_client("reconcile_batch_event")
    for attributes, data in order:
        headers, body = binary_event(
            *pubsub_cloudevent(
                "projects/arc-test/topics/batch", str(random.random()), attributes, data, datetime.now(UTC)
            )
        )
        assert client.post("/", headers=headers, data=body).status_code == 200


@pytest.mark.parametrize("order", ["in_order", "reversed", "shuffled"])
def test_notifications_twice_and_out_of_order_leave_the_right_final_status(
    app_env, gcs, engine, batch_server, order
):
    _submit_and_finish(gcs, batch_server, f"notes-{order}")
    notes = list(batch_server.notifications.items)
    assert {a["Type"] for a, _ in notes} >= {"JOB_STATE_CHANGED"}
    doubled = list(itertools.chain.from_iterable(zip(notes, notes, strict=True)))
    if order == "reversed":
        doubled.reverse()
    elif order == "shuffled":
        random.Random(7).shuffle(doubled)
    _deliver_notifications(notes, doubled)
    run = _runs(engine)[0]
    assert run["status"] == "completed"
    # every transition recorded once, none backwards
    with engine.connect() as conn:
        seen = [
            r[0]
            for r in conn.execute(
                text("SELECT to_status FROM run_events WHERE kind = 'transition' ORDER BY id")
            )
        ]
    assert len(seen) == len(set(seen))
    assert seen[0] == "pending"
    assert seen[-1] == "completed"


def test_failed_job_records_exit_code_and_pipeline_error(app_env, gcs, engine, batch_server, exit_codes):
    exit_codes.append(3)
    _submit_and_finish(gcs, batch_server, "fails")
    _deliver_notifications(batch_server.notifications, batch_server.notifications.items[-1:])
    run = _runs(engine)[0]
    assert run["status"] == "failed"
    assert run["error_code"] == "pipeline_error"
    assert run["exit_code"] == 3


def test_notification_for_a_job_that_is_not_ours_is_ignored(app_env, engine):
    _deliver_notifications(
        None,
        [
            (
                {
                    "Type": "JOB_STATE_CHANGED",
                    "JobName": "projects/p/locations/r/jobs/nf-abc",
                    "NewJobState": "RUNNING",
                },
                b"",
            )
        ],
    )
    assert _runs(engine) == []


def test_oversize_file_is_one_clear_problem_and_is_never_downloaded(
    app_env, gcs, engine, batch_server, monkeypatch
):
    from arc_reactor.wiring import reset_deps

    monkeypatch.setenv("ARC_MAX_FILE_BYTES", "2048")
    reset_deps()
    files = {
        "run.yaml": b"pipeline: arc/fastq-stats\n",
        "samplesheet.csv": b"sample,fastq_1\n" + b"a,b.fq\n" * 1000,
    }
    manifest = upload_bundle(gcs, "big", files)
    headers, body = finalize_event(gcs, manifest)
    assert function_client("submit_bundle").post("/", headers=headers, data=body).status_code == 200
    problems = json.loads(gcs.read_bytes("arc-inbox", manifest + ".rejected.json"))["problems"]
    about_sheet = [p for p in problems if p["file"] == "samplesheet.csv"]
    assert len(about_sheet) == 1
    assert "over the limit of 2048 bytes" in about_sheet[0]["message"]


def test_the_manifests_profile_and_the_runs_places_reach_the_orchestrator(app_env, gcs, engine, batch_server):
    """The submit side writes the job environment, the orchestrator's reader reads it: held together here."""
    from flow import DEMO_BUNDLE

    from arc_reactor.core.job_env import JobEnv

    upload_demo_data(gcs)
    files = {p.name: p.read_bytes() for p in DEMO_BUNDLE.iterdir() if p.is_file()}
    files["run.yaml"] += b"profile: test,big_mem\n"
    manifest = upload_bundle(gcs, "profiled", files)
    headers, body = finalize_event(gcs, manifest)
    assert function_client("submit_bundle").post("/", headers=headers, data=body).status_code == 200
    (run,) = _runs(engine)
    (job,) = batch_server.jobs()
    env = JobEnv.from_env(dict(job.task_groups[0].task_spec.environment.variables))
    assert env.profile == run["profile"] == "test,big_mem"
    assert (env.run_id, env.pipeline, env.pipeline_version, env.engine) == (
        run["id"], run["pipeline"], run["revision"], run["engine"],
    )  # fmt: skip
    assert (env.work_dir, env.cache_dir, env.logs_dir, env.results_dir) == (
        run["work_dir"], run["cache_dir"], run["logs_uri"], run["results_uri"],
    )  # fmt: skip
    assert env.params_uri == run["inputs_uri"] + "params.yaml"
    assert env.labels == dict(job.labels)


def test_task_messages_alone_bring_the_run_to_its_final_state(app_env, gcs, engine, batch_server):
    """Batch's TASK_STATE_CHANGED messages carry no JobName: the run is found from TaskName and JobUID."""
    job_name = _submit_and_finish(gcs, batch_server, "tasks-only")
    tasks = [(a, d) for a, d in batch_server.notifications.items if a["Type"] == "TASK_STATE_CHANGED"]
    assert tasks and all("JobName" not in a and a["TaskName"].startswith(job_name + "/") for a, _ in tasks)
    _deliver_notifications(None, tasks[-1:])
    run = _runs(engine)[0]
    assert run["status"] == "completed"
    assert run["batch_job_uid"] == batch_server.jobs()[-1].uid == tasks[-1][0]["JobUID"]


def test_a_preempted_attempt_is_noted_from_its_task_message_alone(app_env, gcs, engine, batch_server):
    """A spot retry changes no job state, so Batch sends only task messages (TaskName with the project's
    number, no JobName): the run's "preempted, retrying" note is recorded from that message at once."""
    from arc_reactor.adapters import runs_repo

    batch_server.run_jobs = False  # the job stays where the test puts it
    upload_demo_data(gcs)
    headers, body = finalize_event(gcs, upload_bundle(gcs, "preempted-task"))
    assert function_client("submit_bundle").post("/", headers=headers, data=body).status_code == 200
    (job,) = batch_server.jobs()
    assert job.name.split("/")[1].isdigit()  # Batch's form of the name: the project number
    batch_server.set_job_state(job.name, "RUNNING")
    batch_server.retry_task(job.name, exit_code=50001)
    failed = [
        (a, d) for a, d in batch_server.notifications.wait(6, job=job.name)
        if a["Type"] == "TASK_STATE_CHANGED" and a["NewTaskState"] == "FAILED"
    ]  # fmt: skip
    assert failed and "JobName" not in failed[-1][0]
    _deliver_notifications(None, failed[-1:])
    (run,) = _runs(engine)
    assert run["status"] == "running"
    notes = [e["detail"] for e in runs_repo.list_events(engine, run["id"]) if e["kind"] == "note"]
    assert [n["message"] for n in notes] == ["preempted, retrying (retry 1 of 2, exit code 50001)"]


@pytest.mark.parametrize("keep", [("JobUID",), ("TaskUID",)])
def test_a_task_message_with_only_a_uid_finds_its_run_by_the_recorded_uid(
    app_env, gcs, engine, batch_server, keep
):
    _submit_and_finish(gcs, batch_server, "uid-only-" + keep[0].lower())
    (last,) = [a for a, _ in batch_server.notifications.items if a["Type"] == "TASK_STATE_CHANGED"][-1:]
    bare = {k: v for k, v in last.items() if k in ("Type", "NewTaskState", "Region", *keep)}
    _deliver_notifications(None, [(bare, b"")])
    assert _runs(engine)[0]["status"] == "completed"


def test_a_uid_nobody_recorded_is_ignored(app_env, engine):
    msg = {"Type": "TASK_STATE_CHANGED", "JobUID": "nf-task-1a2b3c4d-0000-1111", "NewTaskState": "RUNNING"}
    _deliver_notifications(None, [(msg, b"")])
    assert _runs(engine) == []


def test_the_inbox_feedback_carries_the_warnings(app_env, gcs, engine, batch_server):
    from flow import DEMO_BUNDLE

    upload_demo_data(gcs)
    files = {p.name: p.read_bytes() for p in DEMO_BUNDLE.iterdir() if p.is_file()}
    files["params.yaml"] = b"min_quality: 20\nmax_reads: 5\n"
    manifest = upload_bundle(gcs, "warned", files)
    headers, body = finalize_event(gcs, manifest)
    assert function_client("submit_bundle").post("/", headers=headers, data=body).status_code == 200
    feedback = json.loads(gcs.read_bytes("arc-inbox", manifest + ".accepted.json"))
    assert feedback["outcome"] == "submitted"
    assert [(w["file"], w["line"], w["field"]) for w in feedback["warnings"]] == [
        ("params.yaml", 2, "max_reads")
    ]


def test_sanitized_labels_are_stored_beside_the_raw_ones_and_the_user_is_told(
    app_env, gcs, engine, batch_server
):
    from flow import DEMO_BUNDLE

    upload_demo_data(gcs)
    files = {p.name: p.read_bytes() for p in DEMO_BUNDLE.iterdir() if p.is_file()}
    files["run.yaml"] = files["run.yaml"].replace(b"project: arc-demo", b"Project: 'Atlas Team!'")
    manifest = upload_bundle(gcs, "labelled", files)
    headers, body = finalize_event(gcs, manifest)
    assert function_client("submit_bundle").post("/", headers=headers, data=body).status_code == 200
    (run,) = _runs(engine)
    assert run["labels"]["Project"] == "Atlas Team!"
    assert run["batch_labels"]["project"] == "atlas_team_"
    assert run["batch_labels"] == dict(batch_server.jobs()[-1].labels)  # what Batch and billing see
    feedback = json.loads(gcs.read_bytes("arc-inbox", manifest + ".accepted.json"))
    assert feedback["labels_changed"] == [
        {"key": "Project", "value": "Atlas Team!", "became": "project=atlas_team_"}
    ]


def test_a_failure_the_hook_could_not_record_reaches_the_run_through_reconcile(
    app_env, gcs, engine, batch_server, exit_codes, caplog
):
    """The database was down when the orchestrator's hook reported: update_status.py gives up within its
    bounds and leaves the outcome; Batch's FAILED notification applies the engine's own error at once."""
    import logging
    import sys

    from flow import ROOT
    from sqlalchemy import create_engine

    sys.path.insert(0, str(ROOT / "orchestrator"))
    try:
        import update_status
    finally:
        sys.path.remove(str(ROOT / "orchestrator"))
    exit_codes.append(3)
    job_name = _submit_and_finish(gcs, batch_server, "hook-lost")
    run_id = job_name.rsplit("/arc-", 1)[1]
    unreachable = create_engine("postgresql+pg8000://postgres@127.0.0.1:9/postgres", pool_pre_ping=False)
    argv = [
        run_id,
        "failed",
        "--exit_code",
        "3",
        "--error_code=pipeline_error",
        "--error_message=STAR: out of memory",
    ]
    assert update_status.main(argv, engine=unreachable, attempts=2, sleep=lambda s: None) == 5
    assert gcs.read_bytes("arc-runs", f"runs/{run_id}/hook-status.json") is not None
    _deliver_notifications(batch_server.notifications, batch_server.notifications.items[-1:])
    run = _runs(engine)[0]
    assert (run["status"], run["exit_code"], run["error_message"]) == ("failed", 3, "STAR: out of memory")
    # A later delivery of the same failure (a duplicate, the sweeper) cannot change a failed run: the marker
    # is not read again (counted at the emulator, from its request log).
    with caplog.at_level(logging.INFO, logger="gcp_storage_emulator.server"):
        caplog.clear()
        _deliver_notifications(batch_server.notifications, batch_server.notifications.items[-1:])
    assert not [r for r in caplog.records if "hook-status.json" in r.getMessage()]
    assert _runs(engine)[0]["error_message"] == "STAR: out of memory"


def test_a_submission_reads_each_bundle_file_in_one_request(app_env, gcs, engine, batch_server, caplog):
    """Counted at the emulator, from its request log: the bundle's files are downloaded, never stat'ed first
    (the manifest at the event's generation), and the missing optional file costs its one 404. Counted at
    SQLAlchemy: two statements reach the database for an accepted bundle."""
    import logging

    upload_demo_data(gcs)
    manifest = upload_bundle(gcs, "sub1")
    headers, body = finalize_event(gcs, manifest)
    client = function_client("submit_bundle")
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    statements: list[str] = []

    def count(conn, cursor, statement, *args):
        statements.append(statement)

    event.listen(Engine, "before_cursor_execute", count)  # every engine in this process
    try:
        with caplog.at_level(logging.INFO, logger="gcp_storage_emulator.server"):
            caplog.clear()
            assert client.post("/", headers=headers, data=body).status_code == 200
    finally:
        event.remove(Engine, "before_cursor_execute", count)
    assert len(statements) == 2, statements  # the run with its first event, then the `submitted` change
    reads = [
        r.getMessage()
        for r in caplog.records
        if '"GET ' in r.getMessage() and "arc-inbox/o/sub1" in r.getMessage()
    ]
    assert len(reads) == 4, reads  # run.yaml, samplesheet.csv, params.yaml and the absent nextflow.config
    assert all("alt=media" in line for line in reads), reads
    assert sum("ifGenerationMatch" in line for line in reads) == 1
    listings = [r.getMessage() for r in caplog.records if '"GET /storage/v1/b/arc-inbox/o?' in r.getMessage()]
    assert len(listings) == 1, listings  # the feedback files the folder already has (none): one listing
    assert _count(engine, "SELECT count(*) FROM runs WHERE status = 'submitted'") == 1

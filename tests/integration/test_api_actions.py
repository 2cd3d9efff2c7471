"""POST /runs/{id}:cancel and POST /runs/{id}:recover through the real functions-framework app, on real
PostgreSQL, the storage emulator and the local Batch service (the real BatchServiceClient)."""

from datetime import UTC, datetime, timedelta

import pytest
from flow import function_client, upload_demo_data
from sqlalchemy import text
from test_runs_api import assert_conforms, demo_body, transition

pytestmark = pytest.mark.integration


@pytest.fixture
def batch_server():
    """The local Batch service; each job's 'container' sleeps until cancelled (or the test's end)."""
    import subprocess

    from arc_reactor.local.batch_server import LocalBatchServer

    def launcher(job, env):
        return subprocess.Popen(["sleep", "60"], start_new_session=True)

    server = LocalBatchServer(launcher, lambda attributes, data: None).start()
    yield server
    server.stop()


@pytest.fixture
def api(app_env, gcs):
    upload_demo_data(gcs)
    return function_client("runs_api", "http")


def _job(batch_server, run_id):
    return next(j for j in batch_server.jobs() if j.name.endswith(f"/arc-{run_id}"))


def _env(job):
    return dict(job.task_groups[0].task_spec.environment.variables)


def test_cancel_marks_cancelling_cancels_the_job_and_is_idempotent(api, engine, batch_server):
    run = api.post("/runs", json=demo_body()).get_json()
    resp = api.post(f"/runs/{run['id']}:cancel")
    assert resp.status_code == 202, resp.get_json()
    assert_conforms(resp, "POST", "/runs/{run_id}:cancel")
    body = resp.get_json()
    assert body["status"] == "cancelling"
    assert body["cancellation"]["orchestrator_cancelled"] is True
    batch_server.wait_for_job(run["batch_job_name"], timeout=10)
    assert _job(batch_server, run["id"]).status.state.name == "CANCELLED"
    again = api.post(f"/runs/{run['id']}:cancel")
    assert again.status_code == 202 and again.get_json()["status"] == "cancelling"
    transition(engine, run["id"], "cancelled")  # what reconcile does when Batch says CANCELLED
    done = api.post(f"/runs/{run['id']}:cancel")
    assert done.status_code == 200 and done.get_json()["status"] == "cancelled"
    events = api.get(f"/runs/{run['id']}").get_json()["events"]
    assert [e["to_status"] for e in events if e["kind"] == "transition"][-2:] == ["cancelling", "cancelled"]
    assert any(e["kind"] == "note" and "cancel" in e["detail"] for e in events)


def test_cancel_a_pending_run_without_a_job_cancels_it_at_once(api, engine):
    from arc_reactor.adapters import runs_repo
    from arc_reactor.core.layout import run_locations

    locs = run_locations("arc-runs", "r00000000000pending")
    runs_repo.insert_run(
        engine,
        {
            "id": "r00000000000pending", "pipeline": "arc/fastq-stats", "revision": "1.0.0",
            "engine": "snakemake", "lineage_id": "r00000000000pending", "work_dir": locs.work_dir,
            "cache_dir": locs.cache_dir, "inputs_uri": locs.inputs, "results_uri": locs.results,
            "logs_uri": locs.logs,
        },
    )  # fmt: skip
    resp = api.post("/runs/r00000000000pending:cancel")
    assert resp.status_code == 200
    assert resp.get_json()["status"] == "cancelled"


def test_cancel_refuses_finished_runs_and_unknown_or_malformed_ids(api, engine):
    run = api.post("/runs", json=demo_body()).get_json()
    transition(engine, run["id"], "completed")
    resp = api.post(f"/runs/{run['id']}:cancel")
    assert resp.status_code == 409
    assert resp.get_json()["error"]["code"] == "run_finished"
    assert_conforms(resp, "POST", "/runs/{run_id}:cancel")
    assert api.post("/runs/r000000000000000000:cancel").status_code == 404
    assert api.post("/runs/nope:cancel").status_code == 400
    assert api.get(f"/runs/{run['id']}:cancel").status_code == 405


def _failed_run_with_work(api, engine, gcs, **fields):
    run = api.post("/runs", json=demo_body()).get_json()
    transition(engine, run["id"], "failed", error_code="pipeline_error", **fields)
    gcs.write_bytes("arc-runs", f"work/{run['id']}/.snakemake/metadata/stats", b"{}")
    return run


def test_recover_makes_a_resuming_run_in_the_same_work_dir(api, engine, gcs, batch_server):
    parent = _failed_run_with_work(api, engine, gcs, session_id="sess-1")
    resp = api.post(
        f"/runs/{parent['id']}:recover",
        json={"params": {"min_quality": 30}, "name": "second try"},
        headers={"Idempotency-Key": "retry-1"},
    )
    assert resp.status_code == 201, resp.get_json()
    assert_conforms(resp, "POST", "/runs/{run_id}:recover")
    child = resp.get_json()
    assert child["parent_run_id"] == parent["id"]
    assert child["is_recovery"] is True
    assert child["work_dir"] == parent["work_dir"]
    assert (child["name"], child["params"]) == ("second try", {"min_quality": 30})
    env = _env(_job(batch_server, child["id"]))
    assert env["IS_RECOVERY"] == "true"
    assert env["WORK_DIR"] == parent["work_dir"]
    assert env["PARENT_SESSION_ID"] == "sess-1"
    body = {"params": {"min_quality": 30}, "name": "second try"}
    again = api.post(f"/runs/{parent['id']}:recover", json=body, headers={"Idempotency-Key": "retry-1"})
    assert again.status_code == 200 and again.get_json()["id"] == child["id"]
    other = api.post(f"/runs/{parent['id']}:recover", json={}, headers={"Idempotency-Key": "retry-1"})
    assert other.status_code == 422 and other.get_json()["error"]["code"] == "idempotency_key_reused"
    busy = api.post(f"/runs/{parent['id']}:recover")
    assert busy.status_code == 409
    assert busy.get_json()["error"]["code"] == "recovery_in_progress"


@pytest.mark.parametrize(
    ("setup", "code"),
    [
        ("running", "run_not_finished"),
        ("completed", "run_completed"),
        ("no_work_dir", "work_dir_missing"),
        ("too_old", "recovery_expired"),
    ],
)
def test_recover_refusals_are_409_with_a_reason(api, engine, gcs, setup, code):
    run = api.post("/runs", json=demo_body()).get_json()
    transition(engine, run["id"], {"running": "running", "completed": "completed"}.get(setup, "failed"))
    if setup != "no_work_dir":
        gcs.write_bytes("arc-runs", f"work/{run['id']}/x", b"1")
    if setup == "too_old":
        with engine.begin() as conn:
            old = datetime.now(UTC) - timedelta(days=31)
            conn.execute(text("UPDATE runs SET created_at = :t WHERE id = :i"), {"t": old, "i": run["id"]})
    resp = api.post(f"/runs/{run['id']}:recover")
    assert resp.status_code == 409, resp.get_json()
    assert resp.get_json()["error"]["code"] == code
    assert_conforms(resp, "POST", "/runs/{run_id}:recover")


def test_recover_of_a_rejected_inbox_bundle_and_bad_overrides(api, engine, gcs):
    run = _failed_run_with_work(api, engine, gcs)
    resp = api.post(f"/runs/{run['id']}:recover", json={"params": {"min_quality": "very"}})
    assert resp.status_code == 422
    [problem] = resp.get_json()["error"]["problems"]
    assert (problem["file"], problem["field"]) == ("params (override)", "min_quality")
    assert "line" not in problem  # a line of the params.yaml the recovery generates would mean nothing
    resp = api.post(f"/runs/{run['id']}:recover", json={"params": [1], "colour": "red", "config": 3})
    assert resp.status_code == 400
    assert {p["field"] for p in resp.get_json()["error"]["problems"]} == {"params", "colour", "config"}
    with engine.begin() as conn:
        conn.execute(text("UPDATE runs SET batch_job_name = NULL WHERE id = :i"), {"i": run["id"]})
    resp = api.post(f"/runs/{run['id']}:recover")
    assert resp.status_code == 409
    assert resp.get_json()["error"]["code"] == "run_never_started"


def test_relaunch_makes_a_new_run_from_the_same_inputs_with_changes(api, engine, gcs):
    source = api.post("/runs", json=demo_body(params={"min_quality": 25})).get_json()
    sheet = gcs.read_bytes("arc-runs", f"runs/{source['id']}/inputs/samplesheet.csv").decode()
    fewer = "\n".join(sheet.splitlines()[:2]) + "\n"  # the header and the first sample only
    resp = api.post(f"/runs/{source['id']}:relaunch", json={"samplesheet": fewer, "name": "first only"})
    assert resp.status_code == 201, resp.get_json()
    assert_conforms(resp, "POST", "/runs/{run_id}:relaunch")
    run = resp.get_json()
    assert run["id"] != source["id"] and not run["is_recovery"] and run["parent_run_id"] is None
    assert (run["pipeline"], run["params"], run["name"]) == (
        source["pipeline"],
        {"min_quality": 25},
        "first only",
    )
    assert run["work_dir"] != source["work_dir"]  # its own lineage: nothing of the source is resumed
    assert gcs.read_bytes("arc-runs", f"runs/{run['id']}/inputs/samplesheet.csv").decode() == fewer
    again = api.post(f"/runs/{source['id']}:relaunch")  # any status: the source is still submitted
    assert again.status_code == 201 and again.get_json()["id"] not in (source["id"], run["id"])

    bad = api.post(f"/runs/{source['id']}:relaunch", json={"samplesheet": "sample\nS1\n"})
    assert bad.status_code == 422
    assert {p["file"] for p in bad.get_json()["error"]["problems"]} == {"samplesheet.csv"}
    assert api.post(f"/runs/{source['id']}:relaunch", json={"parent_run_id": "x"}).status_code == 400
    assert api.post("/runs/r000000000000000000:relaunch").status_code == 404


def test_a_run_refused_at_submission_has_nothing_to_relaunch(api, engine):
    from arc_reactor.adapters import runs_repo

    run = api.post("/runs", json=demo_body()).get_json()
    transition(engine, run["id"], "failed", error_code="invalid_bundle")
    resp = api.post(f"/runs/{run['id']}:relaunch")
    assert resp.status_code == 409 and resp.get_json()["error"]["code"] == "inputs_missing"
    assert len(runs_repo.list_runs(engine)) == 1

"""The Tower trace endpoints (api/tower.py) as Nextflow calls them. Nextflow cannot run here, so these
requests stand in for a real Nextflow 24.x: their paths, headers and JSON bodies follow its nf-tower client
(TowerClient, TowerJsonGenerator: camelCase TraceRecord fields, ISO times with an offset, memory in bytes,
`exit` 2147483647 until a task completes, status NEW/SUBMITTED/RUNNING/COMPLETED/FAILED/CACHED, a top-level
`instant`). Delivered duplicated and out of order, they leave the right ledger and progress."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest
from flow import function_client, upload_demo_data
from sqlalchemy import text
from test_runs_api import demo_body

from arc_reactor.adapters import runs_repo
from arc_reactor.adapters.tasks_repo import list_tasks
from arc_reactor.core.tower import run_token

pytestmark = pytest.mark.integration
UNKNOWN_EXIT = 2147483647


def task(task_id: int, status: str, attempt: int = 1, **more: object) -> dict[str, object]:
    """A task record as TowerJsonGenerator writes it (the fields a google-batch task has)."""
    record: dict[str, object] = {
        "taskId": task_id, "status": status, "hash": f"4b/1a2c{task_id:02d}", "name": f"FASTQC (S{task_id})",
        "exit": UNKNOWN_EXIT, "submit": "2026-12-07T10:15:32.501Z", "start": None,
        "process": "NFCORE_SCRNASEQ:FASTQC", "tag": f"S{task_id}", "module": [],
        "container": "quay.io/biocontainers/fastqc:0.12.1", "attempt": attempt,
        "script": "fastqc ...", "scratch": None, "workdir": f"gs://arc-runs/work/r/4b/1a2c{task_id:02d}",
        "queue": None, "cpus": 2, "memory": 6442450944, "disk": None, "time": 14400000, "env": None,
        "nativeId": f"nf-4b1a2c{task_id:02d}-1733566532/0/nf-4b1a-uid", "executor": "google-batch",
        "cloudZone": "us-central1-a", "machineType": "n2-standard-2", "priceModel": "spot",
    }  # fmt: skip
    record.update(more)
    return record


def progress(
    running: int, succeeded: int, cached: int, failed: int = 0, retries: int = 0
) -> dict[str, object]:
    counts = {"pending": 0, "submitted": 0, "running": running, "succeeded": succeeded, "cached": cached,
              "failed": failed, "aborted": 0, "ignored": 0, "retries": retries}  # fmt: skip
    load = {"loadCpus": 2 * running, "loadMemory": 0, "peakRunning": 2, "peakCpus": 4, "peakMemory": 0}
    process = {
        "index": 1,
        "name": "NFCORE_SCRNASEQ:FASTQC",
        **counts,
        "stored": 0,
        "terminated": False,
        **load,
    }
    return {**counts, **load, "processes": [process]}


@pytest.fixture
def api(app_env, gcs):
    upload_demo_data(gcs)
    return function_client("runs_api", "http")


@pytest.fixture
def run(api, engine):
    made = api.post("/runs", json=demo_body()).get_json()
    token = run_token(runs_repo.signing_key(engine, "tower"), made["id"])
    return made["id"], {"Authorization": f"Bearer {token}", "User-Agent": "Nextflow/24.04.4"}


def test_a_run_reported_by_nextflow_fills_the_ledger_and_the_progress(api, engine, run):
    run_id, auth = run
    create = api.post("/tower/trace/create?workspaceId=1", headers=auth, json={
        "sessionId": "4f6b2c1e-9a0d-4c55-8a7e-2b1f3c4d5e6f", "runName": "happy_turing",
        "projectName": "nf-core/scrnaseq", "repository": "https://github.com/nf-core/scrnaseq",
        "workflowId": None, "instant": 1733566530123,
    })  # fmt: skip
    assert create.status_code == 200 and create.get_json()["workflowId"] == run_id
    base = f"/tower/trace/{run_id}"
    begin_body = {
        "workflow": {"runName": "happy_turing", "id": run_id[:16]},
        "processNames": ["NFCORE_SCRNASEQ:FASTQC"], "towerLaunch": False, "instant": 1733566531456,
    }  # fmt: skip
    begin = api.put(f"{base}/begin", headers=auth, json=begin_body)
    assert begin.status_code == 200 and begin.get_json()["watchUrl"].endswith(f"/runs/{run_id}")

    first = {"tasks": [task(1, "RUNNING", start="2026-12-07T10:16:00Z"),
                       task(2, "CACHED", exit=0, complete="2026-12-06T09:01:03.100+02:00", realtime=12,
                            executor=None, cloudZone=None, machineType=None, priceModel=None)],
             "progress": progress(running=1, succeeded=0, cached=1), "instant": 1733566533010}  # fmt: skip
    later = {"tasks": [task(1, "FAILED", exit=137, errorAction="RETRY", complete="2026-12-07T10:20:00Z"),
                       task(3, "RUNNING", attempt=2, tag="S1", start="2026-12-07T10:21:00Z")],
             "progress": progress(running=1, succeeded=0, cached=1, failed=1, retries=1),
             "instant": 1733566600000}  # fmt: skip
    for body in (later, first, later, first):  # out of order, and each one twice
        resp = api.put(f"{base}/progress?workspaceId=1", headers=auth, json=body)
        assert resp.status_code == 200, resp.get_json()
    rows = {(r["task_id"], r["attempt"]): r for r in list_tasks(engine, run_id, limit=10)}
    assert {k: r["status"] for k, r in rows.items()} == {
        ("1", 1): "failed",
        ("2", 1): "cached",
        ("3", 2): "running",
    }
    failed = rows[("1", 1)]
    assert (failed["exit_code"], failed["memory_bytes"], failed["spot"], failed["machine_type"]) == (
        137, 6442450944, True, "n2-standard-2",
    )  # fmt: skip
    assert failed["completed_at"] == datetime(2026, 12, 7, 10, 20, tzinfo=UTC)
    assert failed["extra"]["errorAction"] == "RETRY"
    assert rows[("3", 2)]["exit_code"] is None  # 2147483647 means "not completed yet", never a code
    assert rows[("2", 1)]["spot"] is None  # a cached task carries no cloud fields
    stored = runs_repo.get_run(engine, run_id).progress
    assert (stored["failed"], stored["retries"], stored["instant"]) == (1, 1, 1733566600000)  # the latest
    assert stored["processes"][0]["name"] == "NFCORE_SCRNASEQ:FASTQC"
    assert (stored["total"], stored["done"], stored["processes"][0]["cached"]) == (3, 1, 1)
    assert "loadCpus" not in stored and "terminated" not in stored["processes"][0]  # only the counts

    beat = api.put(
        f"{base}/heartbeat", headers=auth, json={"progress": progress(1, 0, 1), "instant": 1733566500000}
    )
    assert beat.status_code == 200
    assert runs_repo.get_run(engine, run_id).progress["instant"] == 1733566600000  # an older one: kept out
    done = {"workflow": {"success": True, "exitStatus": 0}, "metrics": [],
            "progress": progress(0, 2, 1, failed=1, retries=1), "instant": 1733567000000}  # fmt: skip
    assert api.put(f"{base}/complete", headers=auth, json=done).status_code == 200
    assert runs_repo.get_run(engine, run_id).progress["succeeded"] == 2


def test_only_the_runs_own_token_is_accepted_while_it_lasts(api, engine, run):
    run_id, auth = run
    other = api.post("/runs", json=demo_body()).get_json()["id"]
    ok = {"progress": progress(0, 0, 0), "instant": 1}
    assert api.put(f"/tower/trace/{run_id}/heartbeat", headers=auth, json=ok).status_code == 200
    token = auth["Authorization"].removeprefix("Bearer ")
    basic = base64.b64encode(f"@token:{token}".encode()).decode()  # how Nextflow sends other token shapes
    assert (
        api.put(
            f"/tower/trace/{run_id}/heartbeat", headers={"Authorization": f"Basic {basic}"}, json=ok
        ).status_code
        == 200
    )
    forged = run_token(b"not the deployment's key", run_id)
    stolen = token.replace(run_id, other)  # this run's MAC under another run's id
    for headers, path in (
        (auth, f"/tower/trace/{other}/heartbeat"),  # another run's workflowId
        ({"Authorization": f"Bearer {forged}"}, f"/tower/trace/{run_id}/heartbeat"),  # not its token
        ({"Authorization": "Bearer a.b.c"}, f"/tower/trace/{run_id}/heartbeat"),
        ({}, f"/tower/trace/{run_id}/heartbeat"),
        ({"Authorization": f"Bearer {stolen}"}, f"/tower/trace/{other}/heartbeat"),
    ):
        assert api.put(path, headers=headers, json=ok).status_code == 401, (headers, path)
    bad = api.put(
        f"/tower/trace/{run_id}/progress", headers=auth, json={"tasks": [{"taskId": 1, "status": "DONE"}]}
    )
    assert bad.status_code == 400
    with engine.begin() as conn:  # the run ended two hours ago: its token is no longer accepted
        conn.execute(text("UPDATE runs SET status = 'completed', completed_at = :t WHERE id = :i"),
                     {"t": datetime.now(UTC) - timedelta(hours=2), "i": run_id})  # fmt: skip
    assert api.put(f"/tower/trace/{run_id}/heartbeat", headers=auth, json=ok).status_code == 401

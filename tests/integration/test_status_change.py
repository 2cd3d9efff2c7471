"""The one status-change use case (services/status_change.py) on real PostgreSQL: every writer gets the
same transition, clean stored text and one status_changed log line."""

import logging

import pytest
from flow import run_row

from arc_reactor.adapters import runs_repo
from arc_reactor.adapters.runs_repo import PostgresRunStore
from arc_reactor.core.status import MAX_ERROR_MESSAGE, RunStatus
from arc_reactor.services.status_change import change_status

pytestmark = pytest.mark.integration


def _changes(records):
    return [r for r in records if getattr(r, "event", None) == "status_changed"]


def test_engine_text_is_stored_without_control_characters_and_bounded(engine, arc_logs):
    runs_repo.insert_run(engine, run_row("r0000000000000000c1"))
    message = "boom\x00--exit_code\x00 0\x1b[31m red\x7f\n" + "x" * (2 * MAX_ERROR_MESSAGE)
    res = change_status(
        PostgresRunStore(engine), "r0000000000000000c1", RunStatus.FAILED, "hook",
        fields={"error_code": "pipeline\x00_error", "error_message": message, "error_task": "ALIGN\x1b (1)"},
    )  # fmt: skip
    assert res.applied
    run = runs_repo.get_run(engine, "r0000000000000000c1")
    assert run["error_message"].startswith("boom--exit_code 0[31m red\nxxx")
    assert len(run["error_message"]) == MAX_ERROR_MESSAGE
    assert (run["error_code"], run["error_task"]) == ("pipeline_error", "ALIGN (1)")
    (line,) = _changes(arc_logs)
    assert (line.levelno, line.error_code, line.to_status) == (logging.ERROR, "pipeline_error", "failed")


def test_a_duplicate_change_logs_nothing(engine, arc_logs):
    runs_repo.insert_run(engine, run_row("r0000000000000000c2"))
    assert change_status(PostgresRunStore(engine), "r0000000000000000c2", RunStatus.RUNNING, "batch").applied
    assert not change_status(
        PostgresRunStore(engine), "r0000000000000000c2", RunStatus.RUNNING, "hook"
    ).applied
    assert len(_changes(arc_logs)) == 1


def test_cancel_logs_its_status_change_like_every_writer(app_env, engine, arc_logs):
    from arc_reactor.services.cancel import cancel_run
    from arc_reactor.wiring import get_deps

    runs_repo.insert_run(engine, run_row("r0000000000000000c3"))
    cancel_run(get_deps(), "r0000000000000000c3", requested_by="jane@example.org")
    (line,) = _changes(arc_logs)
    assert (line.run_id, line.source, line.to_status) == ("r0000000000000000c3", "api", "cancelled")


def test_a_rejected_bundle_is_a_pending_run_failed_through_the_status_machine(app_env, gcs, engine, arc_logs):
    from flow import finalize_event, function_client, upload_bundle

    manifest = upload_bundle(
        gcs, "bad", {"run.yaml": b"pipeline: nf-core/nosuch\n", "samplesheet.csv": b"a\n1\n"}
    )
    headers, body = finalize_event(gcs, manifest)
    client = function_client("submit_bundle")
    for _ in range(2):  # a redelivery changes nothing
        assert client.post("/", headers=headers, data=body).status_code == 200
    (run,) = runs_repo.list_runs(engine)
    assert (run["status"], run["error_code"]) == ("failed", "invalid_bundle")
    events = runs_repo.list_events(engine, run["id"])
    assert [(e["from_status"], e["to_status"]) for e in events] == [(None, "pending"), ("pending", "failed")]
    assert [r.to_status for r in _changes(arc_logs)] == ["failed"]

"""The use cases on in-memory parts (tests/fakes.py, held to PostgreSQL's behaviour by the run store
contract test): fast checks of the services' own logic, beside the integration tests on real parts."""

import logging

import pytest
from fakes import FakeCancels, InMemoryRunStore

from arc_reactor.core.status import RunStatus
from arc_reactor.errors import Conflict
from arc_reactor.services.cancel import cancel_run
from arc_reactor.services.status_change import change_status
from arc_reactor.settings import Settings
from arc_reactor.wiring import Deps


def _row(run_id: str) -> dict:
    return {
        "id": run_id, "pipeline": "arc/fastq-stats", "revision": "1.0.0", "engine": "snakemake",
        "lineage_id": run_id, "work_dir": "gs://w/", "cache_dir": "gs://c/", "inputs_uri": "gs://i/",
        "results_uri": "gs://r/", "logs_uri": "gs://l/",
    }  # fmt: skip


@pytest.fixture
def deps():
    return Deps(Settings(), runs_override=InMemoryRunStore(), batch_override=FakeCancels())  # type: ignore[arg-type]


def test_cancelling_a_pending_run_without_a_job_cancels_it_at_once(deps):
    deps.runs.insert_run(_row("r0000000000000000f1"))
    result = cancel_run(deps, "r0000000000000000f1", requested_by="ada@example.org")
    assert (result.outcome, result.run.status) == ("cancelled", "cancelled")
    assert deps.batch.cancelled == ["r0000000000000000f1"]  # whatever a racing submit made


def test_cancelling_a_running_run_asks_batch_and_waits_for_it(deps):
    deps.runs.insert_run(_row("r0000000000000000f2"))
    deps.runs.transition("r0000000000000000f2", RunStatus.RUNNING, "batch")
    result = cancel_run(deps, "r0000000000000000f2")
    assert (result.outcome, result.run.status) == ("cancelling", "cancelling")
    notes = [e for e in deps.runs.list_events("r0000000000000000f2") if e["kind"] == "note"]
    assert notes[0]["detail"]["cancel"]["orchestrator_cancelled"] is True
    assert cancel_run(deps, "r0000000000000000f2").outcome == "cancelling"  # asks Batch again


def test_a_finished_run_cannot_be_cancelled(deps):
    deps.runs.insert_run(_row("r0000000000000000f3"))
    deps.runs.transition("r0000000000000000f3", RunStatus.COMPLETED, "hook")
    with pytest.raises(Conflict):
        cancel_run(deps, "r0000000000000000f3")
    assert deps.batch.cancelled == []


def test_a_status_change_cleans_its_text_and_logs_once(deps, arc_logs):
    deps.runs.insert_run(_row("r0000000000000000f4"))
    fields = {"error_code": "pipeline_error", "error_message": "bad\x00 thing\x1b[0m"}
    assert change_status(deps.runs, "r0000000000000000f4", RunStatus.FAILED, "hook", fields=fields).applied
    assert not change_status(deps.runs, "r0000000000000000f4", RunStatus.FAILED, "batch").applied
    assert deps.runs.get_run("r0000000000000000f4").error_message == "bad thing[0m"
    lines = [r for r in arc_logs if getattr(r, "event", None) == "status_changed"]
    assert [(r.levelno, r.to_status) for r in lines] == [(logging.ERROR, "failed")]

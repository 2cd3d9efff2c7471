"""One scenario against both run stores: PostgreSQL (the real one) and the unit tests' in-memory one
(tests/fakes.py). Whatever the fake answers, the database answers too, so fast unit tests of the services
stand on the same rules."""

from datetime import UTC, datetime, timedelta

import pytest
from fakes import InMemoryRunStore
from flow import run_row

from arc_reactor.adapters.runs_repo import PostgresRunStore
from arc_reactor.core.status import RunStatus
from arc_reactor.errors import NotFound

pytestmark = pytest.mark.integration


@pytest.fixture(params=["postgres", "memory"])
def store(request):
    if request.param == "memory":
        return InMemoryRunStore()
    return PostgresRunStore(request.getfixturevalue("engine"))


def _kinds(store, run_id):
    return [(e["kind"], e["source"], e["from_status"], e["to_status"]) for e in store.list_events(run_id)]


def test_the_status_machine_is_the_same_in_both_stores(store):
    source = {"source_bucket": "in", "source_object": "s/run.yaml", "source_generation": 7}
    run, created = store.insert_run(run_row("r00000000000000000a", **source))
    again, created_again = store.insert_run(run_row("r00000000000000000b", **source))
    assert (created, created_again, again.id) == (True, False, "r00000000000000000a")
    assert run.status == "pending" and run.labels == {}

    assert store.transition(run.id, RunStatus.RUNNING, "batch").applied  # a forward jump
    assert not store.transition(run.id, RunStatus.SUBMITTED, "submit").applied  # never backwards
    done = store.transition(run.id, RunStatus.COMPLETED, "hook", fields={"session_id": "s1"})
    assert (done.applied, done.previous, done.current) == (True, RunStatus.RUNNING, RunStatus.COMPLETED)
    for _ in range(2):  # a different end is refused, recorded once per source and outcome
        late = store.transition(run.id, RunStatus.FAILED, "batch", fields={"error_code": "x"})
        assert (late.applied, late.current, late.conflict) == (False, RunStatus.COMPLETED, True)
    record = store.get_run(run.id)
    assert (record.status, record.session_id, record.error_code) == ("completed", "s1", None)
    assert record.started_at is not None and record.completed_at is not None
    assert _kinds(store, run.id) == [
        ("transition", "submit", None, "pending"),
        ("transition", "batch", "pending", "running"),
        ("transition", "hook", "running", "completed"),
        ("conflict", "batch", "completed", "failed"),
    ]
    with pytest.raises(ValueError, match="cannot set"):
        store.transition(run.id, RunStatus.FAILED, "x", fields={"status": "pending"})
    with pytest.raises(NotFound):
        store.transition("r0000000000000000zz", RunStatus.RUNNING, "batch")
    with pytest.raises(ValueError, match="inserted pending"):
        store.insert_run(run_row("r0000000000000000zy", status="failed"))


def test_notes_job_names_lineage_and_staleness_are_the_same_in_both_stores(store):
    run, _ = store.insert_run(run_row("r00000000000000000c", idempotency_key="k1"))
    assert store.find_by_idempotency_key("k1").id == run.id
    assert store.add_note_once(run.id, "batch", "task_retry:1", {"attempt": 1})
    assert not store.add_note_once(run.id, "batch", "task_retry:1", {"attempt": 1})
    store.record_job_name(run.id, "projects/p/locations/r/jobs/arc-x", "uid-1")
    store.record_job_name(run.id, "projects/p/locations/r/jobs/other", "uid-2")  # the first one stays
    record = store.get_run(run.id)
    assert (record.batch_job_name, record.batch_job_uid) == ("projects/p/locations/r/jobs/arc-x", "uid-1")
    assert {i: r.id for i, r in store.get_runs([run.id, "r0000000000000nope0", run.id]).items()} == {
        run.id: run.id
    }
    assert store.get_runs([]) == {}
    assert store.run_id_for_job_uid("uid-1") == run.id and store.run_id_for_job_uid("nope") is None
    assert store.active_in_lineage(run.lineage_id) == [{"id": run.id, "status": "pending"}]
    store.transition(run.id, RunStatus.SUBMITTED, "submit")
    later = datetime.now(UTC) + timedelta(minutes=1)
    assert [r.id for r in store.stale_runs(later, 10)] == [run.id]
    assert store.stale_runs(datetime.now(UTC) - timedelta(hours=1), 10) == []
    store.transition(run.id, RunStatus.CANCELLED, "api")
    assert store.active_in_lineage(run.lineage_id) == [] and store.stale_runs(later, 10) == []

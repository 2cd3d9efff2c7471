"""The status machine on real PostgreSQL: one conditional UPDATE plus one run_events row per change."""

import threading

import pytest
from flow import run_row
from sqlalchemy import text

from arc_reactor.adapters import runs_repo
from arc_reactor.core.status import RunStatus
from arc_reactor.errors import NotFound

pytestmark = pytest.mark.integration


def _new_run(engine, run_id="r0000000000000000a1"):
    values = run_row(
        run_id, source_bucket="arc-inbox", source_object=f"{run_id}/run.yaml", source_generation=1
    )
    row, created = runs_repo.insert_run(engine, values)
    assert created
    return row["id"]


def _events(engine, run_id):
    with engine.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                text(
                    "SELECT kind, source, from_status, to_status FROM run_events "
                    "WHERE run_id = :r ORDER BY id"
                ),
                {"r": run_id},
            )
        ]


def test_transition_applies_once_and_stamps_time(engine):
    run_id = _new_run(engine)
    first = runs_repo.transition(engine, run_id, RunStatus.RUNNING, "hook")
    again = runs_repo.transition(engine, run_id, RunStatus.RUNNING, "batch")
    assert first.applied and first.previous == RunStatus.PENDING
    assert not again.applied and not again.conflict
    run = runs_repo.get_run(engine, run_id)
    assert run["status"] == "running" and run["started_at"] is not None
    assert _events(engine, run_id) == [
        ("transition", "submit", None, "pending"),
        ("transition", "hook", "pending", "running"),
    ]


def test_first_terminal_state_wins_and_the_conflict_is_recorded_once(engine):
    run_id = _new_run(engine)
    runs_repo.transition(engine, run_id, RunStatus.COMPLETED, "hook", fields={"exit_code": 0})
    for _ in range(3):
        res = runs_repo.transition(engine, run_id, RunStatus.FAILED, "batch", fields={"exit_code": 1})
        assert res.conflict and not res.applied
    run = runs_repo.get_run(engine, run_id)
    assert run["status"] == "completed" and run["exit_code"] == 0 and run["failed_at"] is None
    assert _events(engine, run_id)[-1] == ("conflict", "batch", "completed", "failed")
    assert sum(1 for e in _events(engine, run_id) if e[0] == "conflict") == 1


def test_late_non_terminal_events_are_silent_no_ops(engine):
    run_id = _new_run(engine)
    runs_repo.transition(engine, run_id, RunStatus.FAILED, "batch")
    for target in (RunStatus.SUBMITTED, RunStatus.RUNNING, RunStatus.CANCELLING):
        res = runs_repo.transition(engine, run_id, target, "batch")
        assert not res.applied and not res.conflict and res.current == RunStatus.FAILED
    assert [e[0] for e in _events(engine, run_id)] == ["transition", "transition"]


def test_concurrent_terminal_writers_leave_exactly_one_outcome(engine):
    run_id = _new_run(engine)
    runs_repo.transition(engine, run_id, RunStatus.RUNNING, "batch")
    barrier = threading.Barrier(6)
    results = []

    def write(target, source):
        barrier.wait()
        results.append(runs_repo.transition(engine, run_id, target, source))

    writers = [
        threading.Thread(target=write, args=(t, s))
        for t, s in [(RunStatus.COMPLETED, "hook"), (RunStatus.FAILED, "batch"), (RunStatus.CANCELLED, "api")]
        * 2
    ]
    for t in writers:
        t.start()
    for t in writers:
        t.join(30)
    assert sum(r.applied for r in results) == 1
    terminal_transitions = [e for e in _events(engine, run_id) if e[0] == "transition" and e[3] != "running"]
    assert len(terminal_transitions) == 2  # pending (creation) + the one winner
    assert terminal_transitions[-1][3] == runs_repo.get_run(engine, run_id)["status"]


def test_unknown_run_is_not_found(engine):
    with pytest.raises(NotFound):
        runs_repo.transition(engine, "r00000000000000nope", RunStatus.RUNNING, "batch")


def test_fields_are_whitelisted(engine):
    run_id = _new_run(engine)
    with pytest.raises(ValueError, match="cannot set"):
        runs_repo.transition(engine, run_id, RunStatus.FAILED, "hook", fields={"status": "completed"})

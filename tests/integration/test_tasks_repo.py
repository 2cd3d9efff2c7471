"""The run_tasks ledger on real PostgreSQL: updates in any order, duplicated, batched or one by one, leave
the same rows; a task never moves backwards; a retry is a new row; counts take each task's latest attempt."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from flow import run_row
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from arc_reactor.adapters import runs_repo
from arc_reactor.adapters.tasks_repo import TaskUpdate, list_tasks, merge, task_counts, upsert_tasks

pytestmark = pytest.mark.integration

T0 = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
STAGES = ("pending", "submitted", "running")


def _story(task: str, end: str, attempt: int = 1) -> list[TaskUpdate]:
    """One attempt's reports, as an engine sends them: each stage adds what it knows."""
    ok = end == "succeeded"
    started, ended = T0 + timedelta(minutes=1), T0 + timedelta(minutes=9)
    return [
        TaskUpdate(task, "pending", attempt, process="FASTQC", name=f"FASTQC ({task})", tag=task),
        TaskUpdate(task, "submitted", attempt, submitted_at=T0, native_id=f"nf-{task}-{attempt}", cpus=2),
        TaskUpdate(task, "running", attempt, started_at=started, machine_type="n2-standard-2"),
        TaskUpdate(
            task, end, attempt, completed_at=ended, exit_code=0 if ok else 137,
            error_tail=None if ok else "Killed", extra={"realtime_ms": 480000},
        ),
    ]  # fmt: skip


REPORTS = [*_story("t1", "succeeded"), *_story("t2", "failed"), *_story("t2", "succeeded", attempt=2)]


def _rows(engine, run_id):
    rows = list_tasks(engine, run_id, limit=100)
    drop = ("id", "run_id", "updated_at")
    return sorted(
        ({k: v for k, v in r.items() if k not in drop} for r in rows),
        key=lambda r: (r["task_id"], r["attempt"]),
    )


@pytest.fixture
def run_id(engine):
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE run_tasks"))
    rid = "r0tasks000000000001"
    runs_repo.insert_run(engine, run_row(rid))
    return rid


def test_reports_in_order_make_one_row_per_attempt(engine, run_id):
    for report in REPORTS:
        upsert_tasks(engine, run_id, [report])
    rows = _rows(engine, run_id)
    assert [(r["task_id"], r["attempt"], r["status"], r["exit_code"]) for r in rows] == [
        ("t1", 1, "succeeded", 0), ("t2", 1, "failed", 137), ("t2", 2, "succeeded", 0),
    ]  # fmt: skip
    first = rows[0]
    assert (first["process"], first["name"], first["cpus"], first["machine_type"]) == (
        "FASTQC",
        "FASTQC (t1)",
        2,
        "n2-standard-2",
    )
    assert (first["submitted_at"], first["completed_at"]) == (T0, T0 + timedelta(minutes=9))
    assert first["extra"] == {"realtime_ms": 480000}
    counts = task_counts(engine, run_id)
    assert counts == {"FASTQC": {"succeeded": 2, "retries": 1}}  # t2 counts once, by its latest attempt


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(order=st.permutations(REPORTS), repeats=st.lists(st.integers(0, len(REPORTS) - 1), max_size=6),
       batch=st.integers(1, 5))  # fmt: skip
def test_any_order_duplicates_and_batching_give_the_same_rows(engine, run_id, order, repeats, batch):
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM run_tasks WHERE run_id = :r"), {"r": run_id})
    for report in REPORTS:
        upsert_tasks(engine, run_id, [report])
    expected = _rows(engine, run_id)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM run_tasks WHERE run_id = :r"), {"r": run_id})
    stream = [*order, *(REPORTS[i] for i in repeats)]
    for i in range(0, len(stream), batch):
        upsert_tasks(engine, run_id, stream[i : i + batch])
    assert _rows(engine, run_id) == expected


def test_the_first_terminal_status_wins_and_nothing_moves_backwards(engine, run_id):
    upsert_tasks(engine, run_id, [TaskUpdate("t9", "failed", exit_code=1)])
    upsert_tasks(engine, run_id, [TaskUpdate("t9", "running"), TaskUpdate("t9", "succeeded", exit_code=0)])
    [row] = _rows(engine, run_id)
    assert row["status"] == "failed"
    merged = merge(TaskUpdate("t9", "failed", exit_code=1), TaskUpdate("t9", "succeeded", exit_code=0))
    assert merged.status == "failed"  # the in-batch merge follows the same rule as the database
    with pytest.raises(ValueError, match="unknown task status"):
        TaskUpdate("t9", "done")


def test_the_api_pages_a_runs_tasks_with_filters(app_env, engine, run_id):
    from flow import function_client
    from test_runs_api import get_conforming

    for report in REPORTS:
        upsert_tasks(engine, run_id, [report])
    api = function_client("runs_api", "http")
    path, template = f"/runs/{run_id}/tasks", "/runs/{run_id}/tasks"
    first = get_conforming(api, template, path, page_size=2)
    assert [(t["task_id"], t["attempt"], t["status"]) for t in first["tasks"]] == [
        ("t1", 1, "succeeded"), ("t2", 1, "failed"),
    ]  # fmt: skip
    rest = get_conforming(api, template, path, page_size=2, page_token=first["next_page_token"])
    assert [(t["task_id"], t["attempt"]) for t in rest["tasks"]] == [("t2", 2)] and rest[
        "next_page_token"
    ] is None
    # Each attempt ran 8 min on n2-standard-2 Spot (the settings' default when a report does not say) in
    # us-central1: (2 x 0.007650 + 8 x 0.001025) x 8 / 60 = 0.003133.
    assert [t["cost"] for t in first["tasks"] + rest["tasks"]] == [0.0031] * 3
    cost = get_conforming(api, "/runs/{run_id}", f"/runs/{run_id}")["cost"]
    assert (cost["estimate"]["tasks"], cost["estimate"]["total"], cost["billed"]) == (0.0094, 0.0094, None)
    assert (cost["estimate"]["preemptions"], cost["estimate"]["running"]) == (0, True)
    failed = get_conforming(api, template, path, status="failed")
    assert [t["exit_code"] for t in failed["tasks"]] == [137]
    assert failed["tasks"][0]["completed_at"] == "2026-12-07T10:09:00+00:00"
    assert get_conforming(api, template, path, process="OTHER")["tasks"] == []
    assert api.get(f"{path}?status=done").status_code == 400
    odd = api.get(f"{path}?page_size=0&colour=red&page_token=zz")
    assert odd.status_code == 400
    assert {p["field"] for p in odd.get_json()["error"]["problems"]} == {"page_size", "colour", "page_token"}
    bad = api.get(f"{path}?status=failed&page_token={first['next_page_token']}")
    assert bad.status_code == 400  # a token made for other filters
    assert api.get("/runs/r000000000000000000/tasks").status_code == 404
    why = get_conforming(api, "/runs/{run_id}/diagnosis", f"/runs/{run_id}/diagnosis")
    first = why["first_failed_task"]
    assert (why["failed_tasks"], first["task_id"], first["exit_code"]) == (1, "t2", 137)
    assert (
        first["hint"].startswith("killed with exit 137") and first["completed_at"]
        if "completed_at" in first
        else True
    )


def test_the_head_job_is_counted_from_the_runs_start_and_its_lost_attempt_is_wasted(app_env, engine):
    from arc_reactor.core.cost import HeadUsage
    from arc_reactor.services import run_cost
    from arc_reactor.settings import get_settings

    rid = "r0tasks0000000head"
    runs_repo.insert_run(engine, run_row(rid))
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE runs SET status = 'running', started_at = :t WHERE id = :r"), {"t": T0, "r": rid}
        )
    detail = {"reason": "task_retry", "attempt": 1, "exit_code": 50001, "cause": "spot_preempted"}
    runs_repo.add_note_once(engine, rid, "batch", "task_retry:1", detail)
    with engine.begin() as conn:  # the preemption was noticed one hour in
        conn.execute(text("UPDATE run_events SET created_at = :t WHERE run_id = :r AND kind = 'note'"),
                     {"t": T0 + timedelta(hours=1), "r": rid})  # fmt: skip
    run = runs_repo.get_run(engine, rid)
    now = T0 + timedelta(hours=3)
    assert run_cost.head_usage(engine, run, now) == HeadUsage("e2-standard-2", 3 * 3600.0, 3600.0, 1)
    got = run_cost.run_cost(engine, get_settings(), run, now)["estimate"]
    # e2-standard-2 Spot in us-central1: 2 x 0.006543 + 8 x 0.000877 = 0.020102 per hour.
    assert (got["head"], got["wasted"], got["preemptions"], got["running"]) == (0.0603, 0.0201, 1, True)


def test_a_pages_estimates_in_two_statements_are_each_runs_own(app_env, engine):
    """The dashboard's list prices a page of runs at once (services/run_cost.estimates: one statement for
    the tasks, one for the head jobs' retries): each figure equals the run's own GET /runs/{id} estimate."""
    from sqlalchemy import event

    from arc_reactor.services import run_cost
    from arc_reactor.settings import get_settings

    ids = [f"r0tasks00000page{i:02d}" for i in range(3)]
    for i, rid in enumerate(ids):
        runs_repo.insert_run(engine, run_row(rid))
        with engine.begin() as conn:
            conn.execute(text("UPDATE runs SET status = 'running', started_at = :t WHERE id = :r"),
                         {"t": T0 - timedelta(hours=i), "r": rid})  # fmt: skip
        updates = [
            TaskUpdate(f"t{j}", "succeeded", 1, process="P", machine_type="n2-standard-4", spot=True,
                       native_id=f"job-{j}", started_at=T0, completed_at=T0 + timedelta(minutes=10 * (j + 1)))
            for j in range(i + 1)
        ]  # fmt: skip
        upsert_tasks(engine, rid, updates)
    detail = {"reason": "task_retry", "attempt": 1, "exit_code": 50001, "cause": "spot_preempted"}
    runs_repo.add_note_once(engine, ids[1], "batch", "task_retry:1", detail)
    runs = [runs_repo.get_run(engine, rid) for rid in ids]
    now = T0 + timedelta(hours=2)
    statements: list[str] = []

    def count(*args) -> None:
        statements.append(args[2])

    event.listen(engine, "before_cursor_execute", count)
    try:
        page = run_cost.estimates(engine, get_settings(), runs, now)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert len(statements) == 2
    for run in runs:
        assert page[run.id] == run_cost.run_cost(engine, get_settings(), run, now)["estimate"], run.id
    assert page[ids[2]]["tasks"] > page[ids[0]]["tasks"] > 0 and page[ids[1]]["preemptions"] == 1

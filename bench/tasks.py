"""Task ledger ingest and reads (issue 13): 100,000 task events into one run in batches of 100 (a Tower
`progress` request's size), then GET /runs/{id}/tasks pages at 100,000 tasks.

- ingest: the events of 25,000 tasks (submitted, running, then succeeded: 3 events each; plus 25,000
  retried attempts' events, so 100,000 in all), shuffled within a window of 2,000 so that updates arrive
  out of order as they do from Tower batches, written with tasks_repo.upsert_tasks (one INSERT .. ON
  CONFLICT per batch, the status rule in SQL).
- floor: the same rows written by one plain multi-row INSERT per batch of 100 (no conflict handling, no
  rule: the minimal write of the same data), into a second run of the same table, in the same process.
  ratio_to_floor = floor events/s relative to ingest: ingest events/s / floor events/s (1.0: as fast).
- page: p50/p95 of a first page and of a page deep in the ledger (page_size 100, keyset), and of a page
  filtered by status, through tasks_repo.list_tasks, the function GET /runs/{id}/tasks calls: in the
  ingested run (one row per attempt) and in the floor's run (100,000 rows, one per event);
  tasks_page_p95_ms is the worse of the two.
- cost: the cost estimate's grouped statement (tasks_repo.task_usage, GET /runs/{id}) over each run, against
  its floor, one plain aggregate of the same rows (cost_ratio_to_floor = floor time / its time).

BENCH_TASK_EVENTS changes the event count. Prints one JSON line."""

from __future__ import annotations

import contextlib
import json
import os
import random
import time
from datetime import UTC, datetime, timedelta

from _parts import filled_database, timed

N_EVENTS = int(os.environ.get("BENCH_TASK_EVENTS", "100000"))
BATCH = 100
SAMPLES = int(os.environ.get("BENCH_SAMPLES", "100"))
T0 = datetime(2026, 12, 7, tzinfo=UTC)


def events(n: int) -> list:
    """n task updates: per task, submitted/running/succeeded of attempt 1, or of attempts 1 (failed) and 2."""
    from arc_reactor.core.tasks import TaskUpdate

    out: list[TaskUpdate] = []
    task = 0
    while len(out) < n:
        task += 1
        tid, process = str(task), f"PROC_{task % 20}"
        attempts = [(1, "failed"), (2, "succeeded")] if task % 3 == 0 else [(1, "succeeded")]
        for attempt, end in attempts:
            start = T0 + timedelta(seconds=task)
            out += [
                TaskUpdate(tid, "submitted", attempt, process=process, name=f"{process} ({task})",
                           submitted_at=start, cpus=2, memory_bytes=4 << 30, machine_type="n2-standard-2"),
                TaskUpdate(tid, "running", attempt, started_at=start + timedelta(seconds=5)),
                TaskUpdate(tid, end, attempt, completed_at=start + timedelta(seconds=60),
                           exit_code=0 if end == "succeeded" else 137),
            ]  # fmt: skip
    out = out[:n]
    rng = random.Random(7)
    for lo in range(0, len(out), 2000):  # out of order within a window, as Tower batches deliver them
        window = out[lo : lo + 2000]
        rng.shuffle(window)
        out[lo : lo + 2000] = window
    return out


def _reads(engine, run_id: str) -> dict:
    """Pages (first, deep, filtered by status) as GET /runs/{id}/tasks reads them, and the cost estimate's
    grouped statement against its floor (the same rows summed in one plain aggregate)."""
    from sqlalchemy import text

    from arc_reactor.adapters.tasks_repo import list_tasks, task_usage

    with engine.connect() as conn:
        tasks = conn.execute(text("SELECT count(*) FROM run_tasks WHERE run_id = :r"), {"r": run_id}).scalar()
    deep_after = list_tasks(engine, run_id, limit=1)[0]["id"] + int(tasks * 0.9)
    page1 = timed(lambda: list_tasks(engine, run_id, limit=101), SAMPLES)
    deep = timed(lambda: list_tasks(engine, run_id, limit=101, after_id=deep_after), SAMPLES)
    failed = timed(lambda: list_tasks(engine, run_id, limit=101, statuses=("failed",)), SAMPLES)
    floor_sql = text(
        "SELECT count(*), sum(extract(epoch FROM completed_at - started_at)) FROM run_tasks"
        " WHERE run_id = :r AND started_at IS NOT NULL AND status <> 'cached'"
    )

    def floor() -> None:
        with engine.connect() as conn:
            conn.execute(floor_sql, {"r": run_id}).all()

    with engine.connect() as conn:
        ran = conn.execute(floor_sql, {"r": run_id}).one()[0]
    assert sum(u.attempts for u in task_usage(engine, run_id)) == ran, "every attempt that ran, priced once"
    cost = timed(lambda: task_usage(engine, run_id), max(SAMPLES // 5, 5))
    cost_floor = timed(floor, max(SAMPLES // 5, 5))
    return {
        "task_rows": tasks, "page_p95_ms": max(page1["p95"], deep["p95"], failed["p95"]),
        "page1_ms": page1, "deep_page_ms": deep, "failed_filter_ms": failed,
        "cost_ms": cost, "cost_floor_ms": cost_floor,
    }  # fmt: skip


def main() -> None:
    from sqlalchemy import create_engine, insert, text

    from arc_reactor.adapters import runs_repo
    from arc_reactor.adapters.db import prepare_engine
    from arc_reactor.adapters.tables import run_tasks
    from arc_reactor.adapters.tasks_repo import upsert_tasks

    with contextlib.ExitStack() as scratch:
        url, _ = filled_database(scratch, [], 0, 1, "arc-bench-tasks-")
        engine = prepare_engine(create_engine(url))
        row = {"pipeline": "nf-core/scrnaseq", "revision": "4.0.0", "engine": "nextflow", "work_dir": "w",
               "cache_dir": "c", "inputs_uri": "i", "results_uri": "r", "logs_uri": "l"}  # fmt: skip
        for rid in ("r0benchtasks000001", "r0benchtasks000002"):
            runs_repo.insert_run(engine, {**row, "id": rid, "lineage_id": rid})
        stream = events(N_EVENTS)
        batches = [stream[i : i + BATCH] for i in range(0, len(stream), BATCH)]

        started = time.perf_counter()
        for batch in batches:
            upsert_tasks(engine, "r0benchtasks000001", batch)
        ingest_s = time.perf_counter() - started

        fields = [c.name for c in run_tasks.c if c.name not in ("id", "run_id", "updated_at", "extra")]
        started = time.perf_counter()
        for n, batch in enumerate(batches):  # the floor: the same rows, plain INSERTs (unique keys per row)
            rows = [
                {**{f: getattr(u, f) for f in fields if f not in ("task_id",)}, "task_id": f"{n}-{i}",
                 "run_id": "r0benchtasks000002"}
                for i, u in enumerate(batch)
            ]  # fmt: skip
            with engine.begin() as conn:
                conn.execute(insert(run_tasks), rows)
        floor_s = time.perf_counter() - started

        with engine.connect() as conn:
            conn.execute(text("ANALYZE run_tasks"))
        ingested, plain = _reads(engine, "r0benchtasks000001"), _reads(engine, "r0benchtasks000002")
        ingest_rate, floor_rate = N_EVENTS / ingest_s, N_EVENTS / floor_s
        print(json.dumps({
            "bench": "tasks", "events": N_EVENTS, "batch": BATCH,
            "ingest_events_per_s": round(ingest_rate), "floor_events_per_s": round(floor_rate),
            "ratio_to_floor": round(ingest_rate / floor_rate, 3),
            "tasks_page_p95_ms": max(ingested["page_p95_ms"], plain["page_p95_ms"]),
            "cost_query_ms": plain["cost_ms"]["p50"],
            "cost_ratio_to_floor": round(plain["cost_floor_ms"]["p50"] / plain["cost_ms"]["p50"], 3),
            "ingested_run": ingested, "run_of_one_row_per_event": plain,
        }))  # fmt: skip
        engine.dispose()


if __name__ == "__main__":
    main()

"""The dashboard's pages (issue 14) over a large ledger: what each open tab costs the service.

Setup: a migrated PostgreSQL filled with BENCH_RUNS runs (bench/list_runs.py's fill; 1,000,000 by default),
one of them with BENCH_TASKS task attempts (1,000) and 50 events, the storage emulator holding its files;
runs_api in this process (functions-framework app, in-process WSGI calls, no network in between).

  list_page_ms       GET /ui/ (a first page of 50: rows, their cost estimates, the filter form)
  list_refresh_ms    GET /ui/fragments/runs: what an open list re-reads every 5 s while visible
  list_api_ms        GET /runs?page_size=50: the JSON API's same page, for comparison
  run_page_ms        GET /ui/runs/{id}: a run with 1,000 tasks (the first 100 shown), its events, cost and
                     files (three storage listings)
  run_refresh_ms     GET /ui/runs/{id}/live: what an open run page re-reads on a change (at most every 3 s)
  run_api_ms         GET /runs/{id} + GET /runs/{id}/tasks?page_size=100: the JSON a client needs for the same
  statements         database statements per request of each kind (counted, not timed): flat in page size
  floor_ms           the minimal I/O of a list refresh: the page's keyset statement and the cost
                     estimate's grouped task statement for its 50 runs, through the bare driver on an open
                     connection; ratio_to_floor = floor p50 / list_refresh p50 (1.0: only its rows)
  run_floor_ms       the same for a run refresh: its row, 100 tasks and 50 events, three bare statements;
                     run_ratio_to_floor = run_floor p50 / run_refresh p50

Prints one JSON line. BENCH_RUNS, BENCH_TASKS and BENCH_SAMPLES change the sizes and the timed requests."""

from __future__ import annotations

import contextlib
import json
import os
from datetime import UTC, datetime, timedelta

from _parts import ROOT, filled_database, timed
from list_runs import FILL

N_RUNS = int(os.environ.get("BENCH_RUNS", "1000000"))
N_TASKS = int(os.environ.get("BENCH_TASKS", "1000"))
SAMPLES = int(os.environ.get("BENCH_SAMPLES", "100"))
PAGE = 50
RUN = "r" + str(N_RUNS).rjust(18, "0")  # the newest run: on the list's first page


def ms(fn) -> dict[str, float]:
    return timed(fn, SAMPLES, warmup=10, digits=2)


def seed_run(engine, storage) -> None:
    """The measured run: tasks, events and files, as a Snakemake run leaves them."""
    from sqlalchemy import text

    from arc_reactor.adapters import runs_repo
    from arc_reactor.adapters.tasks_repo import upsert_tasks
    from arc_reactor.core.tasks import TaskUpdate

    t0 = datetime(2026, 12, 7, tzinfo=UTC)
    updates = []
    for i in range(N_TASKS):
        start = t0 + timedelta(seconds=i)
        updates += [
            TaskUpdate(str(i), "submitted", 1, process=f"PROC_{i % 10}", name=f"task {i}", submitted_at=start,
                       machine_type="n2-standard-2", cpus=2, memory_bytes=4 << 30),
            TaskUpdate(str(i), "succeeded", 1, started_at=start, completed_at=start + timedelta(seconds=60),
                       exit_code=0),
        ]  # fmt: skip
    for lo in range(0, len(updates), 200):
        upsert_tasks(engine, RUN, updates[lo : lo + 200])
    for i in range(50):
        runs_repo.add_note(engine, RUN, "bench", {"reason": "bench", "message": f"event {i}"})
    with engine.begin() as conn:  # the run ran for an hour and completed
        conn.execute(
            text("UPDATE runs SET status = 'completed', started_at = :s, completed_at = :e WHERE id = :id"),
            {"s": t0, "e": t0 + timedelta(hours=1), "id": RUN},
        )
    files = {"inputs": ["samplesheet.csv", "params.yaml"], "logs": ["console.log", "trace.txt"]}
    for area, names in files.items():
        for name in names:
            storage.write_bytes("arc-runs", f"runs/{RUN}/{area}/{name}", b"x" * 100)
    for i in range(20):
        storage.write_bytes("arc-runs", f"runs/{RUN}/results/stats/s{i}.json", b"{}")


def counted(engine, client, url: str) -> int:
    """Statements the database ran for one request."""
    from sqlalchemy import event

    count = [0]

    def tick(*_args) -> None:
        count[0] += 1

    event.listen(engine, "before_cursor_execute", tick)
    try:
        resp = client.get(url)
        assert resp.status_code == 200, (url, resp.status_code)
    finally:
        event.remove(engine, "before_cursor_execute", tick)
    return count[0]


def floors(engine) -> tuple[dict[str, float], dict[str, float]]:
    """The bare-driver floors of a list refresh and of a run refresh (see the module docstring)."""
    raw = engine.raw_connection()
    cur = raw.cursor()
    page_sql = "SELECT * FROM runs ORDER BY created_at DESC, id DESC LIMIT %s" % (PAGE + 1)
    cur.execute(page_sql)
    ids = [r[0] for r in cur.fetchall()][:PAGE]
    usage_sql = (
        "SELECT run_id, machine_type, count(*), sum(extract(epoch FROM completed_at - started_at)) "
        "FROM run_tasks WHERE run_id = ANY(%s) AND started_at IS NOT NULL GROUP BY run_id, machine_type"
    )

    def list_floor() -> None:
        cur.execute(page_sql)
        cur.fetchall()
        cur.execute(usage_sql, (ids,))
        cur.fetchall()

    def run_floor() -> None:
        cur.execute("SELECT * FROM runs WHERE id = %s", (RUN,))
        cur.fetchall()
        cur.execute("SELECT * FROM run_tasks WHERE run_id = %s ORDER BY id LIMIT 101", (RUN,))
        cur.fetchall()
        cur.execute("SELECT * FROM run_events WHERE run_id = %s ORDER BY id DESC LIMIT 50", (RUN,))
        cur.fetchall()

    try:
        return ms(list_floor), ms(run_floor)
    finally:
        raw.close()


def main() -> None:
    """Fill, measure, print one JSON line."""
    scratch = contextlib.ExitStack()
    url, fill_s = filled_database(scratch, [FILL], N_RUNS, 100_000, "arc-bench-dashboard-")
    from arc_reactor.local.storage_emulator import StorageEmulator

    emulator = StorageEmulator(buckets=["arc-inbox", "arc-runs", "arc-demo-data"]).start()
    scratch.callback(emulator.stop)
    os.environ.update(
        {
            "DATABASE_URL": url,
            "ARC_LOCAL": "true",
            "GOOGLE_CLOUD_PROJECT": "arc-bench",
            "STORAGE_EMULATOR_HOST": emulator.endpoint,
        }
    )
    from functions_framework import create_app

    from arc_reactor.wiring import get_deps

    deps = get_deps()
    engine = deps.engine
    seed_run(engine, deps.storage)
    client = create_app("runs_api", str(ROOT / "functions" / "main.py"), "http").test_client()
    page = client.get(f"/ui/fragments/runs?page_size={PAGE}").get_data(as_text=True)
    assert page.count("<tr data-run-id=") == PAGE and RUN in page, "the list's page is not the newest 50"
    live = client.get(f"/ui/runs/{RUN}/live").get_data(as_text=True)
    assert live.count("<tr data-task=") == 100 and "Completed" in live, "the run's refresh is incomplete"

    def run_api() -> None:
        client.get(f"/runs/{RUN}")
        client.get(f"/runs/{RUN}/tasks?page_size=100")

    list_floor, run_floor = floors(engine)
    figures = {
        "bench": "dashboard",
        "runs": N_RUNS,
        "tasks_of_the_run": N_TASKS,
        "page_size": PAGE,
        "samples": SAMPLES,
        "fill_s": round(fill_s, 1),
        "list_page_ms": ms(lambda: client.get(f"/ui/?page_size={PAGE}")),
        "list_refresh_ms": ms(lambda: client.get(f"/ui/fragments/runs?page_size={PAGE}")),
        "list_api_ms": ms(lambda: client.get(f"/runs?page_size={PAGE}")),
        "run_page_ms": ms(lambda: client.get(f"/ui/runs/{RUN}")),
        "run_refresh_ms": ms(lambda: client.get(f"/ui/runs/{RUN}/live")),
        "run_api_ms": ms(run_api),
        "statements": {
            "list_refresh": counted(engine, client, f"/ui/fragments/runs?page_size={PAGE}"),
            "list_refresh_page_of_5": counted(engine, client, "/ui/fragments/runs?page_size=5"),
            "run_refresh": counted(engine, client, f"/ui/runs/{RUN}/live"),
        },
        "floor_ms": list_floor,
        "run_floor_ms": run_floor,
    }
    figures["ratio_to_floor"] = round(list_floor["p50"] / figures["list_refresh_ms"]["p50"], 3)
    figures["run_ratio_to_floor"] = round(run_floor["p50"] / figures["run_refresh_ms"]["p50"], 3)
    print(json.dumps(figures))
    engine.dispose()
    scratch.close()


if __name__ == "__main__":
    main()

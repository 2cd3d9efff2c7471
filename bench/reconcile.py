"""Reconcile throughput: N runs (BENCH_RUNS, default 1000) with five Batch notifications each, every
notification delivered twice and all deliveries shuffled, posted one after another to the real
reconcile_batch_event app (functions-framework `create_app`) on PostgreSQL and the local Batch service.

BENCH_TRANSPORT=wsgi (default) calls the app itself with each request's WSGI environ, built before the
clock starts (as an HTTP server builds it from the socket): the function's own cost, functions-framework's
middleware, Flask's dispatch and the CloudEvent's parsing included.
BENCH_TRANSPORT=test_client posts through the app's WSGI test client, which adds the client's building of
each request and wrapping of each answer (about 0.1 ms a delivery).
BENCH_TRANSPORT=http serves the app over HTTP on loopback (local/functions_host.serve_function, werkzeug's
threaded development server) and posts with `requests`, which adds that server's and client's cost.
Jobs are held (run_jobs=False) and their states set directly, so the notifications are the ones the local
service publishes. BENCH_TRAFFIC=frozen (default): every job is walked to its end first, so every GetJob
sees the final truth, as for a late delivery. BENCH_TRAFFIC=live: jobs move one state per round while the
previous round's notifications are delivered, so GetJobs see states ahead of their message.
The floor, measured in the same process on the same events: one GetJob (real client to the local service)
plus one single-row UPDATE on an autocommit connection (one round trip) per event.
BENCH_MEMO=on (default) is the function as shipped: a process remembers the status it last saw each run in
(core/status_memo.py), so deliveries whose answer that settles make no database statement.
BENCH_MEMO=off forgets every run at once, as if each delivery reached an instance that never saw its run:
every delivery then takes the database path. db_statements_per_delivery counts the function's statements
(the floor makes exactly one). Prints one JSON line."""

from __future__ import annotations

import json
import logging
import os
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from _parts import ROOT, Parts, percentile

if TYPE_CHECKING:
    from arc_reactor.local.notifications import NotificationLog

N_RUNS = int(os.environ.get("BENCH_RUNS", "1000"))
TRANSPORT = os.environ.get("BENCH_TRANSPORT", "wsgi")
TRAFFIC = os.environ.get("BENCH_TRAFFIC", "frozen")
MEMO = os.environ.get("BENCH_MEMO", "on")
for _name, _value, _allowed in (
    ("BENCH_TRANSPORT", TRANSPORT, ("wsgi", "test_client", "http")),
    ("BENCH_TRAFFIC", TRAFFIC, ("frozen", "live")),
    ("BENCH_MEMO", MEMO, ("on", "off")),
):
    if _value not in _allowed:
        raise SystemExit(f"{_name}={_value!r}: expected one of {', '.join(_allowed)}")
CHUNK = 250  # deliveries per alternation between the reconcile and the floor
TOPIC = "projects/arc-bench/topics/batch"
SEED = 20240611
# outcome -> the job states set after SCHEDULED and RUNNING (with a task exit code for the last one)
OUTCOMES = {
    "completed": [("SUCCEEDED", 0)],
    "failed": [("FAILED", 3)],
    "cancelled": [("CANCELLATION_IN_PROGRESS", None), ("CANCELLED", None)],
}


def outcome_of(i: int) -> str:
    """80% completed, 10% failed, 10% cancelled."""
    return "failed" if i % 10 == 0 else "cancelled" if i % 10 == 1 else "completed"


def make_runs(parts: Parts, service, engine, walk: bool = True) -> tuple[dict[str, str], dict[str, str]]:
    """N runs in `submitted` with held jobs, walked to their outcome unless `walk` is False; (run id ->
    expected final status, run id -> job name)."""
    from arc_reactor.adapters import runs_repo
    from arc_reactor.core.ids import new_run_id
    from arc_reactor.core.job_env import JobEnv
    from arc_reactor.core.jobspec import OrchestratorJob
    from arc_reactor.core.layout import run_locations
    from arc_reactor.core.status import RunStatus

    expected: dict[str, str] = {}
    jobs: dict[str, str] = {}
    for i in range(N_RUNS):
        run_id = new_run_id()
        locs = run_locations("arc-runs", run_id)
        runs_repo.insert_run(
            engine,
            {
                "id": run_id,
                "pipeline": "arc/fastq-stats",
                "revision": "1.0.0",
                "engine": "snakemake",
                "lineage_id": run_id,
                "work_dir": locs.work_dir,
                "cache_dir": locs.cache_dir,
                "inputs_uri": locs.inputs,
                "results_uri": locs.results,
                "logs_uri": locs.logs,
            },
        )
        spec = OrchestratorJob(
            JobEnv(
                run_id,
                "arc/fastq-stats",
                "1.0.0",
                "snakemake",
                "",
                locs.inputs + "params.yaml",
                locs.work_dir,
            )
        )
        name = service.submit_orchestrator_job(spec)
        runs_repo.transition(engine, run_id, RunStatus.SUBMITTED, "submit", fields={"batch_job_name": name})
        outcome = outcome_of(i)
        for state, code in walk_of(outcome) if walk else []:
            parts.batch.set_job_state(name, state, exit_code=code)
        expected[run_id], jobs[run_id] = outcome, name
    return expected, jobs


def walk_of(outcome: str) -> list[tuple[str, int | None]]:
    """The job states (with a task exit code for the last one) a run with this outcome goes through."""
    return [("SCHEDULED", None), ("RUNNING", None), *OUTCOMES[outcome]]


def live_chunks(parts: Parts, inbox: NotificationLog, jobs: dict[str, str], expected: dict[str, str]):
    """Live traffic: jobs change state while notifications arrive. Round r moves every run's job one state
    further; each round's notifications (twice each, shuffled) are delivered only after the next round has
    moved the jobs again, so most GetJobs see a state ahead of the message being handled, as when Batch
    moves on before Pub/Sub delivers. Yields the deliveries chunk by chunk."""
    walks = {run_id: walk_of(outcome) for run_id, outcome in expected.items()}
    pending: list[tuple[str, dict[str, str], str]] = []
    seen = 0
    for r in range(max(len(w) for w in walks.values())):
        for run_id, walk in walks.items():
            if r < len(walk):
                parts.batch.set_job_state(jobs[run_id], walk[r][0], exit_code=walk[r][1])
        arrived = len(inbox.items)  # published by the local service's own thread: read up to a snapshot
        fresh = requests_for(inbox, start=seen, stop=arrived)
        seen = arrived
        for start in range(0, len(pending), CHUNK):
            yield pending[start : start + CHUNK]
        pending = fresh
    inbox.wait(5 * N_RUNS, timeout=60.0)
    pending += requests_for(inbox, start=seen)
    for start in range(0, len(pending), CHUNK):
        yield pending[start : start + CHUNK]


def requests_for(
    inbox: NotificationLog, start: int = 0, stop: int | None = None
) -> list[tuple[str, dict[str, str], str]]:
    """Every notification from `start` on, twice (same message id, as a Pub/Sub redelivery), shuffled:
    (job, headers, body)."""
    from arc_reactor.core.events import pubsub_cloudevent
    from arc_reactor.core.ids import notification_job

    out = []
    for n, (attributes, data) in enumerate(inbox.items[start:stop], start):
        attrs, body = pubsub_cloudevent(TOPIC, f"m{n}", attributes, data, datetime.now(UTC))
        headers = {f"ce-{k}": v for k, v in attrs.items() if k != "datacontenttype"}
        headers["Content-Type"] = "application/json"
        job, _uid = notification_job(attributes)  # task messages name the job in TaskName only
        out += [(job or "", headers, json.dumps(body))] * 2
    random.Random(SEED + start).shuffle(out)
    return out


def deliver(
    transport: Transport, deliveries: list[tuple[str, dict[str, str], str]]
) -> tuple[float, list[float], int]:
    """Send each delivery in order (each request prepared before the clock starts); (seconds, per-request
    ms, non-200 answers)."""
    prepared = [transport.prepare(headers, body) for _job, headers, body in deliveries]
    latencies, errors = [], 0
    started = time.perf_counter()
    for request in prepared:
        sent = time.perf_counter()
        status = transport.send(request)
        latencies.append((time.perf_counter() - sent) * 1000)
        errors += status != 200
    return time.perf_counter() - started, latencies, errors


@dataclass(frozen=True)
class Transport:
    """How deliveries reach the function: prepare(headers, body) -> request, send(request) -> HTTP status."""

    description: str
    prepare: Callable[[dict[str, str], str], Any]
    send: Callable[[Any], int]


@contextmanager
def transport_for(name: str) -> Iterator[Transport]:
    """The Transport that BENCH_TRANSPORT names."""
    from functions_framework import create_app

    if name == "http":
        import requests

        from arc_reactor.local.functions_host import serve_function, stop_function

        fn = serve_function("reconcile_batch_event", "cloudevent")
        session = requests.Session()
        session.trust_env = False  # loopback only: never a proxy from the environment
        try:
            yield Transport(
                "http: served on loopback by local/functions_host.serve_function",
                lambda h, b: (h, b),
                lambda r: session.post(fn.url, data=r[1], headers=r[0], timeout=30).status_code,
            )
        finally:
            stop_function(fn)
        return
    app = create_app("reconcile_batch_event", str(ROOT / "functions" / "main.py"), "cloudevent")
    if name == "test_client":
        client = app.test_client()
        yield Transport(
            "test_client: functions-framework create_app(...).test_client()",
            lambda h, b: (h, b),
            lambda r: client.post("/", headers=r[0], data=r[1]).status_code,
        )
        return
    from werkzeug.test import EnvironBuilder

    def send(environ: dict[str, Any]) -> int:
        answer: list[str] = []
        body = app(environ, lambda status, _headers, _exc=None: answer.append(status))
        try:
            b"".join(body)
        finally:
            getattr(body, "close", lambda: None)()
        return int(answer[0].split()[0])

    yield Transport(
        "wsgi: functions-framework create_app(...) called with a prepared environ",
        lambda h, b: EnvironBuilder(path="/", method="POST", headers=h, data=b).get_environ(),
        send,
    )


def floor(client, engine, deliveries: list[tuple[str, dict[str, str], str]]) -> float:
    """Seconds for the minimal I/O of a delivery: one GetJob plus one single-row UPDATE that commits
    itself (an autocommit connection: one round trip, no BEGIN, COMMIT or pre-ping)."""
    from google.cloud import batch_v1
    from sqlalchemy import text

    from arc_reactor.core.ids import run_id_from_job

    update = text("UPDATE runs SET updated_at = now() WHERE id = :id")
    started = time.perf_counter()
    with engine.connect() as conn:
        for job, _headers, _body in deliveries:
            client.get_job(request=batch_v1.GetJobRequest(name=job), retry=None, timeout=20)
            conn.execute(update, {"id": run_id_from_job(job)})
    return time.perf_counter() - started


def measure(transport: Transport, client, engine, chunks) -> dict[str, object]:
    """Reconcile and floor on the same deliveries, alternating in chunks so that both see the same
    background load (the floor's UPDATE touches only updated_at, never a status)."""
    reconcile_s = floor_s = 0.0
    latencies: list[float] = []
    errors = delivered = 0
    for chunk in chunks:
        delivered += len(chunk)
        seconds, lat, err = deliver(transport, chunk)
        reconcile_s, errors = reconcile_s + seconds, errors + err
        latencies += lat
        floor_s += floor(client, engine, chunk)
    return {
        "seconds": reconcile_s,
        "latencies": latencies,
        "errors": errors,
        "floor_seconds": floor_s,
        "deliveries": delivered,
    }


def count_statements(engine) -> list[int]:
    """A one-item list that counts the statements `engine` sends from now on."""
    from sqlalchemy import event

    count = [0]

    @event.listens_for(engine, "before_cursor_execute")
    def _count(*_args: object) -> None:
        count[0] += 1

    return count


def forget_statuses(forget: bool) -> None:
    """With `forget`, give the function's Deps a memo that keeps nothing (BENCH_MEMO=off)."""
    if forget:
        from arc_reactor.core.status_memo import StatusMemo
        from arc_reactor.wiring import get_deps

        get_deps().__dict__["status_memo"] = StatusMemo(capacity=0)  # what the cached_property returns


def check(engine, expected: dict[str, str]) -> tuple[int, int]:
    """(runs whose final status is not the truth, transitions recorded more than once)."""
    from sqlalchemy import text

    with engine.connect() as conn:
        final = dict(conn.execute(text("SELECT id, status FROM runs")).all())
        dupes = conn.execute(
            text(
                "SELECT count(*) FROM (SELECT 1 FROM run_events WHERE kind = 'transition' "
                "GROUP BY run_id, to_status HAVING count(*) > 1) d"
            )
        ).scalar()
    return sum(final.get(r) != status for r, status in expected.items()), int(dupes or 0)


def main() -> None:
    """Measure and print one JSON line."""
    from arc_reactor.local.notifications import NotificationLog

    inbox = NotificationLog()
    parts = Parts(run_jobs=False, on_notification=inbox)
    from sqlalchemy import create_engine

    from arc_reactor.adapters.batch import BatchService, make_batch_client
    from arc_reactor.adapters.db import get_engine
    from arc_reactor.logs import setup_logging
    from arc_reactor.settings import get_settings

    setup_logging(logging.INFO, parts.tmp / "functions.log")  # the function's JSON lines, off the terminal
    settings = get_settings()
    engine = get_engine(settings)
    floor_engine = create_engine(settings.database_url, isolation_level="AUTOCOMMIT", pool_pre_ping=False)
    client = make_batch_client(settings)
    try:
        setup_started = time.perf_counter()
        expected, jobs = make_runs(parts, BatchService(client, settings), engine, walk=TRAFFIC == "frozen")
        if TRAFFIC == "frozen":
            if len(inbox.wait(5 * N_RUNS, timeout=60.0)) < 5 * N_RUNS:
                raise TimeoutError(f"{len(inbox.items)} of {5 * N_RUNS} notifications after 60 s")
            deliveries = requests_for(inbox)
            chunks = (deliveries[i : i + CHUNK] for i in range(0, len(deliveries), CHUNK))
        else:
            chunks = live_chunks(parts, inbox, jobs, expected)
        setup_s = time.perf_counter() - setup_started
        statements = count_statements(engine)  # the function's engine: get_engine gives one per URL
        forget_statuses(MEMO == "off")
        with transport_for(TRANSPORT) as transport:
            m = measure(transport, client, floor_engine, chunks)
        function_statements = statements[0]
        wrong, dupes = check(engine, expected)
    finally:
        client.transport.close()
        parts.stop()
    latencies = m["latencies"]
    n = int(m["deliveries"])
    rate, floor_rate = n / m["seconds"], n / m["floor_seconds"]
    print(
        json.dumps(
            {
                "bench": "reconcile",
                "transport": transport.description,
                "traffic": TRAFFIC,
                "runs": N_RUNS,
                "notifications": len(inbox.items),
                "deliveries": n,
                "events_per_s": round(rate, 1),
                "latency_ms": {
                    "p50": round(percentile(latencies, 50), 2),
                    "p95": round(percentile(latencies, 95), 2),
                },
                "memo": MEMO,
                "db_statements_per_delivery": round(function_statements / n, 3),
                "wrong_final_states": wrong,
                "duplicate_transitions": dupes,
                "non_200": m["errors"],
                "floor_events_per_s": round(floor_rate, 1),
                "ratio_to_floor": round(rate / floor_rate, 3),
                "target_ratio": 0.8,
                "setup_s": round(setup_s, 1),
            }
        )
    )


if __name__ == "__main__":
    main()

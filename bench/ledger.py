"""The ledger's queries at 1,000,000 runs with 20% active: recover's lineage check, the sweeper's query,
GET /runs filtered by status, label and submitter (page 1, and page 1,000 or the deepest the filter has),
and the SSE hub's poll for 1 and 200 watched runs. Targets (issue 12): recover and sweeper < 2 ms, every
listing p95 < 10 ms with the deep page within 1.5x of page 1, the poll's cost within 2x from 1 to 200
watchers.

The floor is the minimal I/O for a one-row answer through the same engine: a primary-key SELECT of one run
(runs_repo.get_run). ratio_to_floor = floor p50 / operation p50 (1.0 = as cheap as the floor), for each
operation; `ratio_to_floor` at the top is the worst of them. `plans` names the access path PostgreSQL chose
for each query (an Index Scan stays flat as the ledger grows; a Seq Scan does not).

Fill: lineages of three runs (a run and two recoveries), statuses 80% terminal and 20% active (pending,
submitted, running, cancelling), 50 submitters, labels project=p<0..99> and team=t<0..6> (and cohort=rare
on 1 run in 10^4), two events per run.
BENCH_RUNS and BENCH_SAMPLES change the size and the number of timed calls. Prints one JSON line."""

from __future__ import annotations

import contextlib
import json
import os
from datetime import UTC, datetime, timedelta

N_RUNS = int(os.environ.get("BENCH_RUNS", "1000000"))
SAMPLES = int(os.environ.get("BENCH_SAMPLES", "100"))
PAGE_SIZE = 50
DEEP_PAGE = 1000
CHUNK = 100_000
WATCHERS = 200
WINDOW = 100  # events in the SSE poll's window (see the poll's measurement)
START = datetime(2024, 1, 1, tzinfo=UTC)

FILL_RUNS = """
INSERT INTO runs (id, name, pipeline, revision, engine, status, lineage_id, parent_run_id, is_recovery,
                  batch_job_name, work_dir, cache_dir, inputs_uri, results_uri, logs_uri, submitter, labels,
                  params, created_at, updated_at)
SELECT 'r' || lpad(g::text, 18, '0'), 'run ' || g,
       (ARRAY['nf-core/scrnaseq', 'arc/fastq-stats'])[1 + mod(g, 2)], '4.0.0', 'nextflow',
       (ARRAY['completed', 'failed', 'completed', 'cancelled', 'running',
              'completed', 'failed', 'completed', 'completed', 'submitted',
              'completed', 'failed', 'completed', 'cancelled', 'pending',
              'completed', 'failed', 'completed', 'completed', 'cancelling'])[1 + mod(g, 20)],
       'r' || lpad((g - mod(g - 1, 3))::text, 18, '0'),
       CASE WHEN mod(g - 1, 3) = 0 THEN NULL ELSE 'r' || lpad((g - 1)::text, 18, '0') END,
       CASE WHEN mod(g - 1, 3) = 0 THEN 0 ELSE 1 END,
       'projects/p/locations/us-central1/jobs/arc-r' || lpad(g::text, 18, '0'),
       'gs://arc-runs/work/r' || lpad(g::text, 18, '0') || '/',
       'gs://arc-runs/cache/r' || lpad(g::text, 18, '0') || '/',
       'gs://arc-runs/runs/r' || lpad(g::text, 18, '0') || '/inputs/',
       'gs://arc-runs/runs/r' || lpad(g::text, 18, '0') || '/results/',
       'gs://arc-runs/runs/r' || lpad(g::text, 18, '0') || '/logs/',
       'user' || mod(g, 50) || '@example.org',
       jsonb_build_object('project', 'p' || mod(g, 100), 'team', 't' || mod(g, 7))
           || CASE WHEN mod(g, 10000) = 0 THEN jsonb_build_object('cohort', 'rare') ELSE '{}' END,
       jsonb_build_object('min_quality', 20),
       timestamptz '2024-01-01 00:00:00+00' + g * interval '30 seconds',
       timestamptz '2024-01-01 00:00:00+00' + g * interval '30 seconds'
FROM generate_series(CAST(:lo AS integer), CAST(:hi AS integer)) AS g
"""
FILL_EVENTS = """
INSERT INTO run_events (run_id, created_at, kind, source, from_status, to_status)
SELECT 'r' || lpad(g::text, 18, '0'), timestamptz '2024-01-01 00:00:00+00' + g * interval '30 seconds',
       'transition', 'submit', s.f, s.t
FROM generate_series(CAST(:lo AS integer), CAST(:hi AS integer)) AS g,
     (VALUES (NULL, 'pending'), ('pending', 'submitted')) AS s(f, t)
"""


def timed(fn, samples: int = SAMPLES) -> dict[str, float]:
    from _parts import timed as timed_ms

    return timed_ms(fn, samples)


def setup(scratch: contextlib.ExitStack) -> tuple[str, float]:
    """A migrated database holding the ledger; its URL and the fill's seconds."""
    from _parts import filled_database

    return filled_database(scratch, [FILL_RUNS, FILL_EVENTS], N_RUNS, CHUNK, "arc-bench-ledger-")


def plan_of(engine, stmt) -> str:
    """The access path of the statement's plan (the code's own statement): its scan nodes, outermost first."""
    compiled = stmt.compile(engine, compile_kwargs={"render_postcompile": True})
    params = tuple(compiled.params[name] for name in compiled.positiontup)
    with engine.connect() as conn:
        plan = conn.exec_driver_sql("EXPLAIN (FORMAT JSON) " + str(compiled), params).scalar()
    nodes: list[str] = []

    def walk(node: dict) -> None:
        kind = node["Node Type"]
        if "Scan" in kind:
            nodes.append(f"{kind} {node.get('Index Name') or node.get('Relation Name') or ''}".strip())
        for child in node.get("Plans", []):
            walk(child)

    walk(plan[0]["Plan"])
    return ", ".join(dict.fromkeys(nodes))


def main() -> None:
    scratch = contextlib.ExitStack()
    url, fill_s = setup(scratch)
    os.environ.update({"DATABASE_URL": url, "ARC_LOCAL": "true", "GOOGLE_CLOUD_PROJECT": "arc-bench"})
    from sqlalchemy import and_, func, or_, select

    from arc_reactor.adapters import runs_repo
    from arc_reactor.adapters.tables import run_events as events_table
    from arc_reactor.adapters.tables import runs as runs_table
    from arc_reactor.wiring import get_deps

    engine = get_deps().engine  # the production engine: pool, statement timeout
    rid = lambda g: "r" + str(g).rjust(18, "0")  # noqa: E731
    mid = N_RUNS // 2
    base = mid - (mid - 1) % 3
    lineage = rid(base)
    assert {r["id"] for r in runs_repo.active_in_lineage(engine, lineage)} <= {
        rid(base + k) for k in range(3)
    }
    cutoff = START + timedelta(seconds=30 * N_RUNS)  # every active run is older than this
    stale = runs_repo.stale_runs(engine, cutoff, 50)
    assert len(stale) == 50 and all(
        r.run_status.value in ("pending", "submitted", "running", "cancelling") for r in stale
    )
    filters = {
        "status": runs_repo.RunFilter(statuses=("running",)),
        "label": runs_repo.RunFilter(labels=(("project", "p7"),)),
        "rare_label": runs_repo.RunFilter(labels=(("cohort", "rare"),)),  # 1 run in 10^4
        "submitter": runs_repo.RunFilter(submitter="user7@example.org"),
    }
    figures: dict[str, dict] = {}
    depth: dict[str, int] = {}
    floor = timed(lambda: runs_repo.get_run(engine, rid(mid)))
    figures["recover_lineage_check"] = timed(lambda: runs_repo.active_in_lineage(engine, lineage))
    figures["sweeper_query"] = timed(lambda: runs_repo.stale_runs(engine, cutoff, 50))
    for name, where in filters.items():
        # The deepest page up to DEEP_PAGE that this filter has (a 1% label has 200 pages at 10^6 runs).
        with engine.connect() as conn:
            matching = conn.execute(
                select(func.count()).select_from(runs_table).where(*where.clauses())
            ).scalar()
        depth[name] = max(1, min(DEEP_PAGE, matching // PAGE_SIZE))
        deep_rows = runs_repo.list_runs(
            engine, limit=1, where=where, offset=max(0, (depth[name] - 1) * PAGE_SIZE - 1)
        )
        before = (deep_rows[0].created_at, deep_rows[0].id)
        figures[f"list_{name}_page_1"] = timed(
            lambda w=where: runs_repo.list_runs(engine, limit=PAGE_SIZE + 1, where=w)
        )
        figures[f"list_{name}_deep_page"] = timed(
            lambda w=where, b=before: runs_repo.list_runs(engine, limit=PAGE_SIZE + 1, where=w, before=b)
        )
    # Steady state: the hub's windowed poll (api/sse.py), nothing new for the watched runs (as most polls of
    # an interval find), over a window of WINDOW events: what the whole table gained in the last
    # LOOKBACK_POLLS intervals (5 s at 20 events/s, e.g. 200 active runs each changing every 10 s). The
    # same poll for 1 and for 200 watched runs; beside it the per-run cursor form (every run probed after its
    # own cursor, as a new watcher is read and as every poll was before), shown but not counted.
    watched = [rid(mid + k * max(1, mid // WATCHERS - 1)) for k in range(WATCHERS)]
    with engine.connect() as conn:
        last = dict(
            conn.execute(
                select(events_table.c.run_id, func.max(events_table.c.id))
                .where(events_table.c.run_id.in_(watched))
                .group_by(events_table.c.run_id)
            ).all()
        )
        top = conn.execute(select(func.max(events_table.c.id))).scalar()
    since = top - WINDOW
    many = {r: last[r] for r in watched}
    assert runs_repo.poll_events(engine, {}, watched, since).rows == []
    assert runs_repo.events_after(engine, many) == []
    # As the hub polls: both windows (events, and progress written lately: here 100 runs' reports, half of
    # them watched runs'), no probe per watched run (api/sse.py).
    ptop = runs_repo.poll_events(engine, {}).progress_top or 0
    for k in range(100):
        runs_repo.set_progress(engine, watched[k] if k % 2 else rid(mid - 1 - k), {"succeeded": k}, 1000 + k)
    steady = runs_repo.poll_events(engine, {}, watched, since, progress_since=ptop)
    assert steady.rows == [] and len(steady.progress) == 50, "the window holds the watched runs' reports"
    figures["sse_poll_1_watcher"] = timed(
        lambda: runs_repo.poll_events(engine, {}, watched[:1], since, progress_since=ptop)
    )
    figures[f"sse_poll_{WATCHERS}_watchers"] = timed(
        lambda: runs_repo.poll_events(engine, {}, watched, since, progress_since=ptop)
    )
    quiet = runs_repo.poll_events(engine, {}).progress_top  # no report since: what most polls find
    figures[f"sse_poll_{WATCHERS}_watchers_no_new_progress"] = timed(
        lambda: runs_repo.poll_events(engine, {}, watched, since, progress_since=quiet)
    )
    probes = dict.fromkeys(watched, 0)  # shown, not counted: a probe per watched run's progress
    figures[f"sse_poll_{WATCHERS}_watchers_progress_probes"] = timed(
        lambda: runs_repo.poll_events(engine, {}, watched, since, progress_after=probes)
    )
    figures[f"sse_poll_{WATCHERS}_watchers_cursor_form"] = timed(lambda: runs_repo.events_after(engine, many))

    def or_form() -> list:  # the poll as it was first (a 200-term OR), for the before/after in one run
        ev = events_table.c
        match = or_(*(and_(ev.run_id == r, ev.id > after) for r, after in many.items()))
        with engine.connect() as conn:
            return conn.execute(select(events_table).where(match).order_by(ev.id).limit(1000)).all()

    figures[f"sse_poll_{WATCHERS}_watchers_or_form"] = timed(or_form)
    ratios = {k: round(floor["p50"] / v["p50"], 3) for k, v in figures.items()}
    listing_depth = {
        name: round(figures[f"list_{name}_deep_page"]["p95"] / figures[f"list_{name}_page_1"]["p95"], 2)
        for name in filters
    }
    plans = {
        "recover_lineage_check": plan_of(engine, runs_repo.lineage_stmt(lineage)),
        "sweeper_query": plan_of(engine, runs_repo.stale_stmt(cutoff, 50)),
        **{
            f"list_{name}": plan_of(engine, runs_repo.list_stmt(w, PAGE_SIZE + 1))
            for name, w in filters.items()
        },
    }
    print(
        json.dumps(
            {
                "bench": "ledger",
                "runs": N_RUNS,
                "active_share": 0.2,
                "samples": SAMPLES,
                "fill_s": round(fill_s, 1),
                "floor_ms": floor,
                "ms": figures,
                "ratio_to_floor": min(v for k, v in ratios.items() if not k.endswith("_form")),
                "ratios": ratios,
                "deep_page": depth,
                "deep_over_page_1_p95": listing_depth,
                "sse_200_over_1_p50": round(
                    figures[f"sse_poll_{WATCHERS}_watchers"]["p50"] / figures["sse_poll_1_watcher"]["p50"], 2
                ),
                "plans": plans,
            }
        )
    )
    engine.dispose()
    scratch.close()


if __name__ == "__main__":
    main()

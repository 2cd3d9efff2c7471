"""GET /runs over 1,000,000 runs in PostgreSQL: the first page and page 1,000 (reached by its page token),
p50/p95 server-side, next to the same query paged with OFFSET. Target: p95 under 10 ms, flat with depth.

Setup: an embedded PostgreSQL (pgserver, or DATABASE_URL), migrated, filled with generate_series in a few
large INSERT ... SELECT statements, then ANALYZEd. Measured in this process, no network in between:
  query_ms    runs_repo.list_runs (the keyset SELECT, through SQLAlchemy and pg8000, rows decoded)
  offset_ms   the same SELECT with OFFSET instead of the keyset condition
  handler_ms  the runs_api handler (functions-framework app, in-process WSGI call, JSON out)
  handler_ms_filtered  the same for ?status=, ?label= and ?submitter=, page 1 and the deepest page up to
              1,000 that the filter has
  db_ms       PostgreSQL's own execution time (EXPLAIN ANALYZE) of the keyset and OFFSET statements
  floor_ms    the minimal I/O of a page: its keyset statement through the bare driver on an open connection;
              ratio_to_floor = floor p50 / the slowest handler p50 (1.0 = a page costs only its rows)
Prints one JSON line. BENCH_RUNS and BENCH_SAMPLES change the size and the number of timed requests."""

from __future__ import annotations

import contextlib
import json
import os

from _parts import ROOT  # puts functions/ on sys.path, sets NO_GCE_CHECK

N_RUNS = int(os.environ.get("BENCH_RUNS", "1000000"))
SAMPLES = int(os.environ.get("BENCH_SAMPLES", "200"))
PAGE_SIZE = 100
DEEP_PAGE = 1000
CHUNK = 100_000

FILL = """
INSERT INTO runs (id, name, pipeline, revision, engine, status, lineage_id, batch_job_name, work_dir,
                  cache_dir, inputs_uri, results_uri, logs_uri, submitter, labels, params, created_at,
                  updated_at)
SELECT 'r' || lpad(g::text, 18, '0'), 'run ' || g,
       (ARRAY['nf-core/scrnaseq', 'arc/fastq-stats'])[1 + mod(g, 2)], '4.0.0', 'nextflow',
       (ARRAY['completed', 'failed', 'running', 'submitted', 'cancelled'])[1 + mod(g, 5)],
       'r' || lpad(g::text, 18, '0'),
       'projects/p/locations/us-central1/jobs/arc-r' || lpad(g::text, 18, '0'),
       'gs://arc-runs/work/r' || lpad(g::text, 18, '0') || '/',
       'gs://arc-runs/cache/r' || lpad(g::text, 18, '0') || '/',
       'gs://arc-runs/runs/r' || lpad(g::text, 18, '0') || '/inputs/',
       'gs://arc-runs/runs/r' || lpad(g::text, 18, '0') || '/results/',
       'gs://arc-runs/runs/r' || lpad(g::text, 18, '0') || '/logs/',
       'user' || mod(g, 50) || '@example.org',
       jsonb_build_object('project', 'p' || mod(g, 100), 'team', 't' || mod(g, 7)),
       jsonb_build_object('min_quality', 20, 'aligner', 'star'),
       timestamptz '2024-01-01 00:00:00+00' + g * interval '30 seconds',
       timestamptz '2024-01-01 00:00:00+00' + g * interval '30 seconds'
FROM generate_series(CAST(:lo AS integer), CAST(:hi AS integer)) AS g
"""


def timed(fn, samples: int = SAMPLES, warmup: int = 20) -> dict[str, float]:
    """Milliseconds per call of fn, after a warm-up."""
    from _parts import timed as timed_ms

    return timed_ms(fn, samples, warmup, digits=2)


def setup_database(scratch: contextlib.ExitStack) -> tuple[str, float]:
    """A migrated database holding N_RUNS runs; its URL and the seconds the fill took."""
    from _parts import filled_database

    return filled_database(scratch, [FILL], N_RUNS, CHUNK, "arc-bench-list-")


def db_execution_ms(engine, sql: str, params: dict) -> float:
    """PostgreSQL's execution time of one statement (median of 5 EXPLAIN ANALYZE)."""
    from sqlalchemy import text

    times = []
    with engine.connect() as conn:
        for _ in range(5):
            plan = conn.execute(text("EXPLAIN (ANALYZE, FORMAT JSON) " + sql), params).scalar()
            times.append(float(plan[0]["Execution Time"]))
    return round(sorted(times)[2], 3)


def main() -> None:
    """Fill, measure, print one JSON line."""
    scratch = contextlib.ExitStack()
    url, fill_s = setup_database(scratch)
    os.environ.update({"DATABASE_URL": url, "ARC_LOCAL": "true", "GOOGLE_CLOUD_PROJECT": "arc-bench"})
    from functions_framework import create_app
    from sqlalchemy import text

    from arc_reactor.adapters import runs_repo
    from arc_reactor.api.listing import encode_page_token, fingerprint
    from arc_reactor.wiring import get_deps

    engine = get_deps().engine  # the production engine: pool, statement timeout
    deep_offset = (DEEP_PAGE - 1) * PAGE_SIZE
    with engine.connect() as conn:
        created, rid = conn.execute(
            text("SELECT created_at, id FROM runs ORDER BY created_at DESC, id DESC OFFSET :o LIMIT 1"),
            {"o": deep_offset - 1},
        ).one()
    token = encode_page_token(created, rid, fingerprint(runs_repo.RunFilter()))
    client = create_app("runs_api", str(ROOT / "functions" / "main.py"), "http").test_client()
    deep = client.get(f"/runs?page_size={PAGE_SIZE}&page_token={token}").get_json()["runs"]
    offset_rows = runs_repo.list_runs(engine, limit=PAGE_SIZE, offset=deep_offset)
    assert [r["id"] for r in deep] == [r["id"] for r in offset_rows], "keyset and OFFSET disagree"
    print(json.dumps(measure(engine, client, token, (created, rid), fill_s)))
    engine.dispose()
    scratch.close()


# GET /runs filters at the handler: (query string, the same filter as the repository sees it).
FILTERS = {
    "status": ("status=running", {"statuses": ("running",)}),  # 20% of the runs
    "label": ("label=project%3Dp7", {"labels": (("project", "p7"),)}),  # 1%
    "submitter": ("submitter=user7%40example.org", {"submitter": "user7@example.org"}),  # 2%
}


def filtered(client, query: str, spec: dict) -> dict:
    """The handler's p50/p95 for a filtered listing's first page and its page DEEP_PAGE (or the deepest
    the filter has), reached by its page token; with the deep page's number."""
    from sqlalchemy import func, select

    from arc_reactor.adapters import runs_repo
    from arc_reactor.adapters.tables import runs
    from arc_reactor.api.listing import encode_page_token, fingerprint
    from arc_reactor.wiring import get_deps

    where = runs_repo.RunFilter(**spec)
    engine = get_deps().engine
    with engine.connect() as conn:
        matching = conn.execute(select(func.count()).select_from(runs).where(*where.clauses())).scalar()
    pages = max(1, min(DEEP_PAGE, -(-matching // PAGE_SIZE)))
    url = f"/runs?page_size={PAGE_SIZE}&{query}"
    out = {"deep_page": pages, "page_1_ms": timed(lambda: client.get(url))}
    if pages > 1:
        skip = (pages - 1) * PAGE_SIZE
        last, first = runs_repo.list_runs(engine, limit=2, where=where, offset=skip - 1)
        deep = f"{url}&page_token={encode_page_token(last.created_at, last.id, fingerprint(where))}"
        assert client.get(deep).get_json()["runs"][0]["id"] == first.id, "page token and OFFSET disagree"
        out["deep_page_ms"] = timed(lambda: client.get(deep))
    return out


def measure(engine, client, token: str, before: tuple, fill_s: float) -> dict:
    """Every figure of the JSON line."""
    from arc_reactor.adapters import runs_repo

    deep_offset = (DEEP_PAGE - 1) * PAGE_SIZE
    keyset_sql = (
        "SELECT * FROM runs WHERE (created_at, id) < (CAST(:c AS timestamptz), :i) "
        "ORDER BY created_at DESC, id DESC LIMIT 101"
    )
    offset_sql = "SELECT * FROM runs ORDER BY created_at DESC, id DESC OFFSET :o LIMIT 100"
    figures = {
        "bench": "list_runs",
        "runs": N_RUNS,
        "page_size": PAGE_SIZE,
        "deep_page": DEEP_PAGE,
        "samples": SAMPLES,
        "fill_s": round(fill_s, 1),
        "query_ms": {
            "first_page": timed(lambda: runs_repo.list_runs(engine, limit=PAGE_SIZE + 1)),
            "page_1000": timed(lambda: runs_repo.list_runs(engine, limit=PAGE_SIZE + 1, before=before)),
        },
        "offset_ms": {
            "first_page": timed(lambda: runs_repo.list_runs(engine, limit=PAGE_SIZE, offset=0)),
            "page_1000": timed(lambda: runs_repo.list_runs(engine, limit=PAGE_SIZE, offset=deep_offset)),
        },
        "handler_ms": {
            "first_page": timed(lambda: client.get(f"/runs?page_size={PAGE_SIZE}")),
            "page_1000": timed(lambda: client.get(f"/runs?page_size={PAGE_SIZE}&page_token={token}")),
        },
        "handler_ms_filtered": {name: filtered(client, *spec) for name, spec in FILTERS.items()},
        "db_ms": {
            "keyset_page_1000": db_execution_ms(engine, keyset_sql, {"c": before[0], "i": before[1]}),
            "offset_page_1000": db_execution_ms(engine, offset_sql, {"o": deep_offset}),
        },
    }
    # The floor: the same page's rows (page 1,000's keyset statement) fetched with the bare driver on one
    # open connection, nothing decoded past pg8000's own types: the minimal I/O of a page.
    raw = engine.raw_connection()
    cur = raw.cursor()
    sql = keyset_sql.replace("CAST(:c AS timestamptz), :i", "CAST(%s AS timestamptz), %s")
    floor = timed(lambda: (cur.execute(sql, (before[0], before[1])), cur.fetchall()))
    raw.close()
    handlers = [figures["handler_ms"]["first_page"], figures["handler_ms"]["page_1000"]]
    for f in figures["handler_ms_filtered"].values():
        handlers += [v for k, v in f.items() if k.endswith("_ms")]
    figures["floor_ms"] = floor
    figures["ratio_to_floor"] = round(floor["p50"] / max(h["p50"] for h in handlers), 3)
    figures["worst_handler_p95_ms"] = max(h["p95"] for h in handlers)
    return figures


if __name__ == "__main__":
    main()

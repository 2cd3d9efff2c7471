"""GET /runs keyset pagination over 1,000 runs while other runs are being inserted: every run that existed
when paging began is seen exactly once, in (created_at, id) descending order, never a duplicate."""

import threading
from datetime import datetime

import pytest
from flow import function_client
from sqlalchemy import text

pytestmark = pytest.mark.integration

BULK_INSERT = """
INSERT INTO runs (id, pipeline, revision, engine, lineage_id, work_dir, cache_dir, inputs_uri, results_uri,
                  logs_uri, status, created_at, labels)
SELECT 'r' || lpad(g::text, 18, '0'), 'arc/fastq-stats', '1.0.0', 'snakemake', 'r' || lpad(g::text, 18, '0'),
       'gs://b/work/', 'gs://b/cache/', 'gs://b/i/', 'gs://b/r/', 'gs://b/l/',
       (ARRAY['submitted','running','completed','failed'])[1 + mod(g, 4)],
       -- groups of three runs share a timestamp: the id breaks the tie
       timestamptz '2026-01-01 00:00:00+00' + ((g / 3) * interval '1 second'),
       jsonb_build_object('batch', mod(g, 10)::text)
FROM generate_series(CAST(:first AS integer), CAST(:last AS integer)) AS g
"""


def _insert(engine, first, last, at=None):
    sql = (
        BULK_INSERT
        if at is None
        else BULK_INSERT.replace(
            "timestamptz '2026-01-01 00:00:00+00' + ((g / 3) * interval '1 second')",
            "CAST(:at AS timestamptz)",
        )
    )
    with engine.begin() as conn:
        conn.execute(text(sql), {"first": first, "last": last, "at": at})


def test_pages_over_1000_runs_while_inserting(app_env, engine):
    _insert(engine, 1, 1000)
    api = function_client("runs_api", "http")
    stop = threading.Event()
    inserted = []

    def writer():
        n = 2000
        while not stop.is_set():
            # New runs (now) and back-dated ones inside the range being paged through.
            _insert(engine, n, n)
            _insert(engine, n + 1, n + 1, at=datetime(2026, 1, 1, 0, 2, 0).isoformat() + "+00:00")
            inserted.extend([n, n + 1])
            n += 2

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        seen, token, pages = [], None, 0
        while True:
            query = {"page_size": 37, **({"page_token": token} if token else {})}
            resp = api.get("/runs", query_string=query)
            assert resp.status_code == 200, resp.get_json()
            body = resp.get_json()
            seen += [(r["created_at"], r["id"]) for r in body["runs"]]
            pages += 1
            token = body["next_page_token"]
            if not token:
                break
    finally:
        stop.set()
        thread.join(timeout=10)
    ids = [rid for _, rid in seen]
    assert len(ids) == len(set(ids)), "a run was returned twice"
    originals = {f"r{g:018d}" for g in range(1, 1001)}
    assert originals <= set(ids), f"missed {len(originals - set(ids))} runs"
    keys = [(datetime.fromisoformat(c), rid) for c, rid in seen]
    assert keys == sorted(keys, reverse=True)
    assert pages >= 1000 // 37 and inserted


def test_filtered_pages_use_the_same_keyset(app_env, engine):
    _insert(engine, 1, 300)
    api = function_client("runs_api", "http")
    seen, token = [], None
    while True:
        query = {
            "page_size": 50,
            "status": "failed",
            "label": "batch=3",
            **({"page_token": token} if token else {}),
        }
        body = api.get("/runs", query_string=query).get_json()
        seen += [r["id"] for r in body["runs"]]
        token = body["next_page_token"]
        if not token:
            break
    expected = [f"r{g:018d}" for g in range(300, 0, -1) if g % 4 == 3 and g % 10 == 3]
    assert seen == expected

"""GET /runs/{id}/events: the SSE stream read by a real HTTP client (requests) from the runs_api app served
over loopback by werkzeug, while the run changes status in PostgreSQL."""

import threading
import time

import pytest
import requests
from flow import upload_demo_data
from test_runs_api import demo_body, transition

from arc_reactor.adapters import runs_repo

pytestmark = pytest.mark.integration


@pytest.fixture
def served(app_env, gcs, monkeypatch):
    from arc_reactor.api import sse
    from arc_reactor.local.functions_host import serve_function, stop_function
    from arc_reactor.wiring import get_deps

    upload_demo_data(gcs)
    monkeypatch.setattr(sse, "HEARTBEAT_S", 0.3)
    get_deps().event_hub.interval = 0.1
    fn = serve_function("runs_api", "http")
    session = requests.Session()
    session.trust_env = False
    yield fn.url.rstrip("/"), session
    session.close()
    stop_function(fn)


def read_stream(session, url, headers=None, until_end=True, limit_s=15.0):
    """Every SSE message of one stream as (event, id, data, comment) tuples, until it closes."""
    import json

    messages, event, data, last_id = [], None, [], None
    deadline = time.monotonic() + limit_s
    with session.get(url, headers=headers or {}, stream=True, timeout=(5, 10)) as resp:
        assert resp.status_code == 200, resp.text
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        for raw in resp.iter_lines(chunk_size=1, decode_unicode=True):
            if raw.startswith(":"):
                messages.append(("comment", None, raw, True))
            elif raw.startswith("event: "):
                event = raw[7:]
            elif raw.startswith("id: "):
                last_id = int(raw[4:])
            elif raw.startswith("data: "):
                data.append(raw[6:])
            elif raw == "" and data:
                messages.append((event, last_id, json.loads("\n".join(data)), False))
                event, data = None, []
                if until_end and messages[-1][0] == "end":
                    break
            assert time.monotonic() < deadline, messages
    return messages


def test_every_transition_in_order_then_end_for_many_clients_with_one_poll_per_interval(served, engine):
    from arc_reactor.wiring import get_deps

    base, session = served
    run = session.post(f"{base}/runs", json=demo_body(), timeout=30).json()
    results = {}

    def client(i):
        results[i] = read_stream(session.__class__(), f"{base}/runs/{run['id']}/events")

    threads = [threading.Thread(target=client, args=(i,)) for i in range(6)]
    started = time.monotonic()
    polls_before = get_deps().event_hub.polls
    for t in threads:
        t.start()
    time.sleep(0.8)  # every client connected and caught up; heartbeats flow meanwhile
    rule = {"name": "stats", "succeeded": 1, "pending": 2}
    runs_repo.set_progress(engine, run["id"], {"source": "snakemake", "processes": [rule], **rule}, 1000)
    for status in ("running", "cancelling", "cancelled"):
        transition(engine, run["id"], status)
        if status == "running":
            time.sleep(0.3)
            done = {**rule, "succeeded": 3, "pending": 0}
            runs_repo.set_progress(
                engine, run["id"], {"source": "snakemake", "processes": [done], **done}, 2000
            )
        time.sleep(0.2)
    for t in threads:
        t.join(timeout=15)
    elapsed = time.monotonic() - started
    polls = get_deps().event_hub.polls - polls_before
    for messages in results.values():
        statuses = [d["to_status"] for e, _, d, c in messages if e == "transition"]
        assert statuses == ["pending", "submitted", "running", "cancelling", "cancelled"]
        assert messages[-1][0] == "end" and messages[-1][2]["status"] == "cancelled"
        assert any(c for *_, c in messages), "no heartbeat comment"
        ids = [i for e, i, _, c in messages if e == "transition"]
        assert ids == sorted(ids)
        first = next(d for e, _, d, c in messages if e == "transition")
        assert {"id", "created_at", "source", "from_status", "detail"} <= set(first)
        progress = [
            (d["done"], d["total"], d["processes"][0]["done"]) for e, _, d, _ in messages if e == "progress"
        ]
        assert progress == [(1, 3, 1), (3, 3, 3)], messages  # each report once, in its own event type
    # One poll per interval for all six clients: far fewer than six per interval.
    assert polls <= elapsed / 0.1 + 3, (polls, elapsed)


def test_last_event_id_resumes_and_a_finished_run_replays_then_ends(served, engine):
    base, session = served
    run = session.post(f"{base}/runs", json=demo_body(), timeout=30).json()
    transition(engine, run["id"], "running")
    runs_repo.set_progress(engine, run["id"], {"source": "snakemake", "failed": 1, "succeeded": 2}, 1000)
    transition(engine, run["id"], "failed", error_code="pipeline_error")
    everything = read_stream(session, f"{base}/runs/{run['id']}/events")
    assert [e for e, *_ in everything[-2:]] == ["progress", "end"]  # a finished run: its last counts
    assert (everything[-2][2]["failed"], everything[-2][2]["total"]) == (1, 3)
    ids = {d["to_status"]: i for e, i, d, _ in everything if e == "transition"}
    after = read_stream(session, f"{base}/runs/{run['id']}/events", {"Last-Event-ID": str(ids["submitted"])})
    assert [d["to_status"] for e, _, d, _ in after if e == "transition"] == ["running", "failed"]
    assert after[-1][0] == "end"
    query = read_stream(session, f"{base}/runs/{run['id']}/events?last_event_id={ids['failed']}")
    assert [m[0] for m in query] == ["progress", "end"]  # the counts carry no id: sent on every connect
    bad = session.get(f"{base}/runs/{run['id']}/events", headers={"Last-Event-ID": "x"}, timeout=5)
    assert bad.status_code == 400
    assert session.get(f"{base}/runs/r000000000000000000/events", timeout=5).status_code == 404


def test_a_stream_ends_at_its_lifetime_and_the_client_resumes(served, engine, monkeypatch):
    from arc_reactor.api import sse
    from arc_reactor.wiring import get_deps

    base, session = served
    monkeypatch.setattr(sse, "STREAM_MAX_S", 0.6)
    run = session.post(f"{base}/runs", json=demo_body(), timeout=30).json()
    first = read_stream(session, f"{base}/runs/{run['id']}/events", until_end=False)
    assert [e for e, *_ in first if e and e != "comment"] == ["transition", "transition"]  # no `end`
    last = max(i for _, i, _, c in first if not c)
    transition(engine, run["id"], "completed")
    rest = read_stream(session, f"{base}/runs/{run['id']}/events", {"Last-Event-ID": str(last)})
    assert [(e, d.get("to_status") or d.get("status")) for e, _, d, c in rest if not c] == [
        ("transition", "completed"),
        ("end", "completed"),
    ]
    time.sleep(0.3)
    assert get_deps().event_hub.watching == 0

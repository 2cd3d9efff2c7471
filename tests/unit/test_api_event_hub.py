"""The SSE hub (one poll per interval for every watcher in the process), the stream's text, and the CLI's
SSE parser reading it back."""

import json
import threading
import time
from datetime import UTC, datetime

from arc_reactor.adapters.runs_repo import EventPoll
from arc_reactor.api import sse
from arc_reactor.cli.client import SseMessage, iter_sse


def _row(i, run_id="r1", kind="transition", to_status="running"):
    return {
        "id": i, "run_id": run_id, "created_at": datetime(2026, 1, 1, tzinfo=UTC), "kind": kind,
        "source": "batch", "from_status": None, "to_status": to_status, "detail": {},
    }  # fmt: skip


class Table:
    """run_events in memory, answering as runs_repo.poll_events does; records every poll's question.
    `visible` hides rows whose id was handed out but whose transaction has not committed yet."""

    def __init__(self, rows):
        self.rows = rows
        self.calls = []
        self.hidden = set()
        self.progress = {}  # run id -> its progress document
        self.progress_asked = []

    def __call__(self, fresh, watched, since, *, limit, progress_after, progress_since):
        self.calls.append((dict(fresh), list(watched), since))
        self.progress_asked.append(dict(progress_after))
        rows = [r for r in self.rows if r["id"] not in self.hidden]
        by_cursor = [r for r in rows if r["run_id"] in fresh and r["id"] > fresh[r["run_id"]]]
        windowed = [r for r in rows if since is not None and r["id"] > since and r["run_id"] in watched]
        found = sorted({r["id"]: r for r in by_cursor + windowed}.values(), key=lambda r: r["id"])[:limit]
        newer = {
            rid: doc for rid, doc in self.progress.items()
            if (rid in progress_after and doc["instant"] > progress_after[rid])
            or (progress_since is not None and rid in watched)  # the window: the hub keeps what is newer
        }  # fmt: skip
        return EventPoll(found, max((r["id"] for r in rows), default=None), newer, len(self.progress))


def _quiet(hub, subs):
    """Wait for the poller's first (immediate) poll; the next is an interval away, so tests poll by hand."""
    deadline = time.monotonic() + 5
    while hub.polls < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    return subs


def test_one_poll_serves_every_subscriber_from_its_own_cursor():
    table = Table([_row(1)])
    hub = sse.EventHub(table, interval=60)
    a, b, c = _quiet(hub, [hub.subscribe("r1", 0), hub.subscribe("r1", 1), hub.subscribe("r2", 2)])
    hub.poll_once()  # the poller's first poll may have come before b and c subscribed
    # New watchers are read after their own cursors (the lowest per run), in polls with no window: r1
    # after a's 0, and after b's 1 too when the poller's first poll had already served a alone.
    asked = [(r, c) for call in table.calls for r, c in call[0].items()]
    assert ("r1", 0) in asked and ("r2", 2) in asked and set(asked) <= {("r1", 0), ("r1", 1), ("r2", 2)}
    assert ("r1", 1) not in asked or asked.index(("r1", 0)) < asked.index(("r1", 1))
    assert all(call[1:] == ([], None) for call in table.calls if call[0])
    table.rows += [_row(2, "r2"), _row(3), _row(4, "r2")]
    assert hub.poll_once() == 3  # every event after the window's start (the table's top at the last poll)
    assert table.calls[-1] == ({}, ["r1", "r2"], 1)  # every watched run from one window: one statement
    drained = [[q.get_nowait()["id"] for _ in range(q.qsize())] for q in (a.queue, b.queue, c.queue)]
    assert drained == [[1, 3], [3], [4]]  # each after its own cursor
    table.rows.append(_row(5))
    d = hub.subscribe("r3", 0)
    hub.poll_once()
    assert table.calls[-1] == ({"r3": 0}, ["r1", "r2", "r3"], 1)  # a new watcher is read after its cursor
    assert a.queue.get_nowait()["id"] == 5 and b.queue.get_nowait()["id"] == 5 and c.queue.empty()
    for sub in (a, b, c, d):
        hub.unsubscribe(sub)


def test_an_event_committed_after_a_later_one_is_still_delivered_within_the_lookback():
    table = Table([_row(1)])
    hub = sse.EventHub(table, interval=60)
    [sub] = _quiet(hub, [hub.subscribe("r1", 0)])
    assert sub.queue.get_nowait()["id"] == 1
    table.rows += [_row(2, "r2"), _row(3, "r2")]
    table.hidden.add(2)  # id 2 was handed out first, but its transaction commits after id 3's
    hub.poll_once()
    for _ in range(sse.LOOKBACK_POLLS - 1):
        table.rows[1] = _row(2, "r1")
        table.hidden.clear()
        hub.poll_once()
    assert sub.queue.get_nowait()["id"] == 2


def test_every_run_is_read_after_its_own_cursor_every_resync_polls():
    table = Table([])
    hub = sse.EventHub(table, interval=60)
    table.rows.append(_row(1, "r9"))
    [sub] = _quiet(hub, [hub.subscribe("r1", 0)])
    for _ in range(sse.RESYNC_POLLS):
        hub.poll_once()
    assert [c[2] for c in table.calls[-sse.RESYNC_POLLS - 1 :]] == [None] + [1] * sse.RESYNC_POLLS
    hub.poll_once()
    assert table.calls[-1] == ({"r1": 0}, [], None)
    hub.unsubscribe(sub)


def test_an_answer_cut_at_the_poll_limit_is_followed_from_each_cursor(monkeypatch):
    monkeypatch.setattr(sse, "POLL_LIMIT", 2)
    table = Table([_row(i) for i in range(1, 6)])
    hub = sse.EventHub(table, interval=60)
    [sub] = _quiet(hub, [hub.subscribe("r1", 0)])
    while hub.poll_once():
        pass
    assert [sub.queue.get_nowait()["id"] for _ in range(sub.queue.qsize())] == [1, 2, 3, 4, 5]
    assert [c[0] for c in table.calls[:3]] == [{"r1": 0}, {"r1": 2}, {"r1": 4}]
    hub.unsubscribe(sub)


def test_the_poller_runs_only_while_someone_watches_and_polls_once_per_interval():
    table = Table([])
    hub = sse.EventHub(table, interval=0.05)
    subs = [hub.subscribe(f"r{i}", 0) for i in range(20)]
    time.sleep(0.5)
    assert 4 <= hub.polls <= 13  # ~10 intervals: never 20 clients x 10
    for sub in subs:
        hub.unsubscribe(sub)
    time.sleep(0.2)
    settled = hub.polls
    time.sleep(0.2)
    assert hub.polls == settled and hub._thread is None


def test_a_failing_database_does_not_kill_the_poller():
    from arc_reactor.errors import TransientError

    def down(fresh, watched, since, *, limit, progress_after, progress_since):
        raise TransientError("database unavailable")

    hub = sse.EventHub(down, interval=60)
    [sub] = _quiet(hub, [hub.subscribe("r1", 0)])
    assert hub.poll_once() == 0 and hub.polls == 2  # logged, counted, and the poller lives on
    hub.unsubscribe(sub)


def test_stream_text_heartbeats_and_end(monkeypatch):
    monkeypatch.setattr(sse, "HEARTBEAT_S", 0.05)
    table = Table([])
    hub = sse.EventHub(table, interval=0.02)
    chunks = []

    def consume():
        chunks.extend(sse.stream(hub, "r1", 0))

    thread = threading.Thread(target=consume)
    thread.start()
    time.sleep(0.15)
    table.rows += [_row(7), _row(8, to_status="failed")]
    thread.join(timeout=5)
    text = "".join(chunks)
    assert text.startswith("retry: 2000\n\n")
    assert ": heartbeat\n\n" in text
    assert "id: 7\nevent: transition\ndata: {" in text
    assert text.endswith('event: end\ndata: {"run_id": "r1", "status": "failed"}\n\n')
    assert hub.watching == 0


def test_the_stream_closes_at_its_lifetime(monkeypatch):
    monkeypatch.setattr(sse, "STREAM_MAX_S", 0.1)
    monkeypatch.setattr(sse, "HEARTBEAT_S", 10)
    hub = sse.EventHub(Table([]), interval=0.02)
    started = time.monotonic()
    assert list(sse.stream(hub, "r1", 0)) == ["retry: 2000\n\n"]
    assert time.monotonic() - started < 1


def test_the_cli_parser_reads_what_the_server_writes():
    text = sse.sse_event(_row(3)) + ": heartbeat\n\n" + "event: end\ndata: {}\n\n" + "data: a\ndata: b\n\n"
    messages = list(iter_sse(iter(text.split("\n"))))
    assert [m.event for m in messages] == ["transition", "comment", "end", "message"]
    assert messages[0].id == "3" and '"to_status": "running"' in messages[0].data
    assert messages[-1] == SseMessage("message", "a\nb", "3")


def test_progress_goes_to_each_watcher_once_per_newer_report_without_an_event_id():
    table = Table([_row(1)])
    table.progress["r1"] = {"source": "snakemake", "succeeded": 1, "pending": 4, "instant": 1000}
    hub = sse.EventHub(table, interval=60)
    a = _quiet(hub, hub.subscribe("r1", 1))
    hub.poll_once()
    b = hub.subscribe("r1", 1)  # a later watcher is sent the latest counts at its first poll
    hub.poll_once()
    assert table.progress_asked[-1] == {"r1": 0}  # the run's oldest progress cursor
    got = [a.queue.get_nowait() for _ in range(a.queue.qsize())]
    assert [item["kind"] for item in got] == ["progress"] and b.queue.qsize() == 1
    hub.poll_once()
    assert a.queue.qsize() == 0 and b.queue.qsize() == 1  # nothing newer: nothing more
    table.progress["r1"] = {**table.progress["r1"], "succeeded": 2, "pending": 3, "instant": 2000}
    hub.poll_once()
    assert a.queue.get_nowait()["progress"]["succeeded"] == 2
    message = sse.sse_event(got[0])
    assert message.startswith("event: progress\ndata: ") and "\nid:" not in message
    parsed = list(iter_sse(message.splitlines()))
    assert parsed[0].event == "progress" and parsed[0].id in (None, "")
    data = json.loads(parsed[0].data)
    assert (data["run_id"], data["done"], data["total"], data["at"]) == (
        "r1",
        1,
        5,
        "1970-01-01T00:00:01+00:00",
    )
    hub.unsubscribe(a)
    hub.unsubscribe(b)

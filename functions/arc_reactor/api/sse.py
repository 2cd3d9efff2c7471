"""GET /runs/{id}/events: Server-Sent Events from run_events.

Each event is sent as `id: <event id>`, `event: <kind>` (transition, conflict, note) and `data: <JSON>` with
its timestamp, statuses and detail. A client resumes with Last-Event-ID (header, or ?last_event_id=). A
comment line is sent as a heartbeat every HEARTBEAT_S; after a terminal transition an `end` event is sent
and the stream closes. A stream also closes after STREAM_MAX_S (under the function's request timeout), and
the client reconnects with Last-Event-ID as EventSource does.

The run's task progress (core/progress.py, api/views.progress_view) is sent as `event: progress` with no
id, whenever the engine has reported newer counts, at most once a poll interval. Engines report progress
every few seconds, so it is not kept as run_events rows (those tell the run's story, and the newest of them
are shown with the run); a client that connects or reconnects is sent the latest counts at once.

One EventHub per process polls the database ONCE per interval for every run watched in the process (one
statement: runs that just got a watcher after their own cursors, the others from the events the table
gained since the poll window began, and the watched runs' newer progress) and fans the rows out to the
subscribers' queues, so the database load does not grow with the number of clients or of watched runs.
The poller thread runs only while someone is watching.
"""

from __future__ import annotations

import logging
import queue
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import flask

from arc_reactor.api.auth import require_reader
from arc_reactor.api.http import Call, bad_request, dumps
from arc_reactor.api.views import event_view, progress_view
from arc_reactor.core.status import is_terminal
from arc_reactor.errors import ArcError

if TYPE_CHECKING:
    from arc_reactor.adapters.runs_repo import EventPoll

log = logging.getLogger(__name__)

POLL_INTERVAL_S = 1.0
HEARTBEAT_S = 15.0
STREAM_MAX_S = 3300.0  # runs_api's request timeout is 3600 s (infra/functions.tf)
RETRY_MS = 2000  # how long EventSource waits before reconnecting
POLL_LIMIT = 1000  # rows per poll; a longer backlog is read over the next polls
_EVENT_ID = re.compile(r"^\d{1,18}$")

# The window of a poll starts at the table's top event id LOOKBACK_POLLS polls back: an event whose id was
# taken before a poll but committed after it (ids are handed out before commit) is still read by the next
# polls, for about LOOKBACK_POLLS intervals. Every RESYNC_POLLS polls, every run is read after its own
# cursor instead, which bounds how late even a slower commit is seen.
LOOKBACK_POLLS = 5
RESYNC_POLLS = 60


class Fetch(Protocol):
    """runs_repo.poll_events bound to an engine."""

    def __call__(
        self, fresh: Mapping[str, int], watched: Collection[str], since: int | None, *, limit: int,
        progress_after: Mapping[str, int], progress_since: int | None,
    ) -> EventPoll: ...  # fmt: skip


@dataclass(frozen=True)
class Request:
    """One poll's question (EventHub._request)."""

    cursor_read: set[Subscription]
    cursors: dict[str, int]  # run id -> the lowest event id its fresh watchers were given
    progress: dict[str, int]  # run id -> the lowest progress instant its fresh watchers were given
    watched: list[str]  # every watched run, read from the windows (empty on a full poll)
    since: int | None  # the events window's start
    progress_since: int | None  # the progress window's start (a progress_seq)


@dataclass(eq=False)
class Subscription:
    """One watching client: its run, the last event id it was given, and the queue the hub fills."""

    run_id: str
    cursor: int
    progress_at: int = 0  # the `instant` of the last progress document given
    queue: queue.SimpleQueue[dict[str, Any]] = field(default_factory=queue.SimpleQueue)


class EventHub:
    """Polls run_events for all subscribed runs in one query per interval and fans the rows out.

    A poll reads the runs that just got a watcher after their own cursors, and every watched run from the
    events the table gained since its window began (runs_repo.poll_events): so a steady poll costs what was
    added to the whole table lately, not one probe per watched run."""

    def __init__(self, fetch: Fetch, interval: float = POLL_INTERVAL_S) -> None:
        self.fetch = fetch
        self.interval = interval
        self.polls = 0
        self._subs: set[Subscription] = set()
        self._fresh: set[Subscription] = set()  # not yet read after their own cursor
        # At recent polls: run_events' top id and runs' top progress_seq, where the windows start.
        self._tops: deque[tuple[int, int]] = deque(maxlen=LOOKBACK_POLLS)
        self._windowed = 0  # polls since every run was last read after its own cursor
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def subscribe(self, run_id: str, after_id: int) -> Subscription:
        """Watch `run_id` from after event `after_id`; starts the poller when it is not running."""
        sub = Subscription(run_id, after_id)
        with self._lock:
            self._subs.add(sub)
            self._fresh.add(sub)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="arc-sse-poller", daemon=True)
                self._thread.start()
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        """Stop delivering to `sub` (the poller stops by itself once nobody watches)."""
        with self._lock:
            self._subs.discard(sub)
            self._fresh.discard(sub)

    @property
    def watching(self) -> int:
        """How many subscriptions are open."""
        with self._lock:
            return len(self._subs)

    def _request(self) -> Request:
        """This poll's question: the subscriptions read after their own cursors (all of them when there is
        no window yet or a resync is due), those runs' lowest event cursors and progress instants, and the
        windowed runs with the windows' starts (events and progress)."""
        full = not self._tops or self._windowed >= RESYNC_POLLS
        cursor_read = set(self._subs) if full else set(self._fresh)
        cursors: dict[str, int] = {}
        progress: dict[str, int] = {}
        for sub in cursor_read:
            cursors[sub.run_id] = min(sub.cursor, cursors.get(sub.run_id, sub.cursor))
            progress[sub.run_id] = min(sub.progress_at, progress.get(sub.run_id, sub.progress_at))
        if full:
            return Request(cursor_read, cursors, progress, [], None, None)
        watched = sorted({sub.run_id for sub in self._subs})
        since, progress_since = self._tops[0]
        return Request(cursor_read, cursors, progress, watched, since, progress_since)

    def poll_once(self) -> int:
        """One database poll for every watched run; returns how many rows it read."""
        with self._lock:
            if not self._subs:
                return 0
            ask = self._request()
        try:
            found: EventPoll | None = self.fetch(
                ask.cursors, ask.watched, ask.since, limit=POLL_LIMIT, progress_after=ask.progress,
                progress_since=ask.progress_since,
            )  # fmt: skip
        except ArcError as exc:  # the database is down: the streams wait, bounded by their lifetime
            log.warning("event poll failed: %s", exc, extra={"event": "sse_poll_failed"})
            found = None
        rows = found.rows if found is not None else []
        with self._lock:
            self.polls += 1
            if found is not None:
                self._fresh -= ask.cursor_read
                self._windowed = 0 if ask.since is None else self._windowed + 1
                if len(rows) >= POLL_LIMIT:  # a cut-off answer: the next poll goes on from each cursor
                    self._tops.clear()
                elif found.top is not None:
                    self._tops.append((found.top, found.progress_top or 0))
            by_run: dict[str, list[Subscription]] = {}
            for sub in self._subs:
                by_run.setdefault(sub.run_id, []).append(sub)
            for row in rows:
                for sub in by_run.get(row["run_id"], ()):
                    if row["id"] > sub.cursor:
                        sub.cursor = row["id"]
                        sub.queue.put(row)
            for run_id, doc in (found.progress if found is not None else {}).items():
                instant = _instant(doc)
                for sub in by_run.get(run_id, ()):
                    if instant > sub.progress_at:
                        sub.progress_at = instant
                        sub.queue.put({"kind": "progress", "run_id": run_id, "progress": doc})
        return len(rows)

    def _run(self) -> None:
        while True:
            with self._lock:
                if not self._subs:
                    self._thread = None
                    self._tops.clear()  # a window from before the pause would span all that came since
                    return
            self.poll_once()
            time.sleep(self.interval)


def _instant(doc: Mapping[str, Any]) -> int:
    value = doc.get("instant")
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def sse_event(row: Mapping[str, Any]) -> str:
    """One run_events row (or a progress item of the hub's) as an SSE message."""
    if row["kind"] == "progress":
        return f"event: progress\ndata: {dumps(progress_view(row['run_id'], row['progress']))}\n\n"
    return f"id: {row['id']}\nevent: {row['kind']}\ndata: {dumps(event_view(row))}\n\n"


def _end(run_id: str, status: str) -> str:
    return f"event: end\ndata: {dumps({'run_id': run_id, 'status': status})}\n\n"


def _ends_run(row: Mapping[str, Any]) -> bool:
    return row["kind"] == "transition" and bool(row["to_status"]) and is_terminal(str(row["to_status"]))


def stream(
    hub: EventHub, run_id: str, after_id: int, clock: Callable[[], float] = time.monotonic
) -> Iterator[str]:
    """The SSE text of a run that has not ended yet: events from the hub, heartbeats, then `end`."""
    yield f"retry: {RETRY_MS}\n\n"
    sub = hub.subscribe(run_id, after_id)
    try:
        deadline = clock() + STREAM_MAX_S
        beat = clock() + HEARTBEAT_S
        while (now := clock()) < deadline:
            try:
                row = sub.queue.get(timeout=max(0.0, min(beat, deadline) - now))
            except queue.Empty:
                if clock() >= beat:
                    yield ": heartbeat\n\n"
                    beat = clock() + HEARTBEAT_S
                continue
            yield sse_event(row)
            if _ends_run(row):
                yield _end(run_id, str(row["to_status"]))
                return
    finally:
        hub.unsubscribe(sub)


def _finished(
    call: Call, run_id: str, after_id: int, status: str, progress: Mapping[str, Any] | None
) -> Iterator[str]:
    """A run that had already ended when the client connected: what it has not seen, its last progress,
    then `end`."""
    yield f"retry: {RETRY_MS}\n\n"
    while rows := call.deps.runs.list_events(run_id, after_id=after_id, limit=POLL_LIMIT):
        for row in rows:
            yield sse_event(row)
        after_id = int(rows[-1]["id"])
    if progress:
        yield sse_event({"kind": "progress", "run_id": run_id, "progress": progress})
    yield _end(run_id, status)


def last_event_id(call: Call) -> int:
    """Last-Event-ID (header or ?last_event_id=): the id of the last event the client has; 0 if none."""
    unknown = sorted(set(call.request.args) - {"last_event_id"})
    if unknown:
        raise bad_request(f"unknown query parameter(s): {', '.join(unknown)}")
    raw = call.request.headers.get("Last-Event-ID") or call.request.args.get("last_event_id") or "0"
    if not _EVENT_ID.match(raw.strip()):
        raise bad_request("Last-Event-ID must be the id of an event (a non-negative integer)")
    return int(raw.strip())


def events(call: Call) -> Any:
    """GET /runs/{id}/events."""
    run_id = call.run_id
    after = last_event_id(call)
    run = call.deps.runs.get_run(run_id)
    require_reader(call.deps.settings, call.caller, run)
    if is_terminal(run["status"]):
        body = _finished(call, run_id, after, str(run["status"]), run["progress"])
    else:
        body = stream(call.deps.event_hub, run_id, after)
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return flask.Response(body, status=200, mimetype="text/event-stream", headers=headers)

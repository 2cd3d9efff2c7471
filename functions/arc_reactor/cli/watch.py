"""`arc runs watch`: follow a run's events over SSE until it ends, with a live status line on a terminal.

A reader thread turns the stream into messages on a queue; the main loop prints each status change as a
line and, on a terminal, redraws one status line (status, elapsed time) every second. When the server closes
the stream before the run ends (its stream lifetime), the watch reconnects with Last-Event-ID. Everything is
bounded by --timeout.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, TextIO

import requests

from arc_reactor.cli.client import ApiClient, CliError, SseMessage, iter_sse

TERMINAL = frozenset({"completed", "failed", "cancelled"})
MAX_RECONNECTS = 100
_CLOSED = SseMessage("closed", "")


def _reader(resp: requests.Response, out: queue.SimpleQueue[SseMessage]) -> None:
    try:
        lines = (raw if isinstance(raw, str) else raw.decode("utf-8", "replace") for raw in resp.iter_lines())
        for message in iter_sse(lines):
            out.put(message)
    except requests.RequestException as exc:
        out.put(SseMessage("error", str(exc)))
    finally:
        resp.close()
        out.put(_CLOSED)


def _stamp(value: Any) -> str:
    try:
        return datetime.fromisoformat(str(value)).astimezone().strftime("%H:%M:%S")
    except ValueError:
        return "--:--:--"


def describe(event: dict[str, Any]) -> str | None:
    """One line for an event worth showing (status changes and conflicts), else None."""
    when = _stamp(event.get("created_at"))
    if event.get("kind") == "transition":
        detail = event.get("detail") or {}
        extra = f"  ({detail['reason']})" if isinstance(detail, dict) and detail.get("reason") else ""
        return f"  {when}  {event.get('to_status', ''):<11} by {event.get('source')}{extra}"
    if event.get("kind") == "conflict":
        return f"  {when}  (conflict: {event.get('source')} said {event.get('to_status')})"
    return None


class Watcher:
    """State of one watch: the last event id and status, and where the display goes."""

    def __init__(self, client: ApiClient, run_id: str, out: TextIO, live: bool) -> None:
        self.client, self.run_id, self.out, self.live = client, run_id, out, live
        self.last_id: str | None = None
        self.status = "?"
        self.started = time.monotonic()

    def _line(self, text: str) -> None:
        self.out.write(("\r\x1b[2K" if self.live else "") + text + "\n")
        self.out.flush()

    def _status_line(self) -> None:
        if self.live:
            elapsed = int(time.monotonic() - self.started)
            self.out.write(f"\r\x1b[2K  ● {self.status:<11} {elapsed // 60:02d}:{elapsed % 60:02d}")
            self.out.flush()

    def _handle(self, message: SseMessage) -> str | None:
        """Apply one message; the final status once the stream says the run ended."""
        if message.id:
            self.last_id = message.id
        if message.event == "end":
            return str(json.loads(message.data).get("status"))
        if message.event in ("transition", "conflict", "note"):
            event = json.loads(message.data)
            if event.get("kind") == "transition" and event.get("to_status"):
                self.status = str(event["to_status"])
            line = describe(event)
            if line:
                self._line(line)
        return None

    def _one_stream(self, deadline: float) -> str | None:
        headers = {"Last-Event-ID": self.last_id} if self.last_id else {}
        resp = self.client.stream(f"/runs/{self.run_id}/events", headers)
        messages: queue.SimpleQueue[SseMessage] = queue.SimpleQueue()
        threading.Thread(target=_reader, args=(resp, messages), daemon=True).start()
        while time.monotonic() < deadline:
            try:
                message = messages.get(timeout=1.0)
            except queue.Empty:
                self._status_line()
                continue
            if message is _CLOSED or message.event == "error":
                return None
            final = self._handle(message)
            self._status_line()
            if final is not None:
                return final
        resp.close()
        return None

    def run(self, timeout: float, sleep: Callable[[float], None] = time.sleep) -> str:
        """Watch until the run ends; its final status (or the last one seen when the timeout passes)."""
        deadline = time.monotonic() + timeout
        for _ in range(MAX_RECONNECTS):
            if time.monotonic() >= deadline:
                break
            final = self._one_stream(deadline)
            if final is not None:
                if self.live:
                    self.out.write("\r\x1b[2K")
                return final
            sleep(1.0)  # the server ended the stream (lifetime) or the connection dropped: resume
        if self.status in TERMINAL:
            return self.status
        raise CliError(f"run {self.run_id} is still {self.status} after {timeout:.0f} s")


def watch(client: ApiClient, run_id: str, out: TextIO, timeout: float, live: bool | None = None) -> str:
    """Follow a run until it ends; return its final status."""
    return Watcher(client, run_id, out, out.isatty() if live is None else live).run(timeout)


def watch_to_end(client: ApiClient, run_id: str, out: TextIO, timeout: float) -> int:
    """Follow a run until it ends, then say where its results are (or what went wrong and what to do next);
    the exit code is 0 only when it completed."""
    final = watch(client, run_id, out, timeout)
    out.write(f"run {run_id} ended {final}\n")
    run = client.call("GET", f"/runs/{run_id}")
    if final == "completed":
        out.write(f"  results: {run.get('results_uri')}\n")
        out.write(f"  list or download them: arc runs results {run_id} [--download DIR]\n")
    elif final == "failed":
        task = f" in {run['error_task']}" if run.get("error_task") else ""
        out.write(f"  error{task}: {run.get('error_code')}: {run.get('error_message') or ''}\n")
        out.write(f"  logs: arc runs logs {run_id}; resume it: arc runs recover {run_id}\n")
    return 0 if final == "completed" else 1

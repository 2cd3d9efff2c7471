"""`arc runs watch`: follow a run's events over SSE until it ends, with a live status line on a terminal.

A reader thread turns the stream into messages on a queue; the main loop prints each status change as a
line and, on a terminal, redraws a block under them every second: one progress bar per process or rule
(from the stream's `progress` events) and the status line (status, elapsed time, tasks done). Written to
a file or a pipe, the watch prints the progress as a line instead, when it changed and at most every
PROGRESS_EVERY_S. When the server closes
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
from arc_reactor.core.progress import counts
from arc_reactor.core.progress import describe as describe_progress

TERMINAL = frozenset({"completed", "failed", "cancelled"})
MAX_RECONNECTS = 100
PROGRESS_EVERY_S = 10.0
BAR_WIDTH = 24
MAX_BARS = 12  # more processes than that: the busiest ones, and a line saying how many are left out
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


def bar(record: dict[str, Any], width: int = BAR_WIDTH) -> str:
    """One process's bar: done (█), running or submitted (▒), failed (✗), to do (·); then its counts."""
    c = counts(record)
    total = max(c["total"], 1)
    done = c["done"] * width // total
    failed = min((c["failed"] + c["aborted"]) * width // total, width - done)
    active = min((c["running"] + c["submitted"]) * width // total, width - done - failed)
    cells = "█" * done + "✗" * failed + "▒" * active
    line = f"[{cells.ljust(width, '·')}] {c['done']:>4}/{c['total']:<4}"
    notes = [f"{c[k]} {k}" for k in ("cached", "running", "failed") if c[k]]
    return line + (f"  {', '.join(notes)}" if notes else "")


def _settled(record: dict[str, Any]) -> bool:
    c = counts(record)
    return c["done"] >= c["total"] and not c["failed"]


def bars(progress: dict[str, Any], width: int = BAR_WIDTH) -> list[str]:
    """A bar per process (the unfinished and failing ones first when they do not all fit)."""
    processes = [p for p in progress.get("processes") or [] if isinstance(p, dict) and p.get("name")]
    if len(processes) > MAX_BARS:
        order = sorted(
            processes, key=lambda p: counts(p)["done"] >= counts(p)["total"] and not p.get("failed")
        )
        shown = order[:MAX_BARS]
        processes = [p for p in processes if any(p is q for q in shown)]
    name_width = min(max((len(str(p["name"])) for p in processes), default=0), 40)
    lines = [f"  {str(p['name'])[-name_width:]:<{name_width}} {bar(p, width)}" for p in processes]
    left_out = len(progress.get("processes") or []) - len(processes)
    return lines + ([f"  … and {left_out} more (arc runs tasks)"] if left_out > 0 else [])


class Watcher:
    """State of one watch: the last event id and status, and where the display goes."""

    def __init__(self, client: ApiClient, run_id: str, out: TextIO, live: bool) -> None:
        self.client, self.run_id, self.out, self.live = client, run_id, out, live
        self.last_id: str | None = None
        self.status = "?"
        self.started = time.monotonic()
        self.progress: dict[str, Any] | None = None
        self.drawn = 0  # lines of the live block above its status line
        self.told: tuple[str, float] = ("", 0.0)  # the progress line last printed (not live), and when

    def _clear(self) -> None:
        """Wipe the live block (bars and status line) so lines can be printed where it was."""
        self.out.write("\r" + (f"\x1b[{self.drawn}A" if self.drawn else "") + "\x1b[J")
        self.drawn = 0

    def _line(self, text: str) -> None:
        if self.live:
            self._clear()
        self.out.write(text + "\n")
        self.out.flush()

    def _status_line(self) -> None:
        if self.live:
            self._clear()
            above = bars(self.progress) if self.progress else []
            for line in above:
                self.out.write(line + "\n")
            self.drawn = len(above)
            elapsed = int(time.monotonic() - self.started)
            tasks = f"  {describe_progress(self.progress)}" if self.progress else ""
            self.out.write(f"  ● {self.status:<11} {elapsed // 60:02d}:{elapsed % 60:02d}{tasks}")
            self.out.flush()

    def _on_progress(self, progress: dict[str, Any], final: bool = False) -> None:
        self.progress = progress
        if self.live:
            return
        line, when = describe_progress(progress), time.monotonic()
        if line != self.told[0] and (final or when - self.told[1] >= PROGRESS_EVERY_S):
            self.told = (line, when)
            self._line(f"  {_stamp(progress.get('at'))}  progress    {line}")

    def _handle(self, message: SseMessage) -> str | None:
        """Apply one message; the final status once the stream says the run ended."""
        if message.id:
            self.last_id = message.id
        if message.event == "end":
            if self.progress is not None:
                self._on_progress(self.progress, final=True)
            return str(json.loads(message.data).get("status"))
        if message.event == "progress":
            self._on_progress(json.loads(message.data))
            return None
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
                    self._clear()
                    self.out.write("".join(f"{line}\n" for line in bars(self.progress or {})))
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

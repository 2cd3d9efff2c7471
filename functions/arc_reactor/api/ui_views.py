"""What the dashboard's pages show, computed from the API's own views (pure): durations, money, status
badges, progress bar segments, the status timeline, which actions the caller may take, and the links of
the runs list's filters and pages. The templates (api/ui/templates) only lay these out."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from arc_reactor.core.status import TERMINAL, RunStatus

# The progress bar's segments, in the order drawn; each sums the task counts of its states. What is left
# of `total` (pending, aborted, ignored) is the bar's empty track: still to do, or never to be done.
SEGMENTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("succeeded", ("succeeded",)),
    ("cached", ("cached",)),
    ("running", ("submitted", "running")),
    ("failed", ("failed",)),
)
STATUS_TEXT = {
    "pending": "Pending",
    "submitted": "Submitted",
    "running": "Running",
    "cancelling": "Cancelling",
    "completed": "Completed",
    "failed": "Failed",
    "cancelled": "Cancelled",
}
LIST_FILTERS = ("status", "pipeline", "submitter", "label")
END_COLUMNS = ("completed_at", "failed_at", "cancelled_at")


def duration_text(seconds: float | None) -> str:
    """A duration as a person reads it: "—", "42 s", "3 min 05 s", "2 h 04 min", "3 d 02 h"."""
    if seconds is None:
        return "—"
    total = max(int(seconds), 0)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours:02d} h"
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"


def _when(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return None
    return None


def run_seconds(run: Mapping[str, Any], now: datetime) -> float | None:
    """How long the run has run: from its start (else its submission) to its end, or to now while it
    goes on; None when it never started."""
    start = _when(run.get("started_at")) or _when(run.get("submitted_at"))
    if start is None:
        return None
    ends = [e for e in (_when(run.get(c)) for c in END_COLUMNS) if e is not None]
    if run.get("status") in {s.value for s in TERMINAL}:
        end = max(ends) if ends else _when(run.get("updated_at")) or start
    else:
        end = now
    return max((end - start).total_seconds(), 0.0)


def task_seconds(task: Mapping[str, Any], now: datetime) -> float | None:
    """How long a task attempt ran: to its end, or to now while it runs; None before it started."""
    start = _when(task.get("started_at"))
    if start is None:
        return None
    end = _when(task.get("completed_at")) or (now if task.get("status") == "running" else None)
    return None if end is None else max((end - start).total_seconds(), 0.0)


def money_text(amount: float | None, currency: str = "USD") -> str:
    """An estimate as text: "USD 1.23", "USD 0.0042", "< USD 0.0001"; "—" when there is none."""
    if amount is None:
        return "—"
    if amount == 0:
        return f"{currency} 0.00"
    if amount < 0.0001:
        return f"< {currency} 0.0001"
    return f"{currency} {amount:.2f}" if amount >= 1 else f"{currency} {amount:.4f}"


def cost_text(estimate: Mapping[str, Any] | None) -> str:
    """A run's cost estimate in a cell: its total, marked "so far" while it runs and "+" when some tasks
    could not be priced."""
    if not estimate:
        return "—"
    text = money_text(estimate.get("total"), str(estimate.get("currency") or "USD"))
    if estimate.get("unpriced_tasks"):
        text += " +"
    if estimate.get("running"):
        text += " so far"
    return text


def when_text(value: datetime | str | None) -> str:
    """A timestamp (or its ISO text) as the pages show it, in UTC: "2026-12-07 12:00:00 UTC"; "—" for none."""
    moment = _when(value)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if moment else "—"


def list_row(run: Mapping[str, Any], estimate: Mapping[str, Any] | None, now: datetime) -> dict[str, Any]:
    """One row of the runs list, as text: the list is re-read every few seconds by every open page, so
    only what it shows is computed (not the whole run view)."""
    created = run.get("created_at")
    return {
        "id": run["id"],
        "name": run.get("name"),
        "pipeline": run.get("pipeline"),
        "revision": run.get("revision"),
        "status": run.get("status"),
        "status_text": status_text(run.get("status")),
        "submitter": run.get("submitter") or "—",
        "is_recovery": bool(run.get("is_recovery")),
        "created_iso": created.isoformat() if isinstance(created, datetime) else "",
        "created_text": when_text(created),
        "duration_text": duration_text(run_seconds(run, now)),
        "cost_text": cost_text(estimate),
    }


def task_row(task: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    """One task attempt (api/tasks.task_view) with the text the run page's table shows and sorts by."""
    seconds = task_seconds(task, now)
    exit_code, cost = task.get("exit_code"), task.get("cost")
    return {
        **task,
        "duration_s": seconds,
        "started_text": when_text(task.get("started_at")),
        "duration_text": duration_text(seconds),
        "cost_text": money_text(cost),
        "exit_text": "—" if exit_code is None else str(exit_code),
        "sort_task": f"{task.get('process') or ''} {task.get('tag') or ''}",
        "sort_exit": "" if exit_code is None else str(exit_code),
        "sort_duration": "" if seconds is None else f"{seconds:g}",
        "sort_cost": "" if cost is None else f"{cost:g}",
    }


def status_text(status: str | None) -> str:
    """A status as a label."""
    return STATUS_TEXT.get(str(status), str(status or "unknown").capitalize())


@dataclass(frozen=True)
class Segment:
    """One coloured part of a progress bar: its kind, task count, and where it lies (percent of the bar)."""

    kind: str
    count: int
    x: float
    width: float


def bar(counts: Mapping[str, Any]) -> list[Segment]:
    """The segments of one progress bar (a run's or a process's counts, core/progress.py): succeeded,
    cached, running (submitted included) and failed, each its share of `total`; no segment for a zero."""
    total = int(counts.get("total") or 0)
    segments: list[Segment] = []
    end = 0.0  # where the segments so far end, rounded as drawn: the widths add up to at most 100
    for kind, states in SEGMENTS:
        count = sum(int(counts.get(s) or 0) for s in states)
        if count <= 0 or total <= 0:
            continue
        start = end
        end = min(round(start + 100.0 * count / total, 3), 100.0)
        segments.append(Segment(kind, count, start, round(end - start, 3)))
    return segments


def bar_label(counts: Mapping[str, Any]) -> str:
    """The words a screen reader says for a bar, and that the page shows beside it."""
    total = int(counts.get("total") or 0)
    parts = [f"{int(counts.get('done') or 0)} of {total} done"]
    for kind, states in SEGMENTS[1:]:
        count = sum(int(counts.get(s) or 0) for s in states)
        if count:
            parts.append(f"{count} {kind}")
    return ", ".join(parts)


@dataclass(frozen=True)
class TimelineItem:
    """One run_events row as the run page's timeline shows it."""

    id: int
    at: str
    kind: str
    change: str
    source: str
    note: str


def _detail_note(detail: Mapping[str, Any]) -> str:
    for key in ("message", "reason", "why", "error_message", "error_code", "cause"):
        value = detail.get(key)
        if value:
            return str(value)[:300]
    return ""


def timeline(events: Iterable[Mapping[str, Any]]) -> list[TimelineItem]:
    """The run's events, oldest first: transitions as "from → to", notes and conflicts by their reason."""
    items = []
    for e in sorted(events, key=lambda e: int(e.get("id") or 0)):
        kind = str(e.get("kind") or "")
        if kind == "transition":
            before = e.get("from_status")
            change = (
                f"{status_text(before)} → {status_text(e.get('to_status'))}"
                if before
                else status_text(e.get("to_status"))
            )
        else:
            change = kind.capitalize()
        at = _when(e.get("created_at"))
        items.append(
            TimelineItem(
                id=int(e.get("id") or 0),
                at=at.isoformat(timespec="seconds") if at else "",
                kind=kind,
                change=change,
                source=str(e.get("source") or ""),
                note=_detail_note(e.get("detail") or {}),
            )
        )
    return items


@dataclass(frozen=True)
class Action:
    """A button on the run page: enabled, or disabled with the reason the API would give."""

    name: str
    enabled: bool
    reason: str = ""


def cancel_action(status: str, may_manage: bool, submitter: str | None) -> Action:
    """Whether Cancel is offered: to who may manage the run, while it has not ended or is cancelling."""
    if not may_manage:
        return Action("cancel", False, f"only the run's submitter ({submitter or 'unknown'}) or an admin")
    if status == RunStatus.CANCELLING.value:
        return Action("cancel", False, "the run is being cancelled")
    if status in {s.value for s in TERMINAL}:
        return Action("cancel", False, f"the run has ended ({status})")
    return Action("cancel", True)


def recover_action(may_manage: bool, submitter: str | None, refusal: str | None) -> Action:
    """Whether Recover is offered: to who may manage the run, when core/recovery.py refuses nothing."""
    if not may_manage:
        return Action("recover", False, f"only the run's submitter ({submitter or 'unknown'}) or an admin")
    if refusal:
        return Action("recover", False, refusal)
    return Action("recover", True)


LIST_KEYS = (*LIST_FILTERS, "page_size", "page_token")


def list_url(args: Mapping[str, Sequence[str]], **changes: str | None) -> str:
    """The runs list's URL with the current filters and page size, some changed (None removes one); a
    filter change drops the page token, since a token is only good for the filters it was made for."""
    query: dict[str, list[str]] = {k: [v for v in args.get(k, ()) if v] for k in LIST_KEYS}
    for key, value in changes.items():
        query[key] = [value] if value else []
    if set(changes) & set(LIST_FILTERS) and "page_token" not in changes:
        query["page_token"] = []
    pairs = [(k, v) for k in LIST_KEYS for v in query[k]]
    return "/ui/" + (f"?{urlencode(pairs)}" if pairs else "")


def filters_active(args: Mapping[str, Sequence[str]]) -> bool:
    """True when the list is filtered."""
    return any(v for k in LIST_FILTERS for v in args.get(k, ()))

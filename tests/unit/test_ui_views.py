"""The dashboard's view helpers (api/ui_views.py): what a page shows, computed without a page."""

import itertools
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from arc_reactor.api import ui_views as v

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "—"), (-3, "0 s"), (0.4, "0 s"), (42, "42 s"), (185, "3 min 05 s"), (7440, "2 h 04 min"),
     (3 * 86400 + 7200, "3 d 02 h")],
)  # fmt: skip
def test_duration_text(seconds, text):
    assert v.duration_text(seconds) == text


def test_run_seconds_counts_to_the_end_or_to_now():
    start = NOW - timedelta(minutes=10)
    assert v.run_seconds({"status": "running", "started_at": start}, NOW) == 600
    ended = {"status": "completed", "started_at": start, "completed_at": start + timedelta(seconds=90)}
    assert v.run_seconds(ended, NOW) == 90
    # Submitted but not started: from the submission; an API view's ISO strings read the same.
    assert v.run_seconds({"status": "submitted", "submitted_at": start.isoformat()}, NOW) == 600
    assert v.run_seconds({"status": "pending"}, NOW) is None
    # A terminal run without its end column (an old row): its last update, never "still going".
    assert v.run_seconds({"status": "failed", "started_at": start, "updated_at": start}, NOW) == 0


def test_task_seconds():
    start = NOW - timedelta(seconds=30)
    assert v.task_seconds({"status": "running", "started_at": start.isoformat()}, NOW) == 30
    assert v.task_seconds({"status": "failed", "started_at": start, "completed_at": NOW}, NOW) == 30
    assert v.task_seconds({"status": "pending"}, NOW) is None
    assert v.task_seconds({"status": "aborted", "started_at": start}, NOW) is None


def test_money_and_cost_text():
    assert v.money_text(None) == "—" and v.money_text(0) == "USD 0.00"
    assert v.money_text(0.00003) == "< USD 0.0001" and v.money_text(0.0042) == "USD 0.0042"
    assert v.money_text(12.345, "EUR") == "EUR 12.35"
    assert v.cost_text(None) == "—"
    assert v.cost_text({"total": 1.5, "currency": "USD", "running": True}) == "USD 1.50 so far"
    assert v.cost_text({"total": 1.5, "currency": "USD", "unpriced_tasks": 2}) == "USD 1.50 +"


def test_status_text():
    assert v.status_text("cancelling") == "Cancelling" and v.status_text("weird") == "Weird"
    assert v.status_text(None) == "Unknown"


def test_bar_segments_in_order_and_of_total():
    counts = {
        "total": 10,
        "succeeded": 4,
        "cached": 1,
        "submitted": 1,
        "running": 2,
        "failed": 1,
        "pending": 1,
    }
    segments = v.bar(counts)
    assert [(s.kind, s.count, s.x, s.width) for s in segments] == [
        ("succeeded", 4, 0.0, 40.0), ("cached", 1, 40.0, 10.0), ("running", 3, 50.0, 30.0),
        ("failed", 1, 80.0, 10.0),
    ]  # fmt: skip
    assert v.bar({"total": 0}) == [] and v.bar({"total": 3}) == []
    assert v.bar_label(counts | {"done": 5}) == "5 of 10 done, 1 cached, 3 running, 1 failed"


@given(st.dictionaries(st.sampled_from(["succeeded", "cached", "submitted", "running", "failed", "pending"]),
                       st.integers(0, 10**6)))  # fmt: skip
def test_a_bar_never_overflows(counts):
    counts["total"] = sum(counts.values())
    segments = v.bar(counts)
    assert all(s.width >= 0 for s in segments)  # a sliver rounds to nothing; the label still counts it
    assert sum(s.width for s in segments) <= 100.0 + 1e-6
    assert all(a.x + a.width <= b.x + 1e-6 for a, b in itertools.pairwise(segments))


def test_timeline_oldest_first_with_the_reason():
    events = [
        {"id": 3, "kind": "note", "created_at": NOW, "source": "reconcile", "detail": {"reason": "retry"}},
        {"id": 1, "kind": "transition", "created_at": NOW.isoformat(), "from_status": None,
         "to_status": "pending", "source": "submit", "detail": {"message": "created"}},
        {"id": 2, "kind": "transition", "created_at": NOW, "from_status": "running", "to_status": "failed",
         "source": "hook", "detail": {}},
    ]  # fmt: skip
    items = v.timeline(events)
    assert [(i.id, i.change, i.note) for i in items] == [
        (1, "Pending", "created"), (2, "Running → Failed", ""), (3, "Note", "retry")
    ]  # fmt: skip
    assert items[0].at == "2026-12-07T12:00:00+00:00"


def test_actions():
    assert v.cancel_action("running", True, "a@x.org").enabled
    assert v.cancel_action("submitted", True, "a@x.org").enabled
    assert v.cancel_action("cancelling", True, "a@x.org").reason == "the run is being cancelled"
    assert not v.cancel_action("completed", True, "a@x.org").enabled
    refused = v.cancel_action("running", False, "a@x.org")
    assert not refused.enabled and "a@x.org" in refused.reason
    assert v.recover_action(True, "a@x.org", None).enabled
    assert v.recover_action(True, "a@x.org", "work dir gone").reason == "work dir gone"
    assert not v.recover_action(False, None, None).enabled


def test_list_url_keeps_filters_and_drops_a_stale_token():
    args = {"status": ["failed"], "label": ["a=b"], "page_size": ["10"], "page_token": ["T1"]}
    assert v.list_url({}) == "/ui/"
    following = parse_qs(urlsplit(v.list_url(args, page_token="T2")).query)
    assert following == {"status": ["failed"], "label": ["a=b"], "page_size": ["10"], "page_token": ["T2"]}
    first = parse_qs(urlsplit(v.list_url(args, page_token=None)).query)
    assert "page_token" not in first and first["status"] == ["failed"]
    refiltered = parse_qs(urlsplit(v.list_url(args, status="running")).query)
    assert refiltered["status"] == ["running"] and "page_token" not in refiltered
    assert v.filters_active(args) and not v.filters_active({"page_size": ["5"]})


def test_list_and_task_rows_are_the_text_the_tables_show():
    created = datetime(2026, 12, 7, 11, 0, tzinfo=UTC)
    run = {"id": "r1", "name": None, "pipeline": "p", "revision": "1", "status": "running",
           "submitter": None, "is_recovery": 1, "created_at": created, "started_at": created}  # fmt: skip
    row = v.list_row(run, {"total": 0.5, "currency": "USD", "running": True}, NOW)
    assert (row["status_text"], row["submitter"], row["is_recovery"]) == ("Running", "—", True)
    assert (row["created_text"], row["duration_text"], row["cost_text"]) == (
        "2026-12-07 11:00:00 UTC", "1 h 00 min", "USD 0.5000 so far"
    )  # fmt: skip
    assert v.list_row({"id": "r2", "status": "pending"}, None, NOW)["created_text"] == "—"
    task = {"task_id": "t", "process": "stats", "tag": "sample=s1", "status": "failed", "exit_code": 0,
            "started_at": "2026-12-07T11:59:00+00:00", "completed_at": "2026-12-07T11:59:30+00:00",
            "cost": 0.00012}  # fmt: skip
    trow = v.task_row(task, NOW)
    assert (trow["exit_text"], trow["sort_exit"], trow["duration_text"], trow["sort_duration"]) == (
        "0",
        "0",
        "30 s",
        "30",
    )
    assert (trow["started_text"], trow["cost_text"], trow["sort_task"]) == (
        "2026-12-07 11:59:00 UTC", "USD 0.0001", "stats sample=s1"
    )  # fmt: skip
    assert v.when_text("2026-12-07T13:00:00+01:00") == "2026-12-07 12:00:00 UTC" == v.when_text(NOW)
    assert v.when_text(None) == v.when_text("") == "—"
    bare = v.task_row({"task_id": "u", "status": "pending"}, NOW)
    assert (bare["exit_text"], bare["sort_exit"], bare["duration_text"], bare["sort_cost"]) == (
        "—",
        "",
        "—",
        "",
    )

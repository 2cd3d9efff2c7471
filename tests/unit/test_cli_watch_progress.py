"""`arc runs watch` draws the stream's progress events: a bar per process on a terminal, a line when piped."""

import io
import json

from arc_reactor.cli import watch
from arc_reactor.cli.client import SseMessage


def _progress(at: str, **rules: tuple[int, int, int, int]) -> SseMessage:
    """rules: name -> (succeeded, running, failed, pending)."""
    processes = [
        {"name": name, "succeeded": s, "running": r, "failed": f, "pending": p}
        for name, (s, r, f, p) in rules.items()
    ]
    totals = {k: sum(p[k] for p in processes) for k in ("succeeded", "running", "failed", "pending")}
    return SseMessage("progress", json.dumps({"at": at, **totals, "processes": processes}))


def test_a_bar_shows_done_failed_running_and_to_do_in_proportion():
    assert watch.bar({"succeeded": 2, "cached": 1, "running": 1, "failed": 1, "pending": 1}, width=12) == (
        "[██████✗✗▒▒··]    3/6     1 cached, 1 running, 1 failed"
    )
    assert watch.bar({}, width=4) == "[····]    0/0   "
    many = {"processes": [{"name": f"P{i}", "succeeded": 1, "pending": i % 2} for i in range(20)]}
    lines = watch.bars(many)
    assert len(lines) == watch.MAX_BARS + 1 and lines[-1] == "  … and 8 more (arc runs tasks)"
    assert sum("1/2" in line for line in lines) == 10  # every unfinished one is kept, in their order


def test_piped_output_gets_a_progress_line_when_it_changed_and_not_more_often():
    out = io.StringIO()
    w = watch.Watcher(None, "r1", out, live=False)  # type: ignore[arg-type]
    w._handle(_progress("2026-12-07T10:00:00+00:00", stats=(1, 1, 0, 3)))
    w._handle(_progress("2026-12-07T10:00:01+00:00", stats=(2, 1, 0, 2)))  # within PROGRESS_EVERY_S
    w._handle(SseMessage("end", json.dumps({"status": "completed"})))
    lines = [line.split(None, 2)[1:] for line in out.getvalue().splitlines()]
    assert lines == [
        ["progress", "1 of 5 tasks done, 1 running"],
        ["progress", "2 of 5 tasks done, 1 running"],  # the last counts, told at the end
    ]


def test_a_terminal_gets_bars_redrawn_in_place_under_the_status_changes():
    out = io.StringIO()
    w = watch.Watcher(None, "r1", out, live=True)  # type: ignore[arg-type]
    w._handle(_progress("2026-12-07T10:00:00+00:00", count=(1, 1, 0, 1), stats=(0, 0, 1, 0)))
    w._status_line()
    assert w.drawn == 2 and out.getvalue().count("\n") == 2
    event = {
        "kind": "transition",
        "to_status": "running",
        "source": "hook",
        "created_at": "2026-12-07T10:00:02",
    }
    w._handle(SseMessage("transition", json.dumps(event), "7"))
    text = out.getvalue()
    assert "\x1b[2A\x1b[J" in text  # the block was wiped before the line was printed
    assert text.rstrip().endswith("running     by hook") and w.status == "running"
    w._status_line()
    last = out.getvalue().rsplit("\x1b[J", 1)[1]
    assert "count [" in last and "stats [" in last and "1 of 4 tasks done, 1 running, 1 failed" in last

"""Nextflow's trace.txt as our config has it written (raw numbers, our fields), into ledger updates. The
text stands in for what Nextflow's TraceFileObserver writes with `trace.raw = true` (epoch milliseconds,
milliseconds, bytes; `-` for a value it does not have)."""

from datetime import UTC, datetime

import pytest

from arc_reactor.core.trace_file import TRACE_FIELDS, TraceFileInvalid, parse_trace

ROWS = [
    ["1", "ab/123456", "nf-ab1234-1/0/uid1", "NFCORE:FASTQC", "S1", "NFCORE:FASTQC (S1)", "COMPLETED", "0",
     "1", "1733566532501", "1733566540000", "1733566600000", "60000", "2", "6442450944", "gs://w/ab/123456"],
    ["2", "cd/789012", "-", "NFCORE:STAR", "S1", "NFCORE:STAR (S1)", "FAILED", "137", "1",
     "1733566532501", "1733566541000", "1733566900000", "359000", "12", "38654705664", "gs://w/cd/789012"],
    ["3", "ef/345678", "-", "NFCORE:STAR", "S1", "NFCORE:STAR (S1)", "CACHED", "0", "1",
     "1733480132501", "-", "1733480200000", "-", "12", "38654705664", "gs://w/ef/345678"],
    ["4", "gh/901234", "nf-gh9012-1/0/uid4", "NFCORE:STAR", "S2", "NFCORE:STAR (S2)", "RUNNING", "2147483647",
     "2", "1733566532501", "1733566542000", "-", "-", "12", "-", "gs://w/gh/901234"],
]  # fmt: skip


def trace(rows: list[list[str]]) -> str:
    return "\n".join("\t".join(r) for r in [list(TRACE_FIELDS), *rows]) + "\n"


def test_each_line_becomes_an_attempts_update():
    done, failed, cached, running = parse_trace(trace(ROWS))
    assert (done.task_id, done.status, done.exit_code, done.cpus, done.memory_bytes) == (
        "1",
        "succeeded",
        0,
        2,
        6442450944,
    )
    assert done.completed_at == datetime(2024, 12, 7, 10, 16, 40, tzinfo=UTC)
    assert (done.process, done.tag, done.native_id, done.work_dir) == (
        "NFCORE:FASTQC", "S1", "nf-ab1234-1/0/uid1", "gs://w/ab/123456",
    )  # fmt: skip
    assert (failed.status, failed.exit_code, failed.native_id) == ("failed", 137, None)
    assert (cached.status, cached.started_at) == ("cached", None)
    assert (running.status, running.attempt, running.exit_code, running.memory_bytes) == (
        "running",
        2,
        None,
        None,
    )
    assert done.extra == {"hash": "ab/123456", "realtime": "60000"}


def test_a_trace_not_written_by_our_config_is_refused():
    with pytest.raises(TraceFileInvalid, match="no status, task_id column"):
        parse_trace("-with-trace")
    with pytest.raises(TraceFileInvalid, match="cpus is not a number"):
        parse_trace(trace([[*ROWS[0][:13], "two", *ROWS[0][14:]]]))
    assert parse_trace(trace([])) == []

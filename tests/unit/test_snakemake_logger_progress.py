"""The Snakemake logger plugin's progress: per rule counts from its job events, planned jobs as pending,
retried jobs counted once (with their retries), and a resumed run's skipped jobs as cached."""

import json

from snakemake_logger_plugin_arc import Ledger, _read_counts, _write_counts


def test_jobs_are_counted_per_rule_by_their_latest_attempt():
    ledger = Ledger("r1")
    ledger.plan({"stats": 3, "summary": 1, "total": 4})
    ledger.update(1, "submitted", process="stats")
    ledger.update(1, "running")
    ledger.update(2, "submitted", process="stats")
    ledger.update(2, "failed", process="stats")
    ledger.update(2, "submitted", process="stats")  # retried: a new attempt of the same job
    ledger.update(1, "succeeded")
    got = ledger.progress()
    stats = next(p for p in got["processes"] if p["name"] == "stats")
    assert (stats["succeeded"], stats["submitted"], stats["pending"], stats["failed"], stats["retries"]) == (
        1, 1, 1, 0, 1,
    )  # fmt: skip
    assert (got["total"], got["done"], got["pending"]) == (4, 1, 2)  # summary's one job is still to come
    assert [u.attempt for u in ledger.pending if u.task_id == "2"] == [1, 1, 2]


def test_a_resumed_run_counts_what_it_skips_as_cached(tmp_path):
    counts = tmp_path / "dag.json"
    _write_counts(str(counts), {"stats": 3, "summary": 1, "all": 1, "total": 5})
    assert json.loads(counts.read_text()) == {"stats": 3, "summary": 1, "all": 1}
    ledger = Ledger("r1")
    ledger.whole = _read_counts(str(counts))
    ledger.plan({"stats": 1, "summary": 1, "all": 1, "total": 3})
    got = {p["name"]: (p["cached"], p["pending"], p["total"]) for p in ledger.progress()["processes"]}
    assert got == {"stats": (2, 1, 3), "summary": (0, 1, 1), "all": (0, 1, 1)}
    counts.write_text("not json")
    assert _read_counts(str(counts)) is None  # unreadable: no cached count, never an error
    assert _read_counts(str(tmp_path / "missing.json")) is None


def test_the_first_updates_are_due_at_once_and_a_quiet_spell_does_not_hide_them(monkeypatch):
    """The plan is written as soon as Snakemake reports it, and a flush with nothing to write does not push
    the next write back by FLUSH_S (the flusher thread then writes what a quiet workflow did)."""
    import snakemake_logger_plugin_arc as plugin

    now = [100.0]
    written: list[int] = []
    ledger = Ledger("r1", clock=lambda: now[0])
    assert ledger.due()
    ledger.flush()  # nothing pending: no write, and still due
    assert ledger.due()

    def write(self):  # the database write (covered by the orchestrator's integration tests)
        written.append(len(self.pending))
        self.last_flush, self.pending, self.changed = self.clock(), [], False

    monkeypatch.setattr(plugin.Ledger, "flush", write)
    ledger.plan({"stats": 3, "total": 3})
    ledger.update(1, "submitted", process="stats")
    assert ledger.due()
    ledger.flush()
    ledger.update(1, "running")
    now[0] += plugin.FLUSH_S / 2
    assert not ledger.due()
    now[0] += plugin.FLUSH_S / 2
    assert ledger.due() and written == [1]


def test_the_executors_word_on_a_batch_job_reaches_the_jobs_ledger_row():
    """The executor plugin logs each job's Batch job, and when Batch ran it: the row gets its native id
    (a task on a VM of its own), Spot, and Batch's start; the job's status is not set back by it."""
    import logging
    from datetime import datetime

    from snakemake_logger_plugin_arc import _task_job

    ledger = Ledger("r1")
    ledger.update(4, "submitted", process="stats")
    ledger.update(4, "running", started_at=datetime(2026, 1, 1, 0, 0, 0))  # Snakemake's "Execute 1 jobs"

    def record(**extra):
        rec = logging.LogRecord("snakemake", logging.INFO, __file__, 1, "m", None, None)
        rec.__dict__.update(extra)
        return rec

    _task_job(ledger, record(arc_task_job="projects/p/locations/r/jobs/smk-x", arc_jobid=4, arc_spot=True))
    assert ledger.jobs["4"] == ("stats", "running")  # a note: the status stays
    note = ledger.pending[-1]
    assert (note.status, note.native_id, note.spot) == ("running", "projects/p/locations/r/jobs/smk-x", True)
    _task_job(ledger, record(arc_task_job="j", arc_jobid=4, arc_running="2026-01-01T00:00:05+00:00"))
    ran = ledger.pending[-1]
    assert (ran.status, ran.started_at.isoformat(), ran.attempt) == (
        "running",
        "2026-01-01T00:00:05+00:00",
        1,
    )
    _task_job(ledger, record(arc_task_job="j"))  # no job id: nothing
    assert len(ledger.pending) == 4

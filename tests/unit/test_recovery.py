"""The recovery preconditions (core/recovery.py), pure, with in-memory lookups."""

from datetime import UTC, datetime, timedelta

import pytest

from arc_reactor.core.recovery import WORK_RETENTION_DAYS, refusal
from arc_reactor.core.run_record import RunRecord

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def parent(**kw):
    row = RunRecord(
        id="r1", pipeline="nf-core/scrnaseq", revision="4.0.0", engine="nextflow", lineage_id="r1",
        work_dir="gs://b/work/r1/", cache_dir="gs://b/cache/r1/", inputs_uri="gs://b/runs/r1/inputs/",
        results_uri="gs://b/runs/r1/results/", logs_uri="gs://b/runs/r1/logs/", status="failed",
        batch_job_name="projects/p/locations/r/jobs/arc-r1", created_at=NOW - timedelta(days=1),
    )  # fmt: skip
    return row.with_changes(**kw)


def check(row, active=(), present=("gs://b/work/r1/", "gs://b/cache/r1/")):
    asked: list[str] = []

    def has_objects(uri):
        asked.append(uri)
        return uri in present

    why = refusal(row, active_in_lineage=lambda _: list(active), has_objects=has_objects, now=NOW)
    return (why.code if why else None), asked


@pytest.mark.parametrize(
    ("row", "code"),
    [
        (parent(status="running"), "run_not_finished"),
        (parent(status="completed"), "run_completed"),
        (parent(batch_job_name=None, started_at=None), "run_never_started"),
        (parent(created_at=NOW - timedelta(days=WORK_RETENTION_DAYS + 1)), "recovery_expired"),
    ],
)
def test_what_the_row_alone_refuses_asks_no_lookup(row, code):
    assert check(row) == (code, [])


def test_the_storage_and_lineage_preconditions():
    assert check(parent()) == (None, ["gs://b/work/r1/", "gs://b/cache/r1/"])
    assert check(parent(), active=[{"id": "r2", "status": "running"}])[0] == "recovery_in_progress"
    assert check(parent(), present=())[0] == "work_dir_missing"
    assert check(parent(), present=("gs://b/work/r1/",))[0] == "cache_missing"
    assert check(parent(engine="snakemake"), present=("gs://b/work/r1/",))[0] is None  # no cache needed


def test_a_refusal_with_nothing_left_to_resume_says_what_to_do_instead():
    for row, present in (
        (parent(), ()),
        (parent(), ("gs://b/work/r1/",)),
        (parent(created_at=NOW - timedelta(days=WORK_RETENTION_DAYS + 1)), ()),
    ):
        why = refusal(row, active_in_lineage=lambda _: [], has_objects=lambda u, p=present: u in p, now=NOW)
        assert why is not None and "submit it again as a new run" in why.message, why

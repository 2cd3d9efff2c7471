"""When a run can be recovered (pure): the preconditions of POST /runs/{id}:recover and of an inbox manifest
with `parent_run_id` alike. The two lookups that need I/O (the lineage's runs still going, whether a
bucket prefix holds objects) are passed in by the caller, so both submit and recover use these rules
without importing each other.

- the parent is terminal and not completed, and it got as far as a Batch job or a start (a rejected bundle
  or a job Batch refused has nothing to resume);
- it was created less than WORK_RETENTION_DAYS ago: the bucket's lifecycle rule deletes work/ objects
  30 days after they were written (infra/storage.tf), so an older work dir is at best partly there;
- no other run of its lineage is still going (they would share one work dir);
- its work dir still holds objects; for Nextflow its resume cache (NXF_CLOUDCACHE_PATH) too. Snakemake keeps
  its state (outputs and .snakemake/ metadata) in the work dir alone, so for it an empty cache is normal.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from arc_reactor.core.engines import ENGINES
from arc_reactor.core.run_record import RunRecord
from arc_reactor.core.status import TERMINAL, RunStatus

WORK_RETENTION_DAYS = 30  # the age of the Delete rule on work/ in infra/storage.tf (a unit test checks it)


@dataclass(frozen=True)
class Refusal:
    """Why a run cannot be recovered: a stable code and a message for a person."""

    code: str
    message: str


def refusal(
    parent: RunRecord,
    *,
    active_in_lineage: Callable[[str], Sequence[Mapping[str, Any]]],
    has_objects: Callable[[str], bool],
    now: datetime | None = None,
) -> Refusal | None:
    """Why `parent` cannot be recovered now, or None when it can. The cheap checks come first, so the
    lookups run only for a run that could otherwise be recovered."""
    rid, status = parent.id, RunStatus(parent.status)
    if status not in TERMINAL:
        return Refusal("run_not_finished", f"run {rid} is {status}: wait for it to end, or cancel it first")
    if status == RunStatus.COMPLETED:
        return Refusal("run_completed", f"run {rid} completed: there is nothing to recover")
    if not parent.batch_job_name and not parent.started_at:
        why = parent.error_code or "no Batch job"
        return Refusal("run_never_started", f"run {rid} never ran ({why}): submit a corrected run instead")
    now = now or datetime.now(UTC)
    age = now - (parent.created_at or now)
    if age > timedelta(days=WORK_RETENTION_DAYS):
        return Refusal(
            "recovery_expired",
            f"run {rid} is {age.days} days old: its work dir is deleted after {WORK_RETENTION_DAYS} days, so "
            "nothing is left to resume; submit it again as a new run",
        )
    active = active_in_lineage(parent.lineage_id)
    if active:
        busy = ", ".join(f"{r['id']} ({r['status']})" for r in active)
        return Refusal(
            "recovery_in_progress", f"run {rid} shares its work dir with {busy}: wait for it to end"
        )
    if not has_objects(parent.work_dir):
        return Refusal(
            "work_dir_missing",
            f"the work dir of run {rid} ({parent.work_dir}) is empty or gone, so nothing is left to resume: "
            f"submit it again as a new run (its inputs are kept in {parent.inputs_uri})",
        )
    if _keeps_cache(parent.engine) and not has_objects(parent.cache_dir):
        return Refusal(
            "cache_missing",
            f"the resume cache of run {rid} ({parent.cache_dir}) is empty or gone, so the engine could not "
            "tell what is done: submit it again as a new run",
        )
    return None


def _keeps_cache(engine: str) -> bool:
    known = ENGINES.get(engine)
    return known is not None and known.keeps_resume_cache

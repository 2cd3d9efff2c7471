"""Recover: a new run that resumes a failed or cancelled one (POST /runs/{id}:recover, or an inbox manifest
with `parent_run_id`).

The recovery has the parent's pipeline, revision, samplesheet, params (optionally overridden) and config
(optionally replaced), its lineage (so the same work dir and resume cache), IS_RECOVERY=true and the
parent's session id (`-resume <session>` for Nextflow). Preconditions, checked before anything is written:

- the parent is terminal and not completed, and it got as far as a Batch job or a start (a rejected bundle
  or a job Batch refused has nothing to resume);
- it was created less than WORK_RETENTION_DAYS ago: the bucket's lifecycle rule deletes work/ objects
  30 days after they were written (infra/storage.tf), so an older work dir is at best partly there;
- its work dir still holds objects; for Nextflow its resume cache (NXF_CLOUDCACHE_PATH) too. Snakemake keeps
  its state (outputs and .snakemake/ metadata) in the work dir alone, so for it an empty cache is normal.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import yaml

from arc_reactor.adapters import runs_repo
from arc_reactor.core.layout import split_gs_uri
from arc_reactor.core.status import TERMINAL, RunStatus
from arc_reactor.errors import Conflict
from arc_reactor.services.submit import RunSource, SubmitResult, submit_files
from arc_reactor.wiring import Deps

WORK_RETENTION_DAYS = 30  # the age of the Delete rule on work/ in infra/storage.tf (a unit test checks it)
ENGINES_WITH_CACHE = frozenset({"nextflow"})


@dataclass(frozen=True)
class Refusal:
    """Why a run cannot be recovered: a stable code and a message for a person."""

    code: str
    message: str


class RecoveryRefused(Conflict):
    """The parent run does not meet the preconditions (HTTP 409)."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.message)
        self.code = refusal.code


@dataclass(frozen=True)
class Overrides:
    """What a recovery may change: params merged over the parent's (a None value removes the key), a
    replacement nextflow.config, and a name."""

    params: Mapping[str, Any] | None = None
    config: str | None = None
    name: str | None = None


def _has_objects(deps: Deps, uri: str) -> bool:
    bucket, prefix = split_gs_uri(uri)
    return bool(deps.storage.list_names(bucket, prefix, limit=1))


def refusal(deps: Deps, parent: Mapping[str, Any], now: datetime | None = None) -> Refusal | None:
    """Why `parent` cannot be recovered now, or None when it can."""
    rid, status = parent["id"], RunStatus(parent["status"])
    if status not in TERMINAL:
        return Refusal("run_not_finished", f"run {rid} is {status}: wait for it to end, or cancel it first")
    if status == RunStatus.COMPLETED:
        return Refusal("run_completed", f"run {rid} completed: there is nothing to recover")
    if not parent.get("batch_job_name") and not parent.get("started_at"):
        why = parent.get("error_code") or "no Batch job"
        return Refusal("run_never_started", f"run {rid} never ran ({why}): submit a corrected run instead")
    age = (now or datetime.now(UTC)) - parent["created_at"]
    if age > timedelta(days=WORK_RETENTION_DAYS):
        return Refusal(
            "recovery_expired",
            f"run {rid} is {age.days} days old: its work dir is deleted after {WORK_RETENTION_DAYS} days",
        )
    active = runs_repo.active_in_lineage(deps.engine, parent["lineage_id"])
    if active:
        busy = ", ".join(f"{r['id']} ({r['status']})" for r in active)
        return Refusal(
            "recovery_in_progress", f"run {rid} shares its work dir with {busy}: wait for it to end"
        )
    if not _has_objects(deps, parent["work_dir"]):
        return Refusal(
            "work_dir_missing", f"the work dir of run {rid} ({parent['work_dir']}) is empty or gone"
        )
    if parent["engine"] in ENGINES_WITH_CACHE and not _has_objects(deps, parent["cache_dir"]):
        return Refusal(
            "cache_missing", f"the resume cache of run {rid} ({parent['cache_dir']}) is empty or gone"
        )
    return None


def _read_input(deps: Deps, parent: Mapping[str, Any], name: str) -> bytes | None:
    bucket, prefix = split_gs_uri(str(parent["inputs_uri"]))
    return deps.storage.read_bytes(bucket, prefix + name, max_bytes=deps.settings.max_file_bytes)


def recovery_files(deps: Deps, parent: Mapping[str, Any], overrides: Overrides) -> dict[str, bytes | None]:
    """The bundle of the recovery run: the parent's inputs, with the overrides applied."""
    manifest: dict[str, Any] = {
        "pipeline": parent["pipeline"],
        "revision": parent["revision"],
        "parent_run_id": parent["id"],
        "labels": dict(parent.get("labels") or {}),
    }
    name = overrides.name if overrides.name is not None else parent.get("name")
    for key, value in (("name", name), ("profile", parent.get("profile"))):
        if value is not None:
            manifest[key] = value
    params = dict(parent.get("params") or {})
    for key, value in (overrides.params or {}).items():
        if value is None:
            params.pop(key, None)
        else:
            params[key] = value
    samplesheet = _read_input(deps, parent, "samplesheet.csv")
    if samplesheet is None:
        raise RecoveryRefused(Refusal("inputs_missing", f"the samplesheet of run {parent['id']} is gone"))
    config = overrides.config.encode() if overrides.config is not None else None
    return {
        deps.settings.manifest_name: yaml.safe_dump(manifest, sort_keys=False).encode(),
        "samplesheet.csv": samplesheet,
        "params.yaml": yaml.safe_dump(params, sort_keys=True).encode() if params else None,
        "nextflow.config": config if config is not None else _read_input(deps, parent, "nextflow.config"),
    }


def recover_run(
    deps: Deps, parent_id: str, overrides: Overrides, source: RunSource, now: datetime | None = None
) -> SubmitResult:
    """Create and launch the recovery of `parent_id`. NotFound for an unknown run; RecoveryRefused when a
    precondition fails; a `rejected` result listing every problem when the overrides are invalid."""
    parent = runs_repo.get_run(deps.engine, parent_id)
    if source.idempotency_key:
        earlier = runs_repo.find_by_idempotency_key(deps.engine, source.idempotency_key)
        if earlier is not None:  # a retried request: answer with the recovery it already made
            return SubmitResult("duplicate", run_id=earlier["id"])
    why = refusal(deps, parent, now)
    if why is not None:
        raise RecoveryRefused(why)
    return submit_files(deps, recovery_files(deps, parent, overrides), source)

"""Recover: a new run that resumes a failed or cancelled one (POST /runs/{id}:recover, or an inbox manifest
with `parent_run_id`).

The recovery has the parent's pipeline, revision, samplesheet, params (optionally overridden) and config
(optionally replaced), its lineage (so the same work dir and resume cache), IS_RECOVERY=true and the
parent's session id (`-resume <session>` for Nextflow). The preconditions, checked before anything is
written, are core/recovery.py's (shared with an inbox manifest's `parent_run_id`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import yaml

from arc_reactor.core.layout import split_gs_uri
from arc_reactor.core.recovery import Refusal
from arc_reactor.core.run_record import RunRecord
from arc_reactor.errors import Conflict, Problem
from arc_reactor.services.submit import (
    RunSource,
    SubmitResult,
    answered_before,
    recovery_refusal_for,
    submit_files,
)
from arc_reactor.wiring import Deps


class RecoveryRefused(Conflict):
    """The parent run does not meet the preconditions (HTTP 409)."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.message)
        self.code = refusal.code


@dataclass(frozen=True)
class Overrides:
    """What a recovery or relaunch may change: params merged over the parent's (a None value removes the
    key), a replacement nextflow.config, and a name; a relaunch may also replace the samplesheet."""

    params: Mapping[str, Any] | None = None
    config: str | None = None
    name: str | None = None
    samplesheet: str | None = None


def _read_input(deps: Deps, parent: RunRecord, name: str) -> bytes | None:
    bucket, prefix = split_gs_uri(str(parent.inputs_uri))
    return deps.storage.read_bytes(bucket, prefix + name, max_bytes=deps.settings.max_file_bytes)


def recovery_files(
    deps: Deps, parent: RunRecord, overrides: Overrides, *, resume: bool = True
) -> dict[str, bytes | None]:
    """The bundle of the recovery run (or, with resume=False, of a fresh relaunch): the parent's inputs,
    with the overrides applied."""
    manifest: dict[str, Any] = {
        "pipeline": parent.pipeline,
        "revision": parent.revision,
        "labels": dict(parent.labels or {}),
    }
    if resume:
        manifest["parent_run_id"] = parent.id
    name = overrides.name if overrides.name is not None else parent.name
    for key, value in (("name", name), ("profile", parent.profile)):
        if value is not None:
            manifest[key] = value
    params = dict(parent.params or {})
    for key, value in (overrides.params or {}).items():
        if value is None:
            params.pop(key, None)
        else:
            params[key] = value
    if overrides.samplesheet is not None:
        samplesheet: bytes | None = overrides.samplesheet.encode()
    else:
        samplesheet = _read_input(deps, parent, "samplesheet.csv")
    if samplesheet is None:
        raise RecoveryRefused(Refusal("inputs_missing", f"the samplesheet of run {parent.id} is gone"))
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
    parent = deps.runs.get_run(parent_id)
    if (answered := answered_before(deps, source)) is not None:  # a retried request: the run it made
        return answered
    why = recovery_refusal_for(deps, parent, now)
    if why is not None:
        raise RecoveryRefused(why)
    return _submit_from(deps, parent, overrides, source, resume=True)


def _submit_from(
    deps: Deps, parent: RunRecord, overrides: Overrides, source: RunSource, *, resume: bool
) -> SubmitResult:
    """Submit `parent`'s inputs with the overrides (as its recovery, or as a fresh run); problems and
    warnings about params are named after where the value came from."""
    result = submit_files(deps, recovery_files(deps, parent, overrides, resume=resume), source)
    if result.problems or result.warnings:
        result = replace(
            result,
            problems=[params_source(p, parent, overrides) for p in result.problems],
            warnings=[params_source(p, parent, overrides) for p in result.warnings],
        )
    return result


OVERRIDE_FILE = "params (override)"


def params_source(problem: Problem, parent: RunRecord, overrides: Overrides) -> Problem:
    """A problem of the params.yaml a recovery writes, named after where the value came from: the request's
    overrides (`params (override)`, which `arc runs recover --set` names after its own option) or the
    parent's params. Lines of that generated file would point at nothing the user wrote."""
    if problem.file != "params.yaml":
        return problem
    key = (problem.field or "").split(".")[0]
    where = OVERRIDE_FILE if key in (overrides.params or {}) else f"params.yaml of run {parent.id}"
    return Problem(where, problem.message, field=problem.field)


def relaunch_run(deps: Deps, source_id: str, overrides: Overrides, source: RunSource) -> SubmitResult:
    """A new, independent run of the same pipeline, revision, inputs, params and config as `source_id`
    (any status: nothing is resumed), with the overrides applied: e.g. a corrected samplesheet. NotFound for
    an unknown run; RecoveryRefused (409) when its inputs are gone (a refused bundle never had any); a
    `rejected` result listing every problem when the result is not a valid bundle."""
    parent = deps.runs.get_run(source_id)
    if (answered := answered_before(deps, source)) is not None:
        return answered
    if parent.error_code == "invalid_bundle":
        raise RecoveryRefused(
            Refusal("inputs_missing", f"run {parent.id} was refused at submission: it has no inputs to reuse")
        )
    return _submit_from(deps, parent, overrides, source, resume=False)

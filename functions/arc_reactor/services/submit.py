"""Submit: a bundle becomes a validated run (pending), its inputs are copied to the run's folder, and one
Batch orchestrator job is created (submitted).

Idempotent under at-least-once delivery at every step: the run row is unique on (bucket, manifest name,
generation) or on the API's idempotency key; inputs are rewritten with the same bytes; CreateJob uses a
deterministic job id and ALREADY_EXISTS counts as success; the status change is a conditional UPDATE. A
delivery that crashed half-way is finished by the next delivery of the same event."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

import yaml

from arc_reactor.adapters.storage import ObjectTooLarge
from arc_reactor.adapters.storage_pool import storage_map
from arc_reactor.core.bundle import ValidBundle, check_object_name, manifest_mapping, validate_bundle
from arc_reactor.core.events import StorageObjectEvent, event_age_seconds
from arc_reactor.core.ids import new_run_id
from arc_reactor.core.labels import label_changes, run_labels
from arc_reactor.core.layout import INPUT_FILES, RunLocations, run_locations, split_gs_uri
from arc_reactor.core.recovery import Refusal
from arc_reactor.core.recovery import refusal as recovery_refusal
from arc_reactor.core.registry import HeadJob
from arc_reactor.core.run_record import RunRecord
from arc_reactor.core.status import RunStatus
from arc_reactor.errors import BundleInvalid, NotFound, PermanentError, Problem
from arc_reactor.services.exists import missing_objects
from arc_reactor.services.status_change import change_status
from arc_reactor.wiring import Deps

log = logging.getLogger(__name__)

Outcome = Literal["submitted", "duplicate", "rejected", "failed", "ignored", "key_reused"]


@dataclass(frozen=True)
class RunSource:
    """Where a submission came from: an inbox manifest generation, or an API call."""

    kind: Literal["inbox", "api"]
    bucket: str | None = None
    object: str | None = None
    generation: int | None = None
    idempotency_key: str | None = None
    submitter: str | None = None
    fingerprint: str | None = None  # of the request the idempotency key was sent with


@dataclass(frozen=True)
class SubmitResult:
    """What a submission led to."""

    outcome: Outcome
    run_id: str | None = None
    reason: str = ""
    problems: list[Problem] = field(default_factory=list)
    run: RunRecord | None = None  # the run as this submission left it, when it has it at hand
    warnings: list[Problem] = field(default_factory=list)  # accepted, but probably a mistake


def handle_inbox_object(deps: Deps, ev: StorageObjectEvent, now: datetime | None = None) -> SubmitResult:
    """React to an object finalized in the inbox: submit when it is a bundle's manifest, ignore otherwise."""
    s = deps.settings
    folder, _, base = ev.name.rpartition("/")
    if ev.bucket != s.inbox_bucket or base != s.manifest_name:
        return SubmitResult("ignored", reason="not a manifest in the inbox bucket")
    age = event_age_seconds(ev.time, now)
    if age > s.max_event_age_seconds:
        log.warning(
            "dropping finalize event %s: %.0f s old",
            ev.event_id,
            age,
            extra={"event": "event_dropped_stale", "object": ev.name},
        )
        return SubmitResult("ignored", reason="event too old")
    source = RunSource("inbox", ev.bucket, ev.name, ev.generation)
    files, problems = _read_bundle(deps, ev)
    if files[s.manifest_name] is None and not any(p.file == s.manifest_name for p in problems):
        # Read only at the generation we were told about (ifGenerationMatch): the inbox keeps one
        # generation per name, so an overwritten manifest's new generation has its own event.
        log.info(
            "manifest %s generation %s is gone or superseded",
            ev.name,
            ev.generation,
            extra={"event": "manifest_superseded", "object": ev.name},
        )
        return SubmitResult("ignored", reason="manifest deleted or superseded")
    if not folder:
        problems.append(Problem(s.manifest_name, "the manifest must be inside a submission folder"))
    result = submit_files(deps, files, source, extra_problems=problems)
    _write_feedback(deps, ev.bucket, ev.name, result)
    return result


def _read_bundle(deps: Deps, ev: StorageObjectEvent) -> tuple[dict[str, bytes | None], list[Problem]]:
    """The bundle's files, one GET each (side by side on the shared storage pool): the manifest at the
    event's generation, the others as they are; None for a file that is not there or is too large."""
    manifest = deps.settings.manifest_name
    folder = ev.name.rpartition("/")[0]
    prefix = f"{folder}/" if folder else ""
    problems: list[Problem] = []
    if name_problem := check_object_name(ev.name):
        problems.append(Problem(ev.name, name_problem))
    limit = deps.settings.max_file_bytes

    def read(name: str) -> bytes | Problem | None:
        try:
            if name == manifest:
                return deps.storage.read_bytes(ev.bucket, ev.name, max_bytes=limit, generation=ev.generation)
            return deps.storage.read_bytes(ev.bucket, prefix + name, max_bytes=limit)
        except ObjectTooLarge as exc:
            return Problem(name, f"file is {exc.size} bytes, over the limit of {exc.limit} bytes")

    names = (manifest, *INPUT_FILES)
    files: dict[str, bytes | None] = {}
    for name, got in zip(names, storage_map(read, names), strict=True):
        if isinstance(got, Problem):
            problems.append(got)
        files[name] = None if isinstance(got, Problem) else got
    return files, problems


def submit_files(
    deps: Deps,
    files: Mapping[str, bytes | None],
    source: RunSource,
    extra_problems: list[Problem] | None = None,
) -> SubmitResult:
    """Validate a bundle's files and, when valid, create and launch the run."""
    s = deps.settings
    problems = list(extra_problems or [])
    bundle: ValidBundle | None = None
    try:
        bundle = validate_bundle(
            files,
            deps.registry,
            max_file_bytes=s.max_file_bytes,
            max_rows=s.max_samplesheet_rows,
            schemas=deps.schemas,
            manifest_name=s.manifest_name,
            refused={p.file for p in problems},
        )
    except BundleInvalid as exc:
        problems.extend(exc.problems)
        for file, fault in exc.faults:
            log.error(
                "checking %s raised instead of answering",
                file,
                exc_info=fault,
                extra={
                    "event": "validation_fault",
                    "object": source.object,
                    "error_code": "validation_fault",
                },
            )
    if bundle is not None and not problems:
        problems.extend(missing_objects(deps, bundle))
    if bundle is None or problems:
        return _reject(deps, files, source, problems)
    return create_and_launch(deps, bundle, source)


def _reject(
    deps: Deps, files: Mapping[str, bytes | None], source: RunSource, problems: list[Problem]
) -> SubmitResult:
    """Record an invalid inbox bundle as a failed run (error_code invalid_bundle); API callers get the
    problems in the response instead, so no run is recorded for them."""
    log.warning(
        "bundle rejected: %s",
        "; ".join(map(str, problems)),
        extra={"event": "bundle_rejected", "object": source.object, "error_code": "invalid_bundle"},
    )
    if source.kind != "inbox":
        return SubmitResult("rejected", problems=problems)
    raw = files.get(deps.settings.manifest_name)
    manifest = _loose_manifest(raw)
    run_id = new_run_id()
    locs = run_locations(deps.settings.runs_bucket, run_id)
    values = _run_values(
        run_id,
        lineage_id=run_id,
        source=source,
        pipeline=manifest.get("pipeline"),
        revision=manifest.get("revision"),
        engine="unknown",
        locs=locs,
    )
    # What the user meant, so `arc runs list --status failed --label ...` finds the refused run by it.
    values.update(name=manifest.get("name"), submitter=manifest.get("submitter"), labels=_loose_labels(raw))
    # Recorded like every run (pending, then one status change), so the rejection has its events and log line;
    # a redelivery finds the same row (same manifest generation) and the change is a no-op.
    row, _created = deps.runs.insert_run(values)
    change_status(
        deps.runs,
        row.id,
        RunStatus.FAILED,
        "submit",
        why="invalid bundle",
        fields={
            "error_code": "invalid_bundle",
            "error_message": "; ".join(str(p) for p in problems),
            "metrics": {"problems": [p.as_dict() for p in problems]},
        },
    )
    return SubmitResult("rejected", run_id=row.id, problems=problems)


def _loose_labels(data: bytes | None) -> dict[str, str]:
    """The labels of a rejected manifest, as far as they are a mapping of short strings (else none)."""
    labels = manifest_mapping(data).get("labels")
    if not isinstance(labels, dict):
        return {}
    return {
        str(k)[:63]: str(v)[:63]
        for k, v in list(labels.items())[:64]
        if isinstance(k, str) and isinstance(v, str | int | float | bool)
    }


def _loose_manifest(data: bytes | None) -> dict[str, str]:
    """Best-effort read of a rejected manifest, to label the failed run with what the user meant."""
    doc = manifest_mapping(data)
    return {
        k: str(doc[k])[:200] for k in ("pipeline", "revision", "name", "submitter") if doc.get(k) is not None
    }


def _run_values(
    run_id: str,
    *,
    lineage_id: str,
    source: RunSource,
    pipeline: str | None,
    revision: str | None,
    engine: str,
    locs: RunLocations,
) -> dict[str, Any]:
    return {
        "id": run_id,
        "pipeline": pipeline or "unknown",
        "revision": revision or "unknown",
        "engine": engine,
        "lineage_id": lineage_id,
        "work_dir": locs.work_dir,
        "cache_dir": locs.cache_dir,
        "inputs_uri": locs.inputs,
        "results_uri": locs.results,
        "logs_uri": locs.logs,
        "submitter": source.submitter,
        "source_bucket": source.bucket,
        "source_object": source.object,
        "source_generation": source.generation,
        "idempotency_key": source.idempotency_key,
        "idempotency_fingerprint": source.fingerprint if source.idempotency_key else None,
    }


def create_and_launch(deps: Deps, bundle: ValidBundle, source: RunSource) -> SubmitResult:
    """Record the run (pending), copy its inputs, create its Batch job, mark it submitted."""
    m = bundle.manifest
    parent, refused = _parent_of(deps, bundle)
    if refused:
        problem = Problem(deps.settings.manifest_name, refused, field="parent_run_id")
        return SubmitResult("rejected", problems=[problem])
    run_id = new_run_id()
    lineage = str(parent.lineage_id) if parent is not None else run_id
    locs = run_locations(deps.settings.runs_bucket, run_id, lineage)
    values = _run_values(
        run_id,
        lineage_id=lineage,
        source=source,
        pipeline=m.pipeline,
        revision=m.revision,
        engine=bundle.pipeline.engine,
        locs=locs,
    )
    values.update(
        name=m.name,
        profile=m.profile,
        labels=dict(m.labels),
        batch_labels=run_labels(run_id, m.pipeline, source.submitter or m.submitter, m.labels),
        params=bundle.params,
        submitter=source.submitter or m.submitter,
        parent_run_id=m.parent_run_id,
        is_recovery=1 if parent is not None else 0,
    )
    row, created = deps.runs.insert_run(values)
    if not created and (reused := key_reused(row, source)) is not None:
        return reused
    warnings = list(bundle.warnings)
    if warnings:
        _note_warnings(deps, row.id, warnings)
    if not created and row.status != RunStatus.PENDING:
        return SubmitResult("duplicate", run_id=row.id, reason=f"already {row.status}", warnings=warnings)
    result = _launch(deps, row, bundle, parent_session=parent.session_id if parent is not None else None)
    return replace(result, warnings=warnings)


def _note_warnings(deps: Deps, run_id: str, warnings: list[Problem]) -> None:
    """The submission's warnings as one `note` event of the run (once, whatever the redeliveries), so they
    stay with the run where its history is read (GET /runs/{id}, the dashboard), not only in the answer."""
    detail = {
        "reason": "submission_warnings",
        "message": f"{len(warnings)} warning(s): "
        + "; ".join(f"{w.field or w.file}: {w.message}" for w in warnings),
        "warnings": [w.as_dict() for w in warnings],
    }
    deps.runs.add_note_once(run_id, "submit", "submission_warnings", detail)


def answered_before(deps: Deps, source: RunSource) -> SubmitResult | None:
    """The answer to a request whose Idempotency-Key already made a run (`duplicate` with that run, or
    `key_reused` when the key came with a different request), else None: for requests that read other runs
    before they insert."""
    if not source.idempotency_key:
        return None
    earlier = deps.runs.find_by_idempotency_key(source.idempotency_key)
    if earlier is None:
        return None
    return key_reused(earlier, source) or SubmitResult("duplicate", run_id=earlier.id)


def key_reused(earlier: RunRecord, source: RunSource) -> SubmitResult | None:
    """The refusal of an Idempotency-Key its caller already used for a different request, else None."""
    if source.idempotency_key is None or earlier.idempotency_fingerprint == source.fingerprint:
        return None
    return SubmitResult(
        "key_reused",
        run_id=earlier.id,
        reason=f"this Idempotency-Key already made run {earlier.id} from a different request; "
        "use a new key for a new request",
    )


def _parent_of(deps: Deps, bundle: ValidBundle) -> tuple[RunRecord | None, str]:
    """The run a recovery resumes, or why it cannot be resumed (core/recovery.py's preconditions, so an
    inbox manifest with parent_run_id obeys the same rules as POST /runs/{id}:recover)."""

    m = bundle.manifest
    if not m.parent_run_id:
        return None, ""
    try:
        parent = deps.runs.get_run(m.parent_run_id)
    except NotFound:
        return None, f"parent run {m.parent_run_id} does not exist"
    if (parent.pipeline, parent.revision) != (m.pipeline, m.revision):
        was = f"{parent.pipeline} {parent.revision}"
        return (
            None,
            f"a recovery runs its parent's pipeline and revision ({was}), not {m.pipeline} {m.revision}",
        )
    why = recovery_refusal_for(deps, parent)
    return (None, why.message) if why else (parent, "")


def recovery_refusal_for(deps: Deps, parent: RunRecord, now: datetime | None = None) -> Refusal | None:
    """Why `parent` cannot be recovered now: core/recovery.py's rules with this deployment's lookups (the
    lineage's runs still going, whether its work dir and cache hold objects)."""
    return recovery_refusal(
        parent, active_in_lineage=deps.runs.active_in_lineage, has_objects=deps.storage.has_objects, now=now
    )


def _launch(deps: Deps, run: RunRecord, bundle: ValidBundle, parent_session: str | None) -> SubmitResult:
    params_uri, config_uri = _copy_inputs(deps, run, bundle)
    return submit_job(
        deps, run, head_job=bundle.pipeline.head_job, params_uri=params_uri, config_uri=config_uri,
        parent_session=parent_session, source="submit",
    )  # fmt: skip


def submit_job(
    deps: Deps,
    run: RunRecord,
    *,
    head_job: HeadJob,
    params_uri: str,
    config_uri: str,
    parent_session: str | None,
    source: str,
) -> SubmitResult:
    """Create the run's orchestrator job (its id is the run's: a repeat is ALREADY_EXISTS, success) and mark
    the run submitted; a refusal Batch will not change its mind on fails the run."""
    from arc_reactor.core.job_env import JobEnv
    from arc_reactor.core.jobspec import OrchestratorJob
    from arc_reactor.core.tower import run_token

    run_id = str(run.id)
    env = JobEnv(
        run_id=run_id,
        pipeline=run.pipeline,
        pipeline_version=run.revision,
        engine=run.engine,
        config_uri=config_uri,
        params_uri=params_uri,
        work_dir=run.work_dir,
        is_recovery=bool(run.is_recovery),
        parent_session_id=parent_session or "",
        profile=run.profile or "",
        cache_dir=run.cache_dir,
        logs_dir=run.logs_uri,
        results_dir=run.results_uri,
        tower_token=run_token(deps.tower_key, run_id) if run.engine == "nextflow" else "",
    )
    spec = OrchestratorJob(
        env, submitter_email=run.submitter, head_job=head_job, extra_labels=dict(run.labels or {})
    )
    try:
        job = deps.batch.create_orchestrator_job(spec)
    except PermanentError as exc:
        # Quota, permission and spec refusals are final and were not retried: record them on the run and
        # acknowledge the event. The adapter logged the refusal and cancelled any job a racing create made.
        change_status(
            deps.runs,
            run_id,
            RunStatus.FAILED,
            source,
            why="Batch refused the job",
            fields={"error_code": exc.code, "error_message": str(exc)},
        )
        return SubmitResult("failed", run_id=run_id, reason=str(exc))
    job_name = job.name
    res = change_status(
        deps.runs,
        run_id,
        RunStatus.SUBMITTED,
        source,
        why=f"Batch job {job_name}",
        fields={"batch_job_name": job_name, "batch_job_uid": job.uid},
        detail={"batch_job_name": job_name, "batch_job_uid": job.uid},
    )
    log.info(
        "run %s submitted as %s",
        run_id,
        job_name,
        extra={"run_id": run_id, "job_name": job_name, "pipeline": run.pipeline, "event": "run_submitted"},
    )
    if not res.applied:
        # The job already ran ahead (a hook or Batch marked the run running first): keep its name anyway.
        deps.runs.record_job_name(run_id, job_name, job.uid)
    now = replace(run, status=res.current.value, batch_job_name=job_name, batch_job_uid=job.uid)
    return SubmitResult("submitted", run_id=run_id, run=now)


def relaunch_pending(deps: Deps, run: RunRecord, source: str = "sweeper") -> SubmitResult:
    """Finish the submission of a run left pending (its submit delivery was dropped before the job existed):
    from the inputs it already wrote, create the same job (same id). A run whose inputs were never written,
    or whose pipeline the registry no longer allows, cannot be finished: it fails with a code saying so."""
    bucket, prefix = split_gs_uri(run.inputs_uri)
    spec = deps.registry.get(run.pipeline)
    why = ""
    if spec is None or run.revision not in spec.revisions:
        code, why = (
            "pipeline_not_allowed",
            f"{run.pipeline} {run.revision} is no longer in the pipeline registry",
        )
    elif deps.storage.stat(bucket, prefix + "params.yaml") is None:
        code, why = "submission_incomplete", "the submission stopped before the run's inputs were written"
    if why or spec is None:
        change_status(
            deps.runs, run.id, RunStatus.FAILED, source, why=why,
            fields={"error_code": code, "error_message": f"{why}; submit the bundle again"},
        )  # fmt: skip
        return SubmitResult("failed", run_id=run.id, reason=why)
    has_config = deps.storage.stat(bucket, prefix + "nextflow.config") is not None
    parent_session = deps.runs.get_run(run.parent_run_id).session_id if run.parent_run_id else None
    return submit_job(
        deps, run, head_job=spec.head_job, params_uri=run.inputs_uri + "params.yaml",
        config_uri=run.inputs_uri + "nextflow.config" if has_config else "",
        parent_session=parent_session, source=source,
    )  # fmt: skip


def _copy_inputs(deps: Deps, run: RunRecord, bundle: ValidBundle) -> tuple[str, str]:
    """Write the accepted files to the run's inputs/; params get `input` and `outdir` pointed at the run."""
    inputs = str(run.inputs_uri)
    bucket, prefix = inputs[5:].split("/", 1)
    params = dict(bundle.params)
    params["input"] = inputs + "samplesheet.csv"
    params["outdir"] = str(run.results_uri).rstrip("/")
    writes = [
        ("samplesheet.csv", bundle.samplesheet, "text/csv"),
        ("params.yaml", yaml.safe_dump(params, sort_keys=True).encode(), "application/yaml"),
    ]
    config_uri = ""
    if bundle.nextflow_config is not None:
        writes.append(("nextflow.config", bundle.nextflow_config, "text/plain"))
        config_uri = inputs + "nextflow.config"
    storage_map(lambda w: deps.storage.write_bytes(bucket, prefix + w[0], w[1], w[2]), writes)
    return inputs + "params.yaml", config_uri


ACCEPTED, REJECTED = ".accepted.json", ".rejected.json"


def _write_feedback(deps: Deps, bucket: str, manifest: str, result: SubmitResult) -> None:
    """Tell the user, next to the manifest, what became of the bundle. An accepted bundle's feedback says
    when the folder had already started a run (run.yaml uploaded again starts another) and marks an earlier
    rejected.json of the folder superseded, so the folder never shows a stale refusal beside a run."""
    if result.outcome in ("ignored",):
        return
    accepted = result.outcome in ("submitted", "duplicate")
    body: dict[str, Any] = {"run_id": result.run_id, "outcome": result.outcome}
    if result.run_id:
        run = result.run or deps.runs.get_run(result.run_id)
        body.update(status=run.status, pipeline=run.pipeline, revision=run.revision)
        if accepted:  # a refused bundle's run has no inputs, results or logs: name none
            body.update(inputs=run.inputs_uri, results=run.results_uri, logs=run.logs_uri)
        if changes := label_changes(run.labels):
            body["labels_changed"] = changes
    if result.problems:
        body["problems"] = [p.as_dict() for p in result.problems]
    if result.warnings:
        body["warnings"] = [w.as_dict() for w in result.warnings]
    if result.reason:
        body["reason"] = result.reason
    earlier_accepted, earlier_rejected = None, None
    if result.outcome == "submitted":  # this upload made a new run: what did the folder say before?
        present = set(deps.storage.list_names(bucket, manifest + ".", limit=10))  # usually nothing
        earlier_accepted, earlier_rejected = storage_map(
            lambda suffix: (
                _feedback(deps, bucket, manifest + suffix) if manifest + suffix in present else None
            ),
            (ACCEPTED, REJECTED),
        )
    earlier_run = (earlier_accepted or {}).get("run_id")
    if earlier_run and earlier_run != result.run_id:
        body["previous_run_id"] = earlier_run
        body["note"] = (
            "run.yaml was uploaded again into this folder, and every new upload of a manifest starts a new "
            f"run: this is a second run beside {earlier_run}. To resume a run instead, recover it "
            f"(`arc runs recover {earlier_run}`, or a manifest with parent_run_id)."
        )
    write = deps.storage.write_bytes
    if earlier_rejected is not None and earlier_rejected.get("outcome") != "superseded":
        superseded = {
            "outcome": "superseded",
            "superseded_by_run_id": result.run_id,
            "see": manifest.rpartition("/")[2] + ACCEPTED,
            "rejected": earlier_rejected,
        }
        write(bucket, manifest + REJECTED, json.dumps(superseded, indent=2).encode(), "application/json")
    write(
        bucket,
        manifest + (ACCEPTED if accepted else REJECTED),
        json.dumps(body, indent=2, default=str).encode(),
        "application/json",
    )


def _feedback(deps: Deps, bucket: str, name: str) -> dict[str, Any] | None:
    """A feedback file already in the inbox, or None (absent, unreadable or not ours)."""
    return deps.storage.read_json_object(bucket, name, max_bytes=1 << 20)

"""GA4GH WES 1.1 under /ga4gh/wes/v1: a facade on the same runs, validation, auth and ledger (docs/wes.md).

- `workflow_url` names a registry pipeline (`nf-core/scrnaseq`); `workflow_type` is its engine's TRS code
  (NFL for Nextflow, version DSL2; SMK for Snakemake, version 1.0).
- `workflow_engine_parameters` may carry only `revision` and `profile`.
- `workflow_params` become params.yaml.
- The samplesheet is a `workflow_attachment` part named samplesheet.csv, or a gs:// URL in
  `workflow_params.input`, which is read (up to the bundle file limit) into the bundle.
- `tags` become labels.

The request then goes through the same validation as POST /runs and the inbox (services/submit.py). A
multipart request sends every field as a string; a JSON body with the same fields (objects as objects) is
accepted too, as an extension.

States: pending and submitted are QUEUED, running is RUNNING (PREEMPTED while a preempted head job is being
retried), cancelling CANCELING, completed COMPLETE, failed EXECUTOR_ERROR when the pipeline failed and
SYSTEM_ERROR when the infrastructure did, cancelled CANCELED. Every error is an ErrorResponse
{msg, status_code} (api/app.py formats them for these paths).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import flask
import yaml

from arc_reactor.adapters import runs_repo
from arc_reactor.adapters.storage import ObjectTooLarge
from arc_reactor.adapters.tasks_repo import get_task, list_tasks
from arc_reactor.api.auth import can_read_all, require_manager, require_reader
from arc_reactor.api.http import ApiError, Call, decode_token, encode_token, json_response
from arc_reactor.api.submission import fingerprint, idempotency_key
from arc_reactor.core.layout import split_gs_uri
from arc_reactor.core.run_record import RunRecord
from arc_reactor.errors import Conflict, Problem
from arc_reactor.services.cancel import cancel_run
from arc_reactor.services.reconcile import RETRY_NOTE
from arc_reactor.services.submit import RunSource, submit_files

log = logging.getLogger(__name__)

PREFIX = "/ga4gh/wes/v1"
WES_VERSION = "1.1.0"
TYPES = {"nextflow": ("NFL", ("DSL2",)), "snakemake": ("SMK", ("1.0",))}
# The engines the orchestrator image runs (Dockerfile.orchestrator; test_dockerfile.py holds them equal).
ENGINE_VERSIONS = {"nextflow": "24.04.4", "snakemake": "9.27.1"}
ENGINE_OF = {code: engine for engine, (code, _) in TYPES.items()}
ENGINE_PARAMETERS = ("revision", "profile")
FORM_FIELDS = frozenset(
    {
        "workflow_params", "workflow_type", "workflow_type_version", "tags", "workflow_engine",
        "workflow_engine_version", "workflow_engine_parameters", "workflow_url", "workflow_attachment",
    }
)  # fmt: skip
SAMPLESHEET = "samplesheet.csv"
MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 50
COUNTS_TTL_S = 60.0
STATES = {
    "pending": "QUEUED",
    "submitted": "QUEUED",
    "running": "RUNNING",
    "cancelling": "CANCELING",
    "completed": "COMPLETE",
    "cancelled": "CANCELED",
}
# error codes of a failed run that are the pipeline's own doing (the rest are the system's)
PIPELINE_ERRORS = frozenset({"pipeline_error", "invalid_bundle", "input_missing", "pipeline_not_allowed"})


def state_of(status: str, error_code: str | None = None, preempted: bool = False) -> str:
    """The WES state of a run of `status` (and, failed, `error_code`)."""
    if status == "failed":
        return "EXECUTOR_ERROR" if (error_code or "pipeline_error") in PIPELINE_ERRORS else "SYSTEM_ERROR"
    if status == "running" and preempted:
        return "PREEMPTED"
    return STATES.get(status, "UNKNOWN")


def _preempted(call: Call, run: RunRecord) -> bool:
    """A running run whose head job's last attempt was preempted and is being retried (a retry note newer
    than the run's last update)."""
    if run.status != "running":
        return False
    notes = runs_repo.notes_of(call.deps.engine, run.id, RETRY_NOTE)
    return bool(notes) and notes[-1]["created_at"] >= run.updated_at


def _optional(**values: Any) -> dict[str, Any]:
    """The given fields that have a value (WES 1.1's strings and integers are not nullable)."""
    return {k: v for k, v in values.items() if v is not None}


def _error(status: int, msg: str) -> ApiError:
    return ApiError(status, "wes", msg)


# --- service-info ------------------------------------------------------------------------------------------

_counts: dict[str, Any] = {"at": -COUNTS_TTL_S, "value": {}}
_counts_lock = threading.Lock()


def system_state_counts(call: Call) -> dict[str, int]:
    """Runs per WES state, from the ledger (one GROUP BY on the status index), kept COUNTS_TTL_S."""
    with _counts_lock:
        if time.monotonic() - _counts["at"] < COUNTS_TTL_S:
            return dict(_counts["value"])
    found: dict[str, int] = {}
    for (status, error_code), n in runs_repo.status_counts(call.deps.engine).items():
        state = state_of(status, error_code)
        found[state] = found.get(state, 0) + n
    with _counts_lock:
        _counts.update(at=time.monotonic(), value=found)
    return found


def service_info(call: Call) -> Any:
    """GET /service-info."""
    registry = call.deps.registry
    engines = sorted({spec.engine for spec in registry.pipelines.values()})
    type_versions = {TYPES[e][0]: {"workflow_type_version": list(TYPES[e][1])} for e in engines if e in TYPES}
    revisions = sorted({r for spec in registry.pipelines.values() for r in spec.revisions})
    return json_response(
        {
            "id": "org.arc-reactor.wes",
            "name": "Arc Reactor",
            "type": {"group": "org.ga4gh", "artifact": "wes", "version": WES_VERSION},
            "description": "Nextflow and Snakemake pipelines from a registry, on Google Cloud Batch",
            "organization": {"name": "Arc Reactor", "url": "https://github.com/arc-reactor/arc-reactor"},
            "version": "1.0.0",
            "workflow_type_versions": type_versions,
            "supported_wes_versions": [WES_VERSION],
            "supported_filesystem_protocols": ["gs"],
            "workflow_engine_versions": {
                e: {"workflow_engine_version": [ENGINE_VERSIONS[e]]} for e in engines if e in ENGINE_VERSIONS
            },
            "default_workflow_engine_parameters": [
                {"name": "revision", "type": "string", "default_value": "the pipeline's default_revision"},
                {"name": "profile", "type": "string", "default_value": "the pipeline's default_profile"},
            ],
            "system_state_counts": system_state_counts(call),
            "auth_instructions_url": "https://github.com/arc-reactor/arc-reactor/blob/main/docs/wes.md#auth",
            "tags": {"pipelines": ",".join(sorted(registry.pipelines)), "revisions": ",".join(revisions)},
        }
    )


# --- runs --------------------------------------------------------------------------------------------------


def _page(call: Call) -> tuple[int, tuple[datetime, str] | None]:
    from arc_reactor.api.listing import decode_page_token

    unknown = sorted(set(call.request.args) - {"page_size", "page_token"})
    if unknown:
        raise _error(400, f"unknown query parameter(s): {', '.join(unknown)}")
    raw = call.request.args.get("page_size", str(DEFAULT_PAGE_SIZE))
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE_SIZE:
        raise _error(400, f"page_size must be an integer from 1 to {MAX_PAGE_SIZE}")
    token = call.request.args.get("page_token")
    if not token:
        return int(raw), None
    try:
        created, run_id, _ = decode_page_token(token)
    except ValueError:
        raise _error(400, "page_token is not a page token from this service") from None
    return int(raw), (created, run_id)


def list_runs(call: Call) -> Any:
    """GET /runs: the caller's runs (every run for admins and readers), newest first, a page at a time."""
    from arc_reactor.api.listing import encode_page_token

    size, before = _page(call)
    everyone = can_read_all(call.deps.settings, call.caller)
    where = runs_repo.RunFilter(submitter=None if everyone else call.caller.email or "")
    rows = runs_repo.list_runs(call.deps.engine, limit=size + 1, before=before, where=where)
    runs = [
        {
            "run_id": r.id,
            "state": state_of(r.status, r.error_code),
            **_optional(start_time=_iso(r.started_at), end_time=_iso(r.ended_at)),
            "tags": {str(k): str(v) for k, v in (r.labels or {}).items()},
        }
        for r in rows[:size]
    ]
    body: dict[str, Any] = {"runs": runs}
    if len(rows) > size:
        last = rows[size - 1]
        assert last.created_at is not None  # a stored run always has one
        body["next_page_token"] = encode_page_token(last.created_at, last.id)
    return json_response(body)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _visible(call: Call) -> RunRecord:
    """The run of the path, if the caller may read it (404 otherwise, as for a run that does not exist)."""
    run = call.deps.runs.get_run(call.params["run_id"])
    require_reader(call.deps.settings, call.caller, run)
    return run


def run_status(call: Call) -> Any:
    """GET /runs/{run_id}/status."""
    run = _visible(call)
    return json_response(
        {"run_id": run.id, "state": state_of(run.status, run.error_code, _preempted(call, run))}
    )


def run_log(call: Call) -> Any:
    """GET /runs/{run_id}: the RunLog."""
    run = _visible(call)
    base = call.request.host_url.rstrip("/")
    code, versions = TYPES.get(run.engine, ("", ("",)))
    engine_parameters = {"revision": run.revision, **({"profile": run.profile} if run.profile else {})}
    request = {
        "workflow_url": run.pipeline, "workflow_type": code, "workflow_type_version": versions[0],
        "workflow_params": dict(run.params or {}), "workflow_engine": run.engine,
        "workflow_engine_parameters": engine_parameters,
        "tags": {str(k): str(v) for k, v in (run.labels or {}).items()},
    }  # fmt: skip
    logs = f"{base}/runs/{run.id}/logs"
    log = {
        "name": run.name or run.pipeline,
        "cmd": [run.engine, "run", run.pipeline, "-r", run.revision],
        "stdout": logs,
        "stderr": logs,
        "system_logs": [f"{e}: {run.error_message}" for e in [run.error_code] if e],
        **_optional(start_time=_iso(run.started_at), end_time=_iso(run.ended_at), exit_code=run.exit_code),
    }
    outputs = {
        "results": run.results_uri,
        "logs": run.logs_uri,
        "results_listing": f"{base}/runs/{run.id}/results",
    }
    return json_response(
        {
            "run_id": run.id,
            "request": request,
            "state": state_of(run.status, run.error_code, _preempted(call, run)),
            "run_log": log,
            "task_logs_url": f"{base}{PREFIX}/runs/{run.id}/tasks",
            "task_logs": [],
            "outputs": outputs,
        }
    )


def cancel(call: Call) -> Any:
    """POST /runs/{run_id}/cancel: the run is cancelling (or already cancelled). WES documents no 409: a run
    that already ended is left as it is and answered 200 too (its state says it ended)."""
    run = _visible(call)
    require_manager(call.deps.settings, call.caller, run, "cancel")
    try:
        cancel_run(call.deps, run.id, requested_by=call.caller.email)
    except Conflict:
        log.info("WES cancel of run %s, which already ended: nothing to do", run.id)
    return json_response({"run_id": run.id})


# --- submission --------------------------------------------------------------------------------------------


def _object(value: Any, field: str, problems: list[Problem]) -> dict[str, Any]:
    """A field that is an object: a JSON object, or (multipart) the JSON text of one."""
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except (ValueError, RecursionError):
            problems.append(Problem("request", "must be a JSON object (as a string in a form)", field=field))
            return {}
    if not isinstance(value, dict):
        problems.append(Problem("request", "must be a JSON object", field=field))
        return {}
    return value


def _request_fields(call: Call) -> tuple[dict[str, Any], list[tuple[str, bytes]], list[Problem]]:
    """The run request's fields and its attachments (filename, bytes), from a form or a JSON body."""
    problems: list[Problem] = []
    if call.request.mimetype == "multipart/form-data":
        form = call.request.form
        fields: dict[str, Any] = {k: form[k] for k in form if k != "workflow_attachment"}
        files = [(f.filename or "", f.read()) for f in call.request.files.getlist("workflow_attachment")]
        problems += [
            Problem("request", "unknown part", field=k) for k in call.request.files if k not in FORM_FIELDS
        ]
    elif call.request.mimetype == "application/json":
        try:
            body = call.request.get_json(silent=True)
        except RecursionError:
            body = None
        if not isinstance(body, dict):
            raise _error(400, "the request body must be a JSON object (or a multipart form)")
        fields, files = dict(body), []
        if "workflow_attachment" in fields:
            problems.append(
                Problem("request", "attachments need a multipart form", field="workflow_attachment")
            )
    else:
        raise _error(400, "send the run request as multipart/form-data (or JSON)")  # WES has no 415
    problems += [Problem("request", "unknown field", field=k) for k in fields if k not in FORM_FIELDS]
    return fields, files, problems


def _attachment(files: list[tuple[str, bytes]], problems: list[Problem]) -> bytes | None:
    """The samplesheet among the attachments: only a plain samplesheet.csv is taken (no path, no `..`)."""
    found = None
    for name, data in files:
        if "/" in name or "\\" in name or ".." in name or name.startswith("."):
            problems.append(Problem(name[:120], "an attachment's filename must be a plain name, no path",
                                    field="workflow_attachment"))  # fmt: skip
        elif name != SAMPLESHEET:
            problems.append(Problem(name[:120], f"the only attachment taken is {SAMPLESHEET}",
                                    field="workflow_attachment"))  # fmt: skip
        elif found is not None:
            problems.append(Problem(name, "was attached twice", field="workflow_attachment"))
        else:
            found = data
    return found


def _samplesheet_from_url(call: Call, params: dict[str, Any], problems: list[Problem]) -> bytes | None:
    """workflow_params.input as a gs:// URL: that object, read up to the bundle file limit (and `input`
    left to the service, which sets it to the run's copy)."""
    url = params.pop("input", None)
    if url is None:
        return None
    if not isinstance(url, str) or not url.startswith("gs://"):
        problems.append(
            Problem("workflow_params", "input must be a gs:// URL of the samplesheet", field="input")
        )
        return None
    limit = call.deps.settings.max_file_bytes
    try:
        bucket, name = split_gs_uri(url)
        data = call.deps.storage.read_bytes(bucket, name, max_bytes=limit)
    except ValueError as exc:
        problems.append(Problem("workflow_params", str(exc), field="input"))
        return None
    except ObjectTooLarge:
        problems.append(Problem("workflow_params", f"{url} is larger than {limit} bytes", field="input"))
        return None
    if data is None:
        problems.append(Problem("workflow_params", f"input: {url} does not exist", field="input"))
    return data


def _manifest(fields: Mapping[str, Any], problems: list[Problem]) -> dict[str, Any]:
    """run.yaml from the request: the pipeline, its engine checked against workflow_type, revision and profile
    from workflow_engine_parameters, labels from tags."""
    for key in ("workflow_url", "workflow_type", "workflow_type_version"):
        if not isinstance(fields.get(key), str) or not fields[key]:
            problems.append(Problem("request", "is required (a string)", field=key))
    manifest: dict[str, Any] = {}
    url = fields.get("workflow_url")
    if isinstance(url, str) and url:
        manifest["pipeline"] = url
    engine = ENGINE_OF.get(str(fields.get("workflow_type") or ""))
    if fields.get("workflow_type") and engine is None:
        problems.append(
            Problem("request", f"must be one of {', '.join(sorted(ENGINE_OF))}", field="workflow_type")
        )
    elif engine is not None:
        manifest["engine"] = engine
        if fields.get("workflow_type_version") not in TYPES[engine][1]:
            allowed = ", ".join(TYPES[engine][1])
            problems.append(Problem("request", f"must be {allowed} for {fields.get('workflow_type')}",
                                    field="workflow_type_version"))  # fmt: skip
    named = fields.get("workflow_engine")
    if named and engine is not None and str(named).lower() != engine:
        problems.append(
            Problem("request", f"must be {engine} for {fields.get('workflow_type')}", field="workflow_engine")
        )
    engine_parameters = _object(
        fields.get("workflow_engine_parameters"), "workflow_engine_parameters", problems
    )
    for key, value in engine_parameters.items():
        if key not in ENGINE_PARAMETERS:
            problems.append(Problem("request", f"only {', '.join(ENGINE_PARAMETERS)} may be set",
                                    field=f"workflow_engine_parameters.{key}"))  # fmt: skip
        elif not isinstance(value, str):
            problems.append(Problem("request", "must be a string", field=f"workflow_engine_parameters.{key}"))
        else:
            manifest[key] = value
    tags = _object(fields.get("tags"), "tags", problems)
    if tags:
        manifest["labels"] = tags
    return manifest


def create_run(call: Call) -> Any:
    """POST /runs (RunWorkflow): {run_id} once the run is accepted, through the same validation as POST /runs
    and the inbox; 400 with every problem otherwise."""
    from arc_reactor.api.submission import FORM_SLACK_BYTES

    limit = 4 * call.deps.settings.max_file_bytes + FORM_SLACK_BYTES
    if (call.request.content_length or 0) > limit:
        raise _error(413, f"the request is over {limit} bytes")
    fields, files, problems = _request_fields(call)
    manifest = _manifest(fields, problems)
    params = _object(fields.get("workflow_params"), "workflow_params", problems)
    samplesheet = _attachment(files, problems)
    from_url = _samplesheet_from_url(call, params, problems)
    if samplesheet is not None and from_url is not None:
        problems.append(
            Problem("request", "give the samplesheet as an attachment or as workflow_params.input, not both")
        )
    if problems:
        raise _invalid(problems)
    bundle: dict[str, bytes | None] = {
        "run.yaml": yaml.safe_dump(manifest, sort_keys=False).encode(),
        "samplesheet.csv": samplesheet if samplesheet is not None else from_url,
        "params.yaml": yaml.safe_dump(params, sort_keys=True).encode() if params else None,
        "nextflow.config": None,
    }
    source = RunSource(
        "api", idempotency_key=idempotency_key(call, "wes:"), submitter=call.caller.email,
        fingerprint=fingerprint(bundle),
    )  # fmt: skip
    result = submit_files(call.deps, bundle, source)
    if result.outcome == "rejected":
        raise _invalid(list(result.problems))
    if result.outcome == "key_reused" or result.run_id is None:
        raise _error(400 if result.outcome == "key_reused" else 500, result.reason or "the submission failed")
    return json_response({"run_id": result.run_id})


def _where(p: Problem) -> str:
    """Where a problem is: the request's field, workflow_params.<key>, or a bundle file [field] line N."""
    if p.file == "request" and p.field:
        return p.field
    if p.file == "workflow_params" and p.field:
        return f"workflow_params.{p.field}"
    return f"{p.file}{f' [{p.field}]' if p.field else ''}{f' line {p.line}' if p.line else ''}"


def _invalid(problems: list[Problem]) -> ApiError:
    said = "; ".join(f"{_where(p)}: {p.message}" for p in problems)
    return ApiError(400, "invalid_request", f"the run request is invalid: {said}", problems)


# --- tasks -------------------------------------------------------------------------------------------------


def _task_log(row: Mapping[str, Any]) -> dict[str, Any]:
    """One ledger row (a task attempt) as a TaskLog; its id is `<task id>.<attempt>`."""
    name = row.get("name") or row.get("process") or str(row["task_id"])
    return {
        "id": f"{row['task_id']}.{row['attempt']}",
        "name": str(name),
        "system_logs": [f"status: {row['status']}", *([row["error_tail"]] if row.get("error_tail") else [])],
        **_optional(
            start_time=_iso(row.get("started_at")), end_time=_iso(row.get("completed_at")),
            exit_code=row.get("exit_code"), tes_uri=row.get("native_id"),
        ),
    }  # fmt: skip


def tasks(call: Call) -> Any:
    """GET /runs/{run_id}/tasks: the run's task attempts from its ledger, a page at a time. WES documents no
    400 here: a page_size out of range is brought into it, and a page_token that is not one of this run's
    pages is a 404 (no such page)."""
    run = _visible(call)
    raw = call.request.args.get("page_size", "")
    size = min(max(int(raw), 1), MAX_PAGE_SIZE) if raw.lstrip("-").isdigit() else DEFAULT_PAGE_SIZE
    after = _task_token(call.request.args.get("page_token"))
    rows = list_tasks(call.deps.engine, run.id, limit=size + 1, after_id=after)
    body: dict[str, Any] = {"task_logs": [_task_log(r) for r in rows[:size]]}
    if len(rows) > size:
        body["next_page_token"] = encode_token({"after": rows[size - 1]["id"]})
    return json_response(body)


def _task_token(token: str | None) -> int | None:
    if not token:
        return None
    try:
        after = decode_token(token).get("after")
    except ValueError:
        after = None
    if not isinstance(after, int) or isinstance(after, bool):
        raise _error(404, "no such page: page_token is not a page token of this run's tasks")
    return after


def task(call: Call) -> Any:
    """GET /runs/{run_id}/tasks/{task_id}: one task attempt (`<task id>.<attempt>`)."""
    run = _visible(call)
    task_id, sep, attempt = call.params["task_id"].rpartition(".")
    if not sep or not attempt.isdigit():
        raise _error(404, f"task {call.params['task_id']} does not exist (task ids are <task>.<attempt>)")
    found = get_task(call.deps.engine, run.id, task_id, int(attempt))
    if found is None:
        raise _error(404, f"task {call.params['task_id']} does not exist in run {run.id}")
    return json_response(_task_log(found))


def as_wes_error(response: Any) -> Any:
    """An error answer of runs_api as a WES ErrorResponse {msg, status_code} (with every problem in msg);
    any other answer as it is."""
    if not isinstance(response, flask.Response) or response.status_code < 400 or not response.is_json:
        return response
    error = (response.get_json(silent=True) or {}).get("error") or {}
    msg = str(error.get("message") or response.status)
    problems = error.get("problems") or []
    if problems and "run request is invalid" not in msg:
        msg += ": " + "; ".join(f"{p.get('field') or p.get('file')}: {p.get('message')}" for p in problems)
    body = {"msg": msg, "status_code": response.status_code}
    headers = {k: v for k, v in response.headers.items() if k in ("Allow", "Retry-After")}
    return json_response(body, response.status_code, headers)

"""The OpenAPI 3.1 document of runs_api (GET /openapi.json). Tests validate real responses against it and
fuzz the API from it (schemathesis), so it stays true."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from arc_reactor.adapters.tasks_repo import TASK_STATUSES
from arc_reactor.api import listing, results, run_logs, tasks
from arc_reactor.api.views import DERIVED_FIELDS, EVENT_FIELDS, RUN_FIELDS, SUMMARY_FIELDS
from arc_reactor.core.engines import ENGINE_NAMES
from arc_reactor.core.ids import RUN_ID_RE
from arc_reactor.core.progress import COUNTS
from arc_reactor.core.status import RunStatus

STR: dict[str, Any] = {"type": "string"}
WARNINGS = (
    "accepted, but probably mistakes: e.g. a parameter the pipeline does not know (it would be ignored)"
)
OPT_STR: dict[str, Any] = {"type": ["string", "null"]}
OPT_TIME: dict[str, Any] = {"type": ["string", "null"], "format": "date-time"}
STATUS: dict[str, Any] = {"type": "string", "enum": [s.value for s in RunStatus]}
OPT_STATUS: dict[str, Any] = {"type": ["string", "null"], "enum": [*(s.value for s in RunStatus), None]}
OBJECT: dict[str, Any] = {"type": "object"}
LABELS: dict[str, Any] = {"type": "object", "additionalProperties": {"type": "string"}}
B64: dict[str, Any] = {
    "type": "object",
    "properties": {"base64": STR},
    "required": ["base64"],
    "additionalProperties": False,
}


# One message of the stream (as OpenAPI 3.2's itemSchema reads it): `data` is an Event as JSON, or for the
# final `end` message {"run_id", "status"}; heartbeats are comment lines.
SSE_EVENT: dict[str, Any] = {
    "type": "object",
    "properties": {
        "event": {"enum": ["transition", "conflict", "note", "progress", "end"]},
        "id": {"type": "string", "pattern": "^[0-9]+$"},
        "data": {"type": "string", "contentMediaType": "application/json"},
        "retry": {"type": "integer"},
    },
}


def ref(name: str) -> dict[str, Any]:
    """A $ref to a component schema."""
    return {"$ref": f"#/components/schemas/{name}"}


_RUN_TYPES: dict[str, dict[str, Any]] = {
    "id": STR,
    "pipeline": STR,
    "revision": STR,
    "engine": STR,
    "status": STATUS,
    "work_dir": STR,
    "inputs_uri": STR,
    "results_uri": STR,
    "logs_uri": STR,
    "labels": LABELS,
    "batch_labels": LABELS,
    "labels_changed": {
        "type": "array",
        "description": "What sanitizing did to each label that Batch sees differently or not at all",
        "items": {
            "type": "object",
            "properties": {"key": STR, "value": STR, "became": STR, "dropped": STR},
            "required": ["key", "value"],
        },
    },
    "params": OBJECT,
    "created_at": {"type": "string", "format": "date-time"},
    "updated_at": {"type": "string", "format": "date-time"},
    "exit_code": {"type": ["integer", "null"]},
    "upload_failures": {
        "type": ["integer", "null"],
        "description": "Log or result files the orchestrator could not upload (a note event names them)",
    },
    "metrics": {"type": ["object", "null"]},
    "progress": {
        "type": ["object", "null"],
        "description": "the engine's latest task counts, for the run and per process (Nextflow) or rule "
        "(Snakemake): total, done (succeeded + cached) and one count per task status; the task ledger is "
        "GET /runs/{id}/tasks, and the SSE stream sends each new one as a `progress` event",
        "properties": {
            "source": {"type": "string"},
            "at": OPT_TIME,
            **{k: {"type": "integer", "minimum": 0} for k in (*COUNTS, "total", "done")},
            "processes": {"type": "array", "items": {"type": "object", "required": ["name", "total"]}},
        },
        "required": ["total", "done", "processes"],
    },
    "is_recovery": {"type": "boolean"},
}


def _field_type(name: str) -> dict[str, Any]:
    if name in _RUN_TYPES:
        return _RUN_TYPES[name]
    return OPT_TIME if name.endswith("_at") else OPT_STR


def _object(props: dict[str, Any], required: list[str] | None = None, closed: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "properties": props, "required": required or list(props)}
    if closed:
        out["additionalProperties"] = False
    return out


def _cost_schema() -> dict[str, Any]:
    money = {"type": "number", "minimum": 0}
    estimate = _object(
        {
            "currency": STR, "total": money, "head": {"type": ["number", "null"], "minimum": 0},
            "tasks": money, "wasted": money, "preemptions": {"type": "integer", "minimum": 0},
            "unpriced_tasks": {"type": "integer", "minimum": 0},
            "not_priced": {"type": "array", "items": STR},
            "running": {"type": "boolean"}, "prices": STR, "excludes": STR,
        }
    )  # fmt: skip
    charged = {"total": {"type": ["number", "null"]}, "currency": OPT_STR, "as_of": OPT_STR, "error": OPT_STR}
    billed = {"oneOf": [_object(charged), {"type": "null"}]}
    described = "live estimate (durations x registry/prices.yaml, docs/cost.md) and billed cost, when known"
    return {**_object({"estimate": estimate, "billed": billed}), "description": described}


def _run_schemas() -> dict[str, Any]:
    """Runs, events, and the bodies built of them."""
    event = {f: _field_type(f) for f in EVENT_FIELDS}
    event.update(id={"type": "integer"}, kind={"enum": ["transition", "conflict", "note"]}, detail=OBJECT)
    event.update(from_status=OPT_STATUS, to_status=OPT_STATUS, created_at=_RUN_TYPES["created_at"])
    locations = _object(dict.fromkeys(("inputs", "results", "logs", "work_dir", "cache_dir"), OPT_STR))
    relatives = {
        "parent": {"oneOf": [ref("RunSummary"), {"type": "null"}]},
        "children": {"type": "array", "items": ref("RunSummary")},
        "locations": locations,
        "events": {"type": "array", "items": ref("Event")},
        "cost": _cost_schema(),
    }
    cancellation = _object(
        {
            "orchestrator_cancelled": {"type": "boolean"},
            "task_jobs_cancelled": {"type": "array", "items": STR},
            "failures": {"type": "array", "items": STR},
        }
    )
    line = _object({"timestamp": OPT_STR, "severity": STR, "message": STR})
    opt_int, opt_bool = {"type": ["integer", "null"]}, {"type": ["boolean", "null"]}
    task = _object(
        {
            **dict.fromkeys(tasks.TASK_FIELDS, OPT_STR),
            "task_id": STR,
            "attempt": {"type": "integer", "minimum": 1},
            "status": {"enum": list(TASK_STATUSES)},
            **dict.fromkeys(("exit_code", "cpus", "memory_bytes"), opt_int),
            **dict.fromkeys(("spot", "preempted"), opt_bool),
            "cost": {
                "type": ["number", "null"],
                "minimum": 0,
                "description": "estimated cost so far (docs/cost.md): 0 for a cached task or one run "
                "inside the head job, null when its machine is not in the price table",
            },
        }
    )
    pipeline = _object(
        {
            "name": STR,
            "description": STR,
            "engine": {"enum": list(ENGINE_NAMES)},
            "revisions": {"type": "array", "items": STR},
            "default_revision": STR,
            "default_profile": OPT_STR,
            "input_url_schemes": {"type": "array", "items": STR},
        }
    )
    result_file = _object(
        {
            "path": {"type": "string", "description": "relative to results_uri"},
            "uri": STR,
            "size": {"type": "integer", "minimum": 0},
            "updated": OPT_STR,
            "content_type": OPT_STR,
            "url": {
                "type": "string",
                "description": "downloads the file without credentials until urls_expire_at",
            },
        }
    )
    logs = {
        "run_id": STR,
        "source": {"enum": ["local", "cloud_logging"]},
        "lines": {"type": "array", "items": line},
    }
    return {
        "Run": _object({f: _field_type(f) for f in (*RUN_FIELDS, *DERIVED_FIELDS)}),
        "RunSummary": _object({f: _field_type(f) for f in SUMMARY_FIELDS}),
        "Event": _object(event),
        "RunDetail": {"allOf": [ref("Run"), _object(relatives)]},
        "CancelledRun": {
            "allOf": [ref("Run"), _object({"cancellation": {"oneOf": [cancellation, {"type": "null"}]}})]
        },
        "RunList": _object({"runs": {"type": "array", "items": ref("Run")}, "next_page_token": OPT_STR}),
        "LogPage": _object({**logs, "next_page_token": OPT_STR}),
        "CreatedRun": {
            "allOf": [
                ref("Run"),
                _object({"warnings": {"type": "array", "items": ref("Problem"), "description": WARNINGS}}),
            ]
        },
        "Diagnosis": _object(
            {
                "run_id": STR,
                "status": STATUS,
                "error_code": OPT_STR,
                "error_message": OPT_STR,
                "error_task": OPT_STR,
                "failed_tasks": {"type": "integer", "minimum": 0},
                "first_failed_task": {"type": ["object", "null"]},
            }
        ),
        "TaskPage": _object(
            {"run_id": STR, "tasks": {"type": "array", "items": task}, "next_page_token": OPT_STR}
        ),
        "PipelineList": _object({"pipelines": {"type": "array", "items": pipeline}}),
        "ResultsPage": _object(
            {
                "run_id": STR,
                "status": STATUS,
                "complete": {
                    "type": "boolean",
                    "description": "the run completed: no more results will come",
                },
                "results_uri": STR,
                "urls_expire_at": {"type": "string", "format": "date-time"},
                "files": {"type": "array", "items": result_file},
                "next_page_token": OPT_STR,
            }
        ),
    }


def _request_schemas() -> dict[str, Any]:
    """Request bodies: a submission (JSON or multipart) and a recovery's overrides."""
    submission = {
        "pipeline": {**STR, "description": "a pipeline of the registry, e.g. nf-core/scrnaseq"},
        "revision": {**STR, "description": "an allowed revision (default: the registry's default)"},
        "engine": STR,
        "profile": STR,
        "name": STR,
        "labels": LABELS,
        "samplesheet": {"oneOf": [STR, B64], "description": "samplesheet.csv text"},
        "params": {"oneOf": [OBJECT, STR], "description": "params (an object, or params.yaml text)"},
        "config": {"oneOf": [STR, B64], "description": "nextflow.config (allowlisted settings only)"},
    }
    form = {
        **dict.fromkeys(("pipeline", "revision", "engine", "profile", "name"), STR),
        "label": {"type": "array", "items": STR, "description": "key=value, one per label"},
        **{k: {"type": "string", "contentMediaType": "application/octet-stream"} for k in _FILES},
    }
    recover = {
        "params": {**OBJECT, "description": "merged over the parent's; null removes one"},
        "config": STR,
        "name": STR,
    }
    return {
        "RunRequest": _object(submission, ["pipeline", "samplesheet"], closed=True),
        "RunForm": _object(form, ["samplesheet"]),
        "RecoverRequest": _object(recover, [], closed=True),
        "RelaunchRequest": _object(
            {
                **recover,
                "params": {**OBJECT, "description": "merged over the source run's; null removes one"},
                "samplesheet": {**STR, "description": "samplesheet.csv text replacing the source run's"},
            },
            [],
            closed=True,
        ),
    }


def _schemas() -> dict[str, Any]:
    problem = {"file": STR, "message": STR, "line": {"type": "integer"}, "field": STR}
    error = _object({"code": STR, "message": STR, "problems": {"type": "array", "items": ref("Problem")}})
    error["required"] = ["code", "message"]
    return {
        "Problem": _object(problem, ["file", "message"]),
        "Error": _object({"error": error}),
        **_run_schemas(),
        **_request_schemas(),
    }


_FILES = ("samplesheet", "params", "config", "manifest")
_ERRORS = {
    "400": "Malformed request (every problem listed)",
    "401": "No valid Google ID token",
    "403": "Not allowed: not the run's submitter nor an admin, or a location the API may not read",
    "404": "No such run or route",
    "409": "The run's state does not allow it",
    "413": "Request body too large",
    "415": "Unsupported content type",
    "422": "Invalid bundle (every problem listed, with file, line and field)",
    "503": "A dependency is unavailable; retry (Retry-After)",
}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


def _responses(ok: dict[str, tuple[str, dict[str, Any]]], errors: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {
        code: {"description": text, **_json(schema)} for code, (text, schema) in ok.items()
    }
    for code in errors:
        out[code] = {"description": _ERRORS[code], **_json(ref("Error"))}
    out["default"] = {"description": "Error", **_json(ref("Error"))}
    return out


def _query(name: str, schema: dict[str, Any], description: str, many: bool = False) -> dict[str, Any]:
    if many:
        schema = {"type": "array", "items": schema}
    param = {"name": name, "in": "query", "required": False, "schema": schema, "description": description}
    return {**param, "style": "form", "explode": True} if many else param


RUN_ID = {
    "name": "run_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": RUN_ID_RE.pattern},
}
IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "schema": {"type": "string", "pattern": "^[\\x21-\\x7e]{1,200}$"},
}
LAST_EVENT_ID = {
    "name": "Last-Event-ID",
    "in": "header",
    "required": False,
    "schema": {"type": "string", "pattern": "^[0-9]{1,18}$"},
}
_AUTHED = ("400", "401", "404", "503")


def _op(op_id: str, summary: str, params: list[dict[str, Any]], responses: dict[str, Any]) -> dict[str, Any]:
    return {"operationId": op_id, "summary": summary, "parameters": params, "responses": responses}


def _list_runs() -> dict[str, Any]:
    page = {"type": "integer", "minimum": 1, "maximum": listing.MAX_PAGE_SIZE}
    params = [
        _query("status", STATUS, "runs in any of these statuses", many=True),
        _query("pipeline", STR, "runs of this pipeline"),
        _query("submitter", STR, "runs submitted by this email"),
        _query(
            "label", {"type": "string", "pattern": "^[^=]+=.*$"}, "key=value; every one must match", many=True
        ),
        _query("created_after", {"type": "string", "format": "date-time"}, "created strictly after"),
        _query("created_before", {"type": "string", "format": "date-time"}, "created strictly before"),
        _query("id_prefix", {"type": "string", "pattern": "^r[0-9a-z]{2,18}$"}, "runs whose id starts so"),
        _query("name", STR, "runs of this name"),
        _query("page_size", page, f"runs per page (default {listing.DEFAULT_PAGE_SIZE})"),
        _query("page_token", STR, "next_page_token of the previous page"),
    ]
    ok = {"200": ("A page of runs", ref("RunList"))}
    return _op("listRuns", "List runs, newest first", params, _responses(ok, ("400", "401", "503")))


def _create_run() -> dict[str, Any]:
    ok = {
        "201": ("The new run", ref("CreatedRun")),
        "200": ("The run this Idempotency-Key made", ref("CreatedRun")),
    }
    errors = ("400", "401", "413", "415", "422", "503")
    op = _op(
        "createRun",
        "Submit a run (validated like an inbox bundle)",
        [IDEMPOTENCY_KEY],
        _responses(ok, errors),
    )
    content = {
        "application/json": {"schema": ref("RunRequest")},
        "multipart/form-data": {"schema": ref("RunForm")},
    }
    op["requestBody"] = {"required": True, "content": content}
    return op


def _actions() -> dict[str, Any]:
    """POST /runs/{id}:cancel, :recover and :relaunch."""
    cancelled = {
        "202": ("Cancelling: Batch is stopping the jobs", ref("CancelledRun")),
        "200": ("Cancelled", ref("CancelledRun")),
    }
    recovered = {
        "201": ("The recovery run", ref("CreatedRun")),
        "200": ("The recovery this Idempotency-Key made", ref("CreatedRun")),
    }
    relaunched = {
        "201": ("The new run", ref("CreatedRun")),
        "200": ("The run this Idempotency-Key made", ref("CreatedRun")),
    }
    cancel = _op(
        "cancelRun",
        "Cancel a run and its Batch jobs (idempotent)",
        [RUN_ID],
        _responses(cancelled, (*_AUTHED, "403", "409")),
    )
    recover = _op(
        "recoverRun",
        "Resume a failed or cancelled run in a new run",
        [RUN_ID, IDEMPOTENCY_KEY],
        _responses(recovered, (*_AUTHED, "403", "409", "422")),
    )
    body = {"application/json": {"schema": ref("RecoverRequest")}}
    recover["requestBody"] = {"required": False, "content": body}
    relaunch = _op(
        "relaunchRun",
        "A new run from the same inputs, with changes (e.g. a corrected samplesheet); nothing is resumed",
        [RUN_ID, IDEMPOTENCY_KEY],
        _responses(relaunched, (*_AUTHED, "409", "422")),
    )
    relaunch["requestBody"] = {
        "required": False, "content": {"application/json": {"schema": ref("RelaunchRequest")}},
    }  # fmt: skip
    return {
        "/runs/{run_id}:cancel": {"post": cancel},
        "/runs/{run_id}:recover": {"post": recover},
        "/runs/{run_id}:relaunch": {"post": relaunch},
    }


def _run_ops() -> dict[str, Any]:
    """GET /runs/{id}, its events and its logs."""
    log_page = {"type": "integer", "minimum": 1, "maximum": run_logs.MAX_PAGE_SIZE}
    results_page = {"type": "integer", "minimum": 1, "maximum": results.MAX_PAGE_SIZE}
    tasks_page = {"type": "integer", "minimum": 1, "maximum": tasks.MAX_PAGE_SIZE}
    log_params = [
        RUN_ID,
        _query("page_size", log_page, f"lines per page (default {run_logs.DEFAULT_PAGE_SIZE})"),
        _query("page_token", STR, "next_page_token of the previous page"),
    ]
    stream = {"description": "An event stream", "content": {"text/event-stream": {"schema": SSE_EVENT}}}
    detail = _responses({"200": ("The run", ref("RunDetail"))}, _AUTHED)
    lines = _responses({"200": ("A page of lines", ref("LogPage"))}, _AUTHED)
    events_summary = "Server-Sent Events of a run; resume with Last-Event-ID; ends after a terminal state"
    return {
        "/runs/{run_id}": {"get": _op("getRun", "A run, its relatives and last events", [RUN_ID], detail)},
        "/runs/{run_id}/events": {
            "get": _op(
                "runEvents",
                events_summary,
                [RUN_ID, LAST_EVENT_ID],
                {**_responses({}, _AUTHED), "200": stream},
            )
        },
        "/runs/{run_id}/logs": {
            "get": _op("runLogs", "The orchestrator's log lines, oldest first", log_params, lines)
        },
        "/runs/{run_id}/tasks": {
            "get": _op(
                "runTasks",
                "The run's task attempts (the ledger), in the order first seen",
                [
                    RUN_ID,
                    _query(
                        "status", {"enum": list(TASK_STATUSES)}, "tasks in any of these statuses", many=True
                    ),
                    _query("process", STR, "tasks of this process or rule"),
                    _query("page_size", tasks_page, f"tasks per page (default {tasks.DEFAULT_PAGE_SIZE})"),
                    _query("page_token", STR, "next_page_token of the previous page"),
                ],
                _responses({"200": ("A page of tasks", ref("TaskPage"))}, _AUTHED),
            )
        },
        "/runs/{run_id}/diagnosis": {
            "get": _op(
                "runDiagnosis",
                "Why the run failed: its error, and its first failed task with a hint",
                [RUN_ID],
                _responses({"200": ("The diagnosis", ref("Diagnosis"))}, _AUTHED),
            )
        },
        "/runs/{run_id}/results": {
            "get": _op(
                "runResults",
                "The files in the run's results location, by name, each with a short-lived download URL",
                [
                    RUN_ID,
                    _query(
                        "page_size", results_page, f"files per page (default {results.DEFAULT_PAGE_SIZE})"
                    ),
                    _query("page_token", STR, "next_page_token of the previous page"),
                ],
                _responses({"200": ("A page of files", ref("ResultsPage"))}, (*_AUTHED, "403")),
            )
        },
        **_actions(),
    }


def _public(op_id: str, summary: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    """An operation that needs no token (also not on the deployed API, behind IAM all the same)."""
    return {**_op(op_id, summary, [], _responses({"200": (description, schema)}, ())), "security": []}


def _tower() -> dict[str, Any]:
    """The Tower trace endpoints Nextflow reports to (api/tower.py), with the run's own token."""
    token: list[dict[str, list[str]]] = [{"runToken": []}]
    body = {"required": True, "content": {"application/json": {"schema": OBJECT}}}
    workflow = {"name": "workflow_id", "in": "path", "required": True, "schema": STR}
    created = _object({"workflowId": STR, "message": OPT_STR})
    info = _object({"serviceInfo": _object({"version": STR, "apiVersion": STR})})
    user = _object({"user": _object({"id": {"type": "integer"}, "userName": STR, "email": OPT_STR})})
    out: dict[str, Any] = {
        "/tower/service-info": {
            "get": _public("towerServiceInfo", "What Tower clients ask first; no token", "The service", info)
        },
        "/tower/user-info": {
            "get": {
                **_op("towerUserInfo", "The run a token belongs to (Tower protocol)", [],
                      _responses({"200": ("The run, as a user", user)}, ("401",))),
                "security": token,
            }
        },
        "/tower/trace/create": {
            "post": {
                **_op("towerCreate", "Nextflow starts reporting a run (Tower protocol)", [],
                      _responses({"200": ("The workflowId: the run id", created)}, ("400", "401"))),
                "security": token, "requestBody": body,
            }
        }
    }  # fmt: skip
    answers = {"begin": _object({"watchUrl": STR})}
    for action in ("begin", "progress", "heartbeat", "complete"):
        ok = answers.get(action, _object({"tasks": {"type": "integer"}}))
        op = _op(f"tower{action.title()}", f"Nextflow's {action} report (Tower protocol)", [workflow],
                 _responses({"200": ("Recorded", ok)}, ("400", "401")))  # fmt: skip
        out[f"/tower/trace/{{workflow_id}}/{action}"] = {
            "put": {**op, "security": token, "requestBody": body}
        }
    return out


def _paths() -> dict[str, Any]:
    health = _object({"status": {"const": "ok"}})
    return {
        "/healthz": {"get": _public("healthz", "Liveness", "Alive", health)},
        "/openapi.json": {"get": _public("openapi", "This document", "OpenAPI 3.1", OBJECT)},
        "/pipelines": {
            "get": _op(
                "listPipelines",
                "The pipelines that may run (the registry), by name",
                [],
                _responses({"200": ("The registry", ref("PipelineList"))}, ("400", "401", "503")),
            )
        },
        "/runs": {"get": _list_runs(), "post": _create_run()},
        **_run_ops(),
        **_tower(),
    }


@lru_cache(maxsize=1)
def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Arc Reactor Runs API",
            "version": "1.0.0",
            "description": "Submit, list, watch, cancel and recover pipeline runs on Google Cloud Batch. "
            'Errors are {"error": {"code", "message", "problems"?}}.',
        },
        "security": [{"googleIdToken": []}],
        "paths": _paths(),
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {
                "googleIdToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "A Google ID token for this service's URL (the local stack has no auth)",
                },
                "runToken": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A run's own Tower access token (arc.<run id>.<secret>) for its Nextflow",
                },
            },
        },
    }

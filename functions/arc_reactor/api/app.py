"""HTTP routing for runs_api. Errors are JSON: {"error": {"code": ..., "message": ..., "problems": [...]}}."""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

import yaml

from arc_reactor.adapters import runs_repo
from arc_reactor.core.ids import is_run_id
from arc_reactor.core.status import RunStatus
from arc_reactor.errors import NotFound, Problem
from arc_reactor.logs import setup_logging
from arc_reactor.services.deps import Deps
from arc_reactor.services.submit import RunSource, submit_files

if TYPE_CHECKING:
    import flask

log = logging.getLogger(__name__)

Response = tuple[str, int, dict[str, str]]
_RUN_PATH = re.compile(r"^/runs/([^/:]+)$")
MAX_PAGE_SIZE = 100
_PUBLIC_FIELDS = (
    "id",
    "name",
    "pipeline",
    "revision",
    "engine",
    "profile",
    "status",
    "parent_run_id",
    "batch_job_name",
    "work_dir",
    "inputs_uri",
    "results_uri",
    "logs_uri",
    "submitter",
    "labels",
    "params",
    "created_at",
    "updated_at",
    "submitted_at",
    "started_at",
    "completed_at",
    "failed_at",
    "cancelled_at",
    "error_code",
    "error_message",
    "error_task",
    "exit_code",
    "metrics",
    "session_id",
)


def _json(body: Any, status: int = 200) -> Response:
    return json.dumps(body, default=str), status, {"Content-Type": "application/json"}


def error(status: int, code: str, message: str, problems: list[Problem] | None = None) -> Response:
    """A JSON error response with a stable code."""
    body: dict[str, Any] = {"code": code, "message": message}
    if problems:
        body["problems"] = [p.as_dict() for p in problems]
    return _json({"error": body}, status)


def run_view(row: Mapping[str, Any]) -> dict[str, Any]:
    """The public JSON form of a run row."""
    return {k: row[k] for k in _PUBLIC_FIELDS if k in row}


def handle(deps: Deps, request: flask.Request) -> Response:
    """Route one request."""
    setup_logging()
    path, method = request.path.rstrip("/") or "/", request.method
    if path == "/healthz" and method == "GET":
        return _json({"status": "ok"})
    if path == "/runs" and method == "POST":
        return create_run(deps, request)
    if path == "/runs" and method == "GET":
        return list_runs(deps, request.args)
    match = _RUN_PATH.match(path)
    if match and method == "GET":
        return get_run(deps, match.group(1))
    if path == "/runs" or match:
        return error(405, "method_not_allowed", f"{method} is not allowed on {path}")
    return error(404, "not_found", f"no route for {method} {path}")


def create_run(deps: Deps, request: flask.Request) -> Response:
    """POST /runs with JSON {pipeline, revision?, samplesheet, params?, config?, labels?, name?}."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return error(400, "bad_request", "the request body must be a JSON object")
    manifest = {
        k: body[k] for k in ("pipeline", "revision", "engine", "profile", "labels", "name") if k in body
    }
    files: dict[str, bytes | None] = {
        "run.yaml": yaml.safe_dump(manifest).encode(),
        "samplesheet.csv": _text_field(body, "samplesheet"),
        "params.yaml": yaml.safe_dump(body["params"]).encode() if body.get("params") is not None else None,
        "nextflow.config": _text_field(body, "config"),
    }
    key = request.headers.get("Idempotency-Key") or None
    submitter = request.headers.get("X-Arc-Submitter") if deps.settings.local else None
    result = submit_files(deps, files, RunSource("api", idempotency_key=key, submitter=submitter))
    if result.outcome == "rejected":
        return error(422, "invalid_bundle", "the submission is invalid", result.problems)
    if result.run_id is None:
        return error(500, "internal", result.reason or "submission failed")
    run = runs_repo.get_run(deps.engine, result.run_id)
    return _json(run_view(run), 200 if result.outcome == "duplicate" else 201)


def _text_field(body: Mapping[str, Any], key: str) -> bytes | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, dict) and "base64" in value:
        try:
            return base64.b64decode(value["base64"], validate=True)
        except (binascii.Error, ValueError):
            return b"\x00invalid base64"  # surfaces as an encoding problem naming the file
    return str(value).encode()


def list_runs(deps: Deps, args: Mapping[str, str]) -> Response:
    """GET /runs?status=&page_size=&page_token= (newest first, keyset pagination)."""
    try:
        page_size = int(args.get("page_size", 50))
    except ValueError:
        return error(400, "bad_request", "page_size must be an integer")
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        return error(400, "bad_request", f"page_size must be between 1 and {MAX_PAGE_SIZE}")
    status = args.get("status")
    if status and status not in {s.value for s in RunStatus}:
        return error(400, "bad_request", f"unknown status {status!r}")
    before = None
    if args.get("page_token"):
        try:
            before = decode_page_token(args["page_token"])
        except ValueError:
            return error(400, "bad_request", "page_token is not valid")
    rows = runs_repo.list_runs(deps.engine, limit=page_size + 1, status=status, before=before)
    body: dict[str, Any] = {"runs": [run_view(r) for r in rows[:page_size]]}
    if len(rows) > page_size:
        last = rows[page_size - 1]
        body["next_page_token"] = encode_page_token(last["created_at"], last["id"])
    return _json(body)


def encode_page_token(created: datetime, run_id: str) -> str:
    """An opaque token for the keyset position after (created, run_id)."""
    return base64.urlsafe_b64encode(json.dumps([created.isoformat(), run_id]).encode()).decode()


def decode_page_token(token: str) -> tuple[datetime, str]:
    """Inverse of encode_page_token; ValueError when malformed."""
    try:
        created, run_id = json.loads(base64.urlsafe_b64decode(token.encode()))
        return datetime.fromisoformat(created), str(run_id)
    except (binascii.Error, TypeError, ValueError) as exc:
        raise ValueError("bad page token") from exc


def get_run(deps: Deps, run_id: str) -> Response:
    """GET /runs/{id}: the run and its recent events."""
    if not is_run_id(run_id):
        return error(400, "bad_request", f"{run_id!r} is not a run id")
    try:
        row = runs_repo.get_run(deps.engine, run_id)
    except NotFound:
        return error(404, "not_found", f"run {run_id} does not exist")
    view = run_view(row)
    view["events"] = [
        {k: ev[k] for k in ("id", "created_at", "kind", "source", "from_status", "to_status", "detail")}
        for ev in runs_repo.list_events(deps.engine, run_id, limit=100)
    ]
    return _json(view)

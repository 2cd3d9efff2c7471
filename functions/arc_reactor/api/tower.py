"""The Tower trace endpoints Nextflow reports a run to (`-with-tower`, TOWER_API_ENDPOINT=<runs_api>/tower,
TOWER_ACCESS_TOKEN=the run's own token): task records go into the run's ledger, progress snapshots onto the
run. core/tower.py describes the protocol. Only the run's token is accepted, only for that run's
workflowId, and only while the run goes on (and for TOKEN_GRACE after it ended, for the last reports).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from arc_reactor.adapters import runs_repo
from arc_reactor.adapters.tasks_repo import upsert_tasks
from arc_reactor.api.http import ApiError, Call, json_response
from arc_reactor.core.run_record import RunRecord
from arc_reactor.core.tower import (
    TowerRequestInvalid,
    progress_summary,
    tasks_of,
    token_from_header,
    token_matches,
)
from arc_reactor.errors import NotFound

TOKEN_GRACE = timedelta(hours=1)
API_VERSION = "1.0.0"  # of the Tower trace subset served here


def _refused(message: str) -> ApiError:
    return ApiError(401, "unauthenticated", message)


def _run(call: Call, workflow_id: str | None = None) -> RunRecord:
    """The run whose token the request carries (and whose workflowId it names); 401 otherwise."""
    found = token_from_header(call.request.headers.get("Authorization", ""))
    if found is None:
        raise _refused("send the run's Tower access token (TOWER_ACCESS_TOKEN)")
    run_id, token = found
    if workflow_id is not None and workflow_id != run_id:
        raise _refused("this token is for another run")
    try:
        run = call.deps.runs.get_run(run_id)
    except NotFound:
        raise _refused("this token is for no run") from None
    if not token_matches(call.deps.tower_key, run_id, token):
        raise _refused("not this run's token")
    ended = run.ended_at
    if ended is not None and datetime.now(UTC) - ended > TOKEN_GRACE:
        raise _refused("the run ended: its token has expired")
    return run


def _body(call: Call) -> dict[str, Any]:
    body = call.request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ApiError(400, "bad_request", "the body must be a JSON object")
    return body


def service_info(call: Call) -> Any:
    """GET /tower/service-info: what a Tower client asks first; the orchestrator's relay checks runs_api
    answers with it (orchestrator/relay.py). Needs no token and says nothing about any run."""
    return json_response({"serviceInfo": {"version": "arc-reactor", "apiVersion": API_VERSION}})


def user_info(call: Call) -> Any:
    """GET /tower/user-info: who the token is: the run it belongs to (Nextflow's TowerClient 24.x does not
    call it; other Tower clients check a token with it)."""
    run = _run(call)
    return json_response({"user": {"id": 0, "userName": f"run-{run.id}", "email": None}})


def create(call: Call) -> Any:
    """POST /tower/trace/create: the workflowId Nextflow uses from then on is the run id."""
    run = _run(call)
    _body(call)
    return json_response({"workflowId": run.id, "message": None})


def update(call: Call) -> Any:
    """PUT /tower/trace/{workflowId}/(begin|progress|heartbeat|complete)."""
    run = _run(call, call.params.get("workflow_id"))
    body = _body(call)
    action = call.params["action"]
    try:
        updates = tasks_of(body) if action == "progress" else []
        progress = progress_summary(body["progress"]) if isinstance(body.get("progress"), dict) else None
        instant = int(body.get("instant") or 0)
    except (TowerRequestInvalid, ValueError, TypeError) as exc:
        raise ApiError(400, "bad_request", f"not a Tower {action} request: {exc}") from exc
    if updates:
        upsert_tasks(call.deps.engine, run.id, updates)
    if progress is not None:
        runs_repo.set_progress(call.deps.engine, run.id, progress, instant)
    if action == "begin":
        base = (
            call.deps.settings.service_urls[0] if call.deps.settings.service_urls else call.request.host_url
        )
        return json_response({"watchUrl": f"{base.rstrip('/')}/runs/{run.id}"})
    return json_response({"tasks": len(updates)})

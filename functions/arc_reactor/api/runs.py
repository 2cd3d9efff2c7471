"""GET /runs/{id}, POST /runs/{id}:cancel, :recover and :relaunch."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from arc_reactor.adapters import runs_repo
from arc_reactor.api.auth import require_manager, require_reader
from arc_reactor.api.http import ApiError, Call, bad_request, json_response
from arc_reactor.api.submission import created, fingerprint, idempotency_key
from arc_reactor.api.views import event_view, locations, run_view, summary_view
from arc_reactor.core.run_record import RunRecord
from arc_reactor.errors import NotFound, Problem
from arc_reactor.services.cancel import cancel_run
from arc_reactor.services.recover import Overrides, RecoveryRefused, recover_run, relaunch_run
from arc_reactor.services.run_cost import run_cost
from arc_reactor.services.submit import RunSource, SubmitResult

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from arc_reactor.wiring import Deps

RECENT_EVENTS = 50
RECOVER_FIELDS = frozenset({"params", "config", "name"})
RELAUNCH_FIELDS = RECOVER_FIELDS | {"samplesheet"}


def get_run(call: Call) -> Any:
    """GET /runs/{id}: the run, its parent and children (recoveries), its locations and last events."""
    run_id = call.run_id
    engine = call.deps.engine
    row = runs_repo.get_run(engine, run_id)
    require_reader(call.deps.settings, call.caller, row)
    view = run_view(row)
    view["parent"], view["children"] = related_runs(engine, row)
    view["locations"] = locations(row)
    view["events"] = [event_view(e) for e in runs_repo.recent_events(engine, run_id, RECENT_EVENTS)]
    view["cost"] = run_cost(engine, call.deps.settings, row, billed=call.deps.billed_costs)
    return json_response(view)


def related_runs(engine: Engine, row: RunRecord) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """The run's parent (None when it has none, or it is gone) and its children (recoveries), as
    summaries."""
    parent = None
    if row.parent_run_id:
        try:
            parent = summary_view(runs_repo.get_run(engine, row.parent_run_id))
        except NotFound:
            parent = None
    return parent, [summary_view(r) for r in runs_repo.list_children(engine, row.id)]


def cancel(call: Call) -> Any:
    """POST /runs/{id}:cancel: 202 while Batch cancels, 200 once cancelled, 409 for a finished run."""
    run_id = call.run_id
    require_manager(call.deps.settings, call.caller, call.deps.runs.get_run(run_id), "cancel")
    result = cancel_run(call.deps, run_id, requested_by=call.caller.email)
    view = run_view(result.run)
    view["cancellation"] = None
    if result.summary is not None:
        s = result.summary
        view["cancellation"] = {
            "orchestrator_cancelled": s.orchestrator_cancelled,
            "task_jobs_cancelled": list(s.task_jobs_cancelled),
            "failures": list(s.failures),
        }
    return json_response(view, 202 if result.outcome == "cancelling" else 200)


def _overrides(call: Call, fields: frozenset[str] = RECOVER_FIELDS) -> Overrides:
    """The optional JSON body of a recovery or relaunch; ApiError 400 listing every malformed field."""
    if not call.request.get_data(cache=True):
        return Overrides()
    body = call.request.get_json(silent=True)
    if not isinstance(body, dict):
        raise bad_request("the request body must be empty or a JSON object")
    problems = [Problem("request", "unknown field", field=str(k)) for k in body if k not in fields]
    params = body.get("params")
    if params is not None and not isinstance(params, dict):
        problems.append(Problem("request", "must be an object of parameter: value", field="params"))
    texts = {k: body.get(k) for k in ("config", "name", "samplesheet")}
    for key, value in texts.items():
        if value is not None and not isinstance(value, str):
            problems.append(Problem("request", "must be a string", field=key))
    if problems:
        raise bad_request("the request body is invalid", problems)
    return Overrides(
        params=params, config=texts["config"], name=texts["name"], samplesheet=texts["samplesheet"]
    )


def relaunch(call: Call) -> Any:
    """POST /runs/{id}:relaunch: 201 with a new, independent run from the same inputs (overrides applied,
    e.g. a corrected samplesheet); 409 when the run has no inputs to reuse; 422 for an invalid result."""
    parent = call.deps.runs.get_run(call.run_id)
    require_reader(call.deps.settings, call.caller, parent)  # whoever may see its inputs may rerun them
    return _resubmit(call, parent, "relaunch", RELAUNCH_FIELDS, relaunch_run)


def recover(call: Call) -> Any:
    """POST /runs/{id}:recover: 201 with the new run; 409 when the run cannot be recovered; 422 when the
    overrides make an invalid bundle."""
    parent = call.deps.runs.get_run(call.run_id)
    require_manager(call.deps.settings, call.caller, parent, "recover")
    return _resubmit(call, parent, "recover", RECOVER_FIELDS, recover_run)


def _resubmit(
    call: Call,
    parent: RunRecord,
    action: str,
    fields: frozenset[str],
    service: Callable[[Deps, str, Overrides, RunSource], SubmitResult],
) -> Any:
    """A new run from `parent`'s inputs with the body's overrides (only `fields` allowed); the
    Idempotency-Key's fingerprint covers exactly those fields."""
    overrides = _overrides(call, fields)
    source = RunSource(
        "api",
        idempotency_key=idempotency_key(call, namespace=f"{action}:{call.run_id}:"),
        submitter=call.caller.email or parent.submitter,
        fingerprint=fingerprint({name: getattr(overrides, name) for name in fields}),
    )
    try:
        result = service(call.deps, call.run_id, overrides, source)
    except RecoveryRefused as exc:
        raise ApiError(409, exc.code, str(exc)) from exc
    return created(call, result)

"""HTTP routing for runs_api: one function serves every endpoint of the Runs API (docs/api.md).

Routes are matched on the path and method; `{run_id}` segments are checked by the handlers (400 when
malformed, 404 when unknown). Every /runs route needs a caller (api/auth.py); /healthz and /openapi.json do
not. Errors are JSON `{"error": {"code", "message", ...}}`: the package's errors map to 404 (NotFound),
409 (Conflict), 503 (TransientError: retry), and anything unexpected is logged and answered 500.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from werkzeug.exceptions import HTTPException

from arc_reactor.api import (
    listing,
    pipelines,
    results,
    run_logs,
    runs,
    sse,
    submission,
    tasks,
    tower,
    ui,
    wes,
)
from arc_reactor.api.auth import Caller
from arc_reactor.api.http import ApiError, Call, error_response, json_response
from arc_reactor.api.openapi import openapi_document
from arc_reactor.errors import Conflict, DependencyRefused, NotFound, TransientError
from arc_reactor.logs import setup_logging
from arc_reactor.wiring import Deps

if TYPE_CHECKING:
    import flask

log = logging.getLogger(__name__)

Handler = Callable[[Call], Any]


@dataclass(frozen=True)
class Route:
    """A path pattern, its handlers by method, and whether it needs an authenticated caller."""

    pattern: re.Pattern[str]
    methods: dict[str, Handler]
    public: bool = False


def _healthz(_call: Call) -> Any:
    return json_response({"status": "ok"})


def _openapi(_call: Call) -> Any:
    return json_response(openapi_document())


_ID = r"(?P<run_id>[^/:]+)"
# The dashboard (api/ui.py): HTML pages on the same auth (not in the OpenAPI document, which describes the
# JSON API); its static assets hold no data.
DASHBOARD = (
    Route(re.compile(r"^/$"), {"GET": ui.home}, public=True),
    Route(re.compile(r"^/ui/static/(?P<name>[a-z0-9][a-z0-9_.-]*)$"), {"GET": ui.static}, public=True),
    Route(re.compile(r"^/ui$"), {"GET": ui.runs_list}),
    Route(re.compile(r"^/ui/fragments/runs$"), {"GET": ui.runs_fragment}),
    Route(re.compile(rf"^/ui/runs/{_ID}$"), {"GET": ui.run_page}),
    Route(re.compile(rf"^/ui/runs/{_ID}/live$"), {"GET": ui.run_live}),
    Route(
        re.compile(rf"^/ui/runs/{_ID}/files/(?P<area>inputs|results|logs)/(?P<path>.+)$"),
        {"GET": ui.file_link},
    ),
)
ROUTES = (
    Route(re.compile(r"^/healthz$"), {"GET": _healthz}, public=True),
    Route(re.compile(r"^/openapi\.json$"), {"GET": _openapi}, public=True),
    Route(re.compile(r"^/pipelines$"), {"GET": pipelines.list_pipelines}),
    *DASHBOARD,
    # Nextflow's Tower reports: authenticated by the run's own token (api/tower.py), not an ID token.
    Route(re.compile(r"^/tower/service-info$"), {"GET": tower.service_info}, public=True),
    Route(re.compile(r"^/tower/user-info$"), {"GET": tower.user_info}, public=True),
    Route(re.compile(r"^/tower/trace/create$"), {"POST": tower.create}, public=True),
    *(
        Route(
            re.compile(rf"^/tower/trace/(?P<workflow_id>[^/]+)/(?P<action>{action})$"),
            {"PUT": tower.update},
            True,
        )
        for action in ("begin", "progress", "heartbeat", "complete")
    ),
    Route(re.compile(r"^/runs$"), {"GET": listing.list_runs, "POST": submission.create_run}),
    Route(re.compile(rf"^/runs/{_ID}$"), {"GET": runs.get_run}),
    Route(re.compile(rf"^/runs/{_ID}/events$"), {"GET": sse.events}),
    Route(re.compile(rf"^/runs/{_ID}/logs$"), {"GET": run_logs.logs}),
    Route(re.compile(rf"^/runs/{_ID}/results$"), {"GET": results.results}),
    Route(re.compile(rf"^/runs/{_ID}/tasks$"), {"GET": tasks.tasks}),
    Route(re.compile(rf"^/runs/{_ID}/diagnosis$"), {"GET": tasks.diagnosis}),
    Route(re.compile(rf"^/runs/{_ID}:cancel$"), {"POST": runs.cancel}),
    Route(re.compile(rf"^/runs/{_ID}:recover$"), {"POST": runs.recover}),
    Route(re.compile(rf"^/runs/{_ID}:relaunch$"), {"POST": runs.relaunch}),
    # GA4GH WES 1.1 (api/wes.py): the same runs, validation and auth; errors as WES ErrorResponses.
    Route(re.compile(r"^/ga4gh/wes/v1/service-info$"), {"GET": wes.service_info}),
    Route(re.compile(r"^/ga4gh/wes/v1/runs$"), {"GET": wes.list_runs, "POST": wes.create_run}),
    Route(re.compile(rf"^/ga4gh/wes/v1/runs/{_ID}$"), {"GET": wes.run_log}),
    Route(re.compile(rf"^/ga4gh/wes/v1/runs/{_ID}/status$"), {"GET": wes.run_status}),
    Route(re.compile(rf"^/ga4gh/wes/v1/runs/{_ID}/cancel$"), {"POST": wes.cancel}),
    Route(re.compile(rf"^/ga4gh/wes/v1/runs/{_ID}/tasks$"), {"GET": wes.tasks}),
    Route(re.compile(rf"^/ga4gh/wes/v1/runs/{_ID}/tasks/(?P<task_id>[^/]+)$"), {"GET": wes.task}),
)


def route(path: str, method: str) -> tuple[Route, Handler, dict[str, str]]:
    """The route, handler and path parameters for a request; ApiError 404/405 when there is none."""
    for candidate in ROUTES:
        match = candidate.pattern.match(path)
        if match is None:
            continue
        handler = candidate.methods.get(method)
        if handler is None:
            allowed = ", ".join(sorted(candidate.methods))
            raise ApiError(
                405, "method_not_allowed", f"{method} is not allowed on {path}", headers={"Allow": allowed}
            )
        return candidate, handler, match.groupdict()
    raise ApiError(404, "not_found", f"no route for {method} {path}")


# A browser says where a request comes from (Fetch Metadata); one sent by another site's page must not
# change anything with the caller's credentials (a proxy's, an IAP cookie): cross-site request forgery.
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
FOREIGN_SITES = frozenset({"cross-site", "same-site"})


def dispatch(deps: Deps, request: flask.Request) -> Any:
    """Route, authenticate and run one request; errors propagate."""
    path = request.path.rstrip("/") or "/"
    target, handler, params = route(path, request.method)
    if request.method not in SAFE_METHODS and request.headers.get("Sec-Fetch-Site") in FOREIGN_SITES:
        raise ApiError(403, "cross_site_request", "a page of another site may not change runs on this API")
    caller = Caller(None) if target.public else deps.authenticator(request)
    return handler(Call(deps, request, caller, params))


def not_routed(request: flask.Request) -> Any:
    """The answer to a path functions-framework could not route to runs_api (main.py)."""
    response = error_response(ApiError(404, "not_found", "no route for this path"))
    if request.path.startswith("/ui/"):
        return ui.as_page_error(response)
    return wes.as_wes_error(response) if request.path.startswith(wes.PREFIX + "/") else response


def handle(deps: Deps, request: flask.Request) -> Any:
    """Handle one request of runs_api; always answers, with JSON errors (GA4GH WES ErrorResponses under
    /ga4gh/wes/)."""
    response = _handle(deps, request)
    if request.path.startswith(wes.PREFIX + "/"):
        return wes.as_wes_error(response)
    if request.path == "/ui" or request.path.startswith("/ui/"):
        return ui.as_page_error(response)
    return response


def _handle(deps: Deps, request: flask.Request) -> Any:
    setup_logging()
    try:
        return dispatch(deps, request)
    except ApiError as exc:
        return error_response(exc)
    except NotFound as exc:
        return error_response(ApiError(404, "not_found", str(exc)))
    except Conflict as exc:
        return error_response(ApiError(409, getattr(exc, "code", "conflict"), str(exc)))
    except DependencyRefused as exc:
        log.error("runs_api: %s", exc, extra={"event": "api_dependency_refused"})
        return error_response(ApiError(502, "dependency_refused", str(exc)))
    except TransientError as exc:
        log.warning("runs_api: %s", exc, extra={"event": "api_unavailable"})
        err = ApiError(503, "unavailable", f"try again shortly: {exc}", headers={"Retry-After": "5"})
        return error_response(err)
    except HTTPException as exc:  # werkzeug's own, e.g. 413 for a body over the limit
        status = exc.code or 400
        return error_response(
            ApiError(status, str(exc.name).lower().replace(" ", "_"), exc.description or "")
        )
    except Exception:
        log.exception("runs_api: unexpected error", extra={"event": "api_error"})
        return error_response(ApiError(500, "internal", "internal error; it has been logged"))

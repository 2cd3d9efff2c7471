"""The dashboard (docs/dashboard.md): HTML pages served by runs_api itself, on the same handlers, auth and
ledger as the JSON API.

Pages are rendered on the server (Jinja2 templates in api/ui/templates, laid out from api/ui_views.py);
one small ES module (api/ui/static/app.js) makes them live: the runs list re-reads its table fragment
while the tab is visible, a run page follows the run's SSE stream (progress bars from `progress` events,
the other live parts re-read on transitions), its log tail follows GET /runs/{id}/logs, and Cancel and
Recover call the JSON API and show its message. No inline script or style and no third-party asset: every
page is sent with a strict Content-Security-Policy.

Routes (every one behind the caller's authentication, like the API; only the static assets are public):
  GET /ui/                          the runs list (the API's filters, keyset pages)
  GET /ui/fragments/runs            its table, for the live refresh
  GET /ui/runs/{id}                 a run
  GET /ui/runs/{id}/live            the run page's live parts, for the live refresh
  GET /ui/runs/{id}/files/{area}/{path}   302 to a short-lived download URL of an input, result or log
  GET /ui/static/{name}             the stylesheet and the script
"""

from __future__ import annotations

import functools
import hashlib
import mimetypes
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import flask
from werkzeug.datastructures import MultiDict

from arc_reactor.adapters import runs_repo
from arc_reactor.adapters.storage_pool import storage_map
from arc_reactor.adapters.tasks_repo import TASK_STATUSES, list_tasks
from arc_reactor.api import listing, ui_views
from arc_reactor.api.auth import can_read_all, may_manage, require_reader
from arc_reactor.api.http import ApiError, Call, decode_token, encode_token
from arc_reactor.api.runs import RECENT_EVENTS, related_runs
from arc_reactor.api.tasks import priced_views, run_diagnosis
from arc_reactor.api.views import event_view, run_view
from arc_reactor.core.layout import split_gs_uri
from arc_reactor.core.status import RunStatus
from arc_reactor.errors import ArcError, StorageForbidden
from arc_reactor.services.run_cost import estimates, run_cost
from arc_reactor.services.submit import recovery_refusal_for

if TYPE_CHECKING:
    import jinja2

    from arc_reactor.core.run_record import RunRecord

UI_DIR = Path(__file__).parent / "ui"
STATIC_DIR = UI_DIR / "static"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
TASKS_PAGE = 100
FILES_SHOWN = 200  # per area; the JSON API pages through the rest (GET /runs/{id}/results)
AREAS = {"inputs": "inputs_uri", "results": "results_uri", "logs": "logs_uri"}
FILE_URL_TTL = timedelta(minutes=15)


@functools.cache
def _templates() -> jinja2.Environment:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(UI_DIR / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.update(
        asset=asset_url,
        status_text=ui_views.status_text,
        when_text=ui_views.when_text,
        elapsed=ui_views.duration_text,
        cost_text=ui_views.cost_text,
        money=ui_views.money_text,
        bar=ui_views.bar,
        bar_label=ui_views.bar_label,
    )
    return env


@functools.cache
def asset_url(name: str) -> str:
    """A static asset's URL, versioned by its content so a browser never runs a stale script."""
    digest = hashlib.sha256((STATIC_DIR / name).read_bytes()).hexdigest()[:12]
    return f"/ui/static/{name}?v={digest}"


def html(template: str, code: int = 200, **context: Any) -> flask.Response:
    """A rendered page (or fragment) with the dashboard's security headers."""
    body = _templates().get_template(template).render(**context)
    response = flask.Response(body, status=code, mimetype="text/html")
    response.headers.update(SECURITY_HEADERS)
    return response


def error_page(status: int, message: str, problems: list[dict[str, Any]] | None = None) -> flask.Response:
    """An error as a page: the API's own message (and its problems), never a blank page."""
    return html("error.html", status, status=status, message=message, problems=problems or [])


def as_page_error(response: flask.Response) -> flask.Response:
    """A JSON error answered on a dashboard route, as a page with the same status and message."""
    if response.status_code < 400 or response.mimetype != "application/json":
        return response
    body = response.get_json(silent=True) or {}
    err = body.get("error") if isinstance(body, dict) else None
    err = err if isinstance(err, dict) else {}
    page = error_page(response.status_code, str(err.get("message") or response.status), err.get("problems"))
    for key in ("Retry-After", "WWW-Authenticate", "Allow"):
        if key in response.headers:
            page.headers[key] = response.headers[key]
    return page


def home(_call: Call) -> Any:
    """GET /: the dashboard."""
    return flask.redirect("/ui/", 302)


def static(call: Call) -> Any:
    """GET /ui/static/{name}: a packaged asset (a name of the folder only; nothing else is served)."""
    name = call.params["name"]
    path = STATIC_DIR / name
    if not any(p.name == name for p in STATIC_DIR.iterdir()) or not path.is_file():
        raise ApiError(404, "not_found", f"no asset {name!r}")
    mimetype = mimetypes.guess_type(name)[0] or "application/octet-stream"
    if name.endswith(".js"):
        mimetype = "text/javascript"
    response = flask.send_file(path, mimetype=mimetype, conditional=True, max_age=3600)
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def _list_context(call: Call) -> dict[str, Any]:
    # A form sends its empty fields too: an empty filter is no filter here (the API refuses it).
    args = MultiDict([(k, v) for k, v in call.request.args.items(multi=True) if v != ""])
    problems: list[dict[str, Any]] = []
    message = ""
    rows: list[RunRecord] = []
    token = None
    try:
        rows, token = listing.runs_page(call, args)
    except ApiError as exc:  # a bad filter: the form shows what is wrong, above an empty table
        message, problems = exc.message, [p.as_dict() for p in exc.problems]
    now = datetime.now(UTC)
    costs = estimates(call.deps.engine, call.deps.settings, rows, now)
    views = [ui_views.list_row(vars(r), costs.get(r.id), now) for r in rows]
    lists = {k: args.getlist(k) for k in ui_views.LIST_KEYS}
    return {
        "runs": views,
        "problems": problems,
        "message": message,
        "filters": {k: (args.get(k) or "") for k in ui_views.LIST_FILTERS},
        "filtered": ui_views.filters_active(lists),
        "statuses": [s.value for s in RunStatus],
        "pipelines": sorted(call.deps.registry.pipelines),
        "next_url": ui_views.list_url(lists, page_token=token) if token else None,
        "first_url": ui_views.list_url(lists, page_token=None) if args.get("page_token") else None,
        "fragment_url": "/ui/fragments/runs" + _query_string(call),
        "reads_all": can_read_all(call.deps.settings, call.caller),
        "caller": call.caller.email,
    }


def _query_string(call: Call, drop: tuple[str, ...] = ()) -> str:
    pairs = [(k, v) for k, v in call.request.args.items(multi=True) if k not in drop]
    return f"?{urlencode(pairs)}" if pairs else ""


def runs_list(call: Call) -> Any:
    """GET /ui/: the runs list."""
    context = _list_context(call)
    return html("runs.html", 400 if context["message"] else 200, **context)


def runs_fragment(call: Call) -> Any:
    """GET /ui/fragments/runs: the list's table alone (the page's live refresh swaps it in)."""
    context = _list_context(call)
    return html("_runs_table.html", 400 if context["message"] else 200, **context)


def _tasks_query(call: Call) -> tuple[tuple[str, ...], int | None]:
    args = call.request.args
    statuses = tuple(s for s in args.getlist("task_status") if s)
    unknown = [s for s in statuses if s not in TASK_STATUSES]
    if unknown:
        raise ApiError(
            400, "bad_request", f"unknown task status {unknown[0]!r}; one of {', '.join(TASK_STATUSES)}"
        )
    after = None
    token = args.get("tasks_token")
    if token:
        try:
            after = int(decode_token(token)["after"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ApiError(400, "bad_request", "tasks_token is not a page token from this page") from exc
    return statuses, after


def _live_context(call: Call, run: RunRecord) -> dict[str, Any]:
    """The parts of a run page that change while it runs: status and actions, timeline, progress, tasks,
    diagnosis and cost."""
    deps, now = call.deps, datetime.now(UTC)
    engine = deps.engine
    statuses, after = _tasks_query(call)
    view = run_view(run)
    manager = may_manage(deps.settings, call.caller, run)
    # The API's own rules and words (core/recovery.py); its lookups run only for a failed or cancelled run.
    refusal = recovery_refusal_for(deps, run) if manager else None
    recover = ui_views.recover_action(manager, run.submitter, refusal.message if refusal else None)
    rows = list_tasks(engine, run.id, limit=TASKS_PAGE + 1, after_id=after, statuses=statuses)
    tasks = [ui_views.task_row(t, now) for t in priced_views(deps.settings, rows[:TASKS_PAGE], now)]
    tasks_next = encode_token({"after": rows[TASKS_PAGE - 1]["id"]}) if len(rows) > TASKS_PAGE else None
    progress = view.get("progress") or {}
    failing = run.status == "failed" or int(progress.get("failed") or 0) > 0
    report = run_diagnosis(engine, run) if failing else None
    events = [event_view(e) for e in runs_repo.recent_events(engine, run.id, RECENT_EVENTS)]
    return {
        "run": view,
        "duration": ui_views.run_seconds(view, now),
        "timeline": ui_views.timeline(events),
        "progress": progress,
        "tasks": tasks,
        "task_statuses": TASK_STATUSES,
        "task_filter": statuses[0] if len(statuses) == 1 else "",
        "tasks_next": tasks_next,
        "diagnosis": report,
        "cost": run_cost(engine, deps.settings, run, now, billed=deps.billed_costs),
        "cancel": ui_views.cancel_action(run.status, manager, run.submitter),
        "recover": recover,
        "live_url": f"/ui/runs/{run.id}/live" + _query_string(call, drop=("files",)),
    }


def _files(call: Call, run: RunRecord) -> dict[str, Any]:
    """The first files of each of the run's locations (inputs, results, logs and reports), each linked
    through /ui/runs/{id}/files/; an area that cannot be read says why."""

    def listing_of(area: str) -> dict[str, Any]:
        uri = run.get(AREAS[area])
        if not uri:
            return {"uri": None, "files": [], "more": False, "error": None}
        bucket, prefix = split_gs_uri(uri.rstrip("/") + "/")
        try:
            entries, following = call.deps.storage.list_page(bucket, prefix, FILES_SHOWN, None)
        except (StorageForbidden, ArcError) as exc:
            return {"uri": uri, "files": [], "more": False, "error": str(exc)}
        files = [
            {
                "path": e.name[len(prefix) :],
                "size": e.size,
                "href": f"/ui/runs/{run.id}/files/{area}/{e.name[len(prefix) :]}",
            }
            for e in entries
        ]
        return {"uri": uri, "files": files, "more": following is not None, "error": None}

    areas = list(AREAS)
    return dict(zip(areas, storage_map(listing_of, areas), strict=True))


def _readable_run(call: Call) -> RunRecord:
    run = call.deps.runs.get_run(call.run_id)
    require_reader(call.deps.settings, call.caller, run)
    return run


def run_page(call: Call) -> Any:
    """GET /ui/runs/{id}: a run."""
    run = _readable_run(call)
    parent, children = related_runs(call.deps.engine, run)
    if parent is None and run.parent_run_id:  # gone from the ledger: still named
        parent = {"id": run.parent_run_id, "status": None, "name": None}
    return html(
        "run.html",
        **_live_context(call, run),
        parent=parent,
        children=children,
        files=_files(call, run),
        caller=call.caller.email,
    )


def run_live(call: Call) -> Any:
    """GET /ui/runs/{id}/live: the run page's live parts (the page swaps them in by id); its files too
    with ?files=1 (the page asks on status changes only: listing them is three storage requests)."""
    run = _readable_run(call)
    files = _files(call, run) if call.request.args.get("files") == "1" else None
    return html("_run_live.html", **_live_context(call, run), live_files=files)


def file_link(call: Call) -> Any:
    """GET /ui/runs/{id}/files/{area}/{path}: 302 to a download URL of that object of the run, made now
    (valid FILE_URL_TTL), so the page's links never go stale; 404 for a path outside the area or absent."""
    run = _readable_run(call)
    area, path = call.params["area"], call.params["path"]
    parts = path.split("/")
    if any(p in ("", ".", "..") for p in parts) or "\\" in path or len(path) > 1024:
        raise ApiError(400, "bad_request", f"{path!r} is not a file path of the run")
    uri = run.get(AREAS[area])
    if not uri:
        raise ApiError(404, "not_found", f"run {run.id} has no {area} location")
    bucket, prefix = split_gs_uri(uri.rstrip("/") + "/")
    storage = call.deps.storage
    try:
        found = storage.stat(bucket, prefix + path)
    except StorageForbidden as exc:
        raise ApiError(403, "unreadable", f"the API may not read {uri}") from exc
    if found is None:
        raise ApiError(404, "not_found", f"run {run.id} has no {area} file {path!r}")
    return flask.redirect(storage.download_url(bucket, prefix + path, FILE_URL_TTL), 302)

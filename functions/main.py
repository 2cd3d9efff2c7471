"""Cloud Run function entry points: parse the event, call one service, return (ack) or raise (redeliver).

Importing this module must stay cheap (cold start): SDKs and the package's services are imported inside
the entry point that needs them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import functions_framework

if TYPE_CHECKING:
    import flask
    from cloudevents.http import CloudEvent


@functions_framework.cloud_event
def submit_bundle(cloud_event: CloudEvent) -> None:
    """Inbox object finalized: submit the bundle when the object is its manifest (run.yaml)."""
    from arc_reactor.core.events import parse_storage_event
    from arc_reactor.delivery import acknowledging_permanent_errors
    from arc_reactor.services.submit import handle_inbox_object
    from arc_reactor.wiring import get_deps

    with acknowledging_permanent_errors("submit_bundle"):
        event = parse_storage_event(cloud_event.get_attributes(), cloud_event.get_data())
        handle_inbox_object(get_deps(), event)


@functions_framework.cloud_event
def reconcile_batch_event(cloud_event: CloudEvent) -> None:
    """Batch job/task state changed (Pub/Sub): read the job and apply its state to the run."""
    from arc_reactor.core.events import parse_pubsub_event
    from arc_reactor.delivery import acknowledging_permanent_errors
    from arc_reactor.services.reconcile import handle_batch_notification
    from arc_reactor.wiring import get_deps

    with acknowledging_permanent_errors("reconcile_batch_event"):
        message = parse_pubsub_event(cloud_event.get_attributes(), cloud_event.get_data())
        handle_batch_notification(get_deps(), message)


@functions_framework.cloud_event
def sweep_stale_runs(cloud_event: CloudEvent) -> None:
    """Scheduled (Pub/Sub): check runs stuck in submitted/running against Batch."""
    from arc_reactor.delivery import acknowledging_permanent_errors
    from arc_reactor.services.sweep import sweep
    from arc_reactor.wiring import get_deps

    with acknowledging_permanent_errors("sweep_stale_runs"):
        sweep(get_deps())


def not_routed(error: Exception) -> Any:
    """A path the framework itself cannot route to the function (one with a newline, say) is answered as
    runs_api answers an unknown path, in JSON (a WES ErrorResponse under /ga4gh/wes/), never with the
    framework's HTML page."""
    import flask

    from arc_reactor.api.app import not_routed as answer

    return answer(flask.request)


def _register_not_routed() -> None:
    """functions-framework runs this module inside its app's context: register the handler on that app
    (its module-level `errorhandler` is one global, which apps made at once in threads overwrite)."""
    import flask  # already imported by functions_framework

    if flask.has_app_context():
        flask.current_app.register_error_handler(404, not_routed)


_register_not_routed()


@functions_framework.http
def runs_api(request: flask.Request) -> Any:
    """HTTP Runs API (docs/api.md): POST/GET /runs, GET /runs/{id}, GET /runs/{id}/events (SSE),
    GET /runs/{id}/logs, POST /runs/{id}:cancel, POST /runs/{id}:recover, GET /openapi.json, GET /healthz."""
    from arc_reactor.api.app import handle
    from arc_reactor.wiring import get_deps

    return handle(get_deps(), request)

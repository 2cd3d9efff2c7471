"""The local stack's Eventarc-like router (local/router.py) against real HTTP servers on loopback and the
real submit_bundle function: header values encoded as the CloudEvents HTTP binding says, one queue per
trigger, and no failure that goes unseen."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from flow import upload_bundle, upload_demo_data

from arc_reactor.core.events import storage_cloudevent
from arc_reactor.local.router import EventRouter, encode_header_value

pytestmark = pytest.mark.integration


@contextmanager
def http_server(app: Callable) -> Iterator[str]:
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def answering(status: str, seen: list[dict] | None = None, gate: threading.Event | None = None) -> Callable:
    def app(environ, start_response):
        if gate is not None:
            gate.wait(10)
        if seen is not None:
            seen.append({k: v for k, v in environ.items() if k.startswith("HTTP_CE_")})
        start_response(status, [("Content-Type", "text/plain")])
        return [b""]

    return app


def test_header_values_are_percent_encoded_as_the_binding_says():
    assert encode_header_value("objects/Ελλάδα é/run.yaml") == (
        "objects/%CE%95%CE%BB%CE%BB%CE%AC%CE%B4%CE%B1%20%C3%A9/run.yaml"
    )
    assert encode_header_value('a"b%c\nd') == "a%22b%25c%0Ad"
    assert encode_header_value("plain-ASCII_1.2:3") == "plain-ASCII_1.2:3"


def test_an_object_name_outside_latin_1_or_with_a_newline_is_delivered():
    seen: list[dict] = []
    router = EventRouter(attempts=1)
    with http_server(answering("200 OK", seen)) as url:
        for name in ("Μελέτη-Ωμέγα/run.yaml", "line\nbreak/run.yaml"):
            attrs, data = storage_cloudevent({"bucket": "arc-inbox", "name": name, "generation": "1"})
            assert router.post(url, attrs, data).result(10) == 200
    router.close()
    assert router.stats.delivered == 2 and router.stats.dead_lettered == 0
    assert seen[0]["HTTP_CE_SUBJECT"] == "objects/" + encode_header_value("Μελέτη-Ωμέγα/run.yaml")


def test_a_bundle_in_a_greek_folder_becomes_a_run_through_the_router(app_env, gcs, engine):
    from arc_reactor.local.functions_host import serve_function, stop_function

    upload_demo_data(gcs)
    manifest = upload_bundle(gcs, "Μελέτη-Ωμέγα")
    info = gcs.stat("arc-inbox", manifest)
    attrs, data = storage_cloudevent(
        {"bucket": "arc-inbox", "name": manifest, "generation": str(info.generation), "size": str(info.size)}
    )
    fn = serve_function("submit_bundle", "cloudevent")
    router = EventRouter(attempts=2, backoff=0.01)
    try:
        assert router.post(fn.url, attrs, data).result(30) == 200
    finally:
        router.close()
        stop_function(fn)
    feedback = json.loads(gcs.read_bytes("arc-inbox", manifest + ".accepted.json"))
    assert feedback["outcome"] == "submitted"
    assert router.stats.dead_lettered == 0


def test_a_function_that_keeps_failing_is_dead_lettered_with_the_reason():
    router = EventRouter(attempts=3, backoff=0.01)
    with http_server(answering("500 INTERNAL SERVER ERROR")) as url:
        assert router.post(url, {"id": "e1", "type": "t"}, {}).result(10) == 500
    router.close()
    assert (router.stats.redelivered, router.stats.dead_lettered) == (2, 1)
    assert router.stats.dead_letters[0]["reason"] == "HTTP 500"


def test_an_unreachable_function_is_counted_and_dead_lettered_never_silent(arc_logs):
    with http_server(answering("200 OK")) as url:
        pass  # the server is gone: nothing listens on its port any more
    router = EventRouter(attempts=2, backoff=0.01, timeout=2)
    assert router.post(url, {"id": "e2", "type": "t"}, {}).result(10) == 0
    router.close()
    assert (router.stats.failed_attempts, router.stats.dead_lettered) == (2, 1)
    assert "ConnectionError" in router.stats.dead_letters[0]["reason"]
    assert any(r.getMessage().startswith("event e2 dead-lettered") for r in arc_logs)


def test_an_event_that_cannot_be_encoded_is_dead_lettered_at_once():
    router = EventRouter(attempts=3, backoff=0.01)
    assert router.post("http://127.0.0.1:9/", {"id": "e3"}, {"when": object()}).result(10) == 0
    router.close()
    assert router.stats.dead_lettered == 1
    assert "cannot encode" in router.stats.dead_letters[0]["reason"]


def test_each_trigger_has_its_own_queue():
    """A burst on one trigger (here: held by a stuck function) does not starve another trigger."""
    gate = threading.Event()
    router = EventRouter(attempts=1, workers=1)
    with http_server(answering("200 OK", gate=gate)) as stuck, http_server(answering("200 OK")) as free:
        held = [router.post(stuck, {"id": f"s{i}"}, {}) for i in range(3)]
        assert router.post(free, {"id": "f"}, {}).result(10) == 200
        assert not any(f.done() for f in held)
        gate.set()
        assert [f.result(10) for f in held] == [200, 200, 200]
    router.close()

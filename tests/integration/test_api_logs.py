"""GET /runs/{id}/logs: on the local stack from the job's attempt files; in the cloud from Cloud Logging,
here the real LoggingServiceV2Client talking to a local gRPC server that plays Cloud Logging."""

from concurrent import futures

import pytest
from flow import function_client, upload_demo_data
from test_runs_api import demo_body, get_conforming, transition

pytestmark = pytest.mark.integration


@pytest.fixture
def api(app_env, gcs, tmp_path, monkeypatch):
    from arc_reactor.settings import get_settings
    from arc_reactor.wiring import reset_deps

    monkeypatch.setenv("ARC_PGSERVER_DIR", str(tmp_path / "state" / "pgdata"))  # as local/stack.py sets it
    get_settings.cache_clear()
    reset_deps()
    upload_demo_data(gcs)
    return function_client("runs_api", "http")


def _page(api, run_id, **query):
    return get_conforming(api, "/runs/{run_id}/logs", f"/runs/{run_id}/logs", **query)


def test_local_logs_page_through_every_attempt(api, engine, tmp_path):
    run = api.post("/runs", json=demo_body()).get_json()
    job_dir = tmp_path / "state" / "jobs" / f"arc-{run['id']}"
    job_dir.mkdir(parents=True)
    lines0 = [
        '{"severity":"INFO","message":"orchestrator starting","time":"2026-11-22T10:00:00Z"}',
        *(f"plain line {i}" for i in range(5)),
    ]
    (job_dir / "attempt-0.log").write_text("\n".join(lines0) + "\n")
    (job_dir / "attempt-1.log").write_text("retried\nhalf a li")  # the last line is still being written
    first = _page(api, run["id"], page_size=4)
    assert first["source"] == "local"
    assert first["lines"][0] == {
        "timestamp": "2026-11-22T10:00:00Z", "severity": "INFO", "message": "orchestrator starting",
    }  # fmt: skip
    assert [ln["message"] for ln in first["lines"][1:]] == ["plain line 0", "plain line 1", "plain line 2"]
    rest = _page(api, run["id"], page_size=100, page_token=first["next_page_token"])
    assert [ln["message"] for ln in rest["lines"]] == ["plain line 3", "plain line 4", "retried"]
    assert rest["next_page_token"]  # the run goes on: a follower resumes here
    transition(engine, run["id"], "failed")
    (job_dir / "attempt-1.log").write_text("retried\nhalf a line\n")
    last = _page(api, run["id"], page_token=rest["next_page_token"])
    assert [ln["message"] for ln in last["lines"]] == ["half a line"]
    assert last["next_page_token"] is None
    assert api.get(f"/runs/{run['id']}/logs?page_token=@@").status_code == 400
    assert api.get(f"/runs/{run['id']}/logs?page_size=0").status_code == 400
    assert api.get("/runs/r000000000000000000/logs").status_code == 404


class FakeLogging:
    """Serves ListLogEntries over gRPC: two pages of entries, remembering the requests."""

    def __init__(self):
        import grpc
        from google.cloud.logging_v2.types import ListLogEntriesRequest, ListLogEntriesResponse

        self.requests = []
        self.deny = False
        handler = grpc.method_handlers_generic_handler(
            "google.logging.v2.LoggingServiceV2",
            {
                "ListLogEntries": grpc.unary_unary_rpc_method_handler(
                    self.list_entries,
                    request_deserializer=ListLogEntriesRequest.deserialize,
                    response_serializer=ListLogEntriesResponse.serialize,
                )
            },
        )
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        self.server.add_generic_rpc_handlers((handler,))
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def list_entries(self, request, context):
        import grpc
        from google.cloud.logging_v2.types import ListLogEntriesResponse, LogEntry
        from google.protobuf import struct_pb2, timestamp_pb2

        self.requests.append(request)
        if self.deny:
            context.abort(grpc.StatusCode.PERMISSION_DENIED, "logging.logEntries.list denied")
        ts = timestamp_pb2.Timestamp(seconds=1_800_000_000)
        if not request.page_token:
            payload = struct_pb2.Struct()
            payload.update({"message": "engine exited with code 0", "severity": "INFO"})
            entries = [
                LogEntry(text_payload="Building DAG of jobs...", timestamp=ts, severity="INFO"),
                LogEntry(json_payload=payload, timestamp=ts, severity="WARNING"),
            ]
            return ListLogEntriesResponse(entries=entries, next_page_token="page-2")
        return ListLogEntriesResponse(entries=[LogEntry(text_payload="done", timestamp=ts, severity="ERROR")])

    def client(self):
        import grpc
        from google.cloud.logging_v2.services.logging_service_v2 import LoggingServiceV2Client
        from google.cloud.logging_v2.services.logging_service_v2.transports import (
            LoggingServiceV2GrpcTransport,
        )

        channel = grpc.insecure_channel(f"127.0.0.1:{self.port}")
        return LoggingServiceV2Client(transport=LoggingServiceV2GrpcTransport(channel=channel))


def as_deployed(monkeypatch, fake):
    """runs_api as deployed (no ARC_LOCAL), reading Cloud Logging from `fake`; any token is ada's."""
    from arc_reactor.adapters.cloud_logging import CloudLogs
    from arc_reactor.settings import get_settings
    from arc_reactor.wiring import get_deps, reset_deps

    monkeypatch.delenv("ARC_LOCAL")
    monkeypatch.setenv("ARC_SERVICE_URL", "https://runs-api-1.us-central1.run.app")
    monkeypatch.setenv("ARC_READER_MEMBERS", "ada@example.org")  # the run was made on the local stack
    monkeypatch.setenv("ARC_GROUP_LOOKUP", "false")  # no Google credentials in tests
    get_settings.cache_clear()
    reset_deps()
    deps = get_deps()
    deps.token_verifier = type("Anyone", (), {"verify": lambda self, t, a: {"email": "ada@example.org"}})()
    deps.cloud_logs = CloudLogs("arc-test", client=fake.client())


def test_cloud_logs_come_from_cloud_logging_by_the_job(api, monkeypatch):
    run = api.post("/runs", json=demo_body()).get_json()
    fake = FakeLogging()
    try:
        as_deployed(monkeypatch, fake)
        auth = {"Authorization": "Bearer x"}
        first = api.get(f"/runs/{run['id']}/logs?page_size=2", headers=auth).get_json()
        assert first["source"] == "cloud_logging"
        assert [(ln["severity"], ln["message"]) for ln in first["lines"]] == [
            ("INFO", "Building DAG of jobs..."),
            ("WARNING", "engine exited with code 0"),
        ]
        assert first["lines"][0]["timestamp"].startswith("2027-01-15T08:00:00")
        query = {"page_token": first["next_page_token"]}
        second = api.get(f"/runs/{run['id']}/logs", query_string=query, headers=auth).get_json()
        assert [ln["message"] for ln in second["lines"]] == ["done"]
        assert second["next_page_token"] is None
    finally:
        fake.server.stop(0)
    request = fake.requests[0]
    assert request.resource_names == ["projects/arc-test"]
    assert request.order_by == "timestamp asc" and request.page_size == 2
    assert 'logName="projects/arc-test/logs/batch_task_logs"' in request.filter
    assert "labels.job_uid=" in request.filter and f'labels."run-id"="{run["id"]}"' in request.filter
    assert fake.requests[1].page_token == "page-2"


def test_cloud_logging_that_refuses_us_is_a_502_naming_it_not_a_500(api, monkeypatch):
    run = api.post("/runs", json=demo_body()).get_json()
    fake = FakeLogging()
    fake.deny = True
    try:
        as_deployed(monkeypatch, fake)
        resp = api.get(f"/runs/{run['id']}/logs", headers={"Authorization": "Bearer x"})
    finally:
        fake.server.stop(0)
    assert resp.status_code == 502
    error = resp.get_json()["error"]
    assert error["code"] == "dependency_refused" and "Cloud Logging refused" in error["message"]

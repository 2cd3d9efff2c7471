"""A run's billed cost from the Cloud Billing export (adapters/billing.py), through GET /runs/{id}.

BigQuery is live Google Cloud, which cannot run here: a local HTTP server stands in for its REST API's
jobs.query method (POST /bigquery/v2/projects/{project}/queries), answering in its documented shape, while
the real google-cloud-bigquery client sends the query. The test checks what the client sent (the table,
the `run-id` label, the partition bound, the parameters) and what runs_api made of the answers."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from flow import function_client, upload_demo_data
from test_runs_api import demo_body

pytestmark = pytest.mark.integration
TABLE = "billing-proj.billing.gcp_billing_export_v1_010101_F0FFF0_10X10X"


class FakeBigQuery:
    """jobs.query answers: `answers` is popped in order (a dict: rows; an int: that HTTP error)."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.answers: list[Any] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.requests.append((self.path, body))
                answer = fake.answers.pop(0)
                status, out = (
                    (answer, {"error": {"code": answer, "message": "boom"}})
                    if isinstance(answer, int)
                    else (200, fake.response(answer["rows"]))
                )
                data = json.dumps(out).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    @staticmethod
    def response(rows: list[tuple[str, str, str]]) -> dict[str, Any]:
        fields = [{"name": "currency", "type": "STRING"}, {"name": "total", "type": "FLOAT"},
                  {"name": "as_of", "type": "TIMESTAMP"}]  # fmt: skip
        return {
            "kind": "bigquery#queryResponse", "jobComplete": True, "queryId": "q-1",
            "schema": {"fields": fields}, "rows": [{"f": [{"v": v} for v in row]} for row in rows],
            "totalRows": str(len(rows)),
        }  # fmt: skip


@pytest.fixture
def bigquery(app_env, monkeypatch) -> Iterator[FakeBigQuery]:
    from arc_reactor.wiring import reset_deps

    fake = FakeBigQuery()
    monkeypatch.setenv("ARC_BILLING_EXPORT_TABLE", TABLE)
    monkeypatch.setenv("ARC_BIGQUERY_ENDPOINT", fake.url)
    reset_deps()
    yield fake
    fake.server.shutdown()


def test_the_runs_billed_cost_comes_from_its_run_id_label_in_the_export(bigquery, gcs):
    upload_demo_data(gcs)
    api = function_client("runs_api", "http")
    run = api.post("/runs", json=demo_body()).get_json()
    # The query's answer: 1.25 USD net of credits, exported at 2026-12-07T12:00:00Z (in microseconds, as
    # the client asks with formatOptions.useInt64Timestamp).
    bigquery.answers = [{"rows": [("USD", "1.25", "1796644800000000")]}]
    cost = api.get(f"/runs/{run['id']}").get_json()["cost"]
    assert cost["billed"] == {
        "total": 1.25,
        "currency": "USD",
        "as_of": "2026-12-07T12:00:00+00:00",
        "error": None,
    }
    assert cost["estimate"]["total"] == 0.0  # not started: nothing estimated yet
    path, sent = bigquery.requests[0]
    assert path.startswith("/bigquery/v2/projects/arc-test/queries")
    assert f"FROM `{TABLE}`" in sent["query"] and "l.key = 'run-id' AND l.value = @run_id" in sent["query"]
    assert "DATE(_PARTITIONTIME) >= DATE(@since)" in sent["query"]  # only the partitions since the run began
    params = {p["name"]: p["parameterValue"]["value"] for p in sent["queryParameters"]}
    assert params["run_id"] == run["id"] and params["since"].startswith(run["created_at"][:10])
    assert int(sent["maximumBytesBilled"]) <= 10 * 1024**3

    api.get(f"/runs/{run['id']}")
    assert len(bigquery.requests) == 1  # kept for an hour: the export is hours behind anyway


def test_a_failed_or_empty_query_is_said_as_such_never_as_a_figure(bigquery, gcs):
    upload_demo_data(gcs)
    api = function_client("runs_api", "http")
    failing, empty = (api.post("/runs", json=demo_body()).get_json()["id"] for _ in range(2))
    bigquery.answers = [403, {"rows": []}]
    resp = api.get(f"/runs/{failing}")
    assert resp.status_code == 200  # the run is still shown, with its estimate
    assert resp.get_json()["cost"]["billed"] == {
        "total": None,
        "currency": None,
        "as_of": None,
        "error": "Forbidden",
    }
    assert api.get(f"/runs/{empty}").get_json()["cost"]["billed"]["total"] is None

"""runs_api through the real functions-framework app, on real PostgreSQL, the storage emulator and the local
Batch service."""

import pytest
from flow import DEMO_BUNDLE, function_client, upload_demo_data

pytestmark = pytest.mark.integration


def _demo_body(**overrides):
    body = {
        "pipeline": "arc/fastq-stats",
        "revision": "1.0.0",
        "name": "api run",
        "samplesheet": (DEMO_BUNDLE / "samplesheet.csv").read_text(),
        "params": {"min_quality": 20},
        "labels": {"project": "demo"},
    }
    body.update(overrides)
    return body


@pytest.fixture
def api(app_env, gcs):
    upload_demo_data(gcs)
    return function_client("runs_api", "http")


def test_healthz(api):
    resp = api.get("/healthz")
    assert resp.status_code == 200
    assert resp.get_json() == {"status": "ok"}


def test_post_runs_creates_and_submits_a_run(api, gcs, batch_server):
    resp = api.post("/runs", json=_demo_body())
    assert resp.status_code == 201, resp.get_json()
    run = resp.get_json()
    assert run["status"] == "submitted"
    assert run["pipeline"] == "arc/fastq-stats"
    assert run["labels"] == {"project": "demo"}
    assert run["params"] == {"min_quality": 20}
    assert run["batch_job_name"].endswith(f"jobs/arc-{run['id']}")
    assert len(batch_server.jobs()) == 1
    params = gcs.read_bytes("arc-runs", f"runs/{run['id']}/inputs/params.yaml").decode()
    assert f"input: gs://arc-runs/runs/{run['id']}/inputs/samplesheet.csv" in params
    assert f"outdir: gs://arc-runs/runs/{run['id']}/results" in params


def test_post_runs_with_the_same_idempotency_key_returns_the_same_run(api, batch_server):
    first = api.post("/runs", json=_demo_body(), headers={"Idempotency-Key": "k-1"})
    again = api.post("/runs", json=_demo_body(), headers={"Idempotency-Key": "k-1"})
    assert first.status_code == 201
    assert again.status_code == 200
    assert again.get_json()["id"] == first.get_json()["id"]
    assert len(batch_server.jobs()) == 1


def test_post_runs_invalid_lists_every_problem_and_records_nothing(api, engine, batch_server):
    resp = api.post(
        "/runs",
        json=_demo_body(pipeline="nf-core/nosuch", samplesheet="sample,fastq_1\nbad name,x.txt,extra\n"),
    )
    assert resp.status_code == 422
    err = resp.get_json()["error"]
    assert err["code"] == "invalid_bundle"
    files = {p["file"] for p in err["problems"]}
    assert {"run.yaml", "samplesheet.csv"} <= files
    assert api.get("/runs").get_json()["runs"] == []
    assert batch_server.jobs() == []


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]"])
def test_post_runs_needs_a_json_object(api, body):
    resp = api.post("/runs", data=body, content_type="application/json")
    assert resp.status_code == 400
    assert resp.get_json()["error"]["code"] == "bad_request"


def test_get_run_and_errors(api):
    run = api.post("/runs", json=_demo_body()).get_json()
    got = api.get(f"/runs/{run['id']}")
    assert got.status_code == 200
    body = got.get_json()
    assert body["id"] == run["id"]
    assert [e["to_status"] for e in body["events"]] == ["pending", "submitted"]
    assert api.get("/runs/r0000000000000000000").status_code in (400, 404)
    assert api.get("/runs/r000000000000000000").status_code == 404
    assert api.get("/runs/../etc").status_code in (400, 404)
    assert api.get("/runs/NOT-AN-ID").get_json()["error"]["code"] == "bad_request"
    assert api.delete(f"/runs/{run['id']}").status_code == 405
    assert api.get("/nowhere").status_code == 404


def test_list_runs_newest_first_with_keyset_pages_and_filter(api):
    ids = [api.post("/runs", json=_demo_body(name=f"run {i}")).get_json()["id"] for i in range(5)]
    seen, token = [], None
    while True:
        resp = api.get("/runs", query_string={"page_size": 2, **({"page_token": token} if token else {})})
        assert resp.status_code == 200
        page = resp.get_json()
        seen += [r["id"] for r in page["runs"]]
        token = page.get("next_page_token")
        if not token:
            break
    assert seen == list(reversed(ids))
    assert len(api.get("/runs?status=submitted").get_json()["runs"]) == 5
    assert api.get("/runs?status=completed").get_json()["runs"] == []


@pytest.mark.parametrize(
    "query",
    ["page_size=0", "page_size=101", "page_size=x", "status=done", "page_token=%%%", "page_token=e30="],
)
def test_list_runs_rejects_bad_parameters(api, query):
    resp = api.get(f"/runs?{query}")
    assert resp.status_code == 400
    assert resp.get_json()["error"]["code"] == "bad_request"

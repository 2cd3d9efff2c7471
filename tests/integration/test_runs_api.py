"""runs_api through the real functions-framework app, on real PostgreSQL, the storage emulator and the local
Batch service."""

import io

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


def test_pipelines_lists_the_registry(api):
    from arc_reactor.core.registry import load_registry

    body = get_conforming(api, "/pipelines", "/pipelines")
    names = [p["name"] for p in body["pipelines"]]
    assert names == sorted(load_registry().pipelines) == ["arc/fastq-stats", "nf-core/scrnaseq"]
    scrnaseq = body["pipelines"][1]
    assert (scrnaseq["engine"], scrnaseq["default_revision"]) == ("nextflow", "4.0.0")
    assert scrnaseq["revisions"] == ["4.0.0", "3.0.0", "2.7.1"]
    assert api.get("/pipelines?engine=nextflow").status_code == 400


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


def test_a_parameter_the_pipeline_does_not_know_is_a_warning_kept_with_the_run(
    api, engine, gcs, batch_server
):
    from arc_reactor.adapters import runs_repo

    resp = api.post("/runs", json=_demo_body(params={"min_qualty": 30}))
    assert resp.status_code == 201, resp.get_json()
    assert_conforms(resp, "POST", "/runs")
    run = resp.get_json()
    [warning] = run["warnings"]
    assert (warning["file"], warning["field"]) == ("params.yaml", "min_qualty")
    assert warning["message"].endswith("did you mean min_quality?")
    assert run["status"] == "submitted"  # nf-schema's default: warn, run anyway
    notes = [e["detail"] for e in runs_repo.list_events(engine, run["id"]) if e["kind"] == "note"]
    assert [n["reason"] for n in notes] == ["submission_warnings"]
    assert "min_qualty" in notes[0]["message"]
    assert api.post("/runs", json=_demo_body()).get_json()["warnings"] == []


def test_post_runs_with_the_same_idempotency_key_returns_the_same_run(api, batch_server):
    first = api.post("/runs", json=_demo_body(), headers={"Idempotency-Key": "k-1"})
    again = api.post("/runs", json=_demo_body(), headers={"Idempotency-Key": "k-1"})
    assert first.status_code == 201
    assert again.status_code == 200
    assert again.get_json()["id"] == first.get_json()["id"]
    assert len(batch_server.jobs()) == 1


def test_an_idempotency_key_is_the_callers_own_and_names_one_request(api, batch_server):
    ada, bob = {"X-Arc-Submitter": "ada@example.org"}, {"X-Arc-Submitter": "bob@example.org"}
    first = api.post("/runs", json=_demo_body(), headers={"Idempotency-Key": "k-2", **ada})
    theirs = api.post("/runs", json=_demo_body(name="bob's"), headers={"Idempotency-Key": "k-2", **bob})
    assert (first.status_code, theirs.status_code) == (
        201,
        201,
    )  # bob's key is bob's: his body is not dropped
    assert theirs.get_json()["name"] == "bob's" and theirs.get_json()["id"] != first.get_json()["id"]
    changed = api.post("/runs", json=_demo_body(name="other"), headers={"Idempotency-Key": "k-2", **ada})
    assert changed.status_code == 422
    error = changed.get_json()["error"]
    assert error["code"] == "idempotency_key_reused" and first.get_json()["id"] in error["message"]
    assert len(batch_server.jobs()) == 2


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


# --- shared helpers (other test_api_* modules import them) --------------------------------------------------


def demo_body(**overrides):
    """A valid JSON submission of the demo pipeline."""
    return _demo_body(**overrides)


def assert_conforms(resp, method: str, template: str) -> None:
    """The response matches what /openapi.json promises for that operation and status."""
    from jsonschema import Draft202012Validator

    from arc_reactor.api.openapi import openapi_document

    doc = openapi_document()
    responses = doc["paths"][template][method.lower()]["responses"]
    spec = responses.get(str(resp.status_code)) or responses["default"]
    content = spec["content"]
    assert resp.mimetype in content, (resp.status_code, resp.mimetype, list(content))
    if resp.mimetype != "application/json":
        return
    schema = {**content["application/json"]["schema"], "components": doc["components"]}
    errors = list(Draft202012Validator(schema).iter_errors(resp.get_json()))
    assert not errors, [e.message for e in errors[:5]]


def get_conforming(api, template: str, path: str, **query):
    """GET `path`: a 200 whose body matches what /openapi.json promises for `template`; the body."""
    resp = api.get(path, query_string=query)
    assert resp.status_code == 200, resp.get_json()
    assert_conforms(resp, "GET", template)
    return resp.get_json()


def transition(engine, run_id, status, source="batch", **fields):
    """Move a run through the status machine, as the reconcile function or the hooks would."""
    from arc_reactor.adapters import runs_repo
    from arc_reactor.core.status import RunStatus

    return runs_repo.transition(engine, run_id, RunStatus(status), source, fields=fields or None)


def active_and_finished(gcs, engine) -> tuple[str, str]:
    """Two real runs submitted through the API, for fuzzing tests to name: one running, one failed."""
    upload_demo_data(gcs)
    api = function_client("runs_api", "http")
    active = api.post("/runs", json=demo_body()).get_json()["id"]
    finished = api.post("/runs", json=demo_body()).get_json()["id"]
    transition(engine, active, "running")
    transition(engine, finished, "failed")
    return active, finished


# --- POST /runs ---------------------------------------------------------------------------------------------


def test_post_runs_multipart_with_the_bundle_files(api, batch_server):
    sheet = (DEMO_BUNDLE / "samplesheet.csv").read_bytes()
    form = {
        "samplesheet": (io.BytesIO(b"\xef\xbb\xbf" + sheet), "samplesheet.csv"),  # a BOM is tolerated
        "params": (io.BytesIO(b"min_quality: 25\n"), "params.yaml"),
        "pipeline": "arc/fastq-stats",
        "name": "from a form",
        "label": ["team=genomics", "cost-center=42"],
    }
    resp = api.post("/runs", data=form, content_type="multipart/form-data")
    assert resp.status_code == 201, resp.get_json()
    assert_conforms(resp, "POST", "/runs")
    run = resp.get_json()
    assert (run["name"], run["params"], run["labels"]) == (
        "from a form",
        {"min_quality": 25},
        {"team": "genomics", "cost-center": "42"},
    )
    assert resp.headers["Location"] == f"/runs/{run['id']}"
    manifest = (DEMO_BUNDLE / "run.yaml").read_bytes()
    whole = {"run.yaml": (io.BytesIO(manifest), "run.yaml"), "samplesheet.csv": (io.BytesIO(sheet), "s.csv")}
    resp = api.post("/runs", data=whole, content_type="multipart/form-data")
    assert resp.status_code == 201, resp.get_json()
    assert resp.get_json()["labels"] == {"project": "arc-demo", "purpose": "quickstart"}


def test_post_runs_multipart_problems_are_all_listed(api):
    form = {
        "samplesheet": (io.BytesIO(b"x"), "a.csv"),
        "run.yaml": (io.BytesIO(b"pipeline: arc/fastq-stats\n"), "run.yaml"),
        "pipeline": "arc/fastq-stats",
        "label": "no-equals-sign",
        "surprise": "!",
    }
    resp = api.post("/runs", data=form, content_type="multipart/form-data")
    assert resp.status_code == 400
    assert_conforms(resp, "POST", "/runs")
    messages = " | ".join(p["message"] for p in resp.get_json()["error"]["problems"])
    assert "unknown part" in messages and "key=value" in messages and "not both" in messages


def test_post_runs_json_shape_problems_are_400_and_bundle_problems_422(api):
    resp = api.post("/runs", json={"pipeline": 7, "labels": ["x"], "samplesheet": {"hex": "00"}, "extra": 1})
    assert resp.status_code == 400
    fields = {p["field"] for p in resp.get_json()["error"]["problems"]}
    assert fields == {"pipeline", "labels", "samplesheet", "extra"}
    resp = api.post(
        "/runs",
        json=demo_body(
            name="x" * 300,
            labels={"ok": "yes", "bad": 3},
            params={"min_quality": "high"},
            samplesheet="sample,fastq_1,fastq_2\nbad name,gs://arc-demo-data/fastq/sample1_R1.fastq.gz,\n",
        ),
    )
    assert resp.status_code == 422
    assert_conforms(resp, "POST", "/runs")
    problems = resp.get_json()["error"]["problems"]
    assert {p["file"] for p in problems} >= {"run.yaml", "samplesheet.csv", "params.yaml"}
    assert api.get("/runs").get_json()["runs"] == []


def test_post_runs_checks_that_gs_files_exist(api, gcs):
    sheet = (DEMO_BUNDLE / "samplesheet.csv").read_text().replace("sample2_R2", "sample2_R9")
    resp = api.post("/runs", json=demo_body(samplesheet=sheet))
    assert resp.status_code == 422
    [problem] = resp.get_json()["error"]["problems"]
    assert problem == {
        "file": "samplesheet.csv",
        "line": 3,
        "field": "fastq_2",
        "message": "gs://arc-demo-data/fastq/sample2_R9.fastq.gz does not exist",
    }


def test_post_runs_refuses_recoveries_other_media_and_oversized_bodies(api, monkeypatch):
    manifest = b"pipeline: arc/fastq-stats\nparent_run_id: r000000000000000000\n"
    form = {"run.yaml": (io.BytesIO(manifest), "run.yaml"), "samplesheet": (io.BytesIO(b"a"), "s.csv")}
    resp = api.post("/runs", data=form, content_type="multipart/form-data")
    assert resp.status_code == 400
    assert "recover" in resp.get_json()["error"]["problems"][0]["message"]
    resp = api.post("/runs", data="pipeline=x", content_type="text/plain")
    assert resp.status_code == 415
    monkeypatch.setenv("ARC_MAX_FILE_BYTES", "1024")
    _fresh_settings()
    resp = api.post("/runs", json=demo_body(samplesheet="x" * 200_000))
    assert resp.status_code == 413
    assert resp.get_json()["error"]["code"] == "request_entity_too_large"
    assert api.post("/runs", json=demo_body(), headers={"Idempotency-Key": "bad key"}).status_code == 400


def _fresh_settings():
    from arc_reactor.settings import get_settings
    from arc_reactor.wiring import reset_deps

    get_settings.cache_clear()
    reset_deps()


# --- GET /runs and GET /runs/{id} ---------------------------------------------------------------------------


def test_list_runs_filters(api, engine):
    a = api.post("/runs", json=demo_body(labels={"project": "a", "tier": "gold"})).get_json()
    b = api.post("/runs", json=demo_body(labels={"project": "b"}), headers={"X-Arc-Submitter": "b@x.org"})
    b = b.get_json()
    transition(engine, a["id"], "running")

    def ids(query):
        resp = api.get(f"/runs?{query}")
        assert resp.status_code == 200, resp.get_json()
        assert_conforms(resp, "GET", "/runs")
        return [r["id"] for r in resp.get_json()["runs"]]

    assert ids("status=running") == [a["id"]]
    assert ids("status=running,submitted") == [b["id"], a["id"]]
    assert ids("status=running&status=submitted") == [b["id"], a["id"]]
    assert ids("submitter=b@x.org") == [b["id"]]
    assert ids("label=project=a") == [a["id"]]
    assert ids("label=project=a&label=tier=gold") == [a["id"]]
    assert ids("label=project=a&label=tier=silver") == []
    assert ids("pipeline=arc/fastq-stats") == [b["id"], a["id"]]
    assert ids("pipeline=nf-core/scrnaseq") == []
    after = b["created_at"].replace("+00:00", "Z")
    assert ids(f"created_before={after}") == [a["id"]]
    assert ids(f"created_after={a['created_at'].replace('+', '%2B')}") == [b["id"]]


def test_list_runs_every_problem_at_once_and_tokens_bound_to_their_filters(api):
    for _ in range(3):
        api.post("/runs", json=demo_body())
    resp = api.get("/runs?page_size=0&status=done&label=nokey&created_after=2026-01-01T00:00:00&colour=red")
    assert resp.status_code == 400
    fields = sorted(p["field"] for p in resp.get_json()["error"]["problems"])
    assert fields == ["colour", "created_after", "label", "page_size", "status"]
    token = api.get("/runs?page_size=1").get_json()["next_page_token"]
    assert api.get(f"/runs?page_size=1&page_token={token}").status_code == 200
    resp = api.get(f"/runs?page_size=1&page_token={token}&status=failed")
    assert resp.status_code == 400
    assert "other filters" in resp.get_json()["error"]["problems"][0]["message"]


def test_get_run_has_relatives_locations_and_last_events(api, engine, gcs):
    parent = api.post("/runs", json=demo_body()).get_json()
    transition(engine, parent["id"], "failed", error_code="pipeline_error", exit_code=1)
    gcs.write_bytes("arc-runs", f"work/{parent['id']}/.snakemake/metadata/x", b"{}")
    child = api.post(f"/runs/{parent['id']}:recover").get_json()
    resp = api.get(f"/runs/{parent['id']}")
    assert resp.status_code == 200
    assert_conforms(resp, "GET", "/runs/{run_id}")
    view = resp.get_json()
    assert view["parent"] is None
    assert [c["id"] for c in view["children"]] == [child["id"]]
    assert view["locations"]["work_dir"] == f"gs://arc-runs/work/{parent['id']}/"
    assert [e["to_status"] for e in view["events"]] == ["pending", "submitted", "failed"]
    kid = api.get(f"/runs/{child['id']}").get_json()
    assert kid["parent"]["id"] == parent["id"] and kid["parent"]["status"] == "failed"
    assert kid["is_recovery"] is True
    assert kid["locations"]["work_dir"] == view["locations"]["work_dir"]


def test_the_api_says_what_became_of_each_label(api, batch_server):
    resp = api.post("/runs", json=_demo_body(labels={"Project": "Atlas Team!", "tier": "gold"}))
    assert resp.status_code == 201, resp.get_json()
    run = resp.get_json()
    assert run["labels"] == {"Project": "Atlas Team!", "tier": "gold"}
    assert {k: run["batch_labels"][k] for k in ("project", "tier")} == {
        "project": "atlas_team_",
        "tier": "gold",
    }
    assert run["labels_changed"] == [
        {"key": "Project", "value": "Atlas Team!", "became": "project=atlas_team_"}
    ]
    assert api.get(f"/runs/{run['id']}").get_json()["labels_changed"] == run["labels_changed"]


def test_a_json_body_nested_100000_deep_is_a_400_not_a_500(api, batch_server):
    body = '{"pipeline": "arc/fastq-stats", "params": ' + "[" * 100_000 + "]" * 100_000 + "}"
    resp = api.post("/runs", data=body, content_type="application/json")
    assert resp.status_code == 400
    assert batch_server.jobs() == []


def test_a_filter_with_a_nul_character_is_a_400_not_a_database_error(api):
    for query in ("label=k%3D%00v", "name=a%00b", "pipeline=%00", "submitter=x%00@y"):
        resp = api.get(f"/runs?{query}")
        assert resp.status_code == 400, (query, resp.get_json())
        assert "NUL" in resp.get_json()["error"]["problems"][0]["message"]

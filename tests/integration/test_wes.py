"""GA4GH WES 1.1 (api/wes.py) against the official OpenAPI document (../shared/fixtures/ga4gh-wes, skipped
when absent) with schemathesis, and the WES flow itself: submit (multipart, every field a string, and JSON),
list, get, status, tasks and cancel, on the same runs, validation and ledger as our own API."""

from __future__ import annotations

import copy
import io
import itertools
import json
from pathlib import Path

import pytest
import yaml
from flow import function_client, upload_demo_data
from hypothesis import HealthCheck, Phase, settings
from test_runs_api import active_and_finished, demo_body, transition

from arc_reactor.adapters.tasks_repo import TaskUpdate, upsert_tasks

pytestmark = pytest.mark.integration

WES_DOC = (
    Path(__file__).resolve().parents[3]
    / "shared"
    / "fixtures"
    / "ga4gh-wes"
    / "workflow_execution_service.openapi.yaml"
)
SAMPLESHEET = demo_body()["samplesheet"]
# The one remote $ref of the document (ga4gh-service-info v1.0.0 Service), resolved offline to a local
# schema with the same required fields, as the fixture's SOURCE says.
SERVICE = {
    "type": "object",
    "required": ["id", "name", "type", "organization", "version"],
    "properties": {
        "id": {"type": "string"}, "name": {"type": "string"}, "description": {"type": "string"},
        "type": {"type": "object", "required": ["group", "artifact", "version"], "properties": {
            "group": {"type": "string"}, "artifact": {"type": "string"}, "version": {"type": "string"}}},
        "organization": {"type": "object", "required": ["name", "url"], "properties": {
            "name": {"type": "string"}, "url": {"type": "string"}}},
        "version": {"type": "string"},
    },
}  # fmt: skip


def wes_document() -> dict:
    doc = yaml.safe_load(WES_DOC.read_text(encoding="utf-8"))
    doc["components"]["schemas"]["Service"] = SERVICE
    doc["components"]["schemas"]["ServiceInfo"]["allOf"][0] = {"$ref": "#/components/schemas/Service"}
    doc["servers"] = [{"url": "/ga4gh/wes/v1"}]
    return doc


def form(**fields: str) -> dict:
    """A WES multipart request as requests' `files` argument: every field a string part."""
    return {k: (None, v) for k, v in fields.items()}


def demo_form(**more: str) -> dict:
    fields = {
        "workflow_url": "arc/fastq-stats", "workflow_type": "SMK", "workflow_type_version": "1.0",
        "workflow_params": json.dumps({"min_quality": 20}), "tags": json.dumps({"project": "wes"}),
        "workflow_engine_parameters": json.dumps({"revision": "1.0.0"}), **more,
    }  # fmt: skip
    return {**form(**fields), "workflow_attachment": ("samplesheet.csv", io.BytesIO(SAMPLESHEET.encode()))}


@pytest.fixture(scope="module")
def served():
    """runs_api served over loopback once for the module: each request builds its dependencies from the
    environment the test's app_env set (shutting a server down costs half a second)."""
    import requests

    from arc_reactor.local.functions_host import serve_function, stop_function

    fn = serve_function("runs_api", "http")
    session = requests.Session()
    session.trust_env = False
    yield fn.url.rstrip("/") + "/ga4gh/wes/v1", session
    session.close()
    stop_function(fn)


@pytest.fixture
def wes(app_env, gcs, served):
    upload_demo_data(gcs)
    return served


def test_a_run_submitted_over_wes_is_a_run_like_any_other(wes, engine, gcs):
    base, http = wes
    resp = http.post(f"{base}/runs", files=demo_form(), timeout=30)
    assert resp.status_code == 200, resp.text
    run_id = resp.json()["run_id"]
    status = http.get(f"{base}/runs/{run_id}/status", timeout=10).json()
    assert status == {"run_id": run_id, "state": "QUEUED"}
    log = http.get(f"{base}/runs/{run_id}", timeout=10).json()
    assert log["request"]["workflow_url"] == "arc/fastq-stats" and log["request"]["workflow_type"] == "SMK"
    assert log["request"]["tags"] == {"project": "wes"} and log["task_logs"] == []
    assert log["outputs"]["results"] == f"gs://arc-runs/runs/{run_id}/results/"
    assert log["run_log"]["stdout"].endswith(f"/runs/{run_id}/logs")  # our logs API, the same auth
    ours = function_client("runs_api", "http").get(f"/runs/{run_id}").get_json()
    assert (ours["pipeline"], ours["labels"], ours["params"]["min_quality"]) == (
        "arc/fastq-stats",
        {"project": "wes"},
        20,
    )

    # The samplesheet may also be a gs:// URL in workflow_params.input (read into the bundle).
    gcs.write_bytes("arc-demo-data", "sheets/ss.csv", SAMPLESHEET.encode(), content_type="text/csv")
    params = json.dumps({"input": "gs://arc-demo-data/sheets/ss.csv"})
    fields = {"workflow_url": "arc/fastq-stats", "workflow_type": "SMK", "workflow_type_version": "1.0",
              "workflow_params": params}  # fmt: skip
    by_url = http.post(f"{base}/runs", files=form(**fields), timeout=30)
    assert by_url.status_code == 200, by_url.text
    # ... and a JSON body with objects as objects (an extension).
    as_json = {**fields, "workflow_params": {"input": "gs://arc-demo-data/sheets/ss.csv"}, "tags": {"a": "b"}}
    assert http.post(f"{base}/runs", json=as_json, timeout=30).status_code == 200

    listed, token, pages = [], None, 0
    while True:
        page = http.get(
            f"{base}/runs", params={"page_size": 2, **({"page_token": token} if token else {})}, timeout=10
        ).json()
        listed += [r["run_id"] for r in page["runs"]]
        pages += 1
        token = page.get("next_page_token")
        if not token:
            break
    assert run_id in listed and len(listed) == len(set(listed)) and pages >= 2

    transition(engine, run_id, "running")
    upsert_tasks(engine, run_id, [TaskUpdate("3", "failed", process="stats", name="stats (3)", exit_code=1,
                                             error_tail="ValueError: bad")])  # fmt: skip
    tasks = http.get(f"{base}/runs/{run_id}/tasks", timeout=10).json()
    assert tasks["task_logs"] == [{"id": "3.1", "name": "stats (3)", "exit_code": 1,
                                   "system_logs": ["status: failed", "ValueError: bad"]}]  # fmt: skip
    assert http.get(f"{base}/runs/{run_id}/tasks/3.1", timeout=10).json()["id"] == "3.1"
    assert http.get(f"{base}/runs/{run_id}/tasks/3.2", timeout=10).status_code == 404

    cancelled = http.post(f"{base}/runs/{run_id}/cancel", timeout=30)
    assert cancelled.status_code == 200 and cancelled.json() == {"run_id": run_id}
    assert http.get(f"{base}/runs/{run_id}/status", timeout=10).json()["state"] in ("CANCELING", "CANCELED")


@pytest.mark.parametrize(
    ("fields", "said"),
    [
        ({"workflow_type": "CWL"}, "workflow_type: must be one of NFL, SMK"),
        ({"workflow_type": "NFL", "workflow_type_version": "DSL2"}, "which runs on snakemake"),
        ({"workflow_type_version": "2.0"}, "workflow_type_version: must be 1.0 for SMK"),
        ({"workflow_url": "nf-core/unknown"}, "nf-core/unknown"),
        (
            {"workflow_engine_parameters": json.dumps({"-with-docker": "x"})},
            "only revision, profile may be set",
        ),
        ({"workflow_params": "not json"}, "workflow_params: must be a JSON object"),
        ({"workflow_params": json.dumps({"outdir": "gs://elsewhere/"})}, "outdir"),
    ],
)
def test_a_bad_request_names_the_field_and_the_problem(wes, fields, said):
    base, http = wes
    resp = http.post(f"{base}/runs", files=demo_form(**fields), timeout=30)
    assert resp.status_code == 400, resp.text
    body = resp.json()
    assert body["status_code"] == 400 and said in body["msg"], body  # an ErrorResponse, every time


@pytest.mark.parametrize("name", ["../samplesheet.csv", "a/samplesheet.csv", ".samplesheet.csv", "ss.csv"])
def test_an_attachment_with_a_path_or_another_name_is_refused(wes, name):
    base, http = wes
    files = {**demo_form(), "workflow_attachment": (name, io.BytesIO(SAMPLESHEET.encode()))}
    resp = http.post(f"{base}/runs", files=files, timeout=30)
    assert resp.status_code == 400 and "workflow_attachment" in resp.json()["msg"], resp.text


def test_the_reference_client_reads_lists_and_cancels(wes, engine):
    """wes-service's WESClient (the GA4GH reference client, from PyPI) against the served facade. Its `run`
    builds requests for CWL/WDL/Python workflow files only, so the run it reads is submitted with a plain
    multipart request, as other WES clients send it."""
    from wes_client.util import WESClient

    base, http = wes
    run_id = http.post(f"{base}/runs", files=demo_form(), timeout=30).json()["run_id"]
    client = WESClient(
        {"auth": {}, "proto": "http", "host": base.split("://", 1)[1].removesuffix("/ga4gh/wes/v1")}
    )
    assert client.get_service_info()["type"]["artifact"] == "wes"
    assert run_id in [r["run_id"] for r in client.list_runs()["runs"]]
    assert client.get_run_status(run_id) == {"run_id": run_id, "state": "QUEUED"}
    assert client.get_run_log(run_id)["request"]["workflow_url"] == "arc/fastq-stats"
    assert client.cancel(run_id) == {"run_id": run_id}
    assert client.get_run_status(run_id)["state"] in ("CANCELING", "CANCELED")


def test_service_info_counts_the_ledger_and_errors_are_error_responses(wes, engine):
    base, http = wes
    info = http.get(f"{base}/service-info", timeout=10).json()
    assert info["type"] == {"group": "org.ga4gh", "artifact": "wes", "version": "1.1.0"}
    assert info["workflow_type_versions"] == {"NFL": {"workflow_type_version": ["DSL2"]},
                                              "SMK": {"workflow_type_version": ["1.0"]}}  # fmt: skip
    assert info["supported_filesystem_protocols"] == ["gs"] and isinstance(info["system_state_counts"], dict)
    missing = http.get(f"{base}/runs/r000000000000000000", timeout=10)
    assert missing.status_code == 404 and missing.json()["status_code"] == 404 and missing.json()["msg"]
    # A path functions-framework cannot route (a newline in it) is answered in JSON all the same.
    odd = http.get(f"{base}/runs/r000000000000000000/tasks/a%0Ab", timeout=10)
    assert (odd.status_code, odd.json()["status_code"]) == (404, 404)
    ours = http.get(base.removesuffix("/ga4gh/wes/v1") + "/runs/a%0Ab", timeout=10)
    assert ours.status_code == 404 and ours.json()["error"]["code"] == "not_found"


# --- conformance to the official document -------------------------------------------------------------------

CHECKS = None
_turn = itertools.count()

if WES_DOC.is_file():
    import schemathesis
    from flow import MAIN
    from functions_framework import create_app
    from schemathesis.checks import (
        content_type_conformance,
        not_a_server_error,
        response_schema_conformance,
        status_code_conformance,
    )

    CHECKS = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
    ]
    schema = schemathesis.openapi.from_dict(copy.deepcopy(wes_document()))
    schema.app = create_app("runs_api", str(MAIN), "http")

    @pytest.fixture
    def runs(app_env, gcs, engine):
        active, finished = active_and_finished(gcs, engine)
        upsert_tasks(engine, active, [TaskUpdate("1", "running", process="stats", name="stats (1)")])
        return active, finished

    @schema.parametrize()
    @settings(
        max_examples=6, deadline=None, derandomize=True, phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )  # fmt: skip
    def test_the_facade_keeps_the_promises_of_the_official_wes_document(case, runs):
        if "run_id" in (case.path_parameters or {}) and next(_turn) % 3:
            case.path_parameters["run_id"] = runs[next(_turn) % 2]
        case.call_and_validate(checks=CHECKS)

else:

    def test_the_facade_keeps_the_promises_of_the_official_wes_document():
        pytest.skip(f"the official WES document is not at {WES_DOC}")


# --- side by side with sapporo ------------------------------------------------------------------------------


def _shape(value: object) -> object:
    """A response's shape: its keys, nested, with each leaf's JSON type (null where it is null)."""
    if isinstance(value, dict):
        return {k: _shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shape(value[0])] if value else []
    return type(value).__name__


def _differences(ours: object, theirs: object, at: str = "") -> list[str]:
    """Where two shapes differ, field by field."""
    if isinstance(ours, dict) and isinstance(theirs, dict):
        out = [f"{at}{k}: only sapporo" for k in sorted(set(theirs) - set(ours))]
        out += [f"{at}{k}: only ours" for k in sorted(set(ours) - set(theirs))]
        for key in sorted(set(ours) & set(theirs)):
            out += _differences(ours[key], theirs[key], f"{at}{key}.")
        return out
    if isinstance(ours, list) and isinstance(theirs, list) and ours and theirs:
        return _differences(ours[0], theirs[0], at + "[].")
    return [] if ours == theirs else [f"{at.rstrip('.')}: ours {ours}, sapporo {theirs}"]


# The differences docs/wes.md explains, one by one; a change on either side fails this test.
SAPPORO_DIFFERENCES = {
    "service-info": [
        "contactUrl: only sapporo", "createdAt: only sapporo", "documentationUrl: only sapporo",
        "environment: only sapporo", "updatedAt: only sapporo",
        "default_workflow_engine_parameters: ours [{'name': 'str', 'type': 'str', 'default_value': 'str'}], "
        "sapporo {'snakemake': [{'name': 'str', 'type': 'str', 'default_value': 'str'}]}",
    ],
    "list": ["next_page_token: only sapporo", "total_runs: only sapporo"],
    "status": [],
    "log": [
        "outputs: ours {'results': 'str', 'logs': 'str', 'results_listing': 'str'}, sapporo NoneType",
        "request.workflow_engine_version: only sapporo",
        "run_log.name: ours str, sapporo NoneType",
        "task_logs: ours [], sapporo NoneType",
        "task_logs_url: ours str, sapporo NoneType",
    ],
}  # fmt: skip


def test_side_by_side_with_sapporo(wes, tmp_path, monkeypatch):
    """The same requests to sapporo (PyPI, in this process; it cannot run a workflow here, having no Docker
    engine) and to our facade, compared field by field."""
    pytest.importorskip("sapporo")
    import sys

    from fastapi.testclient import TestClient

    (tmp_path / "sapporo").mkdir()
    monkeypatch.setenv("SAPPORO_RUN_DIR", str(tmp_path / "sapporo"))
    monkeypatch.setattr(sys, "argv", ["sapporo"])  # its settings read the command line
    from sapporo.app import create_app

    base, http = wes
    snakefile = ("Snakefile", io.BytesIO(b"rule all:\n    shell: 'true'\n"))
    fields = {
        "workflow_type": "SMK", "workflow_type_version": "1.0", "workflow_engine": "snakemake",
        "workflow_params": "{}", "tags": json.dumps({"project": "wes"}), "workflow_engine_parameters": "{}",
    }  # fmt: skip
    with TestClient(create_app()) as sapporo:
        theirs = sapporo.post(
            "/runs", data={**fields, "workflow_url": "Snakefile"}, files=[("workflow_attachment", snakefile)]
        ).json()["run_id"]
        ours = http.post(f"{base}/runs", files=demo_form(), timeout=30).json()["run_id"]
        paths = {
            "service-info": ("/service-info", "/service-info"),
            "list": ("/runs", "/runs"),
            "status": (f"/runs/{ours}/status", f"/runs/{theirs}/status"),
            "log": (f"/runs/{ours}", f"/runs/{theirs}"),
        }
        answers = {
            name: (http.get(base + mine, timeout=10).json(), sapporo.get(other).json())
            for name, (mine, other) in paths.items()
        }
    # Values that differ by nature, not by shape: the engines, where logs are, what each request asked, and
    # the times of a run that ended (sapporo's) against one still queued (ours: unknown times are left out).
    ignore = (
        "workflow_type_versions", "workflow_engine_versions", "tags", "system_state_counts", "run_log.cmd",
        "run_log.start_time", "run_log.end_time", "run_log.exit_code", "run_log.stdout", "run_log.stderr",
        "request.workflow_params.", "request.workflow_engine_parameters.", "runs.[].start_time",
        "runs.[].end_time",
    )  # fmt: skip
    compared = {
        name: [d for d in _differences(_shape(mine), _shape(other)) if not d.startswith(ignore)]
        for name, (mine, other) in answers.items()
    }
    assert compared == SAPPORO_DIFFERENCES


@pytest.fixture(scope="module")
def generated_client(tmp_path_factory):
    """A second, independent WES client: Python generated from the official WES 1.1 document itself by
    openapi-python-client (PyPI), at test time into a temporary folder (never committed). No WES client on
    PyPI besides wes-service's speaks the standard paths (dnastack-client-library's targets DNAstack
    Workbench's own, namespaced ones), so this one knows only what the document says."""
    import importlib
    import shutil
    import subprocess
    import sys

    if not WES_DOC.exists():
        pytest.skip(f"the official WES document is absent ({WES_DOC})")
    tool = shutil.which("openapi-python-client", path=str(Path(sys.executable).parent))
    if tool is None:
        pytest.skip("openapi-python-client is not installed (requirements.txt)")
    folder = tmp_path_factory.mktemp("wes-client")
    doc = folder / "wes.json"
    doc.write_text(json.dumps({**wes_document(), "servers": [{"url": "/"}]}))
    subprocess.run(
        [
            tool,
            "generate",
            "--path",
            str(doc),
            "--output-path",
            str(folder / "wes_generated"),
            "--meta",
            "none",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    sys.path.insert(0, str(folder))
    try:
        yield importlib.import_module("wes_generated")
    finally:
        sys.path.remove(str(folder))
        for name in [m for m in sys.modules if m == "wes_generated" or m.startswith("wes_generated.")]:
            del sys.modules[name]


def test_a_client_generated_from_the_official_document_submits_and_pages(
    wes, generated_client, gcs, monkeypatch
):
    """The generated client submits SMK runs (and an NFL run of nf-core/scrnaseq when its schemas are in
    ../shared/fixtures), pages the list two at a time, reads a run's log, status and tasks, and cancels."""
    import importlib

    from shared_fixtures import SCRNASEQ_FIXTURES

    from arc_reactor.settings import get_settings
    from arc_reactor.wiring import reset_deps

    api = importlib.import_module("wes_generated.api.workflow_runs.run_workflow")
    runs_api = {
        name: importlib.import_module(f"wes_generated.api.workflow_runs.{name}")
        for name in ("list_runs", "get_run_log", "get_run_status", "list_tasks", "cancel_run")
    }
    info_api = importlib.import_module("wes_generated.api.service_info.get_service_info")
    models, types = generated_client.models, importlib.import_module("wes_generated.types")
    base, _ = wes
    client = generated_client.Client(base_url=base, raise_on_unexpected_status=True, timeout=30)

    info = info_api.sync(client=client)
    assert isinstance(info, models.ServiceInfo) and info.type_.artifact == "wes"
    assert "SMK" in info.workflow_type_versions.additional_properties

    def submit(**fields: str):
        sheet = fields.pop("sheet", SAMPLESHEET)
        attachment = types.File(
            payload=io.BytesIO(sheet.encode()), file_name="samplesheet.csv", mime_type="text/csv"
        )
        body = models.RunWorkflowBody(workflow_attachment=[attachment], **fields)
        answer = api.sync(client=client, body=body)
        assert isinstance(answer, models.RunId), answer
        return answer.run_id

    smk = {
        "workflow_url": "arc/fastq-stats",
        "workflow_type": "SMK",
        "workflow_type_version": "1.0",
        "workflow_params": json.dumps({"min_quality": 20}),
        "tags": json.dumps({"client": "generated"}),
    }
    submitted = [submit(**smk) for _ in range(4)]
    if SCRNASEQ_FIXTURES.exists():  # an NFL run, validated against nf-core/scrnaseq's real schemas
        monkeypatch.setenv("ARC_SCHEMA_CACHE_DIR", str(SCRNASEQ_FIXTURES.parent))
        get_settings.cache_clear()
        reset_deps()
        for name in ("S1_R1.fastq.gz", "S1_R2.fastq.gz", "ref/genome.fa", "ref/genes.gtf"):
            gcs.write_bytes("arc-demo-data", f"sc/{name}", b"x")
        sheet = (
            "sample,fastq_1,fastq_2,expected_cells\n"
            "S1,gs://arc-demo-data/sc/S1_R1.fastq.gz,gs://arc-demo-data/sc/S1_R2.fastq.gz,5000\n"
        )
        params = {"aligner": "star", "protocol": "10XV3", "fasta": "gs://arc-demo-data/sc/ref/genome.fa",
                  "gtf": "gs://arc-demo-data/sc/ref/genes.gtf"}  # fmt: skip
        submitted.append(
            submit(
                workflow_url="nf-core/scrnaseq",
                workflow_type="NFL",
                workflow_type_version="DSL2",
                workflow_params=json.dumps(params),
                workflow_engine_parameters=json.dumps({"revision": "4.0.0"}),
                sheet=sheet,
            )
        )
    seen: list[str] = []
    token = types.UNSET
    for _ in range(10):  # bounded: at most 10 pages of 2
        page = runs_api["list_runs"].sync(client=client, page_size=2, page_token=token)
        assert isinstance(page, models.RunListResponse) and len(page.runs) <= 2
        seen += [r.run_id for r in page.runs]
        if not page.next_page_token:
            break
        token = page.next_page_token
    assert sorted(seen) == sorted(set(seen)) and set(submitted) <= set(seen), (submitted, seen)

    first = submitted[0]
    log = runs_api["get_run_log"].sync(first, client=client)
    assert isinstance(log, models.RunLog) and log.request.workflow_url == "arc/fastq-stats"
    assert log.task_logs == []  # a list, never null: clients require it
    status = runs_api["get_run_status"].sync(first, client=client)
    assert status.state == models.State.QUEUED
    tasks = runs_api["list_tasks"].sync(first, client=client, page_size=10)
    assert isinstance(tasks, models.TaskListResponse)
    assert runs_api["cancel_run"].sync(first, client=client).run_id == first
    assert runs_api["get_run_status"].sync(first, client=client).state in (
        models.State.CANCELING,
        models.State.CANCELED,
    )
    if SCRNASEQ_FIXTURES.exists():
        nfl = runs_api["get_run_log"].sync(submitted[-1], client=client)
        assert nfl.request.workflow_type == "NFL" and nfl.request.workflow_url == "nf-core/scrnaseq"

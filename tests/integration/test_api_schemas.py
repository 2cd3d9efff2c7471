"""Validation against nf-core/scrnaseq's real schemas (../shared/fixtures, skipped when absent) through
POST /runs, and the HTTP schema source against a local HTTP server (schema_base per revision, cached)."""

import http.server
import threading
from pathlib import Path

import pytest
from flow import function_client
from shared_fixtures import SCRNASEQ_FIXTURES, requires_scrnaseq_fixtures

pytestmark = pytest.mark.integration


@pytest.fixture
def scrnaseq_api(app_env, gcs, monkeypatch):
    """The local stack's runs_api with the schema cache folder pointed at ../shared/fixtures (the flat
    nf-core-scrnaseq folder there stands for every revision), through the real wiring."""
    from arc_reactor.wiring import reset_deps

    monkeypatch.setenv("ARC_SCHEMA_CACHE_DIR", str(SCRNASEQ_FIXTURES.parent))
    reset_deps()
    for name in ("S1_R1.fastq.gz", "S1_R2.fastq.gz", "ref/genome.fa", "ref/genes.gtf"):
        gcs.write_bytes("arc-demo-data", f"sc/{name}", b"x")
    return function_client("runs_api", "http")


def _sheet(*rows):
    return "sample,fastq_1,fastq_2,expected_cells\n" + "".join(f"{r}\n" for r in rows)


@requires_scrnaseq_fixtures()
def test_scrnaseq_params_and_samplesheet_against_the_pipeline_schemas(scrnaseq_api):
    good = "S1,gs://arc-demo-data/sc/S1_R1.fastq.gz,gs://arc-demo-data/sc/S1_R2.fastq.gz,5000"
    body = {
        "pipeline": "nf-core/scrnaseq",
        "revision": "4.0.0",
        "samplesheet": _sheet(good),
        "params": {
            "aligner": "star",
            "fasta": "gs://arc-demo-data/sc/ref/genome.fa",
            "gtf": "gs://arc-demo-data/sc/ref/genes.gtf",
            "protocol": "10XV3",
        },
    }
    resp = scrnaseq_api.post("/runs", json=body)
    assert resp.status_code == 201, resp.get_json()
    bad = dict(
        body,
        samplesheet=_sheet(
            good,
            "bad name,gs://arc-demo-data/sc/S1_R1.fastq.gz,gs://arc-demo-data/sc/S1_R2.fastq.gz,many",
            "S3,gs://arc-demo-data/sc/missing_R1.fastq.gz,gs://arc-demo-data/sc/S1_R2.fq,",
        ),
        params={
            "aligner": "bowtie",
            "fasta": "gs://arc-demo-data/sc/ref/genome.fa",
            "gtf": "gs://nope/x.gtf",
        },
    )
    resp = scrnaseq_api.post("/runs", json=bad)
    assert resp.status_code == 422
    problems = {
        (p["file"], p.get("line"), p.get("field")): p["message"] for p in resp.get_json()["error"]["problems"]
    }
    # nf-schema errorMessage texts, on the row's line and column
    assert "cannot contain spaces" in problems[("samplesheet.csv", 3, "sample")]
    assert problems[("samplesheet.csv", 3, "expected_cells")] == "Expected cells must be an Integer"
    assert "'.fq.gz' or '.fastq.gz'" in problems[("samplesheet.csv", 4, "fastq_2")]
    assert "is not one of" in problems[("params.yaml", 1, "aligner")]  # params are sent as sorted YAML
    # `exists` for gs:// paths is only checked once the bundle is otherwise valid
    assert not any("does not exist" in m for m in problems.values())
    missing = dict(
        body,
        samplesheet=_sheet(
            good, "S3,gs://arc-demo-data/sc/missing_R1.fastq.gz,gs://arc-demo-data/sc/S1_R2.fastq.gz,1"
        ),
        params={**body["params"], "gtf": "gs://arc-demo-data/sc/ref/nope.gtf"},
    )
    resp = scrnaseq_api.post("/runs", json=missing)
    assert resp.status_code == 422
    found = {
        (p["file"], p.get("line"), p.get("field")): p["message"] for p in resp.get_json()["error"]["problems"]
    }
    assert found == {
        ("params.yaml", 3, "gtf"): "gs://arc-demo-data/sc/ref/nope.gtf does not exist",
        ("samplesheet.csv", 3, "fastq_1"): "gs://arc-demo-data/sc/missing_R1.fastq.gz does not exist",
    }


def test_without_its_schemas_an_nf_core_run_is_refused_not_checked_less(app_env, gcs):
    """No schema cache folder on the local stack: the registry's schemas for nf-core/scrnaseq cannot be
    had, and the submission is refused naming them (it used to pass with structural checks only)."""
    body = {
        "pipeline": "nf-core/scrnaseq",
        "revision": "4.0.0",
        "samplesheet": _sheet(
            "S1,gs://arc-demo-data/sc/S1_R1.fastq.gz,gs://arc-demo-data/sc/S1_R2.fastq.gz,5"
        ),
        "params": {"aligner": "star"},
    }
    resp = function_client("runs_api", "http").post("/runs", json=body)
    assert resp.status_code == 422
    messages = {p["file"]: p["message"] for p in resp.get_json()["error"]["problems"]}
    assert (
        "the schema assets/schema_input.json of nf-core/scrnaseq 4.0.0 is not available"
        in messages["samplesheet.csv"]
    )
    assert (
        "the schema nextflow_schema.json of nf-core/scrnaseq 4.0.0 is not available"
        in messages["params.yaml"]
    )


def test_schemas_fetched_once_are_kept_in_the_runs_bucket(gcs):
    """The cloud's chain: a schema fetched over HTTP is written to gs://<runs>/schemas/<slug>/<revision>/,
    and a new process (a new source object) reads it from there instead of fetching again."""
    from arc_reactor.adapters.http_schemas import BucketCachedSchemaSource
    from arc_reactor.core.registry import load_registry

    fetched: list[tuple[str, str]] = []

    class Upstream:
        def get(self, pipeline, revision, relpath):
            fetched.append((revision, relpath))
            return {"type": "object", "title": relpath} if relpath != "missing.json" else None

    spec = load_registry().get("nf-core/scrnaseq")
    first = BucketCachedSchemaSource(lambda: gcs, "arc-runs", Upstream())
    assert first.get(spec, "4.0.0", "nextflow_schema.json") == {
        "type": "object",
        "title": "nextflow_schema.json",
    }
    assert first.get(spec, "4.0.0", "nextflow_schema.json")["title"] == "nextflow_schema.json"
    assert gcs.list_names("arc-runs", "schemas/") == ["schemas/nf-core-scrnaseq/4.0.0/nextflow_schema.json"]
    again = BucketCachedSchemaSource(lambda: gcs, "arc-runs", Upstream())
    assert again.get(spec, "4.0.0", "nextflow_schema.json")["title"] == "nextflow_schema.json"
    assert fetched == [("4.0.0", "nextflow_schema.json")]  # fetched once for both "processes"
    assert again.get(spec, "4.0.0", "missing.json") is None
    assert gcs.list_names("arc-runs", "schemas/nf-core-scrnaseq/4.0.0/missing") == []
    with pytest.raises(ValueError, match="relative path"):
        again.get(spec, "4.0.0", "../../etc/passwd")


class _Server:
    """A loopback HTTP server for schema files: /<revision>/<path> from a folder, with hit counts."""

    def __init__(self, root: Path, fail_first: int = 0):
        self.hits: list[str] = []
        self.fail = fail_first
        server_self = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                server_self.hits.append(self.path)
                if server_self.fail > 0:
                    server_self.fail -= 1
                    self.send_error(503)
                    return
                _, revision, rel = self.path.split("/", 2)
                path = root / rel
                if revision != "4.0.0" or not path.is_file():
                    self.send_error(404)
                    return
                body = path.read_bytes()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.base = f"http://127.0.0.1:{self.httpd.server_port}/{{revision}}/"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def _spec(base):
    from dataclasses import replace

    from arc_reactor.core.registry import load_registry

    return replace(load_registry().get("nf-core/scrnaseq"), schema_base=base)


@requires_scrnaseq_fixtures()
def test_http_schema_source_fetches_per_revision_and_caches():
    from arc_reactor.adapters.http_schemas import HttpSchemaSource

    server = _Server(SCRNASEQ_FIXTURES, fail_first=1)
    try:
        source = HttpSchemaSource(sleep=lambda s: None)
        spec = _spec(server.base)
        schema = source.get(spec, "4.0.0", "assets/schema_input.json")
        assert schema["items"]["required"] == ["sample", "fastq_1", "fastq_2"]
        assert source.get(spec, "4.0.0", "assets/schema_input.json") is schema
        assert source.get(spec, "3.0.0", "nextflow_schema.json") is None  # 404: no such file at that tag
        assert source.get(spec, "3.0.0", "nextflow_schema.json") is None
        assert server.hits == ["/4.0.0/assets/schema_input.json"] * 2 + ["/3.0.0/nextflow_schema.json"]
        with pytest.raises(ValueError, match="relative path"):
            source.get(spec, "4.0.0", "../../etc/passwd")
    finally:
        server.close()


def test_http_schema_source_gives_up_after_bounded_retries(tmp_path):
    from arc_reactor.adapters.http_schemas import ATTEMPTS, HttpSchemaSource
    from arc_reactor.errors import TransientError

    (tmp_path / "nextflow_schema.json").write_text("[1, 2]")
    server = _Server(tmp_path, fail_first=ATTEMPTS)
    try:
        source = HttpSchemaSource(sleep=lambda s: None)
        with pytest.raises(TransientError):
            source.get(_spec(server.base), "4.0.0", "nextflow_schema.json")
        assert len(server.hits) == ATTEMPTS
        with pytest.raises(ValueError, match="must be an object"):
            source.get(_spec(server.base), "4.0.0", "nextflow_schema.json")
    finally:
        server.close()

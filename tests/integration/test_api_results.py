"""GET /runs/{id}/results: the files of a run's results location, paged, each with a download URL that needs
no credentials. On the local stack the URLs are the storage emulator's; the cloud's V4 signing is exercised
offline with a key made here (Cloud Storage itself cannot be reached from these tests)."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from flow import function_client, upload_demo_data
from test_runs_api import assert_conforms, demo_body, get_conforming, transition

pytestmark = pytest.mark.integration


@pytest.fixture
def api(app_env, gcs):
    upload_demo_data(gcs)
    return function_client("runs_api", "http")


def _page(api, run_id, **query):
    return get_conforming(api, "/runs/{run_id}/results", f"/runs/{run_id}/results", **query)


def test_results_are_listed_in_pages_and_download_without_credentials(api, gcs, engine):
    run = api.post("/runs", json=demo_body()).get_json()
    prefix = run["results_uri"].removeprefix("gs://arc-runs/")
    files = {
        "summary.tsv": b"sample\treads\nS1\t100\n",
        "qc/S1 report.html": b"<html>S1</html>",  # a space: the URL must quote it
        "qc/S2.html": b"<html>S2</html>",
    }
    for path, data in files.items():
        gcs.write_bytes("arc-runs", prefix + path, data)
    gcs.write_bytes("arc-runs", prefix.rstrip("/") + "-other/x.txt", b"not this run's")  # a sibling prefix

    first = _page(api, run["id"], page_size=2)
    assert (first["complete"], first["status"]) == (False, "submitted")
    assert first["results_uri"] == run["results_uri"]
    rest = _page(api, run["id"], page_token=first["next_page_token"])
    assert rest["next_page_token"] is None
    listed = first["files"] + rest["files"]
    assert [f["path"] for f in listed] == sorted(files)  # by name, each once
    for entry in listed:
        assert entry["uri"] == run["results_uri"] + entry["path"]
        assert entry["size"] == len(files[entry["path"]])
        got = requests.get(entry["url"], timeout=10)  # no Authorization header: the URL is enough
        assert (got.status_code, got.content) == (200, files[entry["path"]])

    transition(engine, run["id"], "running")
    transition(engine, run["id"], "completed")
    assert _page(api, run["id"])["complete"] is True


def test_a_bad_query_or_an_unknown_run_is_refused(api):
    run = api.post("/runs", json=demo_body()).get_json()
    empty = _page(api, run["id"])
    assert (empty["files"], empty["next_page_token"]) == ([], None)
    for query in ("page_size=0", "page_size=501", "page_token=@@", "prefix=x"):
        resp = api.get(f"/runs/{run['id']}/results?{query}")
        assert resp.status_code == 400, query
        assert_conforms(resp, "GET", "/runs/{run_id}/results")
    assert api.get("/runs/r000000000000000000/results").status_code == 404


def test_cloud_urls_are_v4_signed_with_the_clients_key(monkeypatch):
    """The branch a deployment with a key-bearing credential takes (one with the metadata server's token
    signs through IAM signBlob instead, which needs Google and is not run here)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from google.cloud import storage  # type: ignore[attr-defined]
    from google.oauth2 import service_account

    from arc_reactor.adapters.storage import Storage

    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    info = {
        "type": "service_account", "project_id": "arc-test", "private_key_id": "k1", "private_key": pem,
        "client_email": "arc-api@arc-test.iam.gserviceaccount.com", "client_id": "1",
        "token_uri": "https://oauth2.googleapis.com/token",
    }  # fmt: skip
    credentials = service_account.Credentials.from_service_account_info(info)
    client = storage.Client(project="arc-test", credentials=credentials)
    url = Storage(client).download_url("arc-runs", "runs/r1/results/a b.txt", timedelta(minutes=15))
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert (parts.scheme, parts.netloc, parts.path) == (
        "https", "storage.googleapis.com", "/arc-runs/runs/r1/results/a%20b.txt",
    )  # fmt: skip
    assert query["X-Goog-Algorithm"] == "GOOG4-RSA-SHA256"
    assert query["X-Goog-Expires"] == "900"
    assert query["X-Goog-Credential"].startswith("arc-api@arc-test.iam.gserviceaccount.com/")
    assert len(query["X-Goog-Signature"]) == 512  # hex of a 2048-bit RSA signature

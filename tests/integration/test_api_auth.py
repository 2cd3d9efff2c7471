"""Auth through the real functions-framework app in cloud mode (ARC_LOCAL unset): ID tokens signed by a
local RSA key, whose public key is injected as Google's certificates (no network)."""

import pytest
from test_runs_api import demo_body, transition
from tokens import AUDIENCE

pytestmark = pytest.mark.integration

AUD = AUDIENCE  # ARC_SERVICE_URL: the URL a token must be for


def test_runs_need_a_valid_token_but_health_and_the_document_do_not(api, keys):
    assert api.get("/healthz").status_code == 200
    assert api.get("/openapi.json").status_code == 200
    resp = api.get("/runs")
    assert resp.status_code == 401
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert resp.get_json()["error"]["code"] == "unauthenticated"
    assert api.get("/runs", headers={"Authorization": "Basic abc"}).status_code == 401
    assert api.get("/runs", headers=keys.headers("a@x.org", aud="https://other.example")).status_code == 401
    assert api.get("/runs", headers=keys.headers("a@x.org")).status_code == 200


def test_the_token_email_is_the_submitter_and_cannot_be_spoofed(api, keys):
    headers = {**keys.headers("Ada@Example.org"), "X-Arc-Submitter": "mallory@example.org"}
    run = api.post("/runs", json=demo_body(), headers=headers)
    assert run.status_code == 201, run.get_json()
    assert run.get_json()["submitter"] == "ada@example.org"
    listed = api.get("/runs?submitter=ada@example.org", headers=keys.headers("ada@example.org")).get_json()
    assert [r["id"] for r in listed["runs"]] == [run.get_json()["id"]]


def test_a_caller_reads_their_own_runs_and_readers_and_admins_read_all(api, keys, monkeypatch):
    from arc_reactor.api.auth import TokenVerifier
    from arc_reactor.settings import get_settings
    from arc_reactor.wiring import get_deps, reset_deps

    ada, bob = keys.headers("ada@example.org"), keys.headers("bob@example.org")
    mine = api.post("/runs", json=demo_body(), headers=ada).get_json()["id"]
    theirs = api.post("/runs", json=demo_body(), headers=bob).get_json()["id"]
    assert [r["id"] for r in api.get("/runs", headers=ada).get_json()["runs"]] == [mine]
    assert api.get("/runs?submitter=bob@example.org", headers=ada).status_code == 403
    for path in (f"/runs/{theirs}", f"/runs/{theirs}/events", f"/runs/{theirs}/logs"):
        resp = api.get(path, headers=ada)
        assert (resp.status_code, resp.get_json()["error"]["code"]) == (404, "not_found"), path
    admin = keys.headers("carol@example.org", groups=["ops@example.org"])
    assert {r["id"] for r in api.get("/runs", headers=admin).get_json()["runs"]} == {mine, theirs}
    monkeypatch.setenv("ARC_READER_MEMBERS", "dan@example.org")
    get_settings.cache_clear()
    reset_deps()
    get_deps().token_verifier = TokenVerifier(request=keys.request)
    dan = keys.headers("dan@example.org")
    assert {r["id"] for r in api.get("/runs", headers=dan).get_json()["runs"]} == {mine, theirs}
    assert api.get(f"/runs/{theirs}", headers=dan).status_code == 200


def test_only_the_submitter_or_an_admin_may_cancel_or_recover(api, keys, engine, gcs):
    ada, bob = keys.headers("ada@example.org"), keys.headers("bob@example.org")
    run = api.post("/runs", json=demo_body(), headers=ada).get_json()
    resp = api.post(f"/runs/{run['id']}:cancel", headers=bob)
    assert resp.status_code == 403
    assert resp.get_json()["error"]["code"] == "forbidden"
    assert api.post(f"/runs/{run['id']}:cancel", headers=ada).status_code == 202
    transition(engine, run["id"], "cancelled")
    gcs.write_bytes("arc-runs", f"work/{run['id']}/x", b"1")
    assert api.post(f"/runs/{run['id']}:recover", headers=bob).status_code == 403
    admin = keys.headers("bob@example.org", groups=["ops@example.org"])
    resp = api.post(f"/runs/{run['id']}:recover", headers=admin)
    assert resp.status_code == 201, resp.get_json()
    assert resp.get_json()["submitter"] == "bob@example.org"
    other = api.post("/runs", json=demo_body(), headers=bob).get_json()
    assert api.post(f"/runs/{other['id']}:cancel", headers=keys.headers("ops@example.org")).status_code == 202


def test_the_audience_comes_from_configuration_never_from_the_host_header(api, keys):
    """A token minted for another service is refused even when the request names that service's host."""
    evil = keys.headers("eve@example.org", aud="https://evil.example")
    resp = api.get("/runs", headers={**evil, "Host": "evil.example"})
    assert resp.status_code == 401
    assert "not for https://runs-api-123456.europe-west4.run.app" in resp.get_json()["error"]["message"]
    assert (
        api.get("/runs", headers={**keys.headers("ada@example.org"), "Host": "evil.example"}).status_code
        == 200
    )


def test_without_its_own_url_the_deployed_api_refuses_every_token(api, keys, monkeypatch):
    from arc_reactor.api.auth import TokenVerifier
    from arc_reactor.settings import get_settings
    from arc_reactor.wiring import get_deps, reset_deps

    monkeypatch.delenv("ARC_SERVICE_URL")
    get_settings.cache_clear()
    reset_deps()
    get_deps().token_verifier = TokenVerifier(request=keys.request)
    resp = api.get("/runs", headers=keys.headers("ada@example.org"))
    assert resp.status_code == 503
    assert "ARC_SERVICE_URL is not set" in resp.get_json()["error"]["message"]

"""The dashboard's routes through the real functions-framework app in cloud mode (ID tokens, tests/tokens.py):
the same auth and read scope as the API, actions offered only to who may take them, the security headers,
errors as pages, file links confined to the run's own locations, and the cross-site request guard. The
browser story is tests/integration/test_dashboard.py."""

import re
import time

import pytest
from test_runs_api import demo_body, transition

pytestmark = pytest.mark.integration


def _enabled(page, action):
    """Whether the page's button for `action` is enabled (its tag has no `disabled`)."""
    tag = re.search(rf'<button type="button" data-action="{action}"[^>]*>', page, re.S)
    assert tag, f"no {action} button"
    return " disabled" not in tag.group(0)


def _run(api, headers, **body):
    resp = api.post("/runs", json=demo_body(**body), headers=headers)
    assert resp.status_code == 201, resp.get_json()
    return resp.get_json()["id"]


def test_pages_need_a_token_and_show_only_the_callers_runs(api, keys):
    from arc_reactor.api.ui import CSP

    assert api.get("/ui/").status_code == 401
    assert "text/html" in api.get("/ui/").content_type  # the 401 is a page too, with the API's message
    ada, bob = keys.headers("ada@example.org"), keys.headers("bob@example.org")
    mine, theirs = _run(api, ada), _run(api, bob)
    page = api.get("/ui/", headers=ada)
    assert page.status_code == 200 and page.headers["Content-Security-Policy"] == CSP
    assert page.headers["X-Content-Type-Options"] == "nosniff" and page.headers["Cache-Control"] == "no-store"
    text = page.get_data(as_text=True)
    assert mine in text and theirs not in text
    assert 'id="f-submitter"' not in text  # only who reads every run may filter by submitter
    assert "Signed in as ada@example.org" in text
    other = api.get(f"/ui/runs/{theirs}", headers=ada)
    assert other.status_code == 404 and "does not exist" in other.get_data(as_text=True)
    assert api.get(f"/ui/runs/{theirs}/live", headers=ada).status_code == 404
    assert api.get(f"/ui/runs/{theirs}/files/inputs/samplesheet.csv", headers=ada).status_code == 404
    admin = keys.headers("carol@example.org", groups=["ops@example.org"])
    every = api.get("/ui/", headers=admin).get_data(as_text=True)
    assert mine in every and theirs in every and 'id="f-submitter"' in every


def test_actions_are_offered_only_to_who_may_take_them(api, keys, engine, gcs):
    ada, bob = keys.headers("ada@example.org"), keys.headers("bob@example.org")
    run = _run(api, ada)
    admin = keys.headers("carol@example.org", groups=["ops@example.org"])
    mine = api.get(f"/ui/runs/{run}", headers=ada).get_data(as_text=True)
    assert _enabled(mine, "cancel") and not _enabled(mine, "recover")
    assert f"Recover: run {run} is submitted: wait for it to end, or cancel it first" in mine
    theirs = api.get(f"/ui/runs/{run}", headers=bob)  # bob reads nothing of ada's
    assert theirs.status_code == 404
    as_admin = api.get(f"/ui/runs/{run}", headers=admin).get_data(as_text=True)
    assert _enabled(as_admin, "cancel")
    transition(engine, run, "running")
    transition(engine, run, "failed", error_code="pipeline_error", error_message="boom")
    gcs.write_bytes("arc-runs", f"work/{run}/x", b"1")  # something to resume
    failed = api.get(f"/ui/runs/{run}/live", headers=ada).get_data(as_text=True)
    assert not _enabled(failed, "cancel") and _enabled(failed, "recover")
    assert "Cancel: the run has ended (failed)" in failed
    assert "<code>pipeline_error</code> boom" in failed


def test_file_links_redirect_inside_the_runs_own_locations(api, keys):
    ada = keys.headers("ada@example.org")
    run = _run(api, ada)
    resp = api.get(f"/ui/runs/{run}/files/inputs/samplesheet.csv", headers=ada)
    assert resp.status_code == 302 and f"runs%2F{run}%2Finputs%2Fsamplesheet.csv" in resp.headers["Location"]
    for path in ("../inputs/samplesheet.csv", "a/../../x", "a//b", "./x", "x\\y"):
        resp = api.get(f"/ui/runs/{run}/files/inputs/{path}", headers=ada)
        assert resp.status_code in (400, 404), path  # werkzeug may fold a dot segment before we see it
        assert "Location" not in resp.headers
    assert api.get(f"/ui/runs/{run}/files/inputs/nope.csv", headers=ada).status_code == 404
    assert api.get(f"/ui/runs/{run}/files/work/x", headers=ada).status_code == 404  # not an area


def test_static_assets_are_public_and_nothing_else_is_served(api):
    from arc_reactor.api.ui import asset_url

    script = api.get(asset_url("app.js"))
    assert script.status_code == 200 and script.content_type.startswith("text/javascript")
    assert api.get(asset_url("app.css")).content_type.startswith("text/css")
    for name in ("..%2Fui.py", "nope.js", "templates"):
        assert api.get(f"/ui/static/{name}").status_code == 404, name
    assert api.get("/").status_code == 302 and api.get("/").headers["Location"].endswith("/ui/")


def test_a_bad_filter_is_shown_on_the_page_and_empty_fields_are_no_filter(api, keys):
    ada = keys.headers("ada@example.org")
    run = _run(api, ada, labels={"team": "x"})
    bad = api.get("/ui/?label=nonsense", headers=ada)
    assert bad.status_code == 400 and "is not key=value" in bad.get_data(as_text=True)
    empty = api.get("/ui/?status=&pipeline=&label=", headers=ada)
    assert empty.status_code == 200 and run in empty.get_data(as_text=True)
    assert run in api.get("/ui/fragments/runs?label=team%3Dx", headers=ada).get_data(as_text=True)
    assert run not in api.get("/ui/fragments/runs?label=team%3Dy", headers=ada).get_data(as_text=True)
    assert api.get("/ui/runs/not-a-run", headers=ada).status_code == 400


def test_another_sites_page_cannot_change_a_run(api, keys):
    """Cross-site request forgery: a browser marks a request another site's page sends (Fetch Metadata);
    with the caller's credentials added by a proxy or a cookie, it must not cancel anything."""
    ada = keys.headers("ada@example.org")
    run = _run(api, ada)
    for site in ("cross-site", "same-site"):
        resp = api.post(f"/runs/{run}:cancel", headers={**ada, "Sec-Fetch-Site": site})
        assert (resp.status_code, resp.get_json()["error"]["code"]) == (403, "cross_site_request")
    assert api.get(f"/runs/{run}", headers={**ada, "Sec-Fetch-Site": "cross-site"}).status_code == 200
    resp = api.post(f"/runs/{run}:cancel", headers={**ada, "Sec-Fetch-Site": "same-origin"})
    assert resp.status_code == 202  # the dashboard's own request, and a client that sends no such header


def test_behind_identity_aware_proxy_its_signed_header_names_the_caller(api, keys, monkeypatch):
    """With ARC_IAP_AUDIENCES set, a browser that IAP let through (no ID token of its own) is the email in
    IAP's signed header; a forged, expired or foreign assertion is refused, and without IAP configured the
    header means nothing."""
    from cryptography.hazmat.primitives.asymmetric import ec
    from tokens import IAP_AUDIENCE

    from arc_reactor.api.auth import TokenVerifier
    from arc_reactor.settings import get_settings
    from arc_reactor.wiring import get_deps, reset_deps

    ada = keys.iap_headers("ada@example.org")
    assert api.get("/ui/", headers=ada).status_code == 401  # IAP not configured: the header is ignored
    monkeypatch.setenv("ARC_IAP_AUDIENCES", f"{IAP_AUDIENCE}, /projects/123456/global/backendServices/9")
    get_settings.cache_clear()
    reset_deps()
    get_deps().token_verifier = TokenVerifier(request=keys.request)
    run = _run(api, ada)
    page = api.get("/ui/", headers=ada)
    assert page.status_code == 200 and run in page.get_data(as_text=True)
    assert "Signed in as ada@example.org" in page.get_data(as_text=True)
    assert api.get(f"/runs/{run}", headers=ada).get_json()["submitter"] == "ada@example.org"
    other = keys.iap_headers("bob@example.org", aud="/projects/123456/global/backendServices/9")
    assert api.get(f"/runs/{run}", headers=other).status_code == 404  # bob, through the other front door
    forged = keys.iap_headers("ada@example.org", key=ec.generate_private_key(ec.SECP256R1()))
    foreign = keys.iap_headers("ada@example.org", aud="/projects/999/locations/x/services/other")
    expired = keys.iap_headers("ada@example.org", exp=int(time.time()) - 60)
    not_iap = keys.iap_headers("ada@example.org", iss="https://accounts.google.com")
    for headers in (forged, foreign, expired, not_iap):
        resp = api.get("/runs", headers=headers)
        assert resp.status_code == 401 and resp.get_json()["error"]["code"] == "unauthenticated", headers
    assert (
        api.get("/runs", headers=keys.headers("ada@example.org")).status_code == 200
    )  # ID tokens still work

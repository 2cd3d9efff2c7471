"""Group membership through the Cloud Identity Groups API (adapters/groups.py), against a local HTTP
server that answers as the API's reference documents it (groups:lookup, checkTransitiveMembership,
memberships:lookup): Cloud Identity itself cannot be reached from tests. Then the authenticator: a caller
whose token names no group is an admin through the group ARC_ADMIN_GROUP names."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
import requests

from arc_reactor.adapters.groups import FAILURE_TTL_S, MEMBERSHIP_TTL_S, GroupDirectory
from arc_reactor.api.auth import IdTokenAuthenticator, is_admin
from arc_reactor.settings import Settings

GROUPS = {"arc-admins@example.org": "groups/01abc"}
MEMBERS = {"groups/01abc": {"ana@example.org"}}
HIDDEN_GROUP = "hidden@example.org"


class FakeCloudIdentity(BaseHTTPRequestHandler):
    premium = True  # checkTransitiveMembership is for Enterprise / Cloud Identity Premium accounts only
    failing = False
    seen: list[str] = []

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        self.seen.append(unquote(self.path))
        if self.failing:
            return self._answer(503, {"error": {"code": 503}})
        if parts.path == "/v1/groups:lookup":
            if query.get("groupKey.id") == HIDDEN_GROUP:  # what a service account without Groups Reader gets
                return self._answer(403, {"error": {"code": 403, "status": "PERMISSION_DENIED"}})
            name = GROUPS.get(query.get("groupKey.id", ""))
            return self._answer(200, {"name": name}) if name else self._answer(404, {"error": {"code": 404}})
        group, _, method = parts.path.removeprefix("/v1/").partition("/memberships:")
        members = MEMBERS.get(group, set())
        if method == "checkTransitiveMembership":
            if not self.premium:
                return self._answer(403, {"error": {"code": 403, "status": "PERMISSION_DENIED"}})
            email = query["query"].removeprefix("member_key_id == '").removesuffix("'")
            return self._answer(200, {"hasMembership": email in members})
        if method == "lookup":
            found = query.get("memberKey.id") in members
            return self._answer(200 if found else 404, {"name": f"{group}/memberships/1"} if found else {})
        return self._answer(400, {})

    def _answer(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    FakeCloudIdentity.premium, FakeCloudIdentity.failing, FakeCloudIdentity.seen = True, False, []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), FakeCloudIdentity)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def directory(url: str, clock: Clock | None = None) -> GroupDirectory:
    return GroupDirectory(session_factory=requests.Session, endpoint=url, clock=clock or Clock())


def test_membership_transitive_then_direct_and_not_a_group(server: str) -> None:
    d = directory(server)
    assert d.is_member("arc-admins@example.org", "ana@example.org")
    assert not d.is_member("arc-admins@example.org", "bob@example.org")
    assert not d.is_member("carol@example.org", "ana@example.org")  # a user listed directly: not a group
    FakeCloudIdentity.premium = False  # a plain account: direct memberships only
    d2 = directory(server)
    assert d2.is_member("arc-admins@example.org", "ana@example.org")
    assert not d2.is_member("arc-admins@example.org", "bob@example.org")
    assert any(
        p.startswith("/v1/groups/01abc/memberships:lookup?memberKey.id=ana@example.org")
        for p in FakeCloudIdentity.seen
    )
    assert not d.is_member("arc-admins@example.org", "x' || true || '@example.org")  # never queried


def test_answers_are_cached_and_expire(server: str) -> None:
    clock = Clock()
    d = directory(server, clock)
    assert d.is_member("arc-admins@example.org", "ana@example.org")
    asked = len(FakeCloudIdentity.seen)
    MEMBERS["groups/01abc"].discard("ana@example.org")  # removed from the group
    try:
        assert d.is_member("arc-admins@example.org", "ana@example.org")  # cached
        assert len(FakeCloudIdentity.seen) == asked
        clock.now += MEMBERSHIP_TTL_S + 1
        assert not d.is_member("arc-admins@example.org", "ana@example.org")  # asked again: gone
    finally:
        MEMBERS["groups/01abc"].add("ana@example.org")


def test_an_outage_fails_closed_is_retried_once_and_not_asked_again_at_once(
    server: str, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    d = directory(server, clock)
    FakeCloudIdentity.failing = True
    assert not d.is_member("arc-admins@example.org", "ana@example.org")
    assert len(FakeCloudIdentity.seen) == 2  # one retry
    assert "cannot check group membership" in caplog.text
    assert not d.is_member("arc-admins@example.org", "ana@example.org")
    assert len(FakeCloudIdentity.seen) == 2  # the failure is remembered for a while
    FakeCloudIdentity.failing = False
    clock.now += FAILURE_TTL_S + 1
    assert d.is_member("arc-admins@example.org", "ana@example.org")


def test_a_group_the_service_account_may_not_see_is_no_membership_and_is_logged(
    server: str, caplog: pytest.LogCaptureFixture
) -> None:
    d = directory(server)
    assert not d.is_member(HIDDEN_GROUP, "ana@example.org")
    assert "groups:lookup answered 403 for hidden@example.org" in caplog.text
    assert "Groups Reader" in caplog.text
    asked = len(FakeCloudIdentity.seen)
    assert not d.is_member(HIDDEN_GROUP, "bob@example.org")
    assert len(FakeCloudIdentity.seen) == asked  # remembered like "not a group"


class Claims:
    def __init__(self, email: str) -> None:
        self.email = email

    def verify(self, token: str, audiences: tuple[str, ...]) -> dict[str, Any]:
        return {"email": self.email, "email_verified": True}


def test_a_member_of_the_admin_group_is_an_admin(server: str) -> None:
    settings = Settings(admin_group="arc-admins@example.org, lead@example.org", database_url="")

    def caller(email: str) -> Any:
        auth = IdTokenAuthenticator(
            Claims(email),  # type: ignore[arg-type]
            ("https://api.example",),
            directory(server),
            frozenset({"arc-admins@example.org", "lead@example.org"}),
        )
        request = type("R", (), {"headers": {"Authorization": "Bearer t"}})()
        return auth(request)  # type: ignore[arg-type]

    ana, bob, lead = caller("ana@example.org"), caller("bob@example.org"), caller("lead@example.org")
    assert ana.groups == {"arc-admins@example.org"} and is_admin(settings, ana)
    assert bob.groups == frozenset() and not is_admin(settings, bob)
    assert is_admin(settings, lead)  # listed by email

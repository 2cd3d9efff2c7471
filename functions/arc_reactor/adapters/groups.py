"""Google group membership through the Cloud Identity Groups API, cached: who is in ARC_ADMIN_GROUP or
ARC_READER_MEMBERS when those name groups.

ID tokens carry no groups, so the API asks Cloud Identity, as the function's service account:
- `GET /v1/groups:lookup?groupKey.id=<email>`: the group's resource name. A 404 means that the principal
  is not a group (a user listed directly), which is remembered for an hour; so is a 403 (a group the
  service account may not see), which is logged.
- `GET /v1/<group>/memberships:checkTransitiveMembership?query=member_key_id == '<email>'`: membership
  through nested groups too. It is only available to Google Workspace Enterprise and Cloud Identity
  Premium accounts and answers 403 elsewhere; then
- `GET /v1/<group>/memberships:lookup?memberKey.id=<email>`: direct membership (200 member, 404 not).

Answers are cached for MEMBERSHIP_TTL_S, so a removed admin loses the role within that time. Every call
is bounded (TIMEOUT_S, one retry on 5xx or a connection error). A failure means "not a member": access
fails closed, and the failure is logged and cached for FAILURE_TTL_S, so a Cloud Identity outage does not
slow every request.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

log = logging.getLogger(__name__)

ENDPOINT = "https://cloudidentity.googleapis.com"
SCOPE = "https://www.googleapis.com/auth/cloud-identity.groups.readonly"
TIMEOUT_S = 5.0
MEMBERSHIP_TTL_S = 300.0
GROUP_TTL_S = 3600.0
FAILURE_TTL_S = 60.0
_NOT_A_GROUP = ""
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+")


def google_session() -> Any:
    """A requests session with the runtime's own credentials (the function's service account)."""
    import google.auth
    from google.auth.transport.requests import AuthorizedSession

    credentials, _ = google.auth.default(scopes=[SCOPE])  # type: ignore[no-untyped-call]
    return AuthorizedSession(credentials)  # type: ignore[no-untyped-call]


def _plain_email(value: str) -> bool:
    return bool(_EMAIL.fullmatch(value))


class _Failed(Exception):
    """Cloud Identity did not answer (after the retry)."""


@dataclass
class GroupDirectory:
    """Answers "is this email in that group?"; `session` is made on first use."""

    session_factory: Callable[[], Any] = google_session
    endpoint: str = ENDPOINT
    clock: Callable[[], float] = time.monotonic
    _session: Any = None
    _cache: dict[tuple[str, str], tuple[float, Any]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def groups_of(self, email: str, candidates: Iterable[str]) -> frozenset[str]:
        """The candidates (group or user emails) that are groups with `email` among their members."""
        return frozenset(c for c in candidates if c != email and self.is_member(c, email))

    def is_member(self, group_email: str, member_email: str) -> bool:
        """True when `member_email` is in the group `group_email`; False when not, when `group_email` is not
        a group, or when Cloud Identity cannot tell (logged)."""
        if not _plain_email(group_email) or not _plain_email(member_email):
            return False  # nothing that could change the query's meaning reaches it
        group = self._cached(("group", group_email), GROUP_TTL_S, lambda: self._group_name(group_email))
        if not group:
            return False
        key = ("member", f"{group}|{member_email}")
        return bool(self._cached(key, MEMBERSHIP_TTL_S, lambda: self._member(group, member_email)))

    def _cached(self, key: tuple[str, str], ttl: float, fetch: Callable[[], Any]) -> Any:
        now = self.clock()
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        try:
            value, expires = fetch(), now + ttl
        except _Failed as exc:
            log.warning(
                "cannot check group membership (%s): treated as not a member for %.0f s",
                exc,
                FAILURE_TTL_S,
                extra={"event": "group_lookup_failed", "detail": {"key": list(key)}},
            )
            value, expires = None, now + FAILURE_TTL_S
        with self._lock:
            self._cache[key] = (expires, value)
        return value

    def _get(self, path: str) -> tuple[int, dict[str, Any]]:
        if self._session is None:
            try:
                self._session = self.session_factory()
            except Exception as exc:  # no credentials: nothing can be looked up
                raise _Failed(f"no credentials for Cloud Identity: {type(exc).__name__}: {exc}") from exc
        url = f"{self.endpoint.rstrip('/')}/v1/{path}"
        for attempt in (1, 2):
            try:
                resp = self._session.get(url, timeout=TIMEOUT_S)
            except Exception as exc:  # connection errors, timeouts, credential refresh failures
                if attempt == 2:
                    raise _Failed(f"{type(exc).__name__}: {exc}") from exc
                continue
            if resp.status_code >= 500 and attempt == 1:
                continue
            try:
                body = resp.json() if resp.content else {}
            except ValueError:
                body = {}
            return resp.status_code, body if isinstance(body, dict) else {}
        raise _Failed("no answer")  # not reached

    def _group_name(self, group_email: str) -> str:
        status, body = self._get(f"groups:lookup?groupKey.id={quote(group_email, safe='@')}")
        if status == 200 and isinstance(body.get("name"), str):
            return str(body["name"])
        if status == 403:  # a group we may not see (no Groups Reader role), or not a group: no membership
            log.warning(
                "groups:lookup answered 403 for %s: treated as not a group for %.0f s (does the service "
                "account have the Groups Reader admin role?)",
                group_email,
                GROUP_TTL_S,
                extra={"event": "group_lookup_forbidden", "detail": {"group": group_email}},
            )
            return _NOT_A_GROUP
        if status == 404:  # not a group: a user listed directly
            return _NOT_A_GROUP
        raise _Failed(f"groups:lookup answered {status}")

    def _member(self, group: str, email: str) -> bool:
        query = quote(f"member_key_id == '{email}'", safe="")
        status, body = self._get(f"{group}/memberships:checkTransitiveMembership?query={query}")
        if status == 200:
            return body.get("hasMembership") is True
        if status != 403:  # 403: not a Premium/Enterprise account: direct memberships only
            raise _Failed(f"checkTransitiveMembership answered {status}")
        status, _ = self._get(f"{group}/memberships:lookup?memberKey.id={quote(email, safe='@')}")
        if status in (200, 404):
            return status == 200
        raise _Failed(f"memberships:lookup answered {status}")

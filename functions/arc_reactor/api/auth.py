"""Who is calling runs_api, and whether they may cancel or recover a run (see docs/security.md).

In the cloud the function sits behind IAM (roles/run.invoker), and we verify the caller's Google ID token
again ourselves: signature against Google's certificates (fetched once, cached), issuer, audience (this
service's URL), expiry and a verified `email`. That email is the caller: it is recorded as the submitter
of the runs they create. Only the submitter or an admin may cancel or recover a run; admins are the
principals listed in ARC_ADMIN_GROUP (comma-separated emails, typically one Google group address), matched
against the caller's email or the token's `groups` claim. Reading is scoped too: a caller sees the runs
they submitted; admins and ARC_READER_MEMBERS see every run (GET /runs, GET /runs/{id}, its events and
logs). The local stack has no authentication: the wiring
gives runs_api LocalStackAuthenticator there (anyone may do anything, the caller is whatever
X-Arc-Submitter says), and IdTokenAuthenticator everywhere else.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from arc_reactor.api.http import ApiError

if TYPE_CHECKING:
    import flask

    from arc_reactor.adapters.groups import GroupDirectory
    from arc_reactor.core.run_record import RunRecord
    from arc_reactor.settings import Settings

GOOGLE_CERTS_URL = "https://www.googleapis.com/oauth2/v1/certs"
# Identity-Aware Proxy's signed header (ES256, keys as a JWK set): see cloud.google.com/iap/docs,
# "Securing your app with signed headers".
IAP_CERTS_URL = "https://www.gstatic.com/iap/verify/public_key-jwk"
IAP_ISSUER = "https://cloud.google.com/iap"
IAP_HEADER = "X-Goog-IAP-JWT-Assertion"
GOOGLE_ISSUERS = frozenset({"accounts.google.com", "https://accounts.google.com"})
# The gcloud CLI's OAuth client: `gcloud auth print-identity-token` for a user account carries this audience,
# and Cloud Run's IAM front end accepts it too, so a developer's token works against the deployed API.
GCLOUD_CLIENT_ID = "32555940559.apps.googleusercontent.com"
CERTS_TIMEOUT_S = 5.0
CERTS_MIN_TTL_S, CERTS_MAX_TTL_S = 60.0, 6 * 3600.0  # Google's max-age is a few hours; keys overlap
CLOCK_SKEW_S = 30
_MAX_AGE = re.compile(r"max-age=(\d+)")
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="arc-reactor"'}


@dataclass(frozen=True)
class Caller:
    """The identity behind a request. `email` is None only on the local stack without X-Arc-Submitter."""

    email: str | None
    groups: frozenset[str] = frozenset()
    authenticated: bool = False
    local: bool = False


class CachingRequest:
    """A google.auth transport Request that answers repeated GETs (Google's certificates) from a cache,
    kept for the response's Cache-Control max-age (bounded), so verifying a token costs no round trip."""

    def __init__(
        self, inner: Callable[..., Any] | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._inner = inner
        self._clock = clock
        self._cache: dict[str, tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def _transport(self) -> Callable[..., Any]:
        if self._inner is None:
            from google.auth.transport.requests import Request

            self._inner = Request()
        return self._inner

    def __call__(self, url: str, method: str = "GET", **kwargs: Any) -> Any:
        """Fetch `url`, from the cache when fresh."""
        with self._lock:
            hit = self._cache.get(url) if method == "GET" else None
            if hit is not None and hit[0] > self._clock():
                return hit[1]
        kwargs.setdefault("timeout", CERTS_TIMEOUT_S)
        response = self._transport()(url, method=method, **kwargs)
        if method == "GET" and response.status == 200:
            with self._lock:
                self._cache[url] = (self._clock() + _ttl(response.headers), response)
        return response


def _ttl(headers: Mapping[str, str] | None) -> float:
    match = _MAX_AGE.search(str((headers or {}).get("cache-control") or (headers or {}).get("Cache-Control")))
    seconds = float(match.group(1)) if match else CERTS_MIN_TTL_S
    return max(CERTS_MIN_TTL_S, min(CERTS_MAX_TTL_S, seconds))


class TokenVerifier:
    """Verifies Google-signed ID tokens. Tests pass a `request` that serves their own certificates."""

    def __init__(self, request: Callable[..., Any] | None = None, certs_url: str = GOOGLE_CERTS_URL) -> None:
        self._request = request or CachingRequest()
        self._certs_url = certs_url

    def verify(self, token: str, audiences: tuple[str, ...]) -> Mapping[str, Any]:
        """The token's claims; ApiError 401 when it is not a valid token for this service, 503 when
        Google's certificates cannot be fetched."""
        from google.auth import exceptions as auth_exc
        from google.oauth2 import id_token

        try:
            claims = id_token.verify_token(
                token,
                self._request,  # type: ignore[arg-type]
                audience=None,  # checked below: Cloud Run accepts the service URL with or without a path
                certs_url=self._certs_url,
                clock_skew_in_seconds=CLOCK_SKEW_S,
            )
        except auth_exc.TransportError as exc:
            raise ApiError(503, "unavailable", f"cannot fetch Google's token certificates: {exc}") from exc
        except (ValueError, auth_exc.GoogleAuthError) as exc:
            raise unauthenticated(f"the ID token is not valid: {exc}") from exc
        _check_claims(claims, audiences)
        return claims

    def verify_iap(self, assertion: str, audiences: tuple[str, ...]) -> Mapping[str, Any]:
        """The claims of an Identity-Aware Proxy assertion for one of `audiences`; ApiError 401 when it is
        not one, 503 when IAP's keys cannot be fetched."""
        import jwt as pyjwt
        from google.auth import exceptions as auth_exc
        from google.oauth2 import id_token

        try:
            claims = id_token.verify_token(
                assertion,
                self._request,  # type: ignore[arg-type]
                audience=list(audiences),
                certs_url=IAP_CERTS_URL,
            )
        except auth_exc.TransportError as exc:
            raise ApiError(503, "unavailable", f"cannot fetch IAP's public keys: {exc}") from exc
        except (ValueError, pyjwt.PyJWTError, auth_exc.GoogleAuthError) as exc:
            raise unauthenticated(f"the IAP assertion is not valid: {exc}") from exc
        if claims.get("iss") != IAP_ISSUER:
            raise unauthenticated(f"the IAP assertion was not issued by IAP (iss={claims.get('iss')!r})")
        if not claims.get("email"):
            raise unauthenticated("the IAP assertion names no email")
        return claims


def _check_claims(claims: Mapping[str, Any], audiences: tuple[str, ...]) -> None:
    if claims.get("iss") not in GOOGLE_ISSUERS:
        raise unauthenticated(f"the ID token was not issued by Google (iss={claims.get('iss')!r})")
    aud = str(claims.get("aud") or "")
    for_us = any(aud.rstrip("/") == base or aud.startswith(base + "/") for base in audiences)
    if not for_us and aud != GCLOUD_CLIENT_ID:
        raise unauthenticated(f"the ID token is for {aud!r}, not for {' or '.join(audiences)}")
    if not claims.get("email"):
        raise unauthenticated("the ID token has no email claim (request it with the email scope)")
    if claims.get("email_verified") is not True:  # only the JSON boolean: "false", "true", 1 are not
        raise unauthenticated("the ID token's email is not verified")


def unauthenticated(message: str) -> ApiError:
    """A 401 with a Bearer challenge."""
    return ApiError(401, "unauthenticated", message, headers=_CHALLENGE)


class Authenticator(Protocol):
    """Who is calling; the wiring picks the implementation (ID tokens, or none on the local stack)."""

    def __call__(self, request: flask.Request) -> Caller:
        """The caller of `request`, or ApiError 401."""
        ...


@dataclass(frozen=True)
class IdTokenAuthenticator:
    """The deployed service's: a valid Google ID token for this service, with a verified email."""

    verifier: TokenVerifier
    # The service's own URL(s) from configuration (ARC_SERVICE_URL), never from the request: a Host header
    # is the caller's to choose, so a token minted for another service must not pass by naming it.
    audiences: tuple[str, ...]
    # The configured admin and reader principals that may be groups, and who knows their members (ID
    # tokens name no groups): a caller's groups are those of these it belongs to (adapters/groups.py).
    directory: GroupDirectory | None = None
    candidate_groups: frozenset[str] = frozenset()
    # With Identity-Aware Proxy in front (ARC_IAP_AUDIENCES): its signed header names the caller instead,
    # e.g. a browser on the dashboard, which has no ID token of its own (docs/dashboard.md).
    iap_audiences: tuple[str, ...] = ()

    def __call__(self, request: flask.Request) -> Caller:
        """The caller of `request`; ApiError 401 without a valid ID token (or, behind IAP, IAP's signed
        header), 503 when the deployment does not say what this service's URL is (it fails closed)."""
        assertion = request.headers.get(IAP_HEADER, "").strip()
        if assertion and self.iap_audiences:
            claims = self.verifier.verify_iap(assertion, self.iap_audiences)
            return self._caller(str(claims["email"]).removeprefix("accounts.google.com:"), claims)
        if not self.audiences:
            raise ApiError(
                503, "misconfigured", "ARC_SERVICE_URL is not set: the API cannot tell whom ID tokens are for"
            )
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise unauthenticated("send a Google ID token for this service: Authorization: Bearer <token>")
        claims = self.verifier.verify(token.strip(), self.audiences)
        return self._caller(str(claims["email"]), claims)

    def _caller(self, address: str, claims: Mapping[str, Any]) -> Caller:
        email = address.lower()
        listed = claims.get("groups")  # IAP and Workforce Identity Federation tokens may carry them
        groups = frozenset(str(g).lower() for g in listed) if isinstance(listed, list) else frozenset()
        unresolved = self.candidate_groups - groups - {email}
        if self.directory is not None and unresolved:
            groups |= self.directory.groups_of(email, unresolved)
        return Caller(email=email, groups=groups, authenticated=True)


class LocalStackAuthenticator:
    """The embedded local stack's (loopback only, never deployed: settings.py refuses it on Cloud Run): no
    authentication, and the caller is whatever X-Arc-Submitter says."""

    def __call__(self, request: flask.Request) -> Caller:
        """Anyone may do anything."""
        return Caller(email=request.headers.get("X-Arc-Submitter") or None, local=True)


def principals(listed: str) -> frozenset[str]:
    """A comma-separated list of emails (users or groups) from a setting, lowercased."""
    return frozenset(p.strip().lower() for p in listed.split(",") if p.strip())


def _is_listed(caller: Caller, listed: frozenset[str]) -> bool:
    """True when the caller's email, or a group its token names, is in `listed`."""
    return bool(listed) and (caller.email in listed or bool(caller.groups & listed))


def is_admin(settings: Settings, caller: Caller) -> bool:
    """True when the caller is listed in ARC_ADMIN_GROUP, or its token says it is in a listed group."""
    return _is_listed(caller, principals(settings.admin_group))


def can_read_all(settings: Settings, caller: Caller) -> bool:
    """Admins, the configured readers (ARC_READER_MEMBERS) and the local stack read every run."""
    return (
        caller.local or is_admin(settings, caller) or _is_listed(caller, principals(settings.reader_members))
    )


def require_reader(settings: Settings, caller: Caller, run: RunRecord) -> None:
    """ApiError 404 unless the caller may see this run (its submitter, or a caller who reads all): a run of
    someone else's is answered as if it did not exist, so ids cannot be probed."""
    if can_read_all(settings, caller):
        return
    submitter = (run.submitter or "").lower()
    if caller.email is None or submitter != caller.email:
        raise ApiError(404, "not_found", f"run {run.id} does not exist")


def may_manage(settings: Settings, caller: Caller, run: RunRecord) -> bool:
    """True when the caller may cancel or recover this run: local stack, the run's submitter, or an admin."""
    if caller.local or is_admin(settings, caller):
        return True
    submitter = str(run.submitter or "").lower()
    return caller.email is not None and bool(submitter) and caller.email == submitter


def require_manager(settings: Settings, caller: Caller, run: RunRecord, action: str) -> None:
    """ApiError 403 unless the caller may `action` (cancel, recover) this run (may_manage)."""
    if may_manage(settings, caller, run):
        return
    raise ApiError(
        403,
        "forbidden",
        f"only the run's submitter ({run.submitter or 'unknown'}) or an admin may {action} it",
    )

"""The CLI's side of the Runs API: where the API is, how to authenticate, JSON calls and an SSE reader.

The API is `--api URL`, else $ARC_API_URL, else the local stack that `arc local up` announced in
`.arc/local.json`. A loopback URL gets no token (the local stack has no auth); a deployed one gets a Google
ID token from the user's credentials: google-auth's fetch_id_token (service accounts, metadata server), else
`gcloud auth print-identity-token`. Every call has a timeout.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
import yaml

ROOT = Path(__file__).resolve().parents[3]
LOCAL_INFO = ROOT / ".arc" / "local.json"
TIMEOUT_S = 30.0
GCLOUD_TIMEOUT_S = 30.0
_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


class CliError(Exception):
    """A failure to show the user (exit code 1 or 2), with the API's problems when it listed some."""

    def __init__(self, message: str, problems: list[dict[str, Any]] | None = None, status: int = 0) -> None:
        super().__init__(message)
        self.problems = problems or []
        self.status = status


def read_user_file(path: str | Path) -> bytes:
    """A file the user named; CliError (exit 2) saying which and why when it cannot be read."""
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise CliError(f"{path}: {exc.strerror or exc}", status=400) from None


def load_user_yaml(text: bytes | str, where: str) -> Any:
    """YAML the user wrote; CliError (exit 2) naming `where`, the line and the problem when it is not YAML."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        hint = ": YAML is indented with spaces, never tabs" if "'\\t'" in problem else ""
        raise CliError(f"{where} is not valid YAML{at}: {problem}{hint}", status=400) from None


def local_info(path: Path | None = None) -> dict[str, Any] | None:
    """What `arc local up` wrote about the running stack (.arc/local.json), if anything."""
    try:
        doc = json.loads((path or LOCAL_INFO).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def resolve_api(explicit: str | None) -> str:
    """The API base URL (no trailing slash)."""
    url = explicit or os.environ.get("ARC_API_URL") or (local_info() or {}).get("api_url")
    if not url:
        raise CliError(
            "no API: pass --api URL, set ARC_API_URL, or start the local stack with `arc local up`"
        )
    return str(url).rstrip("/")


def is_loopback(url: str) -> bool:
    """True for http(s)://127.0.0.1, localhost or [::1]."""
    return (urlsplit(url).hostname or "") in _LOOPBACK


def identity_token(audience: str) -> str:
    """A Google ID token for `audience` from the user's credentials (never called for loopback URLs)."""
    from google.auth import exceptions as auth_exc

    try:
        from google.auth.transport.requests import Request
        from google.oauth2 import id_token

        token = id_token.fetch_id_token(Request(), audience)  # type: ignore[no-untyped-call]
        return str(token)
    except (auth_exc.DefaultCredentialsError, auth_exc.RefreshError, auth_exc.TransportError, ValueError):
        pass  # user credentials cannot mint ID tokens for an audience: ask gcloud
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        raise CliError("cannot get an ID token: install the gcloud CLI and run `gcloud auth login`")
    try:
        out = subprocess.run(
            [gcloud, "auth", "print-identity-token"],
            capture_output=True,
            text=True,
            check=True,
            timeout=GCLOUD_TIMEOUT_S,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        raise CliError(f"gcloud auth print-identity-token failed: {exc}") from exc
    return out.stdout.strip()


@dataclass(frozen=True)
class SseMessage:
    """One Server-Sent Events message (a comment line gives event="comment")."""

    event: str
    data: str
    id: str | None = None


def iter_sse(lines: Iterator[str]) -> Iterator[SseMessage]:
    """Parse an event stream (text lines without their line ends) into messages."""
    event, last_id = "message", None
    data: list[str] = []
    for line in lines:
        if line == "":
            if data:
                yield SseMessage(event, "\n".join(data), last_id)
            event, data = "message", []
        elif line.startswith(":"):
            yield SseMessage("comment", line[1:].strip())
        else:
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if name == "event":
                event = value
            elif name == "data":
                data.append(value)
            elif name == "id":
                last_id = value


class ApiClient:
    """JSON calls to the Runs API; errors become CliError with the API's message and problems."""

    def __init__(self, base_url: str, token: str | None = None, timeout: float = TIMEOUT_S) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()
        self.session.trust_env = False  # no proxy detours for a loopback API
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    @classmethod
    def connect(cls, api: str | None, no_auth: bool = False) -> ApiClient:
        """A client for the resolved API, with an ID token when it is not on loopback."""
        url = resolve_api(api)
        token = None if no_auth or is_loopback(url) else identity_token(url)
        return cls(url, token)

    def call(self, method: str, path: str, expect: tuple[int, ...] = (200,), **kwargs: Any) -> Any:
        """Send a request and return the decoded JSON body."""
        kwargs.setdefault("timeout", self.timeout)
        try:
            resp = self.session.request(method, self.base_url + path, **kwargs)
        except requests.RequestException as exc:
            raise CliError(f"cannot reach {self.base_url}: {exc}") from exc
        if resp.status_code not in expect:
            raise _error(resp)
        return resp.json()

    def stream(self, path: str, headers: Mapping[str, str] | None = None) -> requests.Response:
        """Open a streaming GET (SSE); the read timeout outlasts the server's heartbeats."""
        try:
            resp = self.session.get(
                self.base_url + path, headers=dict(headers or {}), stream=True, timeout=(10, 60)
            )
        except requests.RequestException as exc:
            raise CliError(f"cannot reach {self.base_url}: {exc}") from exc
        if resp.status_code != 200:
            raise _error(resp)
        return resp


def _error(resp: requests.Response) -> CliError:
    try:
        err = resp.json()["error"]
        return CliError(f"{err['code']}: {err['message']}", err.get("problems"), resp.status_code)
    except (ValueError, KeyError, TypeError):
        return CliError(f"HTTP {resp.status_code}: {resp.text[:300]}", status=resp.status_code)

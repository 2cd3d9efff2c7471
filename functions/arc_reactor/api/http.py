"""HTTP plumbing shared by the runs_api handlers: the call context, JSON bodies and JSON errors.

Every error body is `{"error": {"code": <stable code>, "message": <text>, ...}}`; `problems` lists every
problem of an invalid request or bundle, each with its file, line and field when known."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

import flask

from arc_reactor.core.ids import is_run_id
from arc_reactor.errors import Problem

if TYPE_CHECKING:
    from arc_reactor.api.auth import Caller
    from arc_reactor.wiring import Deps


class ApiError(Exception):
    """An error answered as JSON with an HTTP status and a stable code."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        problems: list[Problem] | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.problems = list(problems or [])
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})

    def body(self) -> dict[str, Any]:
        """The JSON error body."""
        err: dict[str, Any] = {"code": self.code, "message": self.message, **self.extra}
        if self.problems:
            err["problems"] = [p.as_dict() for p in self.problems]
        return {"error": err}


def bad_request(message: str, problems: list[Problem] | None = None) -> ApiError:
    """A 400 with code bad_request."""
    return ApiError(400, "bad_request", message, problems)


@dataclass
class Call:
    """One request being handled: the dependencies, the request, who is calling, and path parameters."""

    deps: Deps
    request: flask.Request
    caller: Caller
    params: dict[str, str] = field(default_factory=dict)

    @property
    def run_id(self) -> str:
        """The {run_id} path parameter, checked: 400 when it is not a run id."""
        value = self.params.get("run_id", "")
        if not is_run_id(value):
            raise bad_request(f"{value!r} is not a run id (r followed by 18 lowercase letters or digits)")
        return value


def _default(value: object) -> object:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def dumps(body: Any) -> str:
    """JSON text; datetimes as ISO 8601 (RFC 3339) strings."""
    return json.dumps(body, default=_default, ensure_ascii=False)


def json_response(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> flask.Response:
    """A JSON response."""
    resp = flask.Response(dumps(body), status=status, mimetype="application/json")
    for key, value in (headers or {}).items():
        resp.headers[key] = value
    return resp


def encode_token(doc: dict[str, Any]) -> str:
    """An opaque page token."""
    return base64.urlsafe_b64encode(json.dumps(doc, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_token(token: str) -> dict[str, Any]:
    """Inverse of encode_token; ValueError when malformed."""
    try:
        doc = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (binascii.Error, UnicodeDecodeError, ValueError, RecursionError) as exc:  # nested too deep
        raise ValueError("bad token") from exc
    if not isinstance(doc, dict):
        raise ValueError("bad token")
    return doc


def error_response(err: ApiError) -> flask.Response:
    """The JSON response of an ApiError."""
    return json_response(err.body(), err.status, err.headers)

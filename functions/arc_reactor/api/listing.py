"""GET /runs: filters, keyset pagination with opaque page tokens, newest first.

A page token holds the (created_at, id) of the last run of the page and a fingerprint of the filters it was
made for: the next page is `WHERE (created_at, id) < (token)` on an index, so a page costs the same at any
depth, and runs inserted meanwhile (always newer) never shift or repeat the runs a client is paging through.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from typing import Any

from arc_reactor.adapters import runs_repo
from arc_reactor.api.auth import can_read_all
from arc_reactor.api.http import ApiError, Call, bad_request, decode_token, encode_token, json_response
from arc_reactor.api.views import run_view
from arc_reactor.core.run_record import RunRecord
from arc_reactor.core.status import RunStatus
from arc_reactor.errors import Problem

MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 50
MAX_FILTER_CHARS = 256
QUERY_KEYS = frozenset(
    {
        "status",
        "pipeline",
        "submitter",
        "label",
        "created_after",
        "created_before",
        "id_prefix",
        "name",
        "page_size",
        "page_token",
    }
)
_STATUSES = frozenset(s.value for s in RunStatus)
_ID_PREFIX = re.compile(r"r[0-9a-z]{2,18}")


class _Query:
    """Reads the query string, collecting every problem instead of stopping at the first."""

    def __init__(self, args: Any) -> None:
        self.args = args
        self.problems: list[Problem] = []
        for key in args:  # PostgreSQL text cannot hold NUL: no run could match, and the query would fail
            if any("\x00" in v for v in args.getlist(key)):
                self.add(key, "must not contain a NUL character")

    def add(self, field: str, message: str) -> None:
        self.problems.append(Problem("query", message, field=field))

    def one(self, key: str) -> str | None:
        values = self.args.getlist(key)
        if len(values) > 1:
            self.add(key, "give it at most once")
        value = values[0] if values else None
        if value is not None and not 0 < len(value) <= MAX_FILTER_CHARS:
            self.add(key, f"must be 1 to {MAX_FILTER_CHARS} characters")
            return None
        return value

    def parsed(self, key: str, parse: Callable[[str], Any], what: str) -> Any:
        value = self.one(key)
        if value is None:
            return None
        try:
            return parse(value)
        except ValueError:
            self.add(key, f"{value!r} is not {what}")
            return None


def _aware(text: str) -> datetime:
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise ValueError("no time zone")
    return value


def _page_size(text: str) -> int:
    size = int(text)
    if not 1 <= size <= MAX_PAGE_SIZE:
        raise ValueError("out of range")
    return size


def parse_filter(q: _Query) -> runs_repo.RunFilter:
    """The filters of the query string (problems go to `q`)."""
    statuses = tuple(s for raw in q.args.getlist("status") for s in raw.split(",") if s)
    for s in statuses:
        if s not in _STATUSES:
            q.add("status", f"unknown status {s!r}; one of {', '.join(sorted(_STATUSES))}")
    labels: dict[str, str] = {}
    for raw in q.args.getlist("label"):
        key, sep, value = raw.partition("=")
        if not sep or not key or len(raw) > MAX_FILTER_CHARS:
            q.add("label", f"{raw[:80]!r} is not key=value")
        else:
            labels[key] = value
    id_prefix = q.one("id_prefix")
    if id_prefix is not None and not _ID_PREFIX.fullmatch(id_prefix):
        q.add("id_prefix", "must be the start of a run id: r and 2 to 18 of [0-9a-z]")
    return runs_repo.RunFilter(
        id_prefix=id_prefix,
        name=q.one("name"),
        statuses=tuple(sorted(set(statuses))),
        pipeline=q.one("pipeline"),
        submitter=q.one("submitter"),
        labels=tuple(sorted(labels.items())),
        created_after=q.parsed("created_after", _aware, "an RFC 3339 date-time with a time zone"),
        created_before=q.parsed("created_before", _aware, "an RFC 3339 date-time with a time zone"),
    )


def fingerprint(where: runs_repo.RunFilter) -> str:
    """A short digest of the filters, so a token is only honoured with the filters it was made for."""
    canonical = json.dumps(
        [
            where.statuses,
            where.pipeline,
            where.submitter,
            where.labels,
            where.created_after,
            where.created_before,
            where.id_prefix,
            where.name,
        ],
        default=str,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def encode_page_token(created: datetime, run_id: str, fp: str = "") -> str:
    """An opaque token for the keyset position after (created, run_id)."""
    return encode_token({"c": created.isoformat(), "i": run_id, "f": fp})


def decode_page_token(token: str) -> tuple[datetime, str, str]:
    """(created, run_id, filter fingerprint); ValueError when malformed."""
    doc = decode_token(token)
    try:
        return _aware(doc["c"]), str(doc["i"]), str(doc.get("f", ""))
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError("bad page token") from exc


def list_runs(call: Call) -> Any:
    """GET /runs."""
    rows, token = runs_page(call)
    return json_response({"runs": [run_view(r) for r in rows], "next_page_token": token})


def runs_page(call: Call, args: Any = None) -> tuple[list[RunRecord], str | None]:
    """The page of runs the query (`args`, else the query string) asks for (the caller's own unless they
    read all) and the next page's token; ApiError 400 naming every problem of the query."""
    args = call.request.args if args is None else args
    q = _Query(args)
    unknown = sorted(set(args) - QUERY_KEYS)
    for key in unknown:
        q.add(key, f"unknown parameter; allowed: {', '.join(sorted(QUERY_KEYS))}")
    where = parse_filter(q)
    if not can_read_all(call.deps.settings, call.caller):
        if where.submitter is not None and where.submitter.lower() != (call.caller.email or ""):
            raise ApiError(403, "forbidden", "you may list only the runs you submitted")
        where = replace(where, submitter=call.caller.email or "")
    size = q.parsed("page_size", _page_size, f"an integer from 1 to {MAX_PAGE_SIZE}") or DEFAULT_PAGE_SIZE
    fp = fingerprint(where)
    before = None
    token = q.one("page_token")
    if token is not None:
        try:
            created, rid, token_fp = decode_page_token(token)
            before = (created, rid)
            if token_fp != fp:
                q.add("page_token", "was made for other filters; start again without a token")
        except ValueError:
            q.add("page_token", "is not a page token from this API")
    if q.problems:
        raise bad_request("the query is invalid", q.problems)
    rows = runs_repo.list_runs(call.deps.engine, limit=size + 1, before=before, where=where)
    if len(rows) <= size:
        return rows, None
    last = rows[size - 1]
    return rows[:size], encode_page_token(last["created_at"], last["id"], fp)

"""Pipeline schemas fetched over HTTP from the registry's `schema_base` (e.g. raw.githubusercontent.com at a
tag), cached in the process per (pipeline, revision, file), and in the runs bucket per pipeline revision
(BucketCachedSchemaSource), so each is fetched once. Used in the cloud only: the local stack and the tests
stay offline and read schemas from folders (core/schemas.py, ARC_SCHEMA_CACHE_DIR).

A missing file (404) is cached as "no schema". A transient failure (connection error, timeout, 5xx, 429) is
retried with the bounded policy of adapters/retry.py and then raised as TransientError: the API answers
503, the inbox function is redelivered. Anything else (another 4xx, not JSON, too large) is a deployment
fault and raises ValueError naming the URL.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from arc_reactor.adapters.retry import retry_call
from arc_reactor.core.registry import PipelineSpec
from arc_reactor.core.schemas import SchemaSource, pipeline_slug
from arc_reactor.errors import TransientError

if TYPE_CHECKING:
    from arc_reactor.adapters.storage import Storage

log = logging.getLogger(__name__)

TIMEOUT_S = 10.0
ATTEMPTS = 3
DEADLINE_S = 20.0
MAX_SCHEMA_BYTES = 2 * 1024 * 1024

# (url) -> (status, body); raises ConnectionError/TimeoutError for transport failures
Fetch = Callable[[str], tuple[int, bytes]]


class _RetryableStatus(Exception):
    """A 5xx or 429 answer, worth another attempt."""


def requests_fetch(url: str) -> tuple[int, bytes]:
    """GET `url` with requests (imported lazily), bounded by TIMEOUT_S and MAX_SCHEMA_BYTES."""
    import requests

    try:
        with requests.get(url, timeout=TIMEOUT_S, stream=True) as resp:
            body = resp.raw.read(MAX_SCHEMA_BYTES + 1, decode_content=True)
            return resp.status_code, body
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise ConnectionError(f"GET {url}: {exc}") from exc


class HttpSchemaSource:
    """A SchemaSource for registry entries with a `schema_base` URL (`{revision}` is filled in)."""

    def __init__(self, fetch: Fetch = requests_fetch, sleep: Callable[[float], None] | None = None) -> None:
        self._fetch = fetch
        self._sleep = sleep
        self._cache: dict[tuple[str, str, str], dict[str, Any] | None] = {}
        self._lock = threading.Lock()

    @staticmethod
    def url_for(pipeline: PipelineSpec, revision: str, relpath: str) -> str | None:
        """The URL of `relpath` at `revision`, or None when the entry has no schema_base."""
        if not pipeline.schema_base:
            return None
        parts = PurePosixPath(relpath).parts
        if not relpath or "\\" in relpath or relpath.startswith("/") or ".." in parts or "?" in relpath:
            raise ValueError(f"schema path {relpath!r} must be a relative path inside the pipeline")
        base = pipeline.schema_base.replace("{revision}", revision)
        if urlsplit(base).scheme not in ("https", "http"):
            raise ValueError(f"{pipeline.name}: schema_base must be an http(s) URL, not {base!r}")
        return base.rstrip("/") + "/" + relpath

    def get(self, pipeline: PipelineSpec, revision: str, relpath: str) -> dict[str, Any] | None:
        """The schema at `relpath` of the pipeline at `revision`, or None when there is no such file."""
        key = (pipeline.name, revision, relpath)
        with self._lock:
            if key in self._cache:
                return self._cache[key]
        url = self.url_for(pipeline, revision, relpath)
        schema = None if url is None else self._download(url)
        with self._lock:
            self._cache[key] = schema
        return schema

    def _download(self, url: str) -> dict[str, Any] | None:
        def once() -> tuple[int, bytes]:
            status, body = self._fetch(url)
            if status >= 500 or status == 429:
                raise _RetryableStatus(f"GET {url}: HTTP {status}")
            return status, body

        retry_on = (ConnectionError, TimeoutError, _RetryableStatus)
        kwargs: dict[str, Any] = {"sleep": self._sleep} if self._sleep is not None else {}
        try:
            status, body = retry_call(
                once, attempts=ATTEMPTS, deadline=DEADLINE_S, retry_on=retry_on, **kwargs
            )
        except retry_on as exc:
            raise TransientError(f"cannot fetch the pipeline schema {url}: {exc}") from exc
        if status == 404:
            return None
        if status != 200:
            raise ValueError(f"GET {url}: HTTP {status}")
        if len(body) > MAX_SCHEMA_BYTES:
            raise ValueError(f"{url}: larger than {MAX_SCHEMA_BYTES} bytes")
        try:
            doc = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{url}: invalid JSON: {exc}") from exc
        if not isinstance(doc, dict):
            raise ValueError(f"{url}: a JSON schema must be an object, not {type(doc).__name__}")
        return doc


SCHEMA_CACHE_PREFIX = "schemas/"  # in the runs bucket, outside runs/ and work/ (no lifecycle rule)


class BucketCachedSchemaSource:
    """Schemas fetched by `inner` (over HTTP), kept in the runs bucket per pipeline revision, so each is
    fetched once for the whole deployment, survives instance restarts and keeps validating when the
    upstream host is down: `gs://<runs>/schemas/<pipeline slug>/<revision>/<file>`. A file upstream does
    not have (404) is not cached in the bucket: None, as from the inner source. A failure to write the
    cache is a warning (the schema is still used); reading it goes through the storage adapter's errors."""

    def __init__(self, storage: Callable[[], Storage], bucket: str, inner: SchemaSource) -> None:
        self._storage = storage  # a callable, so the Storage client is made on the first miss only
        self._bucket = bucket
        self._inner = inner
        self._cache: dict[tuple[str, str, str], dict[str, Any] | None] = {}
        self._lock = threading.Lock()

    @staticmethod
    def object_name(pipeline: PipelineSpec, revision: str, relpath: str) -> str:
        """Where the schema is kept in the runs bucket."""
        if not relpath or "\\" in relpath or relpath.startswith("/") or ".." in PurePosixPath(relpath).parts:
            raise ValueError(f"schema path {relpath!r} must be a relative path inside the pipeline")
        if not revision or "/" in revision or revision in (".", ".."):
            raise ValueError(f"revision {revision!r} cannot name a cache folder")
        return f"{SCHEMA_CACHE_PREFIX}{pipeline_slug(pipeline.name)}/{revision}/{relpath}"

    def get(self, pipeline: PipelineSpec, revision: str, relpath: str) -> dict[str, Any] | None:
        """The schema from the process cache, else the bucket, else `inner` (then written to the bucket)."""
        key = (pipeline.name, revision, relpath)
        with self._lock:
            if key in self._cache:
                return self._cache[key]
        name = self.object_name(pipeline, revision, relpath)
        schema = self._read(name)
        if schema is None:
            schema = self._inner.get(pipeline, revision, relpath)
            if schema is not None:
                self._write(name, schema)
        with self._lock:
            self._cache[key] = schema
        return schema

    def _read(self, name: str) -> dict[str, Any] | None:
        data = self._storage().read_bytes(self._bucket, name, max_bytes=MAX_SCHEMA_BYTES)
        if data is None:
            return None
        try:
            doc = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError):
            log.warning("cached schema gs://%s/%s is not JSON: fetching it again", self._bucket, name)
            return None
        return doc if isinstance(doc, dict) else None

    def _write(self, name: str, schema: dict[str, Any]) -> None:
        body = json.dumps(schema, sort_keys=True).encode()
        try:
            self._storage().write_bytes(self._bucket, name, body, "application/json")
        except Exception as exc:  # noqa: BLE001 - a cache that cannot be written only costs a later fetch
            log.warning(
                "could not cache schema gs://%s/%s: %s", self._bucket, name, exc,
                extra={"event": "schema_cache_write_failed"},
            )  # fmt: skip

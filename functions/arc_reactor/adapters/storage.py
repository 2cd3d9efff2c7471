"""Cloud Storage adapter: every google-cloud-storage call of the package goes through here."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from arc_reactor.core.layout import split_gs_uri
from arc_reactor.errors import StorageForbidden, StorageObjectMissing, TransientError

if TYPE_CHECKING:
    from google.cloud import storage  # type: ignore[attr-defined]

    from arc_reactor.settings import Settings

TIMEOUT_S = 30.0  # per request; the client's own retry policy is bounded by its deadline (120 s)
CLIENT_RETRY: Any = object()  # marker: keep the client's default retry; pass retry=None to disable it
MAX_REWRITE_CALLS = 1000  # each rewrite call copies as much as Cloud Storage decides, then returns a token


class ObjectTooLarge(Exception):
    """An object is larger than the caller allows."""

    def __init__(self, name: str, size: int, limit: int) -> None:
        super().__init__(f"{name} is {size} bytes, over the limit of {limit} bytes")
        self.name, self.size, self.limit = name, size, limit


@dataclass(frozen=True)
class ObjectInfo:
    """Metadata of one object."""

    bucket: str
    name: str
    size: int
    generation: int


@dataclass(frozen=True)
class ObjectEntry:
    """One object of a listing."""

    name: str
    size: int
    updated: datetime | None
    content_type: str | None


def make_client(settings: Settings) -> storage.Client:
    """A storage client. Against the emulator (STORAGE_EMULATOR_HOST, the client library's own switch) it
    uses anonymous credentials, so no credential lookup or metadata-server probe ever happens."""
    from google.cloud import storage  # type: ignore[attr-defined]

    if os.environ.get("STORAGE_EMULATOR_HOST"):
        from google.auth.credentials import AnonymousCredentials

        client = storage.Client(project=settings.project, credentials=AnonymousCredentials())  # type: ignore[no-untyped-call]
    else:
        client = storage.Client(project=settings.project)
    _keep_connections(client)
    return client


def _keep_connections(client: storage.Client) -> None:
    """Size the client's HTTP connection pool for the requests a process has in flight at once (the shared
    storage pool's threads plus the request threads), so a burst reuses its connections: requests' default
    keeps 10 per host and opens, then discards, one more for every request beyond that."""
    from requests.adapters import HTTPAdapter

    from arc_reactor.adapters.storage_pool import STORAGE_WORKERS

    session = client._http  # the client's requests session (an AuthorizedSession in the cloud)
    for scheme in ("https://", "http://"):
        if type(session.get_adapter(scheme)) is HTTPAdapter:  # leave a mutual-TLS adapter as it is
            session.mount(scheme, HTTPAdapter(pool_connections=4, pool_maxsize=4 * STORAGE_WORKERS))


def _wrap(exc: Exception) -> Exception:
    """The package's error for an SDK exception: services never see google.api_core's. Transient is what
    the storage client itself retries (its DEFAULT_RETRY predicate: 408/429/5xx, and requests' connection
    errors and timeouts, which are not subclasses of Python's ConnectionError)."""
    from google.api_core import exceptions as gexc
    from google.cloud.storage.retry import _should_retry  # DEFAULT_RETRY's predicate

    if isinstance(exc, gexc.NotFound):
        return StorageObjectMissing(str(exc))
    if isinstance(exc, gexc.Forbidden):
        return StorageForbidden(str(exc))
    if _should_retry(exc) or isinstance(exc, ConnectionError | TimeoutError):
        return TransientError(f"Cloud Storage unavailable: {type(exc).__name__}: {exc}")
    return exc


class Storage:
    """Thin, typed wrapper over a storage.Client."""

    def __init__(self, client: storage.Client) -> None:
        self.client = client

    def stat(self, bucket: str, name: str) -> ObjectInfo | None:
        """Metadata of an object, or None when it does not exist."""
        try:
            blob = self.client.bucket(bucket).get_blob(name, timeout=TIMEOUT_S)
        except Exception as exc:
            raise _wrap(exc) from exc
        if blob is None:
            return None
        return ObjectInfo(bucket, name, int(blob.size or 0), int(blob.generation or 0))

    def read_bytes(
        self, bucket: str, name: str, max_bytes: int | None = None, generation: int | None = None
    ) -> bytes | None:
        """The object's content in one GET, None if it does not exist (or, with `generation`, when the live
        object is another generation); ObjectTooLarge past `max_bytes`.

        The GET asks for the first `max_bytes + 1` bytes (a Range request), so an oversize object is
        refused after reading one byte more than the limit, never downloaded whole; only then is it
        stat'ed, for the size the message names."""
        from google.api_core.exceptions import NotFound, PreconditionFailed, RequestRangeNotSatisfiable

        kwargs: dict[str, Any] = {"timeout": TIMEOUT_S}
        if max_bytes is not None:
            kwargs["end"] = max_bytes  # inclusive: bytes 0..max_bytes, one more than allowed
        if generation is not None:
            kwargs["if_generation_match"] = generation
        try:
            data: bytes = self.client.bucket(bucket).blob(name).download_as_bytes(**kwargs)
        except (NotFound, PreconditionFailed):
            return None
        except RequestRangeNotSatisfiable:  # Cloud Storage's answer to a Range GET of an empty object
            return b""
        except Exception as exc:
            raise _wrap(exc) from exc
        if max_bytes is not None and len(data) > max_bytes:
            info = self.stat(bucket, name)
            raise ObjectTooLarge(name, info.size if info else len(data), max_bytes)
        return data

    def read_json_object(self, bucket: str, name: str, max_bytes: int) -> dict[str, Any] | None:
        """A small JSON object the service itself wrote (a feedback file, a hook marker), or None when it is
        absent, empty, larger than `max_bytes`, not JSON or not an object: such a file is ignored, never
        an error."""
        try:
            data = self.read_bytes(bucket, name, max_bytes=max_bytes)
            doc = json.loads(data) if data else None
        except (ValueError, ObjectTooLarge):
            return None
        return doc if isinstance(doc, dict) else None

    def write_bytes(
        self, bucket: str, name: str, data: bytes, content_type: str = "text/plain", retry: Any = CLIENT_RETRY
    ) -> None:
        """Create or replace an object. `retry=None` leaves retrying to the caller's own policy."""
        try:
            self.client.bucket(bucket).blob(name).upload_from_string(
                data, content_type=content_type, timeout=TIMEOUT_S, **_retry_kw(retry)
            )
        except Exception as exc:
            raise _wrap(exc) from exc

    def list_names(self, bucket: str, prefix: str, limit: int = 1000) -> list[str]:
        """Object names under `prefix`, at most `limit`."""
        try:
            return [
                b.name
                for b in self.client.list_blobs(bucket, prefix=prefix, max_results=limit, timeout=TIMEOUT_S)
            ]
        except Exception as exc:
            raise _wrap(exc) from exc

    def list_page(
        self, bucket: str, prefix: str, page_size: int, token: dict[str, Any] | None
    ) -> tuple[list[ObjectEntry], dict[str, Any] | None]:
        """One page of the objects under `prefix`, in name order, and the token of the next page (None at
        the end). The token holds Cloud Storage's own page token and the last name returned: a server that
        answers every object at once (the emulator ignores maxResults) is paged here, by name."""
        gcs_token, after = (token or {}).get("gcs"), str((token or {}).get("after") or "")
        try:
            listing = self.client.list_blobs(
                bucket, prefix=prefix, page_size=page_size, page_token=gcs_token, timeout=TIMEOUT_S
            )
            page = sorted(next(listing.pages), key=lambda b: b.name)
            following = listing.next_page_token
        except StopIteration:
            page, following = [], None
        except Exception as exc:
            raise _wrap(exc) from exc
        fresh = [b for b in page if b.name > after]
        entries = [
            ObjectEntry(b.name, int(b.size or 0), b.updated, b.content_type) for b in fresh[:page_size]
        ]
        if len(fresh) > page_size:  # this page holds more: the same page again, after the last name
            return entries, {"gcs": gcs_token, "after": entries[-1].name}
        return entries, (
            {"gcs": following, "after": entries[-1].name if entries else after} if following else None
        )

    def download_url(self, bucket: str, name: str, ttl: timedelta) -> str:
        """A URL that downloads the object without credentials for `ttl`: a V4 signed URL, signed with the
        client's own key or, for the metadata server's credentials of a Cloud Run function, through the IAM
        signBlob API as the function's service account (it needs iam.serviceAccounts.signBlob on itself).
        Against the emulator: its plain download URL (it checks no signature)."""
        emulator = os.environ.get("STORAGE_EMULATOR_HOST")
        if emulator:
            return f"{emulator.rstrip('/')}/download/storage/v1/b/{bucket}/o/{quote(name, safe='')}?alt=media"
        from google.auth.credentials import Signing

        blob = self.client.bucket(bucket).blob(name)
        credentials = self.client._credentials
        try:
            if isinstance(credentials, Signing):
                return str(blob.generate_signed_url(version="v4", expiration=ttl, method="GET"))
            if not credentials.valid:
                from google.auth.transport.requests import Request

                credentials.refresh(Request())  # type: ignore[no-untyped-call]
            return str(
                blob.generate_signed_url(
                    version="v4",
                    expiration=ttl,
                    method="GET",
                    service_account_email=credentials.service_account_email,
                    access_token=credentials.token,
                )
            )
        except Exception as exc:
            raise _wrap(exc) from exc

    def has_objects(self, uri: str) -> bool:
        """True when the gs:// prefix `uri` holds at least one object."""
        bucket, prefix = split_gs_uri(uri)
        return bool(self.list_names(bucket, prefix, limit=1))

    def copy(self, src_uri: str, dest_uri: str, retry: Any = CLIENT_RETRY) -> bool:
        """Copy an object inside Cloud Storage (a rewrite: nothing passes through this machine), unless
        `dest_uri` already holds the same bytes (size and CRC32C); True when it copied. A large object
        takes several rewrite calls, at most MAX_REWRITE_CALLS."""
        src_bucket, src_name = split_gs_uri(src_uri)
        dest_bucket, dest_name = split_gs_uri(dest_uri)
        try:
            source = self.client.bucket(src_bucket).get_blob(src_name, timeout=TIMEOUT_S, **_retry_kw(retry))
            if source is None:
                raise StorageObjectMissing(f"{src_uri} does not exist")
            dest = self.client.bucket(dest_bucket).get_blob(dest_name, timeout=TIMEOUT_S, **_retry_kw(retry))
            if dest is not None and (dest.size, dest.crc32c) == (source.size, source.crc32c):
                return False
            dest = self.client.bucket(dest_bucket).blob(dest_name)
            token, _, _ = dest.rewrite(source, timeout=TIMEOUT_S, **_retry_kw(retry))
            calls = 1
            while token is not None:
                if calls >= MAX_REWRITE_CALLS:
                    raise TransientError(f"copy of {src_uri} to {dest_uri} did not finish in {calls} calls")
                token, _, _ = dest.rewrite(source, token=token, timeout=TIMEOUT_S, **_retry_kw(retry))
                calls += 1
        except (StorageObjectMissing, TransientError):
            raise
        except Exception as exc:
            raise _wrap(exc) from exc
        return True

    def download_file(self, uri: str, dest: Path, retry: Any = CLIENT_RETRY) -> None:
        """Download gs://bucket/name to a local file."""
        bucket, name = split_gs_uri(uri)
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.client.bucket(bucket).blob(name).download_to_filename(
                str(dest), timeout=TIMEOUT_S, **_retry_kw(retry)
            )
        except Exception as exc:
            raise _wrap(exc) from exc

    def upload_file(
        self, src: Path, uri: str, content_type: str | None = None, retry: Any = CLIENT_RETRY
    ) -> None:
        """Upload a local file to gs://bucket/name; `retry=None` leaves retrying to the caller's policy."""
        bucket, name = split_gs_uri(uri)
        try:
            self.client.bucket(bucket).blob(name).upload_from_filename(
                str(src), content_type=content_type, timeout=TIMEOUT_S, **_retry_kw(retry)
            )
        except Exception as exc:
            raise _wrap(exc) from exc


def _retry_kw(retry: Any) -> dict[str, Any]:
    return {} if retry is CLIENT_RETRY else {"retry": retry}

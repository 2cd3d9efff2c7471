"""GET /runs/{id}/results: the files a run wrote to its results location, a page at a time, each with a
short-lived download URL, so that a user can fetch results without any access to the bucket.

The URLs are V4 signed URLs (adapters/storage.py download_url): in the cloud, signed through the IAM
signBlob API as runs_api's own service account; on the local stack, the emulator's plain download URLs.
They are made in parallel on the shared storage pool (signBlob is one request each). A run that has not
completed may already have some results: they are listed, and `complete` says whether the run finished.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from arc_reactor.adapters.storage_pool import storage_map
from arc_reactor.api.auth import require_reader
from arc_reactor.api.http import ApiError, Call, encode_token, json_response
from arc_reactor.api.run_logs import page_query
from arc_reactor.core.layout import split_gs_uri
from arc_reactor.core.status import RunStatus
from arc_reactor.errors import StorageForbidden

MAX_PAGE_SIZE = 500
DEFAULT_PAGE_SIZE = 100


def results(call: Call) -> Any:
    """GET /runs/{id}/results?page_size=&page_token=."""
    size, token = page_query(call, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
    run = call.deps.runs.get_run(call.run_id)
    require_reader(call.deps.settings, call.caller, run)
    uri = run.get("results_uri")
    if not uri:
        raise ApiError(404, "no_results", f"run {run.id} has no results location")
    bucket, prefix = split_gs_uri(uri.rstrip("/") + "/")
    storage = call.deps.storage
    try:
        entries, following = storage.list_page(bucket, prefix, size, token)
    except StorageForbidden as exc:
        raise ApiError(
            403, "results_unreadable", f"the API may not read {uri} (a results location outside its buckets)"
        ) from exc
    ttl = timedelta(seconds=call.deps.settings.results_url_ttl_seconds)
    expires = datetime.now(UTC) + ttl
    urls = storage_map(lambda e: storage.download_url(bucket, e.name, ttl), entries)
    files = [
        {
            "path": e.name[len(prefix) :],
            "uri": f"gs://{bucket}/{e.name}",
            "size": e.size,
            "updated": e.updated.isoformat() if e.updated else None,
            "content_type": e.content_type,
            "url": url,
        }
        for e, url in zip(entries, urls, strict=True)
    ]
    body = {
        "run_id": run.id,
        "status": run.status,
        "complete": run.status == RunStatus.COMPLETED.value,
        "results_uri": uri,
        "urls_expire_at": expires.isoformat(timespec="seconds"),
        "files": files,
        "next_page_token": encode_token(following) if following else None,
    }
    return json_response(body)

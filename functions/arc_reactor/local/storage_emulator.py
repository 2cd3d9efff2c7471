"""The Cloud Storage emulator (gcp-storage-emulator) in-process, with a write hook that turns object
writes in watched buckets into `google.cloud.storage.object.v1.finalized` CloudEvent payloads.

The emulator serves one request at a time, so the hook never calls back into it: it puts the event on a
queue that a separate thread drains (a consumer may then read the object through the emulator)."""

from __future__ import annotations

import logging
import queue
import socket
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

FinalizeHandler = Callable[[dict[str, Any]], None]
LISTEN_BACKLOG = 128


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class StorageEmulator:
    """gcp-storage-emulator on 127.0.0.1 with a finalize hook for `watched` buckets."""

    def __init__(
        self, port: int | None = None, buckets: Iterable[str] = (), data_dir: Path | None = None
    ) -> None:
        from gcp_storage_emulator.server import create_server

        self.port = port or free_port()
        self.host = f"127.0.0.1:{self.port}"
        if data_dir is not None:
            data_dir.mkdir(parents=True, exist_ok=True)
        self._server = create_server(
            "127.0.0.1", self.port, in_memory=data_dir is None, data_dir=str(data_dir) if data_dir else None
        )
        self._buckets = list(buckets)
        self._watch: dict[str, FinalizeHandler] = {}
        self._queue: queue.Queue[tuple[FinalizeHandler, dict[str, Any]] | None] = queue.Queue()
        self._worker = threading.Thread(target=self._drain, name="storage-finalize-hook", daemon=True)
        self._install_hook()
        _serve_generations()

    @property
    def endpoint(self) -> str:
        """The value for STORAGE_EMULATOR_HOST."""
        return f"http://{self.host}"

    def _install_hook(self) -> None:
        storage = self._server._storage  # the emulator exposes no hook API; wrap its single write path
        original = storage.create_file

        def create_file(
            bucket_name: str,
            file_name: str,
            content: bytes,
            file_obj: dict[str, Any],
            file_id: str | None = None,
        ) -> Any:
            result = original(bucket_name, file_name, content, file_obj, file_id)
            handler = self._watch.get(bucket_name)
            if handler is not None:
                self._queue.put((handler, dict(file_obj)))
            return result

        storage.create_file = create_file

    def watch(self, bucket: str, handler: FinalizeHandler) -> None:
        """Call `handler(object_resource)` (from the hook thread) after every write to `bucket`."""
        self._watch[bucket] = handler

    def _drain(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            handler, obj = item
            try:
                handler(obj)
            except Exception:  # one failing delivery must not stop the hook thread
                log.exception("finalize hook handler failed for %s/%s", obj.get("bucket"), obj.get("name"))
            finally:
                self._queue.task_done()

    def start(self) -> StorageEmulator:
        """Start serving and create the initial buckets."""
        from gcp_storage_emulator.handlers import buckets as bucket_handlers

        self._server.start()
        # http.server listens with a backlog of 5: a burst of more connections than that overflows it and
        # the client's SYN is retried a second later. Listening again on Linux only raises the backlog.
        self._server._api._httpd.socket.listen(LISTEN_BACKLOG)
        for name in self._buckets:
            bucket_handlers.create_bucket(name, self._server._storage)
        self._worker.start()
        return self

    def create_bucket(self, name: str) -> None:
        """Create a bucket directly in the emulator's store (no HTTP)."""
        from gcp_storage_emulator.handlers import buckets as bucket_handlers

        if name not in self._server._storage.buckets:
            bucket_handlers.create_bucket(name, self._server._storage)

    def wipe(self) -> None:
        """Delete every object, keep the buckets."""
        self._server.wipe(keep_buckets=True)

    def stop(self) -> None:
        """Stop serving and the hook thread."""
        self._queue.put(None)
        self._server.stop()


def _serve_generations() -> None:
    """Make the emulator's media download behave as Cloud Storage's does in the two ways our reads rely
    on: `ifGenerationMatch` is honoured (412 when the live generation differs, as documented for object
    GETs: https://cloud.google.com/storage/docs/json_api/v1/objects/get) and the response carries
    `x-goog-generation`. The emulator ignores both; its route table is patched once per process."""
    from http import HTTPStatus

    from gcp_storage_emulator import server
    from gcp_storage_emulator.exceptions import NotFound
    from gcp_storage_emulator.handlers import objects

    original = objects.download
    if getattr(server, "_arc_generations", False):
        return

    def download(request: Any, response: Any, storage: Any, *args: Any, **kwargs: Any) -> None:
        try:
            obj = storage.get_file_obj(request.params["bucket_name"], request.params["object_id"])
        except NotFound:
            response.status = HTTPStatus.NOT_FOUND
            return
        wanted = request.query.get("ifGenerationMatch")
        if wanted and str(wanted[0]) != str(obj.get("generation")):
            response.status = HTTPStatus.PRECONDITION_FAILED
            return
        original(request, response, storage, *args, **kwargs)
        response["x-goog-generation"] = str(obj.get("generation"))
        response["x-goog-metageneration"] = str(obj.get("metageneration"))

    for _regex, handlers in server.HANDLERS:
        for method, handler in list(handlers.items()):
            if handler is original:
                handlers[method] = download
    server._arc_generations = True  # type: ignore[attr-defined]

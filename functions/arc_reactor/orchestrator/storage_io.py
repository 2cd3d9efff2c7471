"""The orchestrator's I/O: its step context, transfers with the bounded retry policy, and the log files an
engine leaves behind. Used by orchestrator/orchestrate.py and its helpers (workdir_sync, nextflow_session)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

import yaml

from arc_reactor.adapters.retry import retry_call
from arc_reactor.adapters.storage import Storage, make_client
from arc_reactor.core.engine_command import Workspace, pipeline_source, pipeline_spec
from arc_reactor.core.job_env import JobEnv
from arc_reactor.core.layout import split_gs_uri
from arc_reactor.core.registry import PipelineSpec, load_registry
from arc_reactor.errors import OrchestrationError, StorageObjectMissing, TransientError
from arc_reactor.settings import Settings

T = TypeVar("T")
log = logging.getLogger("arc_reactor.orchestrator.orchestrate")  # one logger name for every step
TRANSFER_RETRY_ON: tuple[type[BaseException], ...] = (TransientError, ConnectionError, TimeoutError)
TRANSFER_ATTEMPTS = 10  # with full jitter from 0.5 s (cap 8 s): rides out an outage of tens of seconds
TRANSFER_DEADLINE_S = 120.0


@dataclass
class Context:
    """One step's view of the run: environment, local workspace, settings and (lazily) storage."""

    env: JobEnv
    ws: Workspace
    settings: Settings
    sleep: Callable[[float], None] = time.sleep
    failed_uploads: list[str] = field(default_factory=list)  # gs:// URIs that upload() gave up on

    @cached_property
    def pipeline(self) -> tuple[PipelineSpec, str]:
        """The run's registry entry (refused when the registry does not allow it) and its source folder
        or URL: looked up once per step."""
        spec = pipeline_spec(load_registry(), self.env)
        return spec, pipeline_source(spec, self.settings.pipelines_root)

    @cached_property
    def storage(self) -> Storage:
        """The Storage adapter, created on first use."""
        return Storage(make_client(self.settings))

    def transfer(self, fn: Callable[[], T]) -> T:
        """Run one transfer with the bounded retry policy (attempts and a deadline)."""
        return retry_call(
            fn, attempts=TRANSFER_ATTEMPTS, base=0.5, cap=8.0, deadline=TRANSFER_DEADLINE_S,
            retry_on=TRANSFER_RETRY_ON, sleep=self.sleep,
        )  # fmt: skip


def download(ctx: Context, uri: str, dest: Path, what: str) -> None:
    """Download with retries; a missing object is an `input_missing` failure naming it."""
    try:
        ctx.transfer(lambda: ctx.storage.download_file(uri, dest, retry=None))
    except StorageObjectMissing as exc:
        dest.unlink(missing_ok=True)
        raise OrchestrationError("input_missing", f"{what} {uri} does not exist") from exc
    except TRANSFER_RETRY_ON as exc:
        raise OrchestrationError("storage_unavailable", f"cannot download {what} {uri}: {exc}") from exc


def copy_object(ctx: Context, src_uri: str, dest_uri: str, what: str) -> None:
    """Copy inside Cloud Storage with retries (Storage.copy: skipped when the same bytes are there); a
    missing source is an `input_missing` failure naming it, as for download."""
    try:
        ctx.transfer(lambda: ctx.storage.copy(src_uri, dest_uri, retry=None))
    except StorageObjectMissing as exc:
        raise OrchestrationError("input_missing", f"{what} {src_uri} does not exist") from exc
    except TRANSFER_RETRY_ON as exc:
        raise OrchestrationError("storage_unavailable", f"cannot copy {what} {src_uri}: {exc}") from exc


def upload(ctx: Context, src: Path, uri: str) -> bool:
    """Upload one file with retries; a failure is a warning, never a failed run."""
    try:
        ctx.transfer(lambda: ctx.storage.upload_file(src, uri, retry=None))
    except Exception as exc:  # noqa: BLE001 - any upload failure is only a warning
        log.warning("could not upload %s to %s: %s", src.name, uri, exc, extra={"event": "upload_failed"})
        ctx.failed_uploads.append(uri)
        return False
    return True


def read_object(ctx: Context, uri: str) -> bytes | None:
    """A small object's content with retries; None when it does not exist."""
    bucket, name = split_gs_uri(uri)
    return ctx.transfer(lambda: ctx.storage.read_bytes(bucket, name, max_bytes=16 * 1024 * 1024))


def write_object(ctx: Context, uri: str, data: bytes, content_type: str = "application/json") -> None:
    """Create or replace a small object, with retries."""
    bucket, name = split_gs_uri(uri)
    ctx.transfer(lambda: ctx.storage.write_bytes(bucket, name, data, content_type=content_type, retry=None))


def session_id(ws: Workspace) -> str | None:
    """The Nextflow session this attempt resumes or started (written by prepare or finish), if any."""
    if not ws.session_file.is_file():
        return None
    return ws.session_file.read_text(encoding="utf-8").strip() or None


def read_params(path: Path) -> dict[str, Any]:
    """The run's params.yaml as a mapping."""
    try:
        params = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise OrchestrationError("invalid_input", f"params.yaml is not valid YAML: {exc}") from exc
    if not isinstance(params, dict):
        raise OrchestrationError("invalid_input", "params.yaml must be a mapping")
    return params

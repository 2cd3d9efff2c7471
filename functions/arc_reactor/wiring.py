"""The wiring: settings -> clients -> ports, built lazily and cached per process. It sits above api/ and
services/ and is the only place that knows the embedded local stack from the cloud: it hands each the parts
that fit (authentication, log source, schema sources), so no other module branches on `settings.local`.

Clients are created on first use, never at import: an entry point that only needs the database never pays
for the Batch or Storage SDK imports. Tests build a Deps with their own emulator-backed parts."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

from arc_reactor.settings import Settings, get_settings

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from arc_reactor.adapters.batch import BatchService
    from arc_reactor.adapters.billing import BilledCosts
    from arc_reactor.adapters.cloud_logging import CloudLogs
    from arc_reactor.adapters.groups import GroupDirectory
    from arc_reactor.adapters.storage import Storage
    from arc_reactor.api.auth import Authenticator, TokenVerifier
    from arc_reactor.api.run_logs import RunLogSource
    from arc_reactor.api.sse import EventHub
    from arc_reactor.core.registry import Registry
    from arc_reactor.core.schemas import SchemaSource
    from arc_reactor.core.status_memo import StatusMemo
    from arc_reactor.services.run_store import RunStore


@dataclass
class Deps:
    """Settings plus lazily created clients. Pass overrides to use test or local-stack parts."""

    settings: Settings
    engine_override: Engine | None = None
    storage_override: Storage | None = None
    batch_override: BatchService | None = None
    runs_override: RunStore | None = None

    @cached_property
    def engine(self) -> Engine:
        """The pooled database engine."""
        if self.engine_override is not None:
            return self.engine_override
        from arc_reactor.adapters.db import get_engine

        return get_engine(self.settings)

    @cached_property
    def runs(self) -> RunStore:
        """The run store (PostgreSQL); unit tests pass an in-memory one as runs_override."""
        if self.runs_override is not None:
            return self.runs_override
        from arc_reactor.adapters.runs_repo import PostgresRunStore

        return PostgresRunStore(self.engine)

    @cached_property
    def storage(self) -> Storage:
        """The Cloud Storage adapter."""
        if self.storage_override is not None:
            return self.storage_override
        from arc_reactor.adapters.storage import Storage, make_client

        return Storage(make_client(self.settings))

    @cached_property
    def batch(self) -> BatchService:
        """The Batch adapter."""
        if self.batch_override is not None:
            return self.batch_override
        from arc_reactor.adapters.batch import BatchService, make_batch_client

        return BatchService(make_batch_client(self.settings), self.settings)

    @cached_property
    def status_memo(self) -> StatusMemo:
        """The status reconcile last saw each run in, in this process (core/status_memo.py): late and
        duplicate notifications whose answer that settles need no database work."""
        from arc_reactor.core.status_memo import StatusMemo

        return StatusMemo()

    @cached_property
    def registry(self) -> Registry:
        """The pipeline registry."""
        from arc_reactor.core.registry import load_registry

        return load_registry()

    @cached_property
    def schemas(self) -> SchemaSource:
        """Where pipeline schemas are read from, in order: the folders of `path:` pipelines, the schema cache
        folder (ARC_SCHEMA_CACHE_DIR, when set), and in the cloud the runs bucket's cache of the registry's
        `schema_base` URLs (fetched once per revision). The local stack stays offline. Tests assign their own.
        A schema none of them has is a rejection (core/bundle.py), never a weaker check."""
        from arc_reactor.core.schemas import ChainSchemaSource, PipelineDirSchemaSource, SchemaCacheDir

        sources: list[SchemaSource] = [PipelineDirSchemaSource(self.settings.pipelines_root)]
        if self.settings.schema_cache_dir is not None:
            sources.append(SchemaCacheDir(self.settings.schema_cache_dir))
        if not self.settings.local:
            from arc_reactor.adapters.http_schemas import BucketCachedSchemaSource, HttpSchemaSource

            bucket = self.settings.runs_bucket
            sources.append(BucketCachedSchemaSource(lambda: self.storage, bucket, HttpSchemaSource()))
        return ChainSchemaSource(*sources)

    @cached_property
    def tower_key(self) -> bytes:
        """The key of runs' Tower access tokens (core/tower.run_token), read once from the database."""
        from arc_reactor.adapters.runs_repo import signing_key

        return signing_key(self.engine, "tower")

    @cached_property
    def billed_costs(self) -> BilledCosts | None:
        """Runs' billed cost from the billing export (ARC_BILLING_EXPORT_TABLE), or None when there is none;
        its BigQuery client is made at the first query."""
        if not self.settings.billing_export_table:
            return None
        from functools import cache

        from arc_reactor.adapters.billing import BilledCosts, make_bigquery_client

        return BilledCosts(
            self.settings.billing_export_table, cache(lambda: make_bigquery_client(self.settings))
        )

    @cached_property
    def event_hub(self) -> EventHub:
        """The process's one poller of run_events for SSE streams."""
        from functools import partial

        from arc_reactor.adapters import runs_repo
        from arc_reactor.api.sse import EventHub

        return EventHub(partial(runs_repo.poll_events, self.engine))

    @cached_property
    def token_verifier(self) -> TokenVerifier:
        """Verifies callers' Google ID tokens (certificates fetched on first use, then cached)."""
        from arc_reactor.api.auth import TokenVerifier

        return TokenVerifier()

    @cached_property
    def authenticator(self) -> Authenticator:
        """Who is calling runs_api: Google ID tokens, except on the embedded local stack (never deployed:
        settings.py refuses ARC_LOCAL on Cloud Run)."""
        from arc_reactor.api.auth import IdTokenAuthenticator, LocalStackAuthenticator, principals

        if self.settings.local:
            return LocalStackAuthenticator()
        candidates = principals(self.settings.admin_group) | principals(self.settings.reader_members)
        directory = self.group_directory if self.settings.group_lookup and candidates else None
        return IdTokenAuthenticator(
            self.token_verifier,
            self.settings.service_urls,
            directory,
            candidates,
            iap_audiences=self.settings.iap_audience_list,
        )

    @cached_property
    def group_directory(self) -> GroupDirectory:
        """Google group membership (Cloud Identity), cached; its session is made on first use."""
        from arc_reactor.adapters.groups import GroupDirectory

        return GroupDirectory(endpoint=self.settings.cloud_identity_endpoint)

    @cached_property
    def run_logs(self) -> RunLogSource:
        """Where GET /runs/{id}/logs reads from: Cloud Logging, or the local Batch service's job files (beside
        the local stack's pgdata/)."""
        from arc_reactor.api.run_logs import CloudJobLogs, LocalJobLogs

        if self.settings.local:
            return LocalJobLogs(self.settings.pgserver_dir.parent / "jobs")
        return CloudJobLogs(self.batch, self.cloud_logs, self.settings.project)

    @cached_property
    def cloud_logs(self) -> CloudLogs:
        """The Cloud Logging reader (its client is created on the first read)."""
        from arc_reactor.adapters.cloud_logging import CloudLogs

        return CloudLogs(self.settings.project)


_deps: Deps | None = None
_deps_lock = threading.Lock()


def get_deps() -> Deps:
    """The process-wide Deps, built from the environment's settings on first use."""
    global _deps  # noqa: PLW0603 - one cached container per process, like the settings
    with _deps_lock:
        if _deps is None:
            _deps = Deps(get_settings())
        return _deps


def reset_deps() -> None:
    """Forget the cached Deps (tests, and the local stack after changing the environment)."""
    global _deps  # noqa: PLW0603
    with _deps_lock:
        _deps = None

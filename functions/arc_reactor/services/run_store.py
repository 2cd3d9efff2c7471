"""The run store port: what the services need from wherever runs are kept. PostgreSQL implements it
(adapters/runs_repo.py PostgresRunStore, the one the wiring builds); the unit tests' in-memory store
(tests/fakes.py) implements it too, and one contract test runs against both so they cannot drift."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime
from typing import Any, Protocol

from arc_reactor.adapters.runs_repo import TransitionResult
from arc_reactor.core.run_record import RunRecord
from arc_reactor.core.status import RunStatus


class RunStore(Protocol):
    """Runs and their events. Every status change is `transition`: conditional, with its event row."""

    def insert_run(self, values: Mapping[str, Any], source: str = "submit") -> tuple[RunRecord, bool]:
        """Insert a pending run; (existing run, False) for the same source generation or idempotency key."""
        ...

    def get_run(self, run_id: str) -> RunRecord:
        """The run, or NotFound."""
        ...

    def get_runs(self, run_ids: Collection[str]) -> dict[str, RunRecord]:
        """The runs of these ids that exist, by id (unknown ids are left out)."""
        ...

    def transition(
        self,
        run_id: str,
        target: RunStatus,
        source: str,
        *,
        fields: Mapping[str, Any] | None = None,
        detail: Mapping[str, Any] | None = None,
        at: datetime | None = None,
    ) -> TransitionResult:
        """Move the run if the status machine allows it; a refused terminal change is a recorded conflict."""
        ...

    def add_note(self, run_id: str, source: str, detail: Mapping[str, Any]) -> None:
        """Record something about the run that is not a status change."""
        ...

    def add_note_once(self, run_id: str, source: str, key: str, detail: Mapping[str, Any]) -> bool:
        """Record a note unless one with `key` exists; True when recorded."""
        ...

    def record_job_name(self, run_id: str, job_name: str, job_uid: str | None = None) -> None:
        """Store the run's Batch job name (and uid) if it has none yet."""
        ...

    def run_id_for_job_uid(self, job_uid: str) -> str | None:
        """The run whose orchestrator job has this uid."""
        ...

    def active_in_lineage(self, lineage_id: str) -> list[dict[str, Any]]:
        """Runs of the lineage that have not ended ({id, status})."""
        ...

    def find_by_idempotency_key(self, key: str) -> RunRecord | None:
        """The run created with this idempotency key."""
        ...

    def stale_runs(self, older_than: datetime, limit: int) -> list[RunRecord]:
        """Runs in pending/submitted/running/cancelling unchanged since `older_than`, oldest first."""
        ...

    def list_events(self, run_id: str, after_id: int = 0, limit: int = 500) -> list[dict[str, Any]]:
        """The run's events in order, after `after_id`."""
        ...

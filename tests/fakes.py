"""In-memory stand-ins for the services' ports, for fast unit tests of the use cases. They "set the state of
the world" rather than mock calls, and they follow the real parts' rules: InMemoryRunStore uses the same
status machine (core/status.py) as PostgreSQL, and tests/integration/test_run_store_contract.py runs the
same scenario against both so the two cannot drift apart."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from arc_reactor.adapters.runs_repo import TRANSITION_FIELDS, TransitionResult
from arc_reactor.core.run_record import RunRecord
from arc_reactor.core.status import PREDECESSORS, TERMINAL, TIMESTAMP_COLUMN, RunStatus, is_terminal_conflict
from arc_reactor.errors import NotFound

_STALE = (RunStatus.PENDING, RunStatus.SUBMITTED, RunStatus.RUNNING, RunStatus.CANCELLING)


class InMemoryRunStore:
    """The RunStore port (services/run_store.py) in a dict, with the status machine's guarantees."""

    def __init__(self) -> None:
        self.runs: dict[str, RunRecord] = {}
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def _event(self, run_id: str, kind: str, source: str, **rest: Any) -> None:
        self.events.append(
            {"id": len(self.events) + 1, "run_id": run_id, "kind": kind, "source": source,
             "from_status": None, "to_status": None, "detail": {}, "created_at": datetime.now(UTC), **rest}
        )  # fmt: skip

    def _same_source(self, values: Mapping[str, Any]) -> RunRecord | None:
        for run in self.runs.values():
            key = values.get("idempotency_key")
            if key is not None and run.idempotency_key == key:
                return run
            where = (
                values.get("source_bucket"),
                values.get("source_object"),
                values.get("source_generation"),
            )
            if values.get("source_object") is not None and where == (
                run.source_bucket,
                run.source_object,
                run.source_generation,
            ):
                return run
        return None

    def insert_run(self, values: Mapping[str, Any], source: str = "submit") -> tuple[RunRecord, bool]:
        with self._lock:
            existing = self._same_source(values)
            if existing is not None:
                return existing, False
            if values.get("status", RunStatus.PENDING.value) != RunStatus.PENDING.value:
                raise ValueError(f"a run is inserted pending, not {values['status']}")
            if values["id"] in self.runs:
                raise ValueError(f"run id collision: {values['id']}")
            now = datetime.now(UTC)
            run = RunRecord.from_row(
                {"status": RunStatus.PENDING.value, **values, "created_at": now, "updated_at": now}
            )
            self.runs[run.id] = run
            self._event(run.id, "transition", source, to_status=run.status, detail={"reason": "created"})
            return run, True

    def get_run(self, run_id: str) -> RunRecord:
        with self._lock:
            if run_id not in self.runs:
                raise NotFound(f"run {run_id} does not exist")
            return self.runs[run_id]

    def get_runs(self, run_ids):
        with self._lock:
            return {i: self.runs[i] for i in set(run_ids) if i in self.runs}

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
        fields = dict(fields or {})
        if set(fields) - TRANSITION_FIELDS:
            raise ValueError(f"transition cannot set {sorted(set(fields) - TRANSITION_FIELDS)}")
        with self._lock:
            if run_id not in self.runs:
                raise NotFound(f"run {run_id} does not exist")
            run = self.runs[run_id]
            current = run.run_status
            if current in PREDECESSORS[target]:
                now = datetime.now(UTC)
                changes: dict[str, Any] = {"status": target.value, "updated_at": now}
                column = TIMESTAMP_COLUMN.get(target)
                if column and getattr(run, column) is None:
                    changes[column] = at or now
                changes.update({k: v for k, v in fields.items() if v is not None})
                self.runs[run_id] = run.with_changes(**changes)
                self._event(run_id, "transition", source, from_status=current.value, to_status=target.value,
                            detail=dict(detail or {}))  # fmt: skip
                return TransitionResult(True, current, target)
            conflict = is_terminal_conflict(current, target)
            if conflict and not any(
                e["kind"] == "conflict" and e["source"] == source and e["to_status"] == target.value
                for e in self.events
                if e["run_id"] == run_id
            ):
                self._event(run_id, "conflict", source, from_status=current.value, to_status=target.value,
                            detail=dict(detail or {}))  # fmt: skip
            return TransitionResult(False, current, current, conflict)

    def add_note(self, run_id: str, source: str, detail: Mapping[str, Any]) -> None:
        with self._lock:
            self._event(run_id, "note", source, detail=dict(detail))

    def add_note_once(self, run_id: str, source: str, key: str, detail: Mapping[str, Any]) -> bool:
        with self._lock:
            if run_id not in self.runs:
                raise NotFound(f"run {run_id} does not exist")
            if any(
                e["kind"] == "note" and e["detail"].get("key") == key
                for e in self.events
                if e["run_id"] == run_id
            ):
                return False
            self._event(run_id, "note", source, detail={**detail, "key": key})
            return True

    def record_job_name(self, run_id: str, job_name: str, job_uid: str | None = None) -> None:
        with self._lock:
            run = self.runs[run_id]
            changes: dict[str, Any] = {}
            if run.batch_job_name is None:
                changes["batch_job_name"] = job_name
            if job_uid and run.batch_job_uid is None:
                changes["batch_job_uid"] = job_uid
            self.runs[run_id] = run.with_changes(**changes)

    def run_id_for_job_uid(self, job_uid: str) -> str | None:
        return next((r.id for r in self.runs.values() if r.batch_job_uid == job_uid), None)

    def active_in_lineage(self, lineage_id: str) -> list[dict[str, Any]]:
        return [
            {"id": r.id, "status": r.status}
            for r in self.runs.values()
            if r.lineage_id == lineage_id and r.run_status not in TERMINAL
        ]

    def find_by_idempotency_key(self, key: str) -> RunRecord | None:
        return next((r for r in self.runs.values() if r.idempotency_key == key), None)

    def stale_runs(self, older_than: datetime, limit: int) -> list[RunRecord]:
        stale = [
            r
            for r in self.runs.values()
            if r.run_status in _STALE and r.updated_at and r.updated_at < older_than
        ]
        return sorted(stale, key=lambda r: r.updated_at or older_than)[:limit]

    def list_events(self, run_id: str, after_id: int = 0, limit: int = 500) -> list[dict[str, Any]]:
        return [e for e in self.events if e["run_id"] == run_id and e["id"] > after_id][:limit]


@dataclass
class FakeCancels:
    """The part of the Batch adapter cancel uses: records what it was asked to cancel."""

    cancelled: list[str] = field(default_factory=list)

    def cancel_run_jobs(self, run_id: str) -> Any:
        from arc_reactor.adapters.batch import CancelSummary

        self.cancelled.append(run_id)
        return CancelSummary(orchestrator_cancelled=True)

"""A run as the services see it: one typed, immutable record per `runs` row (pure).

The database adapter (adapters/runs_repo.py) returns RunRecord, never a bare dict, so a service reads
`run.status` with its type known to mypy, and a unit test builds one directly for an in-memory store. It
also reads as a read-only mapping (`run["status"]`, `dict(run)`), the shape the API's views and older
tests use; new code uses the attributes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from typing import Any

from arc_reactor.core.status import RunStatus


@dataclass(frozen=True)
class RunRecord:
    """One row of `runs` (adapters/tables.py; the migrations and a test keep the two in step)."""

    id: str
    pipeline: str
    revision: str
    engine: str
    lineage_id: str
    work_dir: str
    cache_dir: str
    inputs_uri: str
    results_uri: str
    logs_uri: str
    status: str = RunStatus.PENDING.value
    name: str | None = None
    profile: str | None = None
    parent_run_id: str | None = None
    is_recovery: int = 0
    batch_job_name: str | None = None
    batch_job_uid: str | None = None
    submitter: str | None = None
    labels: Mapping[str, Any] = field(default_factory=dict)
    batch_labels: Mapping[str, Any] | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    source_bucket: str | None = None
    source_object: str | None = None
    source_generation: int | None = None
    idempotency_key: str | None = None
    idempotency_fingerprint: str | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    submitted_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    failed_at: datetime | None = None
    cancelled_at: datetime | None = None
    error_code: str | None = None
    error_message: str | None = None
    error_task: str | None = None
    exit_code: int | None = None
    metrics: Mapping[str, Any] | None = None
    session_id: str | None = None
    upload_failures: int | None = None
    progress: Mapping[str, Any] | None = None
    progress_seq: int | None = None  # the SSE hub's window over progress writes (0011); never shown

    @classmethod
    def from_row(cls, row: Mapping[Any, Any]) -> RunRecord:
        """A record from a database row (columns this version does not know are left out)."""
        known = _FIELD_NAMES
        return cls(**{k: v for k, v in row.items() if k in known})

    @classmethod
    def from_rows(cls, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[RunRecord]:
        """Records from the rows of one result (its column names, then value tuples in that order).

        A listing decodes up to a hundred rows of forty columns: when the result holds every field (a
        SELECT of the whole row) the values go straight into each record's attributes, which is what the
        frozen dataclass's __init__ does field by field at about 10x the cost; otherwise from_row."""
        columns = tuple(columns)
        if not set(columns) >= _FIELD_NAMES:
            return [cls.from_row(dict(zip(columns, row, strict=True))) for row in rows]
        picks = [(name, i) for i, name in enumerate(columns) if name in _FIELD_NAMES]
        new = object.__new__
        out = []
        for row in rows:
            record = new(cls)
            record.__dict__.update({name: row[i] for name, i in picks})
            out.append(record)
        return out

    @property
    def run_status(self) -> RunStatus:
        """The status as the enum."""
        return RunStatus(self.status)

    @property
    def ended_at(self) -> datetime | None:
        """When the run reached its terminal status (its completed_at, failed_at or cancelled_at; a run
        reaches one), else None."""
        return self.completed_at or self.failed_at or self.cancelled_at

    def with_changes(self, **changes: Any) -> RunRecord:
        """A copy with some columns changed (in-memory stores)."""
        return replace(self, **changes)

    # Read-only mapping access, for the API's views and for callers written against rows.
    def __getitem__(self, key: str) -> Any:
        if key not in _FIELD_NAMES:
            raise KeyError(key)
        return getattr(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        """The column's value, or `default` for a name that is not a column."""
        return getattr(self, key) if key in _FIELD_NAMES else default

    def keys(self) -> tuple[str, ...]:
        """The column names (so `dict(record)` works)."""
        return _FIELD_ORDER

    def __iter__(self) -> Iterator[str]:
        return iter(_FIELD_ORDER)

    def __contains__(self, key: object) -> bool:
        return key in _FIELD_NAMES


_FIELD_ORDER: tuple[str, ...] = tuple(f.name for f in fields(RunRecord))
_FIELD_NAMES: frozenset[str] = frozenset(_FIELD_ORDER)

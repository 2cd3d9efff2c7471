"""SQLAlchemy table definitions. The Alembic migrations create them; this module is what code queries."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
    UniqueConstraint,
    bindparam,
    func,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.sql.elements import ColumnElement

metadata = MetaData()

# The statuses of runs that have not ended, as SQL: the sweeper's query and its partial index share it.
ACTIVE_SQL = "status IN ('pending', 'submitted', 'running', 'cancelling')"

runs = Table(
    "runs",
    metadata,
    Column("id", Text, primary_key=True),
    Column("name", Text),
    Column("pipeline", Text, nullable=False),
    Column("revision", Text, nullable=False),
    Column("engine", Text, nullable=False),
    Column("profile", Text),
    Column("status", Text, nullable=False, server_default=text("'pending'")),
    Column("parent_run_id", Text, ForeignKey("runs.id")),
    Column("lineage_id", Text, nullable=False),
    Column("is_recovery", Integer, nullable=False, server_default=text("0")),
    Column("batch_job_name", Text),
    Column("batch_job_uid", Text),  # Batch's uid of the orchestrator job: task notifications name it (0003)
    Column("work_dir", Text, nullable=False),
    Column("cache_dir", Text, nullable=False),
    Column("inputs_uri", Text, nullable=False),
    Column("results_uri", Text, nullable=False),
    Column("logs_uri", Text, nullable=False),
    Column("submitter", Text),
    Column("labels", JSONB, nullable=False, server_default=text("'{}'::jsonb")),  # as the user wrote them
    Column("batch_labels", JSONB),  # as Batch and billing see them, sanitized (0003)
    Column("params", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("source_bucket", Text),
    Column("source_object", Text),
    Column("source_generation", BigInteger),
    Column("idempotency_key", Text),  # scoped to the caller: <caller digest>:<namespace><key> (0004)
    Column("idempotency_fingerprint", Text),  # what the key was used for (0004)
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("submitted_at", DateTime(timezone=True)),
    Column("started_at", DateTime(timezone=True)),
    Column("completed_at", DateTime(timezone=True)),
    Column("failed_at", DateTime(timezone=True)),
    Column("cancelled_at", DateTime(timezone=True)),
    Column("error_code", Text),
    Column("error_message", Text),
    Column("error_task", Text),
    Column("exit_code", Integer),
    Column("metrics", JSONB),
    Column("session_id", Text),
    Column("upload_failures", Integer),  # files the orchestrator could not upload, when any (0005)
    Column("progress", JSONB),  # task counts, overall and per process (0009)
    Column("progress_seq", BigInteger),  # run_progress_seq at its last progress write (0011; the SSE hub)
    UniqueConstraint("source_bucket", "source_object", "source_generation", name="uq_runs_source"),
    UniqueConstraint("idempotency_key", name="uq_runs_idempotency_key"),
    Index("ix_runs_status_updated", "status", "updated_at"),
    Index("ix_runs_created", "created_at", "id"),
    Index("ix_runs_parent", "parent_run_id"),
    # GET /runs: keyset pages newest first, optionally narrowed by one of these columns (migration 0002).
    Index("ix_runs_status_created", "status", "created_at", "id"),
    Index("ix_runs_pipeline_created", "pipeline", "created_at", "id"),
    Index("ix_runs_submitter_created", "submitter", "created_at", "id"),
    Index("ix_runs_batch_job_uid", "batch_job_uid", postgresql_where=text("batch_job_uid IS NOT NULL")),
    # The SSE hub's window of recent progress writes (migration 0011).
    Index(
        "ix_runs_progress_seq",
        "progress_seq",
        postgresql_include=["id"],
        postgresql_where=text("progress_seq IS NOT NULL"),
    ),
    # Flat at 10^6 runs (migration 0006): recover's live-runs-of-a-lineage check, and the sweeper's oldest
    # active runs (the partial index's predicate is stale_runs' status list).
    Index("ix_runs_lineage", "lineage_id"),
    Index(
        "ix_runs_active_updated",
        "updated_at",
        postgresql_where=text(ACTIVE_SQL),
    ),
    # A run by a prefix of its id (LIKE, whatever the collation) or by its name (migration 0008).
    Index("ix_runs_id_pattern", "id", postgresql_ops={"id": "text_pattern_ops"}),
    Index("ix_runs_name", "name", "created_at", "id"),
)

run_events = Table(
    "run_events",
    metadata,
    Column("id", BigInteger, Identity(always=False), primary_key=True),
    Column("run_id", Text, ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("kind", Text, nullable=False),  # transition | conflict | note
    Column("source", Text, nullable=False),  # submit | batch | hook | sweeper | api
    Column("from_status", Text),
    Column("to_status", Text),
    Column("detail", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Index("ix_run_events_run", "run_id", "id"),
)

# One row per label of a run, written by a trigger on runs (migration 0007): the access path of ?label=
# listings, newest first by (created_at, run_id) like ix_runs_created. Code only reads it.
run_labels = Table(
    "run_labels",
    metadata,
    Column("key", Text, primary_key=True),
    Column("value", Text, primary_key=True),
    Column("created_at", DateTime(timezone=True), primary_key=True),
    Column("run_id", Text, ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    Index("ix_run_labels_run", "run_id"),
)

# The deployment's own secrets (migration 0010): the `tower` key signs runs' Tower tokens (core/tower.py).
signing_keys = Table(
    "signing_keys",
    metadata,
    Column("name", Text, primary_key=True),
    Column("secret", LargeBinary, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
)

# One row per attempt of each task of a run (migration 0009; adapters/tasks_repo.py writes it).
run_tasks = Table(
    "run_tasks",
    metadata,
    Column("id", BigInteger, Identity(always=False), primary_key=True),
    Column("run_id", Text, ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("task_id", Text, nullable=False),
    Column("attempt", Integer, nullable=False, server_default="1"),
    Column("process", Text),
    Column("name", Text),
    Column("tag", Text),
    Column(
        "status", Text, nullable=False
    ),  # pending | submitted | running | succeeded | cached | failed | aborted
    Column("exit_code", Integer),
    Column("submitted_at", DateTime(timezone=True)),
    Column("started_at", DateTime(timezone=True)),
    Column("completed_at", DateTime(timezone=True)),
    Column("cpus", Integer),
    Column("memory_bytes", BigInteger),
    Column("machine_type", Text),
    Column("zone", Text),
    Column("spot", Boolean),
    Column("preempted", Boolean),
    Column("native_id", Text),  # the task's Batch job (google-batch: job/task/uid)
    Column("work_dir", Text),
    Column("error_tail", Text),
    Column("extra", JSONB, nullable=False, server_default=text("'{}'::jsonb")),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    UniqueConstraint("run_id", "task_id", "attempt", name="uq_run_tasks_attempt"),
    Index("ix_run_tasks_run", "run_id", "id"),
    Index("ix_run_tasks_run_status", "run_id", "status", "id"),
    Index("ix_run_tasks_run_process", "run_id", "process", "id"),
)


def among(column: ColumnElement[str], ids: Iterable[str]) -> ColumnElement[bool]:
    """`column = ANY(ARRAY(SELECT unnest(string_to_array(:ids, ','))))`: membership in a set of run ids
    passed as ONE text parameter. An IN list sends one parameter per id and renders a new statement for
    every count of ids, and pg8000 encodes an array parameter element by element in Python; one text, split
    by the server, is one prepared statement whatever the page size. The split is an InitPlan, done once:
    as `= ANY(string_to_array(...))` a prepared statement's generic plan split the text again for every
    row it scanned (runs_repo.poll_events met the same)."""
    listed = list(ids)
    if any("," in i for i in listed):
        raise ValueError("an id holds a comma")
    split = select(func.unnest(func.string_to_array(bindparam(None, ",".join(listed), type_=Text), ",")))
    return column == func.any(func.array(split.scalar_subquery()))

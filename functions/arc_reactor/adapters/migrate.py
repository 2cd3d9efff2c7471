"""Apply the Alembic migrations shipped in the package (`arc db upgrade`)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.engine import Engine

_MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
_LOCK_KEY = 7_461_234_001  # pg advisory lock: two instances upgrading at once take turns


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the database schema to `revision`, holding an advisory lock while doing so."""
    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    with engine.connect() as conn:
        # Each migration in its own transaction, also on the service's autocommit engine (adapters/db.py).
        conn.execution_options(isolation_level="READ COMMITTED")
        conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _LOCK_KEY})
        try:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
            conn.commit()
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _LOCK_KEY})
            conn.commit()

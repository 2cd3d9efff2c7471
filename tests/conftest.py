"""Shared fixtures. Real parts only: embedded PostgreSQL (or DATABASE_URL), the storage emulator, the local
Batch service. Nothing here reaches beyond loopback: NO_GCE_CHECK is set and clients get anonymous
credentials or explicit insecure channels."""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from network_guard import install_network_guard

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "functions"))

# Before any Google library is imported anywhere in the test process.
os.environ["NO_GCE_CHECK"] = "true"
os.environ.pop("GOOGLE_APPLICATION_CREDENTIALS", None)
os.environ.setdefault("GOOGLE_CLOUD_PROJECT", "arc-test")

_OUTSIDE_DATABASE_URL = os.environ.get("DATABASE_URL", "")
# `keys` and `api`: ID tokens and the cloud-mode runs_api app, for the auth tests of every tier.
pytest_plugins = ["tokens"]


install_network_guard()


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Every test starts from the same environment: no ARC_* leaking in, HOME in a temp dir."""
    for key in list(os.environ):
        if key.startswith("ARC_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("NO_GCE_CHECK", "true")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    (tmp_path / "home").mkdir(exist_ok=True)
    (tmp_path / "run").mkdir(exist_ok=True)
    from arc_reactor.settings import get_settings

    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """A migrated PostgreSQL database the suite created itself: a scratch database on the server of an
    outside DATABASE_URL (the database that URL names is never touched), else a new embedded server."""
    from sqlalchemy import create_engine

    from arc_reactor.adapters import migrate
    from arc_reactor.local.scratch_db import ScratchDatabaseRefused, scratch_database

    def migrated(url: str) -> str:
        engine = create_engine(url)
        migrate.upgrade(engine)
        engine.dispose()
        return url

    if _OUTSIDE_DATABASE_URL:
        try:
            scratch = scratch_database(_OUTSIDE_DATABASE_URL)
            url = scratch.__enter__()
        except ScratchDatabaseRefused as exc:
            pytest.exit(str(exc), returncode=4)
        try:
            yield migrated(url)
        finally:
            scratch.__exit__(None, None, None)
        return
    import pgserver

    tmp = Path(tempfile.mkdtemp(prefix="arc-pg-"))
    tmp.chmod(0o755)
    server = pgserver.get_server(tmp / "data", cleanup_mode="delete")
    info = server.get_postmaster_info()
    yield migrated(f"postgresql+pg8000://postgres@/postgres?unix_sock={info.socket_dir}/.s.PGSQL.{info.port}")
    server.cleanup()


@pytest.fixture
def engine(database_url: str, monkeypatch: pytest.MonkeyPatch):
    """An engine on an empty runs/run_events; DATABASE_URL set so settings-built engines use it too."""
    from sqlalchemy import create_engine, text

    from arc_reactor.adapters import db

    monkeypatch.setenv("DATABASE_URL", database_url)
    # Autocommit and no pre-ping, as db.get_engine makes it for the service.
    eng = db.prepare_engine(
        create_engine(database_url, pool_size=2, max_overflow=4, isolation_level="AUTOCOMMIT")
    )
    with eng.begin() as conn:
        conn.execute(text("TRUNCATE run_events, runs RESTART IDENTITY CASCADE"))
    yield eng
    eng.dispose()
    db.dispose_engines()


@pytest.fixture(scope="session")
def storage_emulator():
    """One in-process storage emulator for the session; tests wipe it through `gcs`."""
    from arc_reactor.local.storage_emulator import StorageEmulator

    em = StorageEmulator().start()
    os.environ["STORAGE_EMULATOR_HOST"] = em.endpoint
    yield em
    em.stop()


@pytest.fixture
def gcs(storage_emulator, monkeypatch: pytest.MonkeyPatch):
    """The Storage adapter on the emulator, with empty buckets arc-inbox, arc-runs and arc-demo-data."""
    from arc_reactor.adapters.storage import Storage, make_client
    from arc_reactor.settings import Settings

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", storage_emulator.endpoint)
    storage_emulator.wipe()
    storage_emulator._watch.clear()
    for bucket in ("arc-inbox", "arc-runs", "arc-demo-data"):
        storage_emulator.create_bucket(bucket)
    return Storage(make_client(Settings(local=True)))


class _Keep(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def arc_logs() -> Iterator[list[logging.LogRecord]]:
    """The package's log records at INFO and above, captured even after setup_logging() has stopped them
    propagating (it sends them to its own JSON handler)."""
    logger = logging.getLogger("arc_reactor")
    level, keep = logger.level, _Keep()
    logger.addHandler(keep)
    logger.setLevel(logging.INFO)
    yield keep.records
    logger.removeHandler(keep)
    logger.setLevel(level)

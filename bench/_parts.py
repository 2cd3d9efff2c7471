"""Shared setup for benchmarks: the real local parts (embedded PostgreSQL, storage emulator, local Batch
service), started in the benchmark's process. Not a test helper: benchmarks print figures, never assert."""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "functions"))
os.environ["NO_GCE_CHECK"] = "true"


class Parts:
    """Start PostgreSQL, the storage emulator and the local Batch service; export their endpoints.

    run_jobs=False keeps Batch jobs QUEUED until the benchmark sets their state (set_job_state);
    on_notification receives the local Batch service's Pub/Sub-shaped notifications (default: dropped)."""

    def __init__(
        self,
        *,
        run_jobs: bool = True,
        on_notification: Callable[[dict[str, str], bytes], None] | None = None,
    ) -> None:
        from arc_reactor.adapters import migrate
        from arc_reactor.adapters.db import embedded_postgres_url, get_engine
        from arc_reactor.local.batch_server import LocalBatchServer
        from arc_reactor.local.scratch_db import scratch_database
        from arc_reactor.local.storage_emulator import StorageEmulator
        from arc_reactor.settings import get_settings

        self.tmp = throwaway_dir("arc-bench-")
        self._scratch = contextlib.ExitStack()
        outside = os.environ.get("DATABASE_URL")  # never cleared: a scratch database beside it is used
        url = (
            self._scratch.enter_context(scratch_database(outside))
            if outside
            else embedded_postgres_url(self.tmp / "pgdata", delete_on_exit=True)
        )
        self.emulator = StorageEmulator(buckets=["arc-inbox", "arc-runs", "arc-demo-data"]).start()
        self.batch = LocalBatchServer(
            lambda job, env: subprocess.Popen(["true"]),
            on_notification or (lambda a, d: None),
            run_jobs=run_jobs,
        ).start()
        self.env = {
            "DATABASE_URL": url,
            "STORAGE_EMULATOR_HOST": self.emulator.endpoint,
            "ARC_BATCH_ENDPOINT": self.batch.address,
            "ARC_LOCAL": "true",
            "NO_GCE_CHECK": "true",
            "ARC_BATCH_TOPIC": "projects/arc-bench/topics/batch",
            "GOOGLE_CLOUD_PROJECT": "arc-bench",
        }
        os.environ.update(self.env)
        get_settings.cache_clear()
        migrate.upgrade(get_engine(get_settings()))

    def stop(self) -> None:
        """Stop what was started."""
        self.batch.stop()
        self.emulator.stop()
        self._scratch.close()


def throwaway_dir(prefix: str) -> Path:
    """A new temp folder that PostgreSQL's own user can reach (pgserver runs it as `pgserver` under root),
    deleted when the process exits: after the embedded PostgreSQL started in it has stopped, since atexit
    runs the handlers registered later (pgserver's) first."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    atexit.register(shutil.rmtree, path, True)
    return path


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) by nearest rank."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


def timed(fn: Callable[[], object], samples: int, warmup: int = 10, digits: int = 3) -> dict[str, float]:
    """p50 and p95 milliseconds per call of fn (nearest rank), after a warm-up."""
    import time

    for _ in range(warmup):
        fn()
    out = []
    for _ in range(samples):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000)
    return {"p50": round(percentile(out, 50), digits), "p95": round(percentile(out, 95), digits)}


def filled_database(
    scratch: contextlib.ExitStack, fills: list[str], n_runs: int, chunk: int, prefix: str
) -> tuple[str, float]:
    """A migrated database filled by `fills` (INSERT ... SELECT over generate_series(:lo, :hi)) in chunks
    up to `n_runs`, then VACUUM ANALYZEd; its URL and the fill's seconds. With an outside DATABASE_URL the
    rows go into a scratch database beside it (dropped when `scratch` closes)."""
    import time

    from sqlalchemy import create_engine, text

    from arc_reactor.adapters import migrate
    from arc_reactor.adapters.db import embedded_postgres_url, prepare_engine
    from arc_reactor.local.scratch_db import scratch_database

    tmp = throwaway_dir(prefix)
    outside = os.environ.get("DATABASE_URL")
    url = (
        scratch.enter_context(scratch_database(outside))
        if outside
        else embedded_postgres_url(tmp / "pgdata", delete_on_exit=True)
    )
    engine = prepare_engine(create_engine(url), statement_timeout_ms=None)  # the fill runs long statements
    migrate.upgrade(engine)
    started = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(text("SET LOCAL synchronous_commit = off"))
        for lo in range(1, n_runs + 1, chunk):
            for fill in fills:
                conn.execute(text(fill), {"lo": lo, "hi": min(n_runs, lo + chunk - 1)})
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))  # every table the fill wrote, run_labels' trigger rows too
    engine.dispose()
    return url, time.perf_counter() - started

"""The embedded local stack: real PostgreSQL (pgserver), the Cloud Storage emulator, a local Batch gRPC
service that runs the orchestrator entrypoint as a local process, and the four functions served by
functions-framework, wired together by an Eventarc-like router. Offline; loopback only."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from arc_reactor.core.events import pubsub_cloudevent, storage_cloudevent
from arc_reactor.local.functions_host import ServedFunction, serve_function, stop_function
from arc_reactor.local.router import EventRouter
from arc_reactor.local.storage_emulator import StorageEmulator
from arc_reactor.logs import setup_logging

if TYPE_CHECKING:
    from google.cloud import batch_v1

    from arc_reactor.local.batch_server import LocalBatchServer
    from arc_reactor.settings import Settings

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[3]
ENTRYPOINT = ROOT / "orchestrator" / "entrypoint.sh"


def is_orchestrator_job(job: batch_v1.Job, image: str) -> bool:
    """True for a run's orchestrator job: its runnable is a container of the orchestrator image that runs the
    image's own entrypoint. A Snakemake task job runs that image too, with a command of its own."""
    return any(
        r.container.image_uri == image and not r.container.entrypoint and not r.container.commands
        for r in job.task_groups[0].task_spec.runnables
    )


DEMO_DATA_BUCKET = "arc-demo-data"
TOPIC = "projects/arc-local/topics/arc-batch-notifications"
FUNCTIONS = {
    "submit_bundle": "cloudevent",
    "reconcile_batch_event": "cloudevent",
    "sweep_stale_runs": "cloudevent",
    "runs_api": "http",
}


LOCK_FILE = "stack.lock"


class StackBusy(Exception):
    """Another local stack holds the state folder."""


def _holder(state_dir: Path, lock_text: str) -> str:
    """Who holds the folder, as far as its lock and local.json say."""
    try:
        who = json.loads(lock_text)
    except ValueError:
        who = {}
    pid = who.get("pid")
    try:
        info = json.loads((state_dir / "local.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        info = {}
    url = f", runs API at {info['api_url']}/runs" if info.get("pid") == pid and info.get("api_url") else ""
    return f"pid {pid}{url}" if pid else "a process that left no pid"


@dataclass
class LocalStack:
    """Start with `start()`, stop with `stop()`; `state_dir` holds the database, objects and job logs."""

    state_dir: Path = field(default_factory=lambda: ROOT / ".arc")
    persistent_storage: bool = True
    log_file: Path | None = None  # where the functions' JSON logs go; None = stderr
    database_url: str = ""
    emulator: StorageEmulator | None = None
    batch: LocalBatchServer | None = None
    router: EventRouter | None = None
    functions: dict[str, ServedFunction] = field(default_factory=dict)
    _env: dict[str, str] = field(default_factory=dict)
    _saved_env: dict[str, str | None] = field(default_factory=dict)
    _lock_fd: int | None = None
    _own_postgres: bool = False

    def _lock(self) -> None:
        """Hold the state folder for this process's lifetime: a second stack on it (a second `arc local
        up`, or `arc demo` beside it) is refused, naming the first, instead of sharing its database,
        objects and local.json. The lock is the kernel's (flock), so a stack that died holds nothing."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.state_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.pread(fd, 4096, 0).decode(errors="replace")
            os.close(fd)
            raise StackBusy(
                f"another Arc Reactor local stack is using {self.state_dir} "
                f"({_holder(self.state_dir, text)}): stop it first (Ctrl-C where it runs), "
                "or give this one another --state-dir"
            ) from None
        os.ftruncate(fd, 0)
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "started_at": stamp}).encode(), 0)
        self._lock_fd = fd

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    def start(self) -> LocalStack:
        """Start every part and point this process's settings at them; StackBusy when another stack holds
        the state folder."""
        self._lock()
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> LocalStack:
        from arc_reactor.adapters import migrate
        from arc_reactor.adapters.db import embedded_postgres_url, get_engine
        from arc_reactor.settings import Settings

        if self.log_file is not None:
            setup_logging(path=self.log_file)
        base = Settings()
        self.database_url = os.environ.get("DATABASE_URL", "")
        if not self.database_url:
            self.database_url = embedded_postgres_url(self.state_dir / "pgdata")
            self._own_postgres = True
        storage_dir = self.state_dir / "storage" if self.persistent_storage else None
        self.emulator = StorageEmulator(
            buckets=[base.inbox_bucket, base.runs_bucket, DEMO_DATA_BUCKET], data_dir=storage_dir
        ).start()
        for bucket in (base.inbox_bucket, base.runs_bucket, DEMO_DATA_BUCKET):
            self.emulator.create_bucket(bucket)
        self.router = EventRouter()
        self.batch = self._start_batch(base)
        self._env = {
            "DATABASE_URL": self.database_url,
            "STORAGE_EMULATOR_HOST": self.emulator.endpoint,
            "ARC_BATCH_ENDPOINT": self.batch.address,
            "ARC_BATCH_TOPIC": TOPIC,
            "ARC_LOCAL": "true",
            # The state folder holds pgdata/ and jobs/: runs_api reads job logs from beside pgdata.
            "ARC_PGSERVER_DIR": str(self.state_dir / "pgdata"),
            "ARC_ORCHESTRATOR_IMAGE": "local/arc-orchestrator:dev",
            # Local task jobs start in a moment, not a minute: Snakemake checks on them 4 times a second.
            "ARC_SNAKEMAKE_STATUS_INTERVAL_S": "0.25",
            "NO_GCE_CHECK": "true",
            "GOOGLE_CLOUD_PROJECT": base.project,
        }
        self._saved_env = {k: os.environ.get(k) for k in self._env}
        os.environ.update(self._env)
        self._reset_process_caches()
        migrate.upgrade(get_engine(self.settings))
        for target, signature in FUNCTIONS.items():
            self.functions[target] = serve_function(target, signature)
        self.emulator.watch(base.inbox_bucket, self._on_inbox_write)
        return self

    @property
    def settings(self) -> Settings:
        """The settings the functions see."""
        from arc_reactor.settings import get_settings

        return get_settings()

    def url(self, target: str) -> str:
        """The local URL of an entry point."""
        return self.functions[target].url

    def _reset_process_caches(self) -> None:
        from arc_reactor.settings import get_settings
        from arc_reactor.wiring import reset_deps

        get_settings.cache_clear()
        reset_deps()

    def _start_batch(self, base: Settings) -> LocalBatchServer:
        from arc_reactor.local.batch_server import LocalBatchServer

        # Like Batch, a job waits a moment for its VM: the status order is then the one seen in the cloud
        # (submitted before running) rather than a race between the submit function and the job.
        return LocalBatchServer(
            self._launch, self._on_batch_notification, region=base.region, queue_delay=0.25
        ).start()

    def _on_inbox_write(self, obj: dict[str, Any]) -> None:
        attrs, data = storage_cloudevent(obj)
        assert self.router is not None
        self.router.post(self.url("submit_bundle"), attrs, data)

    def _on_batch_notification(self, attributes: dict[str, str], data: bytes) -> None:
        attrs, body = pubsub_cloudevent(TOPIC, uuid.uuid4().hex, attributes, data, datetime.now(UTC))
        assert self.router is not None
        self.router.post(self.url("reconcile_batch_event"), attrs, body)

    def _launch(self, job: batch_v1.Job, env: dict[str, str]) -> subprocess.Popen[bytes]:
        """Run the orchestrator entrypoint as a local process, as the job's container would; any other job
        (an engine's task job) runs its own runnables (local/runnables.py)."""
        from arc_reactor.local.batch_state import attempt_process

        if not is_orchestrator_job(job, self._env["ARC_ORCHESTRATOR_IMAGE"]):
            from arc_reactor.local.runnables import runnable_launcher

            return runnable_launcher(self.state_dir / "jobs", {**os.environ, **self._env})(job, env)
        job_id = job.name.rsplit("/", 1)[-1]
        attempt = env.get("BATCH_TASK_RETRY_ATTEMPT", "0")
        job_dir = self.state_dir / "jobs" / job_id
        job_dir.mkdir(parents=True, exist_ok=True)
        full_env = {**os.environ, **env, **self._env, **self._orchestrator_env()}
        log = job_dir / f"attempt-{attempt}.log"
        return attempt_process(["bash", str(ENTRYPOINT)], log, cwd=job_dir, env=full_env)

    def _orchestrator_env(self) -> dict[str, str]:
        venv_bin = str(Path(sys.executable).parent)
        return {
            "ARC_PIPELINES_ROOT": str(ROOT),
            # Where a Nextflow run's Tower reports go (through the orchestrator's relay): this runs_api.
            "ARC_SERVICE_URL": self.url("runs_api").rstrip("/"),
            "PYTHONPATH": str(ROOT / "functions"),
            "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
        }

    def stop(self) -> None:
        """Stop every part, the embedded PostgreSQL included (running local jobs are killed by the Batch
        service), and let go of the state folder. Safe to call twice, or after a failed start."""
        if self.emulator is not None:
            self.emulator._watch.clear()
        for fn in self.functions.values():
            stop_function(fn)
        self.functions.clear()
        if self.batch is not None:
            self.batch.stop()
            self.batch = None
        if self.router is not None:
            self.router.close()
            self.router = None
        if self.emulator is not None:
            self.emulator.stop()
            self.emulator = None
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved_env.clear()
        self._reset_process_caches()
        from arc_reactor.adapters.db import dispose_engines, stop_embedded_postgres

        dispose_engines()
        if self._own_postgres:  # now, not when the process exits
            stop_embedded_postgres(self.state_dir / "pgdata")
            self._own_postgres = False
        self._unlock()

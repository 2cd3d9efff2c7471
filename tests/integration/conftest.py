"""Integration fixtures: the real functions-framework apps wired to the emulator, the embedded database and
the local Batch service (the real BatchServiceClient over an insecure loopback channel)."""

from __future__ import annotations

import subprocess

import pytest


@pytest.fixture
def exit_codes():
    """Exit codes the next launched jobs' processes end with (default 0)."""
    return []


@pytest.fixture
def batch_server(exit_codes):
    """The local Batch service; each job's 'container' is a process exiting with the next of exit_codes."""
    from arc_reactor.local.batch_server import LocalBatchServer
    from arc_reactor.local.notifications import NotificationLog

    notes = NotificationLog()

    def launcher(job, env):
        code = exit_codes.pop(0) if exit_codes else 0
        return subprocess.Popen(["sh", "-c", f"exit {code}"])

    server = LocalBatchServer(launcher, notes).start()
    server.notifications = notes
    yield server
    server.stop()


@pytest.fixture
def app_env(engine, gcs, batch_server, monkeypatch):
    """Environment for the functions: local settings pointing at the emulator, database and Batch service."""
    from arc_reactor.wiring import reset_deps

    monkeypatch.setenv("ARC_LOCAL", "true")
    monkeypatch.setenv("ARC_BATCH_ENDPOINT", batch_server.address)
    monkeypatch.setenv("ARC_BATCH_TOPIC", "projects/arc-test/topics/batch")
    monkeypatch.setenv("ARC_PROJECT", "arc-test")
    reset_deps()
    yield
    reset_deps()


@pytest.fixture
def stack(engine, tmp_path):
    """The embedded local stack (LocalStack: functions served over HTTP, the local Batch service running
    the real orchestrator, the storage emulator) with the demo's data uploaded."""
    from arc_reactor.local.demo import upload_demo_data
    from arc_reactor.local.stack import LocalStack

    stack = LocalStack(state_dir=tmp_path / "state", persistent_storage=False).start()
    try:
        upload_demo_data(stack)
        yield stack
    finally:
        stack.stop()

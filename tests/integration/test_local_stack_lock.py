"""The local stack holds its state folder: a second stack on it is refused, naming the first; stopping the
stack stops its embedded PostgreSQL at once and lets the folder go (here with a database of its own, not
the suite's)."""

import json
import os
import shutil
import tempfile
from pathlib import Path

import psutil
import pytest

pytestmark = pytest.mark.integration


@pytest.fixture
def state():
    """The stack's state folder, deleted afterwards. Not under pytest's tmp_path: that is closed to others,
    so its PostgreSQL data would move to a folder of its own under the temp dir (db._reachable_pg_dir)
    that outlives the test."""
    top = Path(tempfile.mkdtemp(prefix="arc-stack-lock-"))
    top.chmod(0o755)
    yield top / "state"
    shutil.rmtree(top, ignore_errors=True)


def test_a_second_stack_is_refused_and_stop_stops_postgres(state, monkeypatch):
    from arc_reactor.adapters.db import _pg_servers, _reachable_pg_dir
    from arc_reactor.local.stack import LocalStack, StackBusy

    monkeypatch.delenv("DATABASE_URL", raising=False)  # the stack starts its own PostgreSQL
    first = LocalStack(state_dir=state, persistent_storage=False).start()
    try:
        (state / "local.json").write_text(json.dumps({"api_url": "http://127.0.0.1:9", "pid": os.getpid()}))
        postmaster = _pg_servers[_reachable_pg_dir((state / "pgdata").resolve())].get_pid()
        assert psutil.pid_exists(postmaster)
        second = LocalStack(state_dir=state, persistent_storage=False)
        with pytest.raises(StackBusy) as refused:
            second.start()
        assert str(refused.value) == (
            f"another Arc Reactor local stack is using {state} (pid {os.getpid()}, runs API at "
            "http://127.0.0.1:9/runs): stop it first (Ctrl-C where it runs), or give this one another "
            "--state-dir"
        )
        assert first.functions  # the first one is untouched
    finally:
        first.stop()
    assert not psutil.pid_exists(postmaster) or psutil.Process(postmaster).status() == psutil.STATUS_ZOMBIE
    again = LocalStack(state_dir=state, persistent_storage=False).start()  # the folder is free again
    again.stop()
    first.stop()  # a second stop does nothing

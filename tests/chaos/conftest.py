"""The chaos tier (marker `chaos`): attacks on the real parts, each counted in one Tally whose JSON line is
printed at the end of the session. `make test` runs the bounded form; `make chaos` (CHAOS_SCALE=full) adds
the random-damage fuzz, a larger burst and more notification orders (docs/chaos.md). The Batch jobs'
"containers" here are short processes with a chosen exit code: Batch's lifecycle, retries and
notifications are the local service's; the workflow engine is not run (the orchestrator is attacked
through its hook and its transfers here, and runs for real in tests/integration/test_orchestrator.py)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from tally import Tally

ROOT = Path(__file__).resolve().parents[2]
_TALLY = Tally()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _TALLY.trials:
        return
    line = _TALLY.line()
    if os.environ.get("CHAOS_VERBOSE"):
        for t in _TALLY.trials:
            terminalreporter.write_line(f"{t.family} {t.name} {t.outcome} {t.detail[:150]}")
    terminalreporter.write_line(line)
    out = os.environ.get("CHAOS_FIGURES")
    if out:
        Path(out).write_text(line + "\n")


@pytest.fixture(scope="session")
def tally() -> Tally:
    return _TALLY


@pytest.fixture(scope="session")
def full() -> bool:
    """The fuller tier of `make chaos`."""
    return _TALLY.scale == "full"


@pytest.fixture
def exit_codes() -> list[int]:
    """Exit codes the next launched jobs' processes end with (default 0)."""
    return []


@pytest.fixture
def batch_server(exit_codes: list[int]) -> Iterator[object]:
    from arc_reactor.local.batch_server import LocalBatchServer
    from arc_reactor.local.notifications import NotificationLog

    notes = NotificationLog()
    launched: list[subprocess.Popen[bytes]] = []

    def launcher(job: object, env: dict[str, str]) -> subprocess.Popen[bytes]:
        code = exit_codes.pop(0) if exit_codes else 0
        script = "exec sleep 60" if code < 0 else f"sleep 0.05; exit {code}"  # < 0: runs until killed
        proc = subprocess.Popen(["sh", "-c", script], start_new_session=True)
        launched.append(proc)
        return proc

    server = LocalBatchServer(launcher, notes).start()
    server.notifications = notes  # type: ignore[attr-defined]
    server.launched = launched  # type: ignore[attr-defined]
    yield server
    server.stop()


@pytest.fixture
def nf_schemas(tmp_path: Path) -> Path:
    """A stand-in for nf-core/scrnaseq's schemas (the real ones are in ../shared): the demo pipeline's input
    schema, and a params schema with the one parameter the chaos bundles set."""
    folder = tmp_path / "schemas" / "nf-core-scrnaseq"
    (folder / "assets").mkdir(parents=True)
    demo = ROOT / "examples" / "pipelines" / "fastq-stats"
    (folder / "assets" / "schema_input.json").write_text((demo / "schema_input.json").read_text())
    params = json.loads((demo / "params_schema.json").read_text())
    params["$defs"]["analysis_options"]["properties"] = {
        "aligner": {"type": "string", "enum": ["star", "alevin", "kallisto"]}
    }
    (folder / "nextflow_schema.json").write_text(json.dumps(params))
    return folder.parent


@pytest.fixture
def app_env(engine, gcs, batch_server, nf_schemas: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    from arc_reactor.wiring import reset_deps

    monkeypatch.setenv("ARC_LOCAL", "true")
    monkeypatch.setenv("ARC_BATCH_ENDPOINT", batch_server.address)  # type: ignore[attr-defined]
    monkeypatch.setenv("ARC_BATCH_TOPIC", "projects/arc-test/topics/batch")
    monkeypatch.setenv("ARC_PROJECT", "arc-test")
    monkeypatch.setenv("ARC_SCHEMA_CACHE_DIR", str(nf_schemas))
    reset_deps()
    yield
    reset_deps()

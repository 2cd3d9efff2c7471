"""The orchestrator's steps, run by orchestrator/entrypoint.sh inside the Batch job (or the local stack):

    python3 -m arc_reactor.orchestrator.orchestrate relay   --workdir DIR
    python3 -m arc_reactor.orchestrator.orchestrate prepare --workdir DIR [--orchestrator-dir DIR]
    python3 -m arc_reactor.orchestrator.orchestrate started --workdir DIR
    python3 -m arc_reactor.orchestrator.orchestrate command --workdir DIR [--json]
    python3 -m arc_reactor.orchestrator.orchestrate watch   --workdir DIR --pid PID
    python3 -m arc_reactor.orchestrator.orchestrate finish  --workdir DIR --exit-code N
    python3 -m arc_reactor.orchestrator.orchestrate outcome --workdir DIR --exit-code N [--stage STAGE]

`relay` serves Nextflow's Tower reports to runs_api while the run goes on (orchestrator/relay.py).
`prepare` downloads the run's params (and config), decides what a retry or recovery resumes, and then,
for Snakemake, restores the working directory from WORK_DIR and stages the samplesheet's gs:// files; for
Nextflow it renders our config and checks that runs_api answers through the relay. It ends by writing what
`started` and `command` print (to <workdir>/started and <workdir>/argv), which saves the entrypoint two
interpreter starts. `started` and `outcome` print update_status.py arguments, `command` the engine's argv
(NUL-terminated, or JSON). `watch` records the Nextflow session id as soon as it is logged. `finish`
uploads logs (for Snakemake also the results and the working directory); a failed upload is a warning.
Decisions are in core/engine_command.py and core/nextflow_config.py (pure).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from arc_reactor.core.engine_command import (
    Workspace,
)
from arc_reactor.core.job_env import env_from
from arc_reactor.core.layout import run_locations
from arc_reactor.core.run_outcome import Failure, failure_from_log, outcome_args
from arc_reactor.errors import OrchestrationError
from arc_reactor.logs import JsonFormatter, setup_logging
from arc_reactor.orchestrator import nextflow_session, relay
from arc_reactor.orchestrator.engines import engine_for
from arc_reactor.orchestrator.storage_io import Context, download, session_id, upload
from arc_reactor.settings import get_settings

log = logging.getLogger("arc_reactor.orchestrator.orchestrate")  # not __name__: it runs as __main__
ORCHESTRATOR_DIR = Path(__file__).resolve().parents[3] / "orchestrator"  # repo root or /opt/arc
LOG_TAIL_BYTES = 64 * 1024


class _RunIdFilter(logging.Filter):
    def __init__(self, run_id: str) -> None:
        super().__init__()
        self.run_id = run_id

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "run_id", None):
            record.run_id = self.run_id
        return True


def setup_run_logging(run_id: str) -> None:
    """JSON lines on stderr, each with the run id; other libraries' warnings as JSON too."""
    setup_logging()
    handlers = list(logging.getLogger("arc_reactor").handlers)
    root = logging.getLogger()
    if not root.handlers:
        fallback = logging.StreamHandler(sys.stderr)
        fallback.setFormatter(JsonFormatter())
        fallback.setLevel(logging.WARNING)
        root.addHandler(fallback)
        handlers.append(fallback)
    for handler in handlers:
        if not any(isinstance(f, _RunIdFilter) for f in handler.filters):
            handler.addFilter(_RunIdFilter(run_id))


def prepare(ctx: Context, orchestrator_dir: Path) -> None:
    """Download the run's inputs, decide what to resume, and make the workspace ready for `command`."""
    env, ws = ctx.env, ctx.ws
    spec, source = ctx.pipeline
    if spec.local_path is not None and not Path(source).is_dir():
        raise OrchestrationError("pipeline_not_allowed", f"pipeline source {source} is missing")
    for folder in (ws.config_dir, ws.run_dir, ws.logs_dir):
        folder.mkdir(parents=True, exist_ok=True)
    log.info(
        "preparing %s %s (%s) in %s, recovery %s, attempt %d", env.pipeline, env.pipeline_version,
        env.engine, ws.root, env.is_recovery, env.retry_attempt,
        extra={"event": "orchestrator_prepare", "pipeline": env.pipeline},
    )  # fmt: skip
    download(ctx, env.params_uri, ws.params_file, "params file")
    if env.config_uri:
        download(ctx, env.config_uri, ws.user_config, "config file")
    engine_for(env.engine).prepare(ctx, orchestrator_dir)
    ws.argv_file.write_bytes(nul_terminated(command(ctx)))
    ws.started_file.write_bytes(nul_terminated(started(ws)))


def started(ws: Workspace) -> list[str]:
    """update_status.py arguments that mark the run running (with the session it resumes, if any)."""
    args = ["running", "--started_at", datetime.now(UTC).isoformat()]
    session = session_id(ws)
    return [*args, "--session_id", session] if session else args


def command(ctx: Context) -> list[str]:
    """The engine's argv for this run."""
    spec, source = ctx.pipeline
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return engine_for(ctx.env.engine).command(
        ctx.env, spec, source, ctx.ws, cores=cores, session=session_id(ctx.ws)
    )


def finish(ctx: Context, exit_code: int) -> tuple[int, int]:
    """Upload the logs, then what the engine keeps (Snakemake: the working directory and results); return
    (uploaded, failed)."""
    env = ctx.env
    engine = engine_for(env.engine)
    logs_uri = env.logs_dir or run_locations(ctx.settings.runs_bucket, env.run_id).logs
    files = [(src, logs_uri.rstrip("/") + "/" + name) for src, name in engine.logs(ctx.ws)]
    done = sum(upload(ctx, src, uri) for src, uri in files)
    kept, kept_failed = engine.finish(ctx)
    done, failed = done + kept, len(files) - done + kept_failed
    log.info(
        "engine exited %d; uploaded %d file(s), %d failed", exit_code, done, failed,
        extra={"event": "orchestrator_finish"},
    )  # fmt: skip
    if ctx.failed_uploads:
        _record_upload_failures(ctx)
    return done, failed


def _record_upload_failures(ctx: Context) -> None:
    """Say on the run which files are missing from logs/ or results/ (bounded retries; a warning if the
    database cannot be reached: the files' own warnings are in the job's log either way)."""
    from arc_reactor.adapters import runs_repo
    from arc_reactor.adapters.db import get_engine
    from arc_reactor.adapters.retry import retry_call
    from arc_reactor.errors import TransientError

    names = [uri.rsplit(f"/{ctx.env.run_id}/", 1)[-1] for uri in ctx.failed_uploads]
    try:
        engine = get_engine(ctx.settings)
        retry_call(
            lambda: runs_repo.record_upload_failures(engine, ctx.env.run_id, names, ctx.env.retry_attempt),
            attempts=3, base=0.5, cap=4.0, deadline=20.0, retry_on=(TransientError,), sleep=ctx.sleep,
        )  # fmt: skip
    except Exception as exc:  # noqa: BLE001 - recording is best effort; the upload warnings stand
        log.warning(
            "could not record the failed uploads on the run: %s", exc, extra={"event": "upload_failed"}
        )


def _tail(path: Path) -> str:
    if not path.is_file():
        return ""
    with path.open("rb") as fh:
        fh.seek(max(0, path.stat().st_size - LOG_TAIL_BYTES))
        return fh.read().decode("utf-8", "replace")


def read_failure(path: Path) -> Failure | None:
    """The failure a step recorded in the workspace, if any."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        return Failure(str(doc["code"]), str(doc["message"]), doc.get("task"))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def outcome(ws: Workspace, exit_code: int, stage: str, engine: str) -> list[str]:
    """update_status.py arguments for how the run ended (after `stage`, with `exit_code`)."""
    failure = read_failure(ws.error_file)
    if failure is None and stage == "engine" and exit_code != 0:
        failure = failure_from_log(engine, exit_code, _tail(ws.console_log))
    elif failure is None and stage != "engine":
        failure = Failure(
            "orchestrator_error", f"the orchestrator failed during {stage} (exit code {exit_code})"
        )
    return outcome_args(exit_code, failure, datetime.now(UTC).isoformat())


def _record_failure(ws: Workspace, failure: Failure) -> None:
    try:
        ws.root.mkdir(parents=True, exist_ok=True)
        ws.error_file.write_text(
            json.dumps({"code": failure.code, "message": failure.message}), encoding="utf-8"
        )
    except OSError as exc:
        log.warning("could not record the failure: %s", exc)


def nul_terminated(argv: Sequence[str]) -> bytes:
    """Arguments as bash's `mapfile -d ''` reads them: each one ends with a NUL byte."""
    return b"".join(a.encode("utf-8", "surrogateescape") + b"\0" for a in argv)


def _print_argv(argv: Sequence[str], as_json: bool = False) -> None:
    if as_json:
        sys.stdout.write(json.dumps(list(argv)) + "\n")
        sys.stdout.flush()
    else:
        sys.stdout.buffer.write(nul_terminated(argv))
        sys.stdout.buffer.flush()


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="orchestrate", description="Arc Reactor orchestrator steps.")
    sub = parser.add_subparsers(dest="cmd", required=True)
    for name in ("relay", "prepare", "started", "command", "watch", "finish", "outcome"):
        p = sub.add_parser(name)
        p.add_argument("--workdir", type=Path, required=True, help="the task's local work folder")
        if name == "prepare":
            p.add_argument("--orchestrator-dir", type=Path, default=ORCHESTRATOR_DIR)
        if name == "command":
            p.add_argument("--json", action="store_true", help="print a JSON list instead of NUL-terminated")
        if name == "watch":
            p.add_argument("--pid", type=int, required=True, help="the engine's process id")
        if name in ("finish", "outcome"):
            p.add_argument("--exit-code", type=int, required=True)
        if name == "outcome":
            p.add_argument("--stage", default="engine", help="the step that ended (default: engine)")
    return parser.parse_args(argv)


def run_relay(ctx: Context) -> None:
    """Serve Nextflow's Tower reports to runs_api until stopped (orchestrator/relay.py); write `none` to
    the port file when the run has no Tower reporting."""
    env, ws, settings = ctx.env, ctx.ws, ctx.settings
    ws.root.mkdir(parents=True, exist_ok=True)
    written = ws.relay_port.with_suffix(".tmp")
    if env.engine != "nextflow" or not env.tower_token or not settings.service_urls:
        written.write_text(relay.NONE, encoding="utf-8")
        written.replace(ws.relay_port)
        return
    target = settings.service_urls[0]
    server = relay.Relay(target, None if settings.local else relay.IdTokens(target))
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.stop, daemon=True).start())
    threading.Thread(target=_stop_with_parent, args=(server,), daemon=True).start()
    written.write_text(str(server.port), encoding="utf-8")
    written.replace(ws.relay_port)  # whole, or not at all: prepare reads it
    log.info("Tower relay on 127.0.0.1:%d to %s", server.port, target, extra={"event": "tower_relay"})
    server.serve()


def _stop_with_parent(server: relay.Relay, every: float = 1.0) -> None:
    """Stop the relay when the entrypoint that started it is gone (killed without its exit trap)."""
    parent = os.getppid()
    while os.getppid() == parent:
        time.sleep(every)
    server.stop()


def _run(args: argparse.Namespace, ctx: Context) -> None:
    if args.cmd == "relay":
        run_relay(ctx)
    elif args.cmd == "prepare":
        prepare(ctx, args.orchestrator_dir)
    elif args.cmd == "command":
        _print_argv(command(ctx), args.json)
    elif args.cmd == "watch":
        nextflow_session.watch(ctx, args.pid)
    else:
        finish(ctx, args.exit_code)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one step; 0 on success, 1 when a step failed (for prepare/command: the reason in error.json)."""
    args = parse_args(argv)
    ws = Workspace.at(args.workdir.resolve())
    setup_run_logging(os.environ.get("RUN_ID", ""))
    if args.cmd == "outcome":
        _print_argv(outcome(ws, args.exit_code, args.stage, os.environ.get("ENGINE") or "engine"))
        return 0
    if args.cmd == "started":
        _print_argv(started(ws))
        return 0
    try:
        _run(args, Context(env_from(os.environ), ws, get_settings()))
    except Exception as exc:
        failure = Failure(exc.code, str(exc)) if isinstance(exc, OrchestrationError) else None
        if failure is None:
            failure = Failure("orchestrator_error", f"{args.cmd} failed: {type(exc).__name__}: {exc}")
        log.error(
            "%s failed: %s", args.cmd, failure.message, exc_info=failure.code == "orchestrator_error",
            extra={"event": "orchestrator_error", "error_code": failure.code},
        )  # fmt: skip
        if args.cmd in ("prepare", "command"):  # relay, finish and watch never fail the run
            _record_failure(ws, failure)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The orchestrator's steps, run by orchestrator/entrypoint.sh inside the Batch job (or the local stack):

    python3 -m arc_reactor.services.orchestrate prepare --workdir DIR [--orchestrator-dir DIR]
    python3 -m arc_reactor.services.orchestrate command --workdir DIR [--json]
    python3 -m arc_reactor.services.orchestrate finish  --workdir DIR --exit-code N
    python3 -m arc_reactor.services.orchestrate outcome --workdir DIR --exit-code N [--stage STAGE]

`prepare` downloads the run's params (and config) and, for Snakemake, stages the samplesheet's gs:// files
and localizes it; for Nextflow it renders our config. `command` prints the engine's argv, NUL-terminated
(or JSON). `finish` uploads logs (and Snakemake's results); a failed upload is a warning. `outcome` prints
the update_status.py arguments, NUL-terminated, that report how the run ended. Decisions are in
core/engine_command.py (pure); the job's environment is described there and in DESIGN.md.
"""

from __future__ import annotations

import argparse
import base64
import csv
import io
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

import yaml

from arc_reactor.adapters.retry import retry_call
from arc_reactor.adapters.storage import Storage, make_client
from arc_reactor.core.engine_command import (
    Failure,
    OrchestrationError,
    OrchestratorEnv,
    Workspace,
    engine_command,
    env_from,
    failure_from_log,
    gs_cells,
    local_input_path,
    localize_rows,
    outcome_args,
    pipeline_source,
    pipeline_spec,
    render_template,
    snakemake_trace,
    template_values,
)
from arc_reactor.core.layout import run_locations
from arc_reactor.core.registry import load_registry
from arc_reactor.errors import TransientError
from arc_reactor.logs import JsonFormatter, setup_logging
from arc_reactor.settings import Settings, get_settings

T = TypeVar("T")
log = logging.getLogger("arc_reactor.services.orchestrate")  # not __name__: it runs as __main__
ORCHESTRATOR_DIR = Path(__file__).resolve().parents[3] / "orchestrator"  # repo root or /opt/arc
TRANSFER_RETRY_ON: tuple[type[BaseException], ...] = (TransientError, ConnectionError, TimeoutError)
TRANSFER_ATTEMPTS = 4
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


@dataclass
class Context:
    """One step's view of the run: environment, local workspace, settings and (lazily) storage."""

    env: OrchestratorEnv
    ws: Workspace
    settings: Settings
    sleep: Callable[[float], None] = time.sleep

    @cached_property
    def storage(self) -> Storage:
        """The Storage adapter, created on first use."""
        return Storage(make_client(self.settings))

    def transfer(self, fn: Callable[[], T]) -> T:
        """Run one transfer with the bounded retry policy."""
        return retry_call(
            fn, attempts=TRANSFER_ATTEMPTS, base=0.5, cap=8.0, deadline=120.0,
            retry_on=TRANSFER_RETRY_ON, sleep=self.sleep,
        )  # fmt: skip


def download(ctx: Context, uri: str, dest: Path, what: str) -> None:
    """Download with retries; a missing object is an `input_missing` failure naming it."""
    from google.api_core.exceptions import NotFound

    try:
        ctx.transfer(lambda: ctx.storage.download_file(uri, dest))
    except NotFound as exc:
        dest.unlink(missing_ok=True)
        raise OrchestrationError("input_missing", f"{what} {uri} does not exist") from exc
    except TRANSFER_RETRY_ON as exc:
        raise OrchestrationError("storage_unavailable", f"cannot download {what} {uri}: {exc}") from exc


def read_params(path: Path) -> dict[str, Any]:
    """The run's params.yaml as a mapping."""
    try:
        params = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise OrchestrationError("invalid_input", f"params.yaml is not valid YAML: {exc}") from exc
    if not isinstance(params, dict):
        raise OrchestrationError("invalid_input", "params.yaml must be a mapping")
    return params


def prepare(ctx: Context, orchestrator_dir: Path) -> None:
    """Download the run's inputs and make the workspace ready for `command`."""
    env, ws = ctx.env, ctx.ws
    spec = pipeline_spec(load_registry(), env)
    source = pipeline_source(spec, ctx.settings.pipelines_root)
    if spec.local_path is not None and not Path(source).is_dir():
        raise OrchestrationError("pipeline_not_allowed", f"pipeline source {source} is missing")
    for folder in (ws.config_dir, ws.inputs_dir, ws.run_dir, ws.results_dir, ws.logs_dir):
        folder.mkdir(parents=True, exist_ok=True)
    log.info(
        "preparing %s %s (%s) in %s", env.pipeline, env.pipeline_version, env.engine, ws.root,
        extra={"event": "orchestrator_prepare", "pipeline": env.pipeline},
    )  # fmt: skip
    download(ctx, env.params_uri, ws.params_file, "params file")
    if env.config_uri:
        download(ctx, env.config_uri, ws.user_config, "config file")
    if env.engine == "snakemake":
        stage_inputs(ctx, read_params(ws.params_file))
    else:
        render_config(ctx, orchestrator_dir)


def stage_inputs(ctx: Context, params: dict[str, Any]) -> None:
    """Snakemake reads local files: stage every gs:// file of the samplesheet and point params at them."""
    ws = ctx.ws
    sheet_uri = str(params.get("input") or "")
    if not sheet_uri.startswith("gs://"):
        raise OrchestrationError(
            "invalid_input", f"params input must be a gs:// samplesheet, not {sheet_uri!r}"
        )
    remote_sheet = ws.inputs_dir / "samplesheet.remote.csv"
    download(ctx, sheet_uri, remote_sheet, "samplesheet")
    rows = list(csv.reader(io.StringIO(remote_sheet.read_text(encoding="utf-8-sig"))))
    if not rows:
        raise OrchestrationError("invalid_input", "the samplesheet is empty")
    header, data = rows[0], rows[1:]
    staged: dict[str, Path] = {}
    for uri, line, column in gs_cells(data, header):
        dest = local_input_path(uri, ws.inputs_dir)
        download(ctx, uri, dest, f"input file (samplesheet line {line}, {column})")
        staged[uri] = dest
    log.info("staged %d input file(s)", len(staged), extra={"event": "inputs_staged"})
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows([header, *localize_rows(data, staged)])
    ws.samplesheet.write_text(out.getvalue(), encoding="utf-8")
    local = {**params, "input": str(ws.samplesheet), "outdir": str(ws.results_dir)}
    ws.local_params.write_text(yaml.safe_dump(local, sort_keys=False), encoding="utf-8")


def render_config(ctx: Context, orchestrator_dir: Path) -> None:
    """Render orchestrator/nextflow.config.template for this run."""
    template = (orchestrator_dir / "nextflow.config.template").read_text(encoding="utf-8")
    user_config = ctx.ws.user_config if ctx.ws.user_config.is_file() else None
    values = template_values(
        ctx.env, ctx.ws, sys.executable, str(orchestrator_dir / "update_status.py"), user_config
    )
    ctx.ws.rendered_config.write_text(render_template(template, values), encoding="utf-8")


def command(ctx: Context) -> list[str]:
    """The engine's argv for this run."""
    spec = pipeline_spec(load_registry(), ctx.env)
    source = pipeline_source(spec, ctx.settings.pipelines_root)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return engine_command(ctx.env, spec, source, ctx.ws, cores)


def _results_uri(ctx: Context) -> str:
    if ctx.env.results_dir:
        return ctx.env.results_dir
    outdir = str(read_params(ctx.ws.params_file).get("outdir") or "") if ctx.ws.params_file.is_file() else ""
    return (
        outdir
        if outdir.startswith("gs://")
        else run_locations(ctx.settings.runs_bucket, ctx.env.run_id).results
    )


def upload(ctx: Context, src: Path, uri: str) -> bool:
    """Upload one file with retries; a failure is a warning, never a failed run."""
    try:
        ctx.transfer(lambda: ctx.storage.upload_file(src, uri))
    except Exception as exc:  # noqa: BLE001 - any upload failure is only a warning
        log.warning("could not upload %s to %s: %s", src.name, uri, exc, extra={"event": "upload_failed"})
        return False
    return True


def _snakemake_metadata(run_dir: Path) -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    for path in sorted((run_dir / ".snakemake" / "metadata").rglob("*")):
        try:
            meta = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
            output = base64.urlsafe_b64decode(path.name.encode()).decode("utf-8", "replace")
        except (OSError, ValueError):
            continue  # Snakemake's metadata layout is internal: skip what we cannot read
        if isinstance(meta, dict):
            out.append((output, meta))
    return out


def collect_logs(engine: str, ws: Workspace) -> list[tuple[Path, str]]:
    """(local file, name under logs/) of every log the engine left; Snakemake's are merged first."""
    found = [(ws.console_log, "console.log")]
    if engine == "nextflow":
        found += [
            (ws.run_dir / ".nextflow.log", "nextflow.log"), (ws.trace, "trace.txt"),
            (ws.timeline, "timeline.html"), (ws.report, "report.html"),
        ]  # fmt: skip
        return [(p, n) for p, n in found if p.is_file()]
    runs = sorted((ws.run_dir / ".snakemake" / "log").glob("*.snakemake.log"))
    if runs:  # one log per attempt in this work dir, oldest first
        merged = ws.logs_dir / "snakemake.log"
        merged.write_text(
            "".join(p.read_text(encoding="utf-8", errors="replace") for p in runs), encoding="utf-8"
        )
        found.append((merged, "snakemake.log"))
    records = _snakemake_metadata(ws.run_dir)
    if records:
        ws.trace.write_text(snakemake_trace(records), encoding="utf-8")
        found.append((ws.trace, "trace.txt"))
    return [(p, n) for p, n in found if p.is_file()]


def finish(ctx: Context, exit_code: int) -> tuple[int, int]:
    """Upload the logs and (Snakemake) the results; return (uploaded, failed)."""
    ws, env = ctx.ws, ctx.env
    logs_uri = env.logs_dir or run_locations(ctx.settings.runs_bucket, env.run_id).logs
    files = [(src, logs_uri.rstrip("/") + "/" + name) for src, name in collect_logs(env.engine, ws)]
    if env.engine == "snakemake" and ws.results_dir.is_dir():
        results_uri = _results_uri(ctx).rstrip("/")
        files += [
            (p, f"{results_uri}/{p.relative_to(ws.results_dir).as_posix()}")
            for p in sorted(ws.results_dir.rglob("*"))
            if p.is_file()
        ]
    done = sum(upload(ctx, src, uri) for src, uri in files)
    log.info(
        "engine exited %d; uploaded %d of %d file(s)", exit_code, done, len(files),
        extra={"event": "orchestrator_finish"},
    )  # fmt: skip
    return done, len(files) - done


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


def _print_argv(argv: Sequence[str], as_json: bool) -> None:
    sys.stdout.write(json.dumps(list(argv)) + "\n" if as_json else "".join(f"{a}\0" for a in argv))
    sys.stdout.flush()


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="orchestrate", description="Arc Reactor orchestrator steps.")
    sub = parser.add_subparsers(dest="cmd", required=True)
    for name in ("prepare", "command", "finish", "outcome"):
        p = sub.add_parser(name)
        p.add_argument("--workdir", type=Path, required=True, help="the task's local work folder")
        if name == "prepare":
            p.add_argument("--orchestrator-dir", type=Path, default=ORCHESTRATOR_DIR)
        if name == "command":
            p.add_argument("--json", action="store_true", help="print a JSON list instead of NUL-terminated")
        if name in ("finish", "outcome"):
            p.add_argument("--exit-code", type=int, required=True)
        if name == "outcome":
            p.add_argument("--stage", default="engine", help="the step that ended (default: engine)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one step; 0 on success, 1 when prepare/command failed (the reason is in <workdir>/error.json)."""
    args = parse_args(argv)
    ws = Workspace.at(args.workdir.resolve())
    setup_run_logging(os.environ.get("RUN_ID", ""))
    if args.cmd == "outcome":
        _print_argv(outcome(ws, args.exit_code, args.stage, os.environ.get("ENGINE") or "engine"), False)
        return 0
    try:
        ctx = Context(env_from(os.environ), ws, get_settings())
        if args.cmd == "finish":
            finish(ctx, args.exit_code)
        elif args.cmd == "prepare":
            prepare(ctx, args.orchestrator_dir)
        else:
            _print_argv(command(ctx), args.json)
    except Exception as exc:
        failure = Failure(exc.code, str(exc)) if isinstance(exc, OrchestrationError) else None
        if failure is None:
            failure = Failure("orchestrator_error", f"{args.cmd} failed: {type(exc).__name__}: {exc}")
        log.error(
            "%s failed: %s", args.cmd, failure.message, exc_info=failure.code == "orchestrator_error",
            extra={"event": "orchestrator_error", "error_code": failure.code},
        )  # fmt: skip
        if args.cmd != "finish":  # finish only uploads: its failures never fail the run
            _record_failure(ws, failure)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

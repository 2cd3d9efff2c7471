"""The orchestrator's engines: one interface, a Nextflow and a Snakemake implementation, so the steps in
orchestrate.py never ask which engine runs. Pure decisions stay in core (engine_command.py: the argv, the
sessions; nextflow_config.py: our config; engines.py: the traits the functions rely on too).

    prepare   after the run's params and config are downloaded: what the engine needs before it starts
    command   the engine's argv (pure)
    logs      the log files it left, as (local file, name under logs/)
    finish    what it keeps beyond its logs (uploaded, failed)
    resume    Nextflow resumes a session (-resume <id>, recorded in CACHE_DIR); Snakemake its work dir
"""

from __future__ import annotations

import base64
import csv
import io
import json
import logging
import subprocess
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import yaml
from sqlalchemy.exc import SQLAlchemyError

from arc_reactor.core.engine_command import (
    SnakemakeOnBatch,
    Workspace,
    gs_cells,
    local_input_path,
    localize_rows,
    nextflow_command,
    resume_session,
    snakemake_command,
    snakemake_dag_count,
)
from arc_reactor.core.job_env import JobEnv
from arc_reactor.core.layout import run_locations, split_gs_uri
from arc_reactor.core.nextflow_config import TaskPolicy, render_template, template_values
from arc_reactor.core.registry import PipelineSpec
from arc_reactor.core.run_outcome import snakemake_trace
from arc_reactor.errors import ArcError, OrchestrationError
from arc_reactor.orchestrator import nextflow_session, relay, task_context, workdir_sync
from arc_reactor.orchestrator.storage_io import (
    TRANSFER_RETRY_ON,
    Context,
    copy_object,
    download,
    read_params,
    session_id,
    upload,
    write_object,
)

log = logging.getLogger("arc_reactor.orchestrator.orchestrate")  # one logger name for every step


class Engine(Protocol):
    """What the orchestrator's steps need from an engine."""

    name: str

    def prepare(self, ctx: Context, orchestrator_dir: Path) -> None:
        """Make the workspace ready for `command` (the params and config are already downloaded)."""
        ...

    def command(
        self, env: JobEnv, spec: PipelineSpec, source: str, ws: Workspace, *, cores: int, session: str | None
    ) -> list[str]:
        """The engine's argv."""
        ...

    def logs(self, ws: Workspace) -> list[tuple[Path, str]]:
        """(local file, name under logs/) of every log the engine left."""
        ...

    def finish(self, ctx: Context) -> tuple[int, int]:
        """Keep what the engine made beyond its logs; (uploaded, failed)."""
        ...


def _present(found: list[tuple[Path, str]]) -> list[tuple[Path, str]]:
    return [(p, n) for p, n in found if p.is_file()]


class Nextflow:
    """Nextflow with its google-batch executor: our rendered config, -resume from the cloud cache."""

    name = "nextflow"

    def prepare(self, ctx: Context, orchestrator_dir: Path) -> None:
        """Decide which session to resume, and render our config."""
        env, ws = ctx.env, ctx.ws
        session = resume_session(env, nextflow_session.recorded(ctx) if env.resume else None)
        if session:
            ws.session_file.write_text(session, encoding="utf-8")
            log.info("resuming Nextflow session %s", session, extra={"event": "resume"})
        elif env.resume:
            log.warning("no Nextflow session to resume: this attempt starts afresh in the same work dir")
        render_config(ctx, orchestrator_dir)
        if env.tower_token:  # the entrypoint started the Tower relay: report through it if runs_api answers
            port = relay.relay_port(ws.relay_port)
            if port is not None and relay.reachable(port):
                ws.tower_endpoint.write_text(f"http://127.0.0.1:{port}/tower", encoding="utf-8")

    def command(
        self, env: JobEnv, spec: PipelineSpec, source: str, ws: Workspace, *, cores: int, session: str | None
    ) -> list[str]:
        """`nextflow run` with the manifest's profile (else the registry's), resuming `session`, reporting
        its tasks through the Tower relay when prepare found runs_api answering."""
        tower = ws.tower_endpoint.read_text(encoding="utf-8") if ws.tower_endpoint.is_file() else None
        return nextflow_command(env, source, ws, env.profile or spec.default_profile, session, tower=tower)

    def logs(self, ws: Workspace) -> list[tuple[Path, str]]:
        """The console, .nextflow.log and the trace, timeline, report and DAG."""
        return _present(
            [
                (ws.console_log, "console.log"), (ws.run_dir / ".nextflow.log", "nextflow.log"),
                (ws.trace, "trace.txt"), (ws.timeline, "timeline.html"), (ws.report, "report.html"),
                (ws.dag, "dag.html"),
            ]
        )  # fmt: skip

    def finish(self, ctx: Context) -> tuple[int, int]:
        """Record the session the run started, when the watcher did not (its work dir is Nextflow's own),
        and read the trace file into the run's task ledger."""
        if not session_id(ctx.ws) and (session := nextflow_session.from_log(ctx)):
            nextflow_session.record(ctx, session)
        ingest_trace(ctx)
        return 0, 0


class Snakemake:
    """Snakemake: each job a Batch task job, its data in the lineage's work/ prefix through the GCS storage
    plugin (settings.snakemake_executor `batch`, the default); or every job inside this VM, the inputs
    staged locally and the working directory synced with WORK_DIR (`local`)."""

    name = "snakemake"

    def prepare(self, ctx: Context, orchestrator_dir: Path) -> None:
        """Restore the working directory on a resume, then stage the samplesheet's files (on Batch: into
        the work/ prefix, and upload the task context)."""
        if ctx.env.resume:  # restore first: the inputs staged next are always fresh
            workdir_sync.restore(ctx)
        params = read_params(ctx.ws.params_file)
        if on_batch(ctx):
            if ctx.env.retry_attempt > 0:
                cancel_stale_task_jobs(ctx)
            stage_inputs(ctx, params, place=partial(_copy_to_work, ctx))
            upload_task_context(ctx)
        else:
            stage_inputs(ctx, params, place=partial(_download_to_run_dir, ctx))
        if ctx.env.resume:
            count_dag(ctx)

    def command(
        self, env: JobEnv, spec: PipelineSpec, source: str, ws: Workspace, *, cores: int, session: str | None
    ) -> list[str]:
        """`snakemake` in the run dir (it resumes from its restored metadata, not from a session)."""
        return snakemake_command(source, ws, cores, resuming=env.resume, batch=batch_of(env, ws))

    def logs(self, ws: Workspace) -> list[tuple[Path, str]]:
        """The console, this attempt's Snakemake logs merged, and a trace.txt like Nextflow's."""
        found = [(ws.console_log, "console.log")]
        runs = sorted((ws.run_dir / ".snakemake" / "log").glob("*.snakemake.log"))
        if runs:  # this attempt's logs only: .snakemake/log is not synced with the work dir
            merged = ws.logs_dir / "snakemake.log"
            merged.write_text(
                "".join(p.read_text(encoding="utf-8", errors="replace") for p in runs), encoding="utf-8"
            )
            found.append((merged, "snakemake.log"))
        # The rules' own `log:` files, in logs/ as Snakemake's best practices put them (a recovery's include
        # the restored ones of the runs before it), under the run's logs/rules/. On Batch they are in the
        # work/ prefix instead: finish copies them.
        rules = ws.run_dir / "logs"
        found += [(p, f"rules/{p.relative_to(rules).as_posix()}") for p in sorted(rules.rglob("*.log"))]
        records = _snakemake_metadata(ws.run_dir)
        if records:
            ws.trace.write_text(snakemake_trace(records), encoding="utf-8")
            found.append((ws.trace, "trace.txt"))
        return _present(found)

    def finish(self, ctx: Context) -> tuple[int, int]:
        """Save the working directory to WORK_DIR and deliver the results (on Batch: copied from the work/
        prefix, with the rules' logs)."""
        ws = ctx.ws
        saved, save_failed = workdir_sync.save(ctx)
        results_uri = _results_uri(ctx).rstrip("/")
        if ran_on_batch(ws):
            logs_uri = ctx.env.logs_dir or run_locations(ctx.settings.runs_bucket, ctx.env.run_id).logs
            ok, failed = _copy_from_work(ctx, "results", results_uri)
            rule_logs = f"{logs_uri.rstrip('/')}/rules"
            ok_logs, failed_logs = _copy_from_work(ctx, "logs", rule_logs, suffix=".log")
            return saved + ok + ok_logs, save_failed + failed + failed_logs
        results = sorted(p for p in ws.results_dir.rglob("*") if p.is_file())
        ok = sum(upload(ctx, p, f"{results_uri}/{p.relative_to(ws.results_dir).as_posix()}") for p in results)
        return saved + ok, save_failed + len(results) - ok


def on_batch(ctx: Context) -> bool:
    """True when this run's Snakemake jobs are Batch task jobs (the deployment's setting; they need the
    lineage's work/ prefix for their data)."""
    if ctx.settings.snakemake_executor != "batch":
        return False
    if not ctx.env.work_dir:
        log.warning("no WORK_DIR: Snakemake runs its jobs inside this VM")
        return False
    return True


def ran_on_batch(ws: Workspace) -> bool:
    """True once this attempt's prepare has uploaded the task context: Snakemake's jobs are then Batch task
    jobs and their outputs are in the work/ prefix. `command` and `finish` both decide by it, so they
    cannot disagree. Without this attempt's context the prefix (the lineage's) holds only earlier runs'
    outputs, which are not this run's. The entrypoint runs finish only after the engine has run, so this
    is the rule for any caller rather than a path it takes today."""
    return ws.task_context.is_file()


def batch_of(env: JobEnv, ws: Workspace) -> SnakemakeOnBatch | None:
    """How Snakemake runs on Batch, when prepare uploaded a task context for it; else None."""
    if not ran_on_batch(ws):
        return None
    from arc_reactor.settings import get_settings

    settings = get_settings()
    return SnakemakeOnBatch(
        storage_prefix=env.work_dir,
        context_uri=ws.task_context.read_text(encoding="utf-8").strip(),
        max_jobs=settings.snakemake_max_jobs,
        project=settings.project,
        status_interval_s=settings.snakemake_status_interval_s,
    )


def cancel_stale_task_jobs(ctx: Context) -> list[str]:
    """A retried head job: cancel the task jobs an earlier attempt left going (its VM died without
    Snakemake cancelling them), so that no job runs twice at once when Snakemake submits it again. What
    cannot be cancelled is a warning: the sweeper stops it once the run has ended. The names cancelled."""
    from arc_reactor.adapters.batch import BatchService, make_batch_client

    failures: list[str] = []
    batch = BatchService(make_batch_client(ctx.settings), ctx.settings)
    cancelled = batch.cancel_task_jobs(ctx.env.run_id, failures)
    if cancelled or failures:
        log.log(
            logging.WARNING if failures else logging.INFO,
            "cancelled %d task job(s) an earlier attempt left going; %d failure(s)", len(cancelled),
            len(failures), extra={"event": "stale_task_jobs", "detail": {"failures": failures[:20]}},
        )  # fmt: skip
    return cancelled


def upload_task_context(ctx: Context) -> str:
    """Pack the run dir's .arc/ (the params and samplesheet the Snakefile reads) and upload it under the
    work/ prefix; record its URI for `command`."""
    packed = task_context.pack(ctx.ws.run_dir)
    uri = f"{ctx.env.work_dir.rstrip('/')}/{task_context.object_name(packed)}"
    write_object(ctx, uri, packed, content_type="application/gzip")
    ctx.ws.task_context.write_text(uri, encoding="utf-8")
    log.info("task context at %s", uri, extra={"event": "task_context_uploaded"})
    return uri


def _copy_to_work(ctx: Context, uri: str, rel: Path, what: str) -> None:
    """Stage an input for Batch task jobs: a copy inside Cloud Storage to the work/ prefix, where the
    storage plugin finds `rel` (skipped when the same bytes are there already)."""
    copy_object(ctx, uri, f"{ctx.env.work_dir.rstrip('/')}/{rel.as_posix()}", what)


def _download_to_run_dir(ctx: Context, uri: str, rel: Path, what: str) -> None:
    download(ctx, uri, ctx.ws.run_dir / rel, what)


def _copy_from_work(ctx: Context, folder: str, dest_uri: str, suffix: str = "") -> tuple[int, int]:
    """Copy what the task jobs left under the work/ prefix's `folder`/ to `dest_uri` (objects ending in
    `suffix`); (copied or already there, failed). A recovery's include what the runs before it made."""
    bucket, prefix = split_gs_uri(f"{ctx.env.work_dir.rstrip('/')}/{folder}/")
    try:
        names = ctx.transfer(partial(ctx.storage.list_names, bucket, prefix, MAX_DELIVERED))
    except TRANSFER_RETRY_ON as exc:
        log.warning("could not list gs://%s/%s: %s", bucket, prefix, exc, extra={"event": "upload_failed"})
        return 0, 1
    ok = failed = 0
    for name in names:
        if not name.endswith(suffix) or name.endswith("/"):
            continue
        target = f"{dest_uri}/{name[len(prefix) :]}"
        try:
            ctx.transfer(partial(ctx.storage.copy, f"gs://{bucket}/{name}", target, retry=None))
            ok += 1
        except Exception as exc:  # noqa: BLE001 - one file not delivered is a warning, as for uploads
            log.warning("could not copy %s: %s", name, exc, extra={"event": "upload_failed"})
            ctx.failed_uploads.append(target)
            failed += 1
    return ok, failed


MAX_DELIVERED = 100_000  # objects copied out of one work/ folder


_ENGINES: dict[str, Engine] = {"nextflow": Nextflow(), "snakemake": Snakemake()}


def engine_for(name: str) -> Engine:
    """The engine called `name` (JobEnv.from_env has checked it)."""
    engine = _ENGINES.get(name)
    if engine is None:
        raise OrchestrationError("bad_environment", f"no engine {name!r}")
    return engine


DAG_COUNT_TIMEOUT_S = 600.0


def count_dag(ctx: Context) -> bool:
    """Before a resumed Snakemake run: a dry run of the whole DAG, whose job counts per rule the logger
    plugin writes to ws.dag_counts, so the run can count the jobs it skips as cached. Bounded in time; a
    failure is only a warning (the run then shows no cached count). True when the counts were written."""
    ws = ctx.ws
    _, source = ctx.pipeline
    ws.dag_counts.unlink(missing_ok=True)
    try:
        done = subprocess.run(  # our own argv, no shell
            snakemake_dag_count(source, ws, batch_of(ctx.env, ws)), capture_output=True, text=True,
            timeout=DAG_COUNT_TIMEOUT_S, check=False, cwd=ws.run_dir,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("could not count the DAG's jobs: %s", exc, extra={"event": "snakemake_dag_count_failed"})
        return False
    if done.returncode != 0 or not ws.dag_counts.is_file():
        tail = (done.stderr or done.stdout or "").strip().splitlines()[-5:]
        log.warning(
            "could not count the DAG's jobs (exit %d): %s", done.returncode, " | ".join(tail),
            extra={"event": "snakemake_dag_count_failed"},
        )  # fmt: skip
        return False
    return True


def stage_inputs(ctx: Context, params: dict[str, Any], *, place: Callable[[str, Path, str], None]) -> None:
    """Snakemake reads what the samplesheet names by paths relative to run_dir: `place` puts every gs://
    file there (downloaded into run_dir, or copied to the work/ prefix where the storage plugin finds it),
    and the samplesheet and params are written into the task context with those paths."""
    ws = ctx.ws
    sheet_uri = str(params.get("input") or "")
    if not sheet_uri.startswith("gs://"):
        raise OrchestrationError(
            "invalid_input", f"params input must be a gs:// samplesheet, not {sheet_uri!r}"
        )
    ws.context_dir.mkdir(parents=True, exist_ok=True)
    remote_sheet = ws.root / "samplesheet.remote.csv"
    download(ctx, sheet_uri, remote_sheet, "samplesheet")
    rows = list(csv.reader(io.StringIO(remote_sheet.read_text(encoding="utf-8-sig"))))
    if not rows:
        raise OrchestrationError("invalid_input", "the samplesheet is empty")
    header, data = rows[0], rows[1:]
    staged: dict[str, Path] = {}
    inputs = ws.inputs_dir.relative_to(ws.run_dir)
    for uri, line, column in gs_cells(data, header):
        rel = local_input_path(uri, inputs)
        place(uri, rel, f"input file (samplesheet line {line}, {column})")
        staged[uri] = rel
    log.info("staged %d input file(s)", len(staged), extra={"event": "inputs_staged"})
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows([header, *localize_rows(data, staged)])
    ws.samplesheet.write_text(out.getvalue(), encoding="utf-8")
    local = {
        **params,
        "input": ws.samplesheet.relative_to(ws.run_dir).as_posix(),
        "outdir": ws.results_dir.relative_to(ws.run_dir).as_posix(),
    }
    ws.local_params.write_text(yaml.safe_dump(local, sort_keys=False), encoding="utf-8")


TRACE_BATCH = 500


def ingest_trace(ctx: Context) -> int:
    """Nextflow's trace.txt into the run's task ledger (the same keys as its Tower reports, so nothing is
    counted twice); the attempts written. The ledger is a view of the run: a trace that cannot be read or
    written is a warning, never a failure."""
    from arc_reactor.core.trace_file import TraceFileInvalid, parse_trace

    if not ctx.ws.trace.is_file():
        return 0
    try:
        updates = parse_trace(ctx.ws.trace.read_text(encoding="utf-8", errors="replace"))
        if not updates:
            return 0
        from arc_reactor.adapters.db import get_engine
        from arc_reactor.adapters.tasks_repo import upsert_tasks

        engine = get_engine(ctx.settings)
        for lo in range(0, len(updates), TRACE_BATCH):
            upsert_tasks(engine, ctx.env.run_id, updates[lo : lo + TRACE_BATCH])
    except (TraceFileInvalid, OSError, ArcError, SQLAlchemyError) as exc:
        log.warning("trace.txt not read into the task ledger: %s", exc, extra={"event": "trace_not_ingested"})
        return 0
    log.info("trace.txt: %d task attempt(s) into the ledger", len(updates), extra={"event": "trace_ingested"})
    return len(updates)


def render_config(ctx: Context, orchestrator_dir: Path) -> None:
    """Render orchestrator/nextflow.config.template for this run."""
    template = (orchestrator_dir / "nextflow.config.template").read_text(encoding="utf-8")
    user_config = ctx.ws.user_config if ctx.ws.user_config.is_file() else None
    hook = (sys.executable, str(orchestrator_dir / "update_status.py"))
    strategy = ctx.pipeline[0].error_strategy
    policy = TaskPolicy.from_settings(ctx.settings)
    values = template_values(ctx.env, ctx.ws, policy, hook, user_config, pipeline_strategy=strategy)
    ctx.ws.rendered_config.write_text(render_template(template, values), encoding="utf-8")


def _results_uri(ctx: Context) -> str:
    if ctx.env.results_dir:
        return ctx.env.results_dir
    outdir = str(read_params(ctx.ws.params_file).get("outdir") or "") if ctx.ws.params_file.is_file() else ""
    return (
        outdir
        if outdir.startswith("gs://")
        else run_locations(ctx.settings.runs_bucket, ctx.env.run_id).results
    )


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

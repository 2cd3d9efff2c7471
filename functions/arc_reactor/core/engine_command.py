"""The orchestrator's decisions, pure: its local workspace, the engine command (Snakemake
or Nextflow, with resume), which Nextflow session a retry or recovery resumes, and how a run's outcome is
reported (core/run_outcome.py). core/nextflow_config.py renders our Nextflow config.

orchestrator/orchestrate.py does the I/O around these; orchestrator/entrypoint.sh only sequences it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from arc_reactor.core.engines import traits
from arc_reactor.core.job_env import JobEnv
from arc_reactor.core.layout import split_gs_uri
from arc_reactor.core.registry import PipelineSpec, Registry
from arc_reactor.errors import OrchestrationError


@dataclass(frozen=True)
class Workspace:
    """The orchestrator's local folder (a fresh mktemp dir per task attempt) and what lives where in it.

    run_dir is the engine's launch dir; for Snakemake it is also the working directory that is synced
    with WORK_DIR, so everything in it (outputs, `.snakemake` metadata, staged inputs) is addressed by
    paths relative to it: they stay the same on every attempt and every VM.
    """

    root: Path
    config_dir: Path
    params_file: Path  # params.yaml as downloaded
    user_config: Path  # the user's nextflow.config as downloaded
    rendered_config: Path  # ours, rendered from the template
    local_params: Path  # snakemake: params with input/outdir relative to run_dir (in the task context)
    run_dir: Path  # the engine's launch dir (and snakemake's --directory)
    inputs_dir: Path  # snakemake: staged inputs (run_dir/inputs, never synced: staged again each time)
    samplesheet: Path  # the localized samplesheet (in the task context)
    context_dir: Path  # snakemake: run_dir/.arc, what every task job gets (orchestrator/task_context.py)
    results_dir: Path  # snakemake's outdir (run_dir/results)
    logs_dir: Path
    console_log: Path
    trace: Path
    timeline: Path
    report: Path
    dag: Path
    error_file: Path  # why a step before the engine failed (JSON)
    session_file: Path  # the Nextflow session this attempt resumes, when there is one
    terminated_marker: Path  # written on SIGTERM: the hooks stand down, Batch decides the status
    restored_file: Path  # snakemake: what was restored from WORK_DIR (JSON), so unchanged files stay put
    argv_file: Path  # the engine's argv, NUL-terminated (written by prepare)
    started_file: Path  # update_status.py arguments that mark the run running, NUL-terminated
    dag_counts: Path  # snakemake, resuming: the whole DAG's jobs per rule (JSON), to count what it skips
    relay_port: Path  # nextflow: the port the Tower relay listens on, or `none` (orchestrator/relay.py)
    task_context: Path  # snakemake on Batch: the gs:// URI of the task context this attempt uploaded
    tower_endpoint: Path  # nextflow: the relay's URL for -with-tower, once runs_api answered through it

    @classmethod
    def at(cls, root: Path) -> Workspace:
        """The layout under `root`."""
        config, run, logs = root / "config", root / "run", root / "logs"
        return cls(
            root=root, config_dir=config, params_file=config / "params.yaml",
            user_config=config / "nextflow.config", rendered_config=config / "arc.config",
            local_params=run / ".arc" / "params.yaml", run_dir=run, inputs_dir=run / "inputs",
            samplesheet=run / ".arc" / "samplesheet.csv", context_dir=run / ".arc",
            results_dir=run / "results",
            logs_dir=logs, console_log=logs / "console.log", trace=logs / "trace.txt",
            timeline=logs / "timeline.html", report=logs / "report.html", dag=logs / "dag.html",
            error_file=root / "error.json", session_file=root / "session-id",
            terminated_marker=root / "terminated", restored_file=root / "restored.json",
            argv_file=root / "argv", started_file=root / "started", dag_counts=root / "dag-counts.json",
            relay_port=root / "relay-port", tower_endpoint=root / "tower-endpoint",
            task_context=root / "task-context",
        )  # fmt: skip


def pipeline_spec(registry: Registry, env: JobEnv) -> PipelineSpec:
    """The registry entry for the run; refuse what the registry (the allowlist) does not allow."""
    spec = registry.get(env.pipeline)
    if spec is None:
        raise OrchestrationError("pipeline_not_allowed", f"pipeline {env.pipeline} is not in the registry")
    if env.pipeline_version not in spec.revisions:
        raise OrchestrationError(
            "pipeline_not_allowed",
            f"revision {env.pipeline_version} of {env.pipeline} is not allowed ({', '.join(spec.revisions)})",
        )
    if spec.engine != env.engine:
        raise OrchestrationError(
            "bad_environment",
            f"ENGINE is {env.engine} but the registry runs {env.pipeline} with {spec.engine}",
        )
    return spec


def pipeline_source(spec: PipelineSpec, pipelines_root: Path) -> str:
    """A `path:` source as an absolute folder under the pipelines root; else the engine's project name."""
    if spec.local_path is None:
        if not traits(spec.engine).runs_remote_source:
            raise OrchestrationError(
                "pipeline_not_allowed", f"{spec.name}: {spec.engine} needs a path: source"
            )
        return spec.source
    root = pipelines_root.resolve()
    folder = (root / spec.local_path).resolve()
    if not folder.is_relative_to(root):
        raise OrchestrationError("pipeline_not_allowed", f"{spec.name}: source leaves the pipelines root")
    return str(folder)


# Snakemake decides reruns from its metadata, not from timestamps: on a retry or recovery the work dir is
# restored from the bucket and the inputs staged again, so every mtime is "now" and means nothing.
SNAKEMAKE_RERUN_TRIGGERS = ("code", "input", "params", "software-env")


@dataclass(frozen=True)
class SnakemakeOnBatch:
    """How Snakemake runs its jobs as Batch task jobs (our executor plugin, functions/
    snakemake_executor_plugin_arc): their data under `storage_prefix` (the lineage's work/ prefix, through
    the GCS storage plugin), the task context at `context_uri`, at most `max_jobs` task jobs at once."""

    storage_prefix: str
    context_uri: str
    max_jobs: int
    project: str  # the storage plugin's requests are made as this project (its required setting)
    status_interval_s: float = 10.0  # between two checks of the task jobs (one ListJobs each)


# What a task job shares with the orchestrator: the sources and the software are in the task image at the
# same paths; inputs, outputs and metadata are not shared (they go through storage).
SNAKEMAKE_SHARED_FS = ("sources", "software-deployment")


def snakemake_command(
    source: str, ws: Workspace, cores: int, resuming: bool = False, batch: SnakemakeOnBatch | None = None
) -> list[str]:
    """Snakemake in the run dir; run again there (restored from WORK_DIR), it redoes only what is missing
    or incomplete. --keep-going finishes every independent job, so a failure leaves the most to reuse.
    Resuming, the logger plugin reads the whole DAG's job counts that snakemake_dag_count wrote, and counts
    the jobs Snakemake skips as cached (it reports no event for them).

    With `batch`, each job is a Batch task job and its data lives in storage; Snakemake then runs with the
    run dir as its working directory (the entrypoint starts it there) and paths relative to it, since a
    task job has none of the orchestrator's absolute paths. Without, the jobs run here on `cores`."""
    resumed = ["--logger-arc-dag-counts", str(ws.dag_counts)] if resuming else []
    if batch is None:
        where = ["--directory", str(ws.run_dir), "--configfile", str(ws.local_params)]
        execution = ["--cores", str(max(1, cores))]
    else:
        where = ["--configfile", ws.local_params.relative_to(ws.run_dir).as_posix()]
        execution = [
            "--executor", "arc",
            "--arc-context", batch.context_uri,
            "--jobs", str(max(1, batch.max_jobs)),
            # Snakemake takes whole seconds; the plugin applies a shorter interval itself (the local stack's)
            "--seconds-between-status-checks", str(max(1, round(batch.status_interval_s))),
            "--default-storage-provider", "gcs",
            "--default-storage-prefix", batch.storage_prefix.rstrip("/"),
            "--storage-gcs-project", batch.project,
            "--shared-fs-usage", *SNAKEMAKE_SHARED_FS,
        ]  # fmt: skip
    return [
        "snakemake",
        "--snakefile", f"{source}/Snakefile",
        *where,
        *execution,
        "--keep-going",
        "--rerun-incomplete",
        "--rerun-triggers", *SNAKEMAKE_RERUN_TRIGGERS,
        "--nolock",
        # A failed job's own log (its rule's `log:` files) into the console, so console.log and the run's
        # error message have the job's error, not only Snakemake's summary of it.
        "--show-failed-logs",
        # Job events into the run's task ledger (functions/snakemake_logger_plugin_arc), beside the console.
        "--logger", "arc", *resumed,
    ]  # fmt: skip


def snakemake_dag_count(source: str, ws: Workspace, batch: SnakemakeOnBatch | None = None) -> list[str]:
    """A dry run of every job of the DAG (--forceall), whose job counts per rule the logger plugin writes
    to ws.dag_counts (and nothing to the ledger: it is a dry run)."""
    argv = snakemake_command(source, ws, 1, batch=batch)
    return [*argv, "--dry-run", "--forceall", "--logger-arc-dag-counts", str(ws.dag_counts)]


def nextflow_env(env: JobEnv, session_id: str | None) -> dict[str, str]:
    """Environment for `nextflow run`: the resume cache in the bucket, so -resume works on a fresh VM."""
    out = {"NXF_ANSI_LOG": "false"}
    if env.cache_dir:
        out["NXF_CLOUDCACHE_PATH"] = env.cache_dir
    if session_id:  # a fresh VM has no .nextflow/history: resume by id from the cloud cache alone
        out["NXF_IGNORE_RESUME_HISTORY"] = "true"
    return out


def nextflow_command(
    env: JobEnv,
    source: str,
    ws: Workspace,
    profile: str | None,
    session_id: str | None,
    *,
    tower: str | None = None,
) -> list[str]:
    """`nextflow run` (through `env`, which sets its environment), resuming `session_id` when given, and
    reporting to `tower` (the relay's URL; its token is TOWER_ACCESS_TOKEN, never on the command line)."""
    argv = [
        "nextflow", "run", source,
        "-r", env.pipeline_version,
        "-c", str(ws.rendered_config),
        "-params-file", str(ws.params_file),
        "-work-dir", env.work_dir,
        "-with-trace", str(ws.trace),
        "-with-timeline", str(ws.timeline),
        "-with-report", str(ws.report),
    ]  # fmt: skip
    if profile:
        argv += ["-profile", profile]
    if session_id:
        argv += ["-resume", session_id]
    if tower:
        argv += ["-with-tower", tower]
    return ["env", *(f"{k}={v}" for k, v in nextflow_env(env, session_id).items()), *argv]


# --- Nextflow sessions (resume) ---------------------------------------------------------------------------

SESSION_OBJECT = "arc-session.json"  # in CACHE_DIR: the lineage's Nextflow session id
_SESSION_LINE = re.compile(r"Session (?:uuid|UUID): ([0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12})")
_SESSION_ID = re.compile(r"^[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}$")


def session_uri(env: JobEnv) -> str | None:
    """Where the lineage's Nextflow session id is kept (outside work/), or None without a CACHE_DIR."""
    return f"{env.cache_dir.rstrip('/')}/{SESSION_OBJECT}" if env.cache_dir else None


def session_from_log(text: str) -> str | None:
    """The session id Nextflow writes to .nextflow.log as it starts (`Session uuid: ...`)."""
    found = _SESSION_LINE.search(text)
    return found.group(1).lower() if found else None


def session_record(session_id: str, run_id: str, now: str) -> str:
    """The JSON kept at session_uri."""
    return json.dumps({"session_id": session_id, "run_id": run_id, "recorded_at": now}) + "\n"


def session_from_record(text: str) -> str | None:
    """The session id of a record written by session_record; None when it is unreadable."""
    try:
        value = json.loads(text).get("session_id")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, str) and _SESSION_ID.match(value) else None


def resume_session(env: JobEnv, persisted: str | None) -> str | None:
    """The session to resume: a recovery resumes its parent's (PARENT_SESSION_ID, else the lineage's
    record); a Batch retry of the task resumes the one its first attempt started. None: start afresh."""
    if env.is_recovery:
        return env.parent_session_id or persisted
    if env.retry_attempt > 0:
        return persisted
    return None


# --- Inputs (Snakemake stages the samplesheet's gs:// files to local disk) -------------------------------


def local_input_path(uri: str, inputs_dir: Path) -> Path:
    """Where gs://bucket/name is staged: inputs/<bucket>/<name>; names that could escape are refused."""
    bucket, name = split_gs_uri(uri)
    parts = name.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise OrchestrationError("invalid_input", f"cannot stage {uri}: not a plain object name")
    return inputs_dir.joinpath(bucket, *parts)


def localize_rows(rows: Sequence[Sequence[str]], staged: Mapping[str, Path]) -> list[list[str]]:
    """The samplesheet's rows with every staged gs:// value replaced by its local path."""
    return [[str(staged[cell]) if cell in staged else cell for cell in row] for row in rows]


def gs_cells(rows: Sequence[Sequence[str]], header: Sequence[str]) -> list[tuple[str, int, str]]:
    """(uri, line, column) for every gs:// value in the data rows, first occurrence of each uri only."""
    seen: set[str] = set()
    out: list[tuple[str, int, str]] = []
    for line, row in enumerate(rows, start=2):
        for col, cell in enumerate(row):
            value = cell.strip()
            if value.startswith("gs://") and value not in seen:
                seen.add(value)
                out.append((value, line, header[col] if col < len(header) else f"column {col + 1}"))
    return out

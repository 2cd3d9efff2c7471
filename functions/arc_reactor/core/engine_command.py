"""The orchestrator's decisions, pure: its environment, its local workspace, the engine command (Snakemake
or Nextflow, with resume), the Nextflow config render, and how a run's outcome is reported.

services/orchestrate.py does the I/O around these; orchestrator/entrypoint.sh only sequences it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from arc_reactor.core.labels import APP, sanitize_label_key, sanitize_label_value
from arc_reactor.core.layout import split_gs_uri
from arc_reactor.core.registry import PipelineSpec, Registry
from arc_reactor.errors import PermanentError

ENGINES = ("snakemake", "nextflow")
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"", "0", "false", "no", "off"})
MAX_ERROR_MESSAGE = 2000


class OrchestrationError(PermanentError):
    """The orchestrator cannot go on; `code` becomes the run's error_code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class OrchestratorEnv:
    """The job's environment, as the Batch job spec (core/jobspec.py) sets it."""

    run_id: str
    pipeline: str
    pipeline_version: str
    engine: str
    params_uri: str
    config_uri: str = ""
    work_dir: str = ""
    is_recovery: bool = False
    parent_session_id: str = ""
    cache_dir: str = ""
    logs_dir: str = ""
    results_dir: str = ""
    retry_attempt: int = 0
    profile: str = ""
    labels_json: str = ""

    @property
    def resume(self) -> bool:
        """Resume instead of starting over: a recovery run, or Batch retrying this task (e.g. spot)."""
        return self.is_recovery or self.retry_attempt > 0


def _flag(name: str, value: str) -> bool:
    low = value.strip().lower()
    if low in _TRUE or low in _FALSE:
        return low in _TRUE
    raise OrchestrationError("bad_environment", f"{name} must be true or false, not {value!r}")


def _gs(name: str, value: str, required: bool = False) -> str:
    if not value:
        if required:
            raise OrchestrationError("bad_environment", f"{name} is required")
        return ""
    try:
        split_gs_uri(value)
    except ValueError as exc:
        raise OrchestrationError("bad_environment", f"{name}: {exc}") from exc
    return value


def env_from(environ: Mapping[str, str]) -> OrchestratorEnv:
    """Read and check the orchestrator's environment; the error names the variable."""

    def get(key: str) -> str:
        return environ.get(key, "").strip()

    missing = [k for k in ("RUN_ID", "PIPELINE", "PIPELINE_VERSION", "ENGINE") if not get(k)]
    if missing:
        raise OrchestrationError("bad_environment", f"missing environment variable(s): {', '.join(missing)}")
    engine = get("ENGINE").lower()
    if engine not in ENGINES:
        raise OrchestrationError("bad_environment", f"ENGINE must be {' or '.join(ENGINES)}, not {engine!r}")
    attempt = get("BATCH_TASK_RETRY_ATTEMPT") or "0"
    if not attempt.isdigit():
        raise OrchestrationError("bad_environment", f"BATCH_TASK_RETRY_ATTEMPT is not a number: {attempt!r}")
    return OrchestratorEnv(
        run_id=get("RUN_ID"),
        pipeline=get("PIPELINE"),
        pipeline_version=get("PIPELINE_VERSION"),
        engine=engine,
        params_uri=_gs("PARAMS_GCS_PATH", get("PARAMS_GCS_PATH"), required=True),
        config_uri=_gs("CONFIG_GCS_PATH", get("CONFIG_GCS_PATH")),
        work_dir=_gs("WORK_DIR", get("WORK_DIR"), required=engine == "nextflow"),
        is_recovery=_flag("IS_RECOVERY", get("IS_RECOVERY")),
        parent_session_id=get("PARENT_SESSION_ID"),
        cache_dir=_gs("CACHE_DIR", get("CACHE_DIR")),
        logs_dir=_gs("LOGS_DIR", get("LOGS_DIR")),
        results_dir=_gs("RESULTS_DIR", get("RESULTS_DIR")),
        retry_attempt=int(attempt),
        profile=get("PROFILE"),
        labels_json=get("ARC_RUN_LABELS"),
    )


@dataclass(frozen=True)
class Workspace:
    """The orchestrator's local folder (a fresh mktemp dir per task attempt) and what lives where in it."""

    root: Path
    config_dir: Path
    params_file: Path  # params.yaml as downloaded
    user_config: Path  # the user's nextflow.config as downloaded
    rendered_config: Path  # ours, rendered from the template
    local_params: Path  # snakemake: params with input/outdir pointing at local paths
    inputs_dir: Path
    samplesheet: Path  # the localized samplesheet
    run_dir: Path  # the engine's launch dir (and snakemake's --directory)
    results_dir: Path  # snakemake's outdir
    logs_dir: Path
    console_log: Path
    trace: Path
    timeline: Path
    report: Path
    error_file: Path  # why a step before the engine failed (JSON)

    @classmethod
    def at(cls, root: Path) -> Workspace:
        """The layout under `root`."""
        config, inputs, logs = root / "config", root / "inputs", root / "logs"
        return cls(
            root=root, config_dir=config, params_file=config / "params.yaml",
            user_config=config / "nextflow.config", rendered_config=config / "arc.config",
            local_params=config / "params.local.yaml", inputs_dir=inputs,
            samplesheet=inputs / "samplesheet.csv", run_dir=root / "run", results_dir=root / "results",
            logs_dir=logs, console_log=logs / "console.log", trace=logs / "trace.txt",
            timeline=logs / "timeline.html", report=logs / "report.html", error_file=root / "error.json",
        )  # fmt: skip


def pipeline_spec(registry: Registry, env: OrchestratorEnv) -> PipelineSpec:
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
        if spec.engine == "snakemake":
            raise OrchestrationError("pipeline_not_allowed", f"{spec.name}: snakemake needs a path: source")
        return spec.source
    root = pipelines_root.resolve()
    folder = (root / spec.local_path).resolve()
    if not folder.is_relative_to(root):
        raise OrchestrationError("pipeline_not_allowed", f"{spec.name}: source leaves the pipelines root")
    return str(folder)


def snakemake_command(source: str, ws: Workspace, cores: int) -> list[str]:
    """Snakemake in the workspace's run dir; run again there, it redoes only incomplete or missing outputs."""
    return [
        "snakemake",
        "--snakefile", f"{source}/Snakefile",
        "--directory", str(ws.run_dir),
        "--configfile", str(ws.local_params),
        "--cores", str(max(1, cores)),
        "--rerun-incomplete",
        "--nolock",
    ]  # fmt: skip


def nextflow_command(env: OrchestratorEnv, source: str, ws: Workspace, profile: str | None) -> list[str]:
    """`nextflow run`, resuming the parent's session on a recovery or a Batch retry of this task."""
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
    if env.resume:
        argv += ["-resume", env.parent_session_id] if env.parent_session_id else ["-resume"]
    if env.cache_dir:  # the resume cache lives in the bucket, so -resume works on a fresh VM
        argv = ["env", f"NXF_CLOUDCACHE_PATH={env.cache_dir}", *argv]
    return argv


def engine_command(
    env: OrchestratorEnv, spec: PipelineSpec, source: str, ws: Workspace, cores: int
) -> list[str]:
    """The argv the entrypoint runs for this run's engine."""
    if env.engine == "snakemake":
        return snakemake_command(source, ws, cores)
    return nextflow_command(env, source, ws, env.profile or spec.default_profile)


# --- Nextflow config template -------------------------------------------------------------------------

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")
_ANY_BRACES = re.compile(r"\{\{.*?\}\}", re.DOTALL)


def groovy_string(value: str) -> str:
    """A Groovy single-quoted string literal: no interpolation, quotes and backslashes escaped."""
    escaped = value.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n").replace("\r", "\\r")
    return f"'{escaped}'"


def groovy_map(values: Mapping[str, str]) -> str:
    """A Groovy map literal of strings, e.g. `['app': 'arc-reactor']`."""
    if not values:
        return "[:]"
    return "[" + ", ".join(f"{groovy_string(k)}: {groovy_string(v)}" for k, v in values.items()) + "]"


def render_template(template: str, values: Mapping[str, str]) -> str:
    """Fill `{{NAME}}` placeholders with Groovy literals; any placeholder left unfilled is an error."""
    names = set(_PLACEHOLDER.findall(template))
    missing = sorted(names - set(values))
    if missing:
        raise OrchestrationError("config_template", f"no value for placeholder(s): {', '.join(missing)}")
    malformed = [m for m in _ANY_BRACES.findall(template) if not _PLACEHOLDER.fullmatch(m)]
    if malformed:
        raise OrchestrationError("config_template", f"malformed placeholder(s): {', '.join(malformed)}")
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def resource_labels(env: OrchestratorEnv) -> dict[str, str]:
    """Labels for every task job: the job's own (ARC_RUN_LABELS) with app and run-id always set."""
    labels: dict[str, str] = {}
    if env.labels_json:
        try:
            raw = json.loads(env.labels_json)
        except json.JSONDecodeError as exc:
            raise OrchestrationError("bad_environment", f"ARC_RUN_LABELS is not JSON: {exc}") from exc
        if not isinstance(raw, dict):
            raise OrchestrationError("bad_environment", "ARC_RUN_LABELS must be a JSON object")
        labels = {sanitize_label_key(str(k)): sanitize_label_value(str(v)) for k, v in raw.items()}
    return {**labels, "app": APP, "run-id": sanitize_label_value(env.run_id)}


def template_values(
    env: OrchestratorEnv, ws: Workspace, python: str, update_status: str, user_config: Path | None
) -> dict[str, str]:
    """The Groovy literal for every placeholder of orchestrator/nextflow.config.template."""
    return {
        "RUN_ID": groovy_string(env.run_id),
        "PIPELINE": groovy_string(env.pipeline),
        "PYTHON": groovy_string(python),
        "UPDATE_STATUS": groovy_string(update_status),
        "RESOURCE_LABELS": groovy_map(resource_labels(env)),
        "TRACE_FILE": groovy_string(str(ws.trace)),
        "TIMELINE_FILE": groovy_string(str(ws.timeline)),
        "REPORT_FILE": groovy_string(str(ws.report)),
        # nf-core's idiom for an optional include: /dev/null when there is nothing to include
        "USER_CONFIG": groovy_string(str(user_config) if user_config else "/dev/null"),
    }


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


# --- Outcome --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Failure:
    """Why a run failed, for the run row."""

    code: str
    message: str
    task: str | None = None


_TASK_PATTERNS = (re.compile(r"Error executing process > '([^']+)'"), re.compile(r"Error in rule (\S+?):"))
# The most telling line of a failed run's log, best first: an exception with its message (the generic
# wrappers, e.g. Snakemake's closing "WorkflowError:", carry none on their line), then the engine's own
# error lines.
_MESSAGE_PATTERNS = (
    re.compile(r"^\s*[A-Za-z_][\w.]*(?:Error|Exception): +\S.*$"),
    re.compile(r"^\s*ERROR ~ .*\S$"),
    re.compile(r"^\s*Error in rule .*$"),
)


def failure_from_log(engine: str, exit_code: int, text: str) -> Failure:
    """Explain an engine failure from the end of its log: the failing task and the most telling line."""
    lines = [ln.rstrip() for ln in text.splitlines() if ln.strip()]
    task = next((found[-1] for p in _TASK_PATTERNS if (found := p.findall(text))), None)
    detail = ""
    for i, ln in enumerate(lines[:-1]):
        if ln.strip() == "Caused by:":
            detail = lines[i + 1].strip()  # Nextflow puts the real cause under "Caused by:"
    for pattern in _MESSAGE_PATTERNS:
        if detail:
            break
        detail = next((ln.strip() for ln in reversed(lines) if pattern.match(ln)), "")
    detail = detail or (lines[-1].strip() if lines else "no output")
    message = f"{engine} exited with code {exit_code}: {detail}"
    return Failure("pipeline_error", message[:MAX_ERROR_MESSAGE], task)


def snakemake_trace(records: Sequence[tuple[str, Mapping[str, object]]]) -> str:
    """A trace like Nextflow's trace.txt (TSV, one row per output) from Snakemake's metadata records."""
    rows = ["output\trule\tstatus\tstart\tcomplete\tduration_s"]

    def when(meta: Mapping[str, object], key: str) -> float | None:
        value = meta.get(key)
        return float(value) if isinstance(value, int | float) else None

    for output, meta in sorted(records, key=lambda r: (when(r[1], "starttime") or 0.0, r[0])):
        start, end = when(meta, "starttime"), when(meta, "endtime")
        iso = [datetime.fromtimestamp(t, UTC).isoformat() if t is not None else "" for t in (start, end)]
        duration = f"{max(0.0, end - start):.3f}" if start is not None and end is not None else ""
        status = "INCOMPLETE" if meta.get("incomplete") else "COMPLETED"
        rows.append("\t".join([output, str(meta.get("rule", "")), status, *iso, duration]))
    return "\n".join(rows) + "\n"


def outcome_args(exit_code: int, failure: Failure | None, now: str) -> list[str]:
    """The update_status.py arguments (after the run id) that report how the run ended."""
    if exit_code == 0 and failure is None:
        return ["completed", "--completed_at", now]
    args = ["failed", "--failed_at", now, "--exit_code", str(exit_code if exit_code else 1)]
    if failure is not None:
        args += ["--error_code", failure.code, "--error_message", failure.message[:MAX_ERROR_MESSAGE]]
        if failure.task:
            args += ["--error_task", failure.task]
    return args

"""How a run ended, for its row (pure): the failure an engine's log explains, the update_status.py arguments
that report the outcome, and a trace.txt for Snakemake runs like Nextflow's."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from arc_reactor.core.status import MAX_ERROR_TASK, clean_message

MAX_ERROR_MESSAGE = 2000


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
        # Text from the engine's output goes in `--name=value` form with control characters removed: a NUL
        # cannot split it into extra arguments and a value starting with `--` cannot read as an option.
        args += [
            f"--error_code={clean_message(failure.code, 64)}",
            f"--error_message={clean_message(failure.message, MAX_ERROR_MESSAGE)}",
        ]
        if failure.task:
            args.append(f"--error_task={clean_message(failure.task, MAX_ERROR_TASK)}")
    return args

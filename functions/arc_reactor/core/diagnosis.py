"""Why a run failed, from its task ledger (pure): the first task attempt that failed, whether the
infrastructure or the task itself failed it, its last log lines and work dir, and a hint for the common
causes, so that a user need not open five consoles to find out.

The first failure is the one that completed earliest (a run stopped by one failure may report others that
were cut short after it). A task the infrastructure failed (Batch's reserved exit codes 50001-50006, a
preemption, or Nextflow's 2147483647 for a lost VM) was retried if it could be; the hint says so.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from arc_reactor.core.batch_policy import NEXTFLOW_UNKNOWN_EXIT_STATUS, exit_code_cause

# (pattern on the error tail, or an exit code, hint), first match wins.
_HINTS: tuple[tuple[re.Pattern[str] | int, str], ...] = (
    (137, "killed with exit 137: usually out of memory; give the process more memory (process.memory)"),
    (
        re.compile(r"out of memory|OutOfMemory|MemoryError|oom-kill|Killed", re.IGNORECASE),
        "out of memory: give the process more memory (process.memory)",
    ),
    (
        re.compile(
            r"permission denied|AccessDenied|403 Forbidden|does not have storage\.objects", re.IGNORECASE
        ),
        "permission denied: the task's service account may not read or write a location "
        "(input buckets need input_buckets in Terraform)",
    ),
    (
        re.compile(r"quota|QUOTA_EXCEEDED|RESOURCE_EXHAUSTED", re.IGNORECASE),
        "a quota ran out: see the region's Batch and Compute Engine quotas (docs/deploy.md)",
    ),
    (
        re.compile(
            r"no such file|not found|does not exist|FileNotFoundError|MissingInputException", re.IGNORECASE
        ),
        "a file is missing: check the samplesheet's paths and that every input exists",
    ),
    (140, "killed with exit 140: usually past its time limit; give the process more time (process.time)"),
)


def _infrastructure(task: Mapping[str, Any]) -> str | None:
    code = task.get("exit_code")
    if task.get("preempted"):
        return "spot_preempted"
    if code == NEXTFLOW_UNKNOWN_EXIT_STATUS:
        return "vm_lost"
    return exit_code_cause(code) if isinstance(code, int) else None


def hint_for(task: Mapping[str, Any]) -> str | None:
    """A hint for the common causes of a task's failure, or None."""
    cause = _infrastructure(task)
    if cause is not None:
        return (
            f"the infrastructure failed it ({cause}), not the task: such failures are retried; "
            "if they repeat, try on-demand VMs (batch_spot = false) or another zone"
        )
    tail, code = str(task.get("error_tail") or ""), task.get("exit_code")
    for match, hint in _HINTS:
        if (isinstance(match, int) and code == match) or (not isinstance(match, int) and match.search(tail)):
            return hint
    return None


def _completion_order(task: Mapping[str, Any]) -> tuple[bool, float, int]:
    """Earliest completed first; attempts with no completion time last, in ledger order."""
    done = task.get("completed_at")
    return (done is None, done.timestamp() if isinstance(done, datetime) else 0.0, int(task.get("id") or 0))


def diagnose(run: Mapping[str, Any], failed_tasks: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The diagnosis of a run: its error, and its first failed task with the hint (None when none failed)."""
    first = min(failed_tasks, key=_completion_order, default=None)
    task = None
    if first is not None:
        task = {
            "task_id": first.get("task_id"),
            "process": first.get("process"),
            "name": first.get("name"),
            "tag": first.get("tag"),
            "attempt": first.get("attempt"),
            "exit_code": first.get("exit_code"),
            "infrastructure": _infrastructure(first),
            "work_dir": first.get("work_dir"),
            "native_id": first.get("native_id"),
            "error_tail": first.get("error_tail"),
            "hint": hint_for(first),
        }
    return {
        "run_id": run.get("id"),
        "status": run.get("status"),
        "error_code": run.get("error_code"),
        "error_message": run.get("error_message"),
        "error_task": run.get("error_task"),
        "failed_tasks": len(failed_tasks),
        "first_failed_task": task,
    }

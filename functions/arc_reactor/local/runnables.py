"""Any Batch job's runnables, run by the local Batch service as one local process (there is no Docker here).

The orchestrator's own job runs its entrypoint (local/stack.py); every other job (a task job that an
engine's executor creates, for example) runs here. As on a Batch VM, the task's runnables run one after
another, each with the task's environment plus its own; a runnable that fails ends the task with its exit
code, unless it has `ignore_exit_status`; `always_run` runnables run even after a failure; `background`
ones run beside the others and are stopped when the last foreground one ends; a barrier is a no-op (one
task per job). What each kind means here:

- script: its `text` (written to a file, run by its #! line or /bin/sh, as Batch does) or its `path`;
- container: the image is recorded in the task's log, never pulled; `entrypoint` and `commands` run as a
  local command (`entrypoint commands...`, or `commands` alone); one with neither cannot run here (only the
  image knows its command), and the task fails saying so. Volumes and options are recorded, not applied.

A supervisor process (`python -m arc_reactor.local.supervisor STEPS.json`) runs the steps: it leads the
task's process group, so a cancel or a fault kills the whole task like a VM that goes away."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from google.cloud import batch_v1

from arc_reactor.local.batch_state import Launcher, attempt_process, spec_env
from arc_reactor.local.supervisor import Step


class UnsupportedRunnable(ValueError):
    """A runnable the local service cannot run (the task fails with this message)."""


def steps(job: batch_v1.Job) -> list[Step]:
    """The job's runnables as local steps, in order; UnsupportedRunnable for one that cannot run here."""
    found: list[Step] = []
    for index, runnable in enumerate(job.task_groups[0].task_spec.runnables):
        kind = batch_v1.Runnable.pb(runnable).WhichOneof("executable")
        label = runnable.display_name or f"runnable {index} ({kind})"
        common: dict[str, Any] = {
            "label": label,
            "env": dict(runnable.environment.variables),
            "ignore_exit_status": runnable.ignore_exit_status,
            "always_run": runnable.always_run,
            "background": runnable.background,
        }
        if kind == "barrier":
            continue
        if kind == "script":
            if runnable.script.text:
                found.append(Step(argv=[], script=runnable.script.text, **common))
            elif runnable.script.path:
                found.append(Step(argv=["/bin/sh", runnable.script.path], **common))
            else:
                raise UnsupportedRunnable(f"{label}: a script runnable needs a text or a path")
        elif kind == "container":
            c = runnable.container
            argv = ([c.entrypoint] if c.entrypoint else []) + list(c.commands)
            if not argv:
                raise UnsupportedRunnable(
                    f"{label}: container {c.image_uri} has no entrypoint or commands; the local Batch "
                    "service runs a container's commands as a local process and cannot know the image's own"
                )
            recorded = [f"image {c.image_uri} (not pulled: run as a local process)"]
            if c.volumes:
                recorded.append(f"volumes {list(c.volumes)} not mounted")
            if c.options:
                recorded.append(f"options {c.options!r} not applied")
            found.append(Step(argv=argv, note="; ".join(recorded), **common))
        else:
            what = kind or "an empty"
            raise UnsupportedRunnable(f"{label}: {what} runnable cannot run on the local service")
    if not any(not s.background for s in found):
        raise UnsupportedRunnable("the task has no runnable to run in the foreground")
    return found


def runnable_launcher(jobs_dir: Path, base_env: Mapping[str, str] | None = None) -> Launcher:
    """A launcher for any job: writes the attempt's steps next to its log (`<jobs_dir>/<job id>/`) and
    starts the supervisor in a session of its own."""

    def launch(job: batch_v1.Job, env: dict[str, str]) -> subprocess.Popen[bytes]:
        job_id = job.name.rsplit("/", 1)[-1]
        attempt = env.get("BATCH_TASK_RETRY_ATTEMPT", "0")
        job_dir = jobs_dir / job_id
        work = job_dir / f"attempt-{attempt}"
        work.mkdir(parents=True, exist_ok=True)
        task_env = spec_env(job, int(attempt))
        spec_file = job_dir / f"attempt-{attempt}.steps.json"
        spec_file.write_text(json.dumps({"steps": [asdict(s) for s in steps(job)]}))
        full_env = {**(os.environ if base_env is None else base_env), **task_env}
        argv = [sys.executable, "-m", "arc_reactor.local.supervisor", str(spec_file)]
        return attempt_process(argv, job_dir / f"attempt-{attempt}.log", cwd=work, env=full_env)

    return launch

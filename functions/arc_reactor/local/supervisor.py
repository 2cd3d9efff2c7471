"""The supervisor of a local task (`python -m arc_reactor.local.supervisor STEPS.json`): it runs the steps
that local/runnables.py wrote for one task attempt, as Batch runs a task's runnables, and leads the task's
process group, so a cancel or a fault kills the whole task like a VM that goes away. Standard library only:
it starts once per task attempt, and Batch's client library would cost it half a second."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Step:
    """One runnable, ready to run locally."""

    label: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    ignore_exit_status: bool = False
    always_run: bool = False
    background: bool = False
    script: str | None = None  # a script runnable's text, written to a file that argv runs
    note: str = ""  # what was recorded rather than applied (a container's image, volumes, options)


def _script_argv(text: str, path: str) -> list[str]:
    return [path] if text.startswith("#!") else ["/bin/sh", path]


def _say(text: str) -> None:
    """A line of the supervisor's own in the task's log, before the output of what it runs."""
    sys.stdout.write(f"[local batch] {text}\n")
    sys.stdout.flush()


def run_steps(plan: Mapping[str, Any], workdir: Path) -> int:
    """Run the steps as Batch runs a task's runnables; the task's exit code."""
    background: list[subprocess.Popen[bytes]] = []
    failed = 0
    for number, raw in enumerate(plan["steps"]):
        step = Step(**raw)
        if failed and not step.always_run:
            continue
        argv = step.argv
        if step.script is not None:
            path = workdir / f"runnable-{number}.sh"
            path.write_text(step.script)
            path.chmod(path.stat().st_mode | stat.S_IXUSR)
            argv = _script_argv(step.script, str(path))
        _say(f"{step.label}: {' '.join(argv)}" + (f" ({step.note})" if step.note else ""))
        env = {**os.environ, **step.env}
        try:
            proc = subprocess.Popen(argv, env=env, cwd=workdir)
        except OSError as exc:
            _say(f"{step.label}: cannot start: {exc}")
            code = 127
        else:
            if step.background:
                background.append(proc)
                continue
            code = proc.wait()
        if code != 0 and not step.ignore_exit_status and not failed:
            _say(f"{step.label} exited with code {code}")
            failed = code if code > 0 else 128 - code  # killed by a signal: 128 + its number, as a shell says
    for proc in background:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
    return failed


def main(argv: Sequence[str] | None = None) -> int:
    """The supervisor: `python -m arc_reactor.local.supervisor STEPS.json`."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        sys.stderr.write("usage: python -m arc_reactor.local.supervisor STEPS.json\n")
        return 2
    plan = json.loads(Path(args[0]).read_text())
    return run_steps(plan, Path.cwd())


if __name__ == "__main__":
    raise SystemExit(main())

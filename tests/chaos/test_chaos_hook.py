"""Hook injection: hostile text in the engine's log travels the real path to the run row: failure_from_log
explains the failure, outcome_args builds the arguments, they cross the NUL-separated wire entrypoint.sh
reads with `mapfile -d ''`, and the real update_status.py applies them. Nothing the text says may choose
a stored field: the status, exit code, error code, metrics and session stay what the orchestrator decided,
and the stored message carries no control characters."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from flow import run_row
from tally import Tally, Trial, assert_clean

pytestmark = [pytest.mark.chaos, pytest.mark.integration]

ROOT = Path(__file__).resolve().parents[2]
MESSAGES = {
    "nul-smuggled-options": "boom\x00--exit_code\x00 0\x00--error_code\x00forged",
    "starts-with-double-dash": "--help",
    "option-with-value": "--exit_code=0",
    "short-option": "-h",
    "lone-double-dash": "--",
    "metrics-option": '--metrics={"cost_usd": 0}',
    "session-option": "--session_id=evil",
    "status-word": "completed --status completed",
    "newline-fake-log": 'ok\n{"severity": "INFO", "message": "run completed"}\n--error_code=forged',
    "ansi-escapes": "\x1b[2J\x1b[31mred\x1b[0m\x07\x08",
    "shell-substitution": "$(touch /tmp/arc-pwned) `id` ; rm -rf / && echo",
    "bidi-override": "fail \u202eexe.txt",
    "broken-utf8": b"bad \xff\xfe bytes".decode("utf-8", "replace"),
    "carriage-returns": "done\rFAKE: all good\r\n",
    "huge": "x" * 1_000_000,
}


def _update_status():
    sys.path.insert(0, str(ROOT / "orchestrator"))
    try:
        import update_status
    finally:
        sys.path.remove(str(ROOT / "orchestrator"))
    return update_status


def _controls(text: str) -> bool:
    return any((ord(c) < 32 and c not in "\t\n") or ord(c) == 127 for c in text)


def inject(engine, name: str, hostile: str) -> Trial:
    from arc_reactor.adapters import runs_repo
    from arc_reactor.core.run_outcome import failure_from_log, outcome_args
    from arc_reactor.core.status import MAX_ERROR_TASK, RunStatus, clean_message

    run_id = f"r0hook{abs(hash(name)) % 10**12:012d}"
    runs_repo.insert_run(engine, run_row(run_id))
    runs_repo.transition(engine, run_id, RunStatus.SUBMITTED, source="test")
    runs_repo.transition(engine, run_id, RunStatus.RUNNING, source="test")
    log = f"Building DAG of jobs...\nError in rule stats:\n    jobid: 3\nValueError: {hostile}\n"
    failure = failure_from_log("snakemake", 1, log)
    wire = b"".join(
        a.encode("utf-8", "surrogatepass") + b"\0"
        for a in outcome_args(1, failure, "2026-01-01T00:00:00+00:00")
    )
    argv = [a.decode("utf-8", "surrogatepass") for a in wire.split(b"\0")[:-1]]  # what mapfile -d '' gives
    code = _update_status().main([run_id, *argv], engine=engine, attempts=1, sleep=lambda _: None)
    run = runs_repo.get_run(engine, run_id)
    if code != 0:
        return Trial(
            "hook", name, "crashed", detail=f"update_status exited {code}; the run stays {run.status}"
        )
    wanted = {
        "status": "failed",
        "exit_code": 1,
        "error_code": failure.code,
        "error_task": clean_message(failure.task, MAX_ERROR_TASK) if failure.task else None,
        "metrics": None,
        "session_id": None,
    }
    forged = {k: run[k] for k, v in wanted.items() if run[k] != v}
    message = run.error_message or ""
    if _controls(message):
        forged["error_message"] = "control characters stored"
    if forged:
        return Trial("hook", name, "accepted", forged=True, detail=repr(forged)[:200])
    return Trial("hook", name, "accepted")


def test_engine_text_cannot_forge_or_break_the_run_outcome(engine, tally: Tally):
    trials = [tally.record(inject(engine, name, text)) for name, text in MESSAGES.items()]
    assert_clean(trials)

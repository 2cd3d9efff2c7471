"""Batch's own limits and reserved exit codes, and the policy we set on top of them: one place for each
number, so the job spec, the status reader, the Nextflow config, the sweeper and the local Batch service
cannot drift apart (pure, no I/O).

Batch-reserved exit codes (https://cloud.google.com/batch/docs/troubleshooting#reserved-exit-codes) mean the
VM, not the pipeline, failed: 50001 spot preemption, 50002 VM lost (no heartbeat), 50003 VM rebooted, 50004
VM unresponsive, 50005 the task ran past its max_run_duration, 50006 VM recreated.
"""

from __future__ import annotations

from datetime import timedelta

RESERVED_EXIT_CODES: dict[int, str] = {
    50001: "spot_preempted",
    50002: "vm_lost",
    50003: "vm_rebooted",
    50004: "vm_unresponsive",
    50005: "max_runtime_exceeded",
    50006: "vm_recreated",
}
SPOT_PREEMPTED_EXIT_CODE = 50001
MAX_RUN_EXIT_CODE = 50005

# The orchestrator ("head") job: each attempt may run this long, and Batch retries it this many times on
# an infrastructure exit code. 50005 is not retried: another attempt would only run another 7 days.
MAX_RUN_DURATION = timedelta(days=7)
MAX_RETRY_COUNT = 2
ORCHESTRATOR_RETRIED_EXIT_CODES: tuple[int, ...] = tuple(
    code for code in RESERVED_EXIT_CODES if code != MAX_RUN_EXIT_CODE
)
# The longest a run can be RUNNING while Batch still says so: every attempt used its whole max_run_duration.
LONGEST_RUN = MAX_RUN_DURATION * (MAX_RETRY_COUNT + 1)

# Batch fails a job that stays QUEUED this long (no VM could be had); the sweeper applies it too.
MAX_QUEUED = timedelta(days=2)

# Nextflow's task jobs are retried on every reserved code, 50005 included: nf-core style pipelines grow
# `time` with task.attempt, so a retry gets more time.
TASK_RETRIED_EXIT_CODES: tuple[int, ...] = tuple(RESERVED_EXIT_CODES)


def exit_code_cause(code: int) -> str | None:
    """The infrastructure cause of a reserved exit code (e.g. "spot_preempted"), None for any other code."""
    return RESERVED_EXIT_CODES.get(code)

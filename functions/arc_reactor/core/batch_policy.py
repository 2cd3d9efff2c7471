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

# What Nextflow's google-batch executor reports as a task's exit status when the infrastructure failed it.
# In Nextflow 24.04.4 (plugins/nf-google, GoogleBatchTaskHandler.checkIfCompleted) a finished task's exit
# status is 50001 only when its last status event says "due to Spot VM preemption with exit code 50001";
# otherwise it is read from the task's .exitcode file, and a task whose VM was lost, rebooted, unresponsive
# or recreated (50002-50006), or that ran past its max run duration (50005), never wrote that file:
# Nextflow then reports Integer.MAX_VALUE ("unable to retrieve the exit code").
NEXTFLOW_UNKNOWN_EXIT_STATUS = 2**31 - 1  # Java's Integer.MAX_VALUE
# Nextflow's task jobs are retried on all of these: the reserved codes (50001 as 24.04.4 reports it, the
# others for a Nextflow that reports Batch's own code) and the unknown status. 50005 is retried too:
# nf-core style pipelines grow `time` with task.attempt, so a retry gets more time.
TASK_RETRIED_EXIT_STATUSES: tuple[int, ...] = (*RESERVED_EXIT_CODES, NEXTFLOW_UNKNOWN_EXIT_STATUS)


def exit_code_cause(code: int) -> str | None:
    """The infrastructure cause of a reserved exit code (e.g. "spot_preempted"), None for any other code."""
    return RESERVED_EXIT_CODES.get(code)

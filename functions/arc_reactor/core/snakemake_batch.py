"""Snakemake's jobs as Batch task jobs (pure: builds google.cloud.batch_v1 proto-plus objects, no I/O).

Our executor plugin (functions/snakemake_executor_plugin_arc) turns each job Snakemake schedules into one
Batch job built here, the way Nextflow's google-batch executor does for a process:

- one container runnable of our task image (the orchestrator's image: Snakemake, the storage plugin, the
  pipelines and this package, at the same paths as in the orchestrator), whose command fetches the run's
  task context (the params and samplesheet the Snakefile reads as it is parsed) and then runs Snakemake's
  own job command in a fresh directory; inputs and outputs go through the GCS storage plugin, under the
  lineage's work/ prefix;
- the run's labels (`app`, `run-id`, `pipeline`, `user-email`, and the user's) plus `snakemake-rule`, so a
  cancel, the sweeper and cost reach every task job;
- the deployment's task policy (the same settings the Nextflow config gets, core/nextflow_config.py):
  service account, network, Spot, boot disk, limits. Nothing is left to a default of the plugin or of
  Batch that we did not choose: every value below is set, and docs/snakemake.md lists them.

Retries: Batch retries a task that the infrastructure failed (a reserved exit code, e.g. 50001 for a Spot
preemption) up to max_spot_attempts times; the rule's own non-zero exit fails the job at once (Snakemake
then reports the rule failed; a recovery re-runs it). 50005 (past max_run_duration) is not retried: the
same job would only run out of time again.
"""

from __future__ import annotations

import hashlib
import math
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from arc_reactor.core.batch_policy import MAX_RUN_EXIT_CODE, RESERVED_EXIT_CODES
from arc_reactor.core.ids import JOB_ID_RE
from arc_reactor.core.labels import MAX_LABELS, sanitize_label_value
from arc_reactor.core.nextflow_config import TaskPolicy

if TYPE_CHECKING:
    from google.cloud import batch_v1

TASK_JOB_PREFIX = "smk-"
# Attributes of the log records by which the executor plugin tells the logger plugin (--logger arc) about a
# job's Batch job: its name, Snakemake's job id, Spot, and since when Batch runs it (ISO 8601).
TASK_JOB, TASK_JOBID, TASK_SPOT, TASK_RUNNING = "arc_task_job", "arc_jobid", "arc_spot", "arc_running"
RULE_LABEL = "snakemake-rule"
# Resources a rule does not state. Snakemake's own default is one thread; memory is what a small
# Batch VM gives per vCPU. Every one is explicit here, capped by the deployment's task limits.
DEFAULT_MEMORY_MIB_PER_CPU = 2048
MIN_MEMORY_MIB = 512
# Retried by Batch: a task the infrastructure failed. Not 50005 (see the module docstring).
TASK_RETRIED_EXIT_CODES: tuple[int, ...] = tuple(c for c in RESERVED_EXIT_CODES if c != MAX_RUN_EXIT_CODE)
_NOT_ID = re.compile(r"[^a-z0-9-]+")


# How long the executor's status checks may fail in a row (Batch unreachable, or refusing) before the jobs
# they could not see are reported failed: the run then fails and can be recovered, rather than wait up to
# the head job's 7-day limit for an answer.
STATUS_OUTAGE_S = 1800.0


@dataclass
class Outage:
    """Failed status checks in a row: since when, and whether that is longer than `limit` seconds."""

    limit: float = STATUS_OUTAGE_S
    since: float | None = None

    def failed(self, now: float) -> bool:
        """A check failed at `now`; True once the checks have failed for longer than the limit."""
        if self.since is None:
            self.since = now
        return now - self.since > self.limit

    def ok(self) -> None:
        """A check succeeded: the outage, if any, is over."""
        self.since = None


@dataclass(frozen=True)
class TaskRequest:
    """One Snakemake job, as the executor plugin reads it: what it runs and what it asks for."""

    rule: str
    jobid: int
    command: str  # Snakemake's job command (`python -m snakemake ... --target-jobs ...`)
    threads: int = 1
    mem_mib: int | None = None  # the rule's mem_mb / mem_mib resource
    runtime_min: int | None = None  # the rule's runtime resource
    disk_mib: int | None = None  # the rule's disk_mb / disk_mib resource


@dataclass(frozen=True)
class TaskShape:
    """What a task job gets: cpu, memory, time, boot disk."""

    cpu_milli: int
    memory_mib: int
    max_run_duration: timedelta
    boot_disk_gb: int


def task_shape(request: TaskRequest, policy: TaskPolicy) -> TaskShape:
    """The task's resources from the rule's, with our defaults for what it leaves out, within the
    deployment's limits (task_max_cpus, task_max_memory_gb, task_max_time_h), as Nextflow's
    resourceLimits caps a process."""
    cpus = min(max(1, request.threads), policy.max_cpus)
    memory = request.mem_mib if request.mem_mib is not None else DEFAULT_MEMORY_MIB_PER_CPU * cpus
    memory = min(max(MIN_MEMORY_MIB, memory), policy.max_memory_gb * 1024)
    hours = policy.max_time_h
    runtime = timedelta(hours=hours)
    if request.runtime_min is not None and request.runtime_min > 0:
        runtime = min(runtime, timedelta(minutes=request.runtime_min))
    disk_gb = policy.boot_disk_gb
    if request.disk_mib is not None and request.disk_mib > 0:
        disk_gb = max(disk_gb, math.ceil(request.disk_mib / 1024))
    return TaskShape(cpus * 1000, memory, runtime, disk_gb)


def task_job_id(run_id: str, rule: str, jobid: int, attempt: int, submission: int) -> str:
    """`smk-<run id>-<rule>-<job>-<attempt>-<n>`, a valid Batch job id: `attempt` is the orchestrator's
    (a retried head job starts Snakemake again, whose job numbers start again) and `n` counts the
    plugin's submissions (a job Snakemake submits again gets a new id). A long rule name is cut and given
    a hash, so two rules never share an id. Not `arc-`: that prefix names a run's orchestrator job."""
    tail = f"-{jobid}-{attempt}-{submission}"
    head = f"{TASK_JOB_PREFIX}{run_id}-"
    room = 63 - len(head) - len(tail)
    name = _NOT_ID.sub("-", rule.lower()).strip("-") or "rule"
    if len(name) > room:
        digest = hashlib.sha256(rule.encode("utf-8")).hexdigest()[:6]
        name = f"{name[: max(1, room - 7)].rstrip('-')}-{digest}"
    job_id = f"{head}{name}{tail}"
    if not JOB_ID_RE.match(job_id):
        raise ValueError(f"no valid Batch job id for rule {rule!r} of run {run_id!r}: {job_id!r}")
    return job_id


def task_labels(run_labels: Mapping[str, str], rule: str) -> dict[str, str]:
    """The run's labels (already Batch's form, from the orchestrator's job) and the rule's name."""
    labels = dict(run_labels)
    if RULE_LABEL not in labels and len(labels) < MAX_LABELS:
        labels[RULE_LABEL] = sanitize_label_value(rule)
    return labels


def task_script(python: str, context_uri: str, command: str, *, logs: Sequence[tuple[str, str]] = ()) -> str:
    """The task's shell script: a fresh working directory, the run's task context in it, then Snakemake's
    job command. Batch's SIGTERM is passed on to Snakemake. When the job fails, its `logs` (local path
    relative to the working directory, storage URI) are uploaded, for the orchestrator to show."""
    module = [python, "-m", "arc_reactor.orchestrator.task_context"]
    lines = [
        "set -uo pipefail",
        'cd "$(mktemp -d)"',
        shlex.join([*module, "fetch", context_uri]) + " || exit 1",
        f"{command} &",
        "child=$!",
        """trap 'kill -TERM "$child" 2>/dev/null' TERM INT""",
        'wait "$child"; status=$?',
        'if kill -0 "$child" 2>/dev/null; then wait "$child"; status=$?; fi',  # woken by the trap
    ]
    if logs:
        pairs = [part for pair in logs for part in pair]
        lines.append(f'if [ "$status" -ne 0 ]; then {shlex.join([*module, "keep", *pairs])}; fi')
    lines += ['exit "$status"', ""]
    return "\n".join(lines)


@dataclass(frozen=True)
class TaskSetup:
    """What every task job of a run shares: the deployment's task policy, the task image, the run's labels
    (Batch's form, from the orchestrator's own job)."""

    policy: TaskPolicy
    image: str
    labels: Mapping[str, str]


def build_task_job(
    request: TaskRequest, setup: TaskSetup, script: str, env: Mapping[str, str] | None = None
) -> batch_v1.Job:
    """The Batch job of one Snakemake job (see the module docstring)."""
    from google.cloud import batch_v1

    policy, image, labels = setup.policy, setup.image, setup.labels
    shape = task_shape(request, policy)
    job_labels = task_labels(labels, request.rule)
    retry_infra = batch_v1.LifecyclePolicy(
        action=batch_v1.LifecyclePolicy.Action.RETRY_TASK,
        action_condition=batch_v1.LifecyclePolicy.ActionCondition(exit_codes=list(TASK_RETRIED_EXIT_CODES)),
    )
    task = batch_v1.TaskSpec(
        runnables=[
            batch_v1.Runnable(
                display_name=f"snakemake {request.rule} (job {request.jobid})",
                container=batch_v1.Runnable.Container(
                    image_uri=image, entrypoint="/bin/bash", commands=["-c", script]
                ),
                environment=batch_v1.Environment(variables=dict(env or {})),
            )
        ],
        compute_resource=batch_v1.ComputeResource(
            cpu_milli=shape.cpu_milli, memory_mib=shape.memory_mib, boot_disk_mib=shape.boot_disk_gb * 1024
        ),
        max_run_duration=shape.max_run_duration,
        max_retry_count=policy.max_spot_attempts,
        lifecycle_policies=[retry_infra],
    )
    instance = batch_v1.AllocationPolicy.InstancePolicy(
        provisioning_model=(
            batch_v1.AllocationPolicy.ProvisioningModel.SPOT
            if policy.spot
            else batch_v1.AllocationPolicy.ProvisioningModel.STANDARD
        ),
        boot_disk=batch_v1.AllocationPolicy.Disk(size_gb=shape.boot_disk_gb),
    )
    allocation = batch_v1.AllocationPolicy(
        location=batch_v1.AllocationPolicy.LocationPolicy(allowed_locations=[f"regions/{policy.location}"]),
        instances=[batch_v1.AllocationPolicy.InstancePolicyOrTemplate(policy=instance)],
        labels=job_labels,
    )
    if policy.service_account:
        allocation.service_account = batch_v1.ServiceAccount(email=policy.service_account)
    if policy.network or policy.subnetwork or policy.use_private_address:
        allocation.network = batch_v1.AllocationPolicy.NetworkPolicy(
            network_interfaces=[
                batch_v1.AllocationPolicy.NetworkInterface(
                    network=policy.network,
                    subnetwork=policy.subnetwork,
                    no_external_ip_address=policy.use_private_address,
                )
            ]
        )
    return batch_v1.Job(
        task_groups=[batch_v1.TaskGroup(task_spec=task, task_count=1, parallelism=1)],
        allocation_policy=allocation,
        labels=job_labels,
        logs_policy=batch_v1.LogsPolicy(destination=batch_v1.LogsPolicy.Destination.CLOUD_LOGGING),
    )


def task_job_request(
    request: TaskRequest,
    setup: TaskSetup,
    *,
    run_id: str,
    attempt: int,
    submission: int,
    script: str,
    env: Mapping[str, str] | None = None,
) -> batch_v1.CreateJobRequest:
    """CreateJobRequest for one Snakemake job, with a request_id derived from its name (a retried create
    is the same request)."""
    from google.cloud import batch_v1

    from arc_reactor.core.jobspec import request_id_for

    parent = f"projects/{setup.policy.project}/locations/{setup.policy.location}"
    job_id = task_job_id(run_id, request.rule, request.jobid, attempt, submission)
    return batch_v1.CreateJobRequest(
        parent=parent,
        job_id=job_id,
        job=build_task_job(request, setup, script, env),
        request_id=request_id_for(f"{parent}/jobs/{job_id}"),
    )

"""The orchestrator's Batch job spec (pure: builds google.cloud.batch_v1 proto-plus objects, no I/O).

One task group with one task: the orchestrator container, 2 vCPU / 4 GiB on an e2-standard-2 SPOT VM,
7-day max run, 2 retries for infrastructure failures only, logs to Cloud Logging, the run's labels on
the job and its VMs, and Pub/Sub notifications for job and task state changes (DESIGN.md "Batch").
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from arc_reactor.core.batch_policy import MAX_RETRY_COUNT, MAX_RUN_DURATION, ORCHESTRATOR_RETRIED_EXIT_CODES
from arc_reactor.core.ids import job_id_for
from arc_reactor.core.job_env import JobEnv
from arc_reactor.core.labels import run_labels
from arc_reactor.core.registry import HeadJob

if TYPE_CHECKING:
    from google.cloud import batch_v1

    from arc_reactor.settings import Settings

# Fixed namespace so the CreateJob request_id is a pure function of the job's resource name.
REQUEST_ID_NAMESPACE = uuid.UUID("6f1d3c2a-2b8e-5e0f-9a57-1c4a7d3e8b21")
_CLOUDSQL_SA_SUFFIX = ".gserviceaccount.com"


@dataclass(frozen=True)
class OrchestratorJob:
    """Everything a run's orchestrator job needs besides the deployment settings: what the job is told
    about the run (`env`, the typed environment contract) and how the job is sized and labelled."""

    env: JobEnv
    submitter_email: str | None = None
    head_job: HeadJob = field(default_factory=HeadJob)
    extra_labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def run_id(self) -> str:
        """The run's id."""
        return self.env.run_id


def parent_for(settings: Settings) -> str:
    """`projects/{project}/locations/{region}`."""
    return f"projects/{settings.project}/locations/{settings.region}"


def job_name_for(run_id: str, settings: Settings) -> str:
    """The full resource name of a run's orchestrator job."""
    return f"{parent_for(settings)}/jobs/{job_id_for(run_id)}"


def request_id_for(job_name: str) -> str:
    """A deterministic UUID for CreateJob, so a retried create is recognised as the same request."""
    return str(uuid.uuid5(REQUEST_ID_NAMESPACE, job_name))


def database_env(settings: Settings) -> dict[str, str]:
    """How the orchestrator reaches the database: DATABASE_URL, else Cloud SQL IAM auth; never a password.

    A URL with a password is refused unless the job runs on this machine (a local Batch endpoint, which
    settings.py refuses on Cloud Run): anyone with batch.jobs.get can read a job's environment.
    """
    if settings.database_url:
        if urlsplit(settings.database_url).password and not settings.batch_endpoint:
            raise ValueError(
                "DATABASE_URL carries a password, which would be readable in the Batch job spec; "
                "use Cloud SQL IAM auth (ARC_CLOUDSQL_INSTANCE) or a passwordless URL"
            )
        return {"DATABASE_URL": settings.database_url}
    if not settings.cloudsql_instance:
        return {}
    sa = settings.orchestrator_service_account
    iam_user = sa.removesuffix(_CLOUDSQL_SA_SUFFIX) if sa else settings.db_iam_user
    env = {"ARC_CLOUDSQL_INSTANCE": settings.cloudsql_instance, "ARC_DB_NAME": settings.db_name}
    if iam_user:
        env["ARC_DB_IAM_USER"] = iam_user
    return env


# Settings the orchestrator gives its engine's task jobs (the Nextflow config, the Snakemake executor plugin):
# they travel in the job's env.
TASK_POLICY_FIELDS = (
    "task_service_account", "network", "subnetwork", "no_external_ip", "batch_spot", "max_spot_attempts",
    "boot_disk_gb", "task_max_retries", "task_max_cpus", "task_max_memory_gb", "task_max_time_h",
    "snakemake_executor", "snakemake_max_jobs", "snakemake_status_interval_s",
)  # fmt: skip


def task_policy_env(settings: Settings) -> dict[str, str]:
    """ARC_<FIELD> for each task-job setting, in the form Settings reads back."""
    env = {}
    for name in TASK_POLICY_FIELDS:
        value = getattr(settings, name)
        env[f"ARC_{name.upper()}"] = str(value).lower() if isinstance(value, bool) else str(value)
    return env


def deployment_env(settings: Settings) -> dict[str, str]:
    """The ARC_* settings the orchestrator reads back through `Settings`: where runs live, the database
    and the task-job policy."""
    return {
        "ARC_RUNS_BUCKET": settings.runs_bucket,
        "ARC_PROJECT": settings.project,
        "ARC_REGION": settings.region,
        # Snakemake's task jobs run the orchestrator's own image (core/snakemake_batch.py)
        "ARC_ORCHESTRATOR_IMAGE": settings.orchestrator_image,
        # runs_api, where Nextflow's Tower reports go (through the orchestrator's relay.py)
        **({"ARC_SERVICE_URL": settings.service_urls[0]} if settings.service_urls else {}),
        **database_env(settings),
        **task_policy_env(settings),
    }


def job_env(spec: OrchestratorJob, settings: Settings, labels: Mapping[str, str]) -> dict[str, str]:
    """The container's environment: the run's JobEnv (with the job's labels) and the deployment settings."""
    return {**deployment_env(settings), **replace(spec.env, labels=dict(labels)).to_env()}


def _task_spec(spec: OrchestratorJob, settings: Settings, labels: Mapping[str, str]) -> batch_v1.TaskSpec:
    from google.cloud import batch_v1

    # With max_retry_count > 0 and no policy, Batch retries every non-zero exit. One RETRY_TASK policy
    # flips that: per the LifecyclePolicy docs, "when RETRY_TASK is specified, we will retry failed
    # tasks if we notice any exit code match and fail tasks if no match is found". So infrastructure
    # codes are retried and a pipeline's own exit code fails the task at once (Batch takes one policy).
    retry_infra = batch_v1.LifecyclePolicy(
        action=batch_v1.LifecyclePolicy.Action.RETRY_TASK,
        action_condition=batch_v1.LifecyclePolicy.ActionCondition(
            exit_codes=list(ORCHESTRATOR_RETRIED_EXIT_CODES)
        ),
    )
    return batch_v1.TaskSpec(
        # Only image_uri: the image's own entrypoint (entrypoint.sh) runs the orchestrator.
        runnables=[
            batch_v1.Runnable(container=batch_v1.Runnable.Container(image_uri=settings.orchestrator_image))
        ],
        compute_resource=batch_v1.ComputeResource(
            cpu_milli=spec.head_job.cpu_milli, memory_mib=spec.head_job.memory_mib
        ),
        max_run_duration=MAX_RUN_DURATION,
        max_retry_count=MAX_RETRY_COUNT,
        lifecycle_policies=[retry_infra],
        environment=batch_v1.Environment(variables=job_env(spec, settings, labels)),
    )


def _allocation_policy(
    spec: OrchestratorJob, settings: Settings, labels: Mapping[str, str]
) -> batch_v1.AllocationPolicy:
    from google.cloud import batch_v1

    policy = batch_v1.AllocationPolicy(
        instances=[
            batch_v1.AllocationPolicy.InstancePolicyOrTemplate(
                policy=batch_v1.AllocationPolicy.InstancePolicy(
                    machine_type=spec.head_job.machine_type,
                    provisioning_model=batch_v1.AllocationPolicy.ProvisioningModel.SPOT,
                )
            )
        ],
        labels=dict(labels),
    )
    if settings.orchestrator_service_account:
        policy.service_account = batch_v1.ServiceAccount(email=settings.orchestrator_service_account)
    if settings.network or settings.subnetwork or settings.no_external_ip:
        interface = batch_v1.AllocationPolicy.NetworkInterface(
            network=settings.network,
            subnetwork=settings.subnetwork,
            no_external_ip_address=settings.no_external_ip,
        )
        policy.network = batch_v1.AllocationPolicy.NetworkPolicy(network_interfaces=[interface])
    return policy


def _notifications(settings: Settings) -> list[batch_v1.JobNotification]:
    from google.cloud import batch_v1

    if not settings.batch_topic:
        return []
    kinds = (
        batch_v1.JobNotification.Type.JOB_STATE_CHANGED,
        batch_v1.JobNotification.Type.TASK_STATE_CHANGED,
    )
    return [
        batch_v1.JobNotification(
            pubsub_topic=settings.batch_topic, message=batch_v1.JobNotification.Message(type_=kind)
        )
        for kind in kinds
    ]


def build_job(spec: OrchestratorJob, settings: Settings) -> batch_v1.Job:
    """The orchestrator Job for a run."""
    from google.cloud import batch_v1

    labels = run_labels(spec.run_id, spec.env.pipeline, spec.submitter_email, spec.extra_labels)
    return batch_v1.Job(
        task_groups=[
            batch_v1.TaskGroup(task_spec=_task_spec(spec, settings, labels), task_count=1, parallelism=1)
        ],
        allocation_policy=_allocation_policy(spec, settings, labels),
        labels=labels,
        logs_policy=batch_v1.LogsPolicy(destination=batch_v1.LogsPolicy.Destination.CLOUD_LOGGING),
        notifications=_notifications(settings),
    )


def create_job_request(spec: OrchestratorJob, settings: Settings) -> batch_v1.CreateJobRequest:
    """CreateJobRequest with parent, job id `arc-<run id>` and a request_id derived from the job name."""
    from google.cloud import batch_v1

    return batch_v1.CreateJobRequest(
        parent=parent_for(settings),
        job_id=job_id_for(spec.run_id),
        job=build_job(spec, settings),
        request_id=request_id_for(job_name_for(spec.run_id, settings)),
    )

"""The orchestrator job spec (core/jobspec.py): assert on the proto it returns."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from datetime import timedelta

import pytest
from google.cloud import batch_v1

from arc_reactor.core.batch_policy import ORCHESTRATOR_RETRIED_EXIT_CODES
from arc_reactor.core.job_env import JobEnv
from arc_reactor.core.jobspec import (
    OrchestratorJob,
    build_job,
    create_job_request,
    database_env,
    task_policy_env,
)
from arc_reactor.core.registry import HeadJob
from arc_reactor.settings import Settings

RUN = "r0000000000abcdefgh"
SA = "arc-orchestrator@proj-1.iam.gserviceaccount.com"


def _settings(**kw: object) -> Settings:
    base: dict[str, object] = {
        "project": "proj-1",
        "region": "europe-west4",
        "runs_bucket": "runs-b",
        "orchestrator_image": "europe-docker.pkg.dev/proj-1/arc/orchestrator:1.2.3",
        "orchestrator_service_account": SA,
        "batch_topic": "projects/proj-1/topics/batch-events",
        "cloudsql_instance": "proj-1:europe-west4:arc",
        "db_name": "arcdb",
        "database_url": "",  # a DATABASE_URL from the outside environment must not leak in
        "service_url": "https://arc-runs-api-731500294419.europe-west4.run.app,https://api.example.org",
    }
    base.update(kw)
    return Settings(**base)  # type: ignore[arg-type]


_JOB_FIELDS = frozenset({"submitter_email", "head_job", "extra_labels"})


def _spec(**kw: object) -> OrchestratorJob:
    env: dict[str, object] = {
        "run_id": RUN,
        "pipeline": "nf-core/scrnaseq",
        "pipeline_version": "2.7.1",
        "engine": "nextflow",
        "config_uri": f"gs://runs-b/runs/{RUN}/inputs/nextflow.config",
        "params_uri": f"gs://runs-b/runs/{RUN}/inputs/params.yaml",
        "work_dir": f"gs://runs-b/work/{RUN}/",
        "is_recovery": False,
        "results_dir": f"gs://runs-b/runs/{RUN}/results/",
    }
    job: dict[str, object] = {"submitter_email": "Jane.Doe@Example.org", "extra_labels": {"Team": "Genomics"}}
    for key, value in kw.items():
        (job if key in _JOB_FIELDS else env)[key] = value
    return OrchestratorJob(JobEnv(**env), **job)  # type: ignore[arg-type]


def test_task_spec_container_env_resources_and_retries() -> None:
    job = build_job(_spec(), _settings())
    assert len(job.task_groups) == 1
    group = job.task_groups[0]
    assert group.task_count == 1
    assert group.parallelism == 1
    spec = group.task_spec
    assert len(spec.runnables) == 1
    container = spec.runnables[0].container
    assert container.image_uri == "europe-docker.pkg.dev/proj-1/arc/orchestrator:1.2.3"
    assert list(container.commands) == []
    assert container.entrypoint == ""
    assert spec.compute_resource.cpu_milli == 2000
    assert spec.compute_resource.memory_mib == 4096
    assert spec.max_run_duration == timedelta(seconds=604800)
    assert spec.max_retry_count == 2
    env = dict(spec.environment.variables)
    labels = dict(job.labels)
    assert env == task_policy_env(_settings()) | {
        "RUN_ID": RUN,
        "PIPELINE": "nf-core/scrnaseq",
        "PIPELINE_VERSION": "2.7.1",
        "ENGINE": "nextflow",
        "CONFIG_GCS_PATH": f"gs://runs-b/runs/{RUN}/inputs/nextflow.config",
        "PARAMS_GCS_PATH": f"gs://runs-b/runs/{RUN}/inputs/params.yaml",
        "WORK_DIR": f"gs://runs-b/work/{RUN}/",
        "IS_RECOVERY": "false",
        "ARC_RUNS_BUCKET": "runs-b",
        "ARC_PROJECT": "proj-1",
        "ARC_REGION": "europe-west4",
        "ARC_ORCHESTRATOR_IMAGE": "europe-docker.pkg.dev/proj-1/arc/orchestrator:1.2.3",  # Snakemake's tasks
        "ARC_SERVICE_URL": "https://arc-runs-api-731500294419.europe-west4.run.app",  # the first: Cloud Run's
        "ARC_RUN_LABELS": json.dumps(labels, sort_keys=True, separators=(",", ":")),
        "ARC_CLOUDSQL_INSTANCE": "proj-1:europe-west4:arc",
        "ARC_DB_NAME": "arcdb",
        "ARC_DB_IAM_USER": "arc-orchestrator@proj-1.iam",
        "RESULTS_DIR": f"gs://runs-b/runs/{RUN}/results/",
    }
    assert not any("PASSWORD" in k for k in env)


def test_lifecycle_policy_retries_only_infrastructure_exit_codes() -> None:
    policies = build_job(_spec(), _settings()).task_groups[0].task_spec.lifecycle_policies
    assert len(policies) == 1  # Batch honours one policy
    assert policies[0].action == batch_v1.LifecyclePolicy.Action.RETRY_TASK
    assert list(policies[0].action_condition.exit_codes) == [50001, 50002, 50003, 50004, 50006]
    assert tuple(policies[0].action_condition.exit_codes) == ORCHESTRATOR_RETRIED_EXIT_CODES


def test_recovery_env() -> None:
    env = build_job(_spec(is_recovery=True, parent_session_id="sess-1"), _settings()).task_groups[0]
    variables = env.task_spec.environment.variables
    assert variables["IS_RECOVERY"] == "true"
    assert variables["PARENT_SESSION_ID"] == "sess-1"


def test_no_parent_session_id_when_not_given() -> None:
    variables = build_job(_spec(), _settings()).task_groups[0].task_spec.environment.variables
    assert "PARENT_SESSION_ID" not in variables


def test_head_job_size_comes_from_the_registry_entry() -> None:
    job = build_job(
        _spec(head_job=HeadJob(cpu_milli=4000, memory_mib=8192, machine_type="e2-standard-4")), _settings()
    )
    assert job.task_groups[0].task_spec.compute_resource.cpu_milli == 4000
    assert job.task_groups[0].task_spec.compute_resource.memory_mib == 8192
    assert job.allocation_policy.instances[0].policy.machine_type == "e2-standard-4"


def test_allocation_policy() -> None:
    settings = _settings(
        network="projects/proj-1/global/networks/arc",
        subnetwork="projects/proj-1/regions/europe-west4/subnetworks/arc",
        no_external_ip=True,
    )
    policy = build_job(_spec(), settings).allocation_policy
    assert len(policy.instances) == 1
    assert policy.instances[0].policy.machine_type == "e2-standard-2"
    assert policy.instances[0].policy.provisioning_model == batch_v1.AllocationPolicy.ProvisioningModel.SPOT
    assert policy.service_account.email == SA
    interfaces = policy.network.network_interfaces
    assert len(interfaces) == 1
    assert interfaces[0].network == "projects/proj-1/global/networks/arc"
    assert interfaces[0].subnetwork == "projects/proj-1/regions/europe-west4/subnetworks/arc"
    assert interfaces[0].no_external_ip_address is True
    assert dict(policy.labels) == dict(build_job(_spec(), settings).labels)


def test_allocation_policy_without_optional_settings() -> None:
    policy = build_job(_spec(), _settings(orchestrator_service_account="", batch_topic="")).allocation_policy
    assert "service_account" not in policy
    assert "network" not in policy


def test_logs_labels_and_notifications() -> None:
    job = build_job(_spec(), _settings())
    assert job.logs_policy.destination == batch_v1.LogsPolicy.Destination.CLOUD_LOGGING
    assert dict(job.labels) == {
        "app": "arc-reactor",
        "run-id": RUN,
        "pipeline": "nf-core_scrnaseq",
        "user-email": "jane_doe-at-example_org",
        "team": "genomics",
    }
    kinds = [(n.pubsub_topic, n.message.type_) for n in job.notifications]
    assert kinds == [
        ("projects/proj-1/topics/batch-events", batch_v1.JobNotification.Type.JOB_STATE_CHANGED),
        ("projects/proj-1/topics/batch-events", batch_v1.JobNotification.Type.TASK_STATE_CHANGED),
    ]


def test_no_notifications_without_topic() -> None:
    assert list(build_job(_spec(), _settings(batch_topic="")).notifications) == []


def test_create_job_request_parent_id_and_deterministic_request_id() -> None:
    first = create_job_request(_spec(), _settings())
    again = create_job_request(_spec(), _settings())
    other = create_job_request(_spec(run_id="r0000000000zzzzzzzz"), _settings())
    assert first.parent == "projects/proj-1/locations/europe-west4"
    assert first.job_id == f"arc-{RUN}"
    assert uuid.UUID(first.request_id).version == 5
    assert first.request_id == again.request_id
    assert first.request_id != other.request_id
    assert first.job == build_job(_spec(), _settings())


def test_database_env_prefers_database_url() -> None:
    env = database_env(_settings(database_url="postgresql+pg8000://arc@10.0.0.5/arc"))
    assert env == {"DATABASE_URL": "postgresql+pg8000://arc@10.0.0.5/arc"}


def test_database_env_refuses_a_password_in_the_cloud() -> None:
    with pytest.raises(ValueError, match="password"):
        database_env(_settings(database_url="postgresql+pg8000://arc:secret@10.0.0.5/arc"))


def test_database_env_allows_a_password_on_the_local_stack() -> None:
    url = "postgresql+pg8000://arc:secret@127.0.0.1/arc"
    assert database_env(_settings(database_url=url, batch_endpoint="127.0.0.1:5001")) == {"DATABASE_URL": url}


def test_database_env_iam_user_falls_back_to_db_iam_user() -> None:
    env = database_env(_settings(orchestrator_service_account="", db_iam_user="fn@proj-1.iam"))
    assert env["ARC_DB_IAM_USER"] == "fn@proj-1.iam"


def test_database_env_empty_without_database_settings() -> None:
    assert database_env(_settings(cloudsql_instance="")) == {}


def test_the_job_env_the_spec_writes_is_the_one_the_orchestrator_reads() -> None:
    """Writer (build_job) and reader (JobEnv.from_env) of the job environment, held together: every field
    of the run's JobEnv (a manifest's profile among them) arrives, with the job's labels."""
    spec = _spec(profile="test,docker", parent_session_id="5a1e55e5-0000-4000-8000-00000000abcd")
    job = build_job(spec, _settings())
    variables = dict(job.task_groups[0].task_spec.environment.variables)
    read = JobEnv.from_env(variables)
    assert read == replace(spec.env, labels=dict(job.labels))
    assert read.profile == "test,docker"


@pytest.mark.parametrize(
    ("state", "codes", "retried"),
    [
        ("RUNNING", [50001], [(1, 50001)]),  # preempted, attempt 1 running
        ("SUCCEEDED", [50001, 50002, 0], [(1, 50001), (2, 50002)]),
        ("FAILED", [50001, 50001, 50001], [(1, 50001), (2, 50001)]),  # the third is the final failure
        ("RUNNING", [50001, 50001, 50001], [(1, 50001), (2, 50001)]),  # past max_retry_count: no retry
        ("RUNNING", [3], []),  # a pipeline's own exit code is never retried
        ("FAILED", [50005], []),  # max run duration: not retried (ORCHESTRATOR_RETRIED_EXIT_CODES)
        ("SUCCEEDED", [0], []),
        ("QUEUED", [], []),
    ],
)
def test_task_retries_follow_the_spec_retry_rule(
    state: str, codes: list[int], retried: list[tuple[int, int]]
) -> None:
    from arc_reactor.adapters.batch_status import task_retries

    assert [(r.attempt, r.exit_code) for r in task_retries(state, codes)] == retried
    assert all(code in ORCHESTRATOR_RETRIED_EXIT_CODES for _, code in retried)


def test_task_job_settings_travel_to_the_orchestrator_and_read_back_the_same():
    """The orchestrator renders Nextflow's task-job config from these: they must survive the trip."""
    from arc_reactor.core.jobspec import TASK_POLICY_FIELDS, task_policy_env

    settings = Settings(
        task_service_account="tasks@p.iam.gserviceaccount.com",
        network="projects/p/global/networks/n",
        subnetwork="projects/p/regions/r/subnetworks/s",
        no_external_ip=True,
        batch_spot=False,
        max_spot_attempts=5,
        boot_disk_gb=200,
        task_max_cpus=16,
    )
    env = task_policy_env(settings)
    assert env["ARC_TASK_SERVICE_ACCOUNT"] == "tasks@p.iam.gserviceaccount.com"
    assert env["ARC_NO_EXTERNAL_IP"] == "true" and env["ARC_BATCH_SPOT"] == "false"
    back = Settings.model_validate({k.removeprefix("ARC_").lower(): v for k, v in env.items()})
    for name in TASK_POLICY_FIELDS:
        assert getattr(back, name) == getattr(settings, name), name
    job = build_job(_spec(), settings)
    job_env_vars = dict(job.task_groups[0].task_spec.environment.variables)
    assert {k: job_env_vars[k] for k in env} == env

"""Snakemake's jobs as Batch task jobs: the job spec our executor plugin creates (core/snakemake_batch.py),
the task context every task fetches (orchestrator/task_context.py) and the plugin's own settings.

The googlebatch plugin's risky defaults (c2-standard-4, hpc-centos-7, 3600 s, one retry, no labels) have no
counterpart here: every value of the spec is asserted to come from the deployment's settings or the rule."""

from __future__ import annotations

import io
import tarfile
from datetime import timedelta
from pathlib import Path

import pytest
from google.cloud import batch_v1
from hypothesis import given
from hypothesis import strategies as st

from arc_reactor.core.batch_policy import RESERVED_EXIT_CODES
from arc_reactor.core.ids import JOB_ID_RE
from arc_reactor.core.nextflow_config import TaskPolicy
from arc_reactor.core.snakemake_batch import (
    TASK_RETRIED_EXIT_CODES,
    TaskRequest,
    TaskSetup,
    task_job_id,
    task_job_request,
    task_script,
    task_shape,
)
from arc_reactor.orchestrator import task_context
from arc_reactor.settings import Settings

RUN = "r0000000001abcdefgh"
LABELS = {"app": "arc-reactor", "run-id": RUN, "pipeline": "arc_fastq-stats", "user-email": "a-at-b_org"}
POLICY = TaskPolicy(
    project="p1", location="europe-west4", service_account="tasks@p1.iam.gserviceaccount.com", spot=False,
    max_spot_attempts=4, boot_disk_gb=80, network="projects/p1/global/networks/n",
    subnetwork="projects/p1/regions/europe-west4/subnetworks/s", use_private_address=True, max_retries=2,
    max_cpus=8, max_memory_gb=32, max_time_h=12,
)  # fmt: skip


def _request(**kw: object) -> TaskRequest:
    base: dict[str, object] = {"rule": "stats", "jobid": 3, "command": "python -m snakemake --target-jobs x"}
    return TaskRequest(**{**base, **kw})  # type: ignore[arg-type]


def _create(req: TaskRequest | None = None, **kw: object) -> batch_v1.CreateJobRequest:
    return task_job_request(
        req or _request(), TaskSetup(POLICY, "gcr.io/p1/arc:1", LABELS), run_id=RUN, attempt=1, submission=7,
        script="echo hi", env={"SNAKEMAKE_STORAGE_GCS_PROJECT": "p1"}, **kw,  # type: ignore[arg-type]
    )  # fmt: skip


def test_every_value_of_a_task_job_comes_from_our_settings():
    create = _create()
    job = create.job
    assert create.parent == "projects/p1/locations/europe-west4"
    assert create.job_id == f"smk-{RUN}-stats-3-1-7" and create.request_id
    task = job.task_groups[0].task_spec
    (runnable,) = task.runnables
    # our task image, our script, the storage plugin's settings in its environment
    assert runnable.container.image_uri == "gcr.io/p1/arc:1"
    assert runnable.container.entrypoint == "/bin/bash"
    assert list(runnable.container.commands) == ["-c", "echo hi"]
    assert dict(runnable.environment.variables) == {"SNAKEMAKE_STORAGE_GCS_PROJECT": "p1"}
    # not 3600 s: the deployment's task_max_time_h; not one retry: max_spot_attempts, infrastructure only
    assert task.max_run_duration == timedelta(hours=12)
    assert task.max_retry_count == 4
    (policy,) = task.lifecycle_policies
    assert policy.action == batch_v1.LifecyclePolicy.Action.RETRY_TASK
    assert sorted(policy.action_condition.exit_codes) == sorted(TASK_RETRIED_EXIT_CODES)
    assert 50001 in TASK_RETRIED_EXIT_CODES and 50005 not in TASK_RETRIED_EXIT_CODES
    assert set(TASK_RETRIED_EXIT_CODES) < set(RESERVED_EXIT_CODES)
    # not c2-standard-4 / hpc-centos-7: no machine type or image family at all; Batch fits a VM to these
    assert task.compute_resource.cpu_milli == 1000 and task.compute_resource.memory_mib == 2048
    instance = job.allocation_policy.instances[0].policy
    assert instance.machine_type == "" and job.allocation_policy.instances[0].instance_template == ""
    assert instance.provisioning_model == batch_v1.AllocationPolicy.ProvisioningModel.STANDARD  # spot=False
    assert instance.boot_disk.size_gb == 80
    assert list(job.allocation_policy.location.allowed_locations) == ["regions/europe-west4"]
    assert job.allocation_policy.service_account.email == "tasks@p1.iam.gserviceaccount.com"
    (nic,) = job.allocation_policy.network.network_interfaces
    assert (nic.network, nic.subnetwork, nic.no_external_ip_address) == (
        POLICY.network,
        POLICY.subnetwork,
        True,
    )
    # the run's labels on the job and its VMs (cancel, the sweeper and cost find them), and the rule
    assert dict(job.labels) == {**LABELS, "snakemake-rule": "stats"}
    assert dict(job.allocation_policy.labels) == dict(job.labels)
    assert job.logs_policy.destination == batch_v1.LogsPolicy.Destination.CLOUD_LOGGING


def test_spot_is_the_deployments_choice():
    setup = TaskSetup(TaskPolicy(project="p", location="r"), "i", LABELS)
    spot = task_job_request(_request(), setup, run_id=RUN, attempt=0, submission=0, script="s")
    instance = spot.job.allocation_policy.instances[0].policy
    assert instance.provisioning_model == batch_v1.AllocationPolicy.ProvisioningModel.SPOT
    assert not spot.job.allocation_policy.service_account.email  # unset: the project's default


def test_a_rules_resources_within_the_deployments_limits():
    shape = task_shape(_request(threads=4, mem_mib=6000, runtime_min=90, disk_mib=200 * 1024), POLICY)
    assert (shape.cpu_milli, shape.memory_mib, shape.max_run_duration, shape.boot_disk_gb) == (
        4000, 6000, timedelta(minutes=90), 200,
    )  # fmt: skip
    capped = task_shape(_request(threads=64, mem_mib=10**7, runtime_min=10**6), POLICY)
    assert (capped.cpu_milli, capped.memory_mib, capped.max_run_duration) == (
        8000,
        32 * 1024,
        timedelta(hours=12),
    )
    default = task_shape(_request(threads=2), POLICY)  # memory by CPU when the rule says nothing
    assert default.memory_mib == 4096 and default.boot_disk_gb == 80


def test_the_same_create_is_the_same_request():
    assert _create().request_id == _create().request_id
    assert _create().request_id != _create(_request(jobid=4)).request_id


@given(
    rule=st.text(min_size=1, max_size=120),
    jobid=st.integers(0, 10**6),
    attempt=st.integers(0, 9),
    submission=st.integers(0, 10**5),
)
def test_task_job_ids_are_valid_and_distinct_by_rule(rule, jobid, attempt, submission):
    job_id = task_job_id(RUN, rule, jobid, attempt, submission)
    assert JOB_ID_RE.match(job_id) and job_id.startswith(f"smk-{RUN}-")
    assert job_id.endswith(f"-{jobid}-{attempt}-{submission}")


def test_long_rule_names_keep_distinct_ids():
    a, b = "x" * 80 + "_a", "x" * 80 + "_b"
    assert task_job_id(RUN, a, 1, 0, 0) != task_job_id(RUN, b, 1, 0, 0)


def test_the_task_script_fetches_the_context_runs_snakemake_and_keeps_a_failed_jobs_logs():
    context = "gs://b/work/l/.arc/context/x y.tar.gz"
    module = "/usr/bin/python3.11 -m arc_reactor.orchestrator.task_context"
    script = task_script(
        "/usr/bin/python3.11",
        context,
        "python -m snakemake",
        logs=[("logs/a b.log", "gs://b/w/logs/a b.log")],
    )
    lines = script.splitlines()
    assert lines[:3] == [
        "set -uo pipefail",
        'cd "$(mktemp -d)"',  # a fresh directory: nothing of another task's
        f"{module} fetch '{context}' || exit 1",
    ]
    assert "python -m snakemake &" in lines
    assert """trap 'kill -TERM "$child" 2>/dev/null' TERM INT""" in lines  # Batch's SIGTERM reaches it
    keep = f"{module} keep 'logs/a b.log' 'gs://b/w/logs/a b.log'"
    assert f"""if [ "$status" -ne 0 ]; then {keep}; fi""" in lines
    assert lines[-1] == 'exit "$status"'
    assert "keep" not in task_script("py", context, "cmd")  # no logs: nothing to keep


def test_the_task_script_runs_and_passes_the_exit_status_on(tmp_path):
    """The script itself, in bash, with a stand-in for the context fetch (a python that only succeeds)."""
    import subprocess

    fake = tmp_path / "py"
    fake.write_text('#!/bin/sh\necho "$@" >> ' + str(tmp_path / "calls") + "\n", encoding="utf-8")
    fake.chmod(0o755)
    for command, status in (("true", 0), ("exit 3", 3)):
        script = task_script(
            str(fake), "gs://b/c.tar.gz", f"sh -c '{command}'", logs=[("l.log", "gs://k/l.log")]
        )
        assert subprocess.run(["bash", "-c", script], check=False).returncode == status
    calls = (tmp_path / "calls").read_text(encoding="utf-8").splitlines()
    fetches = [c for c in calls if " fetch " in c]
    assert len(fetches) == 2 and calls[-1].endswith("keep l.log gs://k/l.log")  # kept only after the failure
    assert sum(" keep " in c for c in calls) == 1


# --- the task context ------------------------------------------------------------------------------------


def _run_dir(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    (run / ".arc").mkdir(parents=True)
    (run / ".arc" / "params.yaml").write_text("input: .arc/samplesheet.csv\n", encoding="utf-8")
    (run / ".arc" / "samplesheet.csv").write_text("sample,fastq_1\ns1,inputs/b/s1.fq.gz\n", encoding="utf-8")
    (run / "results").mkdir()
    (run / "results" / "not-context.txt").write_text("x", encoding="utf-8")
    return run


def test_the_context_packs_only_dot_arc_and_the_same_files_pack_the_same(tmp_path):
    run = _run_dir(tmp_path)
    packed = task_context.pack(run)
    assert packed == task_context.pack(run)  # no times or owners: the same name every attempt
    assert task_context.object_name(packed).startswith(".arc/context/")
    dest = tmp_path / "task"
    dest.mkdir()
    assert sorted(task_context.extract(packed, dest)) == [".arc/params.yaml", ".arc/samplesheet.csv"]
    assert (dest / ".arc" / "samplesheet.csv").read_text(encoding="utf-8").startswith("sample,")
    (run / ".arc" / "params.yaml").write_text("input: other\n", encoding="utf-8")
    assert task_context.object_name(task_context.pack(run)) != task_context.object_name(packed)


@pytest.mark.parametrize(
    ("name", "kind"),
    [("../escape.txt", tarfile.REGTYPE), ("/etc/passwd", tarfile.REGTYPE), (".arc/link", tarfile.SYMTYPE),
     ("elsewhere.txt", tarfile.REGTYPE)],
)  # fmt: skip
def test_a_context_with_anything_but_plain_files_under_dot_arc_is_refused(tmp_path, name, kind):
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as archive:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.linkname = "/etc/passwd" if kind == tarfile.SYMTYPE else ""
        archive.addfile(info, io.BytesIO(b""))
    dest = tmp_path / "task"
    dest.mkdir()
    with pytest.raises(task_context.ContextError):
        task_context.extract(out.getvalue(), dest)
    assert not any(dest.iterdir())
    with pytest.raises(task_context.ContextError, match="cannot be extracted"):
        task_context.extract(b"not a tar", dest)


def test_the_task_context_command_line(capsys):
    assert task_context.main([]) == 2
    assert task_context.main(["fetch", "/local/file"]) == 2
    assert task_context.main(["fetch", "gs://b/x", "extra"]) == 2
    assert task_context.main(["other", "gs://b/x"]) == 2
    assert task_context.main(["keep", "only-a-local-path"]) == 2
    assert "usage" in capsys.readouterr().err


def test_keep_uploads_only_files_inside_the_working_directory(tmp_path, monkeypatch):
    uploaded: list[tuple[str, str]] = []

    class FakeStorage:  # the storage client is the edge here: keep's choice of files is what is tested
        def __init__(self, client: object) -> None: ...

        def upload_file(self, src: Path, uri: str) -> None:
            uploaded.append((src.relative_to(tmp_path).as_posix(), uri))

    monkeypatch.setattr("arc_reactor.adapters.storage.Storage", FakeStorage)
    monkeypatch.setattr("arc_reactor.adapters.storage.make_client", lambda settings: None)
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "a.log").write_text("x", encoding="utf-8")
    (tmp_path / "outside.log").write_text("x", encoding="utf-8")
    pairs = [
        "logs/a.log", "gs://b/w/logs/a.log", "logs/missing.log", "gs://b/w/logs/missing.log",
        "../outside.log", "gs://b/o.log", str(tmp_path / "outside.log"), "gs://b/o.log",
    ]  # fmt: skip
    assert task_context.keep(pairs, tmp_path) == 1
    assert uploaded == [("logs/a.log", "gs://b/w/logs/a.log")]
    with pytest.raises(ValueError, match="not a gs:// URI"):
        task_context.keep(["logs/a.log", "/tmp/x"], tmp_path)


# --- the plugin's settings --------------------------------------------------------------------------------


def test_the_plugin_installs_nothing_and_shares_only_what_the_image_holds():
    import snakemake_executor_plugin_arc as plugin

    common = plugin.common_settings
    assert common.non_local_exec and not common.job_deploy_sources
    assert not common.auto_deploy_default_storage_provider  # no pip install in a task (googlebatch's does)
    assert not common.pass_envvar_declarations_to_cmd  # the environment goes in the runnable, not argv
    assert common.pass_default_storage_provider_args
    assert plugin.ExecutorSettings().context is None  # required: the orchestrator always passes it


def test_the_task_policy_is_the_deployments():
    settings = Settings(
        project="p9", region="asia-east1", task_service_account="t@p9.iam.gserviceaccount.com",
        batch_spot=False, max_spot_attempts=5, boot_disk_gb=50, task_max_cpus=4, task_max_memory_gb=8,
        task_max_time_h=3,
    )  # fmt: skip
    policy = TaskPolicy.from_settings(settings)
    setup = TaskSetup(policy, "i", LABELS)
    job = task_job_request(_request(threads=16), setup, run_id=RUN, attempt=0, submission=0, script="s").job
    task = job.task_groups[0].task_spec
    assert (task.compute_resource.cpu_milli, task.max_retry_count) == (4000, 5)
    assert task.max_run_duration == timedelta(hours=3)
    assert job.allocation_policy.service_account.email == "t@p9.iam.gserviceaccount.com"
    assert list(job.allocation_policy.location.allowed_locations) == ["regions/asia-east1"]


def test_status_checks_that_keep_failing_end_after_the_outage_limit():
    """The executor's checks may fail (Batch unreachable) for STATUS_OUTAGE_S in a row, no longer: then the
    jobs they could not see are failed, and the run can be recovered instead of waiting for days."""
    from arc_reactor.core.snakemake_batch import STATUS_OUTAGE_S, Outage

    outage = Outage()
    assert outage.limit == STATUS_OUTAGE_S == 1800.0
    assert not outage.failed(100.0) and not outage.failed(100.0 + STATUS_OUTAGE_S)
    outage.ok()  # one check got through: the count starts again
    assert not outage.failed(5000.0)
    assert not outage.failed(5000.0 + STATUS_OUTAGE_S)
    assert outage.failed(5000.0 + STATUS_OUTAGE_S + 0.1)

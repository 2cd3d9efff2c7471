"""Snakemake executor plugin `arc` (`snakemake --executor arc`): every job a Batch task job.

Built on snakemake-interface-executor-plugins and found by name on PYTHONPATH, like our logger plugin.
Why not snakemake-executor-plugin-googlebatch: docs/decisions.md, "Snakemake on Batch".

- run_job: the job's Batch job is built by core/snakemake_batch.py (our task image, the run's labels, the
  deployment's task policy) and created through adapters/batch.py, so the local stack binds it to its
  local Batch service like every other Batch call.
- check_active_jobs: one ListJobs of the run's active task jobs per check; a job that left that list is
  read once (GetJob) for how it ended. SUCCEEDED is success; FAILED and CANCELLED are the job's error,
  with Batch's reason (the exit code, or the infrastructure cause after Batch's own retries). Checks that
  fail for longer than STATUS_OUTAGE_S in a row fail the jobs they could not see.
- cancel_jobs: the submitted jobs that are still active, cancelled within a deadline.

Settings come from the orchestrator's environment (Settings, JobEnv), never from defaults of this plugin:
the one plugin setting is the task context's URI (orchestrator/task_context.py), which the orchestrator
passes as `--arc-context`.
"""

from __future__ import annotations

import itertools
import os
import sys
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from snakemake_interface_common.exceptions import WorkflowError
from snakemake_interface_executor_plugins.executors.base import SubmittedJobInfo
from snakemake_interface_executor_plugins.executors.remote import RemoteExecutor
from snakemake_interface_executor_plugins.jobs import JobExecutorInterface
from snakemake_interface_executor_plugins.settings import CommonSettings, ExecutorSettingsBase
from snakemake_interface_executor_plugins.utils import format_cli_arg

from arc_reactor.core.snakemake_batch import TASK_JOB, TASK_JOBID, TASK_RUNNING, TASK_SPOT

CANCEL_DEADLINE_S = 60.0


@dataclass
class ExecutorSettings(ExecutorSettingsBase):  # type: ignore[misc]
    """The task context the orchestrator uploaded (everything else comes from its environment)."""

    context: str | None = field(
        default=None,
        metadata={
            "help": "gs:// URI of the run's task context archive (orchestrator/task_context.py)",
            "required": True,
            "type": str,  # postponed annotations: argparse needs the type
        },
    )


common_settings = CommonSettings(
    non_local_exec=True,
    # The orchestrator says what is shared (--shared-fs-usage): the sources and the software, which are in
    # the task image at the same paths; never the inputs, outputs or metadata.
    implies_no_shared_fs=False,
    job_deploy_sources=False,
    pass_default_storage_provider_args=True,
    pass_default_resources_args=True,
    pass_envvar_declarations_to_cmd=False,
    # The task image has the GCS storage plugin: nothing is pip-installed in a task.
    auto_deploy_default_storage_provider=False,
    init_seconds_before_status_checks=0,
)


def _int_resource(job: JobExecutorInterface, *names: str) -> int | None:
    for name in names:
        value = job.resources.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
            return int(value)
    return None


class Executor(RemoteExecutor):  # type: ignore[misc]
    """Snakemake's jobs as Batch task jobs of the run (see the module docstring)."""

    def __post_init__(self) -> None:
        from arc_reactor.adapters.batch import BatchService, make_batch_client
        from arc_reactor.core.job_env import env_from
        from arc_reactor.core.nextflow_config import TaskPolicy
        from arc_reactor.core.snakemake_batch import Outage, TaskSetup
        from arc_reactor.settings import get_settings

        settings = get_settings()
        if settings.local and not settings.batch_endpoint:  # never Google's API (and its credentials)
            raise WorkflowError("a local deployment without ARC_BATCH_ENDPOINT cannot run task jobs")

        self.run_env = env_from(os.environ)
        self.setup = TaskSetup(
            TaskPolicy.from_settings(settings), settings.orchestrator_image, dict(self.run_env.labels)
        )
        self.batch = BatchService(make_batch_client(settings), settings)
        context = self.workflow.executor_settings.context
        if not context or not context.startswith("gs://"):
            raise WorkflowError("--arc-context must be the gs:// URI of the run's task context")
        self.context = context
        self.storage_prefix = str(self.workflow.storage_settings.default_storage_prefix or "").rstrip("/")
        if not self.storage_prefix.startswith("gs://"):
            raise WorkflowError("the arc executor needs --default-storage-prefix gs://... (the work/ prefix)")
        self.submissions = itertools.count()
        self.outage = Outage()
        # The deployment's interval, which may be under Snakemake's whole-second CLI setting (local stack).
        self.next_seconds_between_status_checks = settings.snakemake_status_interval_s

    def format_job_exec(self, job: JobExecutorInterface) -> str:
        """Snakemake's job command, with the config files named relative to the working directory: with
        the sources shared (in the image), Snakemake names them by the orchestrator's absolute paths, which
        a task job does not have; its working directory holds them at the same relative paths (the task
        context)."""
        command = str(super().format_job_exec(job))
        given = [str(f) for f in self.workflow.overwrite_configfiles or ()]
        if not given:
            return command
        here = Path.cwd()
        relative = []
        for name in given:
            path = Path(name)
            if path.is_absolute() and not path.is_relative_to(here):
                raise WorkflowError(f"config file {name} is outside the working directory {here}")
            relative.append(path.relative_to(here).as_posix() if path.is_absolute() else name)
        return command.replace(
            format_cli_arg("--configfiles", given), format_cli_arg("--configfiles", relative)
        )

    def run_job(self, job: JobExecutorInterface) -> None:
        """Create the job's Batch job and report it submitted."""
        from arc_reactor.core.snakemake_batch import TaskRequest, task_job_request, task_script
        from arc_reactor.errors import ArcError

        rule = job.name if not job.is_group() else f"group-{job.name}"
        request = TaskRequest(
            rule=rule,
            jobid=int(job.jobid) if str(job.jobid).isdigit() else 0,
            command=self.format_job_exec(job),
            threads=max(1, int(job.threads or 1)),
            mem_mib=_int_resource(job, "mem_mib", "mem_mb"),
            runtime_min=_int_resource(job, "runtime"),
            disk_mib=_int_resource(job, "disk_mib", "disk_mb"),
        )
        logs = _local_logs(job)
        create = task_job_request(
            request,
            self.setup,
            run_id=self.run_env.run_id,
            attempt=self.run_env.retry_attempt,
            submission=next(self.submissions),
            script=task_script(sys.executable, self.context, request.command, logs=logs),
            # what Snakemake passes to its jobs through the environment (the storage plugin's settings)
            env=dict(self.workflow.spawned_job_args_factory.envvars()),
        )
        try:
            created = self.batch.create_job(create, self.run_env.run_id)
        except ArcError as exc:
            raise WorkflowError(f"could not create the Batch job of rule {rule}: {exc}") from exc
        # The logger plugin (--logger arc) puts the Batch job on the job's ledger row.
        task = {TASK_JOB: created.name, TASK_JOBID: job.jobid, TASK_SPOT: self.setup.policy.spot}
        self.logger.info(f"Rule {rule} (job {job.jobid}) is Batch job {created.name}", extra=task)
        aux = {"logs": logs, "job_id": create.job_id, "running": False}
        self.report_job_submission(SubmittedJobInfo(job, external_jobid=created.name, aux=aux))

    def failed_logs(self, info: SubmittedJobInfo) -> list[str]:
        """The failed job's own logs, which its task stored where a successful job's would be, downloaded
        beside the orchestrator's working directory: Snakemake shows them (--show-failed-logs) and the
        logger plugin keeps their tail, as when a job runs here. What cannot be had is left out (a
        warning)."""
        from arc_reactor.adapters.storage import Storage, make_client
        from arc_reactor.settings import get_settings

        aux = info.aux or {}
        found: list[str] = []
        storage = None
        for name, uri in aux.get("logs", []):
            local = Path(".snakemake", "arc-failed", str(aux.get("job_id")), name)
            try:
                storage = storage or Storage(make_client(get_settings()))
                storage.download_file(uri, local)
            except Exception as exc:  # noqa: BLE001 - the error stands without its log
                self.logger.warning(f"log {name} of the failed job not available: {exc}")
                continue
            found.append(local.as_posix())
        return found

    async def check_active_jobs(
        self, active_jobs: list[SubmittedJobInfo]
    ) -> AsyncGenerator[SubmittedJobInfo, None]:
        """One ListJobs of the run's active task jobs; a job not in it is read once for its outcome."""
        from arc_reactor.adapters.batch import ACTIVE_JOBS_FILTER
        from arc_reactor.core.ids import job_id_of
        from arc_reactor.core.labels import run_label_filter
        from arc_reactor.core.snakemake_batch import Outage
        from arc_reactor.errors import ArcError, BatchJobNotFoundError

        if not active_jobs:
            return
        try:
            async with self.status_rate_limiter:
                listed = self.batch.list_jobs(
                    f"{run_label_filter(self.run_env.run_id)} AND {ACTIVE_JOBS_FILTER}",
                    limit=max(1000, 2 * len(active_jobs)),
                )
        except ArcError as exc:  # Batch unreachable for now: every job is still active, check again later
            if self.outage.failed(time.monotonic()):
                for info in active_jobs:
                    msg = f"Batch could not be asked about this job for {self.outage.limit:.0f} s: {exc}"
                    self.report_job_error(info, msg=msg)
                return
            self.logger.warning(f"could not list the run's Batch jobs: {exc}")
            for info in active_jobs:
                yield info
            return
        self.outage.ok()
        active = {job_id_of(s.name): s for s in listed}
        for info in active_jobs:
            name = str(info.external_jobid)
            if job_id_of(name) in active:
                if active[job_id_of(name)].state == "RUNNING":
                    self._report_running(info, active[job_id_of(name)])
                yield info
                continue
            try:
                async with self.status_rate_limiter:
                    status = self.batch.get_job(name)
            except BatchJobNotFoundError:
                self.report_job_error(info, msg=f"Batch job {name} no longer exists")
                continue
            except ArcError as exc:
                outage = (info.aux if info.aux is not None else {}).setdefault("outage", Outage())
                if outage.failed(time.monotonic()):
                    self.report_job_error(
                        info, msg=f"Batch job {name} could not be read for {outage.limit:.0f} s: {exc}"
                    )
                    continue
                self.logger.warning(f"could not read Batch job {name}: {exc}")
                yield info
                continue
            if status.state in ("SUCCEEDED", "FAILED"):
                self._report_running(info, status)  # it ran, if only between two checks
            if status.state == "SUCCEEDED":
                self.report_job_success(info)
            elif status.state in ("FAILED", "CANCELLED"):
                logs = self.failed_logs(info) if status.state == "FAILED" else []
                self.report_job_error(info, msg=_failure_message(name, status), aux_logs=logs)
            else:  # created but not listed yet, or going away: look again at the next check
                yield info

    def _report_running(self, info: SubmittedJobInfo, status: Any) -> None:
        """Once per job: when Batch started running it (its first RUNNING event; else now), for the ledger's
        start time, which the run's cost estimate counts from (Snakemake's own start is when it submitted
        the job, before Batch found a VM)."""
        aux = info.aux if info.aux is not None else {}
        if aux.get("running"):
            return
        aux["running"] = True
        times = [e.time for e in status.events if e.new_state == "RUNNING" and e.time is not None]
        since = min(times) if times else datetime.now(UTC)
        extra = {
            TASK_JOB: str(info.external_jobid),
            TASK_JOBID: info.job.jobid,
            TASK_RUNNING: since.isoformat(),
        }
        self.logger.info(f"Batch job {info.external_jobid} is running", extra=extra)

    def cancel_jobs(self, active_jobs: list[SubmittedJobInfo]) -> None:
        """Cancel the submitted jobs still going, within CANCEL_DEADLINE_S."""
        deadline = time.monotonic() + CANCEL_DEADLINE_S
        failures: list[str] = []
        self.batch.cancel_each(
            [str(j.external_jobid) for j in active_jobs],
            failures,
            out_of_time=lambda: time.monotonic() > deadline,
            late=f"the {CANCEL_DEADLINE_S:.0f} s cancel deadline had passed",
        )
        for failure in failures:
            self.logger.warning(f"task job not cancelled: {failure}")


def _local_logs(job: JobExecutorInterface) -> list[tuple[str, str]]:
    """The job's log files in storage, as (the local copy its task writes, relative to the working
    directory; the object's URI). A log kept out of storage (`local()`) cannot reach the orchestrator."""
    here = Path.cwd()
    out: list[tuple[str, str]] = []
    for item in job.log:
        if not getattr(item, "is_storage", False):
            continue
        path = Path(str(item))
        if path.is_absolute():
            if not path.is_relative_to(here):
                continue
            path = path.relative_to(here)
        out.append((path.as_posix(), str(item.storage_object.query)))
    return out


def _failure_message(name: str, status: Any) -> str:
    from arc_reactor.core.batch_policy import exit_code_cause

    if status.state == "CANCELLED":
        return f"Batch job {name} was cancelled"
    code = status.exit_code
    cause = exit_code_cause(code) if code is not None else None
    retried = len(status.exit_codes) - 1
    tries = f" after {retried} Batch retr{'y' if retried == 1 else 'ies'}" if retried > 0 else ""
    if cause:
        return f"Batch job {name} failed: {cause.replace('_', ' ')} (exit code {code}){tries}"
    if code is not None:
        return f"Batch job {name} failed with exit code {code}{tries}"
    last = status.events[-1].description if status.events else "no reason given"
    return f"Batch job {name} failed: {last}"

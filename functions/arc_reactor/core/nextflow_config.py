"""Our Nextflow config for one run (pure): Groovy literals, the template render, the task jobs' labels and
the google-batch executor settings. orchestrator/nextflow.config.template says where each value goes and
why the order of its sections matters (a later assignment wins, also over an included file)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from arc_reactor.core.batch_policy import TASK_RETRIED_EXIT_STATUSES
from arc_reactor.core.engine_command import Workspace
from arc_reactor.core.job_env import JobEnv
from arc_reactor.core.labels import APP, sanitize_label_key, sanitize_label_value
from arc_reactor.core.registry import ERROR_ACTIONS, ErrorStrategy
from arc_reactor.core.trace_file import TRACE_FIELDS
from arc_reactor.errors import OrchestrationError

if TYPE_CHECKING:
    from arc_reactor.settings import Settings

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")
_ANY_BRACES = re.compile(r"\{\{.*?\}\}", re.DOTALL)


@dataclass(frozen=True)
class TaskPolicy:
    """How Nextflow runs the run's task jobs on Batch (the sprint plan's executor blocks, from settings)."""

    project: str
    location: str
    service_account: str = ""
    spot: bool = True
    max_spot_attempts: int = 3
    boot_disk_gb: int = 100
    network: str = ""
    subnetwork: str = ""
    use_private_address: bool = False
    max_retries: int = 3
    max_cpus: int = 36
    max_memory_gb: int = 500
    max_time_h: int = 48

    @classmethod
    def from_settings(cls, settings: Settings) -> TaskPolicy:
        """The policy the deployment's settings describe."""
        return cls(
            project=settings.project, location=settings.region,
            service_account=settings.task_service_account, spot=settings.batch_spot,
            max_spot_attempts=settings.max_spot_attempts, boot_disk_gb=settings.boot_disk_gb,
            network=settings.network, subnetwork=settings.subnetwork,
            use_private_address=settings.no_external_ip, max_retries=settings.task_max_retries,
            max_cpus=settings.task_max_cpus, max_memory_gb=settings.task_max_memory_gb,
            max_time_h=settings.task_max_time_h,
        )  # fmt: skip


def groovy_string(value: str) -> str:
    """A Groovy single-quoted string literal: no interpolation, quotes and backslashes escaped."""
    escaped = value.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n").replace("\r", "\\r")
    return f"'{escaped}'"


def groovy_optional(value: str) -> str:
    """A string literal, or `null` (Nextflow's "not set") for an empty value."""
    return groovy_string(value) if value else "null"


def groovy_bool(value: bool) -> str:
    """`true` or `false`."""
    return "true" if value else "false"


def groovy_int(value: int) -> str:
    """An integer literal (refuses anything that is not a plain int, e.g. a bool)."""
    if type(value) is not int:
        raise TypeError(f"not an int: {value!r}")
    return str(value)


def groovy_int_list(values: Sequence[int]) -> str:
    """A Groovy list literal of integers, e.g. `[50001, 50002]`."""
    return "[" + ", ".join(groovy_int(v) for v in values) + "]"


def groovy_map(values: Mapping[str, str]) -> str:
    """A Groovy map literal of strings, e.g. `['app': 'arc-reactor']`."""
    if not values:
        return "[:]"
    return "[" + ", ".join(f"{groovy_string(k)}: {groovy_string(v)}" for k, v in values.items()) + "]"


def render_template(template: str, values: Mapping[str, str]) -> str:
    """Fill `{{NAME}}` placeholders with Groovy literals; any placeholder left unfilled is an error."""
    names = set(_PLACEHOLDER.findall(template))
    missing = sorted(names - set(values))
    if missing:
        raise OrchestrationError("config_template", f"no value for placeholder(s): {', '.join(missing)}")
    malformed = [m for m in _ANY_BRACES.findall(template) if not _PLACEHOLDER.fullmatch(m)]
    if malformed:
        raise OrchestrationError("config_template", f"malformed placeholder(s): {', '.join(malformed)}")
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def resource_labels(env: JobEnv) -> dict[str, str]:
    """Labels for every task job: the job's own (ARC_RUN_LABELS) with app and run-id always set."""
    labels = {sanitize_label_key(k): sanitize_label_value(v) for k, v in env.labels.items()}
    return {**labels, "app": APP, "run-id": sanitize_label_value(env.run_id)}


def error_strategy_values(policy: TaskPolicy, pipeline: ErrorStrategy) -> dict[str, str]:
    """The errorStrategy closure's parts: infrastructure failures (as Nextflow reports them,
    core/batch_policy.py) are retried, then the pipeline's own rule decides. maxRetries is the sum of both
    budgets, so an infrastructure retry never uses up one the pipeline allowed for itself."""
    if pipeline.otherwise not in ERROR_ACTIONS:
        raise ValueError(f"unknown errorStrategy action {pipeline.otherwise!r}")
    return {
        "INFRA_EXIT_STATUSES": groovy_int_list(TASK_RETRIED_EXIT_STATUSES),
        "PIPELINE_RETRY_EXIT_CODES": groovy_int_list(pipeline.retry_exit_codes),
        "PIPELINE_OTHERWISE": groovy_string(pipeline.otherwise),
        "MAX_RETRIES": groovy_int(policy.max_retries + pipeline.max_retries),
    }


def _executor_values(policy: TaskPolicy) -> dict[str, str]:
    return {
        "MAX_CPUS": groovy_int(policy.max_cpus),
        "MAX_MEMORY": f"{groovy_int(policy.max_memory_gb)}.GB",
        "MAX_TIME": f"{groovy_int(policy.max_time_h)}.h",
        "PROJECT": groovy_string(policy.project),
        "LOCATION": groovy_string(policy.location),
        "TASK_SERVICE_ACCOUNT": groovy_optional(policy.service_account),
        "SPOT": groovy_bool(policy.spot),
        "MAX_SPOT_ATTEMPTS": groovy_int(policy.max_spot_attempts),
        "BOOT_DISK": f"{groovy_int(policy.boot_disk_gb)}.GB",
        "NETWORK": groovy_optional(policy.network),
        "SUBNETWORK": groovy_optional(policy.subnetwork),
        "USE_PRIVATE_ADDRESS": groovy_bool(policy.use_private_address),
    }


def template_values(
    env: JobEnv,
    ws: Workspace,
    policy: TaskPolicy,
    hook: tuple[str, str],
    user_config: Path | None,
    *,
    pipeline_strategy: ErrorStrategy | None = None,
) -> dict[str, str]:
    """The Groovy literal for every placeholder; `hook` is (python, update_status.py) the hooks run and
    `pipeline_strategy` the pipeline's own errorStrategy from the registry (none: a failure ends the run)."""
    if not env.work_dir:
        raise OrchestrationError("bad_environment", "WORK_DIR is required for Nextflow")
    python, update_status = hook
    return {
        **_executor_values(policy),
        **error_strategy_values(policy, pipeline_strategy or ErrorStrategy()),
        "RUN_ID": groovy_string(env.run_id),
        "WORK_DIR": groovy_string(env.work_dir),
        "RESOURCE_LABELS": groovy_map(resource_labels(env)),
        "PYTHON": groovy_string(python),
        "UPDATE_STATUS": groovy_string(update_status),
        "TERMINATED_MARKER": groovy_string(str(ws.terminated_marker)),
        "TRACE_FILE": groovy_string(str(ws.trace)),
        "TRACE_FIELDS": groovy_string(",".join(TRACE_FIELDS)),
        "TIMELINE_FILE": groovy_string(str(ws.timeline)),
        "REPORT_FILE": groovy_string(str(ws.report)),
        "DAG_FILE": groovy_string(str(ws.dag)),
        # nf-core's idiom for an optional include: /dev/null when there is nothing to include
        "USER_CONFIG": groovy_string(str(user_config) if user_config else "/dev/null"),
    }

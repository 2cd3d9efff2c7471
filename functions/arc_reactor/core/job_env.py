"""The orchestrator job's environment: one typed contract with one writer and one reader (pure).

The job spec (core/jobspec.py) writes it with `JobEnv.to_env()`; the orchestrator inside the Batch job
reads it back with `JobEnv.from_env(os.environ)`. Adding a field here adds it to both sides at once, and a
round-trip property test holds them together (tests/unit/test_job_env.py), so a value the submitter
decides (a manifest's `profile`, say) cannot be validated, stored and then silently never reach the engine.

The deployment settings the orchestrator needs (database, runs bucket, task-job policy) travel beside it as
ARC_* variables that `Settings` reads back (core/jobspec.py `deployment_env`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from arc_reactor.core.engines import ENGINE_NAMES, traits
from arc_reactor.core.layout import split_gs_uri
from arc_reactor.errors import OrchestrationError

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"", "0", "false", "no", "off"})
# Set by Batch on every task attempt (0 first); read, never written by us.
RETRY_ATTEMPT_VAR = "BATCH_TASK_RETRY_ATTEMPT"


@dataclass(frozen=True)
class JobEnv:
    """Everything one run's orchestrator job is told about the run. Field metadata names the variable."""

    run_id: str = field(metadata={"var": "RUN_ID"})
    pipeline: str = field(metadata={"var": "PIPELINE"})
    pipeline_version: str = field(metadata={"var": "PIPELINE_VERSION"})
    engine: str = field(metadata={"var": "ENGINE"})
    config_uri: str = field(metadata={"var": "CONFIG_GCS_PATH", "gs": True})  # "" when the bundle has none
    params_uri: str = field(metadata={"var": "PARAMS_GCS_PATH", "gs": True})
    work_dir: str = field(default="", metadata={"var": "WORK_DIR", "gs": True})
    is_recovery: bool = field(default=False, metadata={"var": "IS_RECOVERY"})
    parent_session_id: str = field(default="", metadata={"var": "PARENT_SESSION_ID"})
    profile: str = field(default="", metadata={"var": "PROFILE"})
    cache_dir: str = field(default="", metadata={"var": "CACHE_DIR", "gs": True})
    logs_dir: str = field(default="", metadata={"var": "LOGS_DIR", "gs": True})
    results_dir: str = field(default="", metadata={"var": "RESULTS_DIR", "gs": True})
    # The job's Batch labels; the orchestrator stamps them on every task job (Nextflow resourceLabels).
    labels: Mapping[str, str] = field(default_factory=dict, metadata={"var": "ARC_RUN_LABELS"})
    # Nextflow's token for reporting the run to runs_api's Tower routes (core/tower.run_token), "" for others.
    tower_token: str = field(default="", metadata={"var": "TOWER_ACCESS_TOKEN"})
    retry_attempt: int = field(default=0, metadata={"var": RETRY_ATTEMPT_VAR, "read_only": True})

    @property
    def resume(self) -> bool:
        """Resume instead of starting over: a recovery run, or Batch retrying this task (e.g. spot)."""
        return self.is_recovery or self.retry_attempt > 0

    def to_env(self) -> dict[str, str]:
        """The variables for the Batch job spec (empty optional values are left out)."""
        out: dict[str, str] = {}
        for f in fields(self):
            if f.metadata.get("read_only"):
                continue
            value: Any = getattr(self, f.name)
            if isinstance(value, bool):
                out[f.metadata["var"]] = "true" if value else "false"
            elif isinstance(value, Mapping):
                if value:
                    out[f.metadata["var"]] = json.dumps(dict(value), sort_keys=True, separators=(",", ":"))
            elif value:
                out[f.metadata["var"]] = str(value)
        return out

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> JobEnv:
        """Read and check the environment; an OrchestrationError (bad_environment) names the variable."""

        def get(key: str) -> str:
            return environ.get(key, "").strip()

        missing = [k for k in ("RUN_ID", "PIPELINE", "PIPELINE_VERSION", "ENGINE") if not get(k)]
        if missing:
            raise _bad(f"missing environment variable(s): {', '.join(missing)}")
        engine = get("ENGINE").lower()
        if engine not in ENGINE_NAMES:
            raise _bad(f"ENGINE must be {' or '.join(ENGINE_NAMES)}, not {engine!r}")
        attempt = get(RETRY_ATTEMPT_VAR) or "0"
        if not attempt.isdigit():
            raise _bad(f"{RETRY_ATTEMPT_VAR} is not a number: {attempt!r}")
        values: dict[str, Any] = {}
        for f in fields(cls):
            var, raw = f.metadata["var"], get(f.metadata["var"])
            if f.name in ("engine", "retry_attempt"):
                continue
            if f.name == "is_recovery":
                values[f.name] = _flag(var, raw)
            elif f.name == "labels":
                values[f.name] = _labels(raw)
            else:
                values[f.name] = _gs(var, raw) if f.metadata.get("gs") else raw
        if not values["params_uri"]:
            raise _bad("PARAMS_GCS_PATH is required")
        if traits(engine).needs_work_dir and not values["work_dir"]:
            raise _bad("WORK_DIR is required")
        return cls(engine=engine, retry_attempt=int(attempt), **values)


def env_from(environ: Mapping[str, str]) -> JobEnv:
    """`JobEnv.from_env` (the orchestrator's reading of its job's environment)."""
    return JobEnv.from_env(environ)


def job_env_vars() -> frozenset[str]:
    """Every variable name the contract uses, one per field."""
    return frozenset(f.metadata["var"] for f in fields(JobEnv))


def _bad(message: str) -> OrchestrationError:
    return OrchestrationError("bad_environment", message)


def _flag(name: str, value: str) -> bool:
    low = value.lower()
    if low in _TRUE or low in _FALSE:
        return low in _TRUE
    raise _bad(f"{name} must be true or false, not {value!r}")


def _gs(name: str, value: str) -> str:
    if not value:
        return ""
    try:
        split_gs_uri(value)
    except ValueError as exc:
        raise _bad(f"{name}: {exc}") from exc
    return value


def _labels(raw: str) -> dict[str, str]:
    if not raw:
        return {}
    try:
        doc = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise _bad(f"ARC_RUN_LABELS is not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise _bad("ARC_RUN_LABELS must be a JSON object")
    return {str(k): str(v) for k, v in doc.items()}

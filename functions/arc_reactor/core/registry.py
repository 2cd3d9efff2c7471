"""The pipeline registry (an allowlist), read from the YAML file shipped in the package."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from arc_reactor.core.engines import ENGINE_NAMES

REGISTRY_FILE = Path(__file__).resolve().parent.parent / "registry" / "pipelines.yaml"


@dataclass(frozen=True)
class HeadJob:
    """Size of the orchestrator job on Batch."""

    cpu_milli: int = 2000
    memory_mib: int = 4096
    machine_type: str = "e2-standard-2"


ERROR_ACTIONS = ("terminate", "finish", "ignore")


@dataclass(frozen=True)
class ErrorStrategy:
    """A Nextflow pipeline's own rule for a task that fails with an exit code of its own (not the
    infrastructure's), as its config declares it: nf-core's conf/base.config retries the exit codes of a task
    killed for lack of memory or time (with more resources per attempt), then finishes the run."""

    retry_exit_codes: tuple[int, ...] = ()
    max_retries: int = 0
    otherwise: str = "terminate"


@dataclass(frozen=True)
class PipelineSpec:
    """One registry entry."""

    name: str
    engine: str
    source: str
    revisions: tuple[str, ...]
    default_revision: str
    description: str = ""
    default_profile: str | None = None
    params_schema: str | None = None
    input_schema: str | None = None
    schema_base: str | None = None
    head_job: HeadJob = field(default_factory=HeadJob)
    # URL schemes a samplesheet may name files by: gs:// always; https:// (public hosts only) by opt-in.
    input_url_schemes: tuple[str, ...] = ("gs",)
    # Nextflow only: the pipeline's own errorStrategy, which ours composes with (core/nextflow_config.py).
    error_strategy: ErrorStrategy = field(default_factory=ErrorStrategy)
    # A parameter the params schema does not list: a warning (nf-schema's default), or with this set (the
    # pipeline's validation.failUnrecognisedParams), a reason to refuse the bundle.
    fail_unrecognised_params: bool = False

    @property
    def local_path(self) -> str | None:
        """For `path:` sources, the folder relative to the pipelines root."""
        return self.source[5:] if self.source.startswith("path:") else None


@dataclass(frozen=True)
class Registry:
    """All pipelines that may run."""

    version: int
    pipelines: dict[str, PipelineSpec]

    def get(self, name: str) -> PipelineSpec | None:
        """The entry for `name`, or None."""
        return self.pipelines.get(name)


def parse_registry(doc: dict[str, Any]) -> Registry:
    """Build a Registry from the parsed YAML; raise ValueError naming the entry and field on bad input."""
    if not isinstance(doc, dict) or not isinstance(doc.get("pipelines"), dict):
        raise ValueError("pipeline registry: top level must be a mapping with a `pipelines` mapping")
    out: dict[str, PipelineSpec] = {}
    for name, entry in doc["pipelines"].items():
        if not isinstance(entry, dict):
            raise ValueError(f"pipeline registry: {name}: entry must be a mapping")
        engine = entry.get("engine")
        if engine not in ENGINE_NAMES:
            raise ValueError(f"pipeline registry: {name}: engine must be one of {sorted(ENGINE_NAMES)}")
        revisions = tuple(str(r) for r in entry.get("revisions") or ())
        if not revisions:
            raise ValueError(f"pipeline registry: {name}: revisions must list at least one revision")
        default_rev = str(entry.get("default_revision") or revisions[0])
        if default_rev not in revisions:
            raise ValueError(f"pipeline registry: {name}: default_revision {default_rev} is not in revisions")
        out[name] = PipelineSpec(
            name=name,
            engine=engine,
            source=str(entry["source"]),
            revisions=revisions,
            default_revision=default_rev,
            description=str(entry.get("description", "")),
            default_profile=entry.get("default_profile"),
            params_schema=entry.get("params_schema"),
            input_schema=entry.get("input_schema"),
            schema_base=entry.get("schema_base"),
            head_job=HeadJob(**(entry.get("head_job") or {})),
            input_url_schemes=_url_schemes(name, engine, entry.get("input_url_schemes")),
            error_strategy=_error_strategy(name, entry.get("error_strategy")),
            fail_unrecognised_params=_flag(name, entry, "fail_unrecognised_params"),
        )
    return Registry(version=int(doc.get("version", 1)), pipelines=out)


_KNOWN_SCHEMES = ("gs", "https")


def _url_schemes(name: str, engine: str, value: Any) -> tuple[str, ...]:
    schemes = tuple(str(s).lower() for s in (value or ["gs"]))
    unknown = sorted(set(schemes) - set(_KNOWN_SCHEMES))
    if unknown or "gs" not in schemes:
        raise ValueError(f"pipeline registry: {name}: input_url_schemes must include gs and may add https")
    if "https" in schemes and engine != "nextflow":
        # Nextflow reads https:// itself; a Snakemake run's inputs are staged from gs:// only (the
        # orchestrator's stage_inputs), so an https:// cell would reach the Snakefile as a path that is not.
        raise ValueError(
            f"pipeline registry: {name}: input_url_schemes may add https for Nextflow pipelines only "
            f"({engine} pipelines read gs:// inputs)"
        )
    return schemes


def _flag(name: str, entry: dict[str, Any], key: str) -> bool:
    value = entry.get(key, False)
    if not isinstance(value, bool):
        raise ValueError(f"pipeline registry: {name}: {key} must be true or false")
    return value


def _exit_codes(name: str, items: Any) -> tuple[int, ...]:
    """Exit codes given as integers or inclusive ranges `"130-145"`, sorted and without repeats."""
    if not isinstance(items, list):
        raise ValueError(f"pipeline registry: {name}: error_strategy.retry_exit_codes must be a list")
    codes: set[int] = set()
    for item in items:
        text = str(item).strip()
        low, _, high = text.partition("-")
        if not (low.isdigit() and (not high or high.isdigit())) or int(high or low) < int(low):
            raise ValueError(
                f"pipeline registry: {name}: error_strategy.retry_exit_codes: {item!r} is not an exit code "
                "or a range like 130-145"
            )
        codes.update(range(int(low), int(high or low) + 1))
    if any(code > 255 for code in codes):
        raise ValueError(f"pipeline registry: {name}: error_strategy.retry_exit_codes must be 0-255")
    return tuple(sorted(codes))


def _error_strategy(name: str, value: Any) -> ErrorStrategy:
    if value is None:
        return ErrorStrategy()
    if not isinstance(value, dict) or set(value) - {"retry_exit_codes", "max_retries", "otherwise"}:
        raise ValueError(
            f"pipeline registry: {name}: error_strategy takes retry_exit_codes, max_retries and otherwise"
        )
    otherwise = value.get("otherwise", "terminate")
    if otherwise not in ERROR_ACTIONS:
        raise ValueError(
            f"pipeline registry: {name}: error_strategy.otherwise must be one of {ERROR_ACTIONS}"
        )
    retries = value.get("max_retries", 0)
    if type(retries) is not int or not 0 <= retries <= 10:
        raise ValueError(f"pipeline registry: {name}: error_strategy.max_retries must be an integer 0-10")
    return ErrorStrategy(_exit_codes(name, value.get("retry_exit_codes", [])), retries, otherwise)


@lru_cache(maxsize=4)
def load_registry(path: Path = REGISTRY_FILE) -> Registry:
    """Read and parse the registry file (cached)."""
    with path.open(encoding="utf-8") as fh:
        return parse_registry(yaml.safe_load(fh))

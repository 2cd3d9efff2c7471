"""What differs between the workflow engines, as data (pure). The orchestrator program's Engine
implementations (orchestrator/engines.py) hold the behaviour; everything else asks these traits instead of
comparing engine names."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EngineTraits:
    """One engine's facts that the functions, the job spec and the orchestrator rely on."""

    name: str
    needs_work_dir: bool  # WORK_DIR is the engine's own -work-dir (Snakemake syncs one when given)
    keeps_resume_cache: bool  # a recovery needs CACHE_DIR too (Nextflow's cloud cache)
    reads_nextflow_config: bool  # a bundle's nextflow.config means something to it
    runs_remote_source: bool  # runs a project name at a revision (else only a `path:` source)


ENGINES: dict[str, EngineTraits] = {
    "nextflow": EngineTraits(
        "nextflow",
        needs_work_dir=True,
        keeps_resume_cache=True,
        reads_nextflow_config=True,
        runs_remote_source=True,
    ),
    "snakemake": EngineTraits(
        "snakemake",
        needs_work_dir=False,
        keeps_resume_cache=False,
        reads_nextflow_config=False,
        runs_remote_source=False,
    ),
}
ENGINE_NAMES: tuple[str, ...] = tuple(ENGINES)


def traits(engine: str) -> EngineTraits:
    """The traits of a known engine; KeyError for another name (callers validate names first)."""
    return ENGINES[engine]

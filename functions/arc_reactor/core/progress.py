"""A run's progress: the task counts kept on the run (runs.progress) and sent on its SSE stream (pure).

One shape for both engines: per status counts of the run's tasks (pending, submitted, running, succeeded,
cached, failed, aborted, ignored), `retries` (attempts beyond a task's first), `total` (the tasks known:
for Nextflow those it has created so far, its DAG unfolding as it goes; for Snakemake every job of the
DAG, planned ones included), `done` (succeeded + cached), and the same per process (Nextflow) or rule
(Snakemake) under `processes`. Each engine's reporter builds it (core/tower.py from Nextflow's
ProgressRecord, the Snakemake logger plugin from its job events); `normalize` gives every count and the
sums, so readers never guess a missing key.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

STATES = ("pending", "submitted", "running", "succeeded", "cached", "failed", "aborted", "ignored")
COUNTS = (*STATES, "retries")
MAX_PROCESSES = 500  # a workflow with more processes keeps the first ones: the ledger has them all
MAX_COUNT = 10**9


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return 0
    try:
        number = int(value)
    except ValueError:
        return 0
    return min(max(number, 0), MAX_COUNT)


def counts(record: Mapping[str, Any]) -> dict[str, int]:
    """Every count of a record (missing or malformed ones 0), with `total` and `done`."""
    out = {key: _count(record.get(key)) for key in COUNTS}
    out["total"] = sum(out[key] for key in STATES)
    out["done"] = out["succeeded"] + out["cached"]
    return out


def normalize(
    source: str, totals: Mapping[str, Any], processes: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """A progress document: the run's counts and each process's (by name, in the order given)."""
    rows = [
        {"name": str(p["name"])[:255], **counts(p)}
        for p in processes[:MAX_PROCESSES]
        if isinstance(p, Mapping) and p.get("name")
    ]
    return {"source": source, **counts(totals), "processes": rows}


def summed(source: str, processes: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """A progress document whose run counts are the sums of its processes' (Snakemake's)."""
    totals = {key: sum(_count(p.get(key)) for p in processes) for key in COUNTS}
    return normalize(source, totals, processes)


def describe(progress: Mapping[str, Any]) -> str:
    """The run's counts in a line: "4 of 5 tasks done (2 cached), 1 running, 1 failed"."""
    c = counts(progress)
    if not c["total"]:
        return "no task yet"
    line = f"{c['done']} of {c['total']} tasks done"
    if c["cached"]:
        line += f" ({c['cached']} cached)"
    extra = [f"{c[key]} {key}" for key in ("running", "submitted", "failed", "aborted", "ignored") if c[key]]
    if c["retries"]:
        extra.append(f"{c['retries']} retried")
    return ", ".join([line, *extra])

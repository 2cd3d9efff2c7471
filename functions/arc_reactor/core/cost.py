"""A run's live cost estimate (pure): durations x the machine price table (registry/prices.yaml).

Counted:
- the head job: the orchestrator VM (its pipeline's `head_job.machine_type`, Spot) from the run's start to
  its end (or now, while it runs), across its attempts; the time up to its last preemption is wasted;
- each task attempt that ran on a VM of its own (a Batch job: Nextflow's google-batch tasks, Snakemake's jobs
  on Batch), from its start to its end (or now), priced by its machine type, Spot or on-demand, in its
  zone's region; an attempt that was preempted is wasted, and counted as a preemption;
- nothing for a cached task (it did not run), nor for a task that ran inside the head job (Snakemake's
  jobs with ARC_SNAKEMAKE_EXECUTOR=local), which the head job's cost covers.

Not counted, and the estimate says so: disks, network, storage, GPUs; tasks whose machine family or region
the table lacks (`unpriced_tasks`: never a guess). A machine type is priced by its vCPUs and memory, as
Compute Engine bills these families: predefined (n2-standard-8) and custom (n2-custom-6-24576) alike.
What the run was billed comes from the billing export, by its `run-id` label (docs/cost.md).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

PRICES_FILE = Path(__file__).resolve().parent.parent / "registry" / "prices.yaml"
PRICE_KEYS = ("vcpu", "gib", "spot_vcpu", "spot_gib")
# GiB of memory per vCPU of the predefined shapes (N1 has its own ratios).
_GIB_PER_VCPU = {
    "standard": {"n1": 3.75, "*": 4.0},
    "highmem": {"n1": 6.5, "*": 8.0},
    "highcpu": {"n1": 0.9, "*": 1.0},
}
_PREDEFINED = re.compile(r"([a-z][a-z0-9]*)-(standard|highmem|highcpu)-(\d{1,3})")
_CUSTOM = re.compile(r"(?:([a-z][a-z0-9]*)-)?custom-(\d{1,3})-(\d{3,7})(?:-ext)?")
HOUR = 3600.0


class PriceTableInvalid(ValueError):
    """A price table file that cannot be used (the message names the file and the problem)."""


@dataclass(frozen=True)
class Machine:
    """What Compute Engine bills a VM by."""

    family: str
    vcpus: int
    gib: float


@dataclass(frozen=True)
class PriceTable:
    """USD (or `currency`) per vCPU-hour and GiB-hour, per region and family."""

    version: int
    as_of: str
    currency: str
    regions: Mapping[str, Mapping[str, Mapping[str, float]]]

    def hourly(self, machine: Machine, region: str, spot: bool) -> float | None:
        """The machine's price per hour in `region`, or None when the table lacks its family or region."""
        family = self.regions.get(region, {}).get(machine.family)
        if family is None:
            return None
        prefix = "spot_" if spot else ""
        return machine.vcpus * family[f"{prefix}vcpu"] + machine.gib * family[f"{prefix}gib"]

    @property
    def label(self) -> str:
        return f"v{self.version} ({self.as_of})"


def parse_machine(name: str | None) -> Machine | None:
    """A machine type's family, vCPUs and memory (predefined or custom); None for what is not priced."""
    if not name:
        return None
    if m := _PREDEFINED.fullmatch(name):
        family, shape, vcpus = m.group(1), m.group(2), int(m.group(3))
        ratio = _GIB_PER_VCPU[shape]
        return Machine(family, vcpus, vcpus * ratio.get(family, ratio["*"]))
    if m := _CUSTOM.fullmatch(name):
        return Machine(m.group(1) or "n1", int(m.group(2)), int(m.group(3)) / 1024)
    return None


def _price_row(path: Path, where: str, row: Any) -> dict[str, float]:
    if not isinstance(row, Mapping) or set(row) != set(PRICE_KEYS):
        raise PriceTableInvalid(f"{path}: {where} must have exactly {', '.join(PRICE_KEYS)}")
    out = {}
    for key in PRICE_KEYS:
        value = row[key]
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 100:
            raise PriceTableInvalid(f"{path}: {where}.{key} must be a price per hour (a number, 0-100)")
        out[key] = float(value)
    return out


@lru_cache(maxsize=4)
def load_prices(path: str = "") -> PriceTable:
    """The price table at `path` (settings.price_table), else the packaged registry/prices.yaml."""
    file = Path(path or PRICES_FILE)
    try:
        doc = yaml.safe_load(file.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise PriceTableInvalid(f"{file}: cannot be read as YAML: {exc}") from exc
    if not isinstance(doc, Mapping) or not isinstance(doc.get("regions"), Mapping):
        raise PriceTableInvalid(f"{file}: must be a mapping with `regions`")
    version, as_of = doc.get("version"), doc.get("as_of")
    if isinstance(version, bool) or not isinstance(version, int) or not isinstance(as_of, str):
        raise PriceTableInvalid(f"{file}: needs an integer `version` and an `as_of` date")
    regions: dict[str, dict[str, dict[str, float]]] = {}
    for region, families in doc["regions"].items():
        if not isinstance(families, Mapping):
            raise PriceTableInvalid(f"{file}: regions.{region} must map machine families to prices")
        where = f"regions.{region}"
        regions[str(region)] = {str(f): _price_row(file, f"{where}.{f}", row) for f, row in families.items()}
    return PriceTable(version, as_of, str(doc.get("currency") or "USD"), regions)


def region_of(zone: str | None, default: str) -> str:
    """A zone's region (us-central1-a -> us-central1); `default` when there is no zone."""
    if zone and re.fullmatch(r"[a-z]+-[a-z]+\d+-[a-z]", zone):
        return zone.rsplit("-", 1)[0]
    return default


@dataclass(frozen=True)
class TaskUsage:
    """Task attempts of one kind (grouped by the ledger query): how many, and their seconds summed."""

    machine_type: str | None
    zone: str | None
    spot: bool | None
    preempted: bool
    cached: bool
    own_vm: bool  # ran as a Batch job of its own (it has a native id), not inside the head job
    attempts: int
    seconds: float


@dataclass(frozen=True)
class HeadUsage:
    """The head job: its machine, how long it has run (all attempts), and how much of it before its last
    preemption."""

    machine_type: str
    seconds: float
    wasted_seconds: float
    preemptions: int


def _money(value: float) -> float:
    return round(value, 4)


def task_cost(
    usage: TaskUsage, table: PriceTable, region: str, default_spot: bool
) -> tuple[float | None, str | None]:
    """What attempts of one kind cost, and why they are not priced (None, reason) when they are not."""
    if usage.cached or not usage.own_vm:
        return 0.0, None
    machine = parse_machine(usage.machine_type)
    if machine is None:
        return None, f"machine type {usage.machine_type or 'unknown'} is not priced"
    where = region_of(usage.zone, region)
    spot = default_spot if usage.spot is None else usage.spot
    hourly = table.hourly(machine, where, spot)
    if hourly is None:
        return None, f"no price for {machine.family} in {where} (price table {table.label})"
    return hourly * usage.seconds / HOUR, None


def estimate(
    tasks: Iterable[TaskUsage],
    head: HeadUsage | None,
    table: PriceTable,
    region: str,
    *,
    default_spot: bool,
    running: bool,
) -> dict[str, Any]:
    """The run's `cost.estimate`."""
    tasks_total = wasted = 0.0
    preemptions = unpriced = 0
    reasons: set[str] = set()
    for usage in tasks:
        cost, reason = task_cost(usage, table, region, default_spot)
        preemptions += usage.attempts if usage.preempted else 0
        if cost is None:
            unpriced += usage.attempts
            reasons.add(str(reason))
            continue
        tasks_total += cost
        wasted += cost if usage.preempted else 0.0
    head_total: float | None = 0.0
    if head is not None:
        machine = parse_machine(head.machine_type)
        hourly = table.hourly(machine, region, spot=True) if machine else None
        if hourly is None:
            head_total = None
            reasons.add(f"head job machine type {head.machine_type} has no price in {region}")
        else:
            head_total = hourly * head.seconds / HOUR
            wasted += hourly * head.wasted_seconds / HOUR
        preemptions += head.preemptions
    return {
        "currency": table.currency,
        "total": _money(tasks_total + (head_total or 0.0)),
        "head": None if head_total is None else _money(head_total),
        "tasks": _money(tasks_total),
        "wasted": _money(wasted),
        "preemptions": preemptions,
        "unpriced_tasks": unpriced,
        "not_priced": sorted(reasons),
        "running": running,
        "prices": table.label,
        "excludes": "disks, network, storage and GPUs",
    }


def attempt_cost(
    row: Mapping[str, Any], table: PriceTable, region: str, default_spot: bool, now: datetime
) -> float | None:
    """What one ledger row (a task attempt) cost so far; None when it is not priced."""
    started, status = row.get("started_at"), row.get("status")
    end = row.get("completed_at") or (now if status == "running" else None)
    if status == "cached" or started is None or end is None:
        return 0.0
    usage = TaskUsage(
        row.get("machine_type"), row.get("zone"), row.get("spot"), bool(row.get("preempted")), False,
        row.get("native_id") is not None, 1, max((end - started).total_seconds(), 0.0),
    )  # fmt: skip
    cost, _ = task_cost(usage, table, region, default_spot)
    return None if cost is None else _money(cost)

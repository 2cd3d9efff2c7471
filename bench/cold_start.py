"""Cold start: in a fresh process, the time to `import main` and to handle a first real event, per function.

Real first events (not events that touch nothing): submit_bundle gets the finalize event of a real demo
bundle (read, validated, recorded, job created); reconcile_batch_event a RUNNING notification of a real held
job of a submitted run; sweep_stale_runs a scheduled tick with STALE_RUNS runs gone stale (each checked
against Batch and moved to running); runs_api GET /runs over a ledger holding those runs.

Floors, measured in the same run: for the import, a bare `import functions_framework` in a fresh process
(`ratio_to_floor` = bare / import main; the target is import main <= 1.1x the bare import, i.e. ratio
>= 0.91); for each entry point, the same kind of real event handled a second time in the same process (the
warm cost), so `first_event_s` minus `warm_event_s` is what a cold instance adds. Medians of BENCH_REPEAT
fresh processes. Prints one JSON line."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from datetime import UTC, datetime
from typing import Any

from _parts import ROOT, Parts

REPEAT = int(os.environ.get("BENCH_REPEAT", "5"))
STALE_RUNS = 5
TOPIC = "projects/arc-bench/topics/batch"

BARE_IMPORT = """
import time
t = time.perf_counter()
import functions_framework
print(time.perf_counter() - t)
"""

IMPORT_ONLY = """
import sys, time
sys.path.insert(0, {functions!r})
t = time.perf_counter()
import main
print(time.perf_counter() - t)
"""

EVENTS = """
import json, sys, time
sys.path.insert(0, {functions!r})
t0 = time.perf_counter()
from functions_framework import create_app
app = create_app({target!r}, {main!r}, {signature!r}).test_client()
t1 = time.perf_counter()
statuses, seconds = [], []
for step in json.loads({steps!r}):
    if step.get("sql"):  # untimed set-up between the first and the second event
        from sqlalchemy import create_engine, text
        with create_engine({database_url!r}).begin() as conn:
            conn.execute(text(step["sql"]))
    sent = time.perf_counter()
    if step["kind"] == "http":
        resp = app.get(step["path"])
    else:
        from cloudevents.conversion import to_binary
        from cloudevents.http import CloudEvent
        headers, body = to_binary(CloudEvent(*step["event"]))
        resp = app.post("/", headers=headers, data=body)
    seconds.append(time.perf_counter() - sent)
    statuses.append(resp.status_code)
print(json.dumps({{"statuses": statuses, "load_s": t1 - t0, "first_event_s": seconds[0],
                  "warm_event_s": seconds[1], "total_s": t1 - t0 + seconds[0]}}))
"""


def _run(code: str, env: dict[str, str]) -> str:
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True, timeout=120
    )
    return out.stdout.strip().splitlines()[-1]


class Fixtures:
    """Real things for first events to touch: bundles in the inbox, runs with held Batch jobs."""

    def __init__(self, parts: Parts) -> None:
        from arc_reactor.adapters.batch import BatchService, make_batch_client
        from arc_reactor.adapters.db import get_engine
        from arc_reactor.adapters.storage import Storage, make_client
        from arc_reactor.settings import get_settings

        self.parts = parts
        self.settings = get_settings()
        self.storage = Storage(make_client(self.settings))
        self.engine = get_engine(self.settings)
        self.client = make_batch_client(self.settings)
        self.batch = BatchService(self.client, self.settings)
        self.bundle = {p.name: p.read_bytes() for p in (ROOT / "examples" / "demo-bundle").iterdir()}
        for path in sorted((ROOT / "examples" / "data").glob("*.fastq.gz")):
            self.storage.upload_file(path, f"gs://arc-demo-data/fastq/{path.name}")
        self.n = 0

    def close(self) -> None:
        self.client.transport.close()

    def manifest_event(self) -> list[Any]:
        """A demo bundle in its own folder; its finalize CloudEvent (attributes, data)."""
        from arc_reactor.core.events import storage_cloudevent

        self.n += 1
        sub = f"cold-{self.n:03d}"
        for name in sorted(self.bundle, key=lambda n: n == "run.yaml"):
            self.storage.write_bytes("arc-inbox", f"{sub}/{name}", self.bundle[name])
        info = self.storage.stat("arc-inbox", f"{sub}/run.yaml")
        assert info is not None
        return list(
            storage_cloudevent(
                {
                    "bucket": "arc-inbox",
                    "name": f"{sub}/run.yaml",
                    "generation": str(info.generation),
                    "size": str(info.size),
                    "timeCreated": datetime.now(UTC).isoformat(),
                }
            )
        )

    def running_run(self) -> tuple[str, str]:
        """A submitted run whose held job Batch now reports RUNNING: (run id, job name)."""
        from arc_reactor.adapters import runs_repo
        from arc_reactor.core.ids import new_run_id
        from arc_reactor.core.job_env import JobEnv
        from arc_reactor.core.jobspec import OrchestratorJob
        from arc_reactor.core.layout import run_locations
        from arc_reactor.core.status import RunStatus

        run_id = new_run_id()
        locs = run_locations("arc-runs", run_id)
        runs_repo.insert_run(
            self.engine,
            {
                "id": run_id, "pipeline": "arc/fastq-stats", "revision": "1.0.0", "engine": "snakemake",
                "lineage_id": run_id, "work_dir": locs.work_dir, "cache_dir": locs.cache_dir,
                "inputs_uri": locs.inputs, "results_uri": locs.results, "logs_uri": locs.logs,
            },
        )  # fmt: skip
        env = JobEnv(run_id, "arc/fastq-stats", "1.0.0", "snakemake", "", locs.inputs + "params.yaml")
        name = self.batch.submit_orchestrator_job(OrchestratorJob(env))
        runs_repo.transition(
            self.engine, run_id, RunStatus.SUBMITTED, "submit", fields={"batch_job_name": name}
        )
        for state in ("SCHEDULED", "RUNNING"):
            self.parts.batch.set_job_state(name, state)
        return run_id, name

    def notification(self, job_name: str) -> list[Any]:
        from arc_reactor.core.events import pubsub_cloudevent

        self.n += 1
        attributes = {"Type": "JOB_STATE_CHANGED", "JobName": job_name, "NewJobState": "RUNNING"}
        return list(pubsub_cloudevent(TOPIC, f"cold-{self.n}", attributes, b"", datetime.now(UTC)))

    def tick(self) -> list[Any]:
        from arc_reactor.core.events import pubsub_cloudevent

        self.n += 1
        return list(pubsub_cloudevent(TOPIC, f"tick-{self.n}", {}, b"{}", datetime.now(UTC)))

    def stale_sql(self, run_ids: list[str]) -> str:
        ids = ", ".join(f"'{r}'" for r in run_ids)  # run ids are [0-9a-z]: no quoting needed
        return f"UPDATE runs SET updated_at = now() - interval '1 day' WHERE id IN ({ids})"

    def steps(self, target: str) -> list[dict[str, Any]]:
        """Two real events of the target's kind: the first (cold) and the second (warm)."""
        if target == "submit_bundle":
            return [{"kind": "cloudevent", "event": self.manifest_event()} for _ in range(2)]
        if target == "reconcile_batch_event":
            return [
                {"kind": "cloudevent", "event": self.notification(self.running_run()[1])} for _ in range(2)
            ]
        if target == "sweep_stale_runs":
            out = []
            for i in range(2):
                ids = [self.running_run()[0] for _ in range(STALE_RUNS)]
                step: dict[str, Any] = {"kind": "cloudevent", "event": self.tick()}
                if i == 0:
                    with self.engine.begin() as conn:
                        from sqlalchemy import text

                        conn.execute(text(self.stale_sql(ids)))
                else:
                    step["sql"] = self.stale_sql(ids)
                out.append(step)
            return out
        return [{"kind": "http", "path": "/runs?page_size=20"} for _ in range(2)]

    def swept(self) -> int:
        """Runs left stale (a sweep that did not do its work shows here)."""
        from sqlalchemy import text

        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    text(
                        "SELECT count(*) FROM runs "
                        "WHERE status = 'submitted' AND updated_at < now() - interval '1 hour'"
                    )
                ).scalar()
                or 0
            )


def main() -> None:
    """Measure and print one JSON line."""
    parts = Parts(run_jobs=False)
    env = {**os.environ, **parts.env}
    functions = str(ROOT / "functions")
    fx = Fixtures(parts)
    signatures = {
        "submit_bundle": "cloudevent",
        "reconcile_batch_event": "cloudevent",
        "sweep_stale_runs": "cloudevent",
        "runs_api": "http",
    }
    try:
        bare, imports = [], []
        for _ in range(REPEAT):  # alternated, so both see the same page cache and load
            bare.append(float(_run(BARE_IMPORT, env)))
            imports.append(float(_run(IMPORT_ONLY.format(functions=functions), env)))
        first: dict[str, dict[str, Any]] = {}
        for target, signature in signatures.items():
            samples = []
            for _ in range(REPEAT):
                code = EVENTS.format(
                    functions=functions,
                    target=target,
                    main=str(ROOT / "functions" / "main.py"),
                    signature=signature,
                    steps=json.dumps(fx.steps(target)),
                    database_url=fx.settings.database_url,
                )
                samples.append(json.loads(_run(code, env)))
            first[target] = {
                "median_load_s": round(statistics.median(s["load_s"] for s in samples), 4),
                "median_first_event_s": round(statistics.median(s["first_event_s"] for s in samples), 4),
                "median_warm_event_s": round(statistics.median(s["warm_event_s"] for s in samples), 4),
                "median_total_s": round(statistics.median(s["total_s"] for s in samples), 4),
                "statuses": sorted({c for s in samples for c in s["statuses"]}),
            }
        left_stale = fx.swept()
    finally:
        fx.close()
        parts.stop()
    main_s, bare_s = statistics.median(imports), statistics.median(bare)
    print(
        json.dumps(
            {
                "bench": "cold_start",
                "repeat": REPEAT,
                "import_main_median_s": round(main_s, 4),
                "import_main_max_s": round(max(imports), 4),
                "floor_import_functions_framework_median_s": round(bare_s, 4),
                "ratio_to_floor": round(bare_s / main_s, 3),
                "target_ratio": round(1 / 1.1, 3),
                "stale_runs_left_unswept": left_stale,
                "first_event": first,
            }
        )
    )


if __name__ == "__main__":
    main()

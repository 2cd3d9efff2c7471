"""Submit on the local stack: N bundles (BENCH_BUNDLES, default 200), each the demo bundle in its own
submission folder, whose finalize CloudEvents are posted to the real submit_bundle functions-framework app
(served over HTTP on loopback), which reads and validates the bundle, checks its gs:// inputs exist, records
the run, copies its inputs, creates the Batch job on the local Batch service and writes its feedback.

Default: one bundle at a time (latency). `--burst`: BENCH_CONCURRENCY (default 8) posted at once
(throughput, as when a lab drops a plate's worth of bundles).

The floor, measured in the same process on the same bundles and the same parts, with the same concurrency:
the minimal I/O of a submission, done directly: one GET per bundle file (a missing optional file is its
404), one stat per gs:// input named in the samplesheet, the input copies and the feedback object (one
write each), one INSERT (autocommit, one round trip) and one CreateJob (the real BatchServiceClient) of a
job request built beforehand. Ours and the floor alternate in chunks so that both see the same load.

Correctness: every bundle must make exactly one run and one job (`runs_per_bundle_wrong`), and a request
that fails is counted (`failed_requests`), never dropped from the figures. Prints one JSON line."""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from _parts import ROOT, Parts, percentile

N = int(os.environ.get("BENCH_BUNDLES", "200"))
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "8"))
CHUNK = 40  # bundles per alternation between ours and the floor
DEMO = ROOT / "examples" / "demo-bundle"
BUNDLE_FILES = ("run.yaml", "samplesheet.csv", "params.yaml", "nextflow.config")


def upload_bundles(storage: Any, n: int) -> list[dict[str, str]]:
    """n copies of the demo bundle in the inbox (manifest last, as a user's upload); their event payloads."""
    bundle = {p.name: p.read_bytes() for p in DEMO.iterdir() if p.is_file()}
    payloads = []
    for i in range(n):
        sub = f"bench-{i:04d}"
        for name in sorted(bundle, key=lambda n: n == "run.yaml"):
            storage.write_bytes("arc-inbox", f"{sub}/{name}", bundle[name])
        info = storage.stat("arc-inbox", f"{sub}/run.yaml")
        payloads.append(
            {
                "bucket": "arc-inbox",
                "name": f"{sub}/run.yaml",
                "generation": str(info.generation),
                "size": str(info.size),
                "timeCreated": datetime.now(UTC).isoformat(),
            }
        )
    return payloads


def run_all(work: Callable[[int], bool], items: range, concurrency: int) -> tuple[float, list[float], int]:
    """work(i) for each item, `concurrency` at a time; (seconds, per-item ms, items that failed)."""
    latencies: list[float] = []
    failed = 0

    def one(i: int) -> None:
        nonlocal failed
        sent = time.perf_counter()
        try:
            ok = work(i)
        except Exception:  # noqa: BLE001 - any failure is counted, not dropped
            ok = False
        latencies.append((time.perf_counter() - sent) * 1000)
        failed += not ok

    started = time.perf_counter()
    if concurrency == 1:
        for i in items:
            one(i)
    else:
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            list(pool.map(one, items))
    return time.perf_counter() - started, latencies, failed


def floor_work(storage: Any, engine: Any, client: Any, requests: list[Any], targets: list[str]):
    """The minimal I/O of submitting bundle i (see the module's docstring)."""
    from google.api_core.exceptions import NotFound
    from sqlalchemy import text

    insert = text(
        "INSERT INTO runs (id, pipeline, revision, engine, lineage_id, status, work_dir, cache_dir, "
        "inputs_uri, results_uri, logs_uri) VALUES (:id, 'arc/fastq-stats', '1.0.0', 'snakemake', :id, "
        "'pending', :w, :w, :w, :w, :w)"
    )
    bucket = storage.client.bucket("arc-inbox")
    runs = storage.client.bucket("arc-runs")
    data = storage.client.bucket("arc-demo-data")

    def work(i: int) -> bool:
        sub = f"bench-{i:04d}/"
        got = {}
        for name in BUNDLE_FILES:
            try:
                got[name] = bucket.blob(sub + name).download_as_bytes(timeout=30)
            except NotFound:
                got[name] = None
        for name in targets:
            data.get_blob(name, timeout=30)
        run_id = requests[i].job_id
        for name in ("samplesheet.csv", "params.yaml"):
            runs.blob(f"floor/{run_id}/inputs/{name}").upload_from_string(got[name], timeout=30)
        bucket.blob(sub + "run.yaml.floor.json").upload_from_string(b"{}", timeout=30)
        with engine.connect() as conn:
            conn.execute(insert, {"id": run_id, "w": f"gs://arc-runs/floor/{run_id}/"})
        client.create_job(request=requests[i], retry=None, timeout=30)
        return True

    return work


def floor_requests(settings: Any, n: int) -> list[Any]:
    """The CreateJob requests of the floor's n runs, built before anything is timed."""
    from arc_reactor.core.ids import new_run_id
    from arc_reactor.core.job_env import JobEnv
    from arc_reactor.core.jobspec import OrchestratorJob, create_job_request

    out = []
    for _ in range(n):
        run_id = new_run_id()
        env = JobEnv(run_id, "arc/fastq-stats", "1.0.0", "snakemake", "", f"gs://arc-runs/floor/{run_id}/")
        out.append(create_job_request(OrchestratorJob(env), settings))
    return out


def check(engine: Any, n: int) -> int:
    """Bundles that did not make exactly one submitted run with its job."""
    from sqlalchemy import text

    with engine.connect() as conn:
        good = conn.execute(
            text(
                "SELECT count(*) FROM (SELECT source_object FROM runs WHERE source_object LIKE 'bench-%' "
                "AND status = 'submitted' AND batch_job_name IS NOT NULL "
                "GROUP BY source_object HAVING count(*) = 1) g"
            )
        ).scalar()
    return n - int(good or 0)


def main() -> None:
    """Measure and print one JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--burst", action="store_true", help=f"post {CONCURRENCY} bundles at a time")
    concurrency = CONCURRENCY if parser.parse_args().burst else 1

    import logging

    import requests
    from sqlalchemy import create_engine

    from arc_reactor.adapters.batch import make_batch_client
    from arc_reactor.adapters.storage import Storage, make_client
    from arc_reactor.core.events import storage_cloudevent
    from arc_reactor.local.functions_host import serve_function, stop_function
    from arc_reactor.logs import setup_logging
    from arc_reactor.settings import get_settings

    parts = Parts()
    setup_logging(logging.INFO, parts.tmp / "functions.log")  # the function's JSON lines, off the terminal
    settings = get_settings()
    storage = Storage(make_client(settings))
    for path in sorted((ROOT / "examples" / "data").glob("*.fastq.gz")):
        storage.upload_file(path, f"gs://arc-demo-data/fastq/{path.name}")
    targets = [f"fastq/sample{s}_R{r}.fastq.gz" for s in (1, 2, 3) for r in (1, 2)]
    payloads = upload_bundles(storage, N)
    engine = create_engine(settings.database_url, isolation_level="AUTOCOMMIT", pool_pre_ping=False)
    client = make_batch_client(settings)
    fn = serve_function("submit_bundle", "cloudevent")
    session = requests.Session()
    session.trust_env = False  # loopback only
    session.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=concurrency))

    def ours(i: int) -> bool:
        attrs, data = storage_cloudevent(payloads[i])
        headers = {f"ce-{k}": v for k, v in attrs.items() if k != "datacontenttype"}
        headers["Content-Type"] = "application/json"
        return session.post(fn.url, data=json.dumps(data), headers=headers, timeout=60).status_code == 200

    floor = floor_work(storage, engine, client, floor_requests(settings, N), targets)
    ours_s = floor_s = 0.0
    lat: list[float] = []
    floor_lat: list[float] = []
    failed = floor_failed = 0
    try:
        for start in range(0, N, CHUNK):
            items = range(start, min(N, start + CHUNK))
            s, latencies, f = run_all(ours, items, concurrency)
            ours_s, failed, lat = ours_s + s, failed + f, lat + latencies
            s, latencies, f = run_all(floor, items, concurrency)
            floor_s, floor_failed, floor_lat = floor_s + s, floor_failed + f, floor_lat + latencies
        wrong = check(engine, N)
        jobs = len(parts.batch.jobs())
    finally:
        stop_function(fn)
        client.transport.close()
        parts.stop()
    rate, floor_rate = N / ours_s, N / floor_s
    print(
        json.dumps(
            {
                "bench": "submit",
                "mode": "burst" if concurrency > 1 else "sequential",
                "bundles": N,
                "concurrency": concurrency,
                "bundles_per_s": round(rate, 1),
                "latency_ms": {"p50": round(percentile(lat, 50), 1), "p95": round(percentile(lat, 95), 1)},
                "failed_requests": failed,
                "runs_per_bundle_wrong": wrong,
                "jobs_created": jobs - N,  # the floor's jobs are the other N
                "floor_bundles_per_s": round(floor_rate, 1),
                "floor_latency_ms": {
                    "p50": round(percentile(floor_lat, 50), 1),
                    "p95": round(percentile(floor_lat, 95), 1),
                },
                "floor_failed": floor_failed,
                "ratio_to_floor": round(rate / floor_rate, 3),
                "target_ratio": 0.8,
            }
        )
    )


if __name__ == "__main__":
    main()

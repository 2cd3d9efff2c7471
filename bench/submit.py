"""Submit latency on the local stack: finalize event -> CreateJob, p50/p95 over N bundles (default 200).

Each bundle is the demo bundle under its own submission folder; its finalize CloudEvent is posted to the real
submit_bundle functions-framework app (served over HTTP on loopback), which validates it, records the run,
copies its inputs and creates the Batch job on the local Batch service. Prints one JSON line."""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime

from _parts import ROOT, Parts, percentile

N = int(os.environ.get("BENCH_BUNDLES", "200"))


def main() -> None:
    """Measure and print one JSON line."""
    import requests

    from arc_reactor.adapters.storage import Storage, make_client
    from arc_reactor.core.events import storage_cloudevent
    from arc_reactor.local.functions_host import serve_function, stop_function
    from arc_reactor.settings import get_settings

    parts = Parts()
    storage = Storage(make_client(get_settings()))
    for path in sorted((ROOT / "examples" / "data").glob("*.fastq.gz")):
        storage.upload_file(path, f"gs://arc-demo-data/fastq/{path.name}")
    bundle = {p.name: p.read_bytes() for p in (ROOT / "examples" / "demo-bundle").iterdir() if p.is_file()}
    fn = serve_function("submit_bundle", "cloudevent")
    session = requests.Session()
    session.trust_env = False
    to_job, handler = [], []
    try:
        for i in range(N):
            sub = f"bench-{i:04d}"
            for name in sorted(bundle, key=lambda n: n == "run.yaml"):
                storage.write_bytes("arc-inbox", f"{sub}/{name}", bundle[name])
            info = storage.stat("arc-inbox", f"{sub}/run.yaml")
            assert info is not None
            attrs, data = storage_cloudevent(
                {
                    "bucket": "arc-inbox",
                    "name": f"{sub}/run.yaml",
                    "generation": str(info.generation),
                    "size": str(info.size),
                    "timeCreated": datetime.now(UTC).isoformat(),
                }
            )
            headers = {f"ce-{k}": v for k, v in attrs.items() if k != "datacontenttype"}
            headers["Content-Type"] = "application/json"
            sent = time.time()
            resp = session.post(fn.url, data=json.dumps(data), headers=headers, timeout=60)
            done = time.time()
            job = parts.batch.jobs()[-1]
            created = job.create_time.timestamp()
            if resp.status_code == 200 and len(parts.batch.jobs()) == i + 1:
                to_job.append((created - sent) * 1000)
                handler.append((done - sent) * 1000)
    finally:
        stop_function(fn)
        parts.stop()
    print(
        json.dumps(
            {
                "bench": "submit",
                "bundles": N,
                "jobs_created": len(to_job),
                "event_to_createjob_ms": {
                    "p50": round(percentile(to_job, 50), 2),
                    "p95": round(percentile(to_job, 95), 2),
                },
                "handler_total_ms": {
                    "p50": round(percentile(handler, 50), 2),
                    "p95": round(percentile(handler, 95), 2),
                },
            }
        )
    )


if __name__ == "__main__":
    main()

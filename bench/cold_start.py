"""Cold start: fresh-process time to `import main`, and to handle a first event, per entry point.

Prints one JSON line. Target: `import main` under 0.15 s (heavy SDKs are imported lazily)."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys

from _parts import ROOT, Parts

REPEAT = int(os.environ.get("BENCH_REPEAT", "5"))

IMPORT_ONLY = """
import sys, time
sys.path.insert(0, {functions!r})
t = time.perf_counter()
import main
print(time.perf_counter() - t)
"""

FIRST_EVENT = """
import json, sys, time
sys.path.insert(0, {functions!r})
t0 = time.perf_counter()
from functions_framework import create_app
app = create_app({target!r}, {main!r}, {signature!r}).test_client()
t1 = time.perf_counter()
kind = {kind!r}
if kind == "http":
    resp = app.get("/runs?page_size=5")
else:
    from cloudevents.conversion import to_binary
    from cloudevents.http import CloudEvent
    attrs, data = json.loads({event!r})
    headers, body = to_binary(CloudEvent(attrs, data))
    resp = app.post("/", headers=headers, data=body)
t2 = time.perf_counter()
out = {{"status": resp.status_code, "load_s": t1 - t0, "first_event_s": t2 - t1, "total_s": t2 - t0}}
print(json.dumps(out))
"""


def _run(code: str, env: dict[str, str]) -> str:
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True, timeout=120
    )
    return out.stdout.strip().splitlines()[-1]


def _events() -> dict[str, tuple[str, str, str]]:
    from datetime import UTC, datetime

    from arc_reactor.core.events import pubsub_cloudevent, storage_cloudevent

    storage = storage_cloudevent(
        {
            "bucket": "arc-inbox",
            "name": "bench/readme.txt",
            "generation": "1",
            "size": "1",
            "timeCreated": datetime.now(UTC).isoformat(),
        }
    )
    pubsub = pubsub_cloudevent(
        "projects/arc-bench/topics/batch",
        "1",
        {
            "Type": "JOB_STATE_CHANGED",
            "JobName": "projects/arc-bench/locations/us-central1/jobs/arc-r00000000000000000",
            "NewJobState": "RUNNING",
        },
        b"",
        datetime.now(UTC),
    )
    return {
        "submit_bundle": ("cloudevent", "cloudevent", json.dumps(storage)),
        "reconcile_batch_event": ("cloudevent", "cloudevent", json.dumps(pubsub)),
        "sweep_stale_runs": ("cloudevent", "cloudevent", json.dumps(pubsub)),
        "runs_api": ("http", "http", ""),
    }


def main() -> None:
    """Measure and print one JSON line."""
    parts = Parts()
    env = {**os.environ, **parts.env}
    functions = str(ROOT / "functions")
    try:
        imports = [float(_run(IMPORT_ONLY.format(functions=functions), env)) for _ in range(REPEAT)]
        first: dict[str, dict[str, float]] = {}
        for target, (signature, kind, event) in _events().items():
            samples = [
                json.loads(
                    _run(
                        FIRST_EVENT.format(
                            functions=functions,
                            target=target,
                            main=str(ROOT / "functions" / "main.py"),
                            signature=signature,
                            kind=kind,
                            event=event,
                        ),
                        env,
                    )
                )
                for _ in range(REPEAT)
            ]
            first[target] = {
                "median_first_event_s": round(statistics.median(s["first_event_s"] for s in samples), 4),
                "median_total_s": round(statistics.median(s["total_s"] for s in samples), 4),
                "status": samples[-1]["status"],
            }
    finally:
        parts.stop()
    print(
        json.dumps(
            {
                "bench": "cold_start",
                "repeat": REPEAT,
                "import_main_median_s": round(statistics.median(imports), 4),
                "import_main_max_s": round(max(imports), 4),
                "import_main_target_s": 0.15,
                "first_event": first,
            }
        )
    )


if __name__ == "__main__":
    main()

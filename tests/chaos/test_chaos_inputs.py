"""Hostile inputs through both doors: the inbox (the real submit_bundle app, every finalize event delivered
twice) and POST /runs (the real runs_api app, multipart, every request sent twice with one Idempotency-Key).
Each ends refused naming the file at fault, or accepted once with one Batch job: never a 5xx or silence."""

from __future__ import annotations

import io
import json

import pytest
from flow import finalize_event, function_client, upload_demo_data
from hostile import Hostile, catalog, mutations
from sqlalchemy import text
from tally import Tally, Trial, assert_clean

pytestmark = [pytest.mark.chaos, pytest.mark.integration]

MAX_BYTES = 5 * 1024 * 1024


def _runs_for(engine, **where: str) -> list[dict]:
    cond = " AND ".join(f"{k} = :{k}" for k in where)
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(text(f"SELECT * FROM runs WHERE {cond}"), where)]


def _jobs_for(batch_server, run_id: str) -> int:
    return sum(1 for j in batch_server.jobs() if j.labels.get("run-id") == run_id)


def _named(problems: object, expected_file: str) -> str:
    """'' when every problem names a file and says what is wrong, and one names the expected file."""
    if not isinstance(problems, list) or not problems:
        return "no problems listed"
    for p in problems:
        if not isinstance(p, dict) or not p.get("file") or not p.get("message"):
            return f"a problem names nothing: {p!r}"[:300]
    files = {p["file"] for p in problems}
    if expected_file and expected_file not in files and "request" not in files:
        return f"refused naming {sorted(files)}, not {expected_file}"
    return ""


def _judge(h: Hostile, family: str, outcome: str, runs: int, jobs: int, detail: str) -> Trial:
    forged = bool(h.expect == "refused" and outcome == "accepted")
    if h.expect == "accepted" and outcome == "refused":
        outcome, detail = "lost", f"a valid bundle was refused: {detail}"
    return Trial(family, h.name, outcome, duplicated=runs > 1 or jobs > 1, forged=forged, detail=detail)


def through_inbox(h: Hostile, i: int, gcs, engine, batch_server) -> Trial | None:
    if "run.yaml" not in h.files:
        return None  # without its manifest a bundle never triggers anything, by design (the commit marker)
    folder = f"chaos-{i}"
    for name in sorted(h.files, key=lambda n: n == "run.yaml"):
        gcs.write_bytes("arc-inbox", f"{folder}/{name}", h.files[name])
    manifest = f"{folder}/run.yaml"
    headers, body = finalize_event(gcs, manifest)
    client = function_client("submit_bundle")
    codes = [client.post("/", headers=headers, data=body).status_code for _ in range(2)]
    runs = _runs_for(engine, source_object=manifest)
    jobs = sum(_jobs_for(batch_server, r["id"]) for r in runs)
    if any(c >= 500 for c in codes):
        return _judge(h, "input:inbox", "crashed", len(runs), jobs, f"HTTP {codes}")
    accepted = gcs.read_bytes("arc-inbox", manifest + ".accepted.json")
    rejected = gcs.read_bytes("arc-inbox", manifest + ".rejected.json")
    if rejected is not None:
        doc = json.loads(rejected)
        unnamed = _named(doc.get("problems"), h.refused_file)
        failed = [r for r in runs if r["status"] == "failed" and r["error_code"] == "invalid_bundle"]
        if unnamed or len(failed) != len(runs) or jobs:
            return _judge(h, "input:inbox", "crashed", len(runs), jobs, unnamed or "refusal left work behind")
        return _judge(
            h,
            "input:inbox",
            "refused",
            len(runs),
            jobs,
            "; ".join(p["message"] for p in doc["problems"])[:200],
        )
    if accepted is not None and runs and jobs:
        return _judge(h, "input:inbox", "accepted", len(runs), jobs, "")
    return _judge(h, "input:inbox", "lost", len(runs), jobs, "no feedback, no run")


def through_api(h: Hostile, i: int, engine, batch_server) -> Trial:
    client = function_client("runs_api", "http")
    answers = []
    for _ in range(2):
        data = {name: (io.BytesIO(content), name) for name, content in h.files.items()}
        resp = client.post(
            "/runs",
            data=data,
            content_type="multipart/form-data",
            headers={"Idempotency-Key": f"chaos-{i}", "X-Arc-Submitter": "chaos@example.org"},
        )
        answers.append(resp)
    codes = [r.status_code for r in answers]
    ids = {(r.get_json() or {}).get("id") for r in answers if r.status_code in (200, 201)}
    runs = len(ids)
    jobs = sum(_jobs_for(batch_server, run_id) for run_id in ids)
    if any(c >= 500 for c in codes):
        return _judge(h, "input:api", "crashed", runs, jobs, f"HTTP {codes}")
    if codes == [201, 200] and runs == 1:
        return _judge(h, "input:api", "accepted", runs, jobs, "")
    if all(c in (400, 413, 422) for c in codes):
        err = (answers[0].get_json() or {}).get("error", {})
        problems = err.get("problems") or (
            [{"file": "request", "message": err.get("message")}] if err.get("code") else []
        )
        unnamed = _named(problems, h.refused_file)
        if unnamed:
            return _judge(h, "input:api", "crashed", runs, jobs, unnamed)
        return _judge(
            h, "input:api", "refused", runs, jobs, "; ".join(str(p["message"]) for p in problems)[:200]
        )
    return _judge(h, "input:api", "lost", runs, jobs, f"HTTP {codes}")


def _attack(items: list[Hostile], tally: Tally, gcs, engine, batch_server) -> list[Trial]:
    upload_demo_data(gcs)
    trials = []
    for i, h in enumerate(items):
        for trial in (
            through_inbox(h, i, gcs, engine, batch_server),
            through_api(h, i, engine, batch_server),
        ):
            if trial is not None:
                trials.append(tally.record(trial))
    return trials


def test_hostile_inputs_are_refused_naming_the_file_and_valid_ones_accepted_once(
    app_env, gcs, engine, batch_server, tally
):
    trials = _attack(catalog(MAX_BYTES), tally, gcs, engine, batch_server)
    assert_clean(trials)
    assert {t.outcome for t in trials} == {"refused", "accepted"}


def test_random_damage_to_a_bundle_never_crashes_or_vanishes(app_env, gcs, engine, batch_server, tally, full):
    """Byte-level damage (flips, cuts, control characters, broken UTF-8) to the demo bundle's files; the
    outcome is not known in advance, but it is one of the two, with the file named."""
    trials = _attack(list(mutations(seed=2026, count=300 if full else 20)), tally, gcs, engine, batch_server)
    assert_clean(trials)

"""Why a run failed, from its ledger (core/diagnosis.py): the first failed task, infrastructure or not, and
a hint for the common causes."""

from datetime import UTC, datetime, timedelta

from arc_reactor.core.diagnosis import diagnose, hint_for

T0 = datetime(2026, 12, 7, 10, tzinfo=UTC)
RUN = {
    "id": "r1",
    "status": "failed",
    "error_code": "pipeline_error",
    "error_message": "boom",
    "error_task": "STAR",
}


def failed(task_id: str, minutes: int | None, **more: object) -> dict[str, object]:
    done = T0 + timedelta(minutes=minutes) if minutes is not None else None
    return {"id": int(task_id), "task_id": task_id, "process": "STARSOLO", "attempt": 1, "completed_at": done,
            "status": "failed", **more}  # fmt: skip


def test_the_first_failure_is_the_earliest_completed_one():
    report = diagnose(RUN, [failed("3", 9, exit_code=1), failed("2", 4, exit_code=137), failed("1", None)])
    first = report["first_failed_task"]
    assert (first["task_id"], first["exit_code"], first["infrastructure"]) == ("2", 137, None)
    assert first["hint"].startswith("killed with exit 137: usually out of memory")
    assert (report["failed_tasks"], report["error_task"]) == (3, "STAR")
    assert diagnose(RUN, [])["first_failed_task"] is None


def test_hints_for_the_common_causes():
    assert "infrastructure failed it (spot_preempted)" in hint_for({"exit_code": 50001})
    assert "infrastructure failed it (vm_lost)" in hint_for({"exit_code": 2147483647})
    assert "infrastructure failed it (spot_preempted)" in hint_for({"exit_code": 1, "preempted": True})
    tails = {
        "gsutil: AccessDeniedException: 403 Forbidden": "permission denied",
        "Quota 'CPUS' exceeded. Limit: 24.0": "a quota ran out",
        "MissingInputException: sample9.fastq.gz": "a file is missing",
        "java.lang.OutOfMemoryError: Java heap space": "out of memory",
    }
    for tail, start in tails.items():
        assert hint_for({"exit_code": 1, "error_tail": tail}).startswith(start), tail
    assert hint_for({"exit_code": 140}).startswith("killed with exit 140")
    assert hint_for({"exit_code": 2, "error_tail": "syntax error"}) is None

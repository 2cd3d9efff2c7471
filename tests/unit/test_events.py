"""CloudEvent parsing: storage finalize and Pub/Sub messagePublished; binary and structured; int64 strings."""

import base64
import json
from datetime import UTC, datetime, timedelta

import pytest
from cloudevents.conversion import to_binary, to_structured
from cloudevents.http import CloudEvent, from_http

from arc_reactor.core.events import (
    PUBSUB_PUBLISHED,
    STORAGE_FINALIZED,
    event_age_seconds,
    parse_pubsub_event,
    parse_storage_event,
    pubsub_cloudevent,
    storage_cloudevent,
)
from arc_reactor.errors import BadEvent

OBJ = {
    "bucket": "arc-inbox",
    "name": "sub1/run.yaml",
    "generation": "1795367664416333130",
    "size": "42",
    "metageneration": "1",
    "timeCreated": "2026-11-22T10:00:00.123Z",
    "contentType": "text/yaml",
}


def _roundtrip(attrs, data, mode):
    event = CloudEvent(attrs, data)
    headers, body = (to_binary if mode == "binary" else to_structured)(event)
    return from_http(headers, body)


@pytest.mark.parametrize("mode", ["binary", "structured"])
def test_storage_event_both_content_modes(mode):
    attrs, data = storage_cloudevent(OBJ)
    ev = _roundtrip(attrs, data, mode)
    parsed = parse_storage_event(ev.get_attributes(), ev.get_data())
    assert parsed.bucket == "arc-inbox"
    assert parsed.name == "sub1/run.yaml"
    assert parsed.generation == 1795367664416333130  # int64 arrives as a string and keeps every digit
    assert parsed.size == 42
    assert parsed.time == datetime(2026, 11, 22, 10, 0, 0, 123000, tzinfo=UTC)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"name": "x"}, "bucket"),
        ({"bucket": "b", "name": "x"}, "generation"),
        ({"bucket": "b", "name": "x", "generation": "abc"}, "not an integer"),
        ("[1]", "not a JSON object"),
        (b"{not json", "not JSON"),
        ({"bucket": "", "name": "x", "generation": "1"}, "bucket"),
    ],
)
def test_storage_event_malformed(data, message):
    with pytest.raises(BadEvent, match=message):
        parse_storage_event({"type": STORAGE_FINALIZED}, data)


def test_storage_event_wrong_type_is_refused():
    with pytest.raises(BadEvent, match="unexpected event type"):
        parse_storage_event({"type": "google.cloud.storage.object.v1.deleted"}, OBJ)


@pytest.mark.parametrize("mode", ["binary", "structured"])
def test_pubsub_event_both_content_modes(mode):
    when = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
    attrs, body = pubsub_cloudevent(
        "projects/p/topics/t",
        "123",
        {
            "Type": "JOB_STATE_CHANGED",
            "JobName": "projects/p/locations/r/jobs/arc-x",
            "NewJobState": "RUNNING",
        },
        b"payload",
        when,
    )
    ev = _roundtrip(attrs, body, mode)
    msg = parse_pubsub_event(ev.get_attributes(), ev.get_data())
    assert msg.attributes["NewJobState"] == "RUNNING"
    assert msg.data == b"payload"
    assert msg.message_id == "123"
    assert msg.publish_time == when


def test_pubsub_event_as_eventarc_sends_it():
    body = {
        "message": {
            "attributes": {"Type": "JOB_STATE_CHANGED"},
            "data": base64.b64encode(b"{}").decode(),
            "messageId": "9",
            "publishTime": "2026-11-22T10:00:00Z",
        },
        "subscription": "s",
    }
    msg = parse_pubsub_event({"type": PUBSUB_PUBLISHED, "id": "9"}, json.dumps(body).encode())
    assert msg.attributes == {"Type": "JOB_STATE_CHANGED"}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({}, "no `message`"),
        ({"message": {"data": "%%%"}}, "base64"),
        ({"message": {"attributes": [1]}}, "attributes"),
        ({"message": {"publishTime": "yesterday"}}, "timestamp"),
    ],
)
def test_pubsub_event_malformed(data, message):
    with pytest.raises(BadEvent, match=message):
        parse_pubsub_event({"type": PUBSUB_PUBLISHED}, data)


def test_event_age():
    now = datetime(2026, 11, 22, tzinfo=UTC)
    assert event_age_seconds(now - timedelta(hours=25), now) == 25 * 3600
    assert event_age_seconds(None, now) == 0


def test_the_job_of_each_kind_of_batch_notification():
    from arc_reactor.core.ids import notification_job

    job = "projects/123456789/locations/us-central1/jobs/arc-r0000000000abcdefgh"
    assert notification_job({"Type": "JOB_STATE_CHANGED", "JobName": job, "JobUID": "u-1"}) == (job, "u-1")
    task = {
        "Type": "TASK_STATE_CHANGED",
        "TaskName": f"{job}/taskGroups/group0/tasks/0",
        "TaskUID": "arc-r0000000000abcdefgh-1a2b3c4d-5e6f-7a8b-group0-0",
        "JobUID": "arc-r0000000000abcdefgh-1a2b3c4d-5e6f-7a8b",
        "NewTaskState": "FAILED",
    }
    assert notification_job(task) == (job, task["JobUID"])
    assert notification_job({"TaskUID": task["TaskUID"]}) == (None, task["JobUID"])
    assert notification_job({"TaskName": "not/a/task"}) == (None, None)

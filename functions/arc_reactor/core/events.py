"""Parse the CloudEvents the functions receive into typed objects (pure).

Both binary and structured CloudEvents reach an entry point as a CloudEvent object whose `data` is the
JSON payload; int64 fields (generation, size) arrive as strings and are parsed here. Anything malformed is
a BadEvent: acknowledged and logged, never retried (a retry cannot fix it).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from arc_reactor.errors import BadEvent

STORAGE_FINALIZED = "google.cloud.storage.object.v1.finalized"
PUBSUB_PUBLISHED = "google.cloud.pubsub.topic.v1.messagePublished"


@dataclass(frozen=True)
class StorageObjectEvent:
    """An object finalized in a bucket."""

    event_id: str
    bucket: str
    name: str
    generation: int
    size: int
    time: datetime | None


@dataclass(frozen=True)
class PubSubMessage:
    """A Pub/Sub message delivered through Eventarc."""

    event_id: str
    message_id: str
    attributes: dict[str, str]
    data: bytes
    publish_time: datetime | None


def parse_time(value: Any) -> datetime | None:
    """RFC 3339 timestamp to an aware datetime; None when absent; BadEvent when malformed."""
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError as exc:
        raise BadEvent(f"malformed timestamp {value!r}") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _int64(payload: Mapping[str, Any], key: str, required: bool = True) -> int:
    value = payload.get(key)
    if value is None or value == "":
        if required:
            raise BadEvent(f"event data has no {key}")
        return 0
    try:
        return int(value)  # int64 fields are JSON strings in Google event payloads
    except (TypeError, ValueError) as exc:
        raise BadEvent(f"event data field {key} is not an integer: {value!r}") from exc


def _data_dict(data: Any) -> Mapping[str, Any]:
    if isinstance(data, bytes | str):
        try:
            data = json.loads(data)
        except ValueError as exc:
            raise BadEvent("event data is not JSON") from exc
    if not isinstance(data, Mapping):
        raise BadEvent("event data is not a JSON object")
    return data


def parse_storage_event(attrs: Mapping[str, Any], data: Any) -> StorageObjectEvent:
    """A storage `object.v1.finalized` CloudEvent (its attributes and data) to a StorageObjectEvent."""
    etype = attrs.get("type")
    if etype not in (None, STORAGE_FINALIZED):
        raise BadEvent(f"unexpected event type {etype!r}, wanted {STORAGE_FINALIZED}")
    payload = _data_dict(data)
    bucket, name = payload.get("bucket"), payload.get("name")
    if not isinstance(bucket, str) or not bucket or not isinstance(name, str) or not name:
        raise BadEvent("storage event data needs non-empty `bucket` and `name`")
    return StorageObjectEvent(
        event_id=str(attrs.get("id") or ""),
        bucket=bucket,
        name=name,
        generation=_int64(payload, "generation"),
        size=_int64(payload, "size", required=False),
        time=parse_time(attrs.get("time") or payload.get("timeCreated")),
    )


def parse_pubsub_event(attrs: Mapping[str, Any], data: Any) -> PubSubMessage:
    """A Pub/Sub `messagePublished` CloudEvent to a PubSubMessage (data base64-decoded)."""
    etype = attrs.get("type")
    if etype not in (None, PUBSUB_PUBLISHED):
        raise BadEvent(f"unexpected event type {etype!r}, wanted {PUBSUB_PUBLISHED}")
    payload = _data_dict(data)
    message = payload.get("message")
    if not isinstance(message, Mapping):
        raise BadEvent("pubsub event data has no `message` object")
    raw_attrs = message.get("attributes") or {}
    if not isinstance(raw_attrs, Mapping):
        raise BadEvent("pubsub message `attributes` is not an object")
    try:
        body = base64.b64decode(message.get("data") or "", validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadEvent("pubsub message `data` is not valid base64") from exc
    return PubSubMessage(
        event_id=str(attrs.get("id") or ""),
        message_id=str(message.get("messageId") or message.get("message_id") or ""),
        attributes={str(k): str(v) for k, v in raw_attrs.items()},
        data=body,
        publish_time=parse_time(
            message.get("publishTime") or message.get("publish_time") or attrs.get("time")
        ),
    )


def event_age_seconds(when: datetime | None, now: datetime | None = None) -> float:
    """Seconds since `when` (0 when unknown)."""
    if when is None:
        return 0.0
    return ((now or datetime.now(UTC)) - when).total_seconds()


def storage_cloudevent(
    obj: Mapping[str, Any], source_project: str = "arc-local"
) -> tuple[dict[str, str], dict[str, Any]]:
    """Build the (attributes, data) of a finalized CloudEvent for an object resource, as Eventarc sends it."""
    attrs = {
        "specversion": "1.0",
        "id": f"{obj['bucket']}/{obj['name']}/{obj.get('generation', '')}",
        "source": f"//storage.googleapis.com/projects/_/buckets/{obj['bucket']}",
        "type": STORAGE_FINALIZED,
        "subject": f"objects/{obj['name']}",
        "time": str(obj.get("updated") or obj.get("timeCreated") or datetime.now(UTC).isoformat()),
        "datacontenttype": "application/json",
    }
    return attrs, dict(obj)


def pubsub_cloudevent(
    topic: str, message_id: str, attributes: Mapping[str, str], data: bytes, publish_time: datetime
) -> tuple[dict[str, str], dict[str, Any]]:
    """Build the (attributes, data) of a messagePublished CloudEvent, as Eventarc sends it."""
    stamp = publish_time.astimezone(UTC).isoformat().replace("+00:00", "Z")
    attrs = {
        "specversion": "1.0",
        "id": message_id,
        "source": f"//pubsub.googleapis.com/{topic}",
        "type": PUBSUB_PUBLISHED,
        "time": stamp,
        "datacontenttype": "application/json",
    }
    body = {
        "message": {
            "data": base64.b64encode(data).decode(),
            "attributes": dict(attributes),
            "messageId": message_id,
            "publishTime": stamp,
        },
        "subscription": f"{topic.replace('/topics/', '/subscriptions/')}-eventarc",
    }
    return attrs, body

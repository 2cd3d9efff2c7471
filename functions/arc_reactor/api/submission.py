"""POST /runs: a JSON body or a multipart form with the bundle's files, validated exactly like an inbox
bundle (services/submit.py). 400 when the request itself is malformed, 422 when the bundle is invalid; both
list every problem. An Idempotency-Key header makes a retried POST answer with the same run (200)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Mapping
from typing import Any

import yaml

from arc_reactor.api.http import ApiError, Call, bad_request, json_response
from arc_reactor.api.views import run_view
from arc_reactor.core.bundle import manifest_mapping
from arc_reactor.errors import Problem
from arc_reactor.services.submit import RunSource, SubmitResult, submit_files

MANIFEST_FIELDS = ("pipeline", "revision", "engine", "profile", "name")
JSON_FIELDS = frozenset({*MANIFEST_FIELDS, "labels", "samplesheet", "params", "config"})
# multipart file part -> bundle file; the short names match the JSON fields
FILE_PARTS = {
    "samplesheet": "samplesheet.csv",
    "samplesheet.csv": "samplesheet.csv",
    "params": "params.yaml",
    "params.yaml": "params.yaml",
    "config": "nextflow.config",
    "nextflow.config": "nextflow.config",
    "manifest": "run.yaml",
    "run.yaml": "run.yaml",
}
_KEY_RE = re.compile(r"^[\x21-\x7e]{1,200}$")
FORM_SLACK_BYTES = 64 * 1024


def idempotency_key(call: Call, namespace: str = "") -> str | None:
    """The Idempotency-Key header (1-200 visible ASCII characters), scoped to the caller and prefixed by
    `namespace`: another caller's same key is another key."""
    key = call.request.headers.get("Idempotency-Key")
    if key is None or key == "":
        return None
    if not _KEY_RE.match(key):
        raise bad_request("Idempotency-Key must be 1 to 200 visible ASCII characters")
    caller = hashlib.sha256((call.caller.email or "").encode()).hexdigest()[:16]
    return f"{caller}:{namespace}{key}"


def fingerprint(parts: Mapping[str, Any]) -> str:
    """A digest of what a request asked for (bundle files, recovery overrides), to tell a retry from a new
    request that reuses an Idempotency-Key."""
    digest = hashlib.sha256()
    for name in sorted(parts):
        value = parts[name]
        data = value if isinstance(value, bytes) else json.dumps(value, sort_keys=True, default=str).encode()
        digest.update(f"{name}\0{len(data)}\0".encode() + data)
    return digest.hexdigest()


def _text(value: Any, field: str, problems: list[Problem]) -> bytes | None:
    """A JSON text field as bytes: a string, or {"base64": ...} for files that are not plain UTF-8."""
    if value is None:
        return None
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    if isinstance(value, dict) and set(value) == {"base64"} and isinstance(value["base64"], str):
        try:
            return base64.b64decode(value["base64"], validate=True)
        except (binascii.Error, ValueError):
            problems.append(Problem("request", "is not valid base64", field=field))
            return None
    problems.append(Problem("request", 'must be a string or {"base64": "..."}', field=field))
    return None


def files_from_json(body: Any) -> dict[str, bytes | None]:
    """The bundle files of a JSON submission; ApiError 400 listing every malformed field."""
    if not isinstance(body, dict):
        raise bad_request("the request body must be a JSON object")
    problems = [Problem("request", "unknown field", field=str(k)) for k in body if k not in JSON_FIELDS]
    manifest: dict[str, Any] = {}
    for key in MANIFEST_FIELDS:
        if body.get(key) is not None and not isinstance(body[key], str):
            problems.append(Problem("request", "must be a string", field=key))
        elif body.get(key) is not None:
            manifest[key] = body[key]
    if body.get("labels") is not None:
        if isinstance(body["labels"], dict):
            manifest["labels"] = body["labels"]
        else:
            problems.append(Problem("request", "must be an object of name: value", field="labels"))
    params = body.get("params")
    if params is not None and not isinstance(params, dict | str):
        problems.append(Problem("request", "must be an object (or YAML text)", field="params"))
    files = {
        "run.yaml": yaml.safe_dump(manifest, sort_keys=False).encode(),
        "samplesheet.csv": _text(body.get("samplesheet"), "samplesheet", problems),
        "params.yaml": _params_bytes(params),
        "nextflow.config": _text(body.get("config"), "config", problems),
    }
    if problems:
        raise bad_request("the request body is invalid", problems)
    return files


def _params_bytes(params: Any) -> bytes | None:
    if params is None:
        return None
    return params.encode() if isinstance(params, str) else yaml.safe_dump(params, sort_keys=True).encode()


def files_from_form(call: Call) -> dict[str, bytes | None]:
    """The bundle files of a multipart submission: file parts plus manifest fields (label=key=value, may
    repeat) or a whole `manifest` (run.yaml) part; ApiError 400 listing every malformed part."""
    form, parts = call.request.form, call.request.files
    problems = [Problem("request", "unknown part", field=k) for k in [*form, *parts] if not _known_part(k)]
    files: dict[str, bytes | None] = dict.fromkeys(
        ("run.yaml", *sorted(set(FILE_PARTS.values()) - {"run.yaml"}))
    )
    # A file may also come as a plain text field of the same name (some clients send small files so).
    uploads = [(k, f.read()) for k, f in parts.items(multi=True)]
    uploads += [(k, v.encode()) for k, v in form.items(multi=True) if k in FILE_PARTS]
    for part, data in uploads:
        target = FILE_PARTS.get(part)
        if target is not None and files[target] is not None:
            problems.append(Problem("request", f"{target} was given twice", field=part))
        elif target is not None:
            files[target] = data
    manifest: dict[str, Any] = {k: form[k] for k in MANIFEST_FIELDS if k in form}
    labels: dict[str, str] = {}
    for raw in form.getlist("label"):
        key, sep, value = raw.partition("=")
        if not sep or not key:
            problems.append(Problem("request", f"{raw[:80]!r} is not key=value", field="label"))
        else:
            labels[key] = value
    if labels:
        manifest["labels"] = labels
    if files["run.yaml"] is not None and manifest:
        problems.append(
            Problem("request", "give either a manifest (run.yaml) part or manifest fields, not both")
        )
    if files["run.yaml"] is None:
        files["run.yaml"] = yaml.safe_dump(manifest, sort_keys=False).encode()
    if problems:
        raise bad_request("the form is invalid", problems)
    return files


def _known_part(name: str) -> bool:
    return name in FILE_PARTS or name in MANIFEST_FIELDS or name == "label"


def _no_parent(files: Mapping[str, bytes | None]) -> None:
    """A recovery goes through POST /runs/{id}:recover, where its preconditions and rights are checked."""
    if manifest_mapping(files.get("run.yaml")).get("parent_run_id") is not None:
        problem = Problem("run.yaml", "use POST /runs/{parent_run_id}:recover", field="parent_run_id")
        raise bad_request("recoveries are not submitted through POST /runs", [problem])


def _json_body(call: Call) -> Any:
    """The JSON body; a body nested too deeply for the parser is a 400, never a 500."""
    try:
        return call.request.get_json(silent=True)
    except RecursionError as exc:
        raise bad_request("the JSON body is nested too deeply") from exc


def create_run(call: Call) -> Any:
    """POST /runs."""
    limit = 4 * call.deps.settings.max_file_bytes + FORM_SLACK_BYTES
    # Checked on the header, not with request.max_content_length: functions-framework reads the whole
    # body after the handler, and a limit on the request makes that read fail. Cloud Run caps it at 32 MiB.
    if (call.request.content_length or 0) > limit:
        raise ApiError(413, "request_entity_too_large", f"the request body is over {limit} bytes")
    mimetype = call.request.mimetype
    if mimetype == "application/json":
        files = files_from_json(_json_body(call))
    elif mimetype == "multipart/form-data":
        files = files_from_form(call)
    else:
        raise ApiError(415, "unsupported_media_type", "send application/json or multipart/form-data")
    _no_parent(files)
    source = RunSource(
        "api",
        idempotency_key=idempotency_key(call),
        submitter=call.caller.email,
        fingerprint=fingerprint(files),
    )
    return created(call, submit_files(call.deps, files, source))


def created(call: Call, result: SubmitResult) -> Any:
    """The answer to a submission: 201 with a new run, 200 with the run an idempotency key named, or 422."""
    if result.outcome == "rejected":
        raise ApiError(422, "invalid_bundle", "the submission is invalid", result.problems)
    if result.outcome == "key_reused":
        raise ApiError(422, "idempotency_key_reused", result.reason)
    if result.run_id is None:
        raise ApiError(500, "internal", result.reason or "the submission failed")
    run = call.deps.runs.get_run(result.run_id)
    status = 200 if result.outcome == "duplicate" else 201
    view = {**run_view(run), "warnings": [w.as_dict() for w in result.warnings]}
    return json_response(view, status, {"Location": f"/runs/{run['id']}"})

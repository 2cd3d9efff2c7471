"""`arc submit DIR | --pipeline ... [--via api|inbox]`: submit a run bundle.

--via api (default) posts the files as multipart/form-data to POST /runs. --via inbox uploads them into the
inbox bucket, the manifest (run.yaml) last, and waits (bounded) for run.yaml.accepted.json or
run.yaml.rejected.json beside it: the local stack's emulator when it is up, else Cloud Storage with the
user's credentials.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import yaml

from arc_reactor.cli.client import ApiClient, CliError, load_user_yaml, local_info, read_user_file
from arc_reactor.cli.watch import watch_to_end

BUNDLE_FILES = ("samplesheet.csv", "params.yaml", "nextflow.config", "run.yaml")  # the manifest last
FEEDBACK_TIMEOUT_S = 120.0


def print_warnings(warnings: list[dict[str, Any]] | None) -> None:
    """What the submission was accepted with but is probably a mistake, one line each."""
    for w in warnings or []:
        where = ":".join(str(w[k]) for k in ("file", "line") if w.get(k) is not None)
        field = f" [{w['field']}]" if w.get("field") else ""
        print(f"  warning: {where}{field}: {w.get('message')}")


def bundle_from_args(args: argparse.Namespace) -> dict[str, bytes]:
    """The bundle's files: a folder's, or --pipeline/--samplesheet/... (a manifest is written for them)."""
    files: dict[str, bytes] = {}
    if args.bundle:
        folder = Path(args.bundle)
        if not folder.is_dir():
            raise CliError(f"{folder} is not a folder")
        files = {name: read_user_file(folder / name) for name in BUNDLE_FILES if (folder / name).is_file()}
    for option, name in (
        ("samplesheet", "samplesheet.csv"),
        ("params", "params.yaml"),
        ("config", "nextflow.config"),
    ):
        path = getattr(args, option)
        if path:
            files[name] = read_user_file(path)
    where = str(Path(args.bundle) / "run.yaml") if args.bundle else "run.yaml"
    manifest = load_user_yaml(files.get("run.yaml") or b"", where) or {}
    if not isinstance(manifest, dict):
        raise CliError("run.yaml must be a YAML mapping")
    for key in ("pipeline", "revision", "name", "profile"):
        if getattr(args, key):
            manifest[key] = getattr(args, key)
    for item in args.label or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise CliError(f"--label {item!r} is not key=value")
        manifest.setdefault("labels", {})[key] = value
    if not manifest.get("pipeline"):
        raise CliError("no pipeline: give a bundle folder with run.yaml, or --pipeline")
    files["run.yaml"] = yaml.safe_dump(manifest, sort_keys=False).encode()
    return files


def via_api(client: ApiClient, files: dict[str, bytes], key: str | None) -> dict[str, Any]:
    """POST /runs as multipart; the new (or idempotently repeated) run."""
    parts = {name: (name, data) for name, data in files.items()}
    headers = {"Idempotency-Key": key} if key else {}
    result: dict[str, Any] = client.call("POST", "/runs", expect=(200, 201), files=parts, headers=headers)
    return result


def via_inbox(files: dict[str, bytes], submission: str, bucket: str | None) -> dict[str, Any]:
    """Upload into the inbox bucket, manifest last, and wait for the feedback file."""
    from arc_reactor.adapters.storage import Storage, make_client
    from arc_reactor.settings import get_settings

    info = local_info() or {}
    if info.get("storage_emulator_host") and not os.environ.get("STORAGE_EMULATOR_HOST"):
        os.environ["STORAGE_EMULATOR_HOST"] = str(info["storage_emulator_host"])
    inbox = bucket or info.get("inbox_bucket") or get_settings().inbox_bucket
    storage = Storage(make_client(get_settings()))
    for name in BUNDLE_FILES:
        if name in files:
            storage.write_bytes(inbox, f"{submission}/{name}", files[name])
    deadline = time.monotonic() + FEEDBACK_TIMEOUT_S
    while time.monotonic() < deadline:
        for suffix in (".accepted.json", ".rejected.json"):
            data = storage.read_bytes(inbox, f"{submission}/run.yaml{suffix}")
            if data is not None:
                feedback: dict[str, Any] = json.loads(data)
                return feedback
        time.sleep(0.5)
    raise CliError(f"no feedback in gs://{inbox}/{submission}/ after {FEEDBACK_TIMEOUT_S:.0f} s")


def cmd_submit(args: argparse.Namespace) -> int:
    """Submit a bundle through the API or the inbox; optionally watch the run."""
    files = bundle_from_args(args)
    client = ApiClient.connect(args.api, no_auth=args.no_auth) if args.via == "api" or args.watch else None
    if args.via == "api":
        assert client is not None
        run = via_api(client, files, args.idempotency_key)
        run_id = str(run["id"])
        print(f"run {run_id} {run['status']} ({run['pipeline']} {run['revision']})")
        print_warnings(run.get("warnings"))
    else:
        submission = args.submission or f"arc-cli-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
        feedback = via_inbox(files, submission, args.inbox)
        if feedback.get("outcome") == "rejected":
            raise CliError("the bundle was rejected", feedback.get("problems"))
        run_id = str(feedback["run_id"])
        print(f"run {run_id} {feedback.get('status')} (through the inbox, {submission}/)")
        print_warnings(feedback.get("warnings"))
    if args.watch and client is not None:
        return watch_to_end(client, run_id, sys.stdout, args.timeout)
    return 0

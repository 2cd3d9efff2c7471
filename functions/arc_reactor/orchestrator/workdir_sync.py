"""Snakemake resumes by running again in the same working directory. On Batch every attempt is a fresh VM,
so the working directory lives in the bucket, under WORK_DIR (gs://<runs>/work/<lineage>/): `save` after
the engine, `restore` before a retry or a recovery, which then re-runs only what is missing or incomplete.

What is synced: everything in the run dir except the staged inputs and the task context in `.arc/` (both
written again each time) and, under
`.snakemake/`, only `metadata/` and `incomplete/` (the rest is per attempt: logs, locks, caches).
`arc-workdir.json` is written last and lists the files of the last save: restore reads only those, so an
interrupted save or an object left over from an earlier one is never restored. Left-over objects are not
deleted (the adapter has no delete); the bucket's 30-day lifecycle on `work/` removes them.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from functools import partial
from pathlib import Path, PurePosixPath

from arc_reactor.orchestrator.storage_io import (
    TRANSFER_RETRY_ON,
    Context,
    read_object,
    upload,
    write_object,
)

log = logging.getLogger("arc_reactor.orchestrator.orchestrate")
MANIFEST = "arc-workdir.json"
SNAKEMAKE_KEPT = ("metadata", "incomplete")


def is_synced(rel: str) -> bool:
    """True when the file at `rel` (relative to the run dir, POSIX) belongs in WORK_DIR."""
    parts = PurePosixPath(rel).parts
    if not parts or parts[0] in ("inputs", ".arc", MANIFEST):
        return False
    if parts[0] == ".snakemake":
        return len(parts) > 2 and parts[1] in SNAKEMAKE_KEPT
    return True


def safe_relative(rel: str) -> bool:
    """True for a plain relative path that stays inside the run dir."""
    path = PurePosixPath(rel)
    return bool(rel) and not path.is_absolute() and all(p not in ("", ".", "..") for p in rel.split("/"))


def _uri(ctx: Context, rel: str) -> str:
    return f"{ctx.env.work_dir.rstrip('/')}/{rel}"


def _stamp(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


def restore(ctx: Context) -> int:
    """Download the last saved working directory into the run dir; return how many files came back."""
    if not ctx.env.work_dir:
        log.warning("no WORK_DIR: nothing to restore, every step runs again")
        return 0
    try:
        raw = read_object(ctx, _uri(ctx, MANIFEST))
    except TRANSFER_RETRY_ON as exc:
        log.warning("cannot read %s, every step runs again: %s", MANIFEST, exc)
        return 0
    if raw is None:
        log.info("no saved working directory in %s: starting afresh", ctx.env.work_dir)
        return 0
    try:
        files = dict(json.loads(raw)["files"])
    except (ValueError, KeyError, TypeError) as exc:
        log.warning("%s is unreadable, every step runs again: %s", MANIFEST, exc)
        return 0
    restored: dict[str, list[int]] = {}
    for rel in sorted(files):
        if not (safe_relative(rel) and is_synced(rel)):
            log.warning("skipping %r listed in %s", rel, MANIFEST)
            continue
        dest = ctx.ws.run_dir.joinpath(*rel.split("/"))
        try:  # a file that does not come back is only re-made: Snakemake sees it missing
            ctx.transfer(partial(ctx.storage.download_file, _uri(ctx, rel), dest))
        except Exception as exc:  # noqa: BLE001 - see above
            log.warning("could not restore %s: %s", rel, exc)
            dest.unlink(missing_ok=True)
            continue
        restored[rel] = _stamp(dest)
    ctx.ws.restored_file.write_text(json.dumps(restored), encoding="utf-8")
    log.info(
        "restored %d of %d file(s) of the working directory from %s", len(restored), len(files),
        ctx.env.work_dir, extra={"event": "workdir_restored"},
    )  # fmt: skip
    return len(restored)


def save(ctx: Context) -> tuple[int, int]:
    """Upload the run dir's synced files that changed, then the manifest; return (uploaded, failed)."""
    if not ctx.env.work_dir or not ctx.ws.run_dir.is_dir():
        return 0, 0
    before: dict[str, list[int]] = {}
    if ctx.ws.restored_file.is_file():
        before = json.loads(ctx.ws.restored_file.read_text(encoding="utf-8"))
    files: dict[str, int] = {}
    uploaded = failed = 0
    for path in sorted(p for p in ctx.ws.run_dir.rglob("*") if p.is_file()):
        rel = path.relative_to(ctx.ws.run_dir).as_posix()
        if not is_synced(rel):
            continue
        if before.get(rel) != _stamp(path):  # unchanged since restore: the bucket has it already
            if not upload(ctx, path, _uri(ctx, rel)):
                failed += 1
                continue  # not listed: a later restore re-makes it
            uploaded += 1
        files[rel] = path.stat().st_size
    manifest = {"run_id": ctx.env.run_id, "saved_at": datetime.now(UTC).isoformat(), "files": files}
    try:
        write_object(ctx, _uri(ctx, MANIFEST), json.dumps(manifest, indent=1).encode())
    except Exception as exc:  # noqa: BLE001 - a failed save is a warning: the run's outcome stands
        log.warning("could not save %s: %s", MANIFEST, exc, extra={"event": "upload_failed"})
        return uploaded, failed + 1
    log.info(
        "saved the working directory to %s: %d file(s) uploaded, %d listed", ctx.env.work_dir, uploaded,
        len(files), extra={"event": "workdir_saved"},
    )  # fmt: skip
    return uploaded, failed

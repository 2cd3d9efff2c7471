"""The run's task context: the small files a Snakefile reads while it is parsed (the run's params and the
samplesheet, in the run dir's `.arc/`), which every task job needs as the orchestrator had them.

The orchestrator packs them once per attempt (`pack`) and uploads the archive under the lineage's work/
prefix; each task job, before Snakemake's job command, runs

    python3 -m arc_reactor.orchestrator.task_context fetch gs://<runs>/work/<lineage>/.arc/context/<name>.tar.gz

which extracts it into the task's fresh working directory (core/snakemake_batch.py task_script). Inputs
and outputs do not travel this way: they go through Snakemake's GCS storage plugin. The archive is named
by its content's digest, so an attempt that packs the same files reuses the object.

When the job fails, `keep` uploads its log files to where Snakemake would have stored them (it stores a
job's logs only when the job succeeds), for the executor plugin to show and `finish` to deliver, as when
the job runs in the head VM.
"""

from __future__ import annotations

import hashlib
import io
import sys
import tarfile
from collections.abc import Sequence
from pathlib import Path

CONTEXT_DIR = ".arc"  # in the run dir (and each task's working directory)
MAX_CONTEXT_BYTES = 64 * 1024 * 1024  # a samplesheet and a params file; far more is a mistake


class ContextError(Exception):
    """The context archive cannot be used (the task fails with this message)."""


def pack(run_dir: Path) -> bytes:
    """A gzipped tar of run_dir/.arc, with names relative to run_dir and no owner, mode or time that
    would change the digest between two packs of the same files."""
    out = io.BytesIO()
    root = run_dir / CONTEXT_DIR
    with tarfile.open(fileobj=out, mode="w:gz", format=tarfile.PAX_FORMAT) as archive:
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            data = path.read_bytes()
            info = tarfile.TarInfo(path.relative_to(run_dir).as_posix())
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            archive.addfile(info, io.BytesIO(data))
    packed = out.getvalue()
    if len(packed) > MAX_CONTEXT_BYTES:
        raise ContextError(f"the task context is {len(packed)} bytes, over {MAX_CONTEXT_BYTES}")
    return packed


def object_name(packed: bytes) -> str:
    """The archive's object name under the work prefix: `.arc/context/<sha256>.tar.gz`."""
    return f"{CONTEXT_DIR}/context/{hashlib.sha256(packed).hexdigest()}.tar.gz"


def extract(packed: bytes, dest: Path) -> list[str]:
    """Extract the archive into `dest`; only plain files and folders under .arc/ (tarfile's `data` filter
    refuses links, devices, absolute names and `..`). The names extracted."""
    names: list[str] = []
    try:
        with tarfile.open(fileobj=io.BytesIO(packed), mode="r:gz") as archive:
            for member in archive.getmembers():
                if not member.name.startswith(f"{CONTEXT_DIR}/") or not (member.isfile() or member.isdir()):
                    raise ContextError(f"unexpected entry {member.name!r} in the task context")
                archive.extract(member, dest, filter="data")
                names.append(member.name)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ContextError(f"the task context cannot be extracted: {exc}") from exc
    return names


def fetch(uri: str, dest: Path) -> list[str]:
    """Download the archive at `uri` (the storage client's bounded retry) and extract it into `dest`."""
    from arc_reactor.adapters.storage import Storage, make_client
    from arc_reactor.core.layout import split_gs_uri
    from arc_reactor.settings import get_settings

    bucket, name = split_gs_uri(uri)
    packed = Storage(make_client(get_settings())).read_bytes(bucket, name, max_bytes=MAX_CONTEXT_BYTES)
    if packed is None:
        raise ContextError(f"the task context {uri} does not exist")
    return extract(packed, dest)


def keep(pairs: Sequence[str], base: Path) -> int:
    """Upload each LOCAL file (relative to `base`) of the LOCAL URI pairs that exists to its URI: a failed
    job's own logs, to where Snakemake would have stored them had the job succeeded, for the orchestrator
    to show and deliver. How many."""
    from arc_reactor.adapters.storage import Storage, make_client
    from arc_reactor.settings import get_settings

    if len(pairs) % 2:
        raise ValueError("keep takes LOCAL URI pairs")
    storage = Storage(make_client(get_settings()))
    kept = 0
    for name, uri in zip(pairs[::2], pairs[1::2], strict=True):
        path = base / name
        if Path(name).is_absolute() or ".." in Path(name).parts or not path.is_file():
            continue
        if not uri.startswith("gs://"):
            raise ValueError(f"not a gs:// URI: {uri!r}")
        storage.upload_file(path, uri)
        kept += 1
    return kept


USAGE = (
    "usage: python3 -m arc_reactor.orchestrator.task_context fetch gs://BUCKET/NAME\n"
    "       python3 -m arc_reactor.orchestrator.task_context keep LOCAL gs://BUCKET/NAME [LOCAL URI ...]\n"
)


def main(argv: Sequence[str] | None = None) -> int:
    """`fetch URI`: the context into the current directory. `keep LOCAL URI...`: a failed task's logs to
    storage. 1 with the reason on stderr (2 for a bad command line)."""
    args = list(sys.argv[1:] if argv is None else argv)
    fetching = len(args) == 2 and args[0] == "fetch" and args[1].startswith("gs://")
    keeping = len(args) >= 3 and len(args) % 2 == 1 and args[0] == "keep"
    if not (fetching or keeping):
        sys.stderr.write(USAGE)
        return 2
    try:
        if args[0] == "fetch":
            names = fetch(args[1], Path.cwd())
            sys.stderr.write(f"arc: task context {args[1]}: {len(names)} file(s)\n")
        else:
            count = keep(args[1:], Path.cwd())
            sys.stderr.write(f"arc: kept {count} log file(s) of the failed job\n")
    except Exception as exc:  # noqa: BLE001 - the task fails (or keeps nothing), saying why, in its log
        sys.stderr.write(f"arc: task {args[0]} failed: {exc}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

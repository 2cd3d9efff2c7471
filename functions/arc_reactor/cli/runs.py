"""`arc runs ...` (list, show, watch, cancel, recover, relaunch, logs, results, tasks, why, dump): the Runs
API from a terminal."""

from __future__ import annotations

import argparse
import io
import json
import re
import sys
import tarfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any

import requests

from arc_reactor.cli.client import ApiClient, CliError, load_user_yaml, read_user_file
from arc_reactor.cli.submit import print_warnings
from arc_reactor.cli.watch import watch_to_end
from arc_reactor.core.ids import is_run_id
from arc_reactor.core.progress import describe as describe_progress

LIST_COLUMNS = (
    ("id", 19), ("status", 10), ("pipeline", 22), ("created_at", 19), ("duration", 9), ("submitter", 24),
    ("name", 30),
)  # fmt: skip
ENDED_AT = ("completed_at", "failed_at", "cancelled_at")
FOLLOW_POLL_S = 2.0
DOWNLOAD_ATTEMPTS = 3
ACTIVE_STATUSES = ("pending", "submitted", "running")
RUN_ID_PREFIX = re.compile(r"r[0-9a-z]{2,17}")
MAX_BULK_CANCEL = 500
DUMP_CAP = 100_000  # items of each kind a dump takes
MAX_PAGES = 1000  # pages any listing follows at most


def _client(args: argparse.Namespace) -> ApiClient:
    """The API client; a command's run given by a prefix of its id or by its name is resolved to its id."""
    client = ApiClient.connect(args.api, no_auth=args.no_auth)
    if getattr(args, "run_id", None):
        args.run_id = resolve_run(client, args.run_id)
    if getattr(args, "run_ids", None):
        args.run_ids = [resolve_run(client, ref) for ref in args.run_ids]
    return client


def resolve_run(client: ApiClient, ref: str) -> str:
    """A run id for `ref`: a run id as it is; else the one run whose id starts with it, or else the one run
    of that name (among the runs the caller may list). Several matches are an error listing them."""
    if is_run_id(ref):
        return ref
    matches: list[dict[str, Any]] = []
    if RUN_ID_PREFIX.fullmatch(ref):
        matches = client.call("GET", "/runs", params={"id_prefix": ref, "page_size": 5})["runs"]
    what = "id starts with"
    if not matches:
        matches = client.call("GET", "/runs", params={"name": ref, "page_size": 5})["runs"]
        what = "name is"
    if len(matches) == 1:
        return str(matches[0]["id"])
    if not matches:
        raise CliError(f"no run whose id starts with or whose name is {ref!r}", status=404)
    listed = ", ".join(f"{m['id']} ({m['status']}, {str(m['created_at'])[:19]})" for m in matches[:4])
    more = " and more" if len(matches) > 4 else ""
    raise CliError(
        f"{len(matches)} runs whose {what} {ref!r}: {listed}{more}; give more of the id", status=400
    )


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False))


def duration(run: dict[str, Any], now: datetime | None = None) -> str:
    """How long the run ran (from its start, else its creation, to its end or now), e.g. 1h02m or 3m05s."""
    begun = run.get("started_at") or run.get("created_at")
    if not begun:
        return ""
    ended = next((run[k] for k in ENDED_AT if run.get(k)), None)
    stop = datetime.fromisoformat(ended) if ended else (now or datetime.now(UTC))
    seconds = max(0, int((stop - datetime.fromisoformat(begun)).total_seconds()))
    hours, rest = divmod(seconds, 3600)
    if hours >= 24:
        return f"{hours // 24}d{hours % 24:02d}h"
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


def _cell(run: dict[str, Any], key: str, width: int) -> str:
    raw = run.get(key)
    value = duration(run) if key == "duration" else ("" if raw is None else str(raw))
    if key == "created_at":
        value = value[:19].replace("T", " ")
    return (value if len(value) <= width else value[: width - 1] + "…").ljust(width)


def cmd_list(args: argparse.Namespace) -> int:
    """List runs, newest first, following pages up to --limit."""
    client = _client(args)
    params: dict[str, Any] = {
        "status": args.status or None,
        "pipeline": args.pipeline,
        "submitter": args.submitter,
        "label": args.label or None,
        "created_after": args.created_after,
        "created_before": args.created_before,
        "page_size": min(args.limit, 100),
    }
    return _paged_table(client, "/runs", "runs", params, args, columns=LIST_COLUMNS)


def _paged_table(
    client: ApiClient,
    path: str,
    key: str,
    params: dict[str, Any],
    args: argparse.Namespace,
    *,
    columns: tuple[tuple[str, int], ...],
) -> int:
    """GET `path` page after page (up to --limit items of `key`), then print them as JSON or a table."""
    items: list[dict[str, Any]] = []
    for page in _pages(client, path, params):
        items.extend(page[key])
        if len(items) >= args.limit:
            break
    items = items[: max(args.limit, 0)]
    if args.json:
        _print_json(items)
        return 0
    print("  ".join(name.upper().ljust(width) for name, width in columns).rstrip())
    for item in items:
        print("  ".join(_cell(item, name, width) for name, width in columns).rstrip())
    return 0


def _pages(client: ApiClient, path: str, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The pages of a paged GET (parameters that are None left out), following next_page_token for at
    most MAX_PAGES pages; the caller stops early when it has enough."""
    query = {k: v for k, v in params.items() if v is not None}
    for _ in range(MAX_PAGES):
        page: dict[str, Any] = client.call("GET", path, params=query)
        yield page
        if not page.get("next_page_token"):
            return
        query["page_token"] = page["next_page_token"]


def _money(amount: float) -> str:
    """An amount as people read it: cents from 1 up, else 4 decimals, and "< 0.0001" for less."""
    if 0 < amount < 0.0001:
        return "< 0.0001"
    return f"{amount:.2f}" if amount >= 1 else f"{amount:.4f}"


def describe_cost(cost: dict[str, Any]) -> str:
    """A run's cost in a line: the estimate, what preemptions wasted, and the billed figure when known."""
    est = cost["estimate"]
    line = f"~{est['currency']} {_money(est['total'])} estimated{' so far' if est.get('running') else ''}"
    if est.get("head") is not None:
        line += f" (head job {_money(est['head'])}, tasks {_money(est['tasks'])})"
    if est.get("preemptions"):
        line += f", {_money(est['wasted'])} wasted in {est['preemptions']} preemption(s)"
    if est.get("unpriced_tasks"):
        line += f", {est['unpriced_tasks']} task attempt(s) not priced"
    billed = cost.get("billed") or {}
    if billed.get("total") is not None:
        line += f"; billed {billed['currency']} {_money(billed['total'])} (export of {billed['as_of']})"
    elif billed.get("error"):
        line += f"; billed cost unavailable ({billed['error']})"
    return line


def show_run(run: dict[str, Any]) -> None:
    """Print a run for a person."""
    print(f"run {run['id']}  {run['status']}")
    for key in ("name", "pipeline", "revision", "engine", "submitter", "created_at", "batch_job_name"):
        if run.get(key):
            print(f"  {key + ':':<16}{run[key]}")
    if run.get("error_code"):
        print(f"  {'error:':<16}{run['error_code']}: {run.get('error_message') or ''}")
    if run.get("labels"):
        print(f"  {'labels:':<16}{', '.join(f'{k}={v}' for k, v in run['labels'].items())}")
    if progress := run.get("progress"):
        print(f"  {'progress:':<16}{describe_progress(progress)}")
    if (run.get("cost") or {}).get("estimate"):
        print(f"  {'cost:':<16}{describe_cost(run['cost'])}")
    for key, value in (run.get("locations") or {}).items():
        print(f"  {key + ':':<16}{value}")
    if run.get("parent"):
        print(f"  {'recovers:':<16}{run['parent']['id']} ({run['parent']['status']})")
    for child in run.get("children") or []:
        print(f"  {'recovered by:':<16}{child['id']} ({child['status']})")
    events = [e for e in run.get("events") or [] if e.get("kind") == "transition"]
    if events:
        print("  history:")
    for event in events:
        when = str(event["created_at"])[:19].replace("T", " ")
        print(f"    {when}  {event['to_status']:<11} by {event['source']}")


def cmd_pipelines(args: argparse.Namespace) -> int:
    """List the pipelines that may run, with their engines and revisions."""
    pipelines = _client(args).call("GET", "/pipelines")["pipelines"]
    if args.json:
        _print_json(pipelines)
        return 0
    for p in pipelines:
        revisions = ", ".join(f"{r} (default)" if r == p["default_revision"] else r for r in p["revisions"])
        print(f"{p['name']}  [{p['engine']}]  revisions: {revisions}")
        if p.get("description"):
            print(f"    {p['description']}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    """Show one run."""
    run = _client(args).call("GET", f"/runs/{args.run_id}")
    if args.json:
        _print_json(run)
    else:
        show_run(run)
    return 0


def cmd_watch(args: argparse.Namespace) -> int:
    """Follow a run until it ends; exit 0 only when it completed."""
    client = _client(args)
    print(f"watching run {args.run_id} (Ctrl-C stops watching, not the run)")
    return watch_to_end(client, args.run_id, sys.stdout, args.timeout)


def _safe_destination(root: Path, path: str) -> Path | None:
    """Where a listed file goes under `root`, or None for a path that would leave it."""
    rel = PurePosixPath(path)
    if not path or rel.is_absolute() or ".." in rel.parts:
        return None
    dest = (root / rel).resolve()
    return dest if dest.is_relative_to(root.resolve()) else None


def _download(url: str, dest: Path) -> int:
    """Fetch one file (bounded attempts and timeouts) through a temporary name; the bytes written."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".part")
    for attempt in range(1, DOWNLOAD_ATTEMPTS + 1):
        try:
            with requests.get(url, stream=True, timeout=(10, 300)) as resp:
                resp.raise_for_status()
                with partial.open("wb") as fh:
                    size = sum(fh.write(chunk) for chunk in resp.iter_content(1 << 20))
            partial.replace(dest)
            return size
        except requests.RequestException as exc:
            if attempt == DOWNLOAD_ATTEMPTS:
                raise CliError(f"could not download {dest.name}: {exc}") from exc
            time.sleep(attempt)
    return 0  # not reached


def cmd_results(args: argparse.Namespace) -> int:
    """List a run's results; --download DIR fetches them, page by page while their URLs are fresh."""
    client = _client(args)
    root = Path(args.download) if args.download else None
    listed: list[dict[str, Any]] = []
    fetched = total = 0
    page: dict[str, Any] = {}
    for page in _pages(client, f"/runs/{args.run_id}/results", {"page_size": 500}):
        listed.extend(page["files"])
        for entry in page["files"] if root else []:
            dest = _safe_destination(root, entry["path"])  # type: ignore[arg-type]
            if dest is None:
                print(f"  skipped {entry['path']!r}: not a relative path", file=sys.stderr)
                continue
            total += _download(entry["url"], dest)
            fetched += 1
    if args.json:
        _print_json(
            {k: v for k, v in page.items() if k not in ("files", "next_page_token")} | {"files": listed}
        )
        return 0
    state = "complete" if page.get("complete") else f"run is {page.get('status')}: more may come"
    print(f"results of run {args.run_id} in {page.get('results_uri')} ({len(listed)} file(s), {state})")
    if root is not None:
        print(f"downloaded {fetched} file(s), {total} bytes, into {root}")
        return 0
    for entry in listed:
        print(f"  {entry['size']:>12}  {entry['path']}")
    return 0


def _selected(client: ApiClient, args: argparse.Namespace) -> list[dict[str, Any]]:
    """The runs a filtered cancel names: every run matching the filters, active ones by default."""
    params: dict[str, Any] = {
        "status": args.status or list(ACTIVE_STATUSES),
        "label": args.label or None,
        "pipeline": args.pipeline,
        "submitter": args.submitter,
        "page_size": 100,
    }
    found: list[dict[str, Any]] = []
    for page in _pages(client, "/runs", params):
        found.extend(page["runs"])
        if len(found) > MAX_BULK_CANCEL:
            break
    if len(found) > MAX_BULK_CANCEL:
        raise CliError(
            f"the filters select more than {MAX_BULK_CANCEL} runs: narrow them (--label, --pipeline)"
        )
    return found


def _confirmed(count: int, args: argparse.Namespace) -> bool:
    if args.yes:
        return True
    if not sys.stdin.isatty():
        raise CliError(f"cancelling {count} run(s) needs a confirmation: run it in a terminal, or add --yes")
    return input(f"cancel these {count} run(s)? [y/N] ").strip().lower() in ("y", "yes")


TASK_COLUMNS = (
    ("task_id", 8),
    ("attempt", 7),
    ("process", 28),
    ("status", 10),
    ("exit_code", 9),
    ("cost", 8),
    ("tag", 30),
)


def cmd_tasks(args: argparse.Namespace) -> int:
    """A run's task attempts from its ledger, in the order first seen (every page, up to --limit)."""
    client = _client(args)
    params: dict[str, Any] = {"status": args.status or None, "process": args.process, "page_size": 500}
    return _paged_table(client, f"/runs/{args.run_id}/tasks", "tasks", params, args, columns=TASK_COLUMNS)


def cmd_why(args: argparse.Namespace) -> int:
    """Why a run failed: its error, and its first failed task with a hint."""
    report = _client(args).call("GET", f"/runs/{args.run_id}/diagnosis")
    if args.json:
        _print_json(report)
        return 0
    print(f"run {report['run_id']} is {report['status']}")
    if report.get("error_code"):
        where = f" in {report['error_task']}" if report.get("error_task") else ""
        print(f"  error{where}: {report['error_code']}: {report.get('error_message') or ''}")
    task = report.get("first_failed_task")
    if task is None:
        print("  no failed task in the ledger")
        return 0
    label = task.get("name") or f"{task.get('process')} ({task.get('tag') or task.get('task_id')})"
    print(f"  first failed task: {label}, attempt {task.get('attempt')}, exit code {task.get('exit_code')}")
    for key in ("infrastructure", "work_dir", "native_id"):
        if task.get(key):
            print(f"  {key.replace('_', ' ') + ':':<18}{task[key]}")
    if task.get("hint"):
        print(f"  hint: {task['hint']}")
    for line in str(task.get("error_tail") or "").splitlines()[-20:]:
        print(f"  | {line}")
    every = f"arc runs tasks {args.run_id} --status failed"
    print(f"  ({report['failed_tasks']} failed task attempt(s) in all: {every})")
    return 0


def _all_pages(client: ApiClient, path: str, key: str, cap: int) -> list[Any]:
    """Every item of a paged GET, up to `cap`."""
    items: list[Any] = []
    for page in _pages(client, path, {}):
        items.extend(page[key])
        if len(items) >= cap or not page[key]:
            break
    return items[:cap]


def cmd_dump(args: argparse.Namespace) -> int:
    """A .tar.gz of what support needs about a run: its record and history, tasks, diagnosis, log lines and
    result listing (no result contents, no URLs), like `tw runs dump`."""
    client = _client(args)
    run = client.call("GET", f"/runs/{args.run_id}")
    parts: dict[str, Any] = {
        "run.json": run,
        "diagnosis.json": client.call("GET", f"/runs/{args.run_id}/diagnosis"),
        "tasks.json": _all_pages(client, f"/runs/{args.run_id}/tasks", "tasks", DUMP_CAP),
        "results.json": [
            {k: f[k] for k in ("path", "size", "updated")}
            for f in _all_pages(client, f"/runs/{args.run_id}/results", "files", DUMP_CAP)
        ],
    }
    lines = _all_pages(client, f"/runs/{args.run_id}/logs", "lines", DUMP_CAP)
    log_text = "".join(
        f"{ln.get('timestamp') or ''}\t{ln.get('severity')}\t{ln['message']}\n" for ln in lines
    )
    target = Path(args.output or f"arc-run-{args.run_id}.tar.gz")
    with tarfile.open(target, "w:gz") as tar:
        for name, doc in [*parts.items(), ("orchestrator.log", log_text)]:
            data = (doc if isinstance(doc, str) else json.dumps(doc, indent=2, default=str)).encode()
            info = tarfile.TarInfo(f"arc-run-{args.run_id}/{name}")
            info.size, info.mtime = len(data), int(time.time())
            tar.addfile(info, io.BytesIO(data))
    print(f"wrote {target}: the run, {len(parts['tasks.json'])} task attempt(s), {len(lines)} log line(s), "
          f"{len(parts['results.json'])} result file(s) listed")  # fmt: skip
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    """Cancel runs by id, or every active run the filters select (listed first, confirmed, or --dry-run)."""
    client = _client(args)
    filtered = bool(args.label or args.status or args.pipeline or args.submitter)
    if args.run_ids and filtered:
        raise CliError("give run ids or filters (--label, --status, --pipeline, --submitter), not both")
    if not args.run_ids and not filtered:
        raise CliError(
            "name the runs to cancel, or select them with --label, --status, --pipeline, --submitter"
        )
    if filtered:
        runs = _selected(client, args)
        for run in runs:
            print("  " + "  ".join(_cell(run, name, width) for name, width in LIST_COLUMNS).rstrip())
        if not runs:
            print("no run matches: nothing to cancel")
            return 0
        if args.dry_run:
            print(f"{len(runs)} run(s) would be cancelled (--dry-run: none was)")
            return 0
        if not _confirmed(len(runs), args):
            print("nothing cancelled")
            return 1
        ids = [str(r["id"]) for r in runs]
    else:
        ids = list(args.run_ids)
        if args.dry_run:
            print(f"{len(ids)} run(s) would be cancelled (--dry-run: none was)")
            return 0
    failed = 0
    for run_id in ids:
        try:
            run = client.call("POST", f"/runs/{run_id}:cancel", expect=(200, 202))
        except CliError as exc:  # one refusal (finished meanwhile, not yours) does not stop the others
            if len(ids) == 1:
                raise
            print(f"run {run_id}: not cancelled: {exc}", file=sys.stderr)
            failed += 1
            continue
        print(f"run {run['id']} is {run['status']}")
        for failure in (run.get("cancellation") or {}).get("failures") or []:
            print(f"  warning: {failure}")
    return 1 if failed else 0


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    body: dict[str, Any] = {}
    params: dict[str, Any] = {}
    if args.params:
        loaded = load_user_yaml(read_user_file(args.params), args.params) or {}
        if not isinstance(loaded, dict):
            raise CliError(f"{args.params} must be a YAML mapping")
        params.update(loaded)
    for item in args.set or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise CliError(f"--set {item!r} is not key=value")
        params[key] = load_user_yaml(value, f"--set {item}")
    if params:
        body["params"] = params
    if args.config:
        body["config"] = read_user_file(args.config).decode("utf-8", errors="replace")
    if args.name:
        body["name"] = args.name
    return body


def _named_after_options(exc: CliError, args: argparse.Namespace) -> CliError:
    """The API's problems with an override, named after the option that gave it (`--set key=value`, or
    the --params file) rather than the `params (override)` the API reports."""
    given = {item.partition("=")[0]: f"--set {item}" for item in args.set or []}
    sheet = getattr(args, "samplesheet", None)
    problems = [
        {**p, "file": given.get(str(p.get("field") or "").split(".")[0]) or args.params or "params"}
        if p.get("file") == "params (override)"
        else {**p, "file": sheet}
        if sheet and p.get("file") == "samplesheet.csv"
        else p
        for p in exc.problems
    ]
    return CliError(str(exc), problems, exc.status)


def cmd_recover(args: argparse.Namespace) -> int:
    """Recover a failed or cancelled run (optionally with new params/config), then optionally watch it."""
    return _rerun(args, "recover", "recovers", _overrides(args))


def _rerun(args: argparse.Namespace, action: str, verb: str, body: dict[str, Any]) -> int:
    """POST /runs/{id}:<action> with `body` (read from the user's files before the API is reached), print
    the new run and its warnings, and optionally watch it."""
    client = _client(args)
    try:
        run = client.call("POST", f"/runs/{args.run_id}:{action}", expect=(200, 201), json=body)
    except CliError as exc:
        raise _named_after_options(exc, args) from None
    print(f"run {run['id']} {verb} {args.run_id}: {run['status']}")
    print_warnings(run.get("warnings"))
    if args.watch:
        return watch_to_end(client, run["id"], sys.stdout, args.timeout)
    return 0


def cmd_relaunch(args: argparse.Namespace) -> int:
    """A new run from a run's inputs, with changes (a corrected samplesheet, params, config, name)."""
    body = _overrides(args)
    if args.samplesheet:
        body["samplesheet"] = read_user_file(args.samplesheet).decode("utf-8", errors="replace")
    return _rerun(args, "relaunch", "relaunches", body)


def cmd_logs(args: argparse.Namespace) -> int:
    """Print the orchestrator's log lines; --follow keeps reading while the run goes on (bounded)."""
    client = _client(args)
    params: dict[str, Any] = {"page_size": args.page_size}
    deadline = time.monotonic() + args.timeout
    while True:
        page = client.call("GET", f"/runs/{args.run_id}/logs", params=params)
        for line in page["lines"]:
            stamp = f"{str(line['timestamp'])[:19].replace('T', ' ')}  " if line.get("timestamp") else ""
            print(f"{stamp}{line['message']}")
        token = page.get("next_page_token")
        if not token or time.monotonic() >= deadline:
            return 0
        if not page["lines"] and not args.follow:
            return 0
        params["page_token"] = token
        if not page["lines"]:
            time.sleep(FOLLOW_POLL_S)

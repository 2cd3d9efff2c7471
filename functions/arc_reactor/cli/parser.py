"""The `arc submit` and `arc runs ...` parts of the command line."""

from __future__ import annotations

import argparse

from arc_reactor.cli import runs, submit


def _api_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--api", help="Runs API URL (default: $ARC_API_URL, else the `arc local up` stack)")
    parser.add_argument(
        "--no-auth", action="store_true", help="send no ID token (the local stack needs none)"
    )


def _submit(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("submit", help="submit a run bundle (a folder, or --pipeline and files)")
    p.add_argument(
        "bundle", nargs="?", help="folder with run.yaml, samplesheet.csv, params.yaml, nextflow.config"
    )
    p.add_argument("--pipeline", help="pipeline of the registry (overrides run.yaml)")
    p.add_argument("--revision", help="revision (default: the registry's)")
    p.add_argument("--name", help="a name for the run")
    p.add_argument("--profile", help="engine profile")
    p.add_argument("--samplesheet", help="samplesheet.csv file")
    p.add_argument("--params", help="params.yaml file")
    p.add_argument("--config", help="nextflow.config file (allowlisted settings only)")
    p.add_argument("--label", action="append", metavar="KEY=VALUE", help="a label (repeatable)")
    p.add_argument("--via", choices=("api", "inbox"), default="api", help="POST /runs (default) or the inbox")
    p.add_argument(
        "--inbox", help="inbox bucket for --via inbox (default: the local stack's or ARC_INBOX_BUCKET)"
    )
    p.add_argument("--submission", help="folder name in the inbox for --via inbox (default: generated)")
    p.add_argument("--idempotency-key", help="a retried submit with the same key makes no second run")
    p.add_argument("--watch", action="store_true", help="then follow the run until it ends")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds --watch waits (default 3600)")
    _api_options(p)
    p.set_defaults(func=submit.cmd_submit)


def _rerun_parsers(
    rs: argparse._SubParsersAction[argparse.ArgumentParser],
) -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """`runs recover` (resume in the same work dir) and `runs relaunch` (a new run from the same inputs)."""
    rec = rs.add_parser("recover", help="resume a failed or cancelled run in a new run")
    rel = rs.add_parser("relaunch", help="a new run from a run's inputs, with changes (nothing resumed)")
    rel.add_argument("--samplesheet", help="a samplesheet.csv replacing the run's")
    for p, what in ((rec, "parent's"), (rel, "run's")):
        p.add_argument("run_id")
        p.add_argument("--params", help=f"YAML file of params merged over the {what}")
        p.add_argument("--set", action="append", metavar="KEY=VALUE", help="one param override (YAML value)")
        p.add_argument("--config", help=f"a nextflow.config replacing the {what}")
        p.add_argument("--name")
        p.add_argument("--watch", action="store_true")
        p.add_argument("--timeout", type=float, default=3600.0)
    rec.set_defaults(func=runs.cmd_recover)
    rel.set_defaults(func=runs.cmd_relaunch)
    return rec, rel


def _inside_parsers(
    rs: argparse._SubParsersAction[argparse.ArgumentParser],
) -> tuple[argparse.ArgumentParser, ...]:
    """`runs results`, `runs tasks`, `runs why` and `runs dump`: what is inside a run."""
    tasks = rs.add_parser("tasks", help="a run's tasks (each attempt), from its ledger")
    tasks.add_argument("run_id")
    tasks.add_argument("--status", action="append", help="filter (repeatable)")
    tasks.add_argument("--process", help="one process or rule")
    tasks.add_argument("--limit", type=int, default=1000, help="at most this many (default 1000)")
    tasks.add_argument("--json", action="store_true")
    tasks.set_defaults(func=runs.cmd_tasks)
    why = rs.add_parser("why", help="why a run failed: its first failed task, its log tail and a hint")
    why.add_argument("run_id")
    why.add_argument("--json", action="store_true")
    why.set_defaults(func=runs.cmd_why)
    res = rs.add_parser("results", help="a run's result files, with --download to fetch them")
    res.add_argument("run_id")
    res.add_argument("--download", metavar="DIR", help="download every file into DIR (paths kept)")
    res.add_argument("--json", action="store_true")
    res.set_defaults(func=runs.cmd_results)
    dump = rs.add_parser("dump", help="a .tar.gz of a run's record, tasks, diagnosis and logs, for support")
    dump.add_argument("run_id")
    dump.add_argument("--output", "-o", help="file to write (default arc-run-RUN.tar.gz)")
    dump.set_defaults(func=runs.cmd_dump)
    return res, tasks, why, dump


def _runs(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("runs", help="list, show, watch, cancel, recover runs; read their logs and results")
    rs = p.add_subparsers(dest="runs_command", required=True)
    ls = rs.add_parser("list", help="runs, newest first")
    ls.add_argument("--status", action="append", help="filter (repeatable)")
    ls.add_argument("--pipeline")
    ls.add_argument("--submitter")
    ls.add_argument("--label", action="append", metavar="KEY=VALUE", help="filter (repeatable)")
    ls.add_argument("--created-after", help="RFC 3339 date-time, e.g. 2026-01-31T00:00:00Z")
    ls.add_argument("--created-before", help="RFC 3339 date-time")
    ls.add_argument("--limit", type=int, default=50, help="at most this many runs (default 50)")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=runs.cmd_list)
    show = rs.add_parser("show", help="one run, its relatives and history")
    show.add_argument("run_id")
    show.add_argument("--json", action="store_true")
    show.set_defaults(func=runs.cmd_show)
    watch = rs.add_parser("watch", help="follow a run live until it ends (exit 0 when completed)")
    watch.add_argument("run_id")
    watch.add_argument("--timeout", type=float, default=3600.0)
    watch.set_defaults(func=runs.cmd_watch)
    cancel = rs.add_parser(
        "cancel", help="cancel runs and their Batch jobs: by id, or every active run a filter selects"
    )
    cancel.add_argument("run_ids", nargs="*", metavar="RUN", help="run ids (or give filters instead)")
    cancel.add_argument("--label", action="append", metavar="KEY=VALUE", help="filter (repeatable)")
    cancel.add_argument("--status", action="append", help="filter (default: pending, submitted, running)")
    cancel.add_argument("--pipeline")
    cancel.add_argument("--submitter")
    cancel.add_argument("--dry-run", action="store_true", help="list what would be cancelled, cancel nothing")
    cancel.add_argument("--yes", action="store_true", help="do not ask for confirmation (scripts)")
    cancel.set_defaults(func=runs.cmd_cancel)
    rec, rel = _rerun_parsers(rs)
    logs = rs.add_parser("logs", help="the orchestrator's log lines")
    logs.add_argument("run_id")
    logs.add_argument("--page-size", type=int, default=500)
    logs.add_argument("--follow", action="store_true", help="keep reading while the run goes on")
    logs.add_argument("--timeout", type=float, default=600.0, help="seconds --follow reads (default 600)")
    logs.set_defaults(func=runs.cmd_logs)
    res, tasks, why, dump = _inside_parsers(rs)
    for child in (ls, show, watch, cancel, rec, rel, logs, res, tasks, why, dump):
        _api_options(child)


def _pipelines(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("pipelines", help="the pipelines that may run here")
    ps = p.add_subparsers(dest="pipelines_command", required=True)
    ls = ps.add_parser("list", help="every pipeline of the registry, its engine and revisions")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=runs.cmd_pipelines)
    _api_options(ls)


def add_api_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `submit`, `runs` and `pipelines` to the `arc` parser."""
    _submit(sub)
    _runs(sub)
    _pipelines(sub)

"""The `arc` command: the local stack (`demo`, `local up`), `db upgrade`, and the Runs API (`submit`,
`runs list|show|watch|cancel|recover|logs`, built in cli/parser.py)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
import warnings
from pathlib import Path

from arc_reactor.cli.client import CliError


def _local_env() -> None:
    # The local stack and every command here stay on loopback: no metadata-server probe, ever.
    os.environ.setdefault("NO_GCE_CHECK", "true")
    # pgserver's platformdirs warns when XDG_RUNTIME_DIR is unset (CI, containers); it is harmless here.
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the demo end to end on the local stack."""
    _local_env()
    from arc_reactor.local.demo import run_demo
    from arc_reactor.local.stack import StackBusy

    _stop_on_sigterm()
    try:
        return run_demo(state_dir=args.state_dir, timeout=args.timeout)
    except StackBusy as exc:
        raise CliError(str(exc)) from None


def cmd_local_up(args: argparse.Namespace) -> int:
    """Start the local stack and keep it up until interrupted."""
    _local_env()
    from arc_reactor.local.stack import LocalStack, StackBusy

    stack = LocalStack(state_dir=args.state_dir) if args.state_dir else LocalStack()
    stack.log_file = stack.state_dir / "logs" / "functions.log"
    _stop_on_sigterm()
    try:
        stack.start()
    except StackBusy as exc:
        raise CliError(str(exc)) from None
    s = stack.settings
    print("Arc Reactor local stack is up (no authentication: local use only).")
    print(f"  dashboard:     {stack.url('runs_api')}ui/")
    print(f"  runs API:      {stack.url('runs_api')}runs")
    print(f"  inbox bucket:  gs://{s.inbox_bucket}  (emulator: {os.environ['STORAGE_EMULATOR_HOST']})")
    print(f"  runs bucket:   gs://{s.runs_bucket}")
    print(f"  Batch service: {os.environ['ARC_BATCH_ENDPOINT']}")
    print(f"  database:      {stack.database_url}")
    print(f"  logs:          {stack.log_file} and {stack.state_dir / 'jobs'}/")
    print("Press Ctrl-C to stop.")
    sys.stdout.flush()
    info = stack.state_dir / "local.json"  # how `arc runs ...` and `arc submit` find this stack
    info.write_text(
        json.dumps(
            {
                "api_url": stack.url("runs_api").rstrip("/"),
                "storage_emulator_host": os.environ["STORAGE_EMULATOR_HOST"],
                "inbox_bucket": s.inbox_bucket,
                "runs_bucket": s.runs_bucket,
                "pid": os.getpid(),
            }
        ),
        encoding="utf-8",
    )
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        print("stopping the local stack...", flush=True)
        info.unlink(missing_ok=True)
        stack.stop()
        print("stopped: the functions, the Batch service (its running jobs killed), the storage emulator"
              " and PostgreSQL; the state stays in " + str(stack.state_dir), flush=True)  # fmt: skip
    return 0


def _stop_on_sigterm() -> None:
    """SIGTERM (a service manager, `kill`) stops the stack as Ctrl-C does: Python's default would end the
    process without running the stack's stop, leaving PostgreSQL running."""

    def interrupt(_sig: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def cmd_db_upgrade(_args: argparse.Namespace) -> int:
    """Apply database migrations (DATABASE_URL, Cloud SQL settings, or the embedded database)."""
    from arc_reactor.adapters import migrate
    from arc_reactor.adapters.db import get_engine
    from arc_reactor.settings import get_settings

    migrate.upgrade(get_engine(get_settings()))
    print("database schema is up to date")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `arc`."""
    from arc_reactor.cli.parser import add_api_commands

    parser = argparse.ArgumentParser(prog="arc", description="Arc Reactor: pipelines on Google Cloud Batch.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run the demo bundle end to end on the embedded local stack")
    demo.add_argument("--state-dir", type=Path, default=None, help="where local state lives (default .arc/)")
    demo.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for the run to finish")
    demo.set_defaults(func=cmd_demo)
    local = sub.add_parser("local", help="the embedded local stack")
    local_sub = local.add_subparsers(dest="local_command", required=True)
    up = local_sub.add_parser("up", help="start the local stack and keep it running")
    up.add_argument("--state-dir", type=Path, default=None)
    up.set_defaults(func=cmd_local_up)
    db = sub.add_parser("db", help="database administration")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    db_sub.add_parser("upgrade", help="apply migrations").set_defaults(func=cmd_db_upgrade)
    add_api_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `arc` script."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. `arc runs logs R | head`: stop quietly, as other tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except CliError as exc:
        print(f"arc: {exc}", file=sys.stderr)
        for problem in exc.problems:
            where = ":".join(str(problem[k]) for k in ("file", "line") if problem.get(k) is not None)
            field = f" [{problem['field']}]" if problem.get("field") else ""
            print(f"  {where}{field}: {problem.get('message')}", file=sys.stderr)
        return 2 if exc.problems or 400 <= exc.status < 500 else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""A local google.cloud.batch.v1.BatchService that the real BatchServiceClient talks to over an insecure
channel. Each job's one task runs as a local process (through a `launcher`), with Batch's task retry
rules, max run duration, cancellation (the process group is killed) and Pub/Sub-shaped notifications
(local/batch_state.py holds the rules and message shapes; local/batch_faults.py the fault injection).

Threads: gRPC handlers and one runner per job change state under one lock; notifications are queued under
that lock, so their order is the order of the changes, and one dispatcher thread delivers them, never
while the lock is held. Notifications follow the job's own `notifications` config, as on Batch: a job
submitted without a topic (ARC_BATCH_TOPIC unset) publishes nothing.
"""

from __future__ import annotations

import logging
import queue
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import grpc
from google.cloud import batch_v1
from google.longrunning import operations_pb2

from arc_reactor.core.batch_policy import MAX_RUN_EXIT_CODE, SPOT_PREEMPTED_EXIT_CODE
from arc_reactor.local import batch_state as bs
from arc_reactor.local.batch_faults import (
    Faults,
    Message,
    RpcFault,
    dispatch_notifications,
    faulty_handler,
)
from arc_reactor.local.batch_state import Launcher, command_launcher

__all__ = ["Faults", "Launcher", "LocalBatchServer", "NotificationHandler", "RpcFault", "command_launcher"]

log = logging.getLogger(__name__)

NotificationHandler = Callable[[dict[str, str], bytes], None]
Live = tuple[batch_v1.Job, "_Runtime"]


@dataclass
class _Runtime:
    request_id: str
    cancel_requested: bool = False
    proc: subprocess.Popen[bytes] | None = None
    runner: threading.Thread | None = None


def _handlers(s: LocalBatchServer) -> tuple[Any, ...]:
    b, op_out = batch_v1, operations_pb2.Operation.SerializeToString
    table = {
        "CreateJob": (s.create_job, b.CreateJobRequest.deserialize, b.Job.serialize),
        "GetJob": (s.get_job, b.GetJobRequest.deserialize, b.Job.serialize),
        "ListJobs": (s.list_jobs, b.ListJobsRequest.deserialize, b.ListJobsResponse.serialize),
        "CancelJob": (s.cancel_job, b.CancelJobRequest.deserialize, op_out),
        "DeleteJob": (s.delete_job, b.DeleteJobRequest.deserialize, op_out),
    }
    methods = {m: faulty_handler(s.faults, m, *spec) for m, spec in table.items()}
    batch = grpc.method_handlers_generic_handler("google.cloud.batch.v1.BatchService", methods)
    get_op = faulty_handler(
        s.faults, "GetOperation", s.get_operation, operations_pb2.GetOperationRequest.FromString, op_out
    )
    return batch, grpc.method_handlers_generic_handler(
        "google.longrunning.Operations", {"GetOperation": get_op}
    )


class LocalBatchServer:
    """BatchService (CreateJob, GetJob, ListJobs, CancelJob, DeleteJob) and Operations/GetOperation."""

    def __init__(
        self,
        launcher: Launcher,
        on_notification: NotificationHandler,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        region: str = "us-central1",
        run_jobs: bool = True,
        queue_delay: float = 0.0,
    ) -> None:
        self._launcher, self._on_notification = launcher, on_notification
        # Seconds a job waits in QUEUED and in SCHEDULED, as on Batch while a VM is found and booted.
        self.queue_delay = queue_delay
        self._host, self._port, self.region = host, port, region
        self.run_jobs = run_jobs  # False: jobs stay QUEUED until a test sets their state (set_job_state)
        self.faults = Faults()
        self._lock = threading.Condition()  # re-entrant (RLock inside); also signals state changes
        self._jobs: dict[str, batch_v1.Job] = {}
        self._runtime: dict[str, _Runtime] = {}
        self._ops: dict[str, tuple[str, str, operations_pb2.Operation]] = {}
        self._outbox: queue.Queue[Message | None] = queue.Queue()
        self._dispatcher = threading.Thread(target=self._dispatch, name="local-batch-notify", daemon=True)
        self._server: Any = None
        self._stopping = False

    # ---- lifecycle and helpers ----------------------------------------------------------------------
    def start(self) -> LocalBatchServer:
        """Start serving on host:port (port 0 picks a free one)."""
        self._server = grpc.server(ThreadPoolExecutor(max_workers=8, thread_name_prefix="local-batch-rpc"))
        self._server.add_generic_rpc_handlers(_handlers(self))
        self._port = self._server.add_insecure_port(f"{self._host}:{self._port}")
        self._server.start()
        self._dispatcher.start()
        return self

    @property
    def address(self) -> str:
        """host:port, for grpc.insecure_channel and ARC_BATCH_ENDPOINT."""
        return f"{self._host}:{self._port}"

    def stop(self) -> None:
        """Stop serving and kill running tasks quietly (no further state changes or notifications)."""
        with self._lock:
            self._stopping = True
            procs = [rt.proc for rt in self._runtime.values() if rt.proc is not None]
            runners = [rt.runner for rt in self._runtime.values() if rt.runner is not None]
        if self._server is not None:
            self._server.stop(grace=1.0).wait(5.0)
        for proc in procs:
            bs.signal_group(proc, signal.SIGKILL)
        for runner in runners:
            runner.join(timeout=5.0)
        self._outbox.put(None)
        if self._dispatcher.is_alive():
            self._dispatcher.join(timeout=5.0)

    def jobs(self) -> list[batch_v1.Job]:
        """Copies of every stored job."""
        with self._lock:
            return [bs.copy_job(job) for job in self._jobs.values()]

    def wait_for_job(self, job_name: str, timeout: float) -> batch_v1.Job:
        job_name = bs.canonical_name(job_name)
        """Block until the job is SUCCEEDED, FAILED or CANCELLED; TimeoutError after `timeout` s."""

        def terminal() -> bool:
            job = self._jobs.get(job_name)
            return job is not None and job.status.state.name in bs.TERMINAL_STATES

        with self._lock:
            if not self._lock.wait_for(terminal, timeout=timeout):
                job = self._jobs.get(job_name)
                raise TimeoutError(
                    f"{job_name} is {job.status.state.name if job else 'missing'} after {timeout} s"
                )
            return bs.copy_job(self._jobs[job_name])

    def set_job_state(self, job_name: str, state: str, *, exit_code: int | None = None) -> None:
        """Put a job in `state` (meant for run_jobs=False), recording a task exit code when given."""
        with self._lock:
            job = self._jobs[bs.canonical_name(job_name)]
            if exit_code is not None:
                self._task_ended(job, exit_code, "local-0")
            self._transition(job, state)

    def retry_task(self, job_name: str, exit_code: int = SPOT_PREEMPTED_EXIT_CODE) -> None:
        """Record a task attempt ending with `exit_code` and its retry starting; the job stays RUNNING."""
        with self._lock:
            job = self._jobs[bs.canonical_name(job_name)]
            self._task_ended(job, exit_code, "local-0")
            self._task_changed(job, "FAILED", "RUNNING")

    # ---- state changes (callers hold the lock) ------------------------------------------------------
    def _transition(self, job: batch_v1.Job, new: str, cause: str = "") -> None:
        old = job.status.state.name
        job.status.state = bs.enum_member(batch_v1.JobStatus.State, new)
        text = bs.job_event_text(job.name, old, new, cause)
        job.status.status_events.append(
            batch_v1.StatusEvent(type_="STATUS_CHANGED", description=text, event_time=datetime.now(UTC))
        )
        job.update_time = datetime.now(UTC)
        self._post(bs.job_notification(job, old, new, self.region))
        self._lock.notify_all()

    def _task_changed(self, job: batch_v1.Job, old: str, new: str) -> None:
        bs.set_task_counts(job, {new: 1})
        self._post(bs.task_notification(job, old, new, self.region))

    def _task_ended(self, job: batch_v1.Job, exit_code: int, instance: str) -> str:
        new = "SUCCEEDED" if exit_code == 0 else "FAILED"
        text = bs.task_event_text("RUNNING", new, f"{self.region}-a", instance, exit_code)
        job.status.status_events.append(bs.task_event(text, new, exit_code))
        self._task_changed(job, "RUNNING", new)
        return text

    def _post(self, message: Message | None) -> None:
        if message is not None and not self._stopping:
            self._outbox.put(message)

    def _dispatch(self) -> None:
        dispatch_notifications(self._outbox, self.faults, self._deliver)

    def _deliver(self, items: list[Message]) -> None:
        for attributes, data in items:
            try:
                self._on_notification(attributes, data)
            except Exception:  # a consumer's bug must not stop later notifications
                log.exception("local batch notification handler failed")

    # ---- RPC bodies ---------------------------------------------------------------------------------
    def create_job(self, request: batch_v1.CreateJobRequest) -> batch_v1.Job:
        """CreateJob: store the job QUEUED and start its runner; the same request_id again is a no-op."""
        if problem := bs.create_problem(request, self.region):
            raise RpcFault(grpc.StatusCode.INVALID_ARGUMENT, problem)
        name = bs.canonical_name(f"{request.parent}/jobs/{request.job_id}")
        with self._lock:
            if name in self._jobs:
                if request.request_id and self._runtime[name].request_id == request.request_id:
                    return bs.copy_job(self._jobs[name])
                raise RpcFault(grpc.StatusCode.ALREADY_EXISTS, f"Job {name} already exists")
            job = bs.copy_job(request.job)
            job.name, job.uid = name, bs.new_job_uid(request.job_id)
            job.create_time = job.update_time = datetime.now(UTC)
            job.task_groups[0].name = f"{name}/taskGroups/{bs.GROUP}"
            job.status = batch_v1.JobStatus(state=batch_v1.JobStatus.State.QUEUED)
            self._jobs[name] = job
            rt = self._runtime[name] = _Runtime(request_id=request.request_id)
            self._post(bs.job_notification(job, "STATE_UNSPECIFIED", "QUEUED", self.region))
            if self.run_jobs:
                rt.runner = threading.Thread(
                    target=self._run, args=(name,), name=f"batch-{request.job_id}", daemon=True
                )
            result = bs.copy_job(job)
        if rt.runner is not None:
            rt.runner.start()
        return result

    def get_job(self, request: batch_v1.GetJobRequest) -> batch_v1.Job:
        """GetJob."""
        name = bs.canonical_name(request.name)
        with self._lock:
            if name not in self._jobs:
                raise RpcFault(grpc.StatusCode.NOT_FOUND, f"Job {name} not found")
            return bs.copy_job(self._jobs[name])

    def list_jobs(self, request: batch_v1.ListJobsRequest) -> batch_v1.ListJobsResponse:
        """ListJobs with a filter, page_size and page_token (an offset), oldest first."""
        try:
            terms = bs.parse_filter(request.filter)
            offset = int(request.page_token or "0")
        except ValueError as exc:
            raise RpcFault(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from exc
        size = min(request.page_size or bs.DEFAULT_PAGE_SIZE, bs.MAX_PAGE_SIZE)
        prefix = bs.canonical_name(f"{request.parent}/jobs/")
        with self._lock:
            found = [j for n, j in self._jobs.items() if n.startswith(prefix) and bs.matches(j, terms)]
            found.sort(key=lambda j: (j.create_time, j.name))
            page = [bs.copy_job(j) for j in found[offset : offset + size]]
        token = str(offset + size) if offset + size < len(found) else ""
        return batch_v1.ListJobsResponse(jobs=page, next_page_token=token)

    def cancel_job(self, request: batch_v1.CancelJobRequest) -> operations_pb2.Operation:
        """CancelJob: CANCELLATION_IN_PROGRESS now, CANCELLED once the task's process group is gone."""
        name = bs.canonical_name(request.name)
        with self._lock:
            job = self._jobs.get(name)
            if job is None:
                raise RpcFault(grpc.StatusCode.NOT_FOUND, f"Job {name} not found")
            state = job.status.state.name
            if state in bs.TERMINAL_STATES:
                raise RpcFault(
                    grpc.StatusCode.FAILED_PRECONDITION, f"Job {name} is {state}; nothing to cancel"
                )
            rt = self._runtime[name]
            if not rt.cancel_requested:
                rt.cancel_requested = True
                if state != "CANCELLATION_IN_PROGRESS":  # set_job_state may have put it there already
                    self._transition(job, "CANCELLATION_IN_PROGRESS")
                if rt.runner is None or not rt.runner.is_alive():
                    self._transition(job, "CANCELLED")  # nothing runs, so nothing to wait for
            proc, op = rt.proc, self._operation(name, "cancel")
        if proc is not None:
            bs.terminate(proc)
        return op

    def delete_job(self, request: batch_v1.DeleteJobRequest) -> operations_pb2.Operation:
        """DeleteJob: kill the task if it runs and forget the job; the operation is done at once."""
        name = bs.canonical_name(request.name)
        with self._lock:
            job = self._jobs.get(name)
            if job is None:
                raise RpcFault(grpc.StatusCode.NOT_FOUND, f"Job {name} not found")
            rt = self._runtime.pop(name)
            rt.cancel_requested = True
            self._transition(job, "DELETION_IN_PROGRESS")
            del self._jobs[name]
            op = self._operation(name, "delete")
            bs.finish_operation(op, "delete")
        if rt.proc is not None:
            bs.terminate(rt.proc)
        return op

    def get_operation(self, request: operations_pb2.GetOperationRequest) -> operations_pb2.Operation:
        """Operations/GetOperation: a cancel is done once its job is terminal or gone."""
        name = bs.canonical_name(request.name)
        with self._lock:
            if name not in self._ops:
                raise RpcFault(grpc.StatusCode.NOT_FOUND, f"Operation {name} not found")
            job_name, verb, op = self._ops[name]
            job = self._jobs.get(job_name)
            if job is None or job.status.state.name in bs.TERMINAL_STATES:
                bs.finish_operation(op, verb)
            result = operations_pb2.Operation()
            result.CopyFrom(op)
            return result

    def _operation(self, job_name: str, verb: str) -> operations_pb2.Operation:
        op = bs.new_operation(job_name, verb, f"operation-{uuid.uuid4().hex[:16]}")
        self._ops[op.name] = (job_name, verb, op)
        return op

    # ---- the runner: one thread per job -------------------------------------------------------------
    @contextmanager
    def _live(self, name: str) -> Iterator[Live | None]:
        """Hold the lock; yield the job and its runtime, or None once it is deleted or the server stops."""
        with self._lock:
            job, rt = self._jobs.get(name), self._runtime.get(name)
            yield None if job is None or rt is None or self._stopping else (job, rt)

    def _cancelled(self, live: Live) -> bool:
        job, rt = live
        if rt.cancel_requested and job.status.state.name == "CANCELLATION_IN_PROGRESS":
            self._transition(job, "CANCELLED")
        return rt.cancel_requested

    def _run(self, name: str) -> None:
        for state in ("SCHEDULED", "RUNNING"):
            time.sleep(self.queue_delay)  # bounded: a fraction of a second on the local stack
            with self._live(name) as live:
                if live is None or self._cancelled(live):
                    return
                self._transition(live[0], state)
                if state == "RUNNING":
                    self._task_changed(live[0], "PENDING", "RUNNING")
        attempt = 0
        while (launched := self._launch(name, attempt)) is not None:
            proc, max_run, forced = launched
            try:
                code = bs.exit_code_of(proc.wait(timeout=max_run))
            except subprocess.TimeoutExpired:
                bs.signal_group(proc, signal.SIGKILL)
                proc.wait()
                code = MAX_RUN_EXIT_CODE
            if not self._attempt_ended(name, proc, code if forced is None else forced, attempt):
                return
            attempt += 1

    def _launch(
        self, name: str, attempt: int
    ) -> tuple[subprocess.Popen[bytes], float | None, int | None] | None:
        """Start an attempt: the process, its time limit and an exit code forced by a fault, or None."""
        with self._live(name) as live:
            if live is None or self._cancelled(live):
                return None
            snapshot, env = bs.copy_job(live[0]), bs.task_env(live[0], attempt)
        limit = snapshot.task_groups[0].task_spec.max_run_duration
        max_run = limit.total_seconds() if limit else None
        try:
            proc = self._launcher(snapshot, env)
        except Exception as exc:  # noqa: BLE001 - any launcher failure fails the task, like a VM that cannot start
            with self._live(name) as live:
                if live is not None:
                    text = f"Task state is updated from ASSIGNED to FAILED: the local launcher failed: {exc}"
                    live[0].status.status_events.append(bs.task_event(text, "FAILED", None))
                    self._task_changed(live[0], "RUNNING", "FAILED")
                    self._transition(live[0], "FAILED", cause=text)
            return None
        with self._live(name) as live:
            stop = live is None or live[1].cancel_requested
            if live is not None:
                live[1].proc = proc
        forced = None if stop else self.faults.take_task()
        if stop:
            bs.terminate(proc)  # cancelled while starting: the wait returns at once and the runner finishes
        elif forced is not None:
            bs.signal_group(proc, signal.SIGKILL)  # the VM is gone: nothing gets to clean up
        return proc, max_run, forced

    def _attempt_ended(self, name: str, proc: subprocess.Popen[bytes], code: int, attempt: int) -> bool:
        """Record an attempt's end; True when Batch's rules retry the task."""
        with self._live(name) as live:
            if live is None:
                return False
            job, rt = live
            rt.proc = None
            if self._cancelled(live):
                return False
            text = self._task_ended(job, code, f"local-{proc.pid}")
            if code == 0:
                self._transition(job, "SUCCEEDED")
                return False
            if bs.should_retry(job.task_groups[0].task_spec, code, attempt):
                self._task_changed(job, "FAILED", "RUNNING")
                return True
            self._transition(job, "FAILED", cause=text)
            return False

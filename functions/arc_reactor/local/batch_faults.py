"""Fault injection for the local Batch service, switched on by tests and benchmarks.

RPC faults: UNAVAILABLE for the next N calls of any method; any status code (RESOURCE_EXHAUSTED,
PERMISSION_DENIED, DEADLINE_EXCEEDED, ...) for the next calls of one method, either instead of the call
or after it took effect (a create that happened although the client saw an error). Task faults: the next
attempts end with a Batch-reserved exit code (spot preemption, 50001, by default) and Batch's retry rule
applies. Notification faults, as Pub/Sub can misbehave: the next N dropped, the next N delivered twice,
the next `window` held and delivered in reverse order.
"""

from __future__ import annotations

import queue
import threading
from collections import defaultdict, deque
from collections.abc import Callable
from typing import Any

import grpc

from arc_reactor.core.batch_policy import SPOT_PREEMPTED_EXIT_CODE

Message = tuple[dict[str, str], bytes]
# Held (reordered) notifications are released, reversed, once none has arrived for this long, so a window
# larger than what the test produces cannot hold them forever.
REORDER_FLUSH_S = 0.2


class RpcFault(Exception):
    """A gRPC status for the client; with `after`, the call takes effect first and then fails."""

    def __init__(self, code: grpc.StatusCode, message: str, *, after: bool = False) -> None:
        super().__init__(message)
        self.code, self.message, self.after = code, message, after


class Faults:
    """The switches; every method is thread-safe and each fault is consumed as it fires."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._unavailable = 0
        self._rpc: defaultdict[str, deque[RpcFault]] = defaultdict(deque)
        self._task: deque[int] = deque()
        self._drop = self._duplicate = self._reorder = 0
        self._held: list[Message] = []

    # ---- switches -----------------------------------------------------------------------------------
    def unavailable_next(self, n: int) -> None:
        """Answer the next `n` RPCs (any method) with UNAVAILABLE."""
        with self._lock:
            self._unavailable = n

    def fail_next(
        self,
        method: str,
        code: grpc.StatusCode,
        n: int = 1,
        message: str = "injected fault",
        *,
        after: bool = False,
    ) -> None:
        """Answer the next `n` calls of `method` (e.g. "GetJob") with `code`; with `after`, the call takes
        effect before the error is returned."""
        with self._lock:
            self._rpc[method].extend(RpcFault(code, message, after=after) for _ in range(n))

    def fail_next_create(
        self, code: grpc.StatusCode, message: str = "injected fault", *, created: bool = False
    ) -> None:
        """Answer the next CreateJob with `code` (e.g. RESOURCE_EXHAUSTED, PERMISSION_DENIED); with
        `created`, the job is stored anyway, as when a create raced with the error."""
        self.fail_next("CreateJob", code, 1, message, after=created)

    def preempt_next(self, n: int = 1, exit_code: int = SPOT_PREEMPTED_EXIT_CODE) -> None:
        """End the next `n` task attempts as Batch would on a spot preemption: the process group is killed
        as it starts and the attempt reports `exit_code` (a process cannot exit with codes above 255)."""
        with self._lock:
            self._task.extend([exit_code] * n)

    def drop_notifications(self, n: int) -> None:
        """Never deliver the next `n` notifications."""
        with self._lock:
            self._drop = n

    def duplicate_notifications(self, n: int) -> None:
        """Deliver each of the next `n` notifications twice."""
        with self._lock:
            self._duplicate = n

    def reorder_notifications(self, window: int) -> None:
        """Hold the next `window` notifications and deliver them in reverse order."""
        with self._lock:
            self._reorder = window

    def clear(self) -> None:
        """Switch every fault off; notifications held for reordering are kept for release()."""
        with self._lock:
            self._unavailable = self._drop = self._duplicate = self._reorder = 0
            self._rpc.clear()
            self._task.clear()

    # ---- consumers (the server) ---------------------------------------------------------------------
    def take(self, method: str) -> RpcFault | None:
        """The fault for this call, if one is pending (consumes it)."""
        with self._lock:
            if self._unavailable > 0:
                self._unavailable -= 1
                return RpcFault(grpc.StatusCode.UNAVAILABLE, "injected UNAVAILABLE")
            pending = self._rpc.get(method)
            return pending.popleft() if pending else None

    def take_task(self) -> int | None:
        """The exit code forced on this task attempt, if one is pending (consumes it)."""
        with self._lock:
            return self._task.popleft() if self._task else None

    def shape(self, message: Message) -> list[Message]:
        """What to deliver now for a new notification: nothing, it, it twice, or a released window."""
        with self._lock:
            if self._drop > 0:
                self._drop -= 1
                return []
            copies = [message]
            if self._duplicate > 0:
                self._duplicate -= 1
                copies.append(message)
            if self._reorder <= 0:
                return copies
            self._held.extend(copies)
            self._reorder -= 1
            if self._reorder > 0:
                return []
        return self.release()

    @property
    def holding(self) -> bool:
        """True while notifications are held for reordering."""
        with self._lock:
            return bool(self._held)

    def release(self) -> list[Message]:
        """The held notifications, newest first (consumes them)."""
        with self._lock:
            held, self._held = self._held[::-1], []
            self._reorder = 0
            return held


def faulty_handler(
    faults: Faults, method: str, fn: Callable[[Any], Any], deserialize: Any, serialize: Any
) -> grpc.RpcMethodHandler:
    """A unary gRPC handler for `fn` that applies this method's pending fault before or after the call."""

    def handle(request: Any, context: grpc.ServicerContext) -> Any:
        try:
            fault = faults.take(method)
            if fault is not None and not fault.after:
                raise fault
            result = fn(request)
            if fault is not None:  # the call took effect, yet the client sees an error
                raise fault
            return result
        except RpcFault as exc:
            context.abort(exc.code, exc.message)

    return grpc.unary_unary_rpc_method_handler(
        handle, request_deserializer=deserialize, response_serializer=serialize
    )


def dispatch_notifications(
    outbox: queue.Queue[Message | None], faults: Faults, deliver: Callable[[list[Message]], None]
) -> None:
    """Deliver the outbox through the notification faults until a None arrives; held ones are released
    when the outbox stays quiet for REORDER_FLUSH_S and at the end."""
    while True:
        try:
            item = outbox.get(timeout=REORDER_FLUSH_S if faults.holding else None)
        except queue.Empty:
            deliver(faults.release())
            continue
        if item is None:
            deliver(faults.release())
            return
        deliver(faults.shape(item))

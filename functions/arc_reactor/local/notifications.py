"""A notification log for the local Batch service: pass it as `on_notification` to keep every Pub/Sub
notification the service publishes, in order, instead of delivering them (tests and benchmarks)."""

from __future__ import annotations

import threading

from arc_reactor.local.batch_state import canonical_name

Notification = tuple[dict[str, str], bytes]  # (attributes, data)


class NotificationLog:
    """Every notification as (attributes, data); `wait` blocks, bounded, until enough have arrived."""

    def __init__(self) -> None:
        self.items: list[Notification] = []
        self._cond = threading.Condition()

    def __call__(self, attributes: dict[str, str], data: bytes) -> None:
        with self._cond:
            self.items.append((dict(attributes), data))
            self._cond.notify_all()

    def wait(
        self, n: int, timeout: float = 5.0, job: str | None = None
    ) -> list[tuple[dict[str, str], bytes]]:
        """The notifications (of `job`, a full job name, when given) once `n` have arrived or `timeout`
        seconds have passed, whichever is first: callers check the count they needed. `job` may name the
        project by id or number (messages carry the number, as Batch's do)."""
        job = canonical_name(job) if job is not None else None

        def of_job(attrs: dict[str, str]) -> bool:  # task messages name the job only in TaskName
            return attrs.get("JobName") == job or attrs.get("TaskName", "").startswith(f"{job}/")

        def mine() -> list[Notification]:
            return [item for item in self.items if job is None or of_job(item[0])]

        with self._cond:
            self._cond.wait_for(lambda: len(mine()) >= n, timeout=timeout)
            return mine()


def states(items: list[Notification]) -> list[tuple[str, str]]:
    """(Type, new job or task state) of each notification."""
    return [(a["Type"], a.get("NewJobState") or a.get("NewTaskState", "")) for a, _ in items]

"""What a run was billed: its `run-id` label's cost in the Cloud Billing export to BigQuery (docs/cost.md).

Batch puts a job's allocation-policy labels on its VMs (the head job's, core/jobspec.py) and Nextflow's
`resourceLabels` on its task jobs' VMs, so every Compute Engine charge of a run carries `run-id`. The
export is the standard usage cost table (`gcp_billing_export_v1_<BILLING_ACCOUNT>`) or the detailed one
(`gcp_billing_export_resource_v1_...`): both have `labels`, `cost`, `credits`, `currency` and
`export_time`, and both are partitioned by day of `_PARTITIONTIME`, which the query bounds from the run's
creation day so it reads only those partitions.

Charges reach the export hours after they happen, so an answer is kept for BILLED_TTL_S in the process
(a failed query for FAILED_TTL_S); each query waits at most QUERY_TIMEOUT_S. A failure is logged and
answered as `error`, never as a figure.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from google.cloud import bigquery

    from arc_reactor.settings import Settings

log = logging.getLogger(__name__)

BILLED_TTL_S = 3600.0
FAILED_TTL_S = 300.0
QUERY_TIMEOUT_S = 10.0
MAX_BYTES_BILLED = 10 * 1024**3  # a runaway scan is refused by BigQuery, not paid for
TABLE = re.compile(r"[a-z][a-z0-9-]{4,28}[a-z0-9]\.[A-Za-z0-9_]{1,1024}\.[A-Za-z0-9_-]{1,1024}")

# The query of docs/cost.md, with the run and the first day as parameters.
BILLED_SQL = """
SELECT
  currency,
  SUM(cost) + SUM(IFNULL((SELECT SUM(c.amount) FROM UNNEST(credits) AS c), 0)) AS total,
  MAX(export_time) AS as_of
FROM `{table}`
WHERE DATE(_PARTITIONTIME) >= DATE(@since)
  AND EXISTS (SELECT 1 FROM UNNEST(labels) AS l WHERE l.key = 'run-id' AND l.value = @run_id)
GROUP BY currency
"""


def make_bigquery_client(settings: Settings) -> bigquery.Client:
    """A BigQuery client; against a local endpoint (ARC_BIGQUERY_ENDPOINT, tests) with anonymous
    credentials, so no credential lookup or metadata-server probe happens."""
    from google.cloud import bigquery

    if settings.bigquery_endpoint:
        from google.auth.credentials import AnonymousCredentials

        return bigquery.Client(
            project=settings.project,
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            client_options={"api_endpoint": settings.bigquery_endpoint},
        )
    return bigquery.Client(project=settings.project)


class BilledCosts:
    """The billed cost of runs, from the export table, cached per run."""

    def __init__(
        self, table: str, client: Callable[[], bigquery.Client], clock: Callable[[], float] = time.monotonic
    ) -> None:
        if not TABLE.fullmatch(table):
            raise ValueError(f"ARC_BILLING_EXPORT_TABLE must be project.dataset.table, not {table!r}")
        self.table, self._client, self.clock = table, client, clock
        self._cache: dict[str, tuple[float, dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self.queries = 0

    def billed(self, run_id: str, since: datetime) -> dict[str, Any]:
        """{total, currency, as_of, error}: the run's charges so far (total None when there are none yet)."""
        now = self.clock()
        with self._lock:
            kept = self._cache.get(run_id)
            if kept is not None and kept[0] > now:
                return kept[1]
        answer, ttl = self._query(run_id, since)
        with self._lock:
            self._cache[run_id] = (now + ttl, answer)
            if len(self._cache) > 10_000:  # a long-lived process: drop what expired
                self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
        return answer

    def _query(self, run_id: str, since: datetime) -> tuple[dict[str, Any], float]:
        from google.api_core import exceptions, retry
        from google.cloud import bigquery

        never = retry.if_exception_type()  # a failed query job is not run again: the next GET asks anew
        once = retry.Retry(predicate=never, timeout=QUERY_TIMEOUT_S)
        config = bigquery.QueryJobConfig(
            query_parameters=[
                bigquery.ScalarQueryParameter("run_id", "STRING", run_id),
                bigquery.ScalarQueryParameter("since", "TIMESTAMP", since),
            ],
            maximum_bytes_billed=MAX_BYTES_BILLED,
            use_query_cache=True,
        )
        self.queries += 1
        try:
            rows = list(
                self._client().query_and_wait(
                    BILLED_SQL.format(table=self.table), job_config=config, wait_timeout=QUERY_TIMEOUT_S,
                    api_timeout=QUERY_TIMEOUT_S, retry=retry.Retry(timeout=QUERY_TIMEOUT_S),
                    job_retry=once, max_results=10,
                )
            )  # fmt: skip
        except (exceptions.GoogleAPIError, OSError, ValueError, TimeoutError) as exc:
            log.warning(
                "billed cost of %s not read from %s: %s", run_id, self.table, exc,
                extra={"event": "billing_query_failed", "run_id": run_id},
            )  # fmt: skip
            return {"total": None, "currency": None, "as_of": None, "error": type(exc).__name__}, FAILED_TTL_S
        if not rows:
            return {"total": None, "currency": None, "as_of": None, "error": None}, BILLED_TTL_S
        if len(rows) > 1:  # charges in several currencies: say so rather than add them up
            currencies = ", ".join(sorted(str(r["currency"]) for r in rows))
            error = f"charges in several currencies ({currencies})"
            return {"total": None, "currency": None, "as_of": None, "error": error}, BILLED_TTL_S
        row = rows[0]
        as_of = row["as_of"].isoformat() if row["as_of"] is not None else None
        total = round(float(row["total"]), 4) if row["total"] is not None else None
        return {"total": total, "currency": row["currency"], "as_of": as_of, "error": None}, BILLED_TTL_S

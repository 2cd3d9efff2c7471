"""The orchestrator's Tower relay: Nextflow's reports (`-with-tower http://127.0.0.1:<port>/tower`) go
through it to runs_api.

In the cloud, runs_api sits behind Cloud Run IAM: every request needs a Google ID token for it. Nextflow's
Tower client sends one Authorization header, the run's own token (TOWER_ACCESS_TOKEN), and no other. So
this relay listens on loopback inside the orchestrator and forwards each /tower/... request to runs_api
(ARC_SERVICE_URL) as it came, adding the orchestrator service account's ID token for runs_api in
`X-Serverless-Authorization`: Cloud Run checks that header when it is there and hands Authorization to the
app, which checks the run's token (api/tower.py). On the local stack there is no IAM and nothing is added.

Bounded everywhere: a body over MAX_BODY is refused, a forward waits at most FORWARD_TIMEOUT_S, an ID token
is fetched at most once per TOKEN_TTL_S; only /tower/ paths are forwarded, and only from 127.0.0.1.

The entrypoint starts it (`orchestrate relay`) before `prepare`; it writes the port it listens on to
--port-file, or `none` when the run has no Tower reporting (not Nextflow, no token, no runs_api URL), and
serves until it is stopped. `prepare` then checks runs_api answers through it (`reachable`) before it adds
`-with-tower` to Nextflow's command: Nextflow stops a run whose first report fails, so a run whose
reports cannot get through runs without them (a warning says so) rather than not at all.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests

log = logging.getLogger("arc_reactor.orchestrator.orchestrate")

MAX_BODY = 16 * 1024 * 1024  # a Tower progress request carries at most 100 task records
FORWARD_TIMEOUT_S = 30.0
TOKEN_TTL_S = 1800.0  # Google ID tokens last an hour
PATH_PREFIX = "/tower/"
NONE = "none"
_HOP_HEADERS = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "host",
    "content-length",
    "x-serverless-authorization",
}


class IdTokens:
    """The orchestrator service account's ID token for one audience (from the metadata server), cached."""

    def __init__(self, audience: str, fetch: Callable[[str], str] | None = None) -> None:
        self.audience, self._fetch = audience, fetch or _metadata_id_token
        self._token, self._until = "", 0.0
        self._lock = threading.Lock()

    def get(self) -> str:
        with self._lock:
            if time.monotonic() >= self._until:
                self._token, self._until = self._fetch(self.audience), time.monotonic() + TOKEN_TTL_S
            return self._token


def _metadata_id_token(audience: str) -> str:  # pragma: no cover - the cloud's metadata server only
    import google.auth.transport.requests
    import google.oauth2.id_token

    token: str = google.oauth2.id_token.fetch_id_token(google.auth.transport.requests.Request(), audience)  # type: ignore[no-untyped-call]
    return token


class Relay:
    """A loopback HTTP server forwarding /tower/... to `target` (runs_api's base URL)."""

    def __init__(self, target: str, id_tokens: IdTokens | None) -> None:
        self.target = target.rstrip("/")
        self.id_tokens = id_tokens
        self.session = requests.Session()
        self.session.trust_env = False  # never a proxy from the environment
        relay = self

        class Handler(BaseHTTPRequestHandler):
            def _forward(self) -> None:
                relay.forward(self)

            do_GET = do_POST = do_PUT = _forward  # http.server's names

            def log_message(self, format: str, *args: object) -> None:  # http.server's signature
                log.debug("relay: " + format, *args)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def forward(self, req: BaseHTTPRequestHandler) -> None:
        """One request through to runs_api; its answer back as it came (a 502 when it cannot get there)."""
        if not req.path.startswith(PATH_PREFIX):
            return _answer(req, 404, b'{"message": "only /tower/ requests are relayed"}')
        length = int(req.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            return _answer(req, 413, b'{"message": "request too large"}')
        body = req.rfile.read(length) if length else None
        headers = {k: v for k, v in req.headers.items() if k.lower() not in _HOP_HEADERS}
        try:
            if self.id_tokens is not None:
                headers["X-Serverless-Authorization"] = f"Bearer {self.id_tokens.get()}"
            resp = self.session.request(
                req.command, self.target + req.path, data=body, headers=headers, timeout=FORWARD_TIMEOUT_S
            )
        except Exception as exc:  # noqa: BLE001 - any failure to get there is the same answer to Nextflow
            log.warning("Tower report not relayed: %s", exc, extra={"event": "tower_relay_failed"})
            return _answer(req, 502, b'{"message": "runs_api could not be reached"}')
        return _answer(req, resp.status_code, resp.content, resp.headers.get("Content-Type"))

    def serve(self) -> None:
        self.server.serve_forever(poll_interval=0.1)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.session.close()


def _answer(req: BaseHTTPRequestHandler, status: int, body: bytes, content_type: str | None = None) -> None:
    req.send_response(status)
    req.send_header("Content-Type", content_type or "application/json")
    req.send_header("Content-Length", str(len(body)))
    req.end_headers()
    req.wfile.write(body)


def relay_port(
    port_file: Path, wait_s: float = 10.0, sleep: Callable[[float], None] = time.sleep
) -> int | None:
    """The port the relay wrote to `port_file` (waiting for it at most `wait_s`); None when it said `none`
    or never wrote."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        text = port_file.read_text(encoding="utf-8").strip() if port_file.is_file() else ""
        if text:
            return int(text) if text.isdigit() else None
        sleep(0.05)
    log.warning("the Tower relay did not start in %.0f s", wait_s, extra={"event": "tower_relay_missing"})
    return None


def reachable(
    port: int, attempts: int = 3, timeout: float = 5.0, sleep: Callable[[float], None] = time.sleep
) -> bool:
    """Whether runs_api answers through the relay (GET /tower/service-info), in a few bounded tries."""
    for attempt in range(attempts):
        try:
            resp = requests.get(f"http://127.0.0.1:{port}/tower/service-info", timeout=timeout)
            if resp.status_code == 200:
                return True
            reason = f"HTTP {resp.status_code}"
        except requests.RequestException as exc:
            reason = str(exc)
        if attempt + 1 < attempts:
            sleep(0.5 * (attempt + 1))
    log.warning(
        "runs_api does not answer through the Tower relay (%s): Nextflow runs without reporting its tasks",
        reason, extra={"event": "tower_unreachable"},
    )  # fmt: skip
    return False

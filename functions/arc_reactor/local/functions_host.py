"""Serve the real functions-framework app of each entry point on loopback, each in its own thread."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MAIN = Path(__file__).resolve().parents[2] / "main.py"


@dataclass
class ServedFunction:
    """One entry point served over HTTP."""

    target: str
    url: str
    server: Any
    thread: threading.Thread


def serve_function(
    target: str, signature_type: str, host: str = "127.0.0.1", port: int = 0
) -> ServedFunction:
    """Build the functions-framework app for `target` in functions/main.py and serve it in a thread."""
    from functions_framework import create_app
    from werkzeug.serving import make_server

    app = create_app(target, str(MAIN), signature_type)  # type: ignore[no-untyped-call]
    server = make_server(host, port, app, threaded=True)
    # serve_forever checks for shutdown every poll_interval (0.5 s by default): stop answers within 50 ms
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), name=f"fn-{target}", daemon=True)
    thread.start()
    return ServedFunction(target, f"http://{host}:{server.server_port}/", server, thread)


def stop_function(fn: ServedFunction) -> None:
    """Stop serving."""
    fn.server.shutdown()
    fn.server.server_close()
    fn.thread.join(timeout=5)

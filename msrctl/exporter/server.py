"""Serve a registry over HTTP on an already bound socket until SIGTERM, SIGINT or SIGHUP.

prometheus_client's MetricsHandler answers every GET with the metrics (text
format, or OpenMetrics when asked, gzip when accepted); a threaded server so a
stalled client cannot hold up Prometheus (the collector serialises the reads).
"""

from __future__ import annotations

import signal
import socket
import sys
from http.server import ThreadingHTTPServer
from typing import Any

from prometheus_client.exposition import MetricsHandler
from prometheus_client.registry import CollectorRegistry


class _Stop(BaseException):
    """A stop signal arrived: leave serve_forever().  Not an Exception (as KeyboardInterrupt
    is not): the signal may land while the main thread hands a request out, inside
    socketserver's `except Exception`, which would log it and serve on."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, sock: socket.socket, handler: Any) -> None:
        self.address_family = sock.family
        super().__init__(sock.getsockname()[:2], handler, bind_and_activate=False)
        self.socket.close()  # the unbound one the base class made: use the caller's
        self.socket = sock

    def handle_error(self, request: Any, client_address: Any) -> None:
        """One line on stderr instead of a traceback; none for a client that hung up mid-answer."""
        e = sys.exc_info()[1]
        if not isinstance(e, ConnectionError):
            sys.stderr.write(f"msrctl: exporter: error answering {client_address[0]}: {type(e).__name__}: {e}\n")


def serve(sock: socket.socket, registry: CollectorRegistry) -> int:
    """Answer scrapes on sock until a stop signal; returns the signal number."""
    server = _Server(sock, MetricsHandler.factory(registry))
    got: list[int] = []

    def stop(signum: int, _frame: Any) -> None:
        got.append(signum)
        raise _Stop

    old = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        server.serve_forever(poll_interval=3600)  # the signal wakes it; no need to poll
    except _Stop:
        pass
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        server.server_close()
    return got[0] if got else 0

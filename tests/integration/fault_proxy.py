"""A loopback HTTP proxy in front of a real database that can turn faulty on command: answer
400 to everything (a TLS port or a broken proxy) or black-hole requests (accept, read, never
answer). It counts what it saw in each mode, so tests assert on counts, not on clocks."""

from __future__ import annotations

import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal

import httpx

Mode = Literal["forward", "refuse400", "blackhole"]

REFUSAL = b"<html><body>400 Bad Request: plain HTTP request sent to an HTTPS port</body></html>"
_HOP = ("host", "content-length", "connection", "transfer-encoding")


class FaultProxy:
    """``mode`` is what it does with the next request; ``seen[(mode, path)]`` counts requests
    by the mode they met and their path (without query). ``heal()`` goes back to forwarding
    and lets go of black-holed connections (closed without an answer)."""

    def __init__(self, upstream: str) -> None:
        self.mode: Mode = "forward"
        self.seen: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()
        self._released = threading.Event()
        self._forward = httpx.Client(base_url=upstream, timeout=30.0)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                mode = proxy.mode
                with proxy._lock:
                    proxy.seen[(mode, self.path.partition("?")[0])] += 1
                if mode == "blackhole":
                    proxy._released.wait(120)
                    self.close_connection = True
                    return
                if mode == "refuse400":
                    self._answer(400, {"Content-Type": "text/html"}, REFUSAL)
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
                answer = proxy._forward.request(
                    self.command, self.path, content=body, headers=headers
                )
                # httpx decoded the body already: drop the headers that described the wire form.
                kept = {
                    k: v
                    for k, v in answer.headers.items()
                    if k.lower() not in (*_HOP, "content-encoding")
                }
                self._answer(answer.status_code, kept, answer.content)

            def _answer(self, status: int, headers: dict[str, str], body: bytes) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_HEAD = _serve

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def count(self, mode: Mode, path: str | None = None) -> int:
        with self._lock:
            return sum(n for (m, p), n in self.seen.items() if m == mode and path in (None, p))

    def fail(self, mode: Mode) -> None:
        self._released.clear()
        self.mode = mode

    def heal(self) -> None:
        self.mode = "forward"
        self._released.set()

    def close(self) -> None:
        self.heal()
        self._server.shutdown()
        self._server.server_close()
        self._forward.close()

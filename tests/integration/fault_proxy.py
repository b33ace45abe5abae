"""Loopback HTTP proxies in front of a real database. ``LoopbackProxy`` forwards every request
to its upstream unless ``intercept`` answers it itself (or hangs up without an answer);
subclasses decide what to intercept. ``FaultProxy`` turns faulty on command: answer 400 to
everything (a TLS port or a broken proxy) or black-hole requests (accept, read, never answer).
It counts what it saw in each mode, so tests assert on counts, not on clocks."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal, TypeVar

import httpx

Mode = Literal["forward", "refuse400", "blackhole"]

REFUSAL = b"<html><body>400 Bad Request: plain HTTP request sent to an HTTPS port</body></html>"
_HOP = ("host", "content-length", "connection", "transfer-encoding")


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    url: str  # path and query, as the proxy (and any access log) sees it
    headers: dict[str, str]  # names in lower case
    body: bytes


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


HANG_UP = Answer(0, {}, b"")
"""What ``intercept`` returns to close the connection without an answer."""


class LoopbackProxy:
    """Listens on 127.0.0.1 (a free port) and forwards to ``upstream``; ``intercept`` sees
    every request first and returns ``None`` to forward it, or the ``Answer`` to give."""

    def __init__(self, upstream: str, timeout: float = 30.0) -> None:
        self._forward = httpx.Client(base_url=upstream, timeout=timeout)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                request = Request(self.command, self.path, headers, body)
                answer = proxy.intercept(request)
                if answer is HANG_UP:
                    self.close_connection = True
                    return
                self._answer(answer or proxy._relay(request))

            def _answer(self, answer: Answer) -> None:
                self.send_response(answer.status)
                for key, value in answer.headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)

            do_GET = do_POST = do_HEAD = _serve

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def intercept(self, request: Request) -> Answer | None:
        return None

    def _relay(self, request: Request) -> Answer:
        sent = {k: v for k, v in request.headers.items() if k not in _HOP}
        answer = self._forward.request(
            request.method, request.url, content=request.body, headers=sent
        )
        # httpx decoded the body already: drop the headers that described the wire form.
        kept = {
            k: v for k, v in answer.headers.items() if k.lower() not in (*_HOP, "content-encoding")
        }
        return Answer(answer.status_code, kept, answer.content)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._forward.close()


ProxyT = TypeVar("ProxyT", bound=LoopbackProxy)


def proxies(make: Callable[[str], ProxyT]) -> Iterator[Callable[[str], ProxyT]]:
    """For a fixture: yields a factory of proxies to an upstream URL, closing them after."""
    made: list[ProxyT] = []

    def proxy_to(upstream: str) -> ProxyT:
        made.append(make(upstream))
        return made[-1]

    yield proxy_to
    for proxy in made:
        proxy.close()


class FaultProxy(LoopbackProxy):
    """``mode`` is what it does with the next request; ``seen[(mode, path)]`` counts requests
    by the mode they met and their path (without query). ``heal()`` goes back to forwarding
    and lets go of black-holed connections (closed without an answer)."""

    def __init__(self, upstream: str) -> None:
        self.mode: Mode = "forward"
        self.seen: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()
        self._released = threading.Event()
        super().__init__(upstream)

    def intercept(self, request: Request) -> Answer | None:
        mode = self.mode
        with self._lock:
            self.seen[(mode, request.url.partition("?")[0])] += 1
        if mode == "blackhole":
            self._released.wait(120)
            return HANG_UP
        if mode == "refuse400":
            return Answer(400, {"Content-Type": "text/html"}, REFUSAL)
        return None

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
        super().close()

"""A loopback HTTP server speaking the few Grafana API endpoints facility-grafana uses.

It keeps folders, data sources and dashboards in memory like Grafana does (versions bump on
every save, secrets are write-only) and records every request, so tests can count writes.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TOKEN = "test-service-account-token"


@dataclass
class Recorded:
    method: str
    path: str
    body: Any


@dataclass
class State:
    folders: dict[str, dict[str, Any]] = field(default_factory=dict)
    datasources: dict[str, dict[str, Any]] = field(default_factory=dict)
    secrets: dict[str, dict[str, str]] = field(default_factory=dict)
    dashboards: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    datasource_healthy: bool = True

    def writes(self) -> list[Recorded]:
        return [r for r in self.requests if r.method != "GET"]


class _Handler(BaseHTTPRequestHandler):
    server: FakeGrafana

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _reply(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        state = self.server.state
        with self.server.lock:
            state.requests.append(Recorded(method, self.path, body))
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                return self._reply(401, {"message": "Unauthorized"})
            status, reply = self.server.route(method, self.path.split("?")[0], body)
        self._reply(status, reply)

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")


class FakeGrafana(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = State()
        self.lock = threading.Lock()
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def __enter__(self) -> FakeGrafana:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join(timeout=10)

    def route(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        s = self.state
        not_found = (404, {"message": "not found"})
        if (method, path) == ("GET", "/api/health"):
            return 200, {"database": "ok", "version": "11.0.0"}
        if m := re.fullmatch(r"/api/folders/([\w-]+)", path):
            folder = s.folders.get(m[1])
            if folder is None:
                return not_found
            if method == "PUT":
                folder.update(title=body["title"], version=folder["version"] + 1)
            return 200, folder
        if (method, path) == ("POST", "/api/folders"):
            s.folders[body["uid"]] = {"uid": body["uid"], "title": body["title"], "version": 1}
            return 200, s.folders[body["uid"]]
        if m := re.fullmatch(r"/api/datasources/uid/([\w-]+)/health", path):
            if m[1] not in s.datasources:
                return not_found
            if s.datasource_healthy:
                return 200, {"status": "OK", "message": "datasource is working"}
            return 400, {"status": "ERROR", "message": "error reading InfluxDB"}
        if m := re.fullmatch(r"/api/datasources/uid/([\w-]+)", path):
            if m[1] not in s.datasources:
                return not_found
            if method == "PUT":
                self._save_datasource(body)
            return 200, s.datasources[m[1]]
        if (method, path) == ("POST", "/api/datasources"):
            self._save_datasource(body)
            return 200, {"datasource": s.datasources[body["uid"]]}
        if m := re.fullmatch(r"/api/dashboards/uid/([\w-]+)", path):
            return (200, s.dashboards[m[1]]) if m[1] in s.dashboards else not_found
        if (method, path) == ("POST", "/api/dashboards/db"):
            board = dict(body["dashboard"])
            old = s.dashboards.get(board["uid"])
            if old and old["meta"].get("provisioned"):
                # What Grafana answers for a dashboard loaded from provisioning files.
                return 400, {"message": "Cannot save provisioned dashboard"}
            version = old["dashboard"]["version"] + 1 if old else 1
            board.update(id=7, version=version)
            folder = s.folders.get(body.get("folderUid", ""), {})
            s.dashboards[board["uid"]] = {
                "dashboard": board,
                "meta": {"folderUid": body.get("folderUid"), "folderTitle": folder.get("title")},
            }
            return 200, {"status": "success", "uid": board["uid"], "version": version}
        return 404, {"message": f"fake grafana has no {method} {path}"}

    def provision(self, board: dict[str, Any], file_name: str, folder_title: str) -> None:
        """A dashboard as file provisioning loads it (Grafana's own folder uid, read-only)."""
        self.state.dashboards[board["uid"]] = {
            "dashboard": {**board, "id": 3, "version": 1},
            "meta": {
                "folderUid": "provisioned-folder",
                "folderTitle": folder_title,
                "provisioned": True,
                "provisionedExternalId": file_name,
            },
        }

    def _save_datasource(self, body: dict[str, Any]) -> None:
        stored = {k: v for k, v in body.items() if k != "secureJsonData"}
        secrets = self.state.secrets.setdefault(body["uid"], {})
        secrets.update(body.get("secureJsonData") or {})
        stored["secureJsonFields"] = dict.fromkeys(secrets, True)
        self.state.datasources[body["uid"]] = stored

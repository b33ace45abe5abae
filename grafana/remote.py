"""Push the folder, data source and dashboards to a Grafana server idempotently, and verify them.

``push`` reads what the server has and writes only what differs, so a second run changes
nothing. ``verify`` is read-only: server healthy, data source health check OK, every dashboard
present in the folder with exactly the content the code builds.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import niquests
from grafana_client.api import GrafanaApi
from grafana_client.client import GrafanaClientError, GrafanaException

from grafana.influxql import DATASOURCE_TYPE, DATASOURCE_UID
from grafana.settings import GrafanaSettings

log = logging.getLogger("facility-grafana")

# Keys Grafana adds or bumps on save; everything else must match what the code built.
_SERVER_KEYS = ("id", "version")


class RemoteError(Exception):
    """Grafana could not be reached or refused a request; the message is one line."""


@dataclass
class Report:
    changes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    versions: dict[str, int] = field(default_factory=dict)


def load_dashboards(directory: Path) -> dict[str, dict[str, Any]]:
    """uid -> dashboard JSON of every generated file."""
    boards: dict[str, dict[str, Any]] = {}
    for path in sorted(directory.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        boards[str(data["uid"])] = data
    if not boards:
        raise RemoteError(f"GRAFANA_DASHBOARDS_DIR: no dashboards in {directory}")
    return boards


def desired_datasource(settings: GrafanaSettings) -> dict[str, Any]:
    """The InfluxQL data source, as file provisioning defines it (same uid, same options)."""
    data: dict[str, Any] = {
        "uid": DATASOURCE_UID,
        "name": settings.grafana_datasource_name,
        "type": DATASOURCE_TYPE,
        "access": "proxy",
        "url": settings.grafana_influx_url or settings.influx_url,
        "jsonData": {
            "version": "InfluxQL",
            "dbName": settings.influx_bucket,
            "httpMode": "POST",
            "httpHeaderName1": "Authorization",
        },
    }
    if settings.influx_token is not None:
        # InfluxDB 2.x/3.x take an API token; 1.8+ also accept "Token user:password".
        token = settings.influx_token.get_secret_value()
        data["secureJsonData"] = {"httpHeaderValue1": f"Token {token}"}
    return data


def _comparable(dashboard: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in dashboard.items() if k not in _SERVER_KEYS}


def _provisioned(current: dict[str, Any]) -> str | None:
    """The file a dashboard was provisioned from, when Grafana loaded it from files (the
    compose stack does): Grafana refuses API saves of such a dashboard."""
    meta = current.get("meta") or {}
    if not meta.get("provisioned"):
        return None
    return str(meta.get("provisionedExternalId") or "a provisioning file")


def _provisioned_advice(source: str) -> str:
    return (
        f"it is provisioned from files on this server ({source}), so push cannot change it: "
        "update the dashboard files Grafana loads (`facility-grafana build`; the compose stack "
        "mounts grafana/dashboards and Grafana rereads it within 30 s)"
    )


class Remote:
    """The few Grafana HTTP API calls ``push`` and ``verify`` need."""

    def __init__(self, settings: GrafanaSettings) -> None:
        self.settings = settings
        token = settings.grafana_token.get_secret_value() if settings.grafana_token else None
        self.api = GrafanaApi.from_url(
            settings.grafana_url, credential=token, timeout=settings.grafana_timeout_s
        )

    def _call(self, what: str, method: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except GrafanaClientError as exc:
            if exc.status_code == 404:
                return None
            raise RemoteError(f"{what}: HTTP {exc.status_code}: {exc.message}") from exc
        except GrafanaException as exc:
            raise RemoteError(f"{what}: {exc.message}") from exc
        except niquests.exceptions.RequestException as exc:
            raise RemoteError(f"{what}: cannot reach {self.settings.grafana_url}: {exc}") from exc

    # -- push -----------------------------------------------------------------------------
    def push(self, dashboards: dict[str, dict[str, Any]], report: Report) -> Report:
        self._push_folder(report)
        self._push_datasource(report)
        for uid, board in dashboards.items():
            self._push_dashboard(uid, board, report)
        return report

    def _push_folder(self, report: Report) -> None:
        uid, title = self.settings.grafana_folder_uid, self.settings.grafana_folder
        folder = self._call("get folder", self.api.folder.get_folder, uid)
        if folder is None:
            self._call("create folder", self.api.folder.create_folder, title, uid=uid)
            report.changes.append(f"folder {title!r} created")
        elif folder.get("title") != title:
            self._call(
                "rename folder", self.api.folder.update_folder, uid, title=title, overwrite=True
            )
            report.changes.append(f"folder {uid} renamed to {title!r}")

    def _push_datasource(self, report: Report) -> None:
        desired = desired_datasource(self.settings)
        current = self._call(
            "get data source", self.api.datasource.get_datasource_by_uid, DATASOURCE_UID
        )
        if current is None:
            self._call("create data source", self.api.datasource.create_datasource, desired)
            report.changes.append(f"data source {desired['name']!r} created")
            return
        differs = [k for k in ("name", "type", "url", "access") if current.get(k) != desired[k]]
        json_data = current.get("jsonData") or {}
        differs += [k for k, v in desired["jsonData"].items() if json_data.get(k) != v]
        # The token cannot be read back: it is only (re)sent when the server has none or
        # something else changed, so a second push with the same settings changes nothing.
        has_token = bool((current.get("secureJsonFields") or {}).get("httpHeaderValue1"))
        if "secureJsonData" in desired and not has_token:
            differs.append("token")
        if differs:
            self._call(
                "update data source",
                self.api.datasource.update_datasource_by_uid,
                DATASOURCE_UID,
                desired,
            )
            report.changes.append(f"data source updated ({', '.join(differs)})")

    def _push_dashboard(self, uid: str, board: dict[str, Any], report: Report) -> None:
        current = self._call(f"get dashboard {uid}", self.api.dashboard.get_dashboard, uid)
        folder_uid = self.settings.grafana_folder_uid
        if current is not None:
            same_folder = (current.get("meta") or {}).get("folderUid") == folder_uid
            same = _comparable(current["dashboard"]) == _comparable(board)
            source = _provisioned(current)
            if source is not None:
                # The folder of a provisioned board is the provisioning directory's; only
                # its content can differ from the code.
                report.versions[uid] = int(current["dashboard"].get("version") or 0)
                if not same:
                    report.problems.append(
                        f"dashboard {uid} differs from the code; " + _provisioned_advice(source)
                    )
                return
            if same_folder and same:
                report.versions[uid] = int(current["dashboard"].get("version") or 0)
                return
        body = {
            "dashboard": {**_comparable(board), "id": None},
            "folderUid": folder_uid,
            "overwrite": True,
            "message": "facility-grafana push",
        }
        saved = self._call(f"save dashboard {uid}", self.api.dashboard.update_dashboard, body)
        report.versions[uid] = int((saved or {}).get("version") or 0)
        verb = "created" if current is None else "updated"
        report.changes.append(f"dashboard {board.get('title')!r} {verb}")

    # -- verify ---------------------------------------------------------------------------
    def verify(self, dashboards: dict[str, dict[str, Any]], report: Report) -> Report:
        health = self._call("health", self.api.client.GET, "/health")
        if not health or health.get("database") != "ok":
            report.problems.append(f"server not healthy: {health}")
        try:
            ds_health = self._call("data source health", self.api.datasource.health, DATASOURCE_UID)
        except RemoteError as exc:
            # Grafana answers a failed health check with HTTP 400 and the reason.
            ds_health = {"status": "ERROR", "message": str(exc)}
        if ds_health is None:
            report.problems.append(f"data source {DATASOURCE_UID} missing")
        elif str(ds_health.get("status", "")).upper() != "OK":
            report.problems.append(f"data source unhealthy: {ds_health.get('message')}")
        for uid, board in dashboards.items():
            current = self._call(f"get dashboard {uid}", self.api.dashboard.get_dashboard, uid)
            if current is None:
                report.problems.append(f"dashboard {uid} missing")
                continue
            report.versions[uid] = int(current["dashboard"].get("version") or 0)
            if _comparable(current["dashboard"]) != _comparable(board):
                source = _provisioned(current)
                advice = "run push" if source is None else _provisioned_advice(source)
                report.problems.append(f"dashboard {uid} differs from the code ({advice})")
            # File provisioning names the folder after the directory but picks its own uid.
            meta = current.get("meta") or {}
            if self.settings.grafana_folder_uid != meta.get("folderUid") and (
                self.settings.grafana_folder != meta.get("folderTitle")
            ):
                report.problems.append(
                    f"dashboard {uid} is in folder {meta.get('folderTitle')!r}, "
                    f"not {self.settings.grafana_folder!r}"
                )
        return report

"""Baseline consumers for the ingest benchmark, run as their own processes.

``ceiling``: a bare paho QoS 1 subscriber that only parses JSON (auto-acknowledged).
``naive``: the tutorial ingester: paho ``on_message`` writing each point synchronously
(influxdb-client for ``/api/v2/write``; one HTTP ``/write`` per point for InfluxDB 1.x, which
influxdb-client cannot write to before 1.8).

Usage: python -m scripts.bench.ingest_consumers MODE MQTT_HOST MQTT_PORT CLIENT_ID COUNT
[INFLUX_URL API_VERSION]. Prints one JSON line ``{"first": t, "last": t, "count": n}`` when
``COUNT`` messages were handled (times from time.time()).
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any, cast

import httpx
import paho.mqtt.client as mqtt
from influxdb_client.client.influxdb_client import InfluxDBClient
from influxdb_client.client.write.point import Point
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.domain.write_precision import WritePrecision
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

TOPICS = "facility/+/+/+/telemetry"

# The generated WritePrecision class holds its members as plain strings.
MS = cast(WritePrecision, WritePrecision.MS)


def main(argv: list[str]) -> int:
    mode, host, port, client_id, count = argv[:5]
    target = int(count)
    influx_url = argv[5] if len(argv) > 5 else ""
    api = argv[6] if len(argv) > 6 else "2"
    done = threading.Event()
    state: dict[str, Any] = {"first": None, "last": None, "count": 0}

    write = None
    if mode == "naive":
        if api == "2":
            influx = InfluxDBClient(url=influx_url, token="bench", org="facility")
            write_api = influx.write_api(write_options=SYNCHRONOUS)

            def write(point: Point) -> None:
                write_api.write(bucket="facility", record=point, write_precision=MS)
        else:
            http = httpx.Client(base_url=influx_url)

            def write(point: Point) -> None:
                http.post(
                    "/write",
                    params={"db": "facility", "precision": "ms"},
                    content=point.to_line_protocol(),
                ).raise_for_status()

    def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        data = json.loads(msg.payload)
        if write is not None:
            _site, _kind, device = msg.topic.split("/")[1:4]
            point = Point("ewaste_bin").tag("site", "ewaste").tag("device_id", device)
            for key in ("weight_kg", "fill_pct"):
                point = point.field(key, float(data[key]))
            write(point.time(int(data["ts"]), write_precision="ms"))
        now = time.time()
        if state["first"] is None:
            state["first"] = now
        state["last"] = now
        state["count"] += 1
        if state["count"] >= target:
            done.set()

    subscribed = threading.Event()

    def on_connect(client: mqtt.Client, *_: object) -> None:
        client.subscribe(TOPICS, qos=1)

    def on_subscribe(*_: object) -> None:
        subscribed.set()

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 3600
    client.on_message = on_message
    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.connect(host, int(port), clean_start=False, properties=props)
    client.loop_start()
    if target == 0:  # only create the persistent session
        subscribed.wait(30)
    else:
        done.wait(3600)
    client.disconnect()
    client.loop_stop()
    print(json.dumps(state), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

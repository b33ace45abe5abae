"""A pure-Python MQTT 3.1.1 broker (amqtt) for `make run` on machines without Mosquitto.

Loopback only, anonymous, in memory: a development convenience, never a deployment. Prints
``broker ready on HOST:PORT`` once it accepts connections; stops cleanly on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys

from amqtt.broker import Broker

LOOPBACK = "127.0.0.1"


def broker_config(host: str, port: int) -> dict[str, object]:
    return {
        "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}"}},
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    }


async def serve(host: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    broker = Broker(broker_config(host, port))
    await broker.start()
    print(f"broker ready on {host}:{port}", flush=True)
    await stop.wait()
    await broker.shutdown()
    print("broker stopped", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m supervisor.broker",
        description="Loopback MQTT 3.1.1 broker (amqtt) for local development.",
    )
    parser.add_argument("--host", default=LOOPBACK)
    parser.add_argument("--port", type=int, default=1883)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # amqtt logs every client's connection at INFO and some disconnects as errors.
    logging.getLogger("amqtt").setLevel(logging.CRITICAL)
    logging.getLogger("transitions").setLevel(logging.WARNING)
    asyncio.run(serve(args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
